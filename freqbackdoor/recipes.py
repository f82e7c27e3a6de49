"""Every training recipe of a config, resolved in one place, and a small runner that proves it trains.

The workflow trains eight kinds of model, each by a recipe (architecture, optimiser, learning
rate, batch size, regularisation) that the config spreads over global blocks and per-dataset
overrides and that ``rules/common.smk`` and the rule scripts put together:

=====================  ==============================================================  =============================
recipe                 config keys (later ones override earlier ones)                  library settings
=====================  ==============================================================  =============================
reference_classifier   ``reference_classifier``, ``datasets.<d>.reference_classifier``  :class:`~.training.TrainSettings`
detector               ``detector``, ``datasets.<d>.detector``                          :class:`~.detection.DetectorSettings`
poisoned_model         the reference classifier's, ``smooth.poisoned_model``,           :class:`~.training.TrainSettings`
                       ``datasets.<d>.smooth.poisoned_model``
transfer_fine_tune     ``transfer.fine_tune``                                           :class:`~.transfer.FineTuneSettings`
smooth_upgrade         ``smooth.fine_tune``, ``datasets.<d>.smooth.fine_tune``          :class:`~.transfer.FineTuneSettings`
mna_shadow_model       ``mna.training`` (shadow epochs)                                 :class:`~.mntd.MNTDTraining`
mna_target_model       ``mna.training`` (target epochs), ``smooth.poison_share``        :class:`~.mntd.MNTDTraining`
meta_classifier        ``mna.meta``                                                     :class:`~.mna.MetaSettings`
=====================  ==============================================================  =============================

:func:`resolve_recipe` merges those keys exactly as the workflow does (``rules/common.smk``'s
``classifier_settings``, ``detector_settings``, ``poisoned_model_settings``,
``fine_tune_settings``, ``smooth_spec``, ``mna_training_settings``, then the scripts' ``seed``
and ``downsample`` handling) and builds the library's settings object with its ``from_config``,
so a config error surfaces with the key that holds it. Only the step budget (``epochs``) may be
replaced, since a proof that a recipe learns cannot run the paper's 150 epochs; the runners
train on whatever data they are handed (sizes, MNA shares and the upgrade's sample count are
scale, capped by that data), and the meta-classifier's shadow models are small ones
(:func:`small_model_set`).

Why this exists: a recipe that does not learn (a learning rate too high for the network, a
BatchNorm statistic that does not fit the weights, an optimiser keyword lost on the way) shows
up only at the end of a long run as a table of chance-level numbers. Each ``run_*`` function
below trains one recipe on small data (the demo's embedded datasets) for a few dozen to a few
hundred steps and returns a :class:`RecipeRecord`: what was trained, by which config keys, how
fast, and its metric next to chance, so ``tests/test_recipes.py`` can assert that each recipe
learns and ``benchmarks/recipes.py`` can print how fast and how far on CPU and CUDA.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .data.datasets import load_split, prepare
from .detection.detector import (
    VALIDATION_ROUND,
    Detector,
    DetectorSettings,
    detector_scores,
    manipulated_copy,
    train_detector,
)
from .detection.manipulations import ManipulationParams
from .detection.transfer import FineTuneSettings, fine_tune_detector, fine_tune_split
from .detection.upgrade import fine_tune_on_triggered, upgrade_set
from .errors import ConfigError, DataError
from .frequency.dct import resolve_device
from .mna import mntd
from .mna.meta import (
    MetaSettings,
    auc,
    draw_jumbo_trigger,
    meta_scores,
    model_seed,
    train_meta_classifier,
)
from .models.classifier import ReferenceCNN, build_model
from .models.groups import group_logits, train_model_group
from .models.poisoning import attack_success_rate, train_poisoned_model
from .models.training import TrainSettings, accuracy, seeded, train_classifier
from .triggers.registry import Trigger, TriggerContext, build_trigger, trigger_builder

_log = logging.getLogger(__name__)

RECIPES = (
    "reference_classifier",
    "detector",
    "poisoned_model",
    "transfer_fine_tune",
    "smooth_upgrade",
    "mna_shadow_model",
    "mna_target_model",
    "meta_classifier",
)
#: Keys of a ``datasets.<name>`` block that the workflow's rules read, not the dataset builder
#: (``rules/common.smk``'s ``DATASET_KEYS_FOR_RULES``).
DATASET_RULE_KEYS = (
    "attacks",
    "reference_model",
    "reference_classifier",
    "detector",
    "paper_name",
    "smooth",
)
#: The trigger a poisoned or target model is trained with here: a simple patch (BadNets).
PATCH_TRIGGER = "badnets"


# --------------------------------------------------------------------------- resolution


@dataclasses.dataclass(frozen=True)
class Recipe:
    """One training recipe as the workflow would run it on ``dataset``.

    ``settings`` is the library's settings object (``epochs`` possibly replaced), ``source``
    the config keys it came from, ``options`` what else the workflow passes its job: model
    options (``downsample``, ``architecture``), poison share, fine-tuning budget, upgrade
    samples, the trigger a recipe needs, the detection threshold.
    """

    name: str
    dataset: str
    source: str
    settings: Any
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def optimizer(self) -> str:
        """The settings' optimiser; the meta-classifier's is always Adam (MNTD's)."""
        return getattr(self.settings, "optimizer", "adam")

    @property
    def lr(self) -> float:
        return float(self.settings.lr)

    @property
    def batch_size(self) -> int:
        """Samples per optimiser step; the meta-classifier takes one model per step."""
        return int(getattr(self.settings, "batch_size", 1))

    @property
    def epochs(self) -> int:
        return int(self.settings.epochs)

    @property
    def seed(self) -> int:
        return int(getattr(self.settings, "seed", self.options.get("seed", 0)))

    def with_epochs(self, epochs: int) -> Recipe:
        """The same recipe with ``epochs`` passes (the only value a learnability run changes)."""
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ConfigError(f"{self.name}: epochs must be an integer >= 1, got {epochs!r}")
        return dataclasses.replace(self, settings=dataclasses.replace(self.settings, epochs=epochs))

    def summary(self) -> dict[str, Any]:
        """The values two configs must share for the recipe to be the same, whatever the scale:
        optimiser and its settings, learning rate, batch size, regularisation, architecture
        (the meta-classifier's queries and hidden units, trained by Adam as MNTD's is)."""
        out: dict[str, Any] = {
            "name": self.name,
            "optimizer": self.optimizer,
            "lr": self.lr,
            "batch_size": self.batch_size,
        }
        fields = ("rho", "eps", "momentum", "kernel_l2", "weight_decay", "augment", "architecture")
        fields += ("queries", "hidden", "query_init", "query_tuning")
        for key in fields:
            if hasattr(self.settings, key):
                out[key] = getattr(self.settings, key)
        for key in ("architecture", "model_options", "downsample", "share", "trigger_options"):
            if key in self.options:
                out[key] = self.options[key]
        return out


def _block(config: Mapping[str, Any], path: str) -> tuple[dict[str, Any], bool]:
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


def _merge(config: Mapping[str, Any], paths: Sequence[str]) -> tuple[dict[str, Any], str]:
    """The blocks at ``paths`` merged left to right, and the present ones as a source string."""
    merged: dict[str, Any] = {}
    present = []
    for path in paths:
        block, found = _block(config, path)
        merged.update(block)
        if found:
            present.append(path)
    return merged, " + ".join(present)


def _check_dataset(config: Mapping[str, Any], dataset: str, recipe: str) -> None:
    if dataset not in config.get("datasets", {}):
        raise ConfigError(
            f"{recipe}: {dataset!r} is not a configured dataset (datasets: "
            f"{', '.join(config.get('datasets', {}))})"
        )


def default_dataset(config: Mapping[str, Any], name: str) -> str:
    """The dataset whose recipe stands for ``name``: the paper's CIFAR-10 role in each config.

    The first of ``detection.datasets`` (classifier, detector), of ``smooth.datasets``
    (poisoned model, upgrade), of ``mna.datasets`` (MNA), and for the transfer fine-tuning the
    target of the first tuned column of ``transfer.tables``.
    """
    _check_recipe(name)
    if name in ("reference_classifier", "detector"):
        key, values = "detection.datasets", config["detection"]["datasets"]
    elif name in ("poisoned_model", "smooth_upgrade"):
        key, values = "smooth.datasets", config["smooth"]["datasets"]
    elif name == "transfer_fine_tune":
        key = "transfer.tables"
        values = [
            spec["target"]
            for spec in config["transfer"]["tables"].values()
            if any(c.get("tune") for c in spec["columns"])
        ]
    else:
        key, values = "mna.datasets", config.get("mna", {}).get("datasets", [])
    if not values:
        raise ConfigError(f"{key} is empty: no dataset has a {name} recipe")
    return values[0]


def transfer_source(config: Mapping[str, Any], target: str) -> str:
    """The source of the first tuned column of a transfer table with ``target``."""
    for spec in config["transfer"]["tables"].values():
        if spec["target"] != target:
            continue
        for column in spec["columns"]:
            if column.get("tune"):
                return column["source"]
    raise ConfigError(f"transfer.tables: no tuned column has target {target!r}")


def trigger_options(config: Mapping[str, Any], attack: str) -> dict[str, Any]:
    """The trigger's config as ``rules/common.smk`` resolves it: a ``lowpass_`` trigger takes
    the smooth trigger's filter and range."""
    options = dict(config["triggers"].get(attack, {}))
    if trigger_builder(attack) == "lowpass":
        smooth = config["triggers"].get("smooth", {})
        shared = ("filter_size", "filter_sigma", "max_value", "strength")
        options = {**{k: smooth[k] for k in shared if k in smooth}, **options}
    return options


def _classifier_mapping(config: Mapping[str, Any], dataset: str) -> tuple[dict[str, Any], str]:
    """``classifier_settings``: the global block, the dataset's overrides, the config seed."""
    merged, source = _merge(
        config, ["reference_classifier", f"datasets.{dataset}.reference_classifier"]
    )
    return {**merged, "seed": config["seed"]}, source


def _smooth_spec(config: Mapping[str, Any], dataset: str) -> dict[str, Any]:
    """``smooth_spec``: the global ``smooth`` block shallowly updated by the dataset's."""
    spec = {**config["smooth"], **config["datasets"][dataset].get("smooth", {})}
    spec.pop("datasets", None)
    return spec


def _smooth_key(config: Mapping[str, Any], dataset: str, key: str) -> str:
    """The config path that ``smooth_spec(dataset)[key]`` comes from."""
    if key in config["datasets"][dataset].get("smooth", {}):
        return f"datasets.{dataset}.smooth.{key}"
    return f"smooth.{key}"


def _train_settings(mapping: Mapping[str, Any], source: str) -> tuple[TrainSettings, int]:
    """TrainSettings of a classifier mapping and its ``downsample`` (the scripts pop it)."""
    mapping = dict(mapping)
    downsample = int(mapping.pop("downsample", 1))
    try:
        return TrainSettings.from_config(mapping), downsample
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from exc


def resolve_recipe(
    config: Mapping[str, Any],
    name: str,
    dataset: str | None = None,
    epochs: int | None = None,
) -> Recipe:
    """Recipe ``name`` of ``config`` on ``dataset`` (default :func:`default_dataset`).

    ``epochs`` replaces the configured step budget (for the MNA models, the epochs of that
    role; for the meta-classifier, its passes over the shadow models). Raises ``ConfigError``
    naming the key for an unknown recipe or dataset or a setting the library rejects.
    """
    _check_recipe(name)
    dataset = dataset or default_dataset(config, name)
    _check_dataset(config, dataset, name)
    seed = int(config["seed"])
    if name == "reference_classifier":
        mapping, source = _classifier_mapping(config, dataset)
        settings, downsample = _train_settings(mapping, source)
        recipe = Recipe(name, dataset, source, settings, {"downsample": downsample})
    elif name == "poisoned_model":
        classifier, source = _classifier_mapping(config, dataset)
        spec = _smooth_spec(config, dataset)
        overrides = _smooth_key(config, dataset, "poisoned_model")
        source = f"{source} + {overrides}"
        settings, downsample = _train_settings({**classifier, **spec["poisoned_model"]}, source)
        options = {
            "downsample": downsample,
            "share": float(spec["poison_share"]),
            "share_source": _smooth_key(config, dataset, "poison_share"),
            "trigger": PATCH_TRIGGER,
            "trigger_options": trigger_options(config, PATCH_TRIGGER),
        }
        recipe = Recipe(name, dataset, source, settings, options)
    elif name == "detector":
        mapping, source = _merge(config, ["detector", f"datasets.{dataset}.detector"])
        try:
            settings = DetectorSettings.from_config({**mapping, "seed": seed})
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from exc
        options = {
            "manipulations": dict(config.get("manipulations") or {}),
            "threshold": float(config["detection"]["threshold"]),
        }
        recipe = Recipe(name, dataset, source, settings, options)
    elif name == "transfer_fine_tune":
        source = "transfer.fine_tune"
        settings = FineTuneSettings.from_config({**config["transfer"]["fine_tune"], "seed": seed})
        options = {
            "source_dataset": transfer_source(config, dataset),
            "budget": int(config["transfer"]["budget"]),
            "threshold": float(config["transfer"]["threshold"]),
            "manipulations": dict(config.get("manipulations") or {}),
        }
        recipe = Recipe(name, dataset, source, settings, options)
    elif name == "smooth_upgrade":
        spec = _smooth_spec(config, dataset)
        source = _smooth_key(config, dataset, "fine_tune")
        try:
            settings = FineTuneSettings.from_config({**spec["fine_tune"], "seed": seed})
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from exc
        trigger = spec["lowpass_tune"]
        options = {
            "samples": int(spec["upgrade_samples"]),
            "trigger": trigger,
            "trigger_options": trigger_options(config, trigger),
            "threshold": float(config["detection"]["threshold"]),
        }
        recipe = Recipe(name, dataset, source, settings, options)
    elif name in ("mna_shadow_model", "mna_target_model"):
        role = "shadow" if name == "mna_shadow_model" else "target"
        training = mntd.MNTDTraining.from_config(config["mna"]["training"])
        settings = training.train_settings(
            role, config["mna"]["shadow_share"], config["mna"]["target_share"], seed
        )
        options = {
            "architecture": training.architecture,
            "model_options": training.model_options(),
            "stacked": bool(config["mna"].get("stacked", False)),
            "role": role,
        }
        if role == "target":
            options.update(
                share=float(_smooth_spec(config, dataset)["poison_share"]),
                share_source=_smooth_key(config, dataset, "poison_share"),
                trigger=PATCH_TRIGGER,
                trigger_options=trigger_options(config, PATCH_TRIGGER),
            )
        recipe = Recipe(name, dataset, f"mna.training ({role})", settings, options)
    else:  # meta_classifier
        settings = MetaSettings.from_config(config["mna"]["meta"])
        recipe = Recipe(name, dataset, "mna.meta", settings, {"seed": seed})
    return recipe.with_epochs(epochs) if epochs is not None else recipe


def resolve_recipes(
    config: Mapping[str, Any], epochs: Mapping[str, int] | None = None
) -> dict[str, Recipe]:
    """Every recipe of :data:`RECIPES` on its :func:`default_dataset`, ``epochs`` replaced."""
    epochs = dict(epochs or {})
    unknown = sorted(set(epochs) - set(RECIPES))
    if unknown:
        raise ConfigError(f"unknown recipe(s) {', '.join(unknown)}; known: {', '.join(RECIPES)}")
    return {name: resolve_recipe(config, name, epochs=epochs.get(name)) for name in RECIPES}


def _check_recipe(name: str) -> None:
    if name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r}; known: {', '.join(RECIPES)}")


