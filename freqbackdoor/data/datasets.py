"""Datasets: fetch raw data (:func:`download`) and turn it into uint8 arrays (:func:`prepare`).

The workflow treats every dataset the same way once it is prepared: four ``.npy`` files
(``x_train``, ``y_train``, ``x_test``, ``y_test``; images are uint8 ``N x H x W x 3`` RGB, labels
int64) and a ``meta.json`` sidecar that says where the images came from. The two steps are kept
apart so that network access happens only in :func:`download` (inside a Snakemake job, never
while the DAG is built) and :func:`prepare` works offline from ``raw_dir/<name>``.

Sources (the ``source`` key of a dataset's config; see :data:`SOURCES`):

- ``embedded_photos``: square crops of scikit-image's colour photographs, one class per photo.
  Each photo is cut into two disjoint strips, one for training crops and one for test crops,
  so no test image shares a pixel with a training image. Offline; the demo's stand-in for
  CIFAR-10 (at 32 px) and PubFig (at 224 px).
- ``embedded_digits``: scikit-learn's 8 x 8 handwritten digits, upscaled; a second domain.
- ``cifar10`` / ``gtsrb``: through :mod:`torchvision.datasets`.
- ``url``: an archive (zip or tar) fetched from a URL and checked against its sha256, e.g.
  PubFig83 (one folder per class) or TSRD (class in the file-name prefix).
- ``imagefolder``: the user's own ``root/train/<class>/*`` and ``root/test/<class>/*``.

Failure policy: every error names the dataset and the file, URL or config key at fault, and
neither step leaves partial output behind (downloads go to a temporary folder beside
``raw_dir/<name>`` that is renamed into place at the end; prepared files are removed again if
anything fails).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import re
import shutil
import signal
import tarfile
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from http.client import HTTPException
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from ..errors import ChecksumError, ConfigError, DataError, DownloadError
from ..io import atomic_path, load_npy, save_npy, sha256_array, sha256_file, write_json
from ..logs import progress

log = logging.getLogger(__name__)

SOURCES: tuple[str, ...] = (
    "embedded_photos",
    "embedded_digits",
    "cifar10",
    "gtsrb",
    "url",
    "imagefolder",
)
SPLITS: tuple[str, ...] = ("train", "test")
ARRAY_KEYS: tuple[str, ...] = ("x_train", "y_train", "x_test", "y_test")
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
RESIZE_MODES: tuple[str, ...] = ("stretch", "center_crop")
LAYOUTS: tuple[str, ...] = ("class_folders", "filename_prefix")

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

_SOURCE_NOTE = "SOURCE.json"
_EXTRACTED = "extracted"
_ARCHIVE_SUFFIXES = (".zip", ".tar", ".tgz", ".tar.gz", ".tbz2", ".tar.bz2", ".txz", ".tar.xz")
_CHUNK = 1 << 20
_TIMEOUT_S = 60


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def download(name: str, spec: dict, raw_dir: str | Path) -> Path:
    """Fetch or stage the raw data of dataset ``name`` into ``raw_dir/name`` and return that folder.

    Embedded sources need no network and only get a ``SOURCE.json`` note; ``imagefolder`` checks
    that its root exists; ``cifar10``/``gtsrb`` go through torchvision; ``url`` downloads an
    archive (or uses one placed in ``raw_dir/name`` or ``raw_dir`` by hand), verifies its
    sha256 and extracts it into ``raw_dir/name/extracted``. The work happens in a temporary
    folder beside the target that is renamed into place only on success, so a failed download
    leaves nothing partial behind (files a user placed there by hand are kept): SIGTERM (what
    ``scancel`` and a cluster's time limit send) cleans up as Ctrl-C does, and the leftovers of
    a run killed outright (SIGKILL) are removed by the next one.
    """
    source = _source_of(name, spec)
    _size_of(name, spec)
    raw_dir = Path(raw_dir)
    target = raw_dir / name
    keep = source in ("cifar10", "gtsrb", "url")  # sources that may find hand-placed files
    with (
        _terminate_as_interrupt(),
        _staged_dir(target, keep_existing=keep, skip=(_EXTRACTED, _SOURCE_NOTE)) as staging,
    ):
        details = _FETCHERS[source](name, spec, staging, target)
        note = {"dataset": name, "source": source, "spec": dict(spec), **details}
        write_json(staging / _SOURCE_NOTE, note)
    log.info("dataset %s: raw data ready in %s", name, target)
    return target


def prepare(name: str, spec: dict, raw_dir: str | Path, out_dir: str | Path, seed: int) -> dict:
    """Build the uint8 train/test arrays of dataset ``name`` and write them to ``out_dir``.

    Writes ``x_train.npy``, ``y_train.npy``, ``x_test.npy``, ``y_test.npy`` (images
    ``N x size x size x 3`` uint8, labels int64) and then ``meta.json``; returns the meta dict
    (name, source, size, classes, num_classes, counts, class_counts, sha256 of each array, spec,
    seed and source-specific provenance). Every random draw derives from ``seed``. If anything
    fails, none of the five files is left in ``out_dir``.
    """
    source = _source_of(name, spec)
    ctx = _Context(name=name, spec=dict(spec), size=_size_of(name, spec), seed=int(seed))
    raw = Path(raw_dir) / name
    out_dir = Path(out_dir)
    outputs = [out_dir / f"{key}.npy" for key in ARRAY_KEYS] + [out_dir / "meta.json"]
    try:
        built = _BUILDERS[source](ctx, raw)
        arrays = _checked_arrays(ctx, built)
        meta = _meta(ctx, source, built, arrays)
        out_dir.mkdir(parents=True, exist_ok=True)
        for key in ARRAY_KEYS:
            save_npy(out_dir / f"{key}.npy", arrays[key])
        write_json(out_dir / "meta.json", meta)
    except BaseException:
        for path in outputs:
            path.unlink(missing_ok=True)
        raise
    log.info("dataset %s: %s", name, meta["counts"])
    return meta


def load_split(
    directory: str | Path, split: str, mmap: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(x, y)`` of a prepared dataset's ``split`` ("train" or "test").

    Images are memory-mapped read-only by default so that large datasets need not fit in RAM.
    """
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r} for {directory}; one of {SPLITS}")
    directory = Path(directory)
    x = load_npy(directory / f"x_{split}.npy", mmap=mmap)
    y = load_npy(directory / f"y_{split}.npy", mmap=mmap)
    if x.ndim != 4 or x.shape[-1] != 3 or y.ndim != 1 or len(x) != len(y):
        raise DataError(
            f"{directory}: x_{split}.npy {x.shape} and y_{split}.npy {y.shape} do not form "
            "N x H x W x 3 images with N labels"
        )
    return x, y


