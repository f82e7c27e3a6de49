"""The authors' published 32x32 trigger files, downloaded at run time and checked by sha256.

Zeng et al. released the triggers of their CIFAR-10/GTSRB experiments with their code
(repository YiZeng623/frequency-backdoor, MIT licence). This project does not redistribute
them: with ``trigger_source: official`` the workflow fetches each file from the authors'
repository (:func:`official_url`: each file at its own repository path, :data:`OFFICIAL_PATHS`;
``Sec4_Frequency_Detection/triggers/`` for all but the GTSRB smooth trigger, which lives in
``Sec5_Smooth_Trigger/data/``), accepts it only if its sha256 matches :data:`OFFICIAL_FILES`,
and turns it into a :class:`~freqbackdoor.triggers.registry.Trigger` that inserts it the way the
authors' evaluation code does:

- trojan_sq, trojan_wm, blend, nature, l2_inv: ``clip(x + trigger, 0, 1)`` (``additive``,
  weight 1, mask 1 everywhere; ``blend.png`` is already scaled by 0.2);
- l0_inv: ``x * (1 - mask) + trigger`` with ``mask.npy`` (``replace``);
- badnets: no file; the authors define it in code (rows/cols 27..30 set to 1), which is exactly
  this project's ``badnets`` builder at 32 px;
- smooth: the Algorithm-1 trigger, float32 ``1 x 32 x 32 x 3`` in [0, 0.2], inserted as
  ``x + v`` and the whole image min-max normalised to [0, 1] (``normalise``, weight 1). There
  are two files: ``best_universal.npy`` (CIFAR-10, published dominant label 6) and
  ``gtsrb_universal.npy`` (GTSRB, label 1). The dataset picks one by its ``paper_name``
  (:func:`official_variant`): ``gtsrb`` takes the GTSRB file (entry ``smooth_gtsrb``), every
  other dataset the CIFAR-10 one (entry ``smooth``). Their target label defaults to the
  published dominant label (:data:`OFFICIAL_TARGETS`).

A ``base_url`` other than ``None`` names a folder that holds the files side by side (a mirror
or a ``file://`` copy of the authors' files), so a file's URL there is ``base_url/<file>``.
:func:`smooth_highfreq_ratios` measures the high-frequency energy ratio of the published
CIFAR-10 smooth trigger beside this project's own on the same images.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from ..errors import ChecksumError, ConfigError, DataError
from ..io import download_verified, sha256_file
from ..triggers.registry import Trigger, build_trigger

log = logging.getLogger(__name__)

OFFICIAL_REPO_URL = "https://raw.githubusercontent.com/YiZeng623/frequency-backdoor/main/"
# The folder that holds every published trigger file but the GTSRB smooth trigger.
OFFICIAL_BASE_URL = OFFICIAL_REPO_URL + "Sec4_Frequency_Detection/triggers/"
OFFICIAL_SIZE = 32

# trigger name -> (file names, their sha256 values), in the same order.
OFFICIAL_FILES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "badnets": ((), ()),
    "trojan_sq": (
        ("trojan_sq.png",),
        ("b47420e27b0a78a828787526930d77651a8ce7124f59b89ac495de787eb25b66",),
    ),
    "trojan_wm": (
        ("trojan_wm.png",),
        ("1ed725dab526c7218333640cc6dc18cb85aa1c1c2d6497082b3234a24c77e3fa",),
    ),
    "blend": (
        ("blend.png",),
        ("18058552c8c1d55f82cae9cc1c81bfec28dedd55b48b12fa48f4faf6c8f1f97f",),
    ),
    "nature": (
        ("nature.png",),
        ("96738ded8e574a2211720ffba5b6b6f3a4e6b55c46a137d1b0226398831d36ea",),
    ),
    "l2_inv": (
        ("l2_inv.png",),
        ("138a28d3883d4e3095a304ac441c2b9011bb19dbb43d0d5d3b535f13f7669e69",),
    ),
    "l0_inv": (
        ("l0_inv.png", "mask.npy"),
        (
            "c979bfd3deab944b59f1e3d9172fb56b19bff081d3f596ed61e6fab70e62fc51",
            "d8eeee5213e4d1648d358688ac20b0485a55981d85f261c537421bd397200bf3",
        ),
    ),
    "smooth": (
        ("best_universal.npy",),
        ("9130f56515ed234e30798589074d641521bacfc5a6a1b0d967dcbd21869b68ff",),
    ),
    "smooth_gtsrb": (
        ("gtsrb_universal.npy",),
        ("dd73b6883861b1ee46623b6051e452d814e1c0bd647b078815699f6e483a18e1",),
    ),
}
ADDITIVE = ("trojan_sq", "trojan_wm", "blend", "nature", "l2_inv")
SMOOTH = ("smooth", "smooth_gtsrb")
# Each file's path in the authors' repository (all others: Sec4_Frequency_Detection/triggers/).
OFFICIAL_PATHS: dict[str, str] = {
    "gtsrb_universal.npy": "Sec5_Smooth_Trigger/data/gtsrb_universal.npy",
}
# The published dominant labels of the smooth triggers (the paper: 6 on CIFAR-10, 1 on GTSRB).
OFFICIAL_TARGETS: dict[str, int] = {"smooth": 6, "smooth_gtsrb": 1}
# The smooth trigger's value range and array shape, as published.
SMOOTH_MAX = 0.2
SMOOTH_SHAPE = (1, OFFICIAL_SIZE, OFFICIAL_SIZE, 3)


def official_variant(name: str, paper_name: str | None = None) -> str:
    """The :data:`OFFICIAL_FILES` entry of trigger ``name`` for a dataset called ``paper_name``.

    Only ``smooth`` has a file per dataset: a dataset whose ``paper_name`` is ``gtsrb`` gets
    ``smooth_gtsrb`` (``gtsrb_universal.npy``), every other one ``smooth``
    (``best_universal.npy``, CIFAR-10's). Other triggers are the same file everywhere.
    """
    if name == "smooth" and paper_name == "gtsrb":
        return "smooth_gtsrb"
    return name


def official_url(file_name: str, base_url: str | None = None) -> str:
    """Where published file ``file_name`` is downloaded from.

    ``base_url`` ``None``: the authors' repository at the file's own path
    (:data:`OFFICIAL_PATHS`, else ``Sec4_Frequency_Detection/triggers/<file>``); otherwise
    ``base_url/<file>``, a folder holding the files side by side.
    """
    if base_url is None:
        return OFFICIAL_REPO_URL + OFFICIAL_PATHS.get(
            file_name, "Sec4_Frequency_Detection/triggers/" + file_name
        )
    return base_url.rstrip("/") + "/" + file_name


def _entry(name: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if name not in OFFICIAL_FILES:
        raise ConfigError(
            f"no official trigger {name!r}; the authors published: {', '.join(OFFICIAL_FILES)}"
        )
    files, digests = OFFICIAL_FILES[name]
    if len(files) != len(digests):
        raise ConfigError(
            f"OFFICIAL_FILES[{name!r}] lists {len(files)} files, {len(digests)} sha256"
        )
    return files, digests


def check_official_size(dataset: str, height: int, width: int) -> None:
    """``ConfigError`` unless the dataset's images are 32x32, the only size the files exist in."""
    if (height, width) != (OFFICIAL_SIZE, OFFICIAL_SIZE):
        raise ConfigError(
            f"official triggers are {OFFICIAL_SIZE}x{OFFICIAL_SIZE}; dataset {dataset} is "
            f"{height}x{width} (use trigger_source: generated for it)"
        )


def fetch_official(
    name: str, cache_dir: str | os.PathLike, base_url: str | None = None
) -> list[Path]:
    """Paths of trigger ``name``'s files in ``cache_dir``, downloading those not cached yet.

    ``name`` is an :data:`OFFICIAL_FILES` entry (see :func:`official_variant` for the smooth
    trigger's two); ``base_url`` as in :func:`official_url`. A cached file is reused only if
    its sha256 matches; otherwise it is downloaded again (``urllib``, so ``file://`` URLs work
    too) into a temporary file in ``cache_dir``, checked, and renamed into place. A mismatch
    raises ``ChecksumError`` with the URL, both digests and where a file verified by hand can
    be put; nothing is left behind in ``cache_dir``.
    """
    files, digests = _entry(name)
    cache = Path(cache_dir)
    paths = []
    for file_name, expected in zip(files, digests, strict=True):
        path = cache / file_name
        if path.is_file():
            actual = sha256_file(path)
            if actual == expected:
                paths.append(path)
                continue
            log.warning(
                "cached %s has sha256 %s, not %s: fetching it again", path, actual, expected
            )
        url = official_url(file_name, base_url)
        log.info("downloading %s", url)
        download_verified(url, path, expected)
        paths.append(path)
    return paths


def official_trigger(
    name: str,
    files: Sequence[str | os.PathLike],
    target_label: int | None = None,
    base_url: str | None = None,
    dataset: str = "this dataset",
    height: int = OFFICIAL_SIZE,
    width: int = OFFICIAL_SIZE,
) -> Trigger:
    """The :class:`Trigger` that inserts official trigger ``name`` from its downloaded ``files``.

    ``files`` are the paths :func:`fetch_official` returned (same order as in
    :data:`OFFICIAL_FILES`); each is checked against its sha256 again, so a trigger called
    official is always the published one. ``target_label`` ``None`` means the published
    dominant label for the smooth triggers (:data:`OFFICIAL_TARGETS`) and 0 for the others.
    ``height``/``width`` are the dataset's image size: anything but 32x32 raises
    ``ConfigError``. The meta records each file's URL and sha256. A smooth trigger file of the
    wrong shape, dtype or range raises ``DataError`` naming the file.
    """
    check_official_size(dataset, height, width)
    names, digests = _entry(name)
    paths = [Path(f) for f in files]
    if [p.name for p in paths] != list(names):
        raise ConfigError(
            f"official trigger {name!r} is made from {list(names)}, got {[str(p) for p in paths]}"
        )
    if target_label is None:
        target_label = OFFICIAL_TARGETS.get(name, 0)
    record = {}
    for path, expected in zip(paths, digests, strict=True):
        url = official_url(path.name, base_url)
        try:
            actual = sha256_file(path)
        except OSError as exc:
            raise DataError(f"cannot read official trigger file {path}: {exc}") from exc
        if actual != expected:
            raise ChecksumError(
                f"{path}: sha256 mismatch: expected {expected}, got {actual}; it should be the "
                f"file published at {url}"
            )
        record[path.name] = {"url": url, "sha256": actual}
    meta = {
        "source": "official: Zeng et al.'s published trigger "
        f"({OFFICIAL_REPO_URL if base_url is None else base_url})",
        "official_files": record,
    }
    if name == "badnets":
        trigger = build_trigger(
            "badnets", OFFICIAL_SIZE, OFFICIAL_SIZE, {"target_label": target_label}
        )
        trigger.meta.update(meta)
        trigger.meta["note"] = "no file: the authors define BadNets in code (rows/cols 27..30 = 1)"
        return trigger
    if name in SMOOTH:
        pattern = read_smooth(paths[0])
        meta["insertion"] = "x + v, then the whole image min-max normalised to [0, 1]"
        meta["published_target_label"] = OFFICIAL_TARGETS[name]
        return Trigger(
            name="smooth",
            pattern=pattern,
            mask=np.ones_like(pattern),
            mode="normalise",
            weight=1.0,
            target_label=int(target_label),
            meta=meta,
        )
    pattern = _read_png(paths[0])
    if name in ADDITIVE:
        return Trigger(
            name=name,
            pattern=pattern,
            mask=np.ones_like(pattern),
            mode="additive",
            weight=1.0,
            target_label=int(target_label),
            meta=meta,
        )
    if name == "l0_inv":
        mask = _read_mask(paths[1])
        # The authors compute x * (1 - mask) + trigger; "replace" is x * (1 - m) + p * m, the
        # same wherever the pattern is zero outside the mask (true of the published files).
        meta["pattern_outside_mask"] = int(np.count_nonzero(pattern * (1.0 - mask)))
        return Trigger(
            name=name,
            pattern=pattern,
            mask=mask,
            mode="replace",
            weight=1.0,
            target_label=int(target_label),
            meta=meta,
        )
    raise ConfigError(f"official trigger {name!r} has no insertion rule")  # pragma: no cover


def _read_png(path: Path) -> np.ndarray:
    """A 32x32 RGB PNG as float32 ``32 x 32 x 3`` in [0, 1]; anything else raises DataError."""
    try:
        with Image.open(path) as img:
            array = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read official trigger image {path}: {exc}") from exc
    if array.shape != (OFFICIAL_SIZE, OFFICIAL_SIZE, 3):
        raise DataError(f"official trigger image {path} is {array.shape}, not 32 x 32 x 3")
    return array


def _read_mask(path: Path) -> np.ndarray:
    """The authors' ``3 x 32 x 32`` mask (channels first) as float32 ``32 x 32 x 3``."""
    try:
        mask = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read official trigger mask {path}: {exc}") from exc
    if mask.shape != (3, OFFICIAL_SIZE, OFFICIAL_SIZE):
        raise DataError(f"official trigger mask {path} is {mask.shape}, not 3 x 32 x 32")
    mask = np.transpose(np.asarray(mask, dtype=np.float32), (1, 2, 0))
    if mask.min() < 0 or mask.max() > 1:
        raise DataError(f"official trigger mask {path} has values outside [0, 1]")
    return np.ascontiguousarray(mask)


def read_smooth(path: str | os.PathLike) -> np.ndarray:
    """A published smooth trigger ``.npy`` as float32 ``32 x 32 x 3`` in [0, 0.2].

    The authors saved ``v`` as float32 ``1 x 32 x 32 x 3`` (batch, height, width, channels)
    scaled to [0, 0.2]; a file of another shape or dtype, with non-finite values or values
    outside that range, raises ``DataError`` naming the file.
    """
    path = Path(path)
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read official smooth trigger {path}: {exc}") from exc
    if array.shape != SMOOTH_SHAPE or array.dtype != np.float32:
        raise DataError(
            f"official smooth trigger {path} is {array.dtype} {array.shape}, not float32 "
            f"{SMOOTH_SHAPE}"
        )
    if not np.isfinite(array).all():
        raise DataError(
            f"official smooth trigger {path} has values outside [0, {SMOOTH_MAX}]: NaN/inf"
        )
    if array.min() < 0 or array.max() > SMOOTH_MAX + 1e-6:
        raise DataError(
            f"official smooth trigger {path} has values outside [0, {SMOOTH_MAX}] "
            f"(min {float(array.min()):g}, max {float(array.max()):g})"
        )
    return np.ascontiguousarray(array[0])


def smooth_highfreq_ratios(
    images: np.ndarray,
    official: Trigger | str | os.PathLike | None,
    ours: Trigger | None = None,
    *,
    dataset: str = "",
    cutoff: float = 1.0,
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    chunk_size: int = 2048,
) -> pd.DataFrame:
    """High-frequency energy ratio of the authors' smooth trigger, and of ours, on ``images``.

    ``images`` are clean uint8 ``N x 32 x 32 x 3`` images (typically a test-set sample);
    ``official`` is the published trigger (a :class:`Trigger` from :func:`official_trigger`,
    or the path of ``best_universal.npy``, loaded and sha256-checked here; ``None`` when it is
    not at hand); ``ours`` this project's smooth trigger, if any. Each trigger is inserted into
    the same images and :func:`freqbackdoor.frequency.highfreq.ratio_record` compares the band energies
    (upper band ``u/H + v/W >= cutoff`` of the DCT of the uint8 images, as the highfreq table)
    with the clean ones, paired, with the same bootstrap ``seed``, so both rows resample the
    same images. Returns a frame with :data:`freqbackdoor.frequency.highfreq.COLUMNS`, one row per
    trigger given: ``attack`` is ``smooth_official`` and ``smooth``.
    """
    from ..frequency.dct import dct2
    from ..frequency.highfreq import COLUMNS, band_energy, high_band_mask, ratio_record

    if official is not None and not isinstance(official, Trigger):
        official = official_trigger("smooth", [official])
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3:
        raise DataError(
            f"expected uint8 N x H x W x 3 images, got {images.dtype} {tuple(images.shape)}"
        )
    mask = high_band_mask(images.shape[1], images.shape[2], cutoff)

    def energies(trigger: Trigger | None) -> np.ndarray:
        out = []
        for start in range(0, images.shape[0], chunk_size):
            chunk = np.asarray(images[start : start + chunk_size])
            if trigger is not None:
                chunk = trigger.apply(chunk)
            out.append(band_energy(dct2(chunk), mask))
        return np.concatenate(out)

    clean = energies(None)
    rows = [("smooth_official", official), ("smooth", ours)]
    records = [
        ratio_record(dataset, attack, clean, energies(trigger), n_boot, seed, confidence)
        for attack, trigger in rows
        if trigger is not None
    ]
    return pd.DataFrame.from_records(records, columns=list(COLUMNS))