# --------------------------------------------------------------------------- data


@dataclasses.dataclass(frozen=True)
class Split:
    """A small prepared dataset in memory: uint8 ``N x H x W x 3`` images and int64 labels."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int

    @property
    def size(self) -> int:
        return int(self.x_train.shape[1] if len(self.x_train) else self.x_test.shape[1])

    def subset(
        self, train_per_class: int | None = None, test_per_class: int | None = None, seed: int = 0
    ) -> Split:
        """At most ``*_per_class`` seeded images of every class of each split (None: all)."""
        rng = np.random.default_rng([seed, 4242])

        def pick(labels: np.ndarray, per_class: int | None) -> np.ndarray:
            if per_class is None:
                return np.arange(labels.size)
            rows = [
                rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in np.unique(labels)
            ]
            return np.sort(np.concatenate(rows))

        train, test = pick(self.y_train, train_per_class), pick(self.y_test, test_per_class)
        return dataclasses.replace(
            self,
            x_train=self.x_train[train],
            y_train=self.y_train[train],
            x_test=self.x_test[test],
            y_test=self.y_test[test],
        )


def dataset_spec(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    """Dataset ``name``'s config as the dataset builder takes it (``rules/common.smk``)."""
    _check_dataset(config, name, "dataset_spec")
    return {k: v for k, v in config["datasets"][name].items() if k not in DATASET_RULE_KEYS}


