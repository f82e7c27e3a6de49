"""The five random manipulations of Section 4.1: what each does, and loop == vectorised."""

from pathlib import Path

import numpy as np
import pytest
import yaml
from matplotlib.path import Path as MplPath

from freqbackdoor import manipulations as man
from freqbackdoor.errors import ConfigError
from freqbackdoor.manipulations import (
    MANIPULATIONS,
    ManipulationParams,
    apply_manipulations,
    apply_manipulations_loop,
    draw_parameters,
    manipulate,
    polygon_mask,
)

PARAMS = ManipulationParams()
CONFIG = Path(__file__).resolve().parents[1] / "config" / "config.yaml"


def random_images(n, size, seed=0, low=0, high=256):
    return np.random.default_rng(seed).integers(low, high, (n, size, size, 3), dtype=np.uint8)


def draw_for(images, kind, seed=1, pool_size=None):
    n, height, width = images.shape[:3]
    rng = np.random.default_rng(seed)
    return draw_parameters(n, height, width, rng, PARAMS, kinds=kind, pool_size=pool_size)


def block_region(draw, i):
    top, left = draw.block_origin()
    rows, cols = draw.block_size[i]
    return slice(top[i], top[i] + rows), slice(left[i], left[i] + cols)


def bounding_box(mask):
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return rows[0], rows[-1], cols[0], cols[-1]


# --------------------------------------------------------------------------- parameters


def test_params_from_config_match_the_paper_defaults():
    cfg = yaml.safe_load(CONFIG.read_text())["manipulations"]
    assert ManipulationParams.from_config(cfg) == ManipulationParams()
    assert ManipulationParams.from_config({}) == ManipulationParams()
    assert ManipulationParams.from_config({"blend_weight": 0.2}).blend_weight == 0.2


def test_from_config_rejects_unknown_keys_naming_them():
    with pytest.raises(ConfigError, match="shadow_weigth_max"):
        ManipulationParams.from_config({"shadow_weigth_max": 0.9})


@pytest.mark.parametrize(
    "bad",
    [
        {"block_min": 8},
        {"noise_var_min": 80.0},
        {"shadow_weight_min": 0.9, "shadow_weight_max": 0.8},
    ],
)
def test_from_config_rejects_min_above_max(bad):
    with pytest.raises(ConfigError, match="must be <="):
        ManipulationParams.from_config(bad)


@pytest.mark.parametrize(
    "bad",
    [{"block_min": 2.5}, {"block_min": 0}, {"margin_max": -1}, {"blend_weight": 1.5}],
)
def test_params_reject_bad_values(bad):
    with pytest.raises(ConfigError, match=next(iter(bad))):
        ManipulationParams(**bad)


def test_geometry_scales_with_the_image():
    assert PARAMS.geometry(32, 32) == (2, 7, 5)
    assert PARAMS.geometry(224, 224) == (14, 49, 35)
    assert PARAMS.geometry(64, 64) == (4, 14, 10)
    assert PARAMS.geometry(8, 8) == (1, 2, 1)  # at least 1 px
    with pytest.raises(ValueError, match="does not fit"):
        ManipulationParams(block_max=20, margin_max=15).geometry(32, 32)
    with pytest.raises(ValueError, match="does not fit"):
        PARAMS.geometry(224, 40)


def test_block_sizes_and_margins_at_224_cover_the_scaled_ranges():
    draw = draw_parameters(20000, 224, 224, np.random.default_rng(0), PARAMS)
    assert draw.block_size.min() == 14 and draw.block_size.max() == 49
    assert draw.margin.min() == 0 and draw.margin.max() == 35
    assert draw.block_values.shape[1:] == (49, 49, 3)


# --------------------------------------------------------------------------- the draw


def test_kinds_are_roughly_uniform():
    draw = draw_parameters(10000, 32, 32, np.random.default_rng(0), PARAMS)
    counts = np.bincount(draw.kind, minlength=len(MANIPULATIONS))
    assert np.all(np.abs(counts - 2000) < 200), counts  # 5 standard deviations
    assert set(np.unique(draw.corner)) == {0, 1, 2, 3}
    assert draw.noise_std.min() ** 2 >= 10 - 1e-4 and draw.noise_std.max() ** 2 <= 70 + 1e-4
    assert draw.shadow_weight.min() >= 0.6 and draw.shadow_weight.max() <= 0.85