def load_image(path: str | Path, size: int, resize: str = "stretch") -> np.ndarray:
    """Read one image file as a uint8 ``size x size x 3`` RGB array.

    Any mode is accepted: grayscale and palette images become RGB, alpha is dropped, 16-bit and
    float images are rescaled to 8 bits, EXIF orientation is applied, and multi-frame files
    (GIF, TIFF) give their first frame. ``resize`` is ``"stretch"`` (whole image to a square,
    aspect ratio not kept) or ``"center_crop"`` (largest centred square, then resized). A file
    PIL cannot decode raises :class:`DataError` naming it.
    """
    _check_resize(resize, "load_image")
    path = Path(path)
    try:
        with Image.open(path) as img:
            if img.format == "JPEG":
                # Decode JPEGs at a reduced scale that still covers ``size`` (much faster).
                with contextlib.suppress(Exception):
                    img.draft(None, (size, size))
            oriented = ImageOps.exif_transpose(img)
            return _pil_to_array(oriented, size, resize)
    except Exception as exc:  # PIL raises many types on corrupt files; all mean "unreadable"
        raise DataError(f"cannot read image {path}: {type(exc).__name__}: {exc}") from exc


def load_images(
    paths: Sequence[str | Path],
    size: int,
    resize: str = "stretch",
    desc: str = "images",
    dataset: str | None = None,
) -> np.ndarray:
    """Read many image files into one uint8 ``N x size x size x 3`` array, with a progress bar.

    Decoding runs in a few threads (PIL releases the GIL while decoding and resizing); the
    order of ``paths`` is kept. Every file is tried: one :class:`DataError` then lists all the
    unreadable ones (and ``dataset`` when given), so a folder is fixed in one round, not one
    file per run.
    """
    _check_resize(resize, dataset or "load_images")
    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    if not paths:
        return out

    def read(path: str | Path) -> np.ndarray | DataError:
        try:
            return load_image(path, size, resize)
        except DataError as exc:
            return exc

    failed: list[str] = []
    with ThreadPoolExecutor(max_workers=_workers()) as pool:
        results = pool.map(read, paths)
        for i, image in enumerate(progress(results, desc=desc, total=len(paths))):
            if isinstance(image, DataError):
                failed.append(str(image))
            else:
                out[i] = image
    if failed:
        shown = "; ".join(failed[:_ERRORS_SHOWN])
        more = f"; and {len(failed) - _ERRORS_SHOWN} more" if len(failed) > _ERRORS_SHOWN else ""
        prefix = f"dataset {dataset!r}: " if dataset is not None else ""
        raise DataError(f"{prefix}{len(failed)} of {len(paths)} images unreadable: {shown}{more}")
    return out


