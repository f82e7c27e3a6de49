"""Algorithm 1 in its two modes, the authors' sequential search against the batched one.

Both modes run in the same process on the same inputs, on the CPU and on a GPU when one is
present: the demo's photos32 set (crops of scikit-image photographs, 7 classes) and Table 8's
classifier trained on it with the demo's recipe (``config/config.yaml``: ``reference_classifier``),
the search images drawn as the workflow draws them (a seeded sample of
``trigger_context_samples`` training images), ``triggers.smooth`` of the demo config with only
``mode`` changed (and ``--samples``/``--max-passes`` when given). Each mode runs the whole
search, as the ``trigger`` rule does, so the table shows what a user waits for:

- ``seconds``: the whole search (best of ``--repeats``; the search is deterministic on the CPU);
  ``passes`` over the search images and ``images/s``: images swept per second (passes times
  ``samples`` over the seconds);
- ``rate (own)``: the rate the mode stops on (``authors``: the share of the search images whose
  label ``x + v`` changes; ``batched``: the held-out error rate against ``M(x)``), whether it
  reached ``fooling_rate`` and why the search stopped;
- the same two measures for both triggers, so the modes compare: ``search x+v`` (the authors'
  fooling rate) and ``held-out M(x+v)`` (the batched mode's ``Err``, the evaluation insertion).

Usage: ``python benchmarks/smooth_trigger.py [--device auto] [--threads 1] [--repeats 1]
[--samples N] [--max-passes N] [--epochs N] [--out results/benchmarks/smooth_trigger.csv]``;
prints a Markdown table. ``--threads 1`` by default: the authors' mode runs many tiny
single-image operations, and on a busy machine waking a second thread for each costs more
than the operation.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from freqbackdoor.data.datasets import load_split, prepare
from freqbackdoor.frequency.spectra import sample_indices
from freqbackdoor.models.classifier import build_model, images_to_tensor
from freqbackdoor.models.training import TrainSettings, train_classifier
from freqbackdoor.triggers.filters import patch_smooth
from freqbackdoor.triggers.smooth import SmoothSettings, generate_smooth_trigger

CONFIG = Path(__file__).resolve().parents[1] / "config" / "config.yaml"
DATASET = "photos32"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def demo_inputs(epochs: int | None) -> tuple[torch.nn.Module, np.ndarray, dict, int]:
    """The demo's photos32 training set, its Table 8 classifier (CPU) and the search images."""
    config = yaml.safe_load(CONFIG.read_text())
    spec = config["datasets"][DATASET]
    seed = int(config["seed"])
    with tempfile.TemporaryDirectory() as tmp:
        meta = prepare(DATASET, spec, Path(tmp) / "raw", Path(tmp) / "out", seed)
        x_train, y_train = load_split(Path(tmp) / "out", "train", mmap=False)
    recipe = {**config["reference_classifier"], **spec.get("reference_classifier", {})}
    if epochs is not None:
        recipe["epochs"] = epochs
    model = build_model("reference_cnn", int(meta["num_classes"]), int(spec["size"]), seed=seed)
    history = train_classifier(model, x_train, y_train, TrainSettings.from_config(recipe), "cpu")
    print(
        f"classifier: {recipe['epochs']} epochs in {history['seconds']:.1f} s, "
        f"validation accuracy {history['best_val_acc']}"
    )
    rows = sample_indices(x_train.shape[0], int(config["trigger_context_samples"]), seed)
    return model.eval(), np.asarray(x_train[rows]), config["triggers"]["smooth"], seed


def common_rates(model, images: np.ndarray, settings: SmoothSettings, pattern, device) -> tuple:
    """Both modes' measures for one trigger: search-set ``x + v`` and held-out ``M(x + v)``."""
    v = torch.from_numpy(np.ascontiguousarray(pattern.transpose(2, 0, 1)))[None].to(device)
    search = images_to_tensor(images[: settings.samples], device)
    held = images_to_tensor(images[settings.samples : settings.samples + settings.holdout], device)
    with torch.no_grad():
        changed = model(search + settings.strength * v).argmax(1) != model(search).argmax(1)
        clean = model(patch_smooth(held, torch.zeros_like(v))).argmax(1)
        err = model(patch_smooth(held, v, settings.strength)).argmax(1) != clean
    return float(changed.float().mean()), float(err.float().mean())


def run(
    devices: list[torch.device],
    samples: int | None,
    max_passes: int | None,
    epochs: int | None,
    threads: int | None,
    repeats: int = 1,
) -> pd.DataFrame:
    if threads:
        torch.set_num_threads(threads)
    cpu_model, images, options, seed = demo_inputs(epochs)
    base = SmoothSettings.from_config(options)
    if samples is not None:
        base = dataclasses.replace(base, samples=samples)
    if max_passes is not None:
        base = dataclasses.replace(base, max_passes=max_passes)
    rows = []
    for device in devices:
        model = cpu_model.to(device).eval()
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        # Warm-up (kernel selection, allocator), not timed.
        with torch.no_grad():
            model(images_to_tensor(images[:8], device))
        for mode in ("authors", "batched"):
            settings = dataclasses.replace(base, mode=mode)
            best, result = float("inf"), None
            for _ in range(repeats):
                _sync(device)
                start = time.perf_counter()
                result = generate_smooth_trigger(model, images, settings, device=device, seed=seed)
                _sync(device)
                best = min(best, time.perf_counter() - start)
            assert result is not None
            passes = len(result.history) - 1
            search_rate, held_err = common_rates(model, images, settings, result.pattern, device)
            rows.append(
                {
                    "device": name,
                    "mode": mode,
                    "samples": settings.samples,
                    "passes": passes,
                    "seconds": round(best, 2),
                    "images/s": round(passes * settings.samples / best, 1),
                    "rate (own)": round(result.best_error_rate, 3),
                    "reached": result.reached,
                    "search x+v": round(search_rate, 3),
                    "held-out M(x+v)": round(held_err, 3),
                    "target": result.target_label,
                    "stop": result.stop_reason,
                    "torch threads": torch.get_num_threads(),
                }
            )
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--device", default="auto", help="auto (CPU, plus CUDA when present), cpu or cuda"
    )
    parser.add_argument("--samples", type=int, default=None, help="search images (demo: 100)")
    parser.add_argument("--max-passes", type=int, default=None, help="pass cap (demo: 6)")
    parser.add_argument("--epochs", type=int, default=None, help="classifier epochs (demo: 6)")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (0: torch's default)"
    )
    parser.add_argument("--repeats", type=int, default=1, help="timings are the best of these")
    parser.add_argument("--out", type=Path, default=None, help="also write the table as CSV")
    args = parser.parse_args()
    if args.device == "auto":
        devices = [torch.device("cpu")]
        if torch.cuda.is_available():
            devices.append(torch.device("cuda"))
    else:
        devices = [torch.device(args.device)]
    table = run(devices, args.samples, args.max_passes, args.epochs, args.threads, args.repeats)
    print(table.to_markdown(index=False))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.out, index=False)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
