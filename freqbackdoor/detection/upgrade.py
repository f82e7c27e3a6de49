"""Section 5.4: upgrading the detector with a smooth trigger, and why it generalises (Figure 4).

The paper fine-tunes the frequency detector for one epoch on 20,000 training images, half clean
and half patched with the smooth trigger of Algorithm 1, and finds it then detects unseen
low-pass filtered triggers too. To explain this it looks at the detector's penultimate space:
the clean sample nearest the last layer's benign-class weight vector is the clean cluster's
"representative", and the mean Euclidean distance from it to each trigger's patched samples
orders the triggers; the smooth trigger's samples lie nearest the clean cluster, so training on
them moves the boundary past the other filtered triggers (they act as support vectors).

The paper says the distance is between the weights and the clean samples' "logits"; a weight
row of the last layer has the penultimate layer's width, not the logits' (2), so we compare it
with the penultimate activations (``body.features``), the only reading under which the
comparison is defined. :func:`project_2d` gives a 2D view of the clusters for the figure.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.decomposition import PCA

from ..errors import ConfigError, DataError
from ..triggers.registry import Trigger
from .detector import Detector, check_detector_images, input_batches
from .transfer import FineTuneSettings, fine_tune_on_pairs

_log = logging.getLogger(__name__)

UPGRADE_STREAM = 314159  # the fine-tuning set's random stream, apart from every other draw
BOOT_CHUNK = 2_000_000  # distances resampled at once in the bootstrap (bounds its memory)


def fine_tune_on_triggered(
    model: Detector,
    clean: np.ndarray,
    triggered: np.ndarray,
    settings: FineTuneSettings,
    progress: Callable | None = None,
    log: logging.Logger | None = None,
) -> tuple[Detector, dict[str, Any]]:
    """A copy of ``model`` trained further on ``clean`` (label 0) and ``triggered`` (label 1).

    As :func:`freqbackdoor.detection.transfer.fine_tune_detector`, but the positives are given: images
    patched with a known trigger (the paper: its smooth trigger) instead of random
    manipulations. The two uint8 arrays have equal length (the paper: 10,000 each); their rows
    need not be the same images. The standardisation buffers stay the detector's and the input
    model is left untouched. Returns the tuned model (eval mode, on the input's device) and the
    history: per-epoch ``train_loss`` and ``train_acc``, ``samples``, ``timing``.
    """
    return fine_tune_on_pairs(
        model, clean, triggered, settings, "smooth.fine_tune", progress, log, "triggered"
    )


def upgrade_rows(n: int, samples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(clean_rows, patched_rows)``: two disjoint sorted sets of ``samples // 2`` training rows.

    One seeded draw of ``samples`` distinct rows; its first half stays clean, its second half
    gets the trigger. ``ConfigError`` for an odd or non-positive ``samples``, ``DataError``
    when the training set has fewer than ``samples`` images.
    """
    if isinstance(samples, bool) or not isinstance(samples, int | np.integer) or samples < 2:
        raise ConfigError(f"upgrade samples must be an even integer >= 2, got {samples!r}")
    if samples % 2:
        raise ConfigError(f"upgrade samples must be even (half clean, half patched), got {samples}")
    if samples > n:
        raise DataError(
            f"the upgrade set needs {samples} distinct training images ({samples // 2} clean + "
            f"{samples // 2} patched) but the training set has {n}"
        )
    draw = np.random.default_rng([seed, UPGRADE_STREAM]).choice(n, size=samples, replace=False)
    half = samples // 2
    return np.sort(draw[:half]), np.sort(draw[half:])


def upgrade_set(
    x_train: np.ndarray, trigger: Trigger, samples: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The paper's fine-tuning set: ``samples`` training images, half clean, half patched.

    Clean and patched images come from disjoint rows (:func:`upgrade_rows`), so the detector
    never sees one image both ways and cannot learn the trigger as a difference of twins.
    Returns ``(clean, triggered)`` uint8 arrays of ``samples // 2`` images each.
    """
    x_train = np.asarray(x_train)
    check_detector_images(x_train, "x_train")
    clean_rows, patched_rows = upgrade_rows(x_train.shape[0], samples, seed)
    return np.asarray(x_train[clean_rows]), trigger.apply(np.asarray(x_train[patched_rows]))


@torch.no_grad()
def detector_features(
    model: Detector, inputs: np.ndarray, transformed: bool = False, batch_size: int = 256
) -> np.ndarray:
    """float32 ``N x D`` penultimate activations of the detector: ``body.features`` of the input.

    ``inputs`` are uint8 images (``transformed=False``, put into the model's domain here) or,
    for a DCT detector, DCT coefficients ``N x H x W x 3`` as the DCT cache stores them. Runs
    on the model's device in eval mode and in fp32 (distances then agree across devices); the
    model's mode is restored afterwards.
    """
    inputs = np.asarray(inputs)
    if not transformed and inputs.dtype != np.uint8:
        raise DataError(f"expected uint8 images (or transformed=True), got {inputs.dtype}")
    target = next(model.parameters()).device
    was_training = model.training
    model.eval()
    outputs = []
    try:
        for batch in input_batches(model, inputs, transformed, batch_size, target):
            features = model.body.features((batch - model.mean) / model.std)
            outputs.append(features.float().flatten(1).cpu().numpy())
    finally:
        model.train(was_training)
    if not outputs:
        return np.zeros((0, model.body.classifier.in_features), dtype=np.float32)
    return np.concatenate(outputs)


def _features(array: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(array, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] == 0:
        raise DataError(f"{name}: expected a non-empty N x D feature array, got {array.shape}")
    return array


def clean_representative(model: Detector, clean_features: np.ndarray) -> int:
    """Row of the clean sample whose features lie nearest the benign class's last-layer weights.

    The paper's representative of the clean cluster: the Euclidean distance from
    ``model.body.classifier.weight[0]`` (the benign logit's weight vector) to every clean
    sample's penultimate features (:func:`detector_features`); ties go to the first row.
    """
    features = _features(clean_features, "clean features")
    weight = model.body.classifier.weight[0].detach().double().cpu().numpy()
    if features.shape[1] != weight.shape[0]:
        raise DataError(
            f"clean features have {features.shape[1]} dimensions but the detector's last layer "
            f"reads {weight.shape[0]}"
        )
    return int(np.argmin(np.linalg.norm(features - weight, axis=1)))


def _bootstrap_means(values: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Means of ``n_boot`` resamples of ``values`` (with replacement), in bounded batches."""
    means = np.empty(n_boot)
    batch = max(1, BOOT_CHUNK // values.size)
    for start in range(0, n_boot, batch):
        size = min(batch, n_boot - start)
        means[start : start + size] = values[
            rng.integers(0, values.size, (size, values.size))
        ].mean(1)
    return means


def cluster_distances(
    representative: np.ndarray,
    features_by_trigger: Mapping[str, np.ndarray],
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Mean Euclidean distance from the clean representative to each trigger's samples.

    ``representative`` is one feature vector (``D``; e.g. the clean features' row picked by
    :func:`clean_representative`), each ``features_by_trigger[name]`` that trigger's patched
    samples (``N x D``). The interval is a percentile bootstrap of the mean over the samples
    (``n_boot`` resamples, each trigger from its own ``seed`` stream, so adding a trigger does
    not move the others). Columns ``trigger, distance, distance_low, distance_high, samples``,
    nearest first.
    """
    point = np.asarray(representative, dtype=np.float64).reshape(-1)
    if int(n_boot) != n_boot or n_boot < 1:
        raise ConfigError(f"n_boot must be a positive integer, got {n_boot}")
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence must lie strictly between 0 and 1, got {confidence}")
    if not features_by_trigger:
        raise DataError("no trigger's features to measure distances to")
    tail = (1.0 - confidence) / 2.0
    rows = []
    for name, array in features_by_trigger.items():
        features = _features(array, f"features of {name}")
        if features.shape[1] != point.shape[0]:
            raise DataError(
                f"features of {name} have {features.shape[1]} dimensions, the representative "
                f"{point.shape[0]}"
            )
        distances = np.linalg.norm(features - point, axis=1)
        means = _bootstrap_means(distances, int(n_boot), np.random.default_rng(seed))
        low, high = np.quantile(means, [tail, 1.0 - tail])
        rows.append(
            {
                "trigger": name,
                "distance": float(distances.mean()),
                "distance_low": float(low),
                "distance_high": float(high),
                "samples": int(distances.size),
            }
        )
    frame = pd.DataFrame.from_records(rows)
    return frame.sort_values("distance", kind="stable", ignore_index=True)


def project_2d(features_by_group: Mapping[str, np.ndarray], seed: int = 0) -> pd.DataFrame:
    """Every group's features on the first two principal axes of all groups together.

    One PCA (scikit-learn, ``random_state=seed``) is fitted on the union, so the groups share
    axes and their clusters can be compared in one plot. Columns ``group, x, y``, the groups'
    rows in the order given.
    """
    if not features_by_group:
        raise DataError("no features to project")
    arrays = {name: _features(a, f"features of {name}") for name, a in features_by_group.items()}
    widths = {name: a.shape[1] for name, a in arrays.items()}
    if len(set(widths.values())) != 1:
        raise DataError(f"feature groups differ in width: {widths}")
    stacked = np.concatenate(list(arrays.values()))
    if min(stacked.shape) < 2:
        raise DataError(
            f"a 2D projection needs at least 2 samples of at least 2 features, got {stacked.shape}"
        )
    points = PCA(n_components=2, random_state=seed).fit_transform(stacked)
    groups = np.concatenate([np.full(a.shape[0], name, dtype=object) for name, a in arrays.items()])
    return pd.DataFrame({"group": groups, "x": points[:, 0], "y": points[:, 1]})
