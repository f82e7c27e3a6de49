"""Groups of classifiers trained stacked (vmap) or one by one, their logits and group files.

The exact comparisons use MNTD's network without its dropout (``dropout=0``): with dropout the
two modes draw different masks (each repeats itself for a seed, tested below).
"""

import logging

import numpy as np
import pytest
import torch

from freqbackdoor.errors import ConfigError, DataError
from freqbackdoor.models.classifier import build_model
from freqbackdoor.models.group_files import load_model_group, save_model_group
from freqbackdoor.models.groups import StackedOptimizer, train_model_group
from freqbackdoor.models.prediction import group_logits, predict_logits
from freqbackdoor.models.training import TrainSettings

CLASSES = 3


def _models(
    k: int, classes: int = CLASSES, seed: int = 0, dropout: float = 0.0
) -> list[torch.nn.Module]:
    return [
        build_model("mntd_cifar10", classes, 32, seed=seed + i, dropout=dropout) for i in range(k)
    ]


def _random_sets(k: int, n: int = 40, seed: int = 0) -> tuple[list, list]:
    rng = np.random.default_rng(seed)
    xs = [rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8) for _ in range(k)]
    ys = [rng.integers(0, CLASSES, size=n) for _ in range(k)]
    return xs, ys


def _separable(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Three trivially separable classes: the red, green or blue channel is bright over noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, size=n)
    images = rng.integers(0, 40, size=(n, 32, 32, 3), dtype=np.uint8)
    images[np.arange(n), :, :, labels] += 180
    return images, labels


def _states(models) -> list[dict[str, torch.Tensor]]:
    return [{k: v.detach().clone() for k, v in m.state_dict().items()} for m in models]


@pytest.mark.parametrize(
    ("optimizer", "dtype"),
    [
        ("adam", torch.float64),
        ("sgd", torch.float64),
        ("adadelta", torch.float64),
        ("sgd", torch.float32),
    ],
)
def test_stacked_equals_sequential(optimizer, dtype):
    """Same weights whichever way a group is trained (K=3, own data and seeds, weight decay
    and Keras' kernel L2, which give the kernels their own parameter group).

    In float32 Adam amplifies the rounding differences of a grouped against a plain convolution
    (a near-zero gradient whose sign differs gets a full ``lr`` step), so the strict check runs
    in float64, where they agree to ~1e-15; float32 SGD agrees to ~1e-8.
    """
    xs, ys = _random_sets(3)
    lr = {"adam": 1e-3, "sgd": 0.05, "adadelta": 0.5}[optimizer]
    settings = TrainSettings(
        epochs=2, batch_size=16, lr=lr, optimizer=optimizer, weight_decay=1e-4, kernel_l2=1e-3
    )
    seeds = [5, 6, 7]
    initial = _states(_models(3))
    stacked = [m.to(dtype) for m in _models(3)]
    sequential = [m.to(dtype) for m in _models(3)]
    h_stacked = train_model_group(stacked, xs, ys, settings, seeds, "cpu", stacked=True)
    h_seq = train_model_group(sequential, xs, ys, settings, seeds, "cpu", stacked=False)
    assert (h_stacked["mode"], h_seq["mode"]) == ("stacked", "sequential")
    atol = 1e-10 if dtype == torch.float64 else 1e-5
    for a, b, start in zip(stacked, sequential, initial, strict=True):
        assert not a.training and not b.training
        changed = False
        for key, value in a.state_dict().items():
            assert value.dtype == dtype
            assert torch.allclose(value, b.state_dict()[key], atol=atol, rtol=0), key
            changed |= not torch.allclose(value.float(), start[key])
        assert changed  # training moved the weights
    np.testing.assert_allclose(h_stacked["train_loss"], h_seq["train_loss"], rtol=1e-5)
    np.testing.assert_allclose(h_stacked["train_acc"], h_seq["train_acc"], atol=1e-9)
    for history in (h_stacked, h_seq):
        assert history["models"] == 3 and history["epochs"] == 2
        assert np.shape(history["train_loss"]) == (3, 2) and history["device"] == "cpu"
        assert history["seconds"] > 0 and history["models_per_hour"] > 0
        assert history["samples_per_second"] > 0


def test_stacked_adam_float32_stays_close_to_sequential():
    """The production dtype: Adam's float32 results differ only by rounding-sized steps."""
    xs, ys = _random_sets(2, n=32)
    settings = TrainSettings(epochs=1, batch_size=16, lr=1e-3)
    stacked, sequential = _models(2), _models(2)
    h_stacked = train_model_group(stacked, xs, ys, settings, [1, 2], "cpu", stacked=True)
    h_seq = train_model_group(sequential, xs, ys, settings, [1, 2], "cpu", stacked=False)
    np.testing.assert_allclose(h_stacked["train_loss"], h_seq["train_loss"], rtol=1e-4)
    for a, b in zip(stacked, sequential, strict=True):
        for key, value in a.state_dict().items():
            assert torch.allclose(value, b.state_dict()[key], atol=2 * settings.lr), key


