"""What a learnability run trains on and what it reports: :class:`Split` and :class:`RecipeRecord`.

:class:`Split` is a small prepared dataset in memory (the demo's embedded data);
:class:`RecipeRecord` is one run's account: what was trained, by which config keys, how fast,
and its metric next to chance. The helpers build records, time a training call, and give the
chance levels and triggers the runners (:mod:`freqbackdoor.recipes.runs`) need.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config.settings import dataset_spec
from ..data.datasets import load_split, prepare
from ..detection.detector import VALIDATION_ROUND, Detector, detector_scores, manipulated_copy
from ..detection.manipulations import ManipulationParams
from ..errors import ConfigError
from ..models.training import seeded
from ..triggers.registry import Trigger, TriggerContext, build_trigger
from .resolution import Recipe


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


def optimiser_steps(samples_per_epoch: int, batch_size: int, epochs: int) -> int:
    return epochs * math.ceil(samples_per_epoch / batch_size)


def training_fields(
    losses: Sequence[float], samples_per_epoch: int, batch_size: int, epochs: int
) -> dict[str, Any]:
    """A record's ``steps``, ``samples``, ``first_loss`` and ``last_loss`` for one training run."""
    return {
        "steps": optimiser_steps(samples_per_epoch, batch_size, epochs),
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


def timed(seed: int, device: torch.device, train: Callable[[], Any]) -> tuple[Any, float]:
    """``train()`` under :func:`seeded` and its wall time in seconds, the device drained."""
    started = time.perf_counter()
    with seeded(seed):
        result = train()
    _synchronise(device)
    return result, time.perf_counter() - started


def record_of(recipe: Recipe, data: Split, device: torch.device, **fields: Any) -> RecipeRecord:
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


def recipe_manipulations(recipe: Recipe) -> ManipulationParams:
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
