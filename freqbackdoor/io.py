"""Atomic, reproducible file output and checksums.

Every writer here goes through a temporary file in the destination folder and an
``os.replace`` at the end, so a crash or a bad input never leaves a partial artifact
behind (Snakemake removes failed outputs too, but the library is also used without it).
The writers are also byte-reproducible: the same content gives the same file, run after run.
``np.savez`` stamps each member with the current time and ``torch.save`` on a path names the
archive's records after the (random) temporary file, so :func:`save_npz` and
:func:`save_torch` write those formats without either.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ChecksumError, DataError, DownloadError

_UMASK = os.umask(0)
os.umask(_UMASK)  # read once: the permissions a plain open() would give new files


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it into place only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix if suffix is None else suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp's 0600 would hide results from a group
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write ``array`` as a memory-mappable ``.npy`` file, atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, np.ascontiguousarray(array), allow_pickle=False)


def load_npy(path: str | os.PathLike, mmap: bool = True) -> np.ndarray:
    """Load a ``.npy`` file (memory-mapped by default); a bad file raises ``DataError`` naming it."""
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read array file {path}: {exc}") from exc


# a fixed member time for zip archives (the zip format's earliest), so they hash the same
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def save_npz(path: str | os.PathLike, compressed: bool = True, **arrays: np.ndarray) -> None:
    """Write ``arrays`` as an ``.npz`` that ``np.load`` reads, atomically and reproducibly.

    The same layout as ``np.savez_compressed`` (one ``<name>.npy`` member per array, in the
    order given) with a fixed member time, so equal arrays give byte-identical files.
    """
    method = zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED
    with atomic_path(path, suffix=".npz") as tmp, zipfile.ZipFile(tmp, "w", method) as archive:
        for name, value in arrays.items():
            member = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIME)
            member.compress_type = method
            with archive.open(member, "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.asanyarray(value), allow_pickle=False)


def save_torch(path: str | os.PathLike, obj: Any) -> str:
    """``torch.save(obj)`` to ``path``, atomically and reproducibly; returns the file's sha256.

    Saving through an open file handle gives the archive the fixed record name ``archive``
    rather than the temporary file's name, so equal tensors give byte-identical files.
    """
    import torch  # here, so that the rest of this module does not need torch

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            torch.save(obj, fh)
        return sha256_file(tmp)


def load_weights(
    path: str | os.PathLike, map_location: Any = "cpu", what: str = "checkpoint"
) -> Any:
    """``torch.load(path, weights_only=True)``; a file torch refuses raises one ``DataError``.

    The message names the file and what torch objected to, and never repeats torch's advice
    to reload with ``weights_only=False``: for a file from elsewhere that would run its code.
    """
    import torch  # here, so that the rest of this module does not need torch

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for malformed or unsafe files
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        detail = next((line for line in lines if "Unsupported" in line or "error:" in line), None)
        detail = detail or (lines[0] if lines and "weights_only" not in lines[0] else "")
        reason = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
        raise DataError(
            f"cannot load {what} {path}: torch refused it as a plain weights file ({reason}). "
            "Do not load it with weights_only=False unless you made it yourself: that runs "
            "whatever code the file holds"
        ) from None


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON sidecar; a missing or malformed file raises ``DataError`` naming it."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read JSON file {path}: {exc}") from exc


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks so archives of any size fit in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_verified(url: str, path: str | os.PathLike, expected: str) -> None:
    """Download ``url`` to ``path`` atomically, keeping it only if its sha256 is ``expected``.

    ``urllib`` reads ``file://`` URLs too (a local mirror). A failed download raises
    ``DownloadError`` and a wrong digest ``ChecksumError``, each saying where a copy verified by
    hand can be placed to work offline; nothing is left at ``path``. The content is never run.
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        try:
            with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as fh:
                while chunk := response.read(1 << 16):
                    fh.write(chunk)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise DownloadError(
                f"cannot download {url}: {exc}; to work offline, place a copy whose sha256 is "
                f"{expected} at {path}"
            ) from exc
        actual = sha256_file(tmp)
        if actual != expected:
            raise ChecksumError(
                f"{url}: sha256 mismatch: expected {expected}, got {actual}; download the file "
                f"yourself, check that its sha256 is {expected} and place it at {path}"
            )


def sha256_array(array: np.ndarray) -> str:
    """Hex sha256 of an array's dtype, shape and bytes: a content id for sidecars."""
    digest = hashlib.sha256()
    digest.update(f"{array.dtype.str}{tuple(array.shape)}".encode())
    digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
