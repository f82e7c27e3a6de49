"""The DAG on a tiny config (a real Snakemake run), and offline dry runs of the shipped configs."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
TINY = {
    "seed": 3,
    "device": "cpu",
    "raw_dir": "resources/raw",
    "datasets": {
        "small": {
            "source": "embedded_photos",
            "size": 16,
            "train_per_class": 6,
            "test_per_class": 4,
            "attacks": ["badnets", "blend"],
        },
        "large": {
            "source": "embedded_photos",
            "size": 64,
            "train_per_class": 2,
            "test_per_class": 2,
            "attacks": ["badnets"],
        },
    },
    "triggers": {"badnets": {"size": 4, "margin": 1, "target_label": 0}},
    "manipulations": {},
    "dct": {"chunk_size": 5},
    "figure1": {"samples": 10, "vmin": None, "vmax": None},
}


def _workflow_copy(tmp_path: Path, config: dict) -> Path:
    """A copy of the workflow (as a fresh clone has it) with ``config`` as its default config."""
    for name in ("Snakefile", "rules", "workflow", "report", "profiles", "config"):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tmp_path / name)
        else:
            shutil.copy(source, tmp_path / name)
    shutil.copy(ROOT / "environment.yml", tmp_path / "environment.yml")
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    return tmp_path


def _snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*SNAKEMAKE, "--cores", "2", *args], cwd=workdir, capture_output=True, text=True
    )


@pytest.mark.workflow
def test_tiny_dag_runs_end_to_end(tmp_path):
    workdir = _workflow_copy(tmp_path, TINY)
    result = _snakemake(workdir)
    assert result.returncode == 0, result.stderr[-4000:]
    results = workdir / "results"

    meta = json.loads((results / "data/small/meta.json").read_text())
    x_test = np.load(results / "data/small/x_test.npy")
    assert x_test.dtype == np.uint8 and x_test.shape[1:] == (16, 16, 3)
    assert meta["counts"]["test"] == x_test.shape[0]

    poisoned = np.load(results / "poisoned/small/badnets/x_test.npy")
    # 4 px at 32 -> 2 px at 16, 1 px from the bottom-right corner
    assert (poisoned[:, 13:15, 13:15] == 255).all()
    assert np.load(results / "poisoned/large/badnets/x_test.npy").shape[1:] == (64, 64, 3)

    cache = np.load(results / "dct/small/clean.npy", mmap_mode="r")
    assert cache.dtype == np.float32 and cache.shape == x_test.shape
    sidecar = json.loads((results / "dct/small/clean.json").read_text())
    assert sidecar["dtype"] == "float32" and sidecar["device"] == "cpu"

    for name in ("small.png", "small.pdf", "large.png", "large.pdf"):
        assert (results / "figures/figure1" / name).stat().st_size > 1000
    assert (results / "triggers/small/blend.png").exists()
    assert (workdir / "logs/dct_cache/small/clean.log").read_text().strip()
    assert (results / "benchmarks/figure1/small.tsv").exists()

    again = _snakemake(workdir, "-n")
    assert "Nothing to be done" in again.stdout + again.stderr


@pytest.mark.workflow
def test_bad_config_key_stops_the_run_naming_it(tmp_path):
    config = json.loads(json.dumps(TINY))
    config["datasets"]["small"]["train_per_clas"] = 3
    workdir = _workflow_copy(tmp_path, config)
    result = _snakemake(workdir, "-n")
    assert result.returncode != 0
    assert "train_per_clas" in result.stderr + result.stdout
    assert not (workdir / "results").exists()


@pytest.mark.parametrize("name", ["config.yaml", "paper.yaml"])
def test_shipped_configs_dry_run_offline(tmp_path, name):
    """Downloads happen inside jobs, so listing the DAG needs no network, the paper's included."""
    shipped = yaml.safe_load((ROOT / "config" / name).read_text())
    workdir = _workflow_copy(tmp_path, shipped)
    result = _snakemake(workdir, "-n")
    assert result.returncode == 0, result.stderr[-4000:]
    for dataset in shipped["datasets"]:
        assert f"results/figures/figure1/{dataset}.png" in result.stdout
