"""The DAG on a tiny config (a real Snakemake run), and offline dry runs of the shipped configs."""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from freqbackdoor.triggers.registry import Trigger

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
#: The tiny config (a file, so a person can run it: snakemake --configfile tests/configs/tiny.yaml).
TINY = yaml.safe_load((ROOT / "tests" / "configs" / "tiny.yaml").read_text())


def _snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*SNAKEMAKE, "--cores", "2", *args], cwd=workdir, capture_output=True, text=True
    )


@pytest.mark.workflow
def test_tiny_dag_runs_end_to_end(tmp_path, workflow_copy):
    workdir = workflow_copy(tmp_path, TINY)
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
    for attack in TINY["datasets"]["small"]["attacks"]:
        assert (results / f"triggers/small/{attack}.png").stat().st_size > 100
    assert (results / "triggers/large/gan_tri.npz").exists()

    # the reference classifiers: a sidecar with the clean test accuracy, and Table 8
    for dataset in ("small", "large"):
        model_meta = json.loads((results / f"models/{dataset}/reference_cnn.json").read_text())
        assert 0.0 <= model_meta["metrics"]["test_acc"] <= 1.0
    table8 = (results / "tables/table8.md").read_text()
    assert "Conv" in table8 or "conv" in table8

    # optimised triggers record that they reduced their objective
    trojan = Trigger.load(results / "triggers/small/trojan_sq.npz")
    assert trojan.meta["loss_final"] < trojan.meta["loss_initial"]
    l0 = np.load(results / "poisoned/small/l0_inv/x_test.npy")
    assert ((l0 != x_test).any(axis=3).sum(axis=(1, 2)) <= 2).all()

    # the high-frequency table: one row per (dataset, attack) with an interval around the ratio
    ratios = pd.read_csv(results / "tables/highfreq_ratio.csv")
    assert len(ratios) == 10  # small 5, large 2, digits 1, gray 2
    assert ((ratios["ci_low"] <= ratios["ratio"]) & (ratios["ratio"] <= ratios["ci_high"])).all()
    for figure in ("figure2", "figure5", "pairs"):
        for name in ("small.png", "small.pdf", "large.png"):
            assert (results / "figures" / figure / name).stat().st_size > 1000
    assert (workdir / "logs/prepared_dataset/small.log").read_text().strip()
    # the DCT caches come with the test sets: the clean one's and each poisoned one's
    clean_dct = np.load(results / "dct/small/clean.npy", mmap_mode="r")
    assert clean_dct.dtype == np.float32 and clean_dct.shape == x_test.shape
    badnets_dct = json.loads((results / "dct/small/badnets.json").read_text())
    assert badnets_dct["variant"] == "badnets" and badnets_dct["shape"] == list(x_test.shape)
    assert (results / "benchmarks/figure1/small.tsv").exists()

    # the detector stage: Tables 1, 5, 6, 7, their paper comparisons, ROC curves, Figure 6
    table1 = pd.read_csv(results / "tables/table1.csv")
    assert set(table1.dataset) == {"small", "large"} and len(table1) == 7
    assert table1[["acc", "bdr", "fpr"]].apply(lambda c: c.between(0, 100)).all().all()
    assert "acc_star" in table1.columns  # the image-domain comparison group
    versus = pd.read_csv(results / "tables/table1_vs_paper.csv")
    paper_badnets = versus[
        (versus.dataset == "cifar10") & (versus.row == "badnets") & (versus.column == "acc")
    ]
    assert paper_badnets.paper.iloc[0] == pytest.approx(94.10)
    assert np.isfinite(paper_badnets.reproduced.iloc[0])
    table5 = pd.read_csv(results / "tables/table5.csv")
    assert list(table5.architecture) == ["linear", "cnn3_kmax32"]
    assert table5.parameters.iloc[0] == 16 * 16 * 3 * 2 + 2
    for name in ("table6.md", "table7.md", "table6_vs_paper.md", "table7_vs_paper.md"):
        assert (results / "tables" / name).stat().st_size > 100
    assert "292,002" in (results / "tables/table7.md").read_text()
    sidecar = json.loads((results / "detectors/small/cnn3_kmax32_dct.json").read_text())
    assert sidecar["domain"] == "dct" and sidecar["calibration"]["threshold"] is not None
    for name in ("roc/small_cnn3_kmax32.png", "roc/large_linear.png", "figure6.png"):
        assert (results / "figures" / name).stat().st_size > 1000
    assert (results / "tables/figure6_vs_paper.md").stat().st_size > 100
    widths = pd.read_csv(results / "tables/figure6.csv")
    assert sorted(widths.width.unique()) == [16, 32]

    # transfer (Tables 2 and 4, the budget figure): tuning rows never scored, weights changed
    split = json.loads((results / "transfer/gray/small/tuned_b4_r0/split.json").read_text())
    assert len(split["fine_tune_rows"]) == 4 and len(split["test_rows"]) == 8
    assert not set(split["fine_tune_rows"]) & set(split["test_rows"])
    assert json.loads((results / "data/gray/meta.json").read_text())["counts"]["train"] == 0
    tuned = json.loads((results / "transfer/digits/small/tuned_b4_r0/detector.json").read_text())
    assert (
        tuned["fine_tune_rows"]
        == json.loads((results / "transfer/digits/small/raw_b4_r0/split.json").read_text())[
            "fine_tune_rows"
        ]
    )
    table2 = pd.read_csv(results / "tables/table2.csv")
    assert list(table2.column.unique()) == ["small", "small+Tune"]
    assert (table2.n_clean == 16).all()  # 20 test digits minus the 4 tuned on
    versus = pd.read_csv(results / "tables/table2_vs_paper.csv")
    row = versus[(versus.row == "cifar10_tune") & (versus.column == "acc:badnets")].iloc[0]
    assert row.paper == pytest.approx(89.44) and np.isfinite(row.reproduced)
    combined = json.loads((results / "detectors/small+digits/cnn3_kmax32_dct.json").read_text())
    assert len(combined["training_sets"]) == 2
    assert (results / "tables/table4_vs_paper.md").stat().st_size > 100
    budget = pd.read_csv(results / "tables/transfer_budget.csv")
    assert sorted(budget[budget.stage == "tuned"].budget) == [2, 4]
    assert (results / "figures/transfer_budget.png").stat().st_size > 1000

    # Section 5: the smooth trigger, poisoned models, the detector upgrade, table and figures
    smooth = Trigger.load(results / "triggers/small/smooth.npz")
    assert smooth.mode == "normalise" and 0 <= smooth.pattern.min() <= smooth.pattern.max() <= 0.2
    assert smooth.meta["history"][0]["pass"] == 0 and smooth.meta["best_pass"] >= 0
    lowpass = Trigger.load(results / "triggers/small/lowpass_noise1.npz")
    assert lowpass.name == "lowpass_noise1" and lowpass.meta["builder"] == "lowpass"
    history = pd.read_csv(results / "poisoned_models/small/smooth_history.csv")
    assert list(history.epoch) == [1, 2] and history[["asr", "clean_acc"]].notna().all().all()
    filtered = json.loads((results / "poisoned_models/small/filtered/smooth.json").read_text())
    assert filtered["filtered"]["flagged"] >= filtered["filtered"]["removed_poisoned"] >= 0
    poisoned_models = pd.read_csv(results / "tables/poisoned_models.csv")
    assert len(poisoned_models) == 4  # smooth, one naive, badnets, smooth on the filtered set
    assert poisoned_models[["asr", "clean_acc"]].apply(lambda c: c.between(0, 100)).all().all()
    detection = pd.read_csv(results / "smooth/small/detection.csv")
    assert set(detection.stage) == {"section4", "tuned_smooth", "tuned_lowpass_noise1"}
    versus = pd.read_csv(results / "tables/section5_vs_paper.csv")
    row = versus[(versus.dataset == "cifar10") & (versus.column == "asr")].iloc[0]
    assert row.paper == pytest.approx(97.25) and 0 <= row.reproduced <= 100
    before = versus[(versus.row == "detector_before_upgrade") & (versus.column == "bdr")]
    assert np.isfinite(before[before.dataset == "cifar10"].reproduced.iloc[0])
    for figure in ("figure3", "figure4", "poisoning"):
        assert (results / "figures" / figure / "small.png").stat().st_size > 1000

    # Section 5.4: MNA's shadow and target models, the meta-classifier, table, comparison, ROC
    jumbo = json.loads((results / "mna/small/shadow/jumbo_0.json").read_text())
    assert [m["trigger"]["family"] in ("patch", "blend") for m in jumbo["models"]] == [True] * 2
    smooth_shadow = json.loads((results / "mna/small/shadow/smooth_0.json").read_text())
    assert [m["trigger"]["family"] for m in smooth_shadow["models"]] == ["lowpass", "algorithm1"]
    mna = pd.read_csv(results / "tables/mna.csv")
    assert set(mna.targets) == {"smooth", "badnets"}
    assert mna[["auc_before", "auc_after"]].stack().between(0, 1).all()
    versus = pd.read_csv(results / "tables/mna_vs_paper.csv")
    before = versus[(versus.row == "smooth") & (versus.column == "auc_before")].iloc[0]
    assert before.paper == pytest.approx(0.0776) and 0 <= before.reproduced <= 1
    assert (results / "figures/mna_roc/small.png").stat().st_size > 1000

    # The report: every comparison file's rows in one table
    report = pd.read_csv(results / "report/paper_vs_reproduced.csv")
    assert {"table1", "table5", "table7", "section5", "mna", "figure6"} <= set(report.artifact)
    assert len(report) == sum(
        len(pd.read_csv(p)) for p in (results / "tables").glob("*_vs_paper.csv")
    )
    assert "judged numbers" in (results / "report/paper_vs_reproduced.md").read_text()

    again = _snakemake(workdir, "-n")
    assert "Nothing to be done" in again.stdout + again.stderr

    # a detector copied over another's file (its own sha256 and shapes agree) is refused
    detectors = results / "detectors/small"
    for ext in ("pt", "json"):
        shutil.copy(detectors / f"linear_dct.{ext}", detectors / f"cnn3_kmax32_dct.{ext}")
    swapped = _snakemake(workdir, "results/detection/small/cnn3_kmax32_dct/metrics.csv")
    output = swapped.stdout + swapped.stderr
    assert swapped.returncode != 0
    assert "cnn3_kmax32_dct.json: checkpoint is 'linear_dct.pt'" in output
    assert not (results / "detection/small/cnn3_kmax32_dct/metrics.csv").exists()