def prepare_splits(
    config: Mapping[str, Any], names: Sequence[str], directory: str | Path
) -> dict[str, Split]:
    """Prepare datasets ``names`` of ``config`` under ``directory`` and load them in memory.

    Meant for the demo config's embedded datasets (no network): ``photos32`` and ``digits32``
    take about two seconds together.
    """
    directory = Path(directory)
    splits = {}
    for name in names:
        out = directory / name
        meta = prepare(name, dataset_spec(config, name), directory / "raw", out, config["seed"])
        x_train, y_train = load_split(out, "train", mmap=False)
        x_test, y_test = load_split(out, "test", mmap=False)
        splits[name] = Split(
            name,
            np.asarray(x_train),
            np.asarray(y_train, dtype=np.int64),
            np.asarray(x_test),
            np.asarray(y_test, dtype=np.int64),
            int(meta["num_classes"]),
        )
    return splits


# --------------------------------------------------------------------------- records


@dataclasses.dataclass
class RecipeRecord:
    """What one learnability run trained, by which config keys, how fast, and how far.

    ``steps`` optimiser steps over ``samples`` training samples in ``seconds`` (the training
    call alone: input pipeline included, evaluation excluded). ``value`` is ``metric`` after
    training, ``before`` the same metric before it (fine-tuning recipes only), ``chance`` what
    a model that learned nothing scores. ``first_loss`` and ``last_loss`` are the mean training
    losses of the first and the last epoch. ``extra`` holds secondary numbers (a poisoned
    model's clean accuracy, a detector's false-positive rate).
    """

    recipe: str
    dataset: str
    data: str
    source: str
    optimizer: str
    lr: float
    batch_size: int
    epochs: int
    steps: int
    samples: int
    seconds: float
    metric: str
    value: float
    chance: float
    first_loss: float
    last_loss: float
    device: str
    before: float | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def samples_per_second(self) -> float | None:
        return self.samples / self.seconds if self.seconds > 0 else None

    @property
    def learned(self) -> bool:
        """Loss fell and the metric beats chance (and, for a fine-tuning, its value before)."""
        above = self.value > self.chance and (self.before is None or self.value > self.before)
        return bool(self.last_loss < self.first_loss and above)

    def as_dict(self) -> dict[str, Any]:
        """A flat row: the fields, ``samples_per_second``, then ``extra`` as its own columns."""
        row = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        row["samples_per_second"] = self.samples_per_second
        row.update(self.extra)
        return row


