"""Every training recipe of a config as the workflow runs it: :func:`resolve_recipe`.

A :class:`Recipe` is the library's settings object of one of :data:`RECIPES`, built from the
same resolved settings the rules pass their jobs (:mod:`freqbackdoor.config.settings`), with
the config keys it came from and what else the job is given (model options, poison share,
trigger, budget, threshold).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from ..config import settings as resolve
from ..detection.detector import DetectorSettings
from ..detection.transfer import FineTuneSettings
from ..errors import ConfigError
from ..mna import mntd
from ..mna.meta import MetaSettings
from ..models.training import TrainSettings

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
#: The trigger a poisoned or target model is trained with here: a simple patch (BadNets).
PATCH_TRIGGER = "badnets"


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


def default_dataset(config: Mapping[str, Any], name: str) -> str:
    """The dataset whose recipe stands for ``name``: the paper's CIFAR-10 role in each config.

    The first of ``detection.datasets`` (classifier, detector), of ``smooth.datasets``
    (poisoned model, upgrade), of ``mna.datasets`` (MNA), and for the transfer fine-tuning the
    target of the first tuned column of ``transfer.tables``.
    """
    check_recipe(name)
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


def _settings(cls: Any, mapping: Mapping[str, Any], source: str) -> Any:
    """``cls.from_config(mapping)``, a rejection prefixed with the config keys it came from."""
    try:
        return cls.from_config(mapping)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from exc


def resolve_recipe(
    config: Mapping[str, Any],
    name: str,
    dataset: str | None = None,
    epochs: int | None = None,
) -> Recipe:
    """Recipe ``name`` of ``config`` on ``dataset`` (default :func:`default_dataset`).

    The settings are :mod:`freqbackdoor.config.settings`' (what the rules pass their jobs),
    built into the library's settings object. ``epochs`` replaces the configured step budget
    (for the MNA models, the epochs of that role; for the meta-classifier, its passes over the
    shadow models). Raises ``ConfigError`` naming the key for an unknown recipe or dataset or a
    setting the library rejects.
    """
    check_recipe(name)
    dataset = dataset or default_dataset(config, name)
    resolve.check_dataset(config, dataset, name)
    seed = int(config["seed"])
    if name == "reference_classifier":
        _, source = resolve.reference_classifier_layers(config, dataset)
        resolved = resolve.reference_classifier(config, dataset)
        settings = _settings(TrainSettings, resolved["training"], source)
        recipe = Recipe(name, dataset, source, settings, dict(resolved["model"]))
    elif name == "poisoned_model":
        _, source = resolve.reference_classifier_layers(config, dataset)
        source = f"{source} + {resolve.smooth_key(config, dataset, 'poisoned_model')}"
        resolved = resolve.poisoned_model(config, dataset)
        settings = _settings(TrainSettings, resolved["training"], source)
        options = {
            **resolved["model"],
            "share": float(resolve.smooth_spec(config, dataset)["poison_share"]),
            "share_source": resolve.smooth_key(config, dataset, "poison_share"),
            "trigger": PATCH_TRIGGER,
            "trigger_options": resolve.trigger_options(config, PATCH_TRIGGER),
        }
        recipe = Recipe(name, dataset, source, settings, options)
    elif name == "detector":
        _, source = resolve.detector_layers(config, dataset)
        settings = _settings(DetectorSettings, resolve.detector(config, dataset), source)
        options = {
            "manipulations": dict(config.get("manipulations") or {}),
            "threshold": float(config["detection"]["threshold"]),
        }
        recipe = Recipe(name, dataset, source, settings, options)
    elif name == "transfer_fine_tune":
        source = "transfer.fine_tune"
        settings = _settings(FineTuneSettings, resolve.transfer_fine_tune(config), source)
        options = {
            "source_dataset": transfer_source(config, dataset),
            "budget": int(config["transfer"]["budget"]),
            "threshold": float(config["transfer"]["threshold"]),
            "manipulations": dict(config.get("manipulations") or {}),
        }
        recipe = Recipe(name, dataset, source, settings, options)
    elif name == "smooth_upgrade":
        spec = resolve.smooth_spec(config, dataset)
        source = resolve.smooth_key(config, dataset, "fine_tune")
        settings = _settings(FineTuneSettings, resolve.smooth_upgrade(config, dataset), source)
        trigger = spec["lowpass_tune"]
        options = {
            "samples": int(spec["upgrade_samples"]),
            "trigger": trigger,
            "trigger_options": resolve.trigger_options(config, trigger),
            "threshold": float(config["detection"]["threshold"]),
        }
        recipe = Recipe(name, dataset, source, settings, options)
    elif name in ("mna_shadow_model", "mna_target_model"):
        role = "shadow" if name == "mna_shadow_model" else "target"
        mna = resolve.mna_spec(config)
        training = mntd.MNTDTraining.from_config(resolve.mna_training(config))
        settings = training.train_settings(role, mna["shadow_share"], mna["target_share"], seed)
        options = {
            "architecture": training.architecture,
            "model_options": training.model_options(),
            "stacked": bool(mna.get("stacked", False)),
            "role": role,
        }
        if role == "target":
            options.update(
                share=float(resolve.smooth_spec(config, dataset)["poison_share"]),
                share_source=resolve.smooth_key(config, dataset, "poison_share"),
                trigger=PATCH_TRIGGER,
                trigger_options=resolve.trigger_options(config, PATCH_TRIGGER),
            )
        recipe = Recipe(name, dataset, f"mna.training ({role})", settings, options)
    else:  # meta_classifier
        settings = MetaSettings.from_config(resolve.mna_spec(config)["meta"])
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


def check_recipe(name: str) -> None:
    """``ConfigError`` for a name not in :data:`RECIPES`."""
    if name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r}; known: {', '.join(RECIPES)}")
