"""The schema and the library's settings classes agree on every key and every bound.

``config/schema.yaml`` checks a config's types and ranges before any job is planned; the
settings dataclasses check them again, because the library is also called without the
workflow (the recipe proofs, ``freqbackdoor screen``, a user's script). These tests keep the
two from drifting: every key the schema allows is a field of its class (and every field but
``seed`` is a key), and every value the schema refuses at a bound or outside an enum, the
class refuses too.
"""

from pathlib import Path

import pytest
import yaml

from freqbackdoor.detection.detector import DetectorSettings
from freqbackdoor.detection.manipulations import ManipulationParams
from freqbackdoor.detection.transfer import FineTuneSettings
from freqbackdoor.errors import ConfigError
from freqbackdoor.mna.meta import MetaSettings
from freqbackdoor.mna.mntd import MNTDTraining
from freqbackdoor.models.training import TrainSettings

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((ROOT / "config" / "schema.yaml").read_text())

#: (schema path, settings class, the smallest valid mapping, schema keys that are not the
#: class's: resolved into another block by freqbackdoor.config.settings)
CASES = [
    ("$defs.classifier_settings", TrainSettings, {"epochs": 1}, {"downsample"}),
    ("$defs.detector_settings", DetectorSettings, {"architecture": "linear", "epochs": 1}, set()),
    ("properties.transfer.fine_tune", FineTuneSettings, {"epochs": 1}, set()),
    ("$defs.smooth_settings.fine_tune", FineTuneSettings, {"epochs": 1}, set()),
    ("properties.manipulations", ManipulationParams, {}, set()),
    ("properties.mna.meta", MetaSettings, {}, set()),
    ("properties.mna.training", MNTDTraining, {}, set()),
]
IDS = [case[0] for case in CASES]


def resolve_ref(node):
    while "$ref" in node:
        node = node_at(node["$ref"].removeprefix("#/").replace("/", "."))
    return node


def node_at(path):
    """The schema node at a dotted path; ``properties`` is implied below the first step."""
    node = SCHEMA
    parts = path.split(".")
    node = resolve_ref(node[parts[0]][parts[1]])
    for part in parts[2:]:
        node = resolve_ref(node["properties"][part])
    return node


def out_of_range(spec):
    """Values the schema refuses for a key: past each bound, outside the enum, wrong type."""
    kind = spec.get("type")
    step = 1 if kind == "integer" else 1e-9
    values = []
    if "minimum" in spec:
        values.append(spec["minimum"] - step)
    if "exclusiveMinimum" in spec:
        values.append(spec["exclusiveMinimum"])
    if "maximum" in spec:
        values.append(spec["maximum"] + step)
    if "exclusiveMaximum" in spec:
        values.append(spec["exclusiveMaximum"])
    if "enum" in spec:
        values.append("not-" + str(spec["enum"][0]))
    return values


@pytest.mark.parametrize("path, cls, base, elsewhere", CASES, ids=IDS)
def test_schema_keys_are_the_classes_fields(path, cls, base, elsewhere):
    keys = set(node_at(path)["properties"]) - elsewhere
    fields = {name for name in cls.__dataclass_fields__ if name != "seed"}
    assert keys - fields == set(), f"{path}: keys the library would reject"
    assert fields - keys == set(), f"{cls.__name__}: fields no config can set"


@pytest.mark.parametrize("path, cls, base, elsewhere", CASES, ids=IDS)
def test_what_the_schema_refuses_the_class_refuses(path, cls, base, elsewhere):
    cls.from_config(base)  # the base itself is valid
    checked = 0
    for key, spec in node_at(path)["properties"].items():
        if key in elsewhere:
            continue
        for value in out_of_range(resolve_ref(spec)):
            with pytest.raises((ConfigError, ValueError)):
                cls.from_config({**base, key: value})
            checked += 1
    assert checked or path == "properties.mna.meta"
