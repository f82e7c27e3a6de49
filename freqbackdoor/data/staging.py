"""Staging of a download: a temporary folder beside ``raw_dir/<name>``, renamed into place on success.

:func:`~.datasets.download` fetches into :func:`staged_dir`, so a failed download leaves
nothing partial behind and files a user placed in the target by hand are kept (mirrored into
the staging folder, archives as hard links). :func:`terminate_as_interrupt` makes SIGTERM
(what ``scancel`` and a cluster's time limit send) clean up as Ctrl-C does; the leftovers of
a run killed outright (SIGKILL) are removed by the next one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .archives import is_archive_name

log = logging.getLogger(__name__)


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
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
def staged_dir(target: Path, keep_existing: bool, skip: Sequence[str] = ()) -> Iterator[Path]:
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
    if is_archive_name(Path(src).name):
        try:
            os.link(src, dst)
            return
        except OSError:
            pass
    shutil.copy2(src, dst)