def _steps(samples_per_epoch: int, batch_size: int, epochs: int) -> int:
    return epochs * math.ceil(samples_per_epoch / batch_size)


def _training_fields(
    losses: Sequence[float], samples_per_epoch: int, batch_size: int, epochs: int
) -> dict[str, Any]:
    """A record's ``steps``, ``samples``, ``first_loss`` and ``last_loss`` for one training run."""
    return {
        "steps": _steps(samples_per_epoch, batch_size, epochs),
        "samples": samples_per_epoch * epochs,
        "first_loss": losses[0],
        "last_loss": losses[-1],
    }


def epochs_for_steps(steps: int, samples_per_epoch: int, batch_size: int) -> int:
    """Epochs that make about ``steps`` optimiser steps (at least one epoch)."""
    per_epoch = max(1, math.ceil(samples_per_epoch / batch_size))
    return max(1, round(steps / per_epoch))


def _synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(seed: int, device: torch.device, train: Callable[[], Any]) -> tuple[Any, float]:
    """``train()`` under :func:`seeded` and its wall time in seconds, the device drained."""
    started = time.perf_counter()
    with seeded(seed):
        result = train()
    _synchronise(device)
    return result, time.perf_counter() - started


def _record(recipe: Recipe, data: Split, device: torch.device, **fields: Any) -> RecipeRecord:
    return RecipeRecord(
        recipe=recipe.name,
        dataset=recipe.dataset,
        data=data.name,
        source=recipe.source,
        optimizer=recipe.optimizer,
        lr=recipe.lr,
        batch_size=recipe.batch_size,
        epochs=recipe.epochs,
        device=str(device),
        **fields,
    )


