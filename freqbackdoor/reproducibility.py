"""Fingerprints of a run's results, to show that one config and one seed give the same bytes.

A run is reproducible on one machine when every result file (tables, CSV, JSON sidecars, score
archives, checkpoints, arrays, figures) is byte-identical across runs. Wall times and the run's
origin are what must differ, so they live apart: in ``results/benchmarks/`` (Snakemake's
benchmark files) and ``results/report/provenance.json`` (commit, finishing time, versions),
which are skipped, and in JSON objects under a ``timing`` key, which are dropped before a JSON
file is hashed. Everything else is hashed as written.

``freqbackdoor fingerprint results > a.tsv`` after one run and
``freqbackdoor fingerprint results --compare a.tsv`` after another list the files that differ.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .errors import DataError
from .io import sha256_file

# skipped: Snakemake's benchmark files (wall times, memory) live here
SKIPPED_FOLDERS = frozenset({"benchmarks"})
# skipped: the run's commit, finishing time and versions (freqbackdoor.provenance)
SKIPPED_FILES = frozenset({"report/provenance.json"})
# a JSON object under this key holds wall times and throughputs; fingerprints ignore it
TIMING_KEY = "timing"


def without_timing(value: Any) -> Any:
    """``value`` (parsed JSON) with every object's ``timing`` entry removed, at any depth."""
    if isinstance(value, dict):
        return {k: without_timing(v) for k, v in value.items() if k != TIMING_KEY}
    if isinstance(value, list):
        return [without_timing(v) for v in value]
    return value


def file_fingerprint(path: str | os.PathLike) -> str:
    """sha256 of a result file: its bytes, or for a ``.json`` file its content less timings."""
    path = Path(path)
    if path.suffix != ".json":
        return sha256_file(path)
    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read JSON file {path}: {exc}") from exc
    canonical = json.dumps(without_timing(content), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def result_files(root: str | os.PathLike) -> list[Path]:
    """Every file under ``root`` (relative, sorted), less benchmarks and hidden temporaries."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such results folder")
    found = []
    for path in root.rglob("*"):
        relative = path.relative_to(root)
        if relative.parts[0] in SKIPPED_FOLDERS or relative.as_posix() in SKIPPED_FILES:
            continue
        if any(part.startswith(".") for part in relative.parts):
            continue
        if path.is_file():
            found.append(relative)
    return sorted(found)


def fingerprints(root: str | os.PathLike) -> dict[str, str]:
    """``{relative path: fingerprint}`` of every result file under ``root``."""
    root = Path(root)
    return {path.as_posix(): file_fingerprint(root / path) for path in result_files(root)}


def fingerprint_text(prints: Mapping[str, str]) -> str:
    """Fingerprints as sorted ``sha256<TAB>path`` lines (the format :func:`parse` reads)."""
    return "".join(f"{digest}\t{path}\n" for path, digest in sorted(prints.items()))


def parse(lines: Iterable[str], source: str = "fingerprints") -> dict[str, str]:
    """Read :func:`fingerprint_text` output; a malformed line raises ``DataError`` naming it."""
    prints = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        digest, tab, path = line.rstrip("\n").partition("\t")
        if not tab or len(digest) != 64:
            raise DataError(f"{source}, line {number}: expected 'sha256<TAB>path', got {line!r}")
        prints[path] = digest
    return prints


def differences(before: Mapping[str, str], after: Mapping[str, str]) -> dict[str, list[str]]:
    """Paths that ``changed``, were ``added`` or ``removed`` between two fingerprint sets."""
    return {
        "changed": sorted(p for p in before.keys() & after.keys() if before[p] != after[p]),
        "added": sorted(after.keys() - before.keys()),
        "removed": sorted(before.keys() - after.keys()),
    }