_ERRORS_SHOWN = 20  # unreadable files named in one error; the count says how many more


# --------------------------------------------------------------------------------------------
# Config helpers
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Context:
    """What every builder needs: the dataset's name, config, output size and seed."""

    name: str
    spec: dict
    size: int
    seed: int

    def cap_indices(self, split: str, n: int) -> np.ndarray:
        """Sorted indices of a seeded subset of ``n`` items when ``max_<split>`` caps them."""
        cap = _int_key(self.name, self.spec, f"max_{split}", None, minimum=1)
        if cap is None or n <= cap:
            return np.arange(n)
        rng = np.random.default_rng((self.seed, 0x6361, SPLITS.index(split)))
        return np.sort(rng.choice(n, size=cap, replace=False))


@dataclasses.dataclass
class _Built:
    """A builder's result: the arrays, the class names and what to record as provenance."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: list[str]
    provenance: dict[str, Any]


def _source_of(name: str, spec: dict) -> str:
    if not isinstance(spec, dict):
        raise ConfigError(f"dataset {name!r}: its config must be a mapping, got {spec!r}")
    source = spec.get("source")
    if source not in SOURCES:
        raise ConfigError(
            f"dataset {name!r}: unknown source {source!r} (datasets.{name}.source); "
            f"one of {', '.join(SOURCES)}"
        )
    return source


def _size_of(name: str, spec: dict) -> int:
    size = _int_key(name, spec, "size", None, minimum=1)
    if size is None:
        raise ConfigError(f"dataset {name!r}: datasets.{name}.size is missing")
    return size


def _int_key(name: str, spec: dict, key: str, default: int | None, minimum: int) -> int | None:
    value = spec.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ConfigError(
            f"dataset {name!r}: datasets.{name}.{key} must be an integer >= {minimum}, "
            f"got {value!r}"
        )
    return int(value)


def _fraction_key(name: str, spec: dict, key: str, default: float, allow_one: bool = True) -> float:
    value = spec.get(key, default)
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not (0 < value < 1 or (allow_one and value == 1)):
        interval = "(0, 1]" if allow_one else "(0, 1)"
        raise ConfigError(
            f"dataset {name!r}: datasets.{name}.{key} must be a number in {interval}, got {value!r}"
        )
    return float(value)


def _str_key(name: str, spec: dict, key: str, default: str | None = None) -> str:
    value = spec.get(key, default)
    if not isinstance(value, str) or not value:
        raise ConfigError(
            f"dataset {name!r}: datasets.{name}.{key} must be a non-empty string, got {value!r}"
        )
    return value


def _choice_key(name: str, spec: dict, key: str, default: str, choices: Sequence[str]) -> str:
    value = spec.get(key, default)
    if value not in choices:
        raise ConfigError(
            f"dataset {name!r}: datasets.{name}.{key} is {value!r}; one of {', '.join(choices)}"
        )
    return value


def _check_resize(resize: str, who: str) -> None:
    if resize not in RESIZE_MODES:
        raise ConfigError(f"{who}: unknown resize {resize!r}; one of {', '.join(RESIZE_MODES)}")


def _workers() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


# --------------------------------------------------------------------------------------------
# Staging (download) and output checks (prepare)
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM raises ``KeyboardInterrupt`` inside the block, so cleanup runs as on Ctrl-C.

    Python's default SIGTERM ends the process without running ``finally`` blocks, which left
    a killed download's staging folder (hundreds of MB) behind. Outside the main thread, where
    no handler can be set, the block runs unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _remove_leftovers(target: Path) -> None:
    """Remove the staging and swap folders an earlier, killed run left beside ``target``."""
    for pattern in (f".{target.name}.partial-*", f".{target.name}.old-*"):
        for leftover in sorted(target.parent.glob(pattern)):
            if leftover.is_dir() and not leftover.is_symlink():
                log.info("removing %s, left by an interrupted run", leftover)
                shutil.rmtree(leftover, ignore_errors=True)


@contextlib.contextmanager
def _staged_dir(target: Path, keep_existing: bool, skip: Sequence[str] = ()) -> Iterator[Path]:
    """Yield a fresh folder beside ``target`` that replaces ``target`` if the block succeeds.

    With ``keep_existing``, files already in ``target`` (e.g. an archive placed there by hand)
    are mirrored into the staging folder first: archives as hard links (no copy of large
    files; they are only read), everything else as copies, so that nothing the block writes
    can change ``target`` before the final swap. Top-level entries named in ``skip`` are not
    mirrored (they are regenerated). On failure the staging folder is removed and ``target``
    is left exactly as it was.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(target)  # one job per dataset at a time (Snakemake locks its output)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    staging.chmod(0o755)  # mkdtemp makes 0700; the final folder should read like any other
    try:
        if keep_existing and target.is_dir():
            _mirror(target, staging, skip)
        yield staging
        if target.exists() or target.is_symlink():
            trash = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.replace(target, trash / "old")
            os.replace(staging, target)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _mirror(source: Path, dest: Path, skip: Sequence[str]) -> None:
    for entry in sorted(source.iterdir()):
        if entry.name in skip or entry.name.startswith(".partial"):
            continue
        if entry.is_dir():
            shutil.copytree(entry, dest / entry.name, copy_function=_link_or_copy)
        else:
            _link_or_copy(entry, dest / entry.name)


