"""Triggers on data: shape, dtype, range, location, determinism, file round trip, bad options."""

import numpy as np
import pytest
from PIL import Image

from freqbackdoor.errors import ConfigError, DataError
from freqbackdoor.triggers import Trigger, available_triggers, build_trigger, save_preview


def test_registry_lists_first_triggers():
    assert {"badnets", "blend"} <= set(available_triggers())
    with pytest.raises(ConfigError, match="unknown trigger 'nope'"):
        build_trigger("nope", 32, 32)


def test_badnets_at_32_matches_the_authors_square(images32):
    """The authors set rows/cols 27..30 of a 32x32 image to 1.0."""
    out = build_trigger("badnets", 32, 32).apply(images32)
    assert out.dtype == np.uint8 and out.shape == images32.shape
    assert (out[:, 27:31, 27:31] == 255).all()
    outside = np.ones((32, 32), bool)
    outside[27:31, 27:31] = False
    np.testing.assert_array_equal(out[:, outside], images32[:, outside])


def test_badnets_scales_with_input_size(rng):
    images = rng.integers(0, 255, size=(2, 224, 224, 3), dtype=np.uint8)
    trigger = build_trigger("badnets", 224, 224)
    out = trigger.apply(images)
    changed = (out != images).any(axis=(0, 3))
    rows, cols = np.nonzero(changed)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (189, 216, 189, 216)
    assert trigger.meta["square_px"] == [28, 28]


def test_badnets_options_and_errors(images32):
    out = build_trigger("badnets", 32, 32, {"size": 3, "margin": 0, "target_label": 7})
    assert (out.apply(images32)[:, 29:32, 29:32] == 255).all()
    assert out.target_label == 7
    with pytest.raises(ConfigError, match="triggers.badnets: unknown option.*colour"):
        build_trigger("badnets", 32, 32, {"colour": "red"})
    with pytest.raises(ConfigError, match="does not fit"):
        build_trigger("badnets", 32, 32, {"size": 40})


def test_blend_is_additive_and_clipped_like_the_authors(images32):
    trigger = build_trigger("blend", 32, 32)
    assert trigger.mode == "additive" and trigger.weight == pytest.approx(0.2)
    out = trigger.apply(images32)
    x = images32 / 255.0
    expected = np.rint(np.clip(x + 0.2 * trigger.pattern, 0, 1) * 255)
    np.testing.assert_array_equal(out, expected.astype(np.uint8))
    assert (out >= images32).all()  # additive with a non-negative pattern never darkens


def test_convex_blend_mode(images32):
    trigger = build_trigger("blend", 32, 32, {"mode": "blend", "weight": 0.5})
    out = trigger.apply(images32).astype(float)
    expected = 0.5 * images32 + 0.5 * trigger.pattern * 255
    assert np.abs(out - expected).max() <= 0.5 + 1e-6


def test_blend_from_an_image_file(tmp_path, images32):
    path = tmp_path / "pattern.png"
    Image.fromarray(np.full((10, 20, 3), 200, np.uint8)).save(path)
    trigger = build_trigger("blend", 32, 32, {"image": str(path)})
    np.testing.assert_allclose(trigger.pattern, 200 / 255, atol=1e-6)
    with pytest.raises(DataError, match="missing.png"):
        build_trigger("blend", 32, 32, {"image": str(tmp_path / "missing.png")})
    with pytest.raises(ConfigError, match="weight"):
        build_trigger("blend", 32, 32, {"weight": 1.5})
    with pytest.raises(ConfigError, match="not_a_photo"):
        build_trigger("blend", 32, 32, {"image": "not_a_photo"})


@pytest.mark.parametrize("name", ["badnets", "blend"])
def test_triggers_are_deterministic_and_round_trip(tmp_path, images32, name):
    first = build_trigger(name, 32, 32)
    second = build_trigger(name, 32, 32)
    np.testing.assert_array_equal(first.pattern, second.pattern)
    path = tmp_path / f"{name}.npz"
    first.save(path)
    loaded = Trigger.load(path)
    assert (loaded.name, loaded.mode, loaded.weight) == (first.name, first.mode, first.weight)
    assert loaded.meta == first.meta
    np.testing.assert_array_equal(loaded.apply(images32), first.apply(images32))


def test_apply_is_chunk_invariant(images32):
    trigger = build_trigger("blend", 32, 32)
    np.testing.assert_array_equal(trigger.apply(images32, chunk_size=3), trigger.apply(images32))


def test_apply_rejects_wrong_size_and_dtype(images32):
    trigger = build_trigger("badnets", 64, 64)
    with pytest.raises(ValueError, match="64x64 but the images are 32x32"):
        trigger.apply(images32)
    with pytest.raises(ValueError, match="uint8"):
        trigger.apply(images32.astype(np.float32))


def test_corrupt_trigger_file_is_named(tmp_path):
    path = tmp_path / "bad.npz"
    path.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="bad.npz"):
        Trigger.load(path)


def test_preview_is_written(tmp_path, images32):
    path = tmp_path / "preview.png"
    save_preview(build_trigger("badnets", 32, 32), images32[0], path)
    with Image.open(path) as img:
        assert img.size[1] == 128 and img.mode == "RGB"