@pytest.mark.workflow
def test_bad_config_key_stops_the_run_naming_it(tmp_path, workflow_copy):
    config = json.loads(json.dumps(TINY))
    config["datasets"]["small"]["train_per_clas"] = 3
    workdir = workflow_copy(tmp_path, config)
    result = _snakemake(workdir, "-n")
    output = result.stderr + result.stdout
    assert result.returncode != 0
    assert "datasets.small: 'train_per_clas' is not one of" in output
    assert len(output.splitlines()) < 15  # not the schema and the config (about 2,000 lines)
    assert not (workdir / "results").exists()


@pytest.mark.parametrize("name", ["config.yaml"])  # paper.yaml: tests/test_profiles.py
def test_shipped_configs_dry_run_offline(tmp_path, name, workflow_copy):
    """Downloads happen inside jobs, so listing the DAG needs no network, the paper's included."""
    shipped = yaml.safe_load((ROOT / "config" / name).read_text())
    workdir = workflow_copy(tmp_path, shipped)
    result = _snakemake(workdir, "-n")
    assert result.returncode == 0, result.stderr[-4000:]
    for dataset in shipped["datasets"]:
        assert f"results/figures/figure1/{dataset}.png" in result.stdout


@pytest.mark.workflow
def test_a_changed_imagefolder_rebuilds_its_dataset(tmp_path, workflow_copy):
    """Files added to or edited in an imagefolder's root make prepared_dataset run again."""
    root = tmp_path / "images"
    for split in ("train", "test"):
        for c, cls in enumerate(("cats", "dogs")):
            (root / split / cls).mkdir(parents=True)
            for i in range(3):
                image = np.full((20, 20, 3), 40 * c + 10 * i, dtype=np.uint8)
                Image.fromarray(image).save(root / split / cls / f"{i}.png")
    config = json.loads(json.dumps(TINY))
    config["datasets"]["folder"] = {"source": "imagefolder", "root": str(root), "size": 16, "attacks": ["badnets"]}  # fmt: skip
    workdir = workflow_copy(tmp_path / "wf", config)
    target = "results/data/folder/meta.json"
    first = _snakemake(workdir, target)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "Nothing to be done" in _snakemake(workdir, "-n", target).stdout
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(root / "train" / "cats" / "new.png")
    planned = _snakemake(workdir, "-n", target)
    assert "prepared_dataset" in planned.stdout and "Params have changed" in planned.stdout
    assert _snakemake(workdir, target).returncode == 0
    meta = json.loads((workdir / target).read_text())
    assert meta["counts"]["train"] == 7


