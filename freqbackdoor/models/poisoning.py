"""Poisoned models (Section 5.3, Appendix G): poison a training set, train, measure the attack.

The attacker stamps the trigger on a seeded ``share`` of the training images and relabels them
with the trigger's target label (the paper poisons CIFAR-10 at 0.13 and GTSRB at 0.1). The
poisoned rows are drawn from the whole training set, so some already carried the target label:
they get the trigger and keep their label, as in the usual all-to-one poisoning, and the share
is exactly ``round(share * N)`` rows of the set the model sees, whatever their classes.

The attack is judged on the clean test images (clean accuracy) and on the same images with the
trigger (attack success rate, ASR: the share of triggered images predicted as the target). Test
images whose true label is the target are left out of the ASR, since predicting the target for
them is correct whether or not the backdoor works. Both are tracked after every epoch (the paper
reports an ASR above 90% after one epoch) through ``train_classifier``'s ``epoch_callback``.

Section 5.4 puts the detector in front of the model in two ways, both covered here: rejecting
flagged inputs at inference (:func:`asr_with_rejection`) and removing flagged samples from the
training set before training (:func:`filter_training_set`, then ``keep_rows`` of
:func:`train_poisoned_model`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..errors import ConfigError, DataError
from ..frequency.dct import resolve_device
from ..triggers.registry import Trigger
from .prediction import model_device, predict_logits
from .training import TrainSettings, train_classifier

_log = logging.getLogger(__name__)

POISON_STREAM = 161803  # the poisoned rows' random stream, apart from every other draw


def poison_indices(n: int, share: float, seed: int) -> np.ndarray:
    """Sorted, distinct rows of an ``n``-image training set to poison: exactly ``round(share * n)``.

    Drawn without replacement from ``np.random.default_rng([seed, POISON_STREAM])``, so the same
    seed gives the same rows. ``ConfigError`` for a share outside (0, 1) or one that rounds to
    no row.
    """
    share = float(share)
    if not 0.0 < share < 1.0:
        raise ConfigError(f"poison share must lie strictly between 0 and 1, got {share}")
    if n < 1:
        raise DataError(f"cannot poison a training set of {n} images")
    count = int(round(share * n))
    if count == 0:
        raise ConfigError(f"poison share {share} of {n} training images rounds to no image")
    rng = np.random.default_rng([seed, POISON_STREAM])
    return np.sort(rng.choice(n, size=count, replace=False))


def check_images(images: np.ndarray, name: str) -> None:
    """``DataError`` naming ``name`` unless ``images`` are uint8 ``N x H x W x 3``."""
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise DataError(
            f"{name}: expected uint8 images of shape N x H x W x 3, got {images.dtype} "
            f"{images.shape}"
        )


def check_labels(labels: np.ndarray, n: int, name: str) -> np.ndarray:
    """``labels`` as an array, or ``DataError`` naming ``name`` unless they are ``n`` integers."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != n:
        raise DataError(f"{name}: labels of shape {labels.shape} do not match {n} images")
    return labels.astype(np.int64, copy=False)


