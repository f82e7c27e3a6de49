"""Training loop and evaluation helpers of the reference classifier (checkpoints: test_checkpoints.py)."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from freqbackdoor.errors import ConfigError, DataError
from freqbackdoor.io import load_npy, save_npy
from freqbackdoor.models import training
from freqbackdoor.models.classifier import build_model
from freqbackdoor.models.prediction import accuracy, predict_logits
from freqbackdoor.models.training import (
    TrainSettings,
    batchnorm_rows,
    is_kernel,
    make_optimizer,
    recompute_batchnorm,
    split_validation,
    train_classifier,
)


def _halves(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two separable classes: a bright (label 1) or dark (label 0) left half over noise."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 60, size=(n, size, size, 3), dtype=np.uint8)
    labels = rng.integers(0, 2, size=n).astype(np.int64)
    images[labels == 1, :, : size // 2] += 150
    return images, labels


def _assert_same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name


def test_settings_from_config():
    settings = TrainSettings.from_config({"epochs": 3, "lr": 0.05, "optimizer": "sgd", "seed": 4})
    assert (settings.epochs, settings.lr, settings.optimizer, settings.seed) == (3, 0.05, "sgd", 4)
    assert settings.batch_size == 128 and settings.val_fraction == 0.1
    with pytest.raises(ConfigError, match="learning_rate"):
        TrainSettings.from_config({"epochs": 3, "learning_rate": 0.1})
    with pytest.raises(ConfigError, match="epochs"):
        TrainSettings.from_config({"lr": 0.1})
    with pytest.raises(ConfigError, match="optimizer"):
        TrainSettings.from_config({"epochs": 1, "optimizer": "rmsprop"})
    with pytest.raises(ConfigError, match="val_fraction"):
        TrainSettings(epochs=1, val_fraction=1.0)


def test_split_validation_is_stratified_seeded_and_exact():
    labels = np.repeat([0, 1, 2], [50, 30, 20])
    train, val = split_validation(labels, 0.1, seed=3)
    assert val.size == 10 and train.size == 90
    assert np.intersect1d(train, val).size == 0
    assert np.bincount(labels[val], minlength=3).tolist() == [5, 3, 2]
    again_train, again_val = split_validation(labels, 0.1, seed=3)
    assert np.array_equal(val, again_val) and np.array_equal(train, again_train)
    assert not np.array_equal(val, split_validation(labels, 0.1, seed=4)[1])
    # Classes too small to give one each still give the exact total.
    assert split_validation(np.arange(20) % 10, 0.1, seed=0)[1].size == 2
    assert split_validation(labels, 0.0, seed=0)[1].size == 0


def test_augment_crops_a_padded_window_and_flips():
    generator = torch.Generator().manual_seed(0)
    batch = torch.randint(1, 256, (32, 3, 8, 8), dtype=torch.uint8)
    out = training._augment(batch, generator)
    assert out.shape == batch.shape and out.dtype == batch.dtype
    padded = torch.nn.functional.pad(batch, (4, 4, 4, 4))
    flips = 0
    for n in range(batch.shape[0]):
        matches = [
            (dy, dx, flip)
            for dy in range(9)
            for dx in range(9)
            for flip in (False, True)
            if torch.equal(
                out[n],
                padded[n, :, dy : dy + 8, dx : dx + 8].flip(2)
                if flip
                else padded[n, :, dy : dy + 8, dx : dx + 8],
            )
        ]
        assert matches, f"sample {n} is not a crop of its padded image"
        flips += matches[0][2]
    assert 0 < flips < batch.shape[0]


def test_learns_a_separable_task():
    images, labels = _halves(200, 32, seed=0)
    calls = []

    def progress(iterable, desc, total):
        calls.append((desc, total))
        return iterable

    model = build_model("reference_cnn", 2, 32, seed=0)
    settings = TrainSettings(epochs=3, batch_size=32, lr=1e-3, seed=0)
    history = train_classifier(model, images, labels, settings, device="cpu", progress=progress)
    assert calls == [("training epochs", 3)]
    assert history["epoch"] == [1, 2, 3]
    assert len(history["train_loss"]) == len(history["train_acc"]) == len(history["val_acc"]) == 3
    assert history["train_samples"] == 180 and history["val_samples"] == 20
    assert history["best_val_acc"] == max(history["val_acc"]) > 0.9
    assert history["precision"] == "fp32" and history["samples_per_second"] > 0
    assert not model.training
    test_images, test_labels = _halves(100, 32, seed=1)
    assert accuracy(model, test_images, test_labels, "cpu") > 0.9


def test_same_seed_gives_identical_weights():
    images, labels = _halves(64, 16, seed=2)
    runs = []
    for seed in (5, 5, 6):
        model = build_model("reference_cnn", 2, 16, seed=0)
        settings = TrainSettings(epochs=2, batch_size=16, augment=True, seed=seed)
        history = train_classifier(model, images, labels, settings, device="cpu")
        runs.append((model, history))
    _assert_same_state(runs[0][0], runs[1][0])
    assert runs[0][1]["train_loss"] == runs[1][1]["train_loss"]
    different = runs[2][0].state_dict()["classifier.weight"]
    assert not torch.equal(runs[0][0].state_dict()["classifier.weight"], different)


def test_divergence_in_first_epoch_is_an_error():
    images, labels = _halves(32, 16, seed=0)
    model = build_model("reference_cnn", 2, 16, seed=0)
    with torch.no_grad():
        model.classifier.bias.fill_(float("nan"))
    with pytest.raises(ConfigError, match="diverged"):
        train_classifier(model, images, labels, TrainSettings(epochs=2), device="cpu")


def test_labels_must_fit_the_model():
    images, labels = _halves(16, 16, seed=0)
    model = build_model("reference_cnn", 2, 16, seed=0)
    with pytest.raises(DataError, match="2 classes"):
        train_classifier(model, images, labels + 1, TrainSettings(epochs=1), device="cpu")


def test_predict_logits_batches_memmaps_and_restores_mode(tmp_path):
    images, labels = _halves(10, 16, seed=0)
    save_npy(tmp_path / "x.npy", images)
    model = build_model("reference_cnn", 2, 16, seed=0).train()
    logits = predict_logits(model, load_npy(tmp_path / "x.npy"), "cpu", batch_size=3)
    assert logits.shape == (10, 2) and logits.dtype == np.float32
    assert model.training
    with torch.no_grad():
        expected = model.eval()(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255)
    np.testing.assert_allclose(logits, expected.numpy(), rtol=1e-5, atol=1e-5)
    predictions = logits.argmax(1)
    assert accuracy(model, images, labels, "cpu") == pytest.approx((predictions == labels).mean())
    with pytest.raises(DataError, match="empty"):
        accuracy(model, images[:0], labels[:0], "cpu")


# --------------------------------------------------------------------------- the authors' recipe


def _keras_adadelta_step(param, grad, lr, rho, eps, accum, delta_accum):
    """One Keras 2.2.4 Adadelta update, written out (the optimiser of the authors' files)."""
    accum = rho * accum + (1 - rho) * grad**2
    update = grad * torch.sqrt(delta_accum + eps) / torch.sqrt(accum + eps)
    delta_accum = rho * delta_accum + (1 - rho) * update**2
    return param - lr * update, accum, delta_accum


def test_adadelta_with_kernel_l2_is_keras_update_on_the_penalised_loss():
    """make_optimizer: Adadelta 0.05 / rho 0.95 / eps 1e-7, and l2(1e-3) on conv kernels only."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.Linear(16, 2)
    )
    settings = TrainSettings(epochs=1, optimizer="adadelta", lr=0.05, kernel_l2=1e-3)
    optimizer = make_optimizer(model, settings)
    x, y = torch.rand(5, 3, 4, 4), torch.tensor([0, 1, 0, 1, 1])
    start = {k: v.detach().clone() for k, v in model.named_parameters()}
    expected = {}
    for _step in range(3):
        # the Keras loss: cross-entropy plus kernel_l2 * sum(w**2) over the conv kernel
        reference = copy.deepcopy(model)
        loss = F.cross_entropy(reference(x), y) + 1e-3 * reference[0].weight.square().sum()
        grads = torch.autograd.grad(loss, list(reference.parameters()))
        for (name, param), grad in zip(reference.named_parameters(), grads, strict=True):
            state = expected.setdefault(name, [torch.zeros_like(param), torch.zeros_like(param)])
            new, state[0], state[1] = _keras_adadelta_step(
                param.detach(), grad, 0.05, 0.95, 1e-7, state[0], state[1]
            )
            expected[name + ".value"] = new
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        for name, param in model.named_parameters():
            torch.testing.assert_close(
                param.detach(), expected[name + ".value"], rtol=1e-5, atol=1e-7
            )
    assert not torch.equal(model[0].weight, start["0.weight"])
    groups = {len(g["params"]): g["weight_decay"] for g in optimizer.param_groups}
    assert groups == {3: 0.0, 1: pytest.approx(2e-3)}  # biases + dense weight; the conv kernel


def test_kernels_are_the_four_axis_parameters():
    model = build_model("reference_cnn", 10, 32)
    kernels = [n for n, p in model.named_parameters() if is_kernel(p)]
    assert len(kernels) == 6 and all(n.endswith("weight") for n in kernels)


def test_recompute_batchnorm_sets_exact_statistics_and_keeps_dropout_off():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 2, 1), torch.nn.BatchNorm2d(2, momentum=0.01), torch.nn.Dropout(0.9)
    )
    data = [torch.rand(8, 3, 5, 5) * 4 + 1 for _ in range(3)]
    assert recompute_batchnorm(model, iter(data)) == 1
    with torch.no_grad():
        features = torch.cat([model[0](batch) for batch in data])
    norm = model[1]
    torch.testing.assert_close(norm.running_mean, features.mean((0, 2, 3)))
    # PyTorch's running variance is the unbiased one; every batch has the same size
    per_batch = torch.stack([model[0](b).detach().var((0, 2, 3), unbiased=True) for b in data])
    torch.testing.assert_close(norm.running_var, per_batch.mean(0))
    assert norm.momentum == 0.01 and not model.training
    assert recompute_batchnorm(torch.nn.Linear(2, 2), iter(())) == 0


def test_batchnorm_rows_are_evenly_spaced_and_capped():
    assert batchnorm_rows(5).tolist() == [0, 1, 2, 3, 4]
    rows = batchnorm_rows(10_000, 4)
    assert rows.tolist() == [0, 3333, 6666, 9999]