def test_kinds_argument_accepts_names_indices_and_scalars():
    rng = np.random.default_rng(0)
    names = ["shadow", "blend", "white_block"]
    assert draw_parameters(3, 32, 32, rng, PARAMS, kinds=names).kind_names() == names
    assert list(draw_parameters(3, 32, 32, rng, PARAMS, kinds=[3, 4, 0]).kind) == [3, 4, 0]
    assert set(draw_parameters(4, 32, 32, rng, PARAMS, kinds="blend").kind_names()) == {"blend"}
    with pytest.raises(ValueError, match="unknown manipulation"):
        draw_parameters(2, 32, 32, rng, PARAMS, kinds=["shadow", "glitter"])
    with pytest.raises(ValueError, match="0..4"):
        draw_parameters(2, 32, 32, rng, PARAMS, kinds=[0, 5])
    with pytest.raises(ValueError, match="shape"):
        draw_parameters(2, 32, 32, rng, PARAMS, kinds=[0, 1, 2])


def test_blend_partner_is_another_image_of_the_batch():
    draw = draw_parameters(500, 32, 32, np.random.default_rng(0), PARAMS, kinds="blend")
    assert np.all(draw.partner != np.arange(500))
    assert draw.partner.min() >= 0 and draw.partner.max() < 500
    assert len(np.unique(draw.partner)) > 300
    other = draw_parameters(50, 32, 32, np.random.default_rng(0), PARAMS, kinds="white_block")
    assert np.all(other.partner == -1)
    with pytest.raises(ValueError, match="another image"):
        draw_parameters(1, 32, 32, np.random.default_rng(0), PARAMS, kinds="blend")


# --------------------------------------------------------------------------- each kind


@pytest.mark.parametrize("size", [32, 224])
def test_dtype_shape_preserved_and_input_untouched(size):
    images = random_images(20, size)
    before = images.copy()
    out = manipulate(images, np.random.default_rng(3))
    assert out.dtype == np.uint8 and out.shape == images.shape
    np.testing.assert_array_equal(images, before)
    assert not np.array_equal(out, images)


def test_every_kind_changes_every_image():
    images = random_images(100, 32, low=30, high=220)
    for kind in MANIPULATIONS:
        out = apply_manipulations(images, draw_for(images, kind), PARAMS)
        changed = (out != images).any(axis=(1, 2, 3))
        # A shadow polygon can be too thin to cover a pixel centre; the rest always change.
        assert changed.mean() >= (0.9 if kind == "shadow" else 1.0), kind


@pytest.mark.parametrize("size", [32, 224])
def test_white_block_is_a_corner_rectangle_with_scaled_size_and_margin(size):
    images = random_images(40, size, high=200)  # no 255 in the input
    draw = draw_for(images, "white_block")
    out = apply_manipulations(images, draw, PARAMS)
    block_min, block_max, margin_max = PARAMS.geometry(size, size)
    for i in range(len(images)):
        white = (out[i] == 255).all(axis=-1)
        top, bottom, left, right = bounding_box(white)
        assert white[top : bottom + 1, left : right + 1].all()  # a filled rectangle
        assert block_min <= bottom - top + 1 <= block_max
        assert block_min <= right - left + 1 <= block_max
        # Same margin from both edges of one corner.
        vertical = min(top, size - 1 - bottom)
        horizontal = min(left, size - 1 - right)
        assert vertical == horizontal <= margin_max
        changed = (out[i] != images[i]).any(axis=-1)
        np.testing.assert_array_equal(changed, white)


