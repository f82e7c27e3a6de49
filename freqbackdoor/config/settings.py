"""Every stage's settings, resolved from the validated config in one place.

A setting travels one step: ``config/*.yaml`` (validated against ``config/schema.yaml``) ->
a function here -> the rule's ``params.settings`` -> the library's settings object, built in
the job by :func:`freqbackdoor.config.options.settings_from_config`. The rules
(``rules/*.smk``), the recipe proofs (:mod:`freqbackdoor.recipes`) and the tests call the same
functions, so what the workflow trains is what the tests prove trains.

Layers, later ones winning (each function's docstring names its keys):

- a global block (``reference_classifier``, ``detector``, ``smooth``, ``mna``, ...);
- the dataset's overrides (``datasets.<name>.reference_classifier``, ``.detector``,
  ``.smooth``);
- a stage's override (Table 5's ablation epochs, ``smooth.poisoned_model`` over the reference
  classifier's recipe, ``transfer.combined_detector``);
- the config's ``seed``, set exactly once, last, by :func:`with_config_seed` (a transfer
  repeat adds its index).

Model-shape options are not training settings: a classifier's ``downsample`` (a stride-2 first
convolution for large images) is given in the same config block as its recipe but resolved
into its own ``model`` block, so the training settings hold only what trains.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import ConfigError
from ..triggers.registry import trigger_builder

#: Keys of a ``datasets.<name>`` block that the rules read, not the dataset builder.
DATASET_RULE_KEYS = (
    "attacks",
    "reference_model",
    "reference_classifier",
    "detector",
    "paper_name",
    "smooth",
)
#: Model-shape options of a classifier block, resolved apart from its training settings.
CLASSIFIER_MODEL_KEYS = ("downsample",)
#: Filter and range options a naive low-pass trigger shares with the smooth trigger.
LOWPASS_SHARED = ("filter_size", "filter_sigma", "max_value", "strength")


def block(config: Mapping[str, Any], path: str) -> tuple[dict[str, Any], bool]:
    """The mapping at dot-separated ``path`` (``{}`` when absent) and whether it was present."""
    node: Any = config
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return {}, False
        node = node[part]
    if node is None:
        return {}, True
    if not isinstance(node, Mapping):
        raise ConfigError(f"{path}: expected a mapping, got {type(node).__name__}")
    return dict(node), True


def layered(config: Mapping[str, Any], paths: Sequence[str]) -> tuple[dict[str, Any], str]:
    """The blocks at ``paths`` merged left to right, and the present ones as a source string
    (``"detector + datasets.photos32.detector"``) for error messages and recipe records."""
    merged: dict[str, Any] = {}
    present = []
    for path in paths:
        found, exists = block(config, path)
        merged.update(found)
        if exists:
            present.append(path)
    return merged, " + ".join(present)


def check_dataset(config: Mapping[str, Any], dataset: str, what: str) -> None:
    """``ConfigError`` naming ``what`` when ``dataset`` is not configured."""
    if dataset not in config.get("datasets", {}):
        raise ConfigError(
            f"{what}: {dataset!r} is not a configured dataset (datasets: "
            f"{', '.join(config.get('datasets', {}))})"
        )


def with_config_seed(
    mapping: Mapping[str, Any], config: Mapping[str, Any], offset: int = 0
) -> dict:
    """``mapping`` with the config's ``seed`` (plus ``offset``) as its ``seed``: the one place
    a seed enters a stage's settings."""
    return {**mapping, "seed": int(config["seed"]) + offset}


# --------------------------------------------------------------------------- datasets


def dataset_spec(config: Mapping[str, Any], dataset: str) -> dict[str, Any]:
    """``datasets.<dataset>`` as the dataset builder takes it (the rules' keys left out)."""
    check_dataset(config, dataset, "dataset_spec")
    return {k: v for k, v in config["datasets"][dataset].items() if k not in DATASET_RULE_KEYS}


def reference_dataset(config: Mapping[str, Any], dataset: str) -> str:
    """The dataset whose reference classifier (and training images) ``dataset``'s optimised
    triggers use: its own, or ``datasets.<dataset>.reference_model`` (TSRD borrows GTSRB's)."""
    return config["datasets"][dataset].get("reference_model", dataset)


# --------------------------------------------------------------------------- classifiers


