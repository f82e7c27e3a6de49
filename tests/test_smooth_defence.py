"""Section 5.4: fine-tuning the detector on a smooth trigger and the cluster distances of Figure 4."""

import numpy as np
import pytest
import torch

from freqbackdoor.detection.detector import Detector, detector_scores, fit_standardisation
from freqbackdoor.detection.transfer import FineTuneSettings
from freqbackdoor.detection.upgrade import (
    clean_representative,
    cluster_distances,
    detector_features,
    fine_tune_on_triggered,
    project_2d,
    upgrade_rows,
    upgrade_set,
)
from freqbackdoor.errors import ConfigError, DataError
from freqbackdoor.frequency.dct import dct2
from freqbackdoor.triggers.registry import Trigger

SIZE = 16


def _images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, SIZE, SIZE, 3)).astype(np.uint8)


def _smooth_trigger() -> Trigger:
    """A low-frequency additive pattern: a cosine bump brightest in the top-left corner."""
    wave = 0.5 + 0.5 * np.cos(np.pi * np.arange(SIZE) / (SIZE - 1))
    pattern = np.repeat((wave[:, None] * wave[None, :])[..., None], 3, axis=2)
    return Trigger("smooth_test", pattern, np.ones_like(pattern), "additive", weight=0.25)


def _detector(body: str = "linear", seed: int = 0) -> Detector:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Detector(2, SIZE, body, "dct").eval()


def test_fine_tuning_on_a_trigger_raises_its_detection_rate_and_leaves_the_source_alone():
    x = _images(600, seed=0)
    trigger = _smooth_trigger()
    model = _detector()
    fit_standardisation(model, x, trigger.apply(x), 200, 0, torch.device("cpu"))
    with torch.no_grad():  # a detector blind to the trigger: everything scores clean
        model.body.classifier.bias.copy_(torch.tensor([3.0, -3.0]))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    test = x[400:]
    bdr_before = (detector_scores(model, trigger.apply(test)) >= 0.5).mean()

    clean, triggered = upgrade_set(x[:400], trigger, 400, seed=0)
    settings = FineTuneSettings(epochs=3, batch_size=32, lr=1e-2, seed=0)
    tuned, history = fine_tune_on_triggered(model, clean, triggered, settings)
    bdr_after = (detector_scores(tuned, trigger.apply(test)) >= 0.5).mean()
    fpr_after = (detector_scores(tuned, test) >= 0.5).mean()
    assert bdr_before == 0.0 and bdr_after > 0.5 and fpr_after < 0.25
    assert history["samples"] == 400 and len(history["train_loss"]) == 3
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key  # the source detector is untouched
    assert torch.equal(tuned.mean, model.mean) and torch.equal(tuned.std, model.std)
    assert not tuned.training
    with pytest.raises(DataError, match="as many clean as triggered"):
        fine_tune_on_triggered(model, clean, triggered[:-1], settings)


def test_upgrade_set_is_half_clean_half_patched_from_disjoint_rows():
    x = _images(50, seed=1)
    trigger = _smooth_trigger()
    clean_rows, patched_rows = upgrade_rows(50, 20, seed=3)
    assert clean_rows.size == patched_rows.size == 10
    assert np.intersect1d(clean_rows, patched_rows).size == 0
    clean, triggered = upgrade_set(x, trigger, 20, seed=3)
    assert np.array_equal(clean, x[clean_rows])
    assert np.array_equal(triggered, trigger.apply(x[patched_rows]))
    assert not np.array_equal(upgrade_rows(50, 20, seed=4)[0], clean_rows)
    with pytest.raises(DataError, match="needs 60 distinct training images .* has 50"):
        upgrade_set(x, trigger, 60, seed=0)
    with pytest.raises(ConfigError, match="even"):
        upgrade_rows(50, 21, seed=0)


def test_detector_features_are_the_penultimate_activations_in_either_input_form():
    model = _detector("cnn3_kmax32")
    with torch.no_grad():
        model.mean.normal_()
        model.std.uniform_(1.0, 2.0)
    x = _images(10, seed=2)
    features = detector_features(model, x, batch_size=4)
    expected = model.body.features(
        (torch.from_numpy(dct2(x)).permute(0, 3, 1, 2) - model.mean) / model.std
    )
    assert features.shape == (10, model.body.classifier.in_features)
    assert np.allclose(features, expected.detach().numpy(), atol=1e-4)
    assert np.allclose(detector_features(model, dct2(x), transformed=True), features, atol=1e-4)
    logits = model.body.classifier(torch.from_numpy(features))
    assert np.allclose(
        torch.softmax(logits, 1)[:, 1].detach().numpy(), detector_scores(model, x), atol=1e-5
    )
    model.train()
    detector_features(model, x)
    assert model.training  # the mode is restored
    with pytest.raises(DataError, match="shape"):
        detector_features(model, x[:, :8])


def test_clean_representative_is_the_sample_nearest_the_benign_weights():
    model = _detector("cnn3_kmax32")
    features = detector_features(model, _images(30, seed=5))
    weight = model.body.classifier.weight[0].detach().numpy()
    brute = np.argmin([np.sqrt(((row - weight) ** 2).sum()) for row in features.astype(np.float64)])
    assert clean_representative(model, features) == brute
    planted = features.copy()
    planted[17] = weight + 1e-3
    assert clean_representative(model, planted) == 17
    with pytest.raises(DataError, match="dimensions"):
        clean_representative(model, features[:, :-1])


def test_cluster_distances_gives_known_means_in_order():
    representative = np.zeros(2)
    features = {
        "far": np.array([[3.0, 4.0], [0.0, 10.0]]),  # distances 5 and 10
        "near": np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]),  # 1, 1, 0
        "middle": np.array([[0.0, 3.0]]),  # 3
    }
    frame = cluster_distances(representative, features, n_boot=200, seed=0)
    assert list(frame.columns) == [
        "trigger",
        "distance",
        "distance_low",
        "distance_high",
        "samples",
    ]
    assert frame.trigger.tolist() == ["near", "middle", "far"]
    assert frame.distance.tolist() == pytest.approx([2 / 3, 3.0, 7.5])
    assert frame.samples.tolist() == [3, 1, 2]
    assert (frame.distance_low <= frame.distance).all() and (
        frame.distance <= frame.distance_high
    ).all()
    middle = frame.set_index("trigger").loc["middle"]
    assert middle.distance_low == middle.distance_high == 3.0  # one sample: no spread
    far = frame.set_index("trigger").loc["far"]
    assert 5.0 <= far.distance_low < far.distance_high <= 10.0
    again = cluster_distances(representative, dict(reversed(features.items())), n_boot=200, seed=0)
    assert again.equals(frame)  # each trigger's interval comes from its own stream
    with pytest.raises(DataError, match="features of bad"):
        cluster_distances(representative, {"bad": np.ones((2, 3))})


def test_project_2d_gives_one_point_per_sample():
    rng = np.random.default_rng(0)
    groups = {"clean": rng.normal(size=(5, 6)), "smooth": rng.normal(3.0, size=(4, 6))}
    frame = project_2d(groups)
    assert list(frame.columns) == ["group", "x", "y"] and frame.shape == (9, 3)
    assert frame.group.tolist() == ["clean"] * 5 + ["smooth"] * 4
    # the groups differ most along the first axis
    means = frame.groupby("group").x.mean()
    assert abs(means["clean"] - means["smooth"]) > 3.0
    with pytest.raises(DataError, match="differ in width"):
        project_2d({"a": np.ones((2, 3)), "b": np.ones((2, 4))})
