"""The GPU rehearsal: what a paper-scale run will cost, measured in at most 8 minutes on one GPU.

Before a lab spends days of GPU time on ``config/paper.yaml``, this script measures, on the
machine it runs on and in one run:

1. ``recipes``: every paper training recipe at the paper's batch sizes (``benchmarks/recipes.py``:
   accuracy after a few steps against chance, samples per second);
2. ``smooth``: Algorithm 1 the authors' way (image by image) against the batched sweep
   (``benchmarks/smooth_trigger.py``);
3. ``model_groups``: MNA's models trained stacked (``torch.func``) against one at a time
   (``benchmarks/model_groups.py``);
4. ``workflow``: the test suite's tiny workflow config run end to end with ``device`` set, so
   every GPU-capable rule has run on the device once;

then writes ``rehearsal.csv`` (one row per measured number, with the step that made it) and
``extrapolation.csv``: the paper DAG's training work per recipe (samples processed, from
``config/paper.yaml`` and the datasets' published sizes) divided by the measured throughput, and
the total in GPU hours. The extrapolation covers training, which dominates; scoring, DCT caches,
figures and tables are not in it. Each step has its own time limit and a failed or timed-out step
is recorded as such, so the other numbers still come back.

Usage: ``python benchmarks/gpu_rehearsal.py [--device cuda] [--out results/benchmarks/gpu]``;
``--device cpu`` checks the script itself on a machine without a GPU (slower, smaller budgets).
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]

#: Training images per paper dataset (torchvision's GTSRB split; PubFig83 90% of 13,838).
PAPER_TRAIN_IMAGES = {"cifar10": 50_000, "gtsrb": 26_640, "pubfig": 12_454}
#: Pixels relative to 32 x 32: a 224 px input costs about 49 times as much per sample.
PIXEL_FACTOR = {"cifar10": 1, "gtsrb": 1, "pubfig": (224 / 32) ** 2}


def _run(step: str, command: list[str], limit: float, log_dir: Path) -> dict:
    """Run ``command`` with a time limit; its output goes to ``log_dir/<step>.log``."""
    started = time.perf_counter()
    log_path = log_dir / f"{step}.log"
    with log_path.open("w") as log:
        try:
            code = subprocess.run(
                command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, timeout=limit
            ).returncode
            status = "ok" if code == 0 else f"exit {code}"
        except subprocess.TimeoutExpired:
            status = f"timed out after {limit:.0f} s"
    seconds = time.perf_counter() - started
    print(f"{step}: {status} in {seconds:.0f} s (log: {log_path})", flush=True)
    return {"step": step, "item": "status", "metric": status, "value": seconds, "unit": "s"}


def _tiny_config(device: str, path: Path) -> None:
    """The workflow test's tiny config with ``device`` set, as a YAML file."""
    sys.path.insert(0, str(ROOT / "tests"))
    try:
        import test_workflow  # noqa: PLC0415 - the tiny config lives with its test
    finally:
        sys.path.pop(0)
    path.write_text(yaml.safe_dump({**test_workflow.TINY, "device": device}, sort_keys=False))


def _workflow(device: str, limit: float, out: Path) -> dict:
    """The tiny workflow in a scratch copy of the repository, with ``device``."""
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch) / "repo"
        shutil.copytree(
            ROOT,
            work,
            ignore=shutil.ignore_patterns(
                ".git", ".venv", ".devsite", "results", "resources", ".snakemake", "logs"
            ),
        )
        config = work / "tiny.yaml"
        _tiny_config(device, config)
        cores = str(os.cpu_count() or 4)
        command = [sys.executable, "-m", "snakemake", "--cores", cores, "--configfile", str(config)]
        row = _run("workflow", [*command, "--directory", str(work)], limit, out)
        benchmarks = sorted((work / "results" / "benchmarks").rglob("*.tsv"))
        total = sum(float(pd.read_csv(b, sep="\t")["s"].iloc[0]) for b in benchmarks)
    row["item"] = f"tiny workflow, {len(benchmarks)} jobs, {total:.0f} job-s"
    return row


