"""Datasets: fetch raw data (:func:`download`) and turn it into uint8 arrays (:func:`prepare`).

The workflow treats every dataset the same way once it is prepared: four ``.npy`` files
(``x_train``, ``y_train``, ``x_test``, ``y_test``; images are uint8 ``N x H x W x 3`` RGB, labels
int64) and a ``meta.json`` sidecar that says where the images came from. The two steps are kept
apart so that network access happens only in :func:`download` (inside a Snakemake job, never
while the DAG is built) and :func:`prepare` works offline from ``raw_dir/<name>``.

This is the public entry module: it dispatches on the ``source`` key of a dataset's config
(see :data:`SOURCES`) to one module per source, in the style of torchvision's ``datasets/``,
and re-exports the names callers use (listed in ``__all__``):

- ``embedded_photos`` / ``embedded_digits``: :mod:`.embedded` (scikit-image photos,
  scikit-learn digits; offline);
- ``cifar10`` / ``gtsrb``: :mod:`.torchvision_sources` (through :mod:`torchvision.datasets`);
- ``url``: :mod:`.url` (an archive fetched from a URL and checked against its sha256, e.g.
  PubFig83 or TSRD), with the download, checksum and safe extraction in :mod:`.archives`;
- ``imagefolder``: :mod:`.imagefolder` (the user's own ``root/train/<class>/*`` and
  ``root/test/<class>/*``).

Shared once: :mod:`.spec` (the config keys and what every builder gets and returns),
:mod:`.images` (decoding image files), :mod:`.staging` (the download's temporary folder) and
:mod:`.verification` (the checks and ``meta.json`` of prepared arrays).

Failure policy: every error names the dataset and the file, URL or config key at fault, and
neither step leaves partial output behind (downloads go to a temporary folder beside
``raw_dir/<name>`` that is renamed into place at the end; prepared files are removed again if
anything fails).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError
from ..io import load_npy, save_npy, write_json
from .embedded import DEFAULT_PHOTOS, build_embedded_digits, build_embedded_photos, fetch_embedded
from .imagefolder import build_imagefolder, fetch_imagefolder, source_fingerprint
from .images import IMAGE_EXTENSIONS, RESIZE_MODES, image_files, load_image, load_images
from .spec import ARRAY_KEYS, SPLITS, BuildContext, BuiltDataset, spec_int
from .staging import staged_dir, terminate_as_interrupt
from .torchvision_sources import build_torchvision, fetch_torchvision
from .url import EXTRACTED_DIR, LAYOUTS, build_url, fetch_url
from .verification import checked_arrays, prepared_meta

log = logging.getLogger(__name__)

__all__ = [
    "ARRAY_KEYS",
    "DEFAULT_PHOTOS",
    "IMAGE_EXTENSIONS",
    "LAYOUTS",
    "RESIZE_MODES",
    "SOURCES",
    "SPLITS",
    "download",
    "image_files",
    "load_image",
    "load_images",
    "load_split",
    "prepare",
    "source_fingerprint",
]

SOURCES: tuple[str, ...] = (
    "embedded_photos",
    "embedded_digits",
    "cifar10",
    "gtsrb",
    "url",
    "imagefolder",
)
_SOURCE_NOTE = "SOURCE.json"


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
        terminate_as_interrupt(),
        staged_dir(target, keep_existing=keep, skip=(EXTRACTED_DIR, _SOURCE_NOTE)) as staging,
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
    ctx = BuildContext(name=name, spec=dict(spec), size=_size_of(name, spec), seed=int(seed))
    raw = Path(raw_dir) / name
    out_dir = Path(out_dir)
    outputs = [out_dir / f"{key}.npy" for key in ARRAY_KEYS] + [out_dir / "meta.json"]
    try:
        built = _BUILDERS[source](ctx, raw)
        arrays = checked_arrays(ctx, built)
        meta = prepared_meta(ctx, source, built, arrays)
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
    size = spec_int(name, spec, "size", None, minimum=1)
    if size is None:
        raise ConfigError(f"dataset {name!r}: datasets.{name}.size is missing")
    return size


_FETCHERS: dict[str, Callable[[str, dict, Path, Path], dict]] = {
    "embedded_photos": fetch_embedded,
    "embedded_digits": fetch_embedded,
    "cifar10": fetch_torchvision,
    "gtsrb": fetch_torchvision,
    "url": fetch_url,
    "imagefolder": fetch_imagefolder,
}

_BUILDERS: dict[str, Callable[[BuildContext, Path], BuiltDataset]] = {
    "embedded_photos": build_embedded_photos,
    "embedded_digits": build_embedded_digits,
    "cifar10": build_torchvision,
    "gtsrb": build_torchvision,
    "url": build_url,
    "imagefolder": build_imagefolder,
}
