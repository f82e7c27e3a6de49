"""Same config, same seed, same bytes: fingerprints, and the demo's detector job run twice."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from freqbackdoor.detection.detector import DetectorSettings, train_detector
from freqbackdoor.detection.transfer import FineTuneSettings, fine_tune_detector
from freqbackdoor.errors import DataError
from freqbackdoor.io import save_npz, save_torch, sha256_file
from freqbackdoor.models.checkpoints import save_checkpoint
from freqbackdoor.reproducibility import (
    differences,
    file_fingerprint,
    fingerprint_text,
    fingerprints,
    parse,
    without_timing,
)

ROOT = Path(__file__).resolve().parents[1]
DETECTOR = "results/detectors/photos32/cnn6_kmax128_dct.pt"


def test_json_fingerprints_ignore_timing_records_at_any_depth(tmp_path):
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    one.write_text(json.dumps({"acc": 0.5, "timing": {"seconds": 1.0}, "runs": [{"timing": 3}]}))
    two.write_text(json.dumps({"runs": [{"timing": 9}], "acc": 0.5, "timing": {"seconds": 2}}))
    assert file_fingerprint(one) == file_fingerprint(two)
    two.write_text(json.dumps({"acc": 0.6, "timing": {"seconds": 1.0}, "runs": [{"timing": 3}]}))
    assert file_fingerprint(one) != file_fingerprint(two)
    assert without_timing({"a": [{"timing": 1, "b": 2}]}) == {"a": [{"b": 2}]}


def test_fingerprints_skip_benchmarks_and_list_what_changed(tmp_path):
    (tmp_path / "tables").mkdir()
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "tables" / "t.csv").write_text("a\n1\n")
    (tmp_path / "benchmarks" / "b.tsv").write_text("s\n1.5\n")
    before = fingerprints(tmp_path)
    assert list(before) == ["tables/t.csv"]
    assert parse(fingerprint_text(before).splitlines(keepends=True)) == before
    (tmp_path / "benchmarks" / "b.tsv").write_text("s\n2.5\n")
    (tmp_path / "tables" / "t.csv").write_text("a\n2\n")
    (tmp_path / "tables" / "new.csv").write_text("b\n")
    diff = differences(before, fingerprints(tmp_path))
    assert diff == {"changed": ["tables/t.csv"], "added": ["tables/new.csv"], "removed": []}


def test_a_malformed_listing_is_refused_naming_the_line():
    with pytest.raises(DataError, match="a.tsv, line 2"):
        parse([f"{'0' * 64}\tx.csv\n", "not a line\n"], "a.tsv")


def test_torch_and_npz_files_are_byte_identical_whatever_their_name(tmp_path):
    state = {"w": torch.arange(6.0).reshape(2, 3)}
    assert save_torch(tmp_path / "a.pt", state) == save_torch(tmp_path / "b.pt", state)
    save_npz(tmp_path / "a.npz", x=np.arange(5), y=np.ones(3))
    time.sleep(2.1)  # zip member times have a 2 s resolution
    save_npz(tmp_path / "b.npz", x=np.arange(5), y=np.ones(3))
    assert sha256_file(tmp_path / "a.npz") == sha256_file(tmp_path / "b.npz")
    loaded = np.load(tmp_path / "b.npz", allow_pickle=False)
    assert loaded["x"].tolist() == [0, 1, 2, 3, 4] and loaded["y"].shape == (3,)


def test_detector_with_dropout_and_its_fine_tuning_repeat_exactly(photos, tmp_path):
    """cnn6 has dropout: its masks must come from the seed, not from the process's history."""
    settings = DetectorSettings(
        architecture="cnn6_kmax128", epochs=1, batch_size=64, lr=0.05, optimizer="adadelta"
    )
    tune = FineTuneSettings(epochs=1, batch_size=16, lr=0.05, optimizer="adadelta")
    digests = []
    for attempt in range(2):
        torch.manual_seed(attempt)  # a different global state each time
        model, history = train_detector(photos[:160], settings, "dct", device="cpu")
        tuned, _ = fine_tune_detector(model, photos[:32], tune)
        sidecars = [
            save_checkpoint(m, tmp_path / f"{n}{attempt}.pt", tmp_path / f"{n}{attempt}.json")
            for n, m in (("detector", model), ("tuned", tuned))
        ]
        digests.append(([s["sha256"] for s in sidecars], history["train_loss"]))
    assert digests[0] == digests[1]


def _demo_config() -> dict:
    """The demo config with its detector trained for 2 epochs instead of 4."""
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["detector"]["epochs"] = 2
    return config


def _snakemake(workdir: Path, *args: str, **kwargs) -> subprocess.Popen:
    command = [sys.executable, "-m", "snakemake", "--cores", "1", DETECTOR, *args]
    return subprocess.Popen(
        command,
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # so the kill reaches the job's process too
        **kwargs,
    )


def _finish(process: subprocess.Popen) -> None:
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output[-4000:]


@pytest.mark.workflow
def test_demo_detector_job_is_byte_identical_after_a_rerun_and_after_a_kill(
    tmp_path, workflow_copy
):
    """The demo's photos32 cnn6 detector (dropout, BatchNorm, the demo's data and settings):
    a clean run, and a run killed with SIGKILL mid-training then resumed, give the same files."""
    first = workflow_copy(tmp_path / "first", _demo_config())
    _finish(_snakemake(first))

    second = workflow_copy(tmp_path / "second", _demo_config())
    log = second / "logs/detector/photos32/cnn6_kmax128_dct.log"
    process = _snakemake(second)
    deadline = time.monotonic() + 300
    while not (log.exists() and "epoch 1:" in log.read_text()):
        assert process.poll() is None, "the run ended before the detector trained"
        assert time.monotonic() < deadline, "the detector did not start within 5 minutes"
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (second / DETECTOR).exists()
    _finish(_snakemake(second, "--unlock"))  # a killed Snakemake leaves its lock behind
    _finish(_snakemake(second, "--rerun-incomplete"))

    diff = differences(fingerprints(first / "results"), fingerprints(second / "results"))
    assert diff == {"changed": [], "added": [], "removed": []}
    assert (first / DETECTOR).read_bytes() == (second / DETECTOR).read_bytes()
