"""Every training recipe of a config after N steps: metric against chance, samples per second.

For each recipe that :mod:`freqbackdoor.recipes` resolves from ``--config`` (reference
classifier, detector, poisoned model, transfer fine-tuning, smooth upgrade, MNA shadow and
target model, meta-classifier), at that config's optimiser, learning rate and batch size, the
recipe is trained for about ``--steps`` optimiser steps on the demo's embedded datasets
(photos32 stands in for every recipe's dataset, digits32 is the transfer target; prepared into
``--data-dir``), on the CPU and on CUDA when present (``--device all``, the default). The table
gives per recipe and device: steps and epochs run, the metric (before, for a fine-tuning) and
its chance level, the first and last epoch's mean training loss, training samples per second
(input pipeline included, evaluation excluded), seconds, and secondary numbers (``notes``: a
poisoned model's clean accuracy, a target model's ASR, the upgrade's clean false-positive
rates). The meta-classifier's small models train for 4 epochs whatever ``--steps``.

Usage: ``python benchmarks/recipes.py [--config config/paper.yaml] [--device cpu|cuda|auto|all]
[--steps 60] [--threads 1] [--out results/benchmarks/recipes.csv]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
import yaml

from freqbackdoor.recipes import RECIPES, prepare_splits, run_all

COLUMNS = (
    "recipe",
    "device",
    "optimizer",
    "lr",
    "batch_size",
    "epochs",
    "steps",
    "metric",
    "before",
    "value",
    "chance",
    "first_loss",
    "last_loss",
    "samples_per_second",
    "seconds",
    "notes",
    "source",
)


def notes(extra: dict) -> str:
    """A record's secondary numbers (clean accuracy, ASR, false-positive rates) in one cell."""
    return ", ".join(
        f"{key} {value:.3f}"
        for key, value in extra.items()
        if isinstance(value, float) and key != "clean_chance"
    )


def devices(choice: str) -> list[torch.device]:
    """The devices ``--device`` names: ``all`` is the CPU plus CUDA when present."""
    cuda = torch.cuda.is_available()
    if choice == "all":
        return [torch.device("cpu")] + ([torch.device("cuda")] if cuda else [])
    if choice == "auto":
        return [torch.device("cuda" if cuda else "cpu")]
    if choice == "cuda" and not cuda:
        raise SystemExit("--device cuda: no CUDA device is available")
    return [torch.device(choice)]


def run(args: argparse.Namespace) -> pd.DataFrame:
    if args.threads:
        torch.set_num_threads(args.threads)
    config = yaml.safe_load(args.config.read_text())
    data_config = yaml.safe_load(args.data_config.read_text())
    with tempfile.TemporaryDirectory() as scratch:
        splits = prepare_splits(
            data_config, ["photos32", "digits32"], args.data_dir or Path(scratch)
        )
        rows = []
        for device in devices(args.device):
            started = time.perf_counter()
            records = run_all(
                config,
                splits["photos32"],
                splits["digits32"],
                steps=args.steps,
                device=device,
                names=args.recipes,
            )
            for record in records:
                row = record.as_dict()
                row["notes"] = notes(record.extra)
                row["device"] = (
                    torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
                )
                rows.append(row)
                print({key: row[key] for key in COLUMNS}, flush=True)
            print(f"{device}: {time.perf_counter() - started:.1f} s for every recipe", flush=True)
    table = pd.DataFrame(rows)
    shown = table[list(COLUMNS)].copy()
    for key in ("before", "value", "chance", "first_loss", "last_loss"):
        shown[key] = shown[key].map(lambda v: "" if v is None or pd.isna(v) else f"{v:.3f}")
    shown["samples_per_second"] = shown["samples_per_second"].round(1)
    shown["seconds"] = shown["seconds"].round(2)
    print()
    print(
        f"{args.config}: about {args.steps} steps per recipe on the demo's photos32 (digits32: "
        f"transfer target), {torch.get_num_threads()} torch thread(s)"
    )
    print(shown.drop(columns="source").to_markdown(index=False))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.out, index=False)
        print(f"wrote {args.out}")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("config/paper.yaml"))
    parser.add_argument(
        "--data-config",
        type=Path,
        default=Path("config/config.yaml"),
        help="config whose photos32 and digits32 specs build the data (the demo's)",
    )
    parser.add_argument("--data-dir", type=Path, default=None, help="default: a temporary one")
    parser.add_argument("--device", choices=("cpu", "cuda", "auto", "all"), default="all")
    parser.add_argument("--steps", type=int, default=60, help="optimiser steps per recipe")
    parser.add_argument("--recipes", nargs="+", choices=RECIPES, default=list(RECIPES))
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: default)")
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks/recipes.csv"))
    run(parser.parse_args())


if __name__ == "__main__":
    main()