def majority_share(labels: np.ndarray) -> float:
    """Accuracy of always predicting the most frequent label: a classifier's chance level."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64))
    return float(counts.max() / counts.sum())


def recipe_trigger(recipe: Recipe, size: int) -> Trigger:
    """The trigger ``recipe`` plants or tunes on (``options["trigger"]``) for ``size`` px images,
    built from its config options (seeded by the recipe's seed)."""
    if "trigger" not in recipe.options:
        raise ConfigError(f"recipe {recipe.name} has no trigger")
    return build_trigger(
        recipe.options["trigger"],
        size,
        size,
        dict(recipe.options["trigger_options"]),
        TriggerContext(seed=recipe.seed),
    )


def _manipulations(recipe: Recipe) -> ManipulationParams:
    try:
        return ManipulationParams.from_config(recipe.options.get("manipulations"))
    except ConfigError as exc:
        raise ConfigError(f"{recipe.name} (config key manipulations): {exc}") from exc


def pair_accuracy(
    model: Detector,
    images: np.ndarray,
    params: ManipulationParams,
    seed: int,
    threshold: float = 0.5,
) -> float:
    """A detector's accuracy on ``images`` clean (0) and with one random manipulation (1).

    The manipulations come from the validation stream (``VALIDATION_ROUND``), apart from
    every training draw.
    """
    manipulated = manipulated_copy(images, params, seed, VALIDATION_ROUND)
    clean = detector_scores(model, images) < threshold
    flagged = detector_scores(model, manipulated) >= threshold
    return float((clean.sum() + flagged.sum()) / (2 * len(images)))


# --------------------------------------------------------------------------- runners


def run_reference_classifier(
    recipe: Recipe, data: Split, device: str | torch.device = "cpu"
) -> tuple[RecipeRecord, nn.Module]:
    """Table 8's classifier trained by ``recipe`` on ``data.x_train``; test accuracy."""
    target = resolve_device(device)
    settings: TrainSettings = recipe.settings
    model = build_model(
        ReferenceCNN.architecture,
        data.num_classes,
        data.size,
        seed=settings.seed,
        downsample=recipe.options.get("downsample", 1),
    )
    with seeded(settings.seed):
        history = train_classifier(model, data.x_train, data.y_train, settings, target)
    value = accuracy(model, data.x_test, data.y_test, target)
    record = _record(
        recipe,
        data,
        target,
        **_training_fields(
            history["train_loss"],
            history["train_samples"],
            settings.batch_size,
            len(history["epoch"]),
        ),
        seconds=history["seconds"],
        metric="test_accuracy",
        value=value,
        chance=majority_share(data.y_test),
        extra={"best_epoch": history["best_epoch"]},
    )
    return record, model


def run_detector(
    recipe: Recipe, data: Split, device: str | torch.device = "cpu"
) -> tuple[RecipeRecord, Detector]:
    """The DCT detector trained by ``recipe`` on ``data.x_train`` clean and manipulated.

    The metric is the accuracy on the test images clean and with one fresh random
    manipulation each, at the config's detection threshold (chance 0.5).
    """
    target = resolve_device(device)
    settings: DetectorSettings = recipe.settings
    params = _manipulations(recipe)
    with seeded(settings.seed):
        model, history = train_detector(data.x_train, settings, "dct", params, target)
    value = pair_accuracy(model, data.x_test, params, settings.seed, recipe.options["threshold"])
    samples = history["samples"]
    record = _record(
        recipe,
        data,
        target,
        **_training_fields(history["train_loss"], samples, settings.batch_size, settings.epochs),
        seconds=history["seconds"],
        metric="heldout_accuracy",
        value=value,
        chance=0.5,
        extra={"val_acc": history["val_acc"]},
    )
    return record, model


def run_poisoned_model(
    recipe: Recipe, data: Split, device: str | torch.device = "cpu"
) -> tuple[RecipeRecord, nn.Module]:
    """Table 8's classifier trained by ``recipe`` on ``data`` with a patch trigger planted.

    A seeded ``smooth.poison_share`` of the training rows gets the config's BadNets patch and
    its target label (:func:`freqbackdoor.models.poisoning.train_poisoned_model`). The metric is the
    attack success rate on the triggered test images of other classes (chance: the share of
    one class, ``1 / classes``); the clean test accuracy goes to ``extra``.
    """
    target = resolve_device(device)
    settings: TrainSettings = recipe.settings
    trigger = recipe_trigger(recipe, data.size)
    model = build_model(
        ReferenceCNN.architecture,
        data.num_classes,
        data.size,
        seed=settings.seed,
        downsample=recipe.options.get("downsample", 1),
    )
    with seeded(settings.seed):
        history, info = train_poisoned_model(
            model,
            data.x_train,
            data.y_train,
            trigger,
            recipe.options["share"],
            settings,
            data.x_test,
            data.y_test,
            trigger.apply(data.x_test),
            target,
            settings.seed,
        )
    record = _record(
        recipe,
        data,
        target,
        **_training_fields(
            history["train_loss"],
            history["train_samples"],
            settings.batch_size,
            len(history["epoch"]),
        ),
        seconds=history["seconds"],
        metric="attack_success_rate",
        value=info["asr"],
        chance=1.0 / data.num_classes,
        extra={
            "clean_accuracy": info["clean_acc"],
            "clean_chance": majority_share(data.y_test),
            "poisoned_rows": info["poisoned_rows"],
            "share_source": recipe.options["share_source"],
        },
    )
    return record, model


def run_transfer_fine_tune(
    recipe: Recipe, detector: Detector, target_data: Split
) -> tuple[RecipeRecord, Detector]:
    """A trained detector fine-tuned by ``recipe`` on another dataset, as Tables 2-4's "+Tune".

    ``transfer.budget`` clean test images of ``target_data`` plus one random manipulation of
    each tune it (:func:`freqbackdoor.detection.transfer.fine_tune_detector`); the other test images,
    clean and freshly manipulated, score it before (``before``) and after (``value``) at
    ``transfer.threshold``.
    """
    settings: FineTuneSettings = recipe.settings
    params = _manipulations(recipe)
    threshold = recipe.options["threshold"]
    tune, test = fine_tune_split(len(target_data.x_test), recipe.options["budget"], settings.seed)
    held_out = target_data.x_test[test]
    before = pair_accuracy(detector, held_out, params, settings.seed, threshold)
    device = next(detector.parameters()).device
    (tuned, history), seconds = _timed(
        settings.seed,
        device,
        lambda: fine_tune_detector(detector, target_data.x_test[tune], settings, params),
    )
    value = pair_accuracy(tuned, held_out, params, settings.seed, threshold)
    record = _record(
        recipe,
        target_data,
        device,
        **_training_fields(
            history["train_loss"], history["samples"], settings.batch_size, settings.epochs
        ),
        seconds=seconds,
        metric="target_heldout_accuracy",
        value=value,
        before=before,
        chance=0.5,
        extra={"source_dataset": recipe.options["source_dataset"], "tuned_on": int(tune.size)},
    )
    return record, tuned


def run_smooth_upgrade(
    recipe: Recipe, detector: Detector, data: Split, samples: int | None = None
) -> tuple[RecipeRecord, Detector]:
    """A trained detector fine-tuned by ``recipe`` on clean + low-pass-patched images (Section 5.4).

    The patch is ``smooth.lowpass_tune`` (a filtered noise pattern, the trigger of the
    upgrade's first fine-tuning); the fine-tuning set is ``samples`` (default
    ``smooth.upgrade_samples``, capped by the training set) training images, half clean and
    half patched (:func:`freqbackdoor.detection.upgrade.upgrade_set`). The metric is the share of
    patched test images flagged at the detection threshold, before (``before``) and after
    (``value``); its chance level is the tuned detector's flag rate on the clean test images
    (a detector blind to the patch flags patched images as often as clean ones).
    """
    settings: FineTuneSettings = recipe.settings
    threshold = recipe.options["threshold"]
    trigger = recipe_trigger(recipe, data.size)
    samples = samples or recipe.options["samples"]
    samples = min(samples, len(data.x_train) - len(data.x_train) % 2)
    clean, triggered = upgrade_set(data.x_train, trigger, samples, settings.seed)
    patched_test = trigger.apply(data.x_test)
    before = float((detector_scores(detector, patched_test) >= threshold).mean())
    before_fpr = float((detector_scores(detector, data.x_test) >= threshold).mean())
    device = next(detector.parameters()).device
    (tuned, history), seconds = _timed(
        settings.seed, device, lambda: fine_tune_on_triggered(detector, clean, triggered, settings)
    )
    value = float((detector_scores(tuned, patched_test) >= threshold).mean())
    fpr = float((detector_scores(tuned, data.x_test) >= threshold).mean())
    record = _record(
        recipe,
        data,
        device,
        **_training_fields(
            history["train_loss"], history["samples"], settings.batch_size, settings.epochs
        ),
        seconds=seconds,
        metric="patched_detection_rate",
        value=value,
        before=before,
        chance=fpr,
        extra={"trigger": trigger.name, "clean_fpr_before": before_fpr, "clean_fpr": fpr},
    )
    return record, tuned


def _mna_models(
    recipe: Recipe,
    x_sets: Sequence[np.ndarray],
    y_sets: Sequence[np.ndarray],
    num_classes: int,
    size: int,
    seeds: Sequence[int],
    device: torch.device,
    model_options: Mapping[str, Any] | None = None,
) -> tuple[list[nn.Module], dict[str, Any], float]:
    """Models of ``recipe``'s architecture trained as ``mna_models.py`` trains a group."""
    options = dict(recipe.options["model_options"]) if model_options is None else model_options
    models = [
        build_model(recipe.options["architecture"], num_classes, size, seed=seed, **options)
        for seed in seeds
    ]
    target = resolve_device(device)
    history, seconds = _timed(
        seeds[0],
        target,
        lambda: train_model_group(
            models,
            list(x_sets),
            list(y_sets),
            recipe.settings,
            list(seeds),
            device=target,
            stacked=recipe.options["stacked"],
        ),
    )
    return models, history, seconds


def run_mna_model(
    recipe: Recipe, data: Split, device: str | torch.device = "cpu"
) -> tuple[RecipeRecord, nn.Module]:
    """One MNA shadow (clean) or target (patch-trojaned) model trained by MNTD's recipe.

    As the ``mna_shadow_models`` / ``mna_target_models`` jobs do, through
    :func:`freqbackdoor.models.groups.train_model_group`; a target model's set has
    ``smooth.poison_share`` poisoned copies of its rows appended
    (:func:`freqbackdoor.mna.mntd.append_poisoned_copies`). The metric is the clean test accuracy;
    a target model's attack success rate goes to ``extra``.
    """
    target = resolve_device(device)
    seed = model_seed(recipe.seed, recipe.options["role"], "recipe", 0)
    x, y, trigger = data.x_train, data.y_train, None
    if recipe.options["role"] == "target":
        trigger = recipe_trigger(recipe, data.size)
        x, y, _ = mntd.append_poisoned_copies(x, y, trigger, recipe.options["share"], seed)
    models, history, seconds = _mna_models(
        recipe, [x], [y], data.num_classes, data.size, [seed], target
    )
    model = models[0]
    logits = group_logits([model], data.x_test)[0]
    extra: dict[str, Any] = {"mode": history["mode"], "training_rows": int(len(y))}
    if trigger is not None:
        triggered = group_logits([model], trigger.apply(data.x_test))[0]
        extra["asr"] = attack_success_rate(
            triggered.argmax(1), data.y_test, int(trigger.target_label)
        )
    settings: TrainSettings = recipe.settings
    record = _record(
        recipe,
        data,
        target,
        **_training_fields(history["train_loss"][0], len(y), settings.batch_size, settings.epochs),
        seconds=seconds,
        metric="test_accuracy",
        value=float((logits.argmax(1) == data.y_test).mean()),
        chance=majority_share(data.y_test),
        extra=extra,
    )
    return record, model


def small_model_set(
    model_recipe: Recipe,
    data: Split,
    benign: int,
    jumbo: int,
    role: str,
    device: str | torch.device = "cpu",
    downsample: int = 2,
    trigger: Trigger | None = None,
    share: float = 0.1,
) -> tuple[list[nn.Module], np.ndarray, dict[str, Any]]:
    """``benign`` clean and ``jumbo`` trojaned small models for a meta-classifier run.

    Each model is ``model_recipe``'s architecture (MNTD's network) behind an average pooling
    of ``downsample`` (so it is cheap), trained by ``model_recipe`` (optimiser, learning rate,
    batch size, epochs) on ``data.x_train``. A trojaned one has poisoned copies appended
    (:func:`freqbackdoor.mna.mntd.append_poisoned_copies`): of ``trigger`` at ``share`` when given,
    else of a trigger drawn from MNTD's jumbo distribution
    (:func:`freqbackdoor.mna.meta.draw_jumbo_trigger`) at its drawn share. Seeds come from
    :func:`freqbackdoor.mna.meta.model_seed` of ``role`` (two roles give disjoint models). Returns
    the models, their labels (1: trojaned) and a summary (mean clean accuracy, mean ASR of the
    trojaned ones, training seconds and samples).
    """
    target = resolve_device(device)
    x_sets, y_sets, seeds, labels, triggers = [], [], [], [], []
    for kind, count in (("benign", benign), ("jumbo", jumbo)):
        for index in range(count):
            seed = model_seed(model_recipe.seed, role, kind, index)
            x, y, planted = data.x_train, data.y_train, None
            if kind == "jumbo" and trigger is not None:
                planted = trigger
                x, y, _ = mntd.append_poisoned_copies(x, y, trigger, share, seed)
            elif kind == "jumbo":
                rng = np.random.default_rng(seed)
                planted, drawn = draw_jumbo_trigger(data.size, data.size, data.num_classes, rng)
                x, y, _ = mntd.append_poisoned_copies(x, y, planted, drawn["share"], seed)
            x_sets.append(x)
            y_sets.append(y)
            seeds.append(seed)
            labels.append(int(kind == "jumbo"))
            triggers.append(planted)
    options = {**dict(model_recipe.options["model_options"]), "downsample": downsample}
    models, history, seconds = _mna_models(
        model_recipe, x_sets, y_sets, data.num_classes, data.size, seeds, target, options
    )
    logits = group_logits(models, data.x_test)
    accuracies = (logits.argmax(2) == data.y_test[None]).mean(1)
    rates = [
        attack_success_rate(
            group_logits([m], t.apply(data.x_test))[0].argmax(1), data.y_test, t.target_label
        )
        for m, t in zip(models, triggers, strict=True)
        if t is not None
    ]
    summary = {
        "clean_accuracy": float(accuracies.mean()),
        "asr": float(np.mean(rates)) if rates else None,
        "seconds": seconds,
        "samples": int(sum(len(y) for y in y_sets) * model_recipe.epochs),
    }
    return models, np.asarray(labels), summary


def run_meta_classifier(
    recipe: Recipe,
    train_models: Sequence[nn.Module],
    train_labels: np.ndarray,
    test_models: Sequence[nn.Module],
    test_labels: np.ndarray,
    data: Split,
    device: str | torch.device = "cpu",
) -> tuple[RecipeRecord, nn.Module]:
    """MNTD's meta-classifier trained by ``recipe`` on shadow models; AUC on other models.

    Queries start from the per-channel statistics of ``data.x_train`` (``query_init: data``).
    No validation models: the last epoch is kept. The metric is the ROC AUC of the scores of
    ``test_models`` (chance 0.5). Steps are models seen (one model per step).
    """
    target = resolve_device(device)
    settings: MetaSettings = recipe.settings
    stats = mntd.channel_stats(data.x_train)
    (meta, history), seconds = _timed(
        recipe.seed,
        target,
        lambda: train_meta_classifier(
            train_models,
            train_labels,
            (3, data.size, data.size),
            data.num_classes,
            settings,
            seed=recipe.seed,
            device=target,
            query_stats=stats,
        ),
    )
    scores = meta_scores(meta, test_models)
    test_labels = np.asarray(test_labels)
    if set(test_labels.tolist()) != {0, 1}:
        raise DataError("the meta-classifier's test models need both clean and trojaned ones")
    value = auc(scores[test_labels == 0], scores[test_labels == 1])
    steps = len(train_models) * settings.epochs
    record = _record(
        recipe,
        data,
        target,
        steps=steps,
        samples=steps,
        seconds=seconds,
        metric="test_auc",
        value=value,
        chance=0.5,
        first_loss=history["loss"][0],
        last_loss=history["loss"][-1],
        extra={"train_accuracy": history["train_acc"][-1], "test_models": len(test_models)},
    )
    return record, meta


# --------------------------------------------------------------------------- all at once


def run_all(
    config: Mapping[str, Any],
    primary: Split,
    secondary: Split,
    epochs: Mapping[str, int] | None = None,
    steps: int | None = None,
    device: str | torch.device = "cpu",
    meta_models: tuple[int, int] = (6, 5),
    meta_model_epochs: int = 4,
    meta_data: Split | None = None,
    names: Sequence[str] = RECIPES,
    log: logging.Logger | None = None,
) -> list[RecipeRecord]:
    """Every recipe of ``config`` (or those in ``names``) trained once; their records.

    ``primary`` stands in for each recipe's dataset; ``secondary`` is the transfer target (the
    detector trains on ``primary`` and is fine-tuned on ``secondary``). ``epochs`` sets a
    recipe's epochs by name; otherwise ``steps`` (about that many optimiser steps) or the
    config's own. The meta-classifier trains on ``meta_models[0]`` clean plus as many
    patch-trojaned small models (:func:`small_model_set`, the target recipe's trigger and
    share) and is tested on ``meta_models[1]`` of each; they train by the shadow recipe for
    ``meta_model_epochs`` on ``meta_data`` (default: 40 training and 20 test images per class
    of ``primary``).
    """
    log = log or _log
    epochs = dict(epochs or {})
    recipes = resolve_recipes(config)
    target = resolve_device(device)

    def budget(name: str, samples_per_epoch: int) -> Recipe:
        recipe = recipes[name]
        if name in epochs:
            return recipe.with_epochs(epochs[name])
        if steps is not None:
            return recipe.with_epochs(epochs_for_steps(steps, samples_per_epoch, recipe.batch_size))
        return recipe

    n_train, n_test = len(primary.x_train), len(secondary.x_test)
    kept = n_train - round(recipes["reference_classifier"].settings.val_fraction * n_train)
    records: list[RecipeRecord] = []
    detector = None

    def done(record: RecipeRecord) -> None:
        records.append(record)
        log.info("%s", record.as_dict())

    if "reference_classifier" in names:
        done(run_reference_classifier(budget("reference_classifier", kept), primary, target)[0])
    if "poisoned_model" in names:
        done(run_poisoned_model(budget("poisoned_model", kept), primary, target)[0])
    if {"detector", "transfer_fine_tune", "smooth_upgrade"} & set(names):
        held_out = round(recipes["detector"].settings.val_fraction * n_train)
        detector_recipe = budget("detector", 2 * (n_train - held_out))
        record, detector = run_detector(detector_recipe, primary, target)
        if "detector" in names:
            done(record)
    if "transfer_fine_tune" in names:
        recipe = budget("transfer_fine_tune", 2 * recipes["transfer_fine_tune"].options["budget"])
        if recipe.options["budget"] >= n_test:
            raise DataError(
                f"transfer.budget {recipe.options['budget']} leaves none of {secondary.name}'s "
                f"{n_test} test images to score"
            )
        done(run_transfer_fine_tune(recipe, detector, secondary)[0])
    if "smooth_upgrade" in names:
        samples = min(recipes["smooth_upgrade"].options["samples"], n_train - n_train % 2)
        done(run_smooth_upgrade(budget("smooth_upgrade", samples), detector, primary, samples)[0])
    for name in ("mna_shadow_model", "mna_target_model"):
        if name in names:
            share = recipes[name].options.get("share", 0.0)
            done(run_mna_model(budget(name, n_train + int(share * n_train)), primary, target)[0])
    if "meta_classifier" in names:
        models = recipes["mna_shadow_model"].with_epochs(meta_model_epochs)
        meta_data = meta_data or primary.subset(40, 20)
        target_recipe = recipes["mna_target_model"]
        trigger = recipe_trigger(target_recipe, meta_data.size)
        share = target_recipe.options["share"]
        train_count, test_count = meta_models
        train_models, train_labels, _ = small_model_set(
            models,
            meta_data,
            train_count,
            train_count,
            "shadow",
            target,
            trigger=trigger,
            share=share,
        )
        test_models, test_labels, _ = small_model_set(
            models,
            meta_data,
            test_count,
            test_count,
            "validation",
            target,
            trigger=trigger,
            share=share,
        )
        recipe = budget("meta_classifier", 2 * train_count)
        done(
            run_meta_classifier(
                recipe, train_models, train_labels, test_models, test_labels, meta_data, target
            )[0]
        )
    return records
