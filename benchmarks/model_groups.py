"""Models per hour of MNTD-style group training: stacked (``vmap``) against one model at a time.

:func:`freqbackdoor.models.groups.train_model_group` trains K classifiers of MNA's recipe (MNTD's
CIFAR-10 network, ``--architecture``), each on its own synthetic uint8 set (N=350 32x32 images
per model, 10 classes, batch 100, 2 epochs, Adam by default), sequentially and stacked, in the
same run, on the same kind of data and seeds.

Each K is run ``--repeats`` times in pairs (the two modes back to back, alternating which goes
first), after an untimed warm-up group of one model per mode. The table gives the median wall
time, models per hour and the median over the pairs of the stacked/sequential ratio of models
per hour. ``cpu_seconds`` is the process's CPU time (all threads): on an idle machine it is
about ``--threads`` times the wall time, so a much smaller share means other jobs shared the
cores and the absolute numbers are low (the paired ratio suffers less).

Usage: ``python benchmarks/model_groups.py [--groups 1 4 8] [--repeats 3] [--device cpu]
[--threads 2] [--architecture mntd_cifar10] [--out results/benchmarks/model_groups.csv]``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from freqbackdoor.frequency.dct import resolve_device
from freqbackdoor.models.classifier import build_model
from freqbackdoor.models.groups import train_model_group  # also registers mntd_cifar10
from freqbackdoor.models.training import TrainSettings


def synthetic_sets(k: int, n: int, size: int, classes: int, seed: int) -> tuple[list, list]:
    """K random uint8 ``n x size x size x 3`` training sets with random labels."""
    rng = np.random.default_rng(seed)
    xs = [rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8) for _ in range(k)]
    ys = [rng.integers(0, classes, size=n) for _ in range(k)]
    return xs, ys


def time_group(
    k: int, stacked: bool, settings: TrainSettings, args: argparse.Namespace
) -> dict[str, Any]:
    """Train a fresh group of ``k`` models on new synthetic sets; its history plus CPU time."""
    xs, ys = synthetic_sets(k, args.samples, args.size, args.classes, seed=k)
    models = [build_model(args.architecture, args.classes, args.size, seed=i) for i in range(k)]
    cpu_start = time.process_time()
    history = train_model_group(
        models, xs, ys, settings, list(range(k)), args.device, stacked=stacked
    )
    history["cpu_seconds"] = time.process_time() - cpu_start
    return history


def run(args: argparse.Namespace) -> pd.DataFrame:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    settings = TrainSettings(
        epochs=args.epochs, batch_size=args.batch_size, lr=1e-3, optimizer=args.optimizer
    )
    for stacked in (False, True):  # warm-up: first-call costs (allocator, vmap tracing, cudnn)
        time_group(1, stacked, settings, args)
    rows = []
    for k in args.groups:
        runs: dict[str, list[dict[str, Any]]] = {"sequential": [], "stacked": []}
        ratios = []
        for repeat in range(args.repeats):
            # Alternate which mode goes first, and pair the two runs of a round, so that a
            # change in the machine's load hits both modes alike.
            order = (False, True) if repeat % 2 == 0 else (True, False)
            pair = {}
            for stacked in order:
                history = time_group(k, stacked, settings, args)
                pair[history["mode"]] = history
                runs[history["mode"]].append(history)
            ratios.append(
                pair["stacked"]["models_per_hour"] / pair["sequential"]["models_per_hour"]
            )
        for mode in ("sequential", "stacked"):
            seconds = float(np.median([h["seconds"] for h in runs[mode]]))
            rows.append(
                {
                    "mode": mode,
                    "K": k,
                    "seconds": round(seconds, 2),
                    "cpu_seconds": round(
                        float(np.median([h["cpu_seconds"] for h in runs[mode]])), 2
                    ),
                    "models_per_hour": round(k * 3600 / seconds, 1),
                    "samples_per_s": round(k * args.samples * args.epochs / seconds, 1),
                    "ratio_stacked_over_sequential": round(float(np.median(ratios)), 3),
                    "device": torch.cuda.get_device_name(device)
                    if device.type == "cuda"
                    else "cpu",
                    "torch_threads": torch.get_num_threads(),
                }
            )
            print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    print()
    print(
        f"{args.architecture}, {args.samples} images of {args.size}x{args.size} per model, "
        f"batch {args.batch_size}, "
        f"{args.epochs} epochs, {args.optimizer}, {torch.get_num_threads()} torch threads, "
        f"medians of {args.repeats} paired run(s)"
    )
    print(table.to_markdown(index=False))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.out, index=False)
        print(f"wrote {args.out}")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, nargs="+", default=[1, 4, 8], help="values of K")
    parser.add_argument("--samples", type=int, default=350, help="training images per model")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--architecture", default="mntd_cifar10", help="a MODELS name")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--repeats", type=int, default=3, help="paired runs per K (medians)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (0: default)")
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks/model_groups.csv"))
    run(parser.parse_args())


if __name__ == "__main__":
    main()