def test_group_learns_a_separable_set():
    sets = [_separable(48, seed) for seed in (1, 2)]
    xs, ys = [s[0] for s in sets], [s[1] for s in sets]
    models = _models(2, seed=1)
    settings = TrainSettings(epochs=3, batch_size=8, lr=1e-3)
    history = train_model_group(models, xs, ys, settings, [0, 1], "cpu")
    for losses in history["train_loss"]:
        assert losses[-1] < 0.5 * losses[0]
    x_test, y_test = _separable(60, 99)
    held_out = (group_logits(models, x_test).argmax(2) == y_test).mean(axis=1)
    assert held_out.min() > 0.6  # chance is 1/3


def test_same_seeds_same_weights_and_seeds_matter():
    xs, ys = _random_sets(2, n=24)
    settings = TrainSettings(epochs=1, batch_size=8)
    runs = []
    for seeds in ([3, 4], [3, 4], [3, 9]):
        models = _models(2)
        train_model_group(models, xs, ys, settings, seeds, "cpu")
        runs.append(_states(models))
    for a, b in zip(runs[0], runs[1], strict=True):
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.equal(runs[0][0][k], runs[2][0][k]) for k in runs[0][0])  # same seed 3
    assert not all(torch.equal(runs[0][1][k], runs[2][1][k]) for k in runs[0][1])


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_unequal_sizes_train_stacked_as_they_would_one_by_one(optimizer):
    """Sets of 20, 13 and 27 rows in batches of 8: 3, 2 and 4 batches an epoch. A model whose
    epoch has run out of batches is skipped by the optimiser (no move, no state change), and
    its last batch is partial while the others' are full, so float64 weights must agree."""
    xs, ys = _random_sets(3, n=27)
    sizes = (20, 13, 27)
    xs = [x[:n] for x, n in zip(xs, sizes, strict=True)]
    ys = [y[:n] for y, n in zip(ys, sizes, strict=True)]
    lr = 1e-3 if optimizer == "adam" else 0.05
    settings = TrainSettings(epochs=2, batch_size=8, lr=lr, optimizer=optimizer, weight_decay=1e-4)
    stacked = [m.double() for m in _models(3)]
    sequential = [m.double() for m in _models(3)]
    h_stacked = train_model_group(stacked, xs, ys, settings, [5, 6, 7], "cpu", stacked=True)
    h_seq = train_model_group(sequential, xs, ys, settings, [5, 6, 7], "cpu", stacked=False)
    assert h_stacked["mode"] == "stacked"
    for a, b in zip(stacked, sequential, strict=True):
        for key, value in a.state_dict().items():
            assert torch.allclose(value, b.state_dict()[key], atol=1e-10, rtol=0), key
    np.testing.assert_allclose(h_stacked["train_loss"], h_seq["train_loss"], rtol=1e-5)
    np.testing.assert_allclose(h_stacked["train_acc"], h_seq["train_acc"], atol=1e-9)


def test_the_stacked_optimizer_leaves_inactive_models_alone():
    weights = torch.nn.Parameter(torch.ones(3, 4, dtype=torch.float64))
    holder = torch.nn.Module()
    holder.stacked = torch.nn.ParameterList([weights])
    template = torch.optim.Adam(holder.parameters(), lr=0.1)
    optimizer = StackedOptimizer(template, 3)
    for active in ([True, False, True], [True, False, False]):
        weights.grad = torch.ones_like(weights)
        optimizer.active = torch.tensor(active)
        optimizer.step()
    state = optimizer.state[weights]
    assert state["step"].tolist() == [2, 0, 1]  # Adam's bias correction counts per model
    assert torch.equal(weights[1], torch.ones(4, dtype=torch.float64))
    assert torch.equal(state["exp_avg"][1], torch.zeros(4, dtype=torch.float64))
    assert torch.allclose(weights[0], torch.full((4,), 0.8, dtype=torch.float64))  # 2 steps of lr
    assert torch.allclose(weights[2], torch.full((4,), 0.9, dtype=torch.float64))
    with pytest.raises(ConfigError, match="amsgrad"):
        StackedOptimizer(torch.optim.Adam(holder.parameters(), amsgrad=True), 3)
    with pytest.raises(ConfigError, match="RMSprop"):
        StackedOptimizer(torch.optim.RMSprop(holder.parameters()), 3)


