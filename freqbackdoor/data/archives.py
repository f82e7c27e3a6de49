"""Archives of the ``url`` source: download, sha256 verification and safe extraction.

Shared once, as torchvision's ``datasets/utils``: :func:`download_file` streams a URL to a
file atomically, :func:`verified_sha256` refuses an archive whose sha256 is not the
configured one (or not configured at all), and :func:`extract_archive` unpacks a zip or tar
after checking every member (no absolute paths, ``..``, links or device files).
:func:`is_archive_name` also tells the staging step which hand-placed files to hard-link.
"""

from __future__ import annotations

import os
import re
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from http.client import HTTPException
from pathlib import Path, PurePosixPath

from ..errors import ChecksumError, DataError, DownloadError
from ..io import atomic_path, sha256_file
from ..logs import progress

_ARCHIVE_SUFFIXES = (".zip", ".tar", ".tgz", ".tar.gz", ".tbz2", ".tar.bz2", ".txz", ".tar.xz")
_CHUNK = 1 << 20
_TIMEOUT_S = 60


def verified_sha256(name: str, url: str, path: Path, expected: str | None, manual: Path) -> str:
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


def download_file(name: str, url: str, path: Path, manual: Path) -> None:
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
            "docs/datasets.md."
        ) from exc


def is_archive_name(filename: str) -> bool:
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


def extract_archive(name: str, archive: Path, dest: Path) -> int:
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
