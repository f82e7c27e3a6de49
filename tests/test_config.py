"""Both shipped configs validate; bad keys, types and values are rejected naming the key."""

import copy
from pathlib import Path

import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = str(ROOT / "config" / "schema.yaml")


def load(name):
    return yaml.safe_load((ROOT / "config" / name).read_text())


@pytest.mark.parametrize("name", ["config.yaml", "paper.yaml"])
def test_shipped_configs_are_valid(name):
    validate(load(name), SCHEMA)


def _set(path, value):
    def mutate(cfg):
        node = cfg
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return mutate


@pytest.mark.parametrize(
    ("mutate", "named"),
    [
        (_set(["bogus_key"], 1), "bogus_key"),
        (_set(["datasets", "photos32", "size"], "big"), "size"),
        (_set(["datasets", "photos32", "size"], 4), "size"),
        (_set(["datasets", "photos32", "url"], "http://example.org/x.zip"), "url"),
        (_set(["datasets", "photos32", "attacks"], ["nope"]), "nope"),
        (_set(["datasets", "photos32", "source"], "ftp"), "source"),
        (_set(["manipulations", "blend_weight"], 3), "blend_weight"),
        (_set(["triggers", "badnets", "colour"], "red"), "colour"),
        (_set(["device"], "tpu"), "device"),
        (_set(["seed"], -1), "seed"),
        (_set(["smooth", "poison_share"], 1.5), "poison_share"),
        (_set(["smooth", "naive"], ["badnets"]), "badnets"),
        (_set(["triggers", "smooth", "sigma"], 6), "sigma"),
        (_set(["triggers", "lowpass_noise1", "colour"], "red"), "colour"),
        (_set(["datasets", "digits32", "smooth", "datasets"], ["photos32"]), "datasets"),
    ],
)
def test_bad_configs_are_rejected_naming_the_key(mutate, named):
    cfg = copy.deepcopy(load("config.yaml"))
    mutate(cfg)
    with pytest.raises(WorkflowError) as info:
        validate(cfg, SCHEMA)
    assert named in str(info.value)


def test_url_dataset_needs_a_checksum_key():
    cfg = copy.deepcopy(load("paper.yaml"))
    del cfg["datasets"]["pubfig"]["sha256"]
    with pytest.raises(WorkflowError, match="sha256"):
        validate(cfg, SCHEMA)
    cfg["datasets"]["pubfig"]["sha256"] = "not-a-hash"
    with pytest.raises(WorkflowError, match="sha256"):
        validate(cfg, SCHEMA)


def test_every_schema_key_is_documented_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    schema = yaml.safe_load(Path(SCHEMA).read_text())
    keys = set(schema["properties"]) | set(schema["$defs"]["dataset"]["properties"])
    keys |= set(schema["$defs"]["classifier_settings"]["properties"])
    keys |= set(schema["$defs"]["detector_settings"]["properties"])
    keys |= set(schema["$defs"]["smooth_settings"]["properties"])
    for pattern in schema["properties"]["triggers"]["patternProperties"].values():
        keys |= set(pattern["properties"])
    sections = ("triggers", "manipulations", "dct", "figure1", "figures", "highfreq")
    for section in (*sections, "detection", "table5", "figure6", "transfer", "mna"):
        for sub in schema["properties"][section].get("properties", {}).values():
            keys |= set(sub.get("properties", {}))
        keys |= set(schema["properties"][section].get("properties", {}))
    missing = sorted(k for k in keys if f"`{k}`" not in readme)
    assert not missing, f"config keys not documented in README.md: {missing}"
