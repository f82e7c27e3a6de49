"""Cross-references between config blocks: each bad one is refused naming its key and value."""

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from freqbackdoor.config.references import check_references, check_schema
from freqbackdoor.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
DEMO = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
PAPER = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())


def _with(path: str, value):
    """The demo config with the dotted ``path`` (list items as ``name[i]``) set to ``value``."""
    config = copy.deepcopy(DEMO)
    *parents, last = path.split(".")
    node = config
    for part in parents:
        node = node[part]
    if last.endswith("]"):
        name, index = last[:-1].split("[")
        node[name][int(index)] = value
    else:
        node[last] = value
    return config


def test_shipped_configs_pass():
    check_references(DEMO)
    check_references(PAPER)


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (
            "detection.datasets[1]",
            "nosuch",
            "detection.datasets[1]: no dataset 'nosuch'; defined: ",
        ),
        ("detection.datasets[1]", "gray32", "detection.datasets[1]: dataset 'gray32' is test-only"),
        ("table5.dataset", "nosuch", "table5.dataset: no dataset 'nosuch'"),
        ("figure6.dataset", "gray32", "figure6.dataset: dataset 'gray32' is test-only"),
        (
            "datasets.gray32.reference_model",
            "nosuch",
            "datasets.gray32.reference_model: no dataset",
        ),
        ("smooth.datasets[0]", "nosuch", "smooth.datasets[0]: no dataset 'nosuch'"),
        ("datasets.photos32.attacks[0]", "badnet", "datasets.photos32.attacks[0]: "),
        ("figure6.attacks[2]", "natur", "figure6.attacks[2]: "),
        ("smooth.naive[0]", "nosuch_trigger", "smooth.naive[0]: "),
        ("detector.architecture", "cnn7", "detector.architecture: no detector 'cnn7'; defined: "),
        ("table5.architectures[0]", "lin", "table5.architectures[0]: no detector 'lin'"),
    ],
)
def test_bad_reference_names_key_and_value(path, value, message):
    with pytest.raises(ConfigError) as error:
        check_references(_with(path, value))
    assert message in str(error.value)
    assert repr(value) in str(error.value) or str(value) in str(error.value)


def test_workflow_stops_before_any_job_naming_the_key(tmp_path, workflow_copy):
    workdir = workflow_copy(tmp_path, _with("detection.datasets[1]", "nosuch"))
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "1"],
        cwd=workdir,
        capture_output=True,
        text=True,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "detection.datasets[1]: no dataset 'nosuch'; defined: " in output
    assert "KeyError" not in output


def test_schema_violations_are_one_line_naming_the_key_path():
    schema = ROOT / "config" / "schema.yaml"
    check_schema(DEMO, schema)
    with pytest.raises(ConfigError, match=r"^detector\.epochs: -1 is less than the minimum of 1"):
        check_schema(_with("detector.epochs", -1), schema)
    config = copy.deepcopy(DEMO)
    config["detecton"] = {}
    with pytest.raises(ConfigError, match="top level: Additional properties .*'detecton'"):
        check_schema(config, schema)