@pytest.mark.workflow
def test_a_bad_input_in_a_job_is_one_message_and_the_traceback_stays_in_its_log(
    tmp_path, workflow_copy
):
    """A checksum mismatch (a user's error, not a bug): said once, no traceback on screen."""
    archive = tmp_path / "faces.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("faces/a/0.png", b"not checked: the checksum fails first")
    config = json.loads(json.dumps(TINY))
    config["datasets"]["faces"] = {"source": "url", "url": archive.as_uri(), "sha256": "0" * 64, "size": 16, "layout": "class_folders", "attacks": ["badnets"]}  # fmt: skip
    workdir = workflow_copy(tmp_path / "wf", config)
    result = _snakemake(workdir, "resources/raw/faces")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert output.count("ChecksumError: dataset 'faces'") == 1, output[-3000:]
    assert "Traceback" not in output
    log = (workdir / "logs/raw_dataset/faces.log").read_text()
    assert "Traceback" in log and "ChecksumError" in log
    assert not (workdir / "resources/raw/faces").exists()


def _authors_config(use: str, reference: list[str] | None = None) -> dict:
    """The tiny config at 32 px (the authors' detectors read 32 x 32 x 3 DCT spectra)."""
    config = json.loads(json.dumps(TINY))
    for name in ("small", "digits", "gray"):
        config["datasets"][name]["size"] = 32
    config["datasets"]["small"]["attacks"] = ["badnets", "blend", "trojan_sq"]
    config["authors_models"] = {"use": use, "reference_classifier": reference or []}
    return config


