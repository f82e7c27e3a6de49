"""The sources ``cifar10`` and ``gtsrb``, through :mod:`torchvision.datasets`.

The download lets torchvision fetch and md5-check both splits; without network access the
error says which files to place by hand. Prepare opens them with ``download=False`` and
resizes to ``size`` where the native size differs (GTSRB's images vary; CIFAR-10's uint8
``.data`` array is used directly when it already has the size).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, DownloadError
from ..logs import progress
from .images import decoding_threads, image_to_array
from .spec import SPLITS, BuildContext, BuiltDataset

_TORCHVISION = {
    "cifar10": {
        "class": "CIFAR10",
        "title": "CIFAR-10",
        "manual": "cifar-10-python.tar.gz (https://www.cs.toronto.edu/~kriz/cifar.html) into {dir}/",
    },
    "gtsrb": {
        "class": "GTSRB",
        "title": "GTSRB",
        "manual": "GTSRB-Training_fixed.zip, GTSRB_Final_Test_Images.zip and "
        "GTSRB_Final_Test_GT.zip (https://sid.erda.dk/public/archives/"
        "daaeac0d7ce1152aea9b61d9f1e19370/) into {dir}/gtsrb/",
    },
}


def _torchvision_split(source: str, root: Path, split: str, download: bool) -> Any:
    """Open one split with torchvision (looked up at call time so tests can swap it)."""
    import torchvision.datasets

    cls = getattr(torchvision.datasets, _TORCHVISION[source]["class"])
    if source == "cifar10":
        return cls(root=str(root), train=split == "train", download=download)
    return cls(root=str(root), split=split, download=download)


def fetch_torchvision(name: str, spec: dict, staging: Path, target: Path) -> dict:
    info = _TORCHVISION[spec["source"]]
    for split in SPLITS:
        try:
            _torchvision_split(spec["source"], staging, split, download=True)
        except Exception as exc:  # no network, bad md5, server down: all need the same advice
            manual = info["manual"].format(dir=target)
            raise DownloadError(
                f"dataset {name!r}: torchvision could not download {info['title']} ({split} "
                f"split) into raw dir {target}: {type(exc).__name__}: {exc}. Without network "
                f"access, place {manual} by hand and run again (torchvision checks the files' "
                "md5 and extracts them); see docs/datasets.md."
            ) from exc
    return {"via": f"torchvision.datasets.{info['class']}"}


def build_torchvision(ctx: BuildContext, raw: Path) -> BuiltDataset:
    """Both splits through torchvision (download=False), resized to ``size`` when needed."""
    source = ctx.spec["source"]
    info = _TORCHVISION[source]
    xs, ys, datasets = {}, {}, {}
    for split in SPLITS:
        try:
            ds = _torchvision_split(source, raw, split, download=False)
        except Exception as exc:
            raise DataError(
                f"dataset {ctx.name!r}: cannot open {info['title']} ({split} split) in raw dir "
                f"{raw}: {type(exc).__name__}: {exc}; run its download first (rule "
                "raw_dataset) or place the files there by hand (docs/datasets.md)"
            ) from exc
        datasets[split] = ds
        keep = ctx.cap_indices(split, len(ds))
        xs[split], ys[split] = _torchvision_arrays(ctx, ds, keep, f"{ctx.name} {split}")
    classes = getattr(datasets["train"], "classes", None)
    if not classes:
        top = max((int(y.max()) for y in ys.values() if len(y)), default=-1)
        classes = [str(i) for i in range(top + 1)]
    return BuiltDataset(
        xs["train"],
        ys["train"],
        xs["test"],
        ys["test"],
        classes=[str(c) for c in classes],
        provenance={
            "via": f"torchvision.datasets.{info['class']}",
            "original_counts": {split: len(ds) for split, ds in datasets.items()},
            "resize": "stretch (bilinear) where the native size differs",
        },
    )


def _torchvision_arrays(
    ctx: BuildContext, ds: Any, keep: np.ndarray, desc: str
) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of ``ds[keep]``; CIFAR-style ``.data`` arrays are used directly."""
    data, targets = getattr(ds, "data", None), getattr(ds, "targets", None)
    if (
        isinstance(data, np.ndarray)
        and data.dtype == np.uint8
        and data.shape[1:] == (ctx.size, ctx.size, 3)
        and targets is not None
        and len(targets) == len(data) == len(ds)
    ):
        return data[keep], np.asarray(targets, dtype=np.int64)[keep]

    x = np.empty((len(keep), ctx.size, ctx.size, 3), dtype=np.uint8)
    y = np.empty(len(keep), dtype=np.int64)

    def load(index: int) -> tuple[np.ndarray, int]:
        image, label = ds[int(index)]
        return image_to_array(image, ctx.size), int(label)

    pool = ThreadPoolExecutor(max_workers=decoding_threads())
    try:
        for i, (image, label) in enumerate(
            progress(pool.map(load, keep), desc=desc, total=len(keep))
        ):
            x[i], y[i] = image, label
    except Exception as exc:
        raise DataError(f"dataset {ctx.name!r}: cannot read an image of {desc}: {exc}") from exc
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return x, y
