"""Algorithm 1 and its pieces: the low-pass filter, min-max insertion, DeepFool, the search.

The search runs in two modes: ``authors`` (their scripts' sequential loop, softmax DeepFool,
fooling rate on the search images) and ``batched`` (our faster reading, held-out error rate).
"""

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage
from torch import nn
from torch.nn import functional as F

from freqbackdoor.errors import ConfigError, DataError
from freqbackdoor.frequency.dct import dct2
from freqbackdoor.frequency.highfreq import band_energy, energy_ratio, high_band_mask
from freqbackdoor.triggers import smooth_search
from freqbackdoor.triggers.deepfool import deepfool_on_softmax, targeted_deepfool
from freqbackdoor.triggers.filters import (
    gaussian_kernel,
    lowpass,
    lowpass_pattern,
    minmax,
    patch_smooth,
)
from freqbackdoor.triggers.registry import Trigger, TriggerContext, build_trigger, trigger_needs
from freqbackdoor.triggers.smooth import AUTHORS_DEVIATIONS, SmoothSettings, generate_smooth_trigger
from freqbackdoor.triggers.smooth_search import dominant_label

SIZE = 16
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")
# A small filter for the 16 px search tests (the paper's 30 taps would blur a 16 px image flat).
FAST = {"filter_size": 6, "filter_sigma": 1.5, "samples": 20, "holdout": 40, "max_passes": 3}


def smooth_images(n: int, size: int = SIZE, seed: int = 0) -> np.ndarray:
    """Smooth random uint8 images: 4 x 4 noise upsampled bilinearly."""
    low = torch.from_numpy(np.random.default_rng(seed).random((n, 3, 4, 4), dtype=np.float32))
    x = F.interpolate(low, size=size, mode="bilinear", align_corners=False)
    return np.rint(x.permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8)


