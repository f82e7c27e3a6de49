"""Poisoned training sets, attack success rates and poisoned-model training (Section 5.3)."""

import numpy as np
import pytest
import torch
from torch import nn

from freqbackdoor.errors import ConfigError, DataError
from freqbackdoor.models.poisoning import (
    asr_with_rejection,
    attack_success_rate,
    epoch_metrics_callback,
    filter_summary,
    filter_training_set,
    history_frame,
    poison_indices,
    poison_training_set,
    train_poisoned_model,
)
from freqbackdoor.models.training import TrainSettings, train_classifier
from freqbackdoor.triggers.registry import build_trigger

SIZE = 16
CLASSES = 4


def _tinted(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Four separable classes over noise: a red, green or blue tint (classes 0-2) or none (3)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, n).astype(np.int64)
    images = rng.integers(0, 100, (n, SIZE, SIZE, 3))
    for cls in range(3):
        images[labels == cls, ..., cls] += 120
    return images.astype(np.uint8), labels


def _corner(target: int = 0):
    """A BadNets-like white 4 px square in the bottom-right corner of a 16 px image."""
    return build_trigger("badnets", SIZE, SIZE, {"size": 8, "margin": 0, "target_label": target})


class TinyCNN(nn.Module):
    def __init__(self, num_classes: int = CLASSES) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten()
        )
        self.classifier = nn.Linear(8 * (SIZE // 2) ** 2, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x))


def _tiny(seed: int = 0) -> TinyCNN:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return TinyCNN()


def test_poison_share_is_exact_and_seeded():
    for n, share in ((1000, 0.13), (50, 0.1), (7, 0.5), (3, 0.2)):
        rows = poison_indices(n, share, seed=0)
        assert rows.size == round(share * n)
        assert np.unique(rows).size == rows.size and np.all(np.diff(rows) > 0)
        assert rows.min() >= 0 and rows.max() < n
    assert np.array_equal(poison_indices(1000, 0.13, 4), poison_indices(1000, 0.13, 4))
    assert not np.array_equal(poison_indices(1000, 0.13, 4), poison_indices(1000, 0.13, 5))


def test_poison_share_errors_name_the_problem():
    for share in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ConfigError, match="strictly between 0 and 1"):
            poison_indices(100, share, 0)
    with pytest.raises(ConfigError, match="rounds to no image"):
        poison_indices(10, 0.01, 0)


def test_poisoned_rows_carry_the_trigger_and_target_label_the_others_are_untouched():
    x, y = _tinted(200, seed=3)
    trigger = _corner(target=2)
    before_x, before_y = x.copy(), y.copy()
    x_p, y_p, rows = poison_training_set(x, y, trigger, 0.13, seed=1)
    assert np.array_equal(x, before_x) and np.array_equal(y, before_y)  # inputs are copied
    assert rows.size == 26
    assert np.array_equal(x_p[rows], trigger.apply(x[rows]))
    assert np.all(x_p[rows][:, -4:, -4:] == 255)
    assert np.all(y_p[rows] == 2)
    others = np.setdiff1d(np.arange(200), rows)
    assert np.array_equal(x_p[others], x[others]) and np.array_equal(y_p[others], y[others])
    # rows come from the whole set: target-class rows can be poisoned too
    assert np.isin(rows, np.flatnonzero(y == 2)).any()


def test_attack_success_rate_leaves_target_class_images_out():
    target = 1
    true = np.array([0, 1, 2, 1, 3, 0])
    predicted = np.array([1, 1, 2, 0, 1, 1])
    # non-target images: rows 0, 2, 4, 5 -> predicted target in rows 0, 4, 5
    assert attack_success_rate(predicted, true, target) == pytest.approx(3 / 4)
    logits = np.eye(4)[predicted]
    assert attack_success_rate(logits, true, target) == pytest.approx(3 / 4)
    assert attack_success_rate(np.zeros(4, int), np.array([1, 2, 3, 0]), 0) == 1.0
    with pytest.raises(DataError, match="target 1"):
        attack_success_rate(np.array([1, 1]), np.array([1, 1]), 1)
    with pytest.raises(DataError, match="do not match"):
        attack_success_rate(np.array([1, 1, 0]), np.array([0, 1]), 1)


def test_asr_with_rejection_counts_rejected_images_as_failed_attacks():
    target = 0
    true = np.array([0, 1, 2, 3, 1])
    predicted = np.array([0, 0, 0, 3, 0])
    flagged = np.array([False, True, False, False, False])
    # non-target: rows 1-4; predicted target and not flagged: rows 2 and 4
    assert asr_with_rejection(predicted, flagged, true, target) == pytest.approx(2 / 4)
    assert asr_with_rejection(predicted, np.zeros(5, bool), true, target) == pytest.approx(3 / 4)
    assert asr_with_rejection(predicted, np.ones(5, bool), true, target) == 0.0
    with pytest.raises(DataError, match="flags"):
        asr_with_rejection(predicted, flagged[:3], true, target)
    with pytest.raises(DataError, match="undefined"):
        asr_with_rejection(predicted, flagged, np.zeros(5, int), target)


def test_epoch_callback_values_land_in_the_history():
    x, y = _tinted(64, seed=0)
    calls = []

    def callback(epoch, model):
        calls.append((epoch, model.training))
        return {"double_epoch": 2 * epoch, "constant": 0.5}

    settings = TrainSettings(epochs=3, batch_size=32, val_fraction=0.25, seed=0)
    history = train_classifier(_tiny(), x, y, settings, "cpu", epoch_callback=callback)
    assert calls == [(1, False), (2, False), (3, False)]
    assert history["double_epoch"] == [2.0, 4.0, 6.0]
    assert history["constant"] == [0.5, 0.5, 0.5]
    with pytest.raises(ConfigError, match="val_acc"):
        train_classifier(_tiny(), x, y, settings, "cpu", epoch_callback=lambda e, m: {"val_acc": 1})


def test_epoch_metrics_callback_measures_clean_accuracy_and_asr():
    x, y = _tinted(40, seed=2)
    trigger = _corner(target=3)

    class Constant(nn.Module):  # always predicts class 3
        def __init__(self):
            super().__init__()
            self.bias = nn.Parameter(torch.tensor([0.0, 0.0, 0.0, 1.0]))

        def forward(self, x):
            return self.bias.expand(x.shape[0], 4)

    metrics = epoch_metrics_callback(x, y, trigger.apply(x), target=3, device="cpu")(1, Constant())
    assert metrics["clean_acc"] == pytest.approx((y == 3).mean())
    assert metrics["asr"] == 1.0
    with pytest.raises(DataError, match="with a trigger"):
        epoch_metrics_callback(x, y, trigger.apply(x[:10]), target=3)
    with pytest.raises(DataError, match="target 3"):
        epoch_metrics_callback(x, np.full(40, 3), trigger.apply(x), target=3)


def test_a_poisoned_model_learns_the_corner_trigger():
    x, y = _tinted(400, seed=0)
    x_test, y_test = _tinted(200, seed=1)
    trigger = _corner(target=0)
    settings = TrainSettings(epochs=4, batch_size=32, lr=3e-3, val_fraction=0.1, seed=0)
    model = _tiny()
    history, info = train_poisoned_model(
        model, x, y, trigger, 0.2, settings, x_test, y_test, trigger.apply(x_test), "cpu", seed=0
    )
    assert info["poisoned_rows"] == info["poisoned_drawn"] == 80 and info["train_size"] == 400
    assert len(history["asr"]) == len(history["clean_acc"]) == 4
    assert info["asr"] > 0.8  # a clean model predicts the target for ~0 non-target images
    assert info["clean_acc"] > 0.8
    assert info["asr"] == pytest.approx(history["asr"][info["best_epoch"] - 1])
    frame = history_frame(history)
    assert list(frame.columns) == [
        "epoch",
        "train_loss",
        "train_acc",
        "val_acc",
        "clean_acc",
        "asr",
    ]

    # A filter that removes every poisoned row leaves a clean model: no backdoor.
    rows = poison_training_set(x, y, trigger, 0.2, seed=0)[2]
    scores = np.zeros(400)
    scores[rows] = 1.0
    keep = filter_training_set(scores, 0.5)
    _, cleaned = train_poisoned_model(
        _tiny(),
        x,
        y,
        trigger,
        0.2,
        TrainSettings(epochs=2, batch_size=32, lr=3e-3, val_fraction=0.1, seed=0),
        x_test,
        y_test,
        trigger.apply(x_test),
        "cpu",
        seed=0,
        keep_rows=keep,
    )
    assert cleaned["poisoned_rows"] == 0 and cleaned["train_size"] == 320
    assert cleaned["asr"] < 0.2 and cleaned["clean_acc"] > 0.8


def test_filter_training_set_and_its_summary():
    scores = np.array([0.1, 0.9, 0.5, 0.2, 0.7, 0.0])
    keep = filter_training_set(scores, 0.5)
    assert keep.tolist() == [True, False, False, True, False, True]
    summary = filter_summary(keep, np.array([1, 3, 4]))
    assert summary["removed_poisoned"] == 2 and summary["kept_poisoned"] == 1
    assert summary["lost_clean"] == 1 and summary["kept_clean"] == 2
    assert summary["kept"] == 3 and summary["images"] == 6
    assert summary["removed_poisoned_share"] == pytest.approx(2 / 3)
    assert summary["lost_clean_share"] == pytest.approx(1 / 3)
    with pytest.raises(DataError, match="not finite"):
        filter_training_set(np.array([0.1, np.nan]), 0.5)
    with pytest.raises(DataError, match="mask covers 6"):
        filter_summary(keep, np.array([6]))
    x, y = _tinted(20, seed=0)
    with pytest.raises(DataError, match="bool mask over the 20"):
        train_poisoned_model(
            _tiny(),
            x,
            y,
            _corner(),
            0.1,
            TrainSettings(epochs=1),
            x,
            y,
            x,
            "cpu",
            keep_rows=np.ones(19, bool),
        )