def test_authors_models_join_the_dag_only_when_placed_or_fetched(tmp_path, workflow_copy):
    """``placed`` without the files plans nothing of theirs; ``fetch`` plans every use."""
    targets = ("results/tables/table1.md", "results/tables/table2.md")
    placed = workflow_copy(tmp_path / "placed", _authors_config("placed"))
    result = _snakemake(placed, "-n", *targets)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "results/authors/" not in result.stdout and "/authors/" not in result.stdout

    fetch = workflow_copy(tmp_path / "fetch", _authors_config("fetch", ["small"]))
    result = _snakemake(fetch, "-n", *targets, "results/tables/authors_detectors.md")
    assert result.returncode == 0, result.stderr[-3000:]
    for planned in (
        "results/authors/authors_cifar10.pt",
        "results/authors/authors_cifar10_tuned.pt",
        "results/authors/authors_cifar10_classifier.pt",  # the small dataset's trojan_sq
        "results/detection/small/authors/authors_cifar10/metrics.csv",
        "results/detection/small/authors/authors_cifar10_tuned/scores.npz",
        "results/transfer/digits/authors_cifar10/tuned_b4_r0/metrics.csv",
    ):
        assert planned in result.stdout, planned
    assert "results/detection/large/authors" not in result.stdout  # 64 px: not theirs to read

    bad = workflow_copy(tmp_path / "bad", _authors_config("none", ["small"]))
    result = _snakemake(bad, "-n")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "authors_models.reference_classifier: 'small' needs authors_models.use" in output
    assert "Traceback" not in output


@pytest.mark.workflow
def test_authors_detectors_beside_ours_in_table1(tmp_path, workflow_copy):
    """With the authors' files placed: their detectors scored by the same rules as ours."""
    folder = os.environ.get("FREQBACKDOOR_AUTHORS_MODELS")
    if not folder:
        pytest.skip("FREQBACKDOOR_AUTHORS_MODELS is not set: the authors' model files are absent")
    config = _authors_config("placed", ["small"])
    config["detection"].update(datasets=["small"], image_domain=False)  # a short run
    workdir = workflow_copy(tmp_path, config)
    placed = workdir / "resources" / "raw" / "authors_models"
    placed.mkdir(parents=True)
    for name in ("6_CNN_CIF1R10.h5py", "Tuned_CIFAR10.h5py", "cifar10_model.h5"):
        shutil.copy(Path(folder) / name, placed / name)
    targets = ("table1", "authors_detectors")  # the transfer columns: the dry run above
    result = _snakemake(workdir, *[f"results/tables/{t}.md" for t in targets])
    assert result.returncode == 0, result.stderr[-4000:]
    table1 = pd.read_csv(workdir / "results/tables/table1.csv")
    assert set(table1.dataset) == {"small"} and table1.bdr_authors.notna().all()
    assert "BDR (authors')" in (workdir / "results/tables/table1.md").read_text()
    comparison = pd.read_csv(workdir / "results/tables/authors_detectors.csv")
    assert set(comparison.detector) == {"cnn3_kmax32", "authors_cifar10", "authors_cifar10_tuned"}
    assert comparison[~comparison.ours].auc_diff_low.le(comparison[~comparison.ours].auc_diff).all()
    sidecar = json.loads((workdir / "results/authors/authors_cifar10.json").read_text())
    assert sidecar["provenance"]["sha256"].startswith("3abdc218")
    # the small dataset's Trojan trigger was optimised on the authors' classifier
    log = (workdir / "logs/trigger/small/trojan_sq.log").read_text()
    assert "results/authors/authors_cifar10_classifier.pt" in log