def paper_workload(config: dict) -> pd.DataFrame:
    """Training samples each paper recipe processes in the paper DAG, per dataset.

    One row per (recipe, dataset): ``samples`` (epochs x training samples x models) and
    ``pixel_factor`` (cost per sample relative to 32 px). Approximations are named in ``note``.
    """
    rows = []
    classifier = config["reference_classifier"]
    detector = config["detector"]
    for name, spec in config["datasets"].items():
        paper_name = spec.get("paper_name", name)
        if paper_name not in PAPER_TRAIN_IMAGES:
            continue  # test-only (TSRD)
        n = PAPER_TRAIN_IMAGES[paper_name]
        train = n * (1 - classifier.get("val_fraction", 0.1))
        factor = PIXEL_FACTOR[paper_name]
        rows.append(("reference_classifier", name, classifier["epochs"] * train, factor, ""))
        settings = {**detector, **spec.get("detector", {})}
        recipe = "detector" if settings["architecture"] != "linear" else "detector_linear"
        det_train = 2 * n * (1 - settings.get("val_fraction", 0.1))
        domains = 2 if config["detection"].get("image_domain", True) else 1
        rows.append(
            (recipe, name, domains * settings["epochs"] * det_train, factor, "DCT and pixel")
        )
    smooth = config["smooth"]
    for name in smooth["datasets"]:
        spec = config["datasets"][name]
        overrides = spec.get("smooth", {})
        models = 1 + len(overrides.get("naive", smooth["naive"]))
        models += len(overrides.get("classic", smooth["classic"])) + 1  # + the filtered model
        epochs = smooth["poisoned_model"].get("epochs", classifier["epochs"])
        n = PAPER_TRAIN_IMAGES[spec.get("paper_name", name)]
        rows.append(("poisoned_model", name, models * epochs * n * 0.9, 1, f"{models} models"))
    table5 = config["table5"]
    n = PAPER_TRAIN_IMAGES[config["datasets"][table5["dataset"]].get("paper_name")]
    others = len([a for a in table5["architectures"] if a != detector["architecture"]])
    rows.append(
        ("detector", f"table5 ({others} architectures)", others * table5["epochs"] * 2 * n, 1,
         "at cnn6's throughput (an upper bound: the others are smaller)")
    )  # fmt: skip
    mna = config.get("mna")
    if mna:
        training = mna["training"]
        for name in mna["datasets"]:
            n = PAPER_TRAIN_IMAGES[config["datasets"][name].get("paper_name", name)]
            shadow = sum(mna["shadow_models"].values()) + sum(
                mna.get("validation_models", {}).values()
            )
            shadow_epochs = training.get("shadow_epochs", training.get("epochs", 100))
            rows.append(
                ("mna_shadow_model", name, shadow * shadow_epochs * mna["shadow_share"] * n, 1,
                 f"{shadow} models")
            )  # fmt: skip
            targets = mna["target_models"]
            count = targets["clean"] + targets["smooth"] + targets["classic"] * len(mna["classic"])
            target_epochs = max(1, int(shadow_epochs * mna["shadow_share"] / mna["target_share"]))
            rows.append(
                ("mna_target_model", name, count * target_epochs * mna["target_share"] * n, 1,
                 f"{count} models")
            )  # fmt: skip
    return pd.DataFrame(rows, columns=["recipe", "dataset", "samples", "pixel_factor", "note"])


def extrapolate(workload: pd.DataFrame, recipes: pd.DataFrame) -> pd.DataFrame:
    """GPU hours per workload row: samples x pixel factor / measured samples per second."""
    speed = dict(zip(recipes["recipe"], recipes["samples_per_second"], strict=True))
    table = workload.copy()
    table["samples_per_second"] = [
        speed.get(r, speed.get("detector") if r.startswith("detector") else math.nan)
        for r in table["recipe"]
    ]
    table["hours"] = table["samples"] * table["pixel_factor"] / table["samples_per_second"] / 3600
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (the rehearsal) or cpu (a check)")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "benchmarks" / "gpu")
    parser.add_argument("--steps", type=int, default=None, help="optimiser steps per recipe")
    args = parser.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    gpu = args.device.startswith("cuda")
    steps = args.steps or (150 if gpu else 20)
    device = ["--device", args.device]
    # (step, script and its arguments, time limit on a GPU, on a CPU); each writes <step>.csv
    benchmarks = [
        ("recipes", ["benchmarks/recipes.py", "--config", "config/paper.yaml", *device,
                     "--steps", str(steps)], 120, 600),
        ("smooth", ["benchmarks/smooth_trigger.py", *device], 120, 300),
        ("model_groups", ["benchmarks/model_groups.py", *device, "--groups", "1", "8",
                          "--repeats", "1"], 45, 300),
    ]  # fmt: skip
    rows = []
    for step, command, gpu_limit, cpu_limit in benchmarks:
        table = out / f"{step}.csv"
        command = [sys.executable, *command, "--out", str(table)]
        rows.append(_run(step, command, gpu_limit if gpu else cpu_limit, out))
    rows.append(_workflow(args.device, 240 if gpu else 900, out))
    for step, *_ in benchmarks:
        table = out / f"{step}.csv"
        if not table.is_file():
            continue
        for record in pd.read_csv(table).to_dict("records"):
            label = str(record.get("recipe", record.get("mode", "")))
            rows += [
                {"step": step, "item": label, "metric": key, "value": value, "unit": ""}
                for key, value in record.items()
                if isinstance(value, int | float) and not isinstance(value, bool)
            ]
    with (out / "rehearsal.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["step", "item", "metric", "value", "unit"])
        writer.writeheader()
        writer.writerows(rows)
    if (out / "recipes.csv").is_file():
        config = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
        table = extrapolate(paper_workload(config), pd.read_csv(out / "recipes.csv"))
        table.to_csv(out / "extrapolation.csv", index=False)
        print(table.to_string(index=False))
        print(f"paper DAG training on {args.device}: {table['hours'].sum():.1f} h (extrapolated)")
    print(f"wrote {out / 'rehearsal.csv'}")


if __name__ == "__main__":
    main()