def _link_or_copy(src: str | Path, dst: str | Path) -> None:
    if _is_archive_name(Path(src).name):
        try:
            os.link(src, dst)
            return
        except OSError:
            pass
    shutil.copy2(src, dst)


def _checked_arrays(ctx: _Context, built: _Built) -> dict[str, np.ndarray]:
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


def _meta(ctx: _Context, source: str, built: _Built, arrays: dict[str, np.ndarray]) -> dict:
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


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode to 8-bit RGB: gray/palette expanded, alpha dropped, 16-bit/float rescaled."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode.startswith("I") or mode == "F":
        values = np.asarray(img, dtype=np.float64)
        if mode.startswith("I;16") or (mode == "I" and values.max(initial=0) > 255):
            values = values / 257.0  # 16-bit range 0..65535 onto 0..255
        elif mode == "F" and values.max(initial=0) <= 1.0:
            values = values * 255.0  # float images in [0, 1]
        gray = np.clip(np.rint(values), 0, 255).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    if mode == "P":
        img = img.convert("RGBA")  # honours palette transparency; alpha dropped below
    elif mode == "1":
        img = img.convert("L")
    return img.convert("RGB")


def _pil_to_array(img: Image.Image, size: int, resize: str = "stretch") -> np.ndarray:
    """A PIL image as uint8 ``size x size x 3`` (bilinear with antialiasing when shrinking)."""
    img = _to_rgb(img)
    width, height = img.size
    box = None
    if resize == "center_crop" and width != height:
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        box = (left, top, left + side, top + side)
    if box is not None or img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BILINEAR, box=box)
    array = np.asarray(img, dtype=np.uint8)
    if array.shape != (size, size, 3):  # defensive: PIL should always give this
        raise DataError(f"image decoded to shape {array.shape}, expected {(size, size, 3)}")
    return array


def _any_to_array(image: Any, size: int) -> np.ndarray:
    """A PIL image or an ``H x W (x C)`` array (as torchvision datasets return) to uint8 RGB."""
    if not isinstance(image, Image.Image):
        array = np.asarray(image)
        if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3):
            array = np.moveaxis(array, 0, -1)  # C x H x W tensors
        if array.ndim == 3 and array.shape[-1] == 1:
            array = array[..., 0]
        if array.dtype != np.uint8:
            scale = 255.0 if array.max(initial=0) <= 1.0 else 1.0
            array = np.clip(np.rint(array.astype(np.float64) * scale), 0, 255).astype(np.uint8)
        image = Image.fromarray(array)
    return _pil_to_array(image, size)


# --------------------------------------------------------------------------------------------
# embedded_photos
# --------------------------------------------------------------------------------------------


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


