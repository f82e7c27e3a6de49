"""Checks of a builder's output before :func:`~.datasets.prepare` writes it, and its ``meta.json``.

Whatever the source, the arrays must be uint8 ``N x size x size x 3`` images with int64
labels inside the class range (:func:`checked_arrays`); :func:`prepared_meta` records counts,
class counts, shapes, dtypes and the sha256 of each array beside the spec, seed and the
source's provenance.
"""

from __future__ import annotations

import numpy as np

from ..errors import DataError
from ..io import sha256_array
from .spec import ARRAY_KEYS, SPLITS, BuildContext, BuiltDataset


def checked_arrays(ctx: BuildContext, built: BuiltDataset) -> dict[str, np.ndarray]:
    """The builder's arrays in their final dtypes, checked for shape and label range."""
    arrays: dict[str, np.ndarray] = {}
    num_classes = len(built.classes)
    for split in SPLITS:
        x = np.asarray(getattr(built, f"x_{split}"))
        y = np.asarray(getattr(built, f"y_{split}"))
        if len(x) == 0:
            x = np.zeros((0, ctx.size, ctx.size, 3), dtype=np.uint8)
            y = np.zeros((0,), dtype=np.int64)
        if x.dtype != np.uint8 or x.shape[1:] != (ctx.size, ctx.size, 3):
            raise DataError(
                f"dataset {ctx.name!r}: {split} images are {x.dtype} {x.shape}, expected "
                f"uint8 N x {ctx.size} x {ctx.size} x 3"
            )
        y = y.astype(np.int64)
        if y.shape != (len(x),):
            raise DataError(
                f"dataset {ctx.name!r}: {len(x)} {split} images but labels of shape {y.shape}"
            )
        if len(y) and (y.min() < 0 or y.max() >= num_classes):
            raise DataError(
                f"dataset {ctx.name!r}: {split} labels span [{y.min()}, {y.max()}] but there "
                f"are {num_classes} classes"
            )
        arrays[f"x_{split}"] = np.ascontiguousarray(x)
        arrays[f"y_{split}"] = y
    if len(arrays["x_train"]) + len(arrays["x_test"]) == 0:
        raise DataError(f"dataset {ctx.name!r}: no images at all")
    return arrays


def prepared_meta(
    ctx: BuildContext, source: str, built: BuiltDataset, arrays: dict[str, np.ndarray]
) -> dict:
    num_classes = len(built.classes)
    return {
        "name": ctx.name,
        "source": source,
        "size": ctx.size,
        "classes": list(built.classes),
        "num_classes": num_classes,
        "counts": {split: int(len(arrays[f"y_{split}"])) for split in SPLITS},
        "class_counts": {
            split: np.bincount(arrays[f"y_{split}"], minlength=num_classes).tolist()
            for split in SPLITS
        },
        "shapes": {key: list(arrays[key].shape) for key in ARRAY_KEYS},
        "dtypes": {key: str(arrays[key].dtype) for key in ARRAY_KEYS},
        "sha256": {key: sha256_array(arrays[key]) for key in ARRAY_KEYS},
        "spec": ctx.spec,
        "seed": ctx.seed,
        "provenance": built.provenance,
    }