def split_classifier_block(mapping: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """A classifier block as ``{"training": ..., "model": {"downsample": n}}``."""
    training = {k: v for k, v in mapping.items() if k not in CLASSIFIER_MODEL_KEYS}
    model = {"downsample": int(mapping.get("downsample", 1))}
    return {"training": training, "model": model}


def reference_classifier_layers(config: Mapping[str, Any], dataset: str) -> tuple[dict, str]:
    """The reference classifier's merged block and its source keys."""
    check_dataset(config, dataset, "reference_classifier")
    return layered(config, ["reference_classifier", f"datasets.{dataset}.reference_classifier"])


def reference_classifier(config: Mapping[str, Any], dataset: str) -> dict[str, dict[str, Any]]:
    """Table 8's reference classifier on ``dataset``: ``reference_classifier``, then
    ``datasets.<dataset>.reference_classifier``, then the seed; ``{"training", "model"}``."""
    merged, _ = reference_classifier_layers(config, dataset)
    return split_classifier_block(with_config_seed(merged, config))


def poisoned_model(config: Mapping[str, Any], dataset: str) -> dict[str, dict[str, Any]]:
    """Section 5.3's poisoned models: the reference classifier's recipe, then
    ``smooth.poisoned_model`` or ``datasets.<dataset>.smooth.poisoned_model``, then the seed."""
    merged, _ = reference_classifier_layers(config, dataset)
    overrides = smooth_spec(config, dataset)["poisoned_model"]
    return split_classifier_block(with_config_seed({**merged, **overrides}, config))


# --------------------------------------------------------------------------- detectors


def detector_layers(
    config: Mapping[str, Any], dataset: str, architecture: str | None = None
) -> tuple[dict[str, Any], str]:
    """The detector's merged block on ``dataset`` and its source keys; an ``architecture``
    other than the configured one (a Table 5 row) takes ``table5.epochs``."""
    check_dataset(config, dataset, "detector")
    merged, source = layered(config, ["detector", f"datasets.{dataset}.detector"])
    if architecture is not None and architecture != merged["architecture"]:
        merged["architecture"] = architecture
        merged["epochs"] = config["table5"].get("epochs", merged["epochs"])
        source = f"{source} + table5"
    return merged, source


def detector(config: Mapping[str, Any], dataset: str, architecture: str | None = None) -> dict:
    """The Section-4 detector on ``dataset``: ``detector``, then
    ``datasets.<dataset>.detector``, then (for a Table 5 ablation ``architecture``) its
    ``table5.epochs``, then the seed."""
    merged, _ = detector_layers(config, dataset, architecture)
    return with_config_seed(merged, config)


def default_architecture(config: Mapping[str, Any], dataset: str) -> str:
    """The detector architecture ``dataset`` is configured with."""
    return detector(config, dataset)["architecture"]


def transfer_detector(config: Mapping[str, Any], source: str) -> dict[str, Any]:
    """A transfer source's detector: the dataset's own (:func:`detector`), or for a combined
    source (``photos32+digits32``) ``detector`` then ``transfer.combined_detector``."""
    if "+" not in source:
        return detector(config, source)
    overrides = config["transfer"].get("combined_detector", {})
    return with_config_seed({**config["detector"], **overrides}, config)


def transfer_fine_tune(config: Mapping[str, Any], repeat: int = 0) -> dict[str, Any]:
    """Section 4.3's fine-tuning: ``transfer.fine_tune``, seeded with the config's seed plus
    the ``repeat`` index (each repeat draws its own tuning images and minibatches)."""
    return with_config_seed(config["transfer"]["fine_tune"], config, offset=int(repeat))


def smooth_upgrade(config: Mapping[str, Any], dataset: str) -> dict[str, Any]:
    """Section 5.4's detector upgrade: ``smooth.fine_tune`` or
    ``datasets.<dataset>.smooth.fine_tune``, then the seed."""
    return with_config_seed(smooth_spec(config, dataset)["fine_tune"], config)


# --------------------------------------------------------------------------- triggers, Section 5


def trigger_options(config: Mapping[str, Any], attack: str) -> dict[str, Any]:
    """``triggers.<attack>``; a naive low-pass trigger first takes the smooth trigger's filter
    and range (``triggers.smooth``), which its own block may override."""
    options = dict(config["triggers"].get(attack, {}))
    if trigger_builder(attack) == "lowpass":
        smooth = config["triggers"].get("smooth", {})
        options = {**{k: smooth[k] for k in LOWPASS_SHARED if k in smooth}, **options}
    return options


def smooth_spec(config: Mapping[str, Any], dataset: str) -> dict[str, Any]:
    """Section 5 on ``dataset``: the ``smooth`` block shallowly updated by
    ``datasets.<dataset>.smooth`` (the list of datasets left out)."""
    check_dataset(config, dataset, "smooth")
    spec = {**config["smooth"], **config["datasets"][dataset].get("smooth", {})}
    spec.pop("datasets", None)
    return spec


def smooth_key(config: Mapping[str, Any], dataset: str, key: str) -> str:
    """The config path that ``smooth_spec(config, dataset)[key]`` comes from."""
    if key in config["datasets"][dataset].get("smooth", {}):
        return f"datasets.{dataset}.smooth.{key}"
    return f"smooth.{key}"


# --------------------------------------------------------------------------- MNA


def mna_spec(config: Mapping[str, Any]) -> dict[str, Any]:
    """The ``mna`` block, the list of datasets left out (one block serves every dataset)."""
    spec = dict(config["mna"])
    spec.pop("datasets", None)
    return spec


def mna_training(config: Mapping[str, Any]) -> dict[str, Any]:
    """The shadow and target models' recipe, ``mna.training`` (MNTD's, not the reference
    classifier's); the seed is per model (:func:`freqbackdoor.mna.shadow_models.model_seed`)."""
    return dict(mna_spec(config)["training"])


def mna_search(config: Mapping[str, Any]) -> dict[str, Any]:
    """Algorithm 1 on the shadow models: ``triggers.smooth``, then
    ``mna.smooth_shadow.search``."""
    search = mna_spec(config)["smooth_shadow"].get("search", {})
    return {**config["triggers"].get("smooth", {}), **search}