def poison_training_set(
    x: np.ndarray, y: np.ndarray, trigger: Trigger, share: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(x_poisoned, y_poisoned, rows)``: copies with the trigger and target label on ``rows``.

    ``rows`` (:func:`poison_indices`) come from the whole training set, target class included
    (those rows get the trigger and keep their label). Every other row is left as it was.
    """
    x = np.asarray(x)
    check_images(x, "training images")
    labels = check_labels(y, x.shape[0], "training set")
    rows = poison_indices(x.shape[0], share, seed)
    x_poisoned = np.array(x, copy=True)
    x_poisoned[rows] = trigger.apply(x[rows])
    y_poisoned = np.array(labels, dtype=np.int64, copy=True)
    y_poisoned[rows] = int(trigger.target_label)
    return x_poisoned, y_poisoned, rows


def _predicted_labels(predictions: np.ndarray) -> np.ndarray:
    """Labels from predicted labels (1-D) or logits/probabilities (2-D, arg-max taken)."""
    predictions = np.asarray(predictions)
    if predictions.ndim == 2:
        return predictions.argmax(1)
    if predictions.ndim != 1:
        raise DataError(
            f"predictions must be labels (N) or logits (N x classes), got shape {predictions.shape}"
        )
    return predictions


def _non_target(true_labels: np.ndarray, n: int, target: int) -> np.ndarray:
    """Mask of the images whose true label is not ``target``; DataError when there is none."""
    labels = check_labels(true_labels, n, "attack success rate")
    keep = labels != int(target)
    if not keep.any():
        raise DataError(
            f"no triggered test image has a true label other than the target {int(target)} "
            f"(all {n} are of the target class, or there are none): the attack success rate "
            "is undefined"
        )
    return keep


def attack_success_rate(predictions: np.ndarray, true_labels: np.ndarray, target: int) -> float:
    """Share of triggered test images of a non-target class that are predicted as ``target``.

    ``predictions`` are the model's labels (or logits) for the triggered images, ``true_labels``
    their clean labels. ``DataError`` when every image is of the target class.
    """
    predicted = _predicted_labels(predictions)
    keep = _non_target(true_labels, predicted.shape[0], target)
    return float((predicted[keep] == int(target)).mean())


def asr_with_rejection(
    predictions: np.ndarray, flagged: np.ndarray, true_labels: np.ndarray, target: int
) -> float:
    """The ASR when a detector rejects the inputs it flags before the model sees them.

    An attack on a non-target triggered image succeeds only when the image is not ``flagged``
    and the model predicts ``target``; the denominator stays every non-target triggered image,
    so a rejected image counts as a failed attack.
    """
    predicted = _predicted_labels(predictions)
    flagged = np.asarray(flagged, dtype=bool)
    if flagged.shape != predicted.shape:
        raise DataError(
            f"detector flags of shape {flagged.shape} for {predicted.shape[0]} predictions"
        )
    keep = _non_target(true_labels, predicted.shape[0], target)
    success = (predicted == int(target)) & ~flagged
    return float(success[keep].mean())


def epoch_metrics_callback(
    x_test: np.ndarray,
    y_test: np.ndarray,
    x_triggered: np.ndarray,
    target: int,
    device: str | torch.device | None = None,
    batch_size: int = 512,
) -> Callable[[int, nn.Module], dict[str, float]]:
    """An ``epoch_callback`` for ``train_classifier``: ``clean_acc`` and ``asr`` after each epoch.

    ``x_triggered`` is ``x_test`` with the trigger (row for row, so ``y_test`` are its true
    labels); the ASR leaves out the images of the target class. Predictions run in fp32 with
    :func:`freqbackdoor.models.prediction.predict_logits` on the model's device; ``device``, when given,
    must be the training device (``"auto"`` allowed): moving the model mid-training would
    strand the optimiser's state, so a mismatch raises ``ConfigError``.
    """
    x_test, x_triggered = np.asarray(x_test), np.asarray(x_triggered)
    check_images(x_test, "clean test images")
    check_images(x_triggered, "triggered test images")
    labels = check_labels(y_test, x_test.shape[0], "clean test images")
    if x_triggered.shape != x_test.shape:
        raise DataError(
            f"triggered test images {x_triggered.shape} are not the clean test images "
            f"{x_test.shape} with a trigger"
        )
    keep = _non_target(labels, labels.shape[0], target)
    triggered = x_triggered[keep]
    expected = resolve_device(device) if device is not None else None

    def callback(epoch: int, model: nn.Module) -> dict[str, float]:
        if expected is not None and model_device(model).type != expected.type:
            raise ConfigError(
                f"epoch metrics for device {expected} but the model trains on {model_device(model)}"
            )
        clean_pred = predict_logits(model, x_test, batch_size=batch_size).argmax(1)
        triggered_pred = predict_logits(model, triggered, batch_size=batch_size).argmax(1)
        return {
            "clean_acc": float((clean_pred == labels).mean()),
            "asr": float((triggered_pred == int(target)).mean()),
        }

    return callback


def train_poisoned_model(
    model: nn.Module,
    x_train: np.ndarray,
    y_train: np.ndarray,
    trigger: Trigger,
    share: float,
    settings: TrainSettings,
    x_test: np.ndarray,
    y_test: np.ndarray,
    x_test_triggered: np.ndarray,
    device: str | torch.device = "auto",
    seed: int = 0,
    keep_rows: np.ndarray | None = None,
    progress: Callable | None = None,
    log: logging.Logger | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Poison the training set with ``trigger`` at ``share``, train ``model`` on it in place.

    ``keep_rows`` (a bool mask over the poisoned training set, e.g. from
    :func:`filter_training_set` on a detector's scores of it) trains on the kept rows only,
    as when a detector cleans the training set first. The validation split that picks the kept
    epoch is held out of the (kept) poisoned set, poisoned rows included: the trainer cannot
    tell them apart.

    Returns ``(history, info)``: ``history`` is :func:`freqbackdoor.models.training.train_classifier`'s
    (``train_acc`` on the poisoned batches, ``val_acc``) plus per-epoch ``clean_acc`` and
    ``asr`` on the test images; ``info`` holds ``poisoned_rows`` (poisoned rows trained on,
    validation split included), ``poisoned_drawn`` (before filtering), ``train_size`` (images
    trained on, validation split included), ``share``, ``seed``, ``target_label``, ``trigger``,
    ``best_epoch`` and the final ``clean_acc`` and ``asr`` of the kept weights, recomputed after
    training.
    """
    log = log or _log
    x_train = np.asarray(x_train)
    x_poisoned, y_poisoned, rows = poison_training_set(x_train, y_train, trigger, share, seed)
    poisoned = np.zeros(x_train.shape[0], dtype=bool)
    poisoned[rows] = True
    if keep_rows is not None:
        keep = np.asarray(keep_rows)
        if keep.dtype != bool or keep.shape != (x_train.shape[0],):
            raise DataError(
                f"keep_rows must be a bool mask over the {x_train.shape[0]} training images, "
                f"got {keep.dtype} {keep.shape}"
            )
        if not keep.any():
            raise DataError("keep_rows keeps no training image")
        x_poisoned, y_poisoned, poisoned = x_poisoned[keep], y_poisoned[keep], poisoned[keep]
    target = int(trigger.target_label)
    callback = epoch_metrics_callback(x_test, y_test, x_test_triggered, target, device)
    log.info(
        "training on %d images, %d of them poisoned with %s (target %d)",
        x_poisoned.shape[0],
        int(poisoned.sum()),
        trigger.name,
        target,
    )
    history = train_classifier(
        model,
        x_poisoned,
        y_poisoned,
        settings,
        device=device,
        progress=progress,
        log=log,
        epoch_callback=callback,
    )
    final = callback(history["best_epoch"], model)
    info = {
        "trigger": trigger.name,
        "target_label": target,
        "share": float(share),
        "seed": int(seed),
        "poisoned_drawn": int(rows.size),
        "poisoned_rows": int(poisoned.sum()),
        "train_size": int(x_poisoned.shape[0]),
        "best_epoch": int(history["best_epoch"]),
        "clean_acc": final["clean_acc"],
        "asr": final["asr"],
    }
    log.info("poisoned model: clean acc %.4f, ASR %.4f", info["clean_acc"], info["asr"])
    return history, info


def filter_training_set(scores: np.ndarray, threshold: float) -> np.ndarray:
    """Bool keep mask over a training set: the samples a detector scores below ``threshold``.

    A sample is flagged (and removed) when its score is ``>= threshold``, as in
    :func:`freqbackdoor.metrics.detection_metrics`.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1:
        raise DataError(f"detector scores must be one per training image, got {scores.shape}")
    if not np.isfinite(scores).all():
        raise DataError(f"{int((~np.isfinite(scores)).sum())} detector score(s) are not finite")
    return scores < float(threshold)


def filter_summary(keep: np.ndarray, poisoned_rows: np.ndarray) -> dict[str, int | float]:
    """What a training-set filter did: poisoned rows removed, clean rows lost, and what is left.

    ``keep`` is :func:`filter_training_set`'s mask, ``poisoned_rows`` the poisoned row indices
    (:func:`poison_indices`). ``removed_poisoned_share`` is the filter's detection rate on the
    poisoned rows, ``lost_clean_share`` its false-positive rate on the clean ones (NaN when
    there are none).
    """
    keep = np.asarray(keep, dtype=bool)
    rows = np.asarray(poisoned_rows, dtype=np.int64)
    if rows.size and (rows.min() < 0 or rows.max() >= keep.shape[0]):
        raise DataError(
            f"poisoned rows span [{rows.min()}, {rows.max()}] but the mask covers "
            f"{keep.shape[0]} images"
        )
    poisoned = np.zeros(keep.shape[0], dtype=bool)
    poisoned[rows] = True
    n_poisoned, n_clean = int(poisoned.sum()), int((~poisoned).sum())
    removed_poisoned = int((poisoned & ~keep).sum())
    lost_clean = int((~poisoned & ~keep).sum())
    return {
        "images": int(keep.shape[0]),
        "poisoned": n_poisoned,
        "removed_poisoned": removed_poisoned,
        "kept_poisoned": n_poisoned - removed_poisoned,
        "lost_clean": lost_clean,
        "kept_clean": n_clean - lost_clean,
        "kept": int(keep.sum()),
        "removed_poisoned_share": removed_poisoned / n_poisoned if n_poisoned else float("nan"),
        "lost_clean_share": lost_clean / n_clean if n_clean else float("nan"),
    }


def history_frame(history: Mapping[str, Any]) -> pd.DataFrame:
    """The per-epoch part of a poisoned model's history, one row per epoch (for the ASR curve)."""
    keys = ("epoch", "train_loss", "train_acc", "val_acc", "clean_acc", "asr")
    return pd.DataFrame({key: list(history[key]) for key in keys if key in history})
