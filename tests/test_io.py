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