def quadrant_model(size: int = SIZE) -> nn.Module:
    """A tiny hand-set classifier: the class is the brightest quadrant (4 classes)."""
    model = nn.Sequential(nn.AvgPool2d(size // 2), nn.Flatten(), nn.Linear(12, 4))
    with torch.no_grad():
        weight = torch.zeros(4, 12)
        for quadrant in range(4):
            weight[quadrant, quadrant::4] = 20.0  # flattened channel-major: c * 4 + quadrant
        model[2].weight.copy_(weight)
        model[2].bias.zero_()
    model.num_classes = 4
    return model.eval()


def random_model(seed: int = 0) -> nn.Module:
    """A tiny randomly initialised conv net with 5 classes."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(32, 5),
    )
    return model.eval()


def to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0


def hf_share(pattern: np.ndarray) -> float:
    """Mean |DCT| in the upper band over the mean |DCT| of all non-DC coefficients."""
    coefficients = dct2(pattern[None].astype(np.float64) * 255.0)
    height, width = pattern.shape[:2]
    ac = np.ones((height, width), bool)
    ac[0, 0] = False
    band = band_energy(coefficients, high_band_mask(height, width))[0]
    return float(band / band_energy(coefficients, ac)[0])


def photo(name: str, size: int = 32) -> np.ndarray:
    from freqbackdoor.triggers.images import load_pattern_image

    return load_pattern_image(name, size, size)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: these tensors are tiny, and on a busy machine waking a second thread
    for every small op costs more than the op (the search tests run 20x faster)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def search_run(one_thread):
    settings = SmoothSettings(
        **FAST, mode="batched", batch_size=1, fooling_rate=0.9, initial_target=1
    )
    return settings, generate_smooth_trigger(quadrant_model(), smooth_images(60), settings, seed=3)


@pytest.fixture(scope="module")
def authors_run(one_thread):
    settings = SmoothSettings(**{**FAST, "max_passes": 4}, fooling_rate=0.9, initial_target=1)
    return settings, generate_smooth_trigger(quadrant_model(), smooth_images(60), settings, seed=3)


# --------------------------------------------------------------------------- filter


@pytest.mark.parametrize("size, sigma", [(5, 1.0), (30, 6.0), (4, 0.7)])
def test_gaussian_kernel_sums_to_one_and_is_symmetric(size, sigma):
    kernel = gaussian_kernel(size, sigma)
    assert kernel.shape == (size,)
    assert kernel.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(kernel, kernel[::-1])
    assert kernel[(size - 1) // 2] == kernel.max()
    with pytest.raises(ConfigError, match="filter_size"):
        gaussian_kernel(0, 1.0)
    with pytest.raises(ConfigError, match="filter_sigma"):
        gaussian_kernel(3, -1.0)


@pytest.mark.parametrize("size, sigma", [(5, 1.2), (30, 6.0), (4, 1.5)])
def test_lowpass_is_a_zero_padded_separable_gaussian(rng, size, sigma):
    x = rng.random((2, 3, 13, 11))
    kernel = gaussian_kernel(size, sigma)
    expected = ndimage.convolve(x, np.outer(kernel, kernel)[None, None], mode="constant")
    out = lowpass(torch.from_numpy(x), size, sigma)
    assert out.shape == x.shape
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-12)
    pattern = x[0].transpose(1, 2, 0).astype(np.float32)
    np.testing.assert_allclose(
        lowpass_pattern(pattern, size, sigma), expected[0].transpose(1, 2, 0), atol=1e-5
    )


def test_lowpass_removes_high_frequencies(rng):
    noise = rng.random((32, 32, 3), dtype=np.float32)
    filtered = lowpass_pattern(noise)  # the paper's 30 taps, sigma 6
    photos = [hf_share(photo(name)) for name in PHOTOS]
    assert hf_share(filtered) < 0.05 * hf_share(noise)
    assert hf_share(filtered) <= min(photos)


# --------------------------------------------------------------------------- insertion


def test_minmax_scales_each_sample_and_keeps_constants(rng):
    x = torch.from_numpy(rng.normal(size=(4, 3, 5, 5)).astype(np.float32))
    x[2] = 0.5  # a constant sample
    out = minmax(x, 0.0, 1.0)
    assert torch.isfinite(out).all()
    for i in (0, 1, 3):
        assert out[i].min() == 0.0 and out[i].max() == 1.0
    assert (out[2] == 0.5).all()
    scaled = minmax(x, 0.0, 0.2)
    assert scaled[0].min() == 0.0 and scaled[0].max() == pytest.approx(0.2)
    assert (scaled[2] == 0.2).all()  # clipped to the range
    assert (minmax(torch.zeros(1, 3, 4, 4), 0.0, 0.2) == 0).all()


def test_patch_smooth_matches_the_normalise_trigger(rng):
    images = rng.random((6, 8, 8, 3), dtype=np.float32)
    pattern = 0.2 * rng.random((8, 8, 3), dtype=np.float32)
    trigger = Trigger(
        name="t", pattern=pattern, mask=np.ones_like(pattern), mode="normalise", weight=0.7
    )
    expected = trigger.apply_float(images)
    x = torch.from_numpy(images).permute(0, 3, 1, 2)
    r = torch.from_numpy(pattern).permute(2, 0, 1)
    for trig in (r, r[None]):
        out = patch_smooth(x, trig, 0.7).permute(0, 2, 3, 1).numpy()
        np.testing.assert_allclose(out, expected, atol=1e-6)
    assert expected.min() >= 0.0 and expected.max() <= 1.0
    assert (expected.min(axis=(1, 2, 3)) == 0.0).all()
    np.testing.assert_allclose(expected.max(axis=(1, 2, 3)), 1.0)
    flat = dataclasses.replace(trigger, pattern=np.zeros_like(pattern))
    constant = np.full((1, 8, 8, 3), 0.25, np.float32)
    np.testing.assert_array_equal(flat.apply_float(constant), constant)  # nothing to stretch
    constant_nchw = torch.from_numpy(constant).permute(0, 3, 1, 2)
    np.testing.assert_array_equal(
        patch_smooth(constant_nchw, torch.zeros(3, 8, 8)).numpy(), constant_nchw.numpy()
    )


def test_normalise_trigger_saves_and_loads(tmp_path, images32):
    trigger = build_trigger("lowpass", 32, 32, {"target_label": 3, "strength": 0.5})
    path = tmp_path / "lowpass.npz"
    trigger.save(path)
    loaded = Trigger.load(path)
    assert (loaded.mode, loaded.weight, loaded.target_label) == ("normalise", 0.5, 3)
    assert loaded.meta == trigger.meta
    np.testing.assert_array_equal(loaded.apply(images32), trigger.apply(images32))
    np.testing.assert_array_equal(trigger.apply(images32, chunk_size=5), trigger.apply(images32))


# --------------------------------------------------------------------------- DeepFool


@pytest.mark.parametrize("make", [quadrant_model, random_model])
def test_targeted_deepfool_reaches_the_target(make):
    model = make()
    x = to_tensor(smooth_images(24, seed=1))
    before = model(x).argmax(1)
    target = 1
    perturbation, converged = targeted_deepfool(model, x, target)
    assert perturbation.shape == x.shape and converged.dtype == torch.bool
    with torch.no_grad():
        after = model(x + perturbation).argmax(1)
    assert converged.float().mean() >= 0.8
    assert (after[converged] == target).all()
    already = before == target
    assert converged[already].all() and (perturbation[already] == 0).all()
    assert not model.training and all(p.requires_grad for p in model.parameters())


def test_batched_deepfool_equals_one_sample_at_a_time():
    model = random_model(2)
    x = to_tensor(smooth_images(6, seed=2))
    batched, converged = targeted_deepfool(model, x, 3, max_steps=50)
    for i in range(x.shape[0]):
        single, ok = targeted_deepfool(model, x[i : i + 1], 3, max_steps=50)
        np.testing.assert_allclose(batched[i].numpy(), single[0].numpy(), atol=1e-5)
        assert bool(ok[0]) == bool(converged[i])


def authors_deepfool_oracle(model, x, target, overshoot=0.02, max_steps=200):
    """The authors' ``tar_deepfool`` step by step for one image: no batching, no shortcut."""
    total, steps, k0 = torch.zeros_like(x), 0, None
    while True:
        point = (x + (1 + overshoot) * total).requires_grad_(True)
        probs = torch.softmax(model(point), dim=1)[0]
        top = int(probs.argmax())
        k0 = top if k0 is None else k0  # the initial top class, kept for every step
        if top == target or steps == max_steps:
            return (1 + overshoot) * total, steps, top == target, k0
        margin = probs[target] - probs[k0]
        (w,) = torch.autograd.grad(margin, point)
        step = margin.detach().abs() / w.square().sum() * w
        total = total + (step if torch.isfinite(step).all() else torch.zeros_like(step))
        steps += 1


def saturating_model(scale: float) -> nn.Module:
    """The quadrant model with logits ``scale`` times larger: a softmax that saturates."""
    model = quadrant_model()
    with torch.no_grad():
        model[2].weight.mul_(scale)
    return model


@pytest.mark.parametrize("make", [quadrant_model, random_model])
def test_softmax_deepfool_reaches_the_target(make):
    model = make()
    x = to_tensor(smooth_images(24, seed=1))
    perturbation, converged = targeted_deepfool(model, x, 1, softmax=True)
    with torch.no_grad():
        after = model(x + perturbation).argmax(1)
    assert converged.float().mean() >= 0.9
    assert (after[converged] == 1).all()
    assert not model.training and all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("scale", [1.0, 10.0])
def test_softmax_deepfool_follows_the_authors_step(scale):
    """Step by step as the authors' loop, including images that get stuck when the softmax
    saturates (their zero steps are skipped, with the same outcome: max_steps, not reached)."""
    model = saturating_model(scale)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    x = to_tensor(smooth_images(12, seed=4))
    perturbation, steps, reached, initial = deepfool_on_softmax(model, x, 1, 0.02, 200)
    stuck = 0
    for i in range(x.shape[0]):
        single, single_steps, single_reached, single_initial = deepfool_on_softmax(
            model, x[i : i + 1], 1, 0.02, 200
        )
        expected, n, ok, k0 = authors_deepfool_oracle(model, x[i : i + 1], 1)
        assert (int(steps[i]), bool(reached[i]), int(initial[i])) == (n, ok, k0)
        assert (int(single_steps[0]), bool(single_reached[0])) == (n, ok)
        np.testing.assert_allclose(single.numpy(), expected.numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(perturbation[i].numpy(), expected[0].numpy(), 1e-3, 1e-2)
        stuck += n == 200 and not ok
    assert stuck >= 1  # the saturated case is covered


# --------------------------------------------------------------------------- Algorithm 1


def test_dominant_label_is_the_mode_of_the_changed_labels():
    clean = np.array([0, 1, 2, 3, 4, 5, 6])
    assert dominant_label(clean, np.array([0, 2, 2, 2, 4, 2, 1])) == 2
    assert dominant_label(clean, np.array([5, 1, 2, 5, 1, 5, 1])) == 1  # 1 and 5 tie: smallest
    assert dominant_label(clean, np.array([3, 3, 2, 3, 4, 5, 6])) == 3  # unchanged 3 not counted
    assert dominant_label(clean, clean.copy()) is None


def test_algorithm_1_raises_the_held_out_error_and_keeps_the_best(search_run):
    settings, result = search_run
    history = result.history
    assert [h["pass"] for h in history] == list(range(len(history)))
    rates = [h["error_rate"] for h in history]
    assert rates[0] < 0.05  # the zero trigger changes (almost) nothing
    assert max(rates[1:]) > 0.2
    assert result.best_error_rate == pytest.approx(max(rates), abs=1e-6)
    assert history[result.best_pass]["error_rate"] == pytest.approx(result.best_error_rate, 1e-5)
    assert result.target_label == history[result.best_pass]["dominant_label"]
    assert result.mode == "batched" and "max_passes 3 hit" in result.stop_reason
    assert result.pattern.shape == (SIZE, SIZE, 3) and result.pattern.dtype == np.float32
    assert result.pattern.min() >= 0.0 and result.pattern.max() <= settings.max_value + 1e-7
    assert result.pattern.max() == pytest.approx(settings.max_value)
    assert result.reached is False and len(history) == settings.max_passes + 1
    assert all(h["updates"] > 0 for h in history[1:])
    expected_keys = {
        "pass",
        "target",
        "next_target",
        "skipped",
        "fooled_search",
        "error_rate",
        "changed_share",
        "dominant_label",
        "updates",
        "deepfool_steps_mean",
    }
    assert expected_keys <= set(history[0])


def test_algorithm_1_is_deterministic_and_batch_one_equals_the_reference(search_run):
    settings, first = search_run
    images = smooth_images(60)
    again = generate_smooth_trigger(quadrant_model(), images, settings, seed=3)
    np.testing.assert_array_equal(again.pattern, first.pattern)
    assert again.history == first.history
    reference = generate_smooth_trigger(quadrant_model(), images, settings, seed=3, reference=True)
    np.testing.assert_allclose(reference.pattern, first.pattern, atol=1e-6)
    assert reference.history == first.history
    assert (reference.target_label, reference.best_pass) == (first.target_label, first.best_pass)
    batched = generate_smooth_trigger(
        quadrant_model(), images, dataclasses.replace(settings, batch_size=20), seed=3
    )
    assert batched.pattern.max() <= settings.max_value + 1e-7
    assert batched.best_error_rate > 0.2


def test_algorithm_1_stops_at_the_fooling_rate_and_checks_inputs():
    model, images = quadrant_model(), smooth_images(60)
    settings = SmoothSettings(
        **{**FAST, "max_passes": 5}, mode="batched", fooling_rate=0.1, batch_size=10
    )
    result = generate_smooth_trigger(model, images, settings, seed=0)
    assert result.reached and result.best_error_rate >= 0.1
    assert len(result.history) - 1 == result.best_pass < 5
    assert f"reached fooling_rate 0.1 at pass {result.best_pass}" in result.stop_reason
    assert 0 <= result.history[0]["target"] < 4  # drawn from the seed
    with pytest.raises(DataError, match="samples 20 \\+ holdout 40.*got 30"):
        generate_smooth_trigger(model, images[:30], settings)
    with pytest.raises(ConfigError, match="initial_target"):
        generate_smooth_trigger(model, images, dataclasses.replace(settings, initial_target=4))


def test_smooth_settings_validate():
    settings = SmoothSettings.from_config({"samples": 50, "initial_target": 6})
    assert settings.samples == 50 and settings.initial_target == 6
    assert settings.mode == "authors"  # the authors' search is the default
    assert SmoothSettings.from_config({"holdout": 0}).holdout == 0  # logged only: may be off
    with pytest.raises(ConfigError, match="holdout"):
        SmoothSettings.from_config({"mode": "batched", "holdout": 0})  # batched measures Err there
    assert settings.as_dict()["filter_size"] == 30
    assert SmoothSettings.from_config(settings.as_dict()) == settings
    with pytest.raises(ConfigError, match="unknown option.*target_label"):
        SmoothSettings.from_config({"target_label": 1})
    for key, value in [
        ("filter_size", 0),
        ("filter_sigma", 0.0),
        ("max_value", 1.5),
        ("fooling_rate", 0.0),
        ("max_passes", 2.5),
        ("batch_size", True),
        ("overshoot", -0.1),
        ("retarget_min_changed", 1.0),
        ("initial_target", -1),
        ("strength", "big"),
        ("mode", "fast"),
    ]:
        with pytest.raises(ConfigError, match=key):
            SmoothSettings.from_config({key: value})


def test_smooth_trigger_builder(tmp_path):
    assert trigger_needs("smooth") == ("model", "images")
    images = smooth_images(30)
    context = TriggerContext(model=quadrant_model(), images=images, seed=1)
    options = {**FAST, "samples": 10, "holdout": 20, "max_passes": 1, "initial_target": 2}
    trigger = build_trigger("smooth", SIZE, SIZE, options, context)
    assert (trigger.name, trigger.mode, trigger.weight) == ("smooth", "normalise", 1.0)
    best = trigger.meta["history"][trigger.meta["best_pass"]]
    assert trigger.target_label == best["next_target"]  # the authors' mode: target after retarget
    assert trigger.meta["mode"] == trigger.meta["settings"]["mode"] == "authors"
    assert trigger.meta["rate_measured_on"] == "search images, x + v"
    assert isinstance(trigger.meta["reached"], bool) and trigger.meta["stop_reason"]
    assert trigger.meta["best_error_rate"] == pytest.approx(best["error_rate"], abs=1e-6)
    assert trigger.meta["settings"]["samples"] == 10 and "Algorithm 1" in trigger.meta["source"]
    assert trigger.pattern.max() <= 0.2 + 1e-7 and (trigger.mask == 1).all()
    path = tmp_path / "smooth.npz"
    trigger.save(path)
    loaded = Trigger.load(path)
    assert loaded.meta == trigger.meta
    np.testing.assert_array_equal(loaded.apply(images), trigger.apply(images))
    with pytest.raises(ConfigError, match="target_label"):
        build_trigger("smooth", SIZE, SIZE, {"target_label": 0}, context)
    with pytest.raises(ConfigError, match="model"):
        build_trigger("smooth", SIZE, SIZE, {}, TriggerContext(images=images))


# --------------------------------------------------------------------------- the authors' mode


def test_authors_mode_raises_the_fooling_rate_on_the_search_images(authors_run):
    settings, result = authors_run
    history = result.history
    rates = [h["error_rate"] for h in history]
    assert rates[0] == 0.0 and max(rates[1:]) >= 0.3
    assert result.mode == "authors" and result.best_error_rate == pytest.approx(max(rates))
    # A tie goes to the later pass, and the label is the target after that pass's retarget.
    assert result.best_pass == max(i for i, r in enumerate(rates) if r == max(rates))
    assert result.target_label == history[result.best_pass]["next_target"]
    # The rate is the share of search images whose label x + v changes (no min-max).
    model, x = quadrant_model(), to_tensor(smooth_images(60)[: settings.samples])
    v = torch.from_numpy(result.pattern).permute(2, 0, 1)[None]
    with torch.no_grad():
        changed = (model(x + v).argmax(1) != model(x).argmax(1)).float().mean()
    assert float(changed) == pytest.approx(result.best_error_rate)
    assert result.pattern.max() == pytest.approx(settings.max_value) and result.pattern.min() == 0
    assert not result.reached and len(history) == settings.max_passes + 1
    assert result.stop_reason == (
        f"max_passes 4 hit before the fooling rate reached fooling_rate 0.9; best "
        f"{result.best_error_rate:.3f} at pass {result.best_pass}"
    )
    for h in history[1:]:  # images whose label v already changed are skipped, not attacked
        assert h["updates"] + h["skipped"] <= settings.samples
    assert any(h["skipped"] > 0 for h in history[1:])
    assert all("holdout_error_rate" in h for h in history)


def test_authors_mode_is_deterministic(authors_run):
    settings, first = authors_run
    again = generate_smooth_trigger(quadrant_model(), smooth_images(60), settings, seed=3)
    np.testing.assert_array_equal(again.pattern, first.pattern)
    assert again.history == first.history
    assert (again.target_label, again.best_pass) == (first.target_label, first.best_pass)


def test_authors_mode_stops_when_the_current_pass_reaches_the_rate():
    settings = SmoothSettings(**{**FAST, "holdout": 0}, fooling_rate=0.3, initial_target=1)
    result = generate_smooth_trigger(quadrant_model(), smooth_images(20), settings, seed=3)
    rates = [h["error_rate"] for h in result.history]
    assert result.reached and rates[-1] >= 0.3 and all(r < 0.3 for r in rates[:-1])
    assert (
        result.stop_reason
        == f"fooling rate {rates[-1]:.3f} reached fooling_rate 0.3 at pass " + (f"{len(rates) - 1}")
    )
    assert "holdout_error_rate" not in result.history[0]
    with pytest.raises(ValueError, match="reference"):
        generate_smooth_trigger(quadrant_model(), smooth_images(20), settings, reference=True)


class _Recorder:
    """A stand-in for the authors' DeepFool: fixed perturbations, the inputs it was given."""

    def __init__(self, perturbations, steps):
        self.perturbations, self.steps, self.seen = perturbations, steps, []

    def __call__(self, model, x, target, overshoot, max_steps):
        self.seen.append(x.clone())
        k = len(self.seen) - 1
        steps = torch.tensor([self.steps])
        return self.perturbations[k], steps, torch.tensor([True]), torch.tensor([0])


def _constant_model():
    """Predicts class 0 for every input: no trigger changes a label, so no image is skipped."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * SIZE * SIZE, 4))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0]))
    return model.eval()


def _hand_made_g(x, size=30, sigma=6.0):
    """A 'filter' whose place in the update shows: halve and mirror left-right."""
    return 0.5 * x.flip(-1)


def test_authors_update_order_after_each_image(monkeypatch):
    """v = M(g(v + g(dr))) after every converged image, and the next image sees that v."""
    gen = torch.Generator().manual_seed(0)
    perturbations = [torch.randn(1, 3, SIZE, SIZE, generator=gen) for _ in range(2)]
    recorder = _Recorder(perturbations, steps=3)
    monkeypatch.setattr(smooth_search, "lowpass", _hand_made_g)
    monkeypatch.setattr(smooth_search, "deepfool_on_softmax", recorder)
    images = smooth_images(2)
    x = to_tensor(images)
    settings = SmoothSettings(samples=2, holdout=0, max_passes=1, initial_target=1)
    result = generate_smooth_trigger(_constant_model(), images, settings, seed=0)
    assert result.history[1]["updates"] == 2 and len(recorder.seen) == 2
    first = 0 if torch.equal(recorder.seen[0], x[:1]) else 1  # the shuffled order
    assert torch.equal(recorder.seen[0], x[first : first + 1])  # v = 0 for the first image
    v = torch.zeros(1, 3, SIZE, SIZE)
    for k in range(2):
        index = first if k == 0 else 1 - first
        torch.testing.assert_close(recorder.seen[k], x[index : index + 1] + v)  # plain x + v
        v = minmax(_hand_made_g(v + _hand_made_g(perturbations[k])), 0.0, 0.2)
    expected = v[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(result.pattern, expected, atol=1e-7)
    # The other orders would give something else: g(v) + g(dr), or v + g(dr) without a 2nd g.
    v1 = minmax(_hand_made_g(_hand_made_g(perturbations[0])), 0.0, 0.2)
    for wrong in (
        minmax(_hand_made_g(v1) + _hand_made_g(perturbations[1]), 0.0, 0.2),
        minmax(v1 + _hand_made_g(perturbations[1]), 0.0, 0.2),
    ):
        assert not np.allclose(result.pattern, wrong[0].permute(1, 2, 0).numpy(), atol=1e-3)


@pytest.mark.parametrize("steps, applied", [(198, True), (199, False), (200, False)])
def test_authors_convergence_test_is_fewer_than_max_minus_one_steps(monkeypatch, steps, applied):
    """The authors' ``iter < max_iter_df - 1``: a DeepFool that took 199 of 200 steps is dropped."""
    perturbations = [torch.ones(1, 3, SIZE, SIZE)] * 2
    monkeypatch.setattr(smooth_search, "deepfool_on_softmax", _Recorder(perturbations, steps))
    settings = SmoothSettings(
        samples=2, holdout=0, max_passes=1, initial_target=1, filter_size=3, filter_sigma=1.0
    )
    result = generate_smooth_trigger(_constant_model(), smooth_images(2), settings, seed=0)
    assert result.history[1]["updates"] == (2 if applied else 0)
    assert (result.pattern.max() > 0) == applied


def test_authors_mode_attacks_images_already_at_the_target():
    """Only images whose label v changes are skipped: one already predicted as the target gets
    a DeepFool of 0 steps, which counts as converged (the update then re-smooths v)."""
    settings = SmoothSettings(samples=3, holdout=0, max_passes=1, initial_target=0)
    result = generate_smooth_trigger(_constant_model(), smooth_images(3), settings, seed=0)
    record = result.history[1]
    assert (record["updates"], record["skipped"], record["deepfool_steps_mean"]) == (3, 0, 0.0)
    assert record["fooled_search"] == 1.0 and (result.pattern == 0).all()


def test_authors_deviations_text_names_the_choices():
    for phrase in ("softmax", "mode: batched", "max_passes", "x + v", "search images"):
        assert phrase in AUTHORS_DEVIATIONS


# --------------------------------------------------------------------------- naive baselines


def test_lowpass_triggers_are_smooth(rng):
    photos = np.stack(
        [np.asarray(Image.fromarray(np.rint(photo(n) * 255).astype(np.uint8))) for n in PHOTOS]
    )
    mask = high_band_mask(32, 32)
    clean = band_energy(dct2(photos), mask)
    noisy = Trigger(
        name="noise",
        pattern=0.2 * rng.random((32, 32, 3), dtype=np.float32),
        mask=np.ones((32, 32, 3), np.float32),
        mode="normalise",
    )
    noise_ratio = energy_ratio(clean, band_energy(dct2(noisy.apply(photos)), mask), n_boot=50)
    for options in ({}, {"source": "image", "image": "chelsea"}, {"seed": 4, "max_value": 0.1}):
        trigger = build_trigger("lowpass", 32, 32, options)
        assert trigger.mode == "normalise" and trigger.name == "lowpass"
        high = options.get("max_value", 0.2)
        assert trigger.pattern.min() == 0.0 and trigger.pattern.max() == pytest.approx(high)
        assert hf_share(trigger.pattern) < 0.05
        ratio = energy_ratio(clean, band_energy(dct2(trigger.apply(photos)), mask), n_boot=50)
        assert ratio["ratio"] < 1.1 < noise_ratio["ratio"]
    first, again = build_trigger("lowpass", 32, 32), build_trigger("lowpass", 32, 32)
    np.testing.assert_array_equal(first.pattern, again.pattern)
    other = build_trigger("lowpass", 32, 32, {"seed": 1})
    assert not np.array_equal(first.pattern, other.pattern)


def test_lowpass_options_are_checked():
    with pytest.raises(ConfigError, match="unknown option.*colour"):
        build_trigger("lowpass", 32, 32, {"colour": "red"})
    with pytest.raises(ConfigError, match="source"):
        build_trigger("lowpass", 32, 32, {"source": "video"})
    with pytest.raises(ConfigError, match="image"):
        build_trigger("lowpass", 32, 32, {"source": "image"})
    with pytest.raises(ConfigError, match="not_a_photo"):
        build_trigger("lowpass", 32, 32, {"source": "image", "image": "not_a_photo"})
    with pytest.raises(ConfigError, match="max_value"):
        build_trigger("lowpass", 32, 32, {"max_value": 2.0})
