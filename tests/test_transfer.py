"""Section 4.3 transfer: fine-tuning split, fine-tuning itself, config checks and Tables 2-4."""

import numpy as np
import pandas as pd
import pytest
import torch

from freqbackdoor.detection.detector import (
    Detector,
    DetectorSettings,
    evaluate_attacks,
    train_detector,
)
from freqbackdoor.detection.transfer import (
    FineTuneSettings,
    budget_frame,
    check_disjoint,
    check_transfer_config,
    combine_training_sets,
    fine_tune_detector,
    fine_tune_split,
    source_datasets,
    transfer_frame,
    transfer_long,
    transfer_markdown,
    transfer_metrics,
)
from freqbackdoor.errors import ConfigError, DataError
from freqbackdoor.frequency.dct import dct2
from freqbackdoor.metrics import compare, load_paper_numbers, paper_long


def _images(n, size=16, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(60, 200, size=(n, 1, 1, 3))
    noise = rng.integers(-20, 20, size=(n, size, size, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def test_fine_tune_rows_never_reach_the_test_set():
    for budget in (0, 1, 10, 99):
        tune, test = fine_tune_split(100, budget, seed=0, repeat=0)
        assert tune.size == budget and test.size == 100 - budget
        assert np.intersect1d(tune, test).size == 0
        assert np.array_equal(np.union1d(tune, test), np.arange(100))


def test_fine_tune_split_is_seeded_and_nested():
    a_tune, a_test = fine_tune_split(500, 30, seed=4, repeat=1)
    b_tune, b_test = fine_tune_split(500, 30, seed=4, repeat=1)
    assert np.array_equal(a_tune, b_tune) and np.array_equal(a_test, b_test)
    other, _ = fine_tune_split(500, 30, seed=4, repeat=2)
    assert not np.array_equal(a_tune, other)
    larger, _ = fine_tune_split(500, 100, seed=4, repeat=1)
    assert np.isin(a_tune, larger).all()  # a larger budget keeps the smaller one's images


def test_split_errors_name_the_problem():
    with pytest.raises(ConfigError, match="budget 100 leaves none of the target's 100"):
        fine_tune_split(100, 100, seed=0)
    with pytest.raises(DataError, match="also test images"):
        check_disjoint(np.array([1, 5]), np.array([2, 5, 7]))
    with pytest.raises(DataError, match="do not partition"):
        check_disjoint(np.array([1]), np.array([2, 3]), n_test=5)


def _detector(size=16, seed=0):
    torch.manual_seed(seed)
    return Detector(2, size, "cnn3_kmax32", "dct").eval()


def test_fine_tuning_changes_the_weights_is_seeded_and_leaves_the_source_alone():
    model = _detector()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    images = _images(12)
    settings = FineTuneSettings(epochs=2, batch_size=8, lr=1e-3, seed=5)
    tuned, history = fine_tune_detector(model, images, settings)
    again, _ = fine_tune_detector(model, images, settings)
    other, _ = fine_tune_detector(model, images, FineTuneSettings(2, 8, 1e-3, seed=6))
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])  # the source detector is untouched
    weights = [k for k in before if k.endswith("weight")]
    assert any(not torch.equal(tuned.state_dict()[k], before[k]) for k in weights)
    assert all(torch.equal(tuned.state_dict()[k], again.state_dict()[k]) for k in before)
    assert any(not torch.equal(tuned.state_dict()[k], other.state_dict()[k]) for k in weights)
    assert torch.equal(tuned.mean, model.mean)  # standardisation stays the source's
    assert history["samples"] == 24 and len(history["train_loss"]) == 2
    assert not tuned.training


def test_fine_tuning_checks_its_inputs():
    with pytest.raises(DataError, match="16 px inputs.*32 px"):
        fine_tune_detector(_detector(), _images(4, size=32), FineTuneSettings(epochs=1))
    with pytest.raises(ConfigError, match="transfer.fine_tune: unknown key.*epoch_count"):
        FineTuneSettings.from_config({"epochs": 1, "epoch_count": 2})
    with pytest.raises(ConfigError, match="transfer.fine_tune: lr must be positive"):
        FineTuneSettings(epochs=1, lr=0.0)


def test_fine_tuning_on_the_target_lowers_false_positives_there():
    """A detector trained on dark images flags bright target images; tuning on 40 fixes that."""
    rng = np.random.default_rng(1)
    source = rng.integers(0, 80, size=(300, 16, 16, 3)).astype(np.uint8)
    target = rng.integers(150, 255, size=(240, 16, 16, 3)).astype(np.uint8)
    settings = DetectorSettings("cnn3_kmax32", epochs=2, batch_size=32, lr=3e-3, val_fraction=0)
    model, _ = train_detector(source, settings, "dct", device="cpu")
    tune, test = fine_tune_split(len(target), 40, seed=0)
    badnets = target.copy()
    badnets[:, 12:15, 12:15] = 255 - badnets[:, 12:15, 12:15]
    clean_dct, triggered = dct2(target), {"badnets": dct2(badnets)}
    raw, _ = transfer_metrics(model, clean_dct, triggered, test, 0.5, n_boot=100)
    tuned_model, _ = fine_tune_detector(
        model, target[tune], FineTuneSettings(epochs=15, batch_size=16, lr=1e-3)
    )
    tuned, scores = transfer_metrics(tuned_model, clean_dct, triggered, test, 0.5, n_boot=100)
    assert scores["clean"].shape == (test.size,)
    assert tuned.fpr.iloc[0] < raw.fpr.iloc[0]


def test_sources_and_config_checks_name_the_key():
    datasets = {
        "a": {"size": 32},
        "b": {"size": 32},
        "big": {"size": 224},
        "t": {"size": 32, "test_fraction": 1.0},
    }
    assert source_datasets("a+b", list(datasets)) == ["a", "b"]
    with pytest.raises(ConfigError, match="'c' in source 'a\\+c'"):
        source_datasets("a+c", list(datasets))

    def config(**table):
        return {"tables": {"table2": table}, "budget_figure": {"budgets": []}}

    check_transfer_config(config(target="t", columns=[{"source": "a+b", "tune": True}]), datasets)
    with pytest.raises(ConfigError, match="transfer.tables.table2.target: 'x'"):
        check_transfer_config(config(target="x", columns=[{"source": "a"}]), datasets)
    with pytest.raises(ConfigError, match=r"transfer.tables.table2.columns\[1\].source: t is test"):
        check_transfer_config(
            config(target="a", columns=[{"source": "b"}, {"source": "t"}]), datasets
        )
    with pytest.raises(ConfigError, match=r"columns\[0\]: a detector reads images of one size"):
        check_transfer_config(config(target="t", columns=[{"source": "big"}]), datasets)
    figure = {"tables": {}, "budget_figure": {"budgets": [5], "target": "t", "source": "q"}}
    with pytest.raises(ConfigError, match="transfer.budget_figure.source"):
        check_transfer_config(figure, datasets)
    with pytest.raises(DataError, match="one size"):
        combine_training_sets([_images(2, 16), _images(2, 32)], ["a", "big"])
    assert combine_training_sets([_images(2), _images(3)], ["a", "b"]).shape[0] == 5


def _metrics(flagged_clean, flagged, n=10):
    clean = np.r_[np.ones(flagged_clean), np.zeros(n - flagged_clean)]
    triggered = {a: np.r_[np.ones(k), np.zeros(n - k)] for a, k in flagged.items()}
    return evaluate_attacks(clean, triggered, threshold=0.5, n_boot=100)


def test_transfer_table_against_the_paper():
    columns = [
        {"label": "digits32", "key": "gtsrb", "source": "digits32", "tuned": False,
         "metrics": _metrics(0, {"badnets": 9, "blend": 10})},
        {"label": "photos32", "key": "cifar10", "source": "photos32", "tuned": False,
         "metrics": _metrics(6, {"badnets": 10, "blend": 10})},
        {"label": "photos32+Tune", "key": "cifar10_tune", "source": "photos32", "tuned": True,
         "metrics": _metrics(1, {"badnets": 9, "blend": 4})},
    ]  # fmt: skip
    frame = transfer_frame(columns)
    raw = frame[(frame.column == "photos32") & (frame.attack == "badnets")].iloc[0]
    assert raw.acc == pytest.approx(70.0) and raw.bdr == pytest.approx(100.0)
    long = transfer_long(frame, "table2", "gtsrb")
    assert len(long) == 12 and set(long.row) == {"gtsrb", "cifar10", "cifar10_tune"}
    paper = paper_long(load_paper_numbers("config/paper_numbers.yaml"), "table2")
    side = compare(long, paper)
    row = side[(side.row == "cifar10") & (side.column == "acc:badnets")].iloc[0]
    assert row.paper == pytest.approx(68.23) and row.reproduced == pytest.approx(70.0)
    text = transfer_markdown(frame, "Table 2", "digits32")
    assert "photos32+Tune ACC" in text and "BadNets" in text and "| photos32 | 70.00" in text


def test_budget_frame_means_over_attacks():
    entries = [
        {"budget": 30, "repeat": 0, "metrics": _metrics(2, {"badnets": 10, "blend": 6})},
        {"budget": 10, "repeat": 0, "metrics": _metrics(5, {"badnets": 10, "blend": 10})},
    ]
    frame = budget_frame(entries)
    assert frame.budget.tolist() == [10, 30]
    assert frame.bdr.tolist() == pytest.approx([100.0, 80.0])
    assert frame.fpr.tolist() == pytest.approx([50.0, 20.0])
    assert isinstance(frame, pd.DataFrame)
