"""Cross-references between config blocks, checked once before any job is planned.

The schema (``config/schema.yaml``) checks each value on its own; it cannot say that
``detection.datasets`` names a dataset that ``datasets`` defines, that a detector is trained on a
dataset with training images, or that an attack is a registered trigger. Left unchecked, such a
slip surfaced as a bare ``KeyError`` from the rules, a ``MissingInputException``, or a job failing
minutes later with an error naming neither the key nor the value. :func:`check_references` walks
every reference from one block to a dataset, trigger or detector architecture and raises one
``ConfigError`` naming the key path and the value, with what is defined; :func:`check_schema`
reports a schema violation the same way, in one line.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..detection.architectures import DETECTORS
from ..errors import ConfigError
from ..triggers.registry import trigger_builder


def check_schema(config: Mapping[str, Any], schema_path: str | Path) -> None:
    """Validate ``config`` against the JSON schema at ``schema_path``; one ``ConfigError``.

    Snakemake's own ``validate`` prints the whole schema and config (thousands of lines) after
    the one useful line; this names the key path and what is wrong with it, nothing more. Run
    it first; Snakemake's ``validate`` (which also fills in defaults) then passes.
    """
    import jsonschema
    import yaml

    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(dict(config)))
    if error is None:
        return
    where = ".".join(str(p) for p in error.absolute_path) or "the config's top level"
    raise ConfigError(f"{where}: {error.message} (config/schema.yaml describes every key)")


def _is_test_only(spec: Mapping[str, Any]) -> bool:
    return float(spec.get("test_fraction", 0) or 0) >= 1


def _listed(config: Mapping[str, Any], path: str) -> Iterator[tuple[str, Any]]:
    """``(key path, value)`` of the list at dotted ``path`` (nothing where a block is absent)."""
    node: Any = config
    for part in path.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
    for index, value in enumerate(node or []):
        yield f"{path}[{index}]", value


def _dataset_references(config: Mapping[str, Any]) -> Iterator[tuple[str, Any, bool]]:
    """``(key path, dataset name, whether it must have training images)`` for every reference."""
    for key, name in _listed(config, "detection.datasets"):
        yield key, name, True  # a detector is trained on it
    for block in ("table5", "figure6"):
        if (config.get(block) or {}).get("dataset") is not None:
            yield f"{block}.dataset", config[block]["dataset"], True
    for key, name in _listed(config, "smooth.datasets"):
        yield key, name, True  # poisoned models are trained on it
    for key, name in _listed(config, "mna.datasets"):
        yield key, name, True
    for dataset, spec in (config.get("datasets") or {}).items():
        if spec.get("reference_model") is not None:  # its classifier builds the triggers
            yield f"datasets.{dataset}.reference_model", spec["reference_model"], True


def _trigger_references(config: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    for dataset in config.get("datasets") or {}:
        yield from _listed(config, f"datasets.{dataset}.attacks")
    yield from _listed(config, "figure6.attacks")
    for block in ("smooth", "mna"):
        yield from _listed(config, f"{block}.naive")
        yield from _listed(config, f"{block}.classic")
    for dataset in config.get("datasets") or {}:
        yield from _listed(config, f"datasets.{dataset}.smooth.naive")
        yield from _listed(config, f"datasets.{dataset}.smooth.classic")


def _architecture_references(config: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    if (config.get("detector") or {}).get("architecture") is not None:
        yield "detector.architecture", config["detector"]["architecture"]
    for dataset, spec in (config.get("datasets") or {}).items():
        architecture = (spec.get("detector") or {}).get("architecture")
        if architecture is not None:
            yield f"datasets.{dataset}.detector.architecture", architecture
    yield from _listed(config, "table5.architectures")


def _defined(names: Sequence[str]) -> str:
    return ", ".join(str(n) for n in names) or "none"


def check_references(config: Mapping[str, Any]) -> None:
    """Raise ``ConfigError`` for the first reference to an undefined dataset, an unregistered
    trigger or an unknown detector architecture, or for a detector to be trained on a
    test-only dataset; the message names the key path and the value."""
    datasets = config.get("datasets") or {}
    for key, name, needs_training in _dataset_references(config):
        if name not in datasets:
            raise ConfigError(f"{key}: no dataset {name!r}; defined: {_defined(list(datasets))}")
        if needs_training and _is_test_only(datasets[name]):
            raise ConfigError(
                f"{key}: dataset {name!r} is test-only (test_fraction 1): it has no training "
                "images to train on; name a dataset with training images"
            )
    for key, name in _trigger_references(config):
        try:
            trigger_builder(str(name))
        except ConfigError as error:
            raise ConfigError(f"{key}: {error}") from None
    for key, name in _architecture_references(config):
        if name not in DETECTORS:
            raise ConfigError(f"{key}: no detector {name!r}; defined: {_defined(list(DETECTORS))}")