def test_random_block_holds_the_drawn_values_at_a_corner():
    images = np.full((60, 32, 32, 3), 128, dtype=np.uint8)
    draw = draw_for(images, "random_block")
    out = apply_manipulations(images, draw, PARAMS)
    for i in range(len(images)):
        rows, cols = block_region(draw, i)
        height, width = draw.block_size[i]
        changed = (out[i] != images[i]).any(axis=-1)
        assert bounding_box(changed) == (rows.start, rows.stop - 1, cols.start, cols.stop - 1)
        np.testing.assert_array_equal(out[i, rows, cols], draw.block_values[i, :height, :width])
        margin = draw.margin[i]
        assert rows.start == margin or rows.stop == 32 - margin
        assert cols.start == margin or cols.stop == 32 - margin
    values = out[out != 128]
    assert values.min() < 30 and values.max() > 225  # uniform over 0..255


def test_gaussian_noise_shifts_mid_grey_by_the_mean_with_the_drawn_std():
    images = np.full((300, 32, 32, 3), 100, dtype=np.uint8)
    draw = draw_for(images, "gaussian_noise")
    out = apply_manipulations(images, draw, PARAMS)
    delta = out.astype(np.float64) - images
    assert abs(delta.mean() - 25.0) < 0.2
    per_image_std = delta.reshape(len(images), -1).std(axis=1)
    # Rounding adds variance 1/12; 3072 values give the std within a few percent.
    expected = np.sqrt(draw.noise_std.astype(np.float64) ** 2 + 1 / 12)
    np.testing.assert_allclose(per_image_std, expected, rtol=0.06)
    assert delta.std() > np.sqrt(10)  # independent per pixel and channel


def test_gaussian_noise_is_clipped_to_the_pixel_range():
    images = np.full((20, 32, 32, 3), 250, dtype=np.uint8)
    out = apply_manipulations(images, draw_for(images, "gaussian_noise"), PARAMS)
    assert out.max() == 255 and (out == 255).mean() > 0.9


def test_shadow_darkens_inside_the_polygon_only():
    images = random_images(200, 32, low=40)
    draw = draw_for(images, "shadow")
    out = apply_manipulations(images, draw, PARAMS)
    masks = polygon_mask(draw.shadow_vertices, 32, 32)
    x, y = images.astype(np.float64), out.astype(np.float64)
    changed = out != images
    assert np.all(masks[..., None] | ~changed)  # nothing changes outside the polygon
    assert np.all(y <= x)
    ratio = y[changed] / x[changed]
    slack = 0.5 / x[changed]  # rounding to an integer
    assert np.all(ratio >= 0.6 - slack - 1e-6) and np.all(ratio <= 0.85 + slack + 1e-6)
    inside = np.broadcast_to(masks[..., None], images.shape)
    weight = np.broadcast_to(draw.shadow_weight[:, None, None, None], images.shape)
    np.testing.assert_allclose(y[inside], np.rint(x[inside] * weight[inside]), atol=1)
    assert 0.05 < masks.mean() < 0.5  # shadows of varied, sizeable area


def test_polygon_mask_matches_a_point_in_polygon_oracle():
    draw = draw_parameters(300, 32, 32, np.random.default_rng(5), PARAMS)
    masks = polygon_mask(draw.shadow_vertices, 32, 32)
    rows, cols = np.mgrid[0:32, 0:32] + 0.5
    centres = np.column_stack([rows.ravel(), cols.ravel()])
    mismatches = 0
    for i in range(len(draw)):
        count = draw.shadow_num_vertices[i]
        path = MplPath(draw.shadow_vertices[i, :count].astype(np.float64))
        expected = path.contains_points(centres).reshape(32, 32)
        mismatches += int((expected != masks[i]).sum())
    assert mismatches <= 5  # only centres lying on an edge may be decided differently


def test_polygon_mask_of_a_known_square_and_triangle():
    square = np.array([[[2, 2], [2, 6], [6, 6], [6, 2], [6, 2]]], dtype=np.float32)
    mask = polygon_mask(square, 8, 8)[0]
    expected = np.zeros((8, 8), bool)
    expected[2:6, 2:6] = True
    np.testing.assert_array_equal(mask, expected)
    triangle = np.array([[[0, 0], [8, 0], [8, 8]]], dtype=np.float32)  # below the diagonal
    mask = polygon_mask(triangle, 8, 8)[0]
    rows, cols = np.mgrid[0:8, 0:8]
    np.testing.assert_array_equal(mask[rows != cols], (rows > cols)[rows != cols])


