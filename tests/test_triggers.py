"""Triggers on data: shape, dtype, range, location, determinism, file round trip, bad options."""

import numpy as np
import pytest
from PIL import Image

from freqbackdoor.errors import ConfigError, DataError
from freqbackdoor.triggers.images import save_preview
from freqbackdoor.triggers.registry import Trigger, available_triggers, build_trigger


def test_registry_lists_first_triggers():
    assert {"badnets", "blend", "nature", "gan_tri"} <= set(available_triggers())
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


# --------------------------------------------------------------------------- nature


def test_nature_sits_where_the_authors_mug_does(images32):
    """The authors' mug covers rows 18..29 (cols 17..30) of 32x32; ours is a 12-px square there."""
    trigger = build_trigger("nature", 32, 32)
    assert trigger.mode == "additive" and trigger.weight == 1.0
    rows, cols = np.nonzero(trigger.mask[..., 0])
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (18, 29, 18, 29)
    assert trigger.mask.sum() == 12 * 12 * 3
    assert 0.0 <= trigger.pattern.min() and trigger.pattern.max() <= 1.0
    assert trigger.pattern[18:30, 18:30].std() > 0.05  # a photograph, not a flat colour
    assert (trigger.pattern[trigger.mask == 0] == 0).all()


def test_nature_changes_only_the_patch_and_adds(images32):
    trigger = build_trigger("nature", 32, 32, {"target_label": 3})
    out = trigger.apply(images32)
    assert out.dtype == np.uint8 and out.shape == images32.shape and trigger.target_label == 3
    outside = trigger.mask[..., 0] == 0
    np.testing.assert_array_equal(out[:, outside], images32[:, outside])
    expected = np.rint(np.clip(images32 / 255.0 + trigger.pattern, 0, 1) * 255).astype(np.uint8)
    np.testing.assert_array_equal(out, expected)
    assert (out >= images32).all()
    assert (out[:, 18:30, 18:30] != images32[:, 18:30, 18:30]).any()


def test_nature_is_deterministic_and_round_trips(tmp_path, images32):
    first, second = build_trigger("nature", 32, 32), build_trigger("nature", 32, 32)
    np.testing.assert_array_equal(first.pattern, second.pattern)
    path = tmp_path / "nature.npz"
    first.save(path)
    loaded = Trigger.load(path)
    assert loaded.meta == first.meta and loaded.mode == "additive"
    np.testing.assert_array_equal(loaded.apply(images32), first.apply(images32))


def test_nature_scales_with_input_size(rng):
    trigger = build_trigger("nature", 224, 224)
    rows, cols = np.nonzero(trigger.mask[..., 0])
    # 12 px -> 84 px, 2 px margin -> 14 px at 224.
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (126, 209, 126, 209)
    assert trigger.meta["patch_px"] == [84, 84]
    images = rng.integers(0, 200, size=(2, 224, 224, 3), dtype=np.uint8)
    changed = (trigger.apply(images) != images).any(axis=(0, 3))
    assert changed[126:210, 126:210].mean() > 0.5 and not changed[:126].any()
    small = build_trigger("nature", 32, 32).pattern[18:30, 18:30]
    big = trigger.pattern[126:210, 126:210]
    shrunk = np.asarray(
        Image.fromarray((big * 255).astype(np.uint8)).resize((12, 12), Image.Resampling.BOX)
    )
    assert np.abs(shrunk / 255.0 - small).mean() < 0.08  # the same cup at both sizes


def test_nature_options_and_errors(tmp_path):
    path = tmp_path / "patch.png"
    picture = np.zeros((20, 40, 3), np.uint8)
    picture[:, 20:] = 255  # left half black, right half white
    Image.fromarray(picture).save(path)
    whole = build_trigger("nature", 32, 32, {"image": str(path), "size": 8, "margin": 0})
    assert whole.mask[24:32, 24:32].all() and whole.mask.sum() == 8 * 8 * 3
    right = build_trigger("nature", 32, 32, {"image": str(path), "crop": [0, 0.5, 1, 1]})
    np.testing.assert_allclose(right.pattern[right.mask == 1], 1.0, atol=1e-6)
    with pytest.raises(ConfigError, match="crop"):
        build_trigger("nature", 32, 32, {"crop": [0.5, 0, 0.2, 1]})
    with pytest.raises(ConfigError, match="crop"):
        build_trigger("nature", 32, 32, {"crop": [0, 0, 1]})
    with pytest.raises(ConfigError, match="does not fit"):
        build_trigger("nature", 32, 32, {"size": 32, "margin": 2})
    with pytest.raises(ConfigError, match="unknown option.*colour"):
        build_trigger("nature", 32, 32, {"colour": 1})


# --------------------------------------------------------------------------- file format


def test_files_without_generator_entry_still_load(tmp_path, images32):
    """The layout written before generator triggers existed (pattern, mask, fields) loads."""
    import json

    trigger = build_trigger("badnets", 32, 32)
    path = tmp_path / "old.npz"
    fields = {"name": "badnets", "mode": "replace", "weight": 1.0, "target_label": 0, "meta": {}}
    np.savez_compressed(
        path, pattern=trigger.pattern, mask=trigger.mask, fields=np.array(json.dumps(fields))
    )
    loaded = Trigger.load(path)
    assert loaded.generator is None
    np.testing.assert_array_equal(loaded.apply(images32), trigger.apply(images32))


def test_generator_mode_needs_weights():
    zeros = np.zeros((4, 4, 3), np.float32)
    with pytest.raises(ValueError, match="generator"):
        Trigger(name="g", pattern=zeros, mask=zeros, mode="generator")
