"""Detector training throughput with the input pipeline included, against the network alone.

For Table 7's ``cnn6_kmax128`` at 32x32 and Table 6's ``linear`` at 224x224, on the CPU and on a
GPU when one is present, measured in one run on the same images:

- ``pipeline``: :func:`freqbackdoor.detection.detector.train_detector` end to end (manipulated copy,
  uint8 gather, DCT on the device, standardisation, forward, backward, Adam step), in training
  samples per second;
- ``network only``: the same network's forward/backward/step on a batch already on the device,
  the upper bound the pipeline is compared with (ratio = pipeline / network only).

Usage: ``python benchmarks/detector_training.py [--out results/benchmarks/detector_training.csv]``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import torch
from input_pipeline import photo_crops
from torch.nn import functional as F

from freqbackdoor.detection.detector import Detector, DetectorSettings, train_detector

CASES = (("cnn6_kmax128", 32, 2048, 128), ("linear", 224, 256, 64))


def network_only(architecture: str, size: int, batch: int, device: torch.device) -> float:
    """Training samples per second of the bare network on a resident random batch."""
    model = Detector(2, size, architecture, "dct").to(device).train()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, 2, (batch,), device=device)
    steps = 20 if device.type == "cuda" else 5
    for i in range(steps + 2):
        if i == 2:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        optimiser.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimiser.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - start)


def run(out: Path, threads: int | None) -> pd.DataFrame:
    if threads:
        torch.set_num_threads(threads)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    rows = []
    for architecture, size, count, batch in CASES:
        images = photo_crops(size, count)
        for device in devices:
            settings = DetectorSettings(
                architecture=architecture, epochs=2, batch_size=batch, val_fraction=0.0
            )
            _, history = train_detector(images, settings, "dct", device=device)
            bare = network_only(architecture, size, batch, device)
            rows.append(
                {
                    "architecture": architecture,
                    "size": size,
                    "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
                    "batch_size": batch,
                    "pipeline_samples_per_s": history["samples_per_second"],
                    "network_only_samples_per_s": round(bare, 1),
                    "ratio": round(history["samples_per_second"] / bare, 3),
                    "torch_threads": torch.get_num_threads(),
                }
            )
            print(rows[-1])
    table = pd.DataFrame(rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    print(f"wrote {out}")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=Path("results/benchmarks/detector_training.csv")
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    run(args.out, args.threads)


if __name__ == "__main__":
    main()
