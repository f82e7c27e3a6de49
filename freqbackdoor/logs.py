"""Logging set-up shared by the workflow scripts: messages and progress bars go to the rule's log."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import TextIO, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
_stream: TextIO = sys.stderr


def setup_logging(log_file: str | None = None, level: int = logging.INFO) -> logging.Logger:
    """Send this process's log records (and progress bars) to ``log_file``, or to stderr."""
    global _stream
    _stream = open(log_file, "a", buffering=1) if log_file else sys.stderr  # noqa: SIM115
    logging.basicConfig(
        level=level,
        stream=_stream,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
    return logging.getLogger("freqbackdoor")


def _log_uncaught(exc_type, exc, tb) -> None:
    """Write an uncaught exception to the log, so a failed job's log says why.

    A :class:`~freqbackdoor.errors.FreqBackdoorError` is a user's bad input (a file, key or
    value it names), a ``PermissionError`` a path the user cannot write or read: stderr gets
    that one message, the traceback stays in the log. Anything
    else is a bug and keeps Python's full traceback on stderr too.
    """
    from .errors import FreqBackdoorError

    log = logging.getLogger("freqbackdoor")
    users = (FreqBackdoorError, PermissionError)  # a bad input, or a folder the user cannot write
    if issubclass(exc_type, users) and _stream is sys.stderr:
        log.error("%s: %s", exc_type.__name__, exc)  # no log file: the one line, once
        return
    log.error("failed: %s", exc, exc_info=(exc_type, exc, tb))
    if issubclass(exc_type, users):
        print(f"{exc_type.__name__}: {exc}", file=sys.stderr)
        return
    sys.__excepthook__(exc_type, exc, tb)


def progress(iterable: Iterable[T], desc: str, total: int | None = None) -> Iterable[T]:
    """A tqdm progress bar written to the current log stream (readable in a log file too)."""
    return tqdm(iterable, desc=desc, total=total, file=_stream, mininterval=2.0, ascii=True)
