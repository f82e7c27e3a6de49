"""The Section 4 detector: training set, training, scores, and that it beats chance on BadNets."""

import numpy as np
import pytest
import torch

from freqbackdoor.detection.detector import (
    Detector,
    DetectorSettings,
    detector_scores,
    evaluate_attacks,
    manipulated_copy,
    resize_images,
    to_domain,
    train_detector,
    width_point,
)
from freqbackdoor.detection.manipulations import ManipulationParams
from freqbackdoor.errors import ConfigError, DataError
from freqbackdoor.frequency.dct import dct2
from freqbackdoor.models.checkpoints import load_checkpoint, save_checkpoint
from freqbackdoor.triggers.registry import TriggerContext, build_trigger


def test_settings_reject_unknown_keys_and_bad_values():
    with pytest.raises(ConfigError, match="epoch"):
        DetectorSettings.from_config({"architecture": "linear", "epoch": 3})
    with pytest.raises(ConfigError, match="architecture"):
        DetectorSettings.from_config({"architecture": "resnet", "epochs": 1})
    with pytest.raises(ConfigError, match="epochs"):
        DetectorSettings.from_config({"architecture": "linear"})


def test_to_domain_matches_scipy_dct(photos):
    batch = photos[:4]
    planes = to_domain(batch, "dct", torch.device("cpu"))
    assert planes.shape == (4, 3, 32, 32)
    np.testing.assert_allclose(
        planes.permute(0, 2, 3, 1).numpy(), dct2(batch), rtol=1e-5, atol=1e-3
    )
    pixels = to_domain(batch, "pixel", torch.device("cpu"))
    np.testing.assert_array_equal(pixels.permute(0, 2, 3, 1).numpy(), batch.astype(np.float32))


def test_manipulated_copy_is_seeded_and_changes_every_round(photos):
    params = ManipulationParams()
    a = manipulated_copy(photos[:50], params, seed=1, round_index=0)
    b = manipulated_copy(photos[:50], params, seed=1, round_index=0)
    c = manipulated_copy(photos[:50], params, seed=1, round_index=1)
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()
    assert (a != photos[:50]).any(axis=(1, 2, 3)).mean() > 0.9


def test_detector_beats_chance_on_badnets_in_the_dct_domain(photos, tmp_path):
    train, test = photos[:256], photos[256:]
    settings = DetectorSettings(architecture="cnn3_kmax32", epochs=3, batch_size=32, lr=3e-3)
    model, history = train_detector(train, settings, "dct", device="cpu")
    # 10% of the 256 images held out for calibration; each of the rest clean and manipulated
    assert history["val_images"] == 26 and history["samples"] == 2 * 230
    assert len(history["train_acc"]) == 3 and 0.5 <= history["val_acc"] <= 1
    assert history["train_acc"][-1] > 0.6
    badnets = build_trigger("badnets", 32, 32, {}, TriggerContext())
    clean = detector_scores(model, test)
    triggered = detector_scores(model, badnets.apply(test))
    metrics = evaluate_attacks(clean, {"badnets": triggered}, n_boot=200).iloc[0]
    assert metrics.auc > 0.75 and metrics.acc > 0.6
    # the DCT cache path gives the same scores as the image path
    cached = detector_scores(model, dct2(test), transformed=True)
    np.testing.assert_allclose(cached, clean, atol=1e-5)
    # checkpoint round trip keeps the standardisation and the scores
    save_checkpoint(model, tmp_path / "d.pt", tmp_path / "d.json")
    loaded, meta = load_checkpoint(tmp_path / "d.pt", tmp_path / "d.json", domain="dct")
    assert meta["domain"] == "dct" and meta["model_options"]["body"] == "cnn3_kmax32"
    np.testing.assert_allclose(detector_scores(loaded, test), clean, atol=1e-6)
    with pytest.raises(DataError, match="domain"):
        load_checkpoint(tmp_path / "d.pt", tmp_path / "d.json", domain="pixel")


def test_training_is_deterministic(photos):
    settings = DetectorSettings(architecture="linear", epochs=2, batch_size=64, seed=5)
    a, _ = train_detector(photos[:64], settings, "pixel", device="cpu")
    b, _ = train_detector(photos[:64], settings, "pixel", device="cpu")
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name


def test_standardisation_buffers_are_finite_and_scaled(photos):
    settings = DetectorSettings(architecture="linear", epochs=1, batch_size=64)
    model, _ = train_detector(photos[:64], settings, "dct", device="cpu")
    assert torch.isfinite(model.mean).all() and (model.std > 0).all()
    # the DC coefficient is large and varies: its mean is far from 0
    assert float(model.mean[:, 0, 0].min()) > 100


def test_bad_inputs_name_the_problem(photos):
    settings = DetectorSettings(architecture="linear", epochs=1)
    with pytest.raises(DataError, match="x_train"):
        train_detector(photos[:4].astype(np.float32), settings, "dct", device="cpu")
    model = Detector(2, 32, "linear", "dct")
    with pytest.raises(DataError, match="shape"):
        detector_scores(model, photos[:2, :16, :16])
    with pytest.raises(ValueError, match="domain"):
        Detector(2, 32, "linear", "wavelet")


def test_resize_and_width_point(photos):
    small = resize_images(photos[:10], 20)
    assert small.shape == (10, 20, 20, 3) and small.dtype == np.uint8
    settings = DetectorSettings(architecture="linear", epochs=1, batch_size=64)
    frame = width_point(
        photos[:64], photos[64:96], 24, settings, {"badnets": {}}, n_boot=100, device="cpu"
    )
    assert list(frame.attack) == ["badnets", "pooled"]
    assert (frame.width == 24).all() and frame.n_triggered.iloc[0] == 32
