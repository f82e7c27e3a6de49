"""The command-line entry point."""

import json
import subprocess
import sys

import numpy as np

from freqbackdoor.__main__ import main
from freqbackdoor.frequency.dct import dct2


def test_help_lists_commands_with_examples():
    result = subprocess.run(
        [sys.executable, "-m", "freqbackdoor", "--help"], capture_output=True, text=True, check=True
    )
    assert "examples:" in result.stdout
    for command in ("triggers", "dct", "screen"):
        assert command in result.stdout


def test_triggers_command(capsys):
    assert main(["triggers"]) == 0
    assert "badnets" in capsys.readouterr().out


def test_dct_command(tmp_path, images32):
    src, out = tmp_path / "x.npy", tmp_path / "d.npy"
    np.save(src, images32)
    assert main(["dct", str(src), str(out), "--device", "cpu"]) == 0
    np.testing.assert_allclose(np.load(out), dct2(images32), rtol=1e-6, atol=1e-3)
    assert json.loads((tmp_path / "d.json").read_text())["shape"] == [16, 32, 32, 3]
