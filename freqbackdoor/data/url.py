"""The ``url`` source: an archive (zip or tar) fetched from a URL and checked against its sha256.

E.g. PubFig83 (layout ``class_folders``: one folder per class) or TSRD (layout
``filename_prefix``: the class in the file-name prefix). The download uses an archive placed
by hand in ``raw_dir/<name>`` or ``raw_dir`` when there is one, else fetches it; either way it
is verified and extracted into ``raw_dir/<name>/extracted`` (:data:`EXTRACTED_DIR`). Prepare
reads the images by the configured layout and splits each class with a seeded permutation
(``test_fraction``); classes below ``min_per_class`` images are dropped and recorded.
"""

from __future__ import annotations

import contextlib
import logging
import re
import tempfile
import urllib.parse
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError
from .archives import download_file, extract_archive, verified_sha256
from .images import image_files, load_file_lists
from .spec import BuildContext, BuiltDataset, spec_choice, spec_fraction, spec_int, spec_string

log = logging.getLogger(__name__)


LAYOUTS: tuple[str, ...] = ("class_folders", "filename_prefix")
EXTRACTED_DIR = "extracted"


def _url_settings(name: str, spec: dict) -> tuple[str, str | None, str]:
    """The URL, the expected sha256 (lower case, or None) and the archive's file name."""
    url = spec_string(name, spec, "url")
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
        archive = spec_string(name, spec, "archive")
    else:
        archive = PurePosixPath(urllib.parse.unquote(parsed.path)).name
    if not archive or archive in (".", "..") or "/" in archive or "\\" in archive:
        raise ConfigError(
            f"dataset {name!r}: cannot name the archive of {url!r}; set datasets.{name}.archive "
            "to a plain file name"
        )
    return url, expected, archive


def fetch_url(name: str, spec: dict, staging: Path, target: Path) -> dict:
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
        download_file(name, url, path, manual)
    actual = verified_sha256(name, url, path, expected, manual)
    members = extract_archive(name, path, staging / EXTRACTED_DIR)
    return {
        "url": url,
        "sha256": actual,
        "archive": archive,
        "archive_origin": origin,
        "extracted": EXTRACTED_DIR,
        "members": members,
    }


def _url_files(name: str, spec: dict, root: Path) -> tuple[dict[str, list[Path]], dict]:
    """Image files per class name under an extracted archive, by the configured layout."""
    layout = spec_choice(name, spec, "layout", None, LAYOUTS)
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
        length = spec_int(name, spec, "prefix_length", 3, minimum=1)
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


def build_url(ctx: BuildContext, raw: Path) -> BuiltDataset:
    """Images of an extracted archive, classes by layout, split per class by test_fraction."""
    name, spec = ctx.name, ctx.spec
    url, expected, archive = _url_settings(name, spec)
    test_fraction = spec_fraction(name, spec, "test_fraction", 0.2)
    min_per_class = spec_int(name, spec, "min_per_class", 1, minimum=1)
    extracted = raw / EXTRACTED_DIR
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
        built = load_file_lists(ctx, {"train": train, "test": test}, extracted, "stretch")
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
    ctx: BuildContext,
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
            f"dataset {ctx.name!r}: neither {raw / EXTRACTED_DIR} nor the archive {candidates[0]} "
            f"exists; run the download (rule raw_dataset) or place the archive from {url} there"
        )
    verified_sha256(ctx.name, url, found, expected, candidates[0])
    raw.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(
        stack.enter_context(tempfile.TemporaryDirectory(prefix=f".{ctx.name}.", dir=raw.parent))
    )
    extract_archive(ctx.name, found, tmp / EXTRACTED_DIR)
    return tmp / EXTRACTED_DIR
