"""Both shipped configs validate; bad keys, types and values are rejected naming the key."""

import copy
from pathlib import Path

import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from freqbackdoor.config.reference import configuration_reference, documented_path
from freqbackdoor.errors import ConfigError

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


def test_configuration_reference_is_generated_from_the_schema():
    """docs/configuration.md is exactly what the schema generates: edit a description (or add a
    key) in config/schema.yaml and forget `freqbackdoor config-reference`, and this fails."""
    generated = configuration_reference(yaml.safe_load(Path(SCHEMA).read_text()))
    page = (ROOT / "docs" / "configuration.md").read_text()
    assert page == generated, (
        "docs/configuration.md differs from config/schema.yaml; run `freqbackdoor config-reference`"
    )


def _key_paths(node, path=()):
    """Every key of a config as a path; ``[]`` steps into a list of mappings."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*path, key)
            yield from _key_paths(value, (*path, key))
    elif isinstance(node, list):
        for item in node:
            if isinstance(item, dict):
                yield from _key_paths(item, (*path, "[]"))


@pytest.mark.parametrize("name", ["config.yaml", "paper.yaml"])
def test_every_config_key_has_a_row_in_the_reference(name):
    schema = yaml.safe_load(Path(SCHEMA).read_text())
    page = configuration_reference(schema)
    # a row's first cell: `path`, or [`path`](#section) for a top-level key with a section
    rows = {line.split(" | ")[0].split("](")[0].lstrip("| [") for line in page.splitlines()}
    missing = []
    for path in _key_paths(load(name)):
        row = documented_path(schema, path)
        if row is None or f"`{row}`" not in rows:
            missing.append(f"{'.'.join(path)} (row {row})")
    assert not missing, f"config/{name} keys without a row in docs/configuration.md: {missing}"


SYNTHETIC = {
    "description": "Intro paragraph.",
    "type": "object",
    "required": ["size", "model"],
    "$defs": {
        "recipe": {
            "type": "object",
            "properties": {"lr": {"type": "number", "exclusiveMinimum": 0, "description": "rate"}},
        },
        "entry": {
            "type": "object",
            "description": "one entry",
            "properties": {
                "kind": {"type": "string", "enum": ["a", "b"], "description": "its kind"},
                "url": {"type": "string", "pattern": "^https://", "description": "where"},
                "model": {"$ref": "#/$defs/recipe", "description": "overrides of model"},
            },
            "allOf": [
                {
                    "if": {"properties": {"kind": {"const": "a"}}},
                    "then": {"propertyNames": {"enum": ["kind", "model"]}},
                },
                {
                    "if": {"properties": {"kind": {"const": "b"}}},
                    "then": {"required": ["url"]},
                },
            ],
        },
    },
    "properties": {
        "size": {"type": "integer", "minimum": 8, "maximum": 1024, "description": "side in px"},
        "model": {"$ref": "#/$defs/recipe", "required": ["lr"], "description": "the recipe"},
        "sets": {
            "type": "object",
            "additionalProperties": {"$ref": "#/$defs/entry"},
            "description": "sets",
        },
        "extra": {
            "type": "object",
            "patternProperties": {
                "^low_[a-z]+$": {
                    "type": "object",
                    "description": "a low one",
                    "properties": {"seed": {"type": ["integer", "null"], "description": "seed"}},
                }
            },
            "description": "extras",
        },
    },
}


def test_reference_rows_types_values_and_links_from_a_small_schema():
    page = configuration_reference(SYNTHETIC)
    assert page.startswith("<!-- generated by `freqbackdoor config-reference`")
    assert "# Configuration reference\n\nIntro paragraph.\n" in page
    lines = page.splitlines()
    assert "| `size` | integer, required | >= 8 and <= 1024 | side in px |" in lines
    assert "| `model.lr` | number, required | > 0 | rate |" in lines  # $ref written out, required
    assert "## `model`" in lines and "## `sets`" in lines and "## `extra`" in lines
    kind = next(line for line in lines if line.startswith("| `sets.<name>.kind`"))
    assert "one of `a`, `b`" in kind and "string, required" not in kind
    url = next(line for line in lines if line.startswith("| `sets.<name>.url`"))
    assert "only with `kind` `b`" in url and "required with `kind` `b`" in url
    model = next(line for line in lines if line.startswith("| `sets.<name>.model`"))
    assert "its keys are those of [`model`](#model)" in model  # written once, linked
    assert not any(line.startswith("| `sets.<name>.model.lr`") for line in lines)
    low = next(line for line in lines if line.startswith("| `extra.low_<name>` "))
    assert "any key matching `^low_[a-z]+$`" in low
    assert "| `extra.low_<name>.seed` | integer or null |  | seed |" in lines
    assert configuration_reference(SYNTHETIC) == page  # deterministic
    assert documented_path(SYNTHETIC, ("sets", "mine", "model", "lr")) == "model.lr"
    assert documented_path(SYNTHETIC, ("extra", "low_one", "seed")) == "extra.low_<name>.seed"
    assert documented_path(SYNTHETIC, ("nosuch",)) is None


def test_reference_names_every_key_without_a_description():
    schema = copy.deepcopy(SYNTHETIC)
    del schema["properties"]["size"]["description"]
    del schema["$defs"]["entry"]["properties"]["url"]["description"]
    with pytest.raises(
        ConfigError, match=r"without a description in the schema: sets\.<name>\.url, size$"
    ):
        configuration_reference(schema)