def test_blend_adds_a_weighted_partner_clipped():
    images = random_images(100, 32)
    draw = draw_for(images, "blend")
    out = apply_manipulations(images, draw, PARAMS)
    partner = images[draw.partner].astype(np.float32)
    expected = np.clip(np.rint(images.astype(np.float32) + np.float32(0.3) * partner), 0, 255)
    np.testing.assert_array_equal(out, expected.astype(np.uint8))
    exact = np.clip(images + 0.3 * images[draw.partner].astype(np.float64), 0, 255)
    assert np.abs(out - exact).max() <= 0.5 + 1e-6


def test_blend_from_a_separate_pool():
    images = random_images(30, 32, seed=1)
    pool = random_images(7, 32, seed=2)
    draw = draw_for(images, "blend", pool_size=len(pool))
    assert draw.partner.max() < 7
    out = apply_manipulations(images, draw, PARAMS, pool=pool)
    expected = np.rint(images.astype(np.float32) + np.float32(0.3) * pool[draw.partner])
    np.testing.assert_array_equal(out, np.clip(expected, 0, 255).astype(np.uint8))
    np.testing.assert_array_equal(apply_manipulations_loop(images, draw, PARAMS, pool), out)
    with pytest.raises(ValueError, match="pool"):
        apply_manipulations(images, draw, PARAMS, pool=pool[:2])


# --------------------------------------------------------------------------- loop == vectorised


@pytest.mark.parametrize(("size", "n"), [(32, 600), (224, 40)])
def test_vectorised_equals_loop_bit_for_bit(size, n):
    images = random_images(n, size, seed=size)
    draw = draw_parameters(n, size, size, np.random.default_rng(size + 1), PARAMS)
    assert set(np.unique(draw.kind)) == set(range(len(MANIPULATIONS)))
    fast = apply_manipulations(images, draw, PARAMS)
    slow = apply_manipulations_loop(images, draw, PARAMS)
    np.testing.assert_array_equal(fast, slow)


def test_vectorised_equals_loop_across_chunk_boundaries(monkeypatch):
    # Tiny chunks: the noise stream is drawn in pieces, which must not change it.
    monkeypatch.setattr(man, "_CHUNK_ELEMENTS", 3 * 32 * 32 * 3)
    images = random_images(200, 32, seed=9)
    draw = draw_parameters(200, 32, 32, np.random.default_rng(10), PARAMS)
    np.testing.assert_array_equal(
        apply_manipulations(images, draw, PARAMS), apply_manipulations_loop(images, draw, PARAMS)
    )


def test_vectorised_equals_loop_with_other_params_and_a_pool():
    params = ManipulationParams(block_min=1, block_max=3, margin_max=0, noise_mean=-10.0)
    images = random_images(100, 48, seed=3)
    pool = random_images(5, 48, seed=4)
    draw = draw_parameters(100, 48, 48, np.random.default_rng(0), params, pool_size=5)
    np.testing.assert_array_equal(
        apply_manipulations(images, draw, params, pool),
        apply_manipulations_loop(images, draw, params, pool),
    )


# --------------------------------------------------------------------------- seeding and input checks


def test_seeded_determinism():
    images = random_images(50, 32)
    first = manipulate(images, np.random.default_rng(7))
    np.testing.assert_array_equal(first, manipulate(images, np.random.default_rng(7)))
    assert not np.array_equal(first, manipulate(images, np.random.default_rng(8)))


def test_inputs_are_checked_against_the_draw():
    images = random_images(4, 32)
    draw = draw_for(images, "shadow")
    with pytest.raises(ValueError, match="uint8"):
        apply_manipulations(images.astype(np.float32) / 255, draw, PARAMS)
    with pytest.raises(ValueError, match="do not match"):
        apply_manipulations(images[:3], draw, PARAMS)
    with pytest.raises(ValueError, match="N x H x W x 3"):
        apply_manipulations(images[..., 0], draw, PARAMS)
