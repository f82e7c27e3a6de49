"""The runners: each trains one recipe on small data and returns its :class:`RecipeRecord`.

A few dozen to a few hundred optimiser steps on the demo's embedded datasets, enough to show
that a recipe learns (``tests/test_recipes.py``) and how fast (``benchmarks/recipes.py``);
:func:`run_all` trains every recipe of a config at once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..detection.detector import Detector, DetectorSettings, detector_scores, train_detector
from ..detection.transfer import FineTuneSettings, fine_tune_detector, fine_tune_split
from ..detection.upgrade import fine_tune_on_triggered, upgrade_set
from ..errors import DataError
from ..frequency.dct import resolve_device
from ..mna import mntd
from ..mna.evaluation import auc
from ..mna.meta import (
    MetaSettings,
    meta_scores,
    train_meta_classifier,
)
from ..mna.shadow_models import draw_jumbo_trigger, model_seed
from ..models.classifier import ReferenceCNN, build_model
from ..models.groups import train_model_group
from ..models.poisoning import attack_success_rate, train_poisoned_model
from ..models.prediction import accuracy, group_logits
from ..models.training import TrainSettings, seeded, train_classifier
from ..triggers.registry import Trigger
from .records import (
    RecipeRecord,
    Split,
    epochs_for_steps,
    majority_share,
    pair_accuracy,
    recipe_manipulations,
    recipe_trigger,
    record_of,
    timed,
    training_fields,
)
from .resolution import RECIPES, Recipe, resolve_recipes

_log = logging.getLogger(__name__)


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
    record = record_of(
        recipe,
        data,
        target,
        **training_fields(
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
    params = recipe_manipulations(recipe)
    with seeded(settings.seed):
        model, history = train_detector(data.x_train, settings, "dct", params, target)
    value = pair_accuracy(model, data.x_test, params, settings.seed, recipe.options["threshold"])
    samples = history["samples"]
    record = record_of(
        recipe,
        data,
        target,
        **training_fields(history["train_loss"], samples, settings.batch_size, settings.epochs),
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
    record = record_of(
        recipe,
        data,
        target,
        **training_fields(
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
    params = recipe_manipulations(recipe)
    threshold = recipe.options["threshold"]
    tune, test = fine_tune_split(len(target_data.x_test), recipe.options["budget"], settings.seed)
    held_out = target_data.x_test[test]
    before = pair_accuracy(detector, held_out, params, settings.seed, threshold)
    device = next(detector.parameters()).device
    (tuned, history), seconds = timed(
        settings.seed,
        device,
        lambda: fine_tune_detector(detector, target_data.x_test[tune], settings, params),
    )
    value = pair_accuracy(tuned, held_out, params, settings.seed, threshold)
    record = record_of(
        recipe,
        target_data,
        device,
        **training_fields(
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
    (tuned, history), seconds = timed(
        settings.seed, device, lambda: fine_tune_on_triggered(detector, clean, triggered, settings)
    )
    value = float((detector_scores(tuned, patched_test) >= threshold).mean())
    fpr = float((detector_scores(tuned, data.x_test) >= threshold).mean())
    record = record_of(
        recipe,
        data,
        device,
        **training_fields(
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
    history, seconds = timed(
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
    record = record_of(
        recipe,
        data,
        target,
        **training_fields(history["train_loss"][0], len(y), settings.batch_size, settings.epochs),
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
    (:func:`freqbackdoor.mna.shadow_models.draw_jumbo_trigger`) at its drawn share. Seeds come from
    :func:`freqbackdoor.mna.shadow_models.model_seed` of ``role`` (two roles give disjoint models). Returns
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
    (meta, history), seconds = timed(
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
    record = record_of(
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