def _build_embedded_photos(ctx: _Context, raw: Path) -> _Built:
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
    n_train = _int_key(name, spec, "train_per_class", 250, minimum=1)
    n_test = _int_key(name, spec, "test_per_class", 100, minimum=1)
    test_fraction = _fraction_key(name, spec, "test_fraction", 0.3)
    min_crop = _fraction_key(name, spec, "min_crop", 0.25)
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
    return _Built(
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


# --------------------------------------------------------------------------------------------
# embedded_digits
# --------------------------------------------------------------------------------------------


def _build_embedded_digits(ctx: _Context, raw: Path) -> _Built:
    """scikit-learn's digits (8 x 8, 0..16) to 0..255, upscaled, gray copied to 3 channels.

    The split is stratified and seeded (``train_test_split(random_state=seed)``).
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    test_fraction = _fraction_key(ctx.name, ctx.spec, "test_fraction", 0.2, allow_one=False)
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
    return _Built(
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


# --------------------------------------------------------------------------------------------
# cifar10 / gtsrb (torchvision)
# --------------------------------------------------------------------------------------------

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


def _fetch_torchvision(name: str, spec: dict, staging: Path, target: Path) -> dict:
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
                "md5 and extracts them); see README 'Datasets'."
            ) from exc
    return {"via": f"torchvision.datasets.{info['class']}"}


def _build_torchvision(ctx: _Context, raw: Path) -> _Built:
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
                "raw_dataset) or place the files there by hand (README 'Datasets')"
            ) from exc
        datasets[split] = ds
        keep = ctx.cap_indices(split, len(ds))
        xs[split], ys[split] = _torchvision_arrays(ctx, ds, keep, f"{ctx.name} {split}")
    classes = getattr(datasets["train"], "classes", None)
    if not classes:
        top = max((int(y.max()) for y in ys.values() if len(y)), default=-1)
        classes = [str(i) for i in range(top + 1)]
    return _Built(
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
    ctx: _Context, ds: Any, keep: np.ndarray, desc: str
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
        return _any_to_array(image, ctx.size), int(label)

    pool = ThreadPoolExecutor(max_workers=_workers())
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


# --------------------------------------------------------------------------------------------
# url (archives)
# --------------------------------------------------------------------------------------------


def _url_settings(name: str, spec: dict) -> tuple[str, str | None, str]:
    """The URL, the expected sha256 (lower case, or None) and the archive's file name."""
    url = _str_key(name, spec, "url")
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme not in ("http", "https", "file", "ftp"):
        raise ConfigError(f"dataset {name!r}: datasets.{name}.url {url!r} is not a URL")
    if "sha256" not in spec:
        raise ConfigError(
            f"dataset {name!r}: datasets.{name}.sha256 is missing; give the archive's sha256 "
            "(or null to be told the sha256 of what the URL serves)"
        )
    expected = spec["sha256"]
    if expected is not None:
        if not isinstance(expected, str) or not re.fullmatch(r"[0-9a-fA-F]{64}", expected):
            raise ConfigError(
                f"dataset {name!r}: datasets.{name}.sha256 must be 64 hex digits or null, "
                f"got {expected!r}"
            )
        expected = expected.lower()
    if spec.get("archive") is not None:
        archive = _str_key(name, spec, "archive")
    else:
        archive = PurePosixPath(urllib.parse.unquote(parsed.path)).name
    if not archive or archive in (".", "..") or "/" in archive or "\\" in archive:
        raise ConfigError(
            f"dataset {name!r}: cannot name the archive of {url!r}; set datasets.{name}.archive "
            "to a plain file name"
        )
    return url, expected, archive


def _verify(name: str, url: str, path: Path, expected: str | None, manual: Path) -> str:
    """The sha256 of ``path``, checked against ``expected``; a ChecksumError otherwise."""
    actual = sha256_file(path)
    if expected is None:
        raise ChecksumError(
            f"dataset {name!r}: datasets.{name}.sha256 is null, so the archive from {url} "
            f"cannot be verified and is not used. What was fetched ({path.name}) has sha256 "
            f"{actual}. Check that value against the publisher (or a trusted copy) and set "
            f"datasets.{name}.sha256: {actual} in the config; or place an archive you have "
            f"verified at {manual} and set its sha256."
        )
    if actual != expected:
        raise ChecksumError(
            f"dataset {name!r}: checksum mismatch for {url} ({path}): expected sha256 "
            f"{expected}, got {actual}. The download is corrupt or the file changed upstream; "
            f"place a verified archive by hand at {manual}, or fix datasets.{name}.sha256."
        )
    return actual


def _fetch_url(name: str, spec: dict, staging: Path, target: Path) -> dict:
    """Use a hand-placed archive or download one; verify its sha256; extract it safely."""
    url, expected, archive = _url_settings(name, spec)
    # Beside the dataset's folder, not inside it: Snakemake empties the folder before a rerun.
    manual = target.parent / archive
    placed = [staging / archive, manual]  # staging mirrors target's files
    found = next((p for p in placed if p.is_file()), None)
    if found is not None:
        shown = manual if found == staging / archive else found
        log.info("dataset %s: using the archive placed by hand at %s", name, shown)
        path, origin = found, f"placed by hand at {shown}"
    else:
        path, origin = staging / archive, f"downloaded from {url}"
        _stream_to(name, url, path, manual)
    actual = _verify(name, url, path, expected, manual)
    members = _extract(name, path, staging / _EXTRACTED)
    return {
        "url": url,
        "sha256": actual,
        "archive": archive,
        "archive_origin": origin,
        "extracted": _EXTRACTED,
        "members": members,
    }


def _stream_to(name: str, url: str, path: Path, manual: Path) -> None:
    """Download ``url`` to ``path`` in chunks (atomically); a DownloadError if unreachable."""
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response:
            length = response.headers.get("Content-Length")
            total = -(-int(length) // _CHUNK) if length and length.isdigit() else None
            with atomic_path(path) as tmp, open(tmp, "wb") as out:
                chunks = iter(lambda: response.read(_CHUNK), b"")
                for chunk in progress(chunks, desc=f"download {name} (MiB)", total=total):
                    out.write(chunk)
    except (urllib.error.URLError, OSError, HTTPException, ValueError) as exc:
        raise DownloadError(
            f"dataset {name!r}: cannot download {url}: {exc}. Without network access, fetch "
            f"the archive elsewhere, check its sha256 and place it by hand at {manual}; see "
            "README 'Datasets'."
        ) from exc


def _is_archive_name(filename: str) -> bool:
    return filename.lower().endswith(_ARCHIVE_SUFFIXES)


def _safe_member(name: str, archive: Path, member: str) -> PurePosixPath:
    """``member`` as a relative path, or a DataError if it is absolute or climbs with ``..``."""
    clean = member.replace("\\", "/")
    path = PurePosixPath(clean)
    if clean.startswith("/") or re.match(r"^[A-Za-z]:", clean) or ".." in path.parts:
        raise DataError(
            f"dataset {name!r}: archive {archive} has an unsafe member {member!r} (absolute "
            "path or '..'); refusing to extract it"
        )
    return path


def _extract(name: str, archive: Path, dest: Path) -> int:
    """Extract a zip or tar archive into ``dest`` (which must not exist); return member count.

    Every member is checked before anything is written: absolute paths, ``..`` components,
    links and device files are refused. Tar extraction also uses Python's ``"data"`` filter.
    Extraction goes to a temporary folder renamed to ``dest`` at the end.
    """
    if dest.exists():
        shutil.rmtree(dest)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
    tmp.chmod(0o755)
    try:
        if zipfile.is_zipfile(archive):
            count = _extract_zip(name, archive, tmp)
        elif tarfile.is_tarfile(archive):
            count = _extract_tar(name, archive, tmp)
        else:
            raise DataError(
                f"dataset {name!r}: {archive} is neither a zip nor a tar archive; cannot extract"
            )
        os.replace(tmp, dest)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
        raise DataError(f"dataset {name!r}: cannot extract archive {archive}: {exc}") from exc
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return count


def _extract_zip(name: str, archive: Path, dest: Path) -> int:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        for info in infos:
            _safe_member(name, archive, info.filename)
            if (info.external_attr >> 16) & 0o170000 == 0o120000:
                raise DataError(
                    f"dataset {name!r}: archive {archive} has a symbolic link "
                    f"{info.filename!r}; refusing to extract it"
                )
        for info in infos:
            out = dest.joinpath(*_safe_member(name, archive, info.filename).parts)
            if info.is_dir():
                out.mkdir(parents=True, exist_ok=True)
                continue
            out.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst, _CHUNK)
    return len(infos)


def _extract_tar(name: str, archive: Path, dest: Path) -> int:
    with tarfile.open(archive, "r:*") as tf:
        members = tf.getmembers()
        for member in members:
            _safe_member(name, archive, member.name)
            if not (member.isfile() or member.isdir()):
                raise DataError(
                    f"dataset {name!r}: archive {archive} has a link or special file "
                    f"{member.name!r}; refusing to extract it"
                )
        tf.extractall(dest, members=members, filter="data")
    return len(members)


def image_files(folder: Path, recursive: bool) -> list[Path]:
    """Image files under ``folder`` (sorted), skipping hidden files and macOS ``__MACOSX``."""
    files = folder.rglob("*") if recursive else folder.iterdir()
    found = []
    for path in files:
        rel = path.relative_to(folder).parts
        if any(part.startswith(".") or part == "__MACOSX" for part in rel):
            continue
        if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file():
            found.append(path)
    return sorted(found)


def _url_files(name: str, spec: dict, root: Path) -> tuple[dict[str, list[Path]], dict]:
    """Image files per class name under an extracted archive, by the configured layout."""
    layout = _choice_key(name, spec, "layout", None, LAYOUTS)
    per_class: dict[str, list[Path]] = {}
    info: dict[str, Any] = {"layout": layout}
    if layout == "class_folders":
        for path in image_files(root, recursive=True):
            if path.parent == root:
                raise DataError(
                    f"dataset {name!r}: image {path} lies at the top of the archive; layout "
                    "class_folders needs one folder per class (or use layout filename_prefix)"
                )
            per_class.setdefault(path.parent.name, []).append(path)
        folders: dict[str, set[str]] = {}
        for cls, paths in per_class.items():
            folders[cls] = {str(p.parent.relative_to(root)) for p in paths}
        merged = {cls: sorted(f) for cls, f in folders.items() if len(f) > 1}
        if merged:
            info["merged_folders"] = merged
    else:
        length = _int_key(name, spec, "prefix_length", 3, minimum=1)
        info["prefix_length"] = length
        for path in image_files(root, recursive=True):
            per_class.setdefault(path.name[:length], []).append(path)
    return {cls: sorted(per_class[cls]) for cls in sorted(per_class)}, info


def _split_per_class(
    per_class: dict[str, list[Path]], test_fraction: float, seed: int
) -> tuple[list[tuple[Path, int]], list[tuple[Path, int]]]:
    """Deterministic per-class split: a seeded permutation of each class's sorted files."""
    rng = np.random.default_rng((seed, 0x7370))
    train, test = [], []
    for label, cls in enumerate(per_class):
        paths = per_class[cls]
        n = len(paths)
        n_test = n if test_fraction >= 1 else int(round(n * test_fraction))
        if test_fraction < 1 and n > 1:
            n_test = min(max(n_test, 1), n - 1)  # keep both splits non-empty per class
        order = rng.permutation(n)
        test += [(paths[i], label) for i in sorted(order[:n_test])]
        train += [(paths[i], label) for i in sorted(order[n_test:])]
    return train, test


def _build_url(ctx: _Context, raw: Path) -> _Built:
    """Images of an extracted archive, classes by layout, split per class by test_fraction."""
    name, spec = ctx.name, ctx.spec
    url, expected, archive = _url_settings(name, spec)
    test_fraction = _fraction_key(name, spec, "test_fraction", 0.2)
    min_per_class = _int_key(name, spec, "min_per_class", 1, minimum=1)
    extracted = raw / _EXTRACTED
    with contextlib.ExitStack() as stack:
        if not extracted.is_dir():
            extracted = _extract_for_prepare(ctx, raw, url, expected, archive, stack)
        per_class, info = _url_files(name, spec, extracted)
        if not per_class:
            raise DataError(f"dataset {name!r}: no image files under {extracted}")
        dropped = {c: len(p) for c, p in per_class.items() if len(p) < min_per_class}
        per_class = {c: p for c, p in per_class.items() if len(p) >= min_per_class}
        if dropped:
            log.info(
                "dataset %s: dropped %d classes below %d images", name, len(dropped), min_per_class
            )
        if not per_class:
            raise DataError(
                f"dataset {name!r}: no class under {extracted} has datasets.{name}."
                f"min_per_class = {min_per_class} images"
            )
        train, test = _split_per_class(per_class, test_fraction, ctx.seed)
        built = _load_lists(ctx, {"train": train, "test": test}, extracted, "stretch")
    built.classes = list(per_class)
    built.provenance.update(
        {
            "url": url,
            "sha256": expected,
            "archive": archive,
            "test_fraction": test_fraction,
            "min_per_class": min_per_class,
            "dropped_classes": dropped,
            **info,
        }
    )
    return built


def _extract_for_prepare(
    ctx: _Context,
    raw: Path,
    url: str,
    expected: str | None,
    archive: str,
    stack: contextlib.ExitStack,
) -> Path:
    """No ``extracted`` folder (archive placed by hand): verify and extract to a temp folder."""
    candidates = [raw / archive, raw.parent / archive]
    found = next((p for p in candidates if p.is_file()), None)
    if found is None:
        raise DataError(
            f"dataset {ctx.name!r}: neither {raw / _EXTRACTED} nor the archive {candidates[0]} "
            f"exists; run the download (rule raw_dataset) or place the archive from {url} there"
        )
    _verify(ctx.name, url, found, expected, candidates[0])
    raw.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(
        stack.enter_context(tempfile.TemporaryDirectory(prefix=f".{ctx.name}.", dir=raw.parent))
    )
    _extract(ctx.name, found, tmp / _EXTRACTED)
    return tmp / _EXTRACTED


def _load_lists(
    ctx: _Context,
    lists: dict[str, list[tuple[Path, int]]],
    root: Path,
    resize: str,
) -> _Built:
    """Load (path, label) lists per split after applying ``max_train``/``max_test`` caps."""
    arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    files: dict[str, list[str]] = {}
    unreadable: list[str] = []  # both splits are read before any error: all bad files at once
    for split in SPLITS:
        items = lists[split]
        keep = ctx.cap_indices(split, len(items))
        items = [items[i] for i in keep]
        paths = [p for p, _ in items]
        try:
            x = load_images(paths, ctx.size, resize, desc=f"{ctx.name} {split}", dataset=ctx.name)
        except DataError as exc:
            unreadable.append(f"{split}: {exc}")
            continue
        y = np.asarray([label for _, label in items], dtype=np.int64)
        arrays[split] = (x, y)
        files[split] = [p.relative_to(root).as_posix() for p in paths]
    if unreadable:
        raise DataError("; ".join(unreadable))
    return _Built(
        *arrays["train"],
        *arrays["test"],
        classes=[],
        provenance={"resize": resize, "files": files},
    )


# --------------------------------------------------------------------------------------------
# imagefolder
# --------------------------------------------------------------------------------------------


def source_fingerprint(name: str, spec: dict) -> str | None:
    """A content id of the files a dataset is read from outside ``raw_dir``, or None.

    An ``imagefolder`` is read at prepare time from ``root``, which Snakemake does not track:
    this hashes every image file's relative path, size and modification time (a stat, no
    reads), so the workflow passes it as a parameter and rebuilds the dataset when files are
    added, removed or edited. Other sources are pinned by the config itself (a ``url``
    archive by its sha256) and give None; so does a missing root (the job names it).
    """
    if spec.get("source") != "imagefolder" or not spec.get("root"):
        return None
    root = Path(str(spec["root"])).expanduser()
    if not root.is_dir():
        return None
    digest = hashlib.sha256()
    for path in image_files(root, recursive=True):
        stat = path.stat()
        digest.update(
            f"{path.relative_to(root).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode()
        )
    return digest.hexdigest()


def _imagefolder_root(name: str, spec: dict) -> Path:
    root = Path(_str_key(name, spec, "root")).expanduser()
    if not root.is_dir():
        raise DataError(
            f"dataset {name!r}: datasets.{name}.root {root} is not a folder; it must hold "
            "train/<class>/ and test/<class>/ image folders"
        )
    return root


def _fetch_imagefolder(name: str, spec: dict, staging: Path, target: Path) -> dict:
    root = _imagefolder_root(name, spec)
    if not (root / "train").is_dir():
        raise DataError(f"dataset {name!r}: {root / 'train'} is missing (train/<class>/ images)")
    return {"root": str(root.resolve()), "note": "images are read from root at prepare time"}


def _build_imagefolder(ctx: _Context, raw: Path) -> _Built:
    """``root/train/<class>/*`` and ``root/test/<class>/*``; classes from the train folders."""
    name, spec = ctx.name, ctx.spec
    root = _imagefolder_root(name, spec)
    resize = _choice_key(name, spec, "resize", "stretch", RESIZE_MODES)
    class_dirs: dict[str, dict[str, Path]] = {}
    for split in SPLITS:
        folder = root / split
        if not folder.is_dir():
            raise DataError(f"dataset {name!r}: {folder} is missing ({split}/<class>/ images)")
        class_dirs[split] = {
            d.name: d for d in sorted(folder.iterdir()) if d.is_dir() and not d.name.startswith(".")
        }
    classes = sorted(class_dirs["train"])
    if not classes:
        raise DataError(f"dataset {name!r}: {root / 'train'} has no class folders")
    for cls, folder in class_dirs["test"].items():
        if cls not in class_dirs["train"]:
            raise DataError(
                f"dataset {name!r}: test class {cls!r} ({folder}) has no folder in "
                f"{root / 'train'}; test classes must be a subset of the train classes"
            )
    lists: dict[str, list[tuple[Path, int]]] = {}
    for split in SPLITS:
        items = []
        for label, cls in enumerate(classes):
            if cls not in class_dirs[split]:
                continue
            paths = image_files(class_dirs[split][cls], recursive=True)
            if split == "train" and not paths:
                raise DataError(
                    f"dataset {name!r}: class folder {class_dirs[split][cls]} has no images "
                    f"({', '.join(sorted(IMAGE_EXTENSIONS))})"
                )
            items += [(p, label) for p in paths]
        lists[split] = items
    built = _load_lists(ctx, lists, root, resize)
    built.classes = classes
    built.provenance["root"] = str(root.resolve())
    return built


# --------------------------------------------------------------------------------------------
# Dispatch
# --------------------------------------------------------------------------------------------


def _fetch_embedded(name: str, spec: dict, staging: Path, target: Path) -> dict:
    return {
        "note": "embedded source: nothing is downloaded; the images come from "
        f"{'scikit-image' if spec['source'] == 'embedded_photos' else 'scikit-learn'} "
        "at prepare time"
    }


_FETCHERS: dict[str, Callable[[str, dict, Path, Path], dict]] = {
    "embedded_photos": _fetch_embedded,
    "embedded_digits": _fetch_embedded,
    "cifar10": _fetch_torchvision,
    "gtsrb": _fetch_torchvision,
    "url": _fetch_url,
    "imagefolder": _fetch_imagefolder,
}

_BUILDERS: dict[str, Callable[[_Context, Path], _Built]] = {
    "embedded_photos": _build_embedded_photos,
    "embedded_digits": _build_embedded_digits,
    "cifar10": _build_torchvision,
    "gtsrb": _build_torchvision,
    "url": _build_url,
    "imagefolder": _build_imagefolder,
}