def test_dropout_models_repeat_themselves_in_either_mode():
    xs, ys = _random_sets(2, n=16)
    settings = TrainSettings(epochs=1, batch_size=8)
    for stacked in (True, False):
        runs = []
        for _ in range(2):
            models = _models(2, dropout=0.5)
            train_model_group(models, xs, ys, settings, [3, 4], "cpu", stacked=stacked)
            runs.append(_states(models))
        for a, b in zip(*runs, strict=True):
            assert all(torch.equal(a[k], b[k]) for k in a)


def test_batchnorm_models_of_unequal_sizes_fall_back_to_sequential(caplog):
    xs, ys = _random_sets(2, n=20)
    xs[1], ys[1] = xs[1][:12], ys[1][:12]
    models = [build_model("reference_cnn", CLASSES, 32, seed=i) for i in range(2)]
    with caplog.at_level(logging.INFO, logger="freqbackdoor.models.groups"):
        history = train_model_group(models, xs, ys, TrainSettings(epochs=1, batch_size=8), [0, 1])
    assert history["mode"] == "sequential"
    assert "BatchNorm" in caplog.text


def test_invalid_groups_raise():
    xs, ys = _random_sets(2, n=8)
    settings = TrainSettings(epochs=1, batch_size=4)
    with pytest.raises(ConfigError, match="augment"):
        train_model_group(_models(2), xs, ys, TrainSettings(epochs=1, augment=True), [0, 1])
    with pytest.raises(ConfigError, match="3 models, 2 x_sets, 2 y_sets, 2 seeds"):
        train_model_group(_models(3), xs, ys, settings, [0, 1])
    with pytest.raises(ConfigError, match="1 seeds"):
        train_model_group(_models(2), xs, ys, settings, [0])
    with pytest.raises(ConfigError, match="architecture"):
        mixed = [build_model("reference_cnn", 3, 32), build_model("reference_cnn", 4, 32)]
        train_model_group(mixed, xs, ys, settings, [0, 1])
    with pytest.raises(DataError, match="model 1: labels"):
        train_model_group(_models(2), xs, [ys[0], ys[1][:5]], settings, [0, 1])
    with pytest.raises(DataError, match="model 0: labels range"):
        train_model_group(_models(2), xs, [ys[0] + 5, ys[1]], settings, [0, 1])


def test_group_logits_match_per_model_forward():
    models = _models(3)
    images = np.random.default_rng(0).integers(0, 256, size=(10, 32, 32, 3), dtype=np.uint8)
    models[0].eval()
    logits = group_logits(models, images, batch_size=4)
    assert logits.shape == (3, 10, CLASSES) and logits.dtype == np.float32
    assert models[1].training and not models[0].training  # modes restored
    for i, model in enumerate(models):
        np.testing.assert_allclose(logits[i], predict_logits(model, images), rtol=1e-5, atol=1e-6)
    assert group_logits(models, images[:0]).shape == (3, 0, CLASSES)


def test_save_load_round_trip_and_mismatches(tmp_path):
    models = _models(3, seed=10)
    path = tmp_path / "groups" / "shadow.pt"
    save_model_group(models, path)
    assert [p.name for p in path.parent.iterdir()] == ["shadow.pt"]  # no temporary left
    loaded = load_model_group(path, "mntd_cifar10", CLASSES, 32, count=3)
    assert len(loaded) == 3 and not any(m.training for m in loaded)
    images = np.random.default_rng(1).integers(0, 256, size=(6, 32, 32, 3), dtype=np.uint8)
    np.testing.assert_array_equal(group_logits(loaded, images), group_logits(models, images))
    for a, b in zip(loaded, models, strict=True):
        assert all(torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())

    with pytest.raises(DataError, match=r"shadow\.pt.*holds 3 models, expected a group of 4"):
        load_model_group(path, "mntd_cifar10", CLASSES, 32, count=4)
    with pytest.raises(DataError, match=r"shadow\.pt.*classifier\.weight"):
        load_model_group(path, "mntd_cifar10", 10, 32, count=3)
    with pytest.raises(DataError, match=r"shadow\.pt.*features\.11\.weight"):
        load_model_group(path, "mntd_cifar10", CLASSES, 64, count=3)  # the first dense layer
    with pytest.raises(DataError, match=r"shadow\.pt.*lacks.*running_mean"):
        load_model_group(path, "reference_cnn", CLASSES, 32, count=3)
    partial = tmp_path / "partial.pt"
    torch.save({"features.0.weight": torch.zeros(3, 32, 3, 3, 3)}, partial)
    with pytest.raises(DataError, match=r"partial\.pt.*lacks"):
        load_model_group(partial, "reference_cnn", CLASSES, 32, count=3)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(DataError, match=r"garbage\.pt"):
        load_model_group(garbage, "reference_cnn", CLASSES, 32, count=3)
    with pytest.raises(ConfigError, match="model 1"):
        save_model_group(
            [build_model("reference_cnn", 3, 32), build_model("reference_cnn", 4, 32)],
            tmp_path / "mixed.pt",
        )
