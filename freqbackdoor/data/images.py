"""Image files to uint8 RGB arrays: one file, many files, and labelled file lists per split.

Every source that reads image files (``url``, ``imagefolder``; torchvision's PIL images too)
decodes them here, so all of them accept the same modes (grayscale, palette, alpha, 16-bit,
float, EXIF orientation, multi-frame) and resize the same way (:data:`RESIZE_MODES`).
Decoding runs in a few threads (:func:`decoding_threads`); an unreadable file is a
:class:`~freqbackdoor.errors.DataError` that names it, and a folder's unreadable files are
reported together.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from ..errors import ConfigError, DataError
from ..logs import progress
from .spec import SPLITS, BuildContext, BuiltDataset

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
RESIZE_MODES: tuple[str, ...] = ("stretch", "center_crop")


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
    with ThreadPoolExecutor(max_workers=decoding_threads()) as pool:
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


def _check_resize(resize: str, who: str) -> None:
    if resize not in RESIZE_MODES:
        raise ConfigError(f"{who}: unknown resize {resize!r}; one of {', '.join(RESIZE_MODES)}")


def decoding_threads() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


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


def image_to_array(image: Any, size: int) -> np.ndarray:
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


def load_file_lists(
    ctx: BuildContext,
    lists: dict[str, list[tuple[Path, int]]],
    root: Path,
    resize: str,
) -> BuiltDataset:
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
    return BuiltDataset(
        *arrays["train"],
        *arrays["test"],
        classes=[],
        provenance={"resize": resize, "files": files},
    )
