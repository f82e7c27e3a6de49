"""The offline sources ``embedded_photos`` and ``embedded_digits``: no download, no network.

- ``embedded_photos``: square crops of scikit-image's colour photographs, one class per photo.
  Each photo is cut into two disjoint strips, one for training crops and one for test crops,
  so no test image shares a pixel with a training image. Offline; the demo's stand-in for
  CIFAR-10 (at 32 px) and PubFig (at 224 px). ``chelsea`` is not among the default photos: it
  is the default Blend trigger image (see :data:`DEFAULT_PHOTOS`).
- ``embedded_digits``: scikit-learn's 8 x 8 handwritten digits, upscaled; a second domain.

Their download step only writes a note (:func:`fetch_embedded`); the images are made at
prepare time, every random draw from the seed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import ConfigError, DataError
from .spec import SPLITS, BuildContext, BuiltDataset, spec_fraction, spec_int

#: Colour photographs of ``skimage.data`` that ship inside scikit-image (no pooch download).
#: ``chelsea`` (alias ``cat``) is left out on purpose: it is the default Blend trigger image,
#: and a class made of the trigger's own picture would confound the attack.
DEFAULT_PHOTOS: tuple[str, ...] = (
    "astronaut",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "stereo_motorcycle",
)
#: ``skimage.data`` functions that are not images (or would download everything).
_NOT_PHOTOS = frozenset({"download_all", "data_dir", "lbp_frontal_face_cascade_filename"})


def _photo(name: str, photo: str) -> np.ndarray:
    """``skimage.data.<photo>()`` as uint8 RGB, or a DataError/ConfigError naming it."""
    import skimage.data

    available = [n for n in getattr(skimage.data, "__all__", []) if n not in _NOT_PHOTOS]
    if photo not in available:
        raise ConfigError(
            f"dataset {name!r}: {photo!r} (datasets.{name}.photos) is not a scikit-image "
            f"sample image; offline colour photos include {', '.join(DEFAULT_PHOTOS)}"
        )
    try:
        image = getattr(skimage.data, photo)()
    except Exception as exc:  # pooch missing / no network for the images that need a download
        raise DataError(
            f"dataset {name!r}: cannot load skimage.data.{photo}() offline ({exc}); "
            f"use photos that ship with scikit-image, e.g. {', '.join(DEFAULT_PHOTOS)}"
        ) from exc
    if isinstance(image, tuple):  # stereo pairs: the left view
        image = image[0]
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 4:
        image = image[..., :3]
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    elif image.dtype != np.uint8:
        scale = 255.0 if image.max(initial=0) <= 1.0 else 1.0
        image = np.clip(np.rint(image * scale), 0, 255).astype(np.uint8)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ConfigError(
            f"dataset {name!r}: skimage.data.{photo}() has shape {image.shape}, not a 2-D image"
        )
    return image


def _regions(height: int, width: int, test_fraction: float) -> dict[str, list[int]]:
    """Two disjoint boxes ``[x0, y0, x1, y1]``: train first, test the last ``test_fraction``.

    The cut runs across the longer side so that both strips stay as square as possible. With
    ``test_fraction == 1`` (a test-only set, as TSRD) the whole photo is the test box.
    """
    if test_fraction >= 1:
        return {"test": [0, 0, width, height]}
    if width >= height:
        cut = int(round(width * (1 - test_fraction)))
        return {"train": [0, 0, cut, height], "test": [cut, 0, width, height]}
    cut = int(round(height * (1 - test_fraction)))
    return {"train": [0, 0, width, cut], "test": [0, cut, width, height]}


def _crop_boxes(
    rng: np.random.Generator, region: Sequence[int], n: int, side_min: int, side_max: int
) -> np.ndarray:
    """``n`` random squares ``[x0, y0, x1, y1]`` inside ``region``, sides in [min, max]."""
    x0, y0, x1, y1 = region
    sides = rng.integers(side_min, side_max + 1, size=n)
    left = x0 + np.floor(rng.random(n) * (x1 - x0 - sides + 1)).astype(np.int64)
    top = y0 + np.floor(rng.random(n) * (y1 - y0 - sides + 1)).astype(np.int64)
    return np.stack([left, top, left + sides, top + sides], axis=1)


def build_embedded_photos(ctx: BuildContext, raw: Path) -> BuiltDataset:
    """Random square crops from two disjoint strips of each photo; one class per photo.

    Crop sides are drawn uniformly between ``min_crop`` and 1 times the shorter side of the
    *smaller* strip, the same range for train and test, so the two splits differ in content
    but not in scale. Crops are resized to ``size`` with PIL's antialiased bilinear filter.
    ``test_fraction: 1`` makes a test-only set (as TSRD): test crops from whole photos.
    """
    name, spec = ctx.name, ctx.spec
    photos = spec.get("photos", list(DEFAULT_PHOTOS))
    if not isinstance(photos, list | tuple) or len(photos) < 2:
        raise ConfigError(
            f"dataset {name!r}: datasets.{name}.photos must list at least two image names, "
            f"got {photos!r}"
        )
    if len(set(photos)) != len(photos):
        raise ConfigError(f"dataset {name!r}: datasets.{name}.photos repeats a name: {photos}")
    n_train = spec_int(name, spec, "train_per_class", 250, minimum=1)
    n_test = spec_int(name, spec, "test_per_class", 100, minimum=1)
    test_fraction = spec_fraction(name, spec, "test_fraction", 0.3)
    min_crop = spec_fraction(name, spec, "min_crop", 0.25)
    rng = np.random.default_rng(ctx.seed)

    xs: dict[str, list[np.ndarray]] = {"train": [], "test": []}
    ys: dict[str, list[np.ndarray]] = {"train": [], "test": []}
    records, seen = [], {}
    for label, photo in enumerate(photos):
        image = _photo(name, str(photo))
        digest = hashlib.sha256(image.tobytes()).hexdigest()
        if digest in seen:
            raise ConfigError(
                f"dataset {name!r}: photos {seen[digest]!r} and {photo!r} are the same image"
            )
        seen[digest] = photo
        height, width = image.shape[:2]
        regions = _regions(height, width, test_fraction)
        side_max = min(min(r[2] - r[0], r[3] - r[1]) for r in regions.values())
        side_min = max(1, int(round(min_crop * side_max)))
        if side_max < 2:
            raise ConfigError(
                f"dataset {name!r}: photo {photo!r} ({width} x {height}) is too small for "
                f"datasets.{name}.test_fraction = {test_fraction}"
            )
        pil = Image.fromarray(image)
        record: dict[str, Any] = {
            "photo": photo,
            "label": label,
            "shape": [height, width],
            "side_range": [side_min, side_max],
        }
        for split, n in (("train", n_train), ("test", n_test)):
            if split not in regions:  # test-only
                continue
            boxes = _crop_boxes(rng, regions[split], n, side_min, side_max)
            crops = np.empty((n, ctx.size, ctx.size, 3), dtype=np.uint8)
            for i, box in enumerate(boxes.tolist()):
                crops[i] = np.asarray(
                    pil.resize((ctx.size, ctx.size), Image.Resampling.BILINEAR, box=box)
                )
            xs[split].append(crops)
            ys[split].append(np.full(n, label, dtype=np.int64))
            extent = [*boxes[:, :2].min(axis=0).tolist(), *boxes[:, 2:].max(axis=0).tolist()]
            record[split] = {
                "region": regions[split],
                "extent": extent,
                "crops": int(n),
                "boxes_sha256": hashlib.sha256(boxes.astype(np.int64).tobytes()).hexdigest(),
            }
        records.append(record)

    arrays = {}
    for split in SPLITS:
        if not xs[split]:  # the train split of a test-only set
            arrays[split] = (np.zeros((0, ctx.size, ctx.size, 3), np.uint8), np.zeros(0, np.int64))
            continue
        x, y = np.concatenate(xs[split]), np.concatenate(ys[split])
        keep = ctx.cap_indices(split, len(x))
        arrays[split] = (x[keep], y[keep])
    return BuiltDataset(
        *arrays["train"],
        *arrays["test"],
        classes=[str(p) for p in photos],
        provenance={
            "generator": "skimage.data",
            "box_format": "[x0, y0, x1, y1] pixels of the original photo",
            "test_fraction": test_fraction,
            "min_crop": min_crop,
            "photos": records,
        },
    )


def build_embedded_digits(ctx: BuildContext, raw: Path) -> BuiltDataset:
    """scikit-learn's digits (8 x 8, 0..16) to 0..255, upscaled, gray copied to 3 channels.

    The split is stratified and seeded (``train_test_split(random_state=seed)``).
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    test_fraction = spec_fraction(ctx.name, ctx.spec, "test_fraction", 0.2, allow_one=False)
    digits = load_digits()
    images = np.clip(np.rint(digits.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    labels = digits.target.astype(np.int64)
    resized = np.empty((len(images), ctx.size, ctx.size), dtype=np.uint8)
    for i, image in enumerate(images):
        pil = Image.fromarray(image)
        resized[i] = np.asarray(pil.resize((ctx.size, ctx.size), Image.Resampling.BILINEAR))
    rgb = np.repeat(resized[..., None], 3, axis=3)
    index = np.arange(len(rgb))
    train_idx, test_idx = train_test_split(
        index, test_size=test_fraction, random_state=ctx.seed, stratify=labels
    )
    train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
    train_idx = train_idx[ctx.cap_indices("train", len(train_idx))]
    test_idx = test_idx[ctx.cap_indices("test", len(test_idx))]
    return BuiltDataset(
        rgb[train_idx],
        labels[train_idx],
        rgb[test_idx],
        labels[test_idx],
        classes=[str(d) for d in range(10)],
        provenance={
            "generator": "sklearn.datasets.load_digits",
            "original_size": [8, 8],
            "scaling": "x * 255 / 16, bilinear upscaling, gray to 3 channels",
            "test_fraction": test_fraction,
            "train_indices_sha256": hashlib.sha256(
                train_idx.astype(np.int64).tobytes()
            ).hexdigest(),
        },
    )


def fetch_embedded(name: str, spec: dict, staging: Path, target: Path) -> dict:
    return {
        "note": "embedded source: nothing is downloaded; the images come from "
        f"{'scikit-image' if spec['source'] == 'embedded_photos' else 'scikit-learn'} "
        "at prepare time"
    }
