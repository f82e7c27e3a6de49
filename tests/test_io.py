"""Atomic writes: all or nothing, with the permissions a plain open() would give."""

import os
import stat

import pytest

from freqbackdoor.io import atomic_path


def test_atomic_file_gets_the_umask_permissions_not_mkstemps(tmp_path):
    target = tmp_path / "out.txt"
    with atomic_path(target) as tmp:
        tmp.write_text("done")
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    assert target.read_text() == "done"
    assert stat.S_IMODE(target.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)


def test_failed_block_leaves_nothing(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("stop")
    assert os.listdir(tmp_path) == []


class _Payload:
    """A class a weights-only load must refuse (pickled code stands in for it)."""


def test_a_file_torch_refuses_gives_one_error_without_its_unsafe_advice(tmp_path):
    import torch

    from freqbackdoor.errors import DataError
    from freqbackdoor.io import load_weights

    path = tmp_path / "evil.pt"
    torch.save({"w": _Payload()}, path)
    with pytest.raises(DataError) as info:
        load_weights(path)
    message = str(info.value)
    assert str(path) in message and "Unsupported global" in message
    assert "In PyTorch 2.6" not in message and "two options" not in message
    assert "Do not load it with weights_only=False" in message
    (tmp_path / "junk.pt").write_bytes(b"not a zip archive")
    with pytest.raises(DataError, match="junk.pt: torch refused it"):
        load_weights(tmp_path / "junk.pt", what="model group")


def test_a_bad_input_error_is_one_line_on_stderr_and_a_traceback_in_the_log(tmp_path):
    import subprocess
    import sys

    log = tmp_path / "job.log"
    code = (
        "from freqbackdoor.logs import setup_logging\n"
        f"setup_logging({str(log)!r})\n"
        "from freqbackdoor.errors import ChecksumError\n"
        "raise ChecksumError('data.zip: sha256 abc differs from def')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr.strip() == "ChecksumError: data.zip: sha256 abc differs from def"
    assert "Traceback" in log.read_text() and "data.zip" in log.read_text()
    bug = subprocess.run(
        [sys.executable, "-c", code.replace("ChecksumError('", "KeyError('")],
        capture_output=True,
        text=True,
    )
    assert "Traceback" in bug.stderr  # a bug keeps its traceback
    denied = subprocess.run(
        [sys.executable, "-c", code.replace("ChecksumError('data.zip: sha256 abc differs from def')", "PermissionError(13, 'Permission denied', 'results/x')")],
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert denied.stderr.strip() == "PermissionError: [Errno 13] Permission denied: 'results/x'"
