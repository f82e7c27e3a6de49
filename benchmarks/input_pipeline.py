"""Throughput of the detector's input pipeline, measured on the same images in one run.

(a) the DCT: batched scipy.fft and torch (CPU, and GPU when present) against the authors'
    per-image, per-channel scipy.fftpack loop;
(b) the five random manipulations: vectorised over a batch against a per-image loop;
(c) the whole pipeline a detector trains on: half the batch manipulated, DCT, standardisation to a
    float32 tensor, against the target of 10x the 360 samples/s at which Table 7's cnn6 trains on
    2 CPU cores.

Usage: ``python benchmarks/input_pipeline.py [--out results/benchmarks/input_pipeline.csv]``.
Images are crops of scikit-image photographs (the demo's ``embedded_photos`` source).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from freqbackdoor.data.datasets import load_split, prepare
from freqbackdoor.detection.manipulation_batches import (
    apply_manipulations,
    apply_manipulations_loop,
)
from freqbackdoor.detection.manipulations import ManipulationParams, draw_parameters
from freqbackdoor.frequency.dct import dct2, dct2_reference_loop, dct2_torch

LOOP = "authors_fftpack_loop"
CNN6_CPU_SAMPLES_PER_S = 360.0  # Table 7's cnn6 training throughput on 2 CPU cores (issue 3)


def photo_crops(size: int, count: int, seed: int = 0) -> np.ndarray:
    """``count`` uint8 crops of scikit-image photographs at ``size`` x ``size``."""
    per_class = max(1, -(-count // 6))
    spec = {"source": "embedded_photos", "size": size, "train_per_class": per_class}
    spec["test_per_class"] = 1
    with tempfile.TemporaryDirectory() as tmp:
        prepare("bench", spec, Path(tmp) / "raw", Path(tmp) / "out", seed)
        images, _ = load_split(Path(tmp) / "out", "train", mmap=False)
    reps = -(-count // images.shape[0])
    return np.ascontiguousarray(np.concatenate([images] * reps)[:count])


def rate(fn: Callable[[], object], n_items: int, repeats: int = 3, sync: bool = False) -> float:
    """Best-of-``repeats`` items per second of ``fn`` (after one warm-up call)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        if sync:
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if sync:
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return n_items / best


def pipeline(images: np.ndarray, rng: np.random.Generator, params: ManipulationParams, mean, std):
    """One detector batch: manipulate half, DCT, standardise, as a float32 torch tensor."""
    n = images.shape[0]
    batch = images.copy()
    half = n // 2
    draw = draw_parameters(half, images.shape[1], images.shape[2], rng, params, pool_size=n)
    batch[half:] = apply_manipulations(images[half : half + half], draw, params, pool=images)
    coefficients = dct2(batch)
    coefficients -= mean
    coefficients /= std
    return torch.from_numpy(coefficients).permute(0, 3, 1, 2)


def measure(size: int, n: int, n_loop: int, cuda: bool) -> list[dict]:
    """Every stage at one image size; loops run on the first ``n_loop`` of the same images."""
    params = ManipulationParams()
    images = photo_crops(size, n)
    subset = images[:n_loop]
    rows = []

    def add(stage, method, per_s, baseline, baseline_name):
        speedup = per_s / baseline
        rows.append(
            {
                "size": size,
                "stage": stage,
                "method": method,
                "samples_per_s": per_s,
                "baseline": baseline_name,
                "speedup_vs_baseline": speedup,
            }
        )
        print(f"{size:4d} {stage:14s} {method:28s} {per_s:12.0f}/s {speedup:8.1f}x {baseline_name}")

    # (a) the DCT
    loop = rate(partial(dct2_reference_loop, subset), n_loop)
    add("dct", LOOP, loop, loop, LOOP)
    add("dct", "scipy_fft_batched", rate(partial(dct2, images), n), loop, LOOP)
    cpu = torch.from_numpy(images)
    add("dct", "torch_cpu_matmul", rate(partial(dct2_torch, cpu), n), loop, LOOP)
    if cuda:
        per_s = rate(partial(dct2_torch, cpu.cuda()), n, sync=True)
        add("dct", "torch_cuda_matmul", per_s, loop, LOOP)

    # (b) the manipulations, on identical draws
    draw_loop = draw_parameters(n_loop, size, size, np.random.default_rng(0), params)
    draw_all = draw_parameters(n, size, size, np.random.default_rng(0), params)
    base = rate(partial(apply_manipulations_loop, subset, draw_loop, params, pool=images), n_loop)
    add("manipulations", "per_image_loop", base, base, "per_image_loop")
    per_s = rate(partial(apply_manipulations, images, draw_all, params, pool=images), n)
    add("manipulations", "vectorised", per_s, base, "per_image_loop")

    # (c) the whole input pipeline
    coefficients = dct2(images[:1024])
    mean, std = coefficients.mean(axis=0), coefficients.std(axis=0) + 1e-6
    step = partial(pipeline, images, np.random.default_rng(1), params, mean, std)
    per_s = rate(step, n)
    add("pipeline", "manipulate+dct+standardise", per_s, CNN6_CPU_SAMPLES_PER_S, "cnn6_train_2cpu")
    return rows


def run(out: Path, threads: int | None) -> pd.DataFrame:
    if threads:
        torch.set_num_threads(threads)
    cuda = torch.cuda.is_available()
    rows = measure(32, 8192, 1024, cuda) + measure(224, 256, 32, cuda)
    table = pd.DataFrame(rows)
    table["device"] = torch.cuda.get_device_name() if cuda else "cpu"
    table["torch_threads"] = torch.get_num_threads()
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    print(f"wrote {out}")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks/input_pipeline.csv"))
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    run(args.out, args.threads)


if __name__ == "__main__":
    main()
