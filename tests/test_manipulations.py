"""The five random manipulations of Section 4.1: what each does, and loop == vectorised."""

import colorsys
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from freqbackdoor.detection import manipulation_batches, shadow
from freqbackdoor.detection.manipulation_batches import (
    apply_manipulations,
    apply_manipulations_loop,
    manipulate,
)
from freqbackdoor.detection.manipulations import MANIPULATIONS, ManipulationParams, draw_parameters
from freqbackdoor.detection.shadow import hls_to_rgb, polygon_mask, rgb_to_hls, shadow_mask
from freqbackdoor.errors import ConfigError

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
    with pytest.raises(ConfigError, match="manipulations: unknown key.*shadow_lightnes;"):
        ManipulationParams.from_config({"shadow_lightnes": 0.9})
    # The keys of the former RGB-darkening shadow are gone, and say so.
    with pytest.raises(ConfigError, match="shadow_weight_max"):
        ManipulationParams.from_config({"shadow_weight_max": 0.85})


def test_shadow_roi_from_a_yaml_list_is_a_tuple():
    params = ManipulationParams.from_config({"shadow_roi": [0, 0.25, 1, 0.75]})
    assert params.shadow_roi == (0.0, 0.25, 1.0, 0.75)
    hash(params)  # still a frozen, hashable dataclass
    assert params.shadow_box(32, 64) == (0, 8, 64, 24)
    assert PARAMS.shadow_box(32, 32) == (0, 16, 32, 32)  # albumentations: int(fraction * size)
    assert PARAMS.shadow_box(224, 224) == (0, 112, 224, 224)


@pytest.mark.parametrize(
    "bad",
    [
        {"block_min": 8},
        {"noise_var_min": 80.0},
        {"shadow_count_min": 3, "shadow_count_max": 2},
    ],
)
def test_from_config_rejects_min_above_max(bad):
    with pytest.raises(ConfigError, match="must be <="):
        ManipulationParams.from_config(bad)


@pytest.mark.parametrize(
    "bad",
    [
        {"block_min": 2.5},
        {"block_min": 0},
        {"margin_max": -1},
        {"blend_weight": 1.5},
        {"shadow_count_min": 0},
        {"shadow_count_max": 1.5},
        {"shadow_vertices": 2},
        {"shadow_lightness": 1.5},
        {"shadow_lightness": "half"},
        {"shadow_roi": [0.0, 0.5, 1.0]},
        {"shadow_roi": [0.0, 0.5, 1.0, 1.5]},
        {"shadow_roi": [0.6, 0.5, 0.4, 1.0]},
        {"shadow_roi": "lower half"},
    ],
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
        assert changed.all(), kind


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


# --------------------------------------------------------------------------- shadow


def cv2_or_skip():
    return pytest.importorskip("cv2", reason="OpenCV (albumentations' dependency) not installed")


def opencv_at_least(cv2, major, minor):
    found = re.match(r"(\d+)\.(\d+)", cv2.__version__)
    return found is not None and (int(found[1]), int(found[2])) >= (major, minor)


def photo_crops(n, size, seed=0):
    """Natural-image pixels (scikit-image photographs), cut into n size x size crops."""
    from skimage import data

    photos = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
    rng = np.random.default_rng(seed)
    crops = []
    for i in range(n):
        photo = photos[i % len(photos)]
        top = rng.integers(0, photo.shape[0] - size)
        left = rng.integers(0, photo.shape[1] - size)
        crops.append(photo[top : top + size, left : left + size])
    return np.ascontiguousarray(np.stack(crops))


def random_polygons(rng, n, size, corners=5, low=None, high=None):
    """(n, corners, 2) integer (x, y) vertices, by default as RandomShadow draws them."""
    x = rng.integers(0 if low is None else low, (size if high is None else high) + 1, (n, corners))
    y = rng.integers(
        size // 2 if low is None else low, (size if high is None else high) + 1, (n, corners)
    )
    return np.stack([x, y], axis=-1)


def cv2_fill(cv2, vertices, height, width):
    """One cv2.fillPoly call per polygon, as albumentations' add_shadow did."""
    masks = np.zeros((len(vertices), height, width), dtype=bool)
    for k, polygon in enumerate(vertices):
        canvas = np.zeros((height, width), dtype=np.uint8)
        cv2.fillPoly(canvas, [np.asarray(polygon, dtype=np.int32)], 255)
        masks[k] = canvas == 255
    return masks


def old_albumentations_shadow(cv2, image, polygons, lightness=0.5):
    """The authors' shadow (albumentations 0.4/0.5 ``add_shadow``), written with OpenCV."""
    hls = cv2.cvtColor(image, cv2.COLOR_RGB2HLS)
    inside = cv2_fill(cv2, polygons, *image.shape[:2]).any(axis=0)
    light = hls[:, :, 1]
    light[inside] = light[inside] * lightness  # float64 stored into uint8: truncated
    return cv2.cvtColor(hls, cv2.COLOR_HLS2RGB)


def colorsys_lightness(pixels):
    """HLS lightness (0..255 scale) of uint8 RGB pixels (M, 3), through colorsys."""
    return np.array([colorsys.rgb_to_hls(*(p / 255.0))[1] * 255.0 for p in pixels])


def test_shadow_draw_follows_random_shadow_defaults():
    for size in (32, 224):
        draw = draw_parameters(4000, size, size, np.random.default_rng(size), PARAMS)
        assert draw.shadow_vertices.shape == (4000, 2, 5, 2)
        assert draw.shadow_vertices.dtype == np.int32
        counts = np.bincount(draw.shadow_count, minlength=3)
        assert counts[0] == 0 and abs(counts[1] - 2000) < 200 and abs(counts[2] - 2000) < 200
        x, y = draw.shadow_vertices[..., 0], draw.shadow_vertices[..., 1]
        # Both ends included (random.randint): at 32 px x in 0..32, y in 16..32.
        assert (x.min(), x.max()) == (0, size)
        assert (y.min(), y.max()) == (size // 2, size)


def test_shadow_darkens_only_inside_polygons_in_the_lower_half():
    images = photo_crops(120, 32)
    draw = draw_for(images, "shadow", seed=4)
    out = apply_manipulations(images, draw, PARAMS)
    inside = shadow_mask(draw.shadow_vertices, draw.shadow_count, 32, 32)
    assert not inside[:, :16].any()  # polygons live in rows 16..32
    assert 0.05 < inside[:, 16:].mean() < 0.6  # shadows of varied, sizeable area
    # Outside the polygons (the whole upper half among them) only the 8-bit HLS round trip
    # shows: at most a few grey levels, and the lightness kept within rounding.
    round_trip = hls_to_rgb(rgb_to_hls(images))
    np.testing.assert_array_equal(out[~inside], round_trip[~inside])
    assert np.abs(out[~inside].astype(int) - images[~inside]).max() <= 5
    pick = np.random.default_rng(1).choice(int((~inside).sum()), 3000, replace=False)
    kept = colorsys_lightness(out[~inside][pick]) - colorsys_lightness(images[~inside][pick])
    assert np.abs(kept).max() <= 1.0 + 1e-6
    # Inside, the HLS lightness is halved. With colorsys (independent of OpenCV and of this
    # module): within 1.25 levels of half the input's (rounding to the 8-bit L: 0.25 after
    # halving, flooring: 0.5, rounding the output's RGB: 0.5); and within the output rounding
    # of floor(L8 / 2) for the 8-bit lightness L8 that the conversion computed.
    rng = np.random.default_rng(0)
    pick = rng.choice(int(inside.sum()), 3000, replace=False)
    before = colorsys_lightness(images[inside][pick])
    after = colorsys_lightness(out[inside][pick])
    np.testing.assert_allclose(after, before / 2, atol=1.25 + 1e-6)
    light8 = rgb_to_hls(images[inside][pick])[:, 1]
    np.testing.assert_allclose(after, light8 // 2, atol=0.5 + 1e-6)
    assert np.all(out[inside].astype(int).sum(-1) <= images[inside].astype(int).sum(-1) + 3)


def test_shadow_has_one_or_two_polygons_united():
    images = photo_crops(60, 32, seed=1)
    draw = draw_for(images, "shadow", seed=5)
    inside = shadow_mask(draw.shadow_vertices, draw.shadow_count, 32, 32)
    first = polygon_mask(draw.shadow_vertices[:, 0], 32, 32)
    second = polygon_mask(draw.shadow_vertices[:, 1], 32, 32)
    one = draw.shadow_count == 1
    assert 0 < one.sum() < len(one)
    np.testing.assert_array_equal(inside[one], first[one])
    np.testing.assert_array_equal(inside[~one], first[~one] | second[~one])
    # Overlaps are darkened once (a union, as one mask), not twice.
    out = apply_manipulations(images, draw, PARAMS)
    both = first & second & ~one[:, None, None]
    assert both.any()
    hls_in, hls_out = rgb_to_hls(images[both]), rgb_to_hls(out[both])
    assert np.all(hls_out[:, 1].astype(int) >= hls_in[:, 1] // 2 - 1)


def test_polygon_mask_of_known_shapes():
    square = np.array([[[2, 2], [5, 2], [5, 5], [2, 5]]])  # (x, y) pixel centres, outline included
    expected = np.zeros((8, 8), bool)
    expected[2:6, 2:6] = True
    np.testing.assert_array_equal(polygon_mask(square, 8, 8)[0], expected)
    point = np.array([[[3, 4]] * 5])
    np.testing.assert_array_equal(np.argwhere(polygon_mask(point, 8, 8)[0]), [[4, 3]])
    triangle = np.array([[[0, 0], [7, 7], [0, 7]]])  # on and below the diagonal
    rows, cols = np.mgrid[0:8, 0:8]
    np.testing.assert_array_equal(polygon_mask(triangle, 8, 8)[0], rows >= cols)
    # A vertex on the image's edge + 1 (as RandomShadow draws at x = W or y = H) is clipped.
    bottom = np.array([[[0, 6], [8, 6], [8, 8], [0, 8]]])
    expected = np.zeros((8, 8), bool)
    expected[6:] = True
    np.testing.assert_array_equal(polygon_mask(bottom, 8, 8)[0], expected)
    assert not polygon_mask(np.array([[[9, 9], [12, 9], [12, 12]]]), 8, 8).any()  # all outside
    # A self-intersecting "bow tie" is filled even-odd: two triangles meeting at the centre.
    bow = polygon_mask(np.array([[[0, 0], [6, 6], [6, 0], [0, 6]]]), 7, 7)[0]
    assert bow[3, 0] and bow[3, 6] and bow[3, 3] and not bow[0, 3] and not bow[6, 3]


def test_polygon_mask_holds_its_vertices_and_stays_in_their_box():
    rng = np.random.default_rng(3)
    vertices = random_polygons(rng, 500, 40, corners=6, low=-5, high=45)
    masks = polygon_mask(vertices, 32, 40)
    for polygon, mask in zip(vertices, masks, strict=True):
        x, y = polygon[:, 0], polygon[:, 1]
        seen = (x >= 0) & (x < 40) & (y >= 0) & (y < 32)
        assert mask[y[seen], x[seen]].all()  # the outline passes through every vertex
        rows, cols = np.nonzero(mask)
        if rows.size:
            assert rows.min() >= y.min() and rows.max() <= y.max()
            assert cols.min() >= x.min() and cols.max() <= x.max()


@pytest.mark.parametrize("size", [32, 48, 224])
def test_polygon_mask_matches_cv2_fillpoly(size):
    cv2 = cv2_or_skip()
    if not opencv_at_least(cv2, 4, 11):
        pytest.skip(
            f"OpenCV {cv2.__version__} < 4.11 fills polygons slightly differently at clipped "
            "edges (opencv pull requests 23076, 26187); polygon_mask follows 4.11 and later"
        )
    rng = np.random.default_rng(size)
    count = 4000 if size < 224 else 300
    vertices = random_polygons(rng, count, size)
    np.testing.assert_array_equal(
        polygon_mask(vertices, size, size), cv2_fill(cv2, vertices, size, size)
    )
    # Any number of vertices, anywhere (also left of and above the image).
    for corners in (3, 4, 7):
        vertices = random_polygons(rng, count // 4, size, corners=corners, low=-8, high=size + 8)
        np.testing.assert_array_equal(
            polygon_mask(vertices, size, size), cv2_fill(cv2, vertices, size, size)
        )


def test_rgb_to_hls_matches_cv2():
    cv2 = cv2_or_skip()
    everything = np.arange(1 << 24, dtype=np.uint32)[::7]  # 2.4 million colours
    rgb = np.stack([everything >> 16, (everything >> 8) & 255, everything & 255], -1)
    rgb = rgb.astype(np.uint8).reshape(1, -1, 3)[:, : (1 << 24) // 7 // 64 * 64]
    # Hue ties that depend on OpenCV's fused multiply-add, and a few greys, in a 32x32 image:
    # OpenCV's vector code (which fuses) handles every pixel of a buffer whose length is a
    # multiple of the vector width; a shorter tail takes its scalar code, which does not.
    ties = [[12, 23, 24], [12, 24, 23], [255, 211, 244], [255, 231, 241], [255, 235, 242]]
    extra = np.array(ties + [[0, 0, 0], [255, 255, 255], [128, 128, 128]], dtype=np.uint8)
    image = np.resize(extra, (32, 32, 3))
    for batch in (rgb, image):
        np.testing.assert_array_equal(rgb_to_hls(batch), cv2.cvtColor(batch, cv2.COLOR_RGB2HLS))


def test_hls_to_rgb_matches_cv2():
    cv2 = cv2_or_skip()
    everything = np.arange(1 << 24, dtype=np.uint32)[::5]  # every hue 0..255, lightness, saturation
    hls = np.stack([everything >> 16, (everything >> 8) & 255, everything & 255], -1)
    hls = hls.astype(np.uint8).reshape(1, -1, 3)[:, : (1 << 24) // 5 // 64 * 64]
    np.testing.assert_array_equal(hls_to_rgb(hls), cv2.cvtColor(hls, cv2.COLOR_HLS2RGB))


def test_hls_conversions_agree_with_colorsys():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (3000, 3), dtype=np.uint8)
    hls = rgb_to_hls(rgb).astype(float)
    expected = np.array([colorsys.rgb_to_hls(*(p / 255.0)) for p in rgb])
    np.testing.assert_allclose(hls[:, 1], expected[:, 1] * 255, atol=0.5 + 1e-6)
    np.testing.assert_allclose(hls[:, 2], expected[:, 2] * 255, atol=0.5 + 1e-6)
    hue_error = np.abs(hls[:, 0] - expected[:, 0] * 180)
    assert np.all(np.minimum(hue_error, 180 - hue_error) <= 0.5 + 1e-6)
    back = hls_to_rgb(rgb_to_hls(rgb)).astype(int)
    assert np.abs(back - rgb).max() <= 5  # the 8-bit round trip is lossy, by a few levels


def test_hls_weights_reproduce_the_high_level_exactly():
    # hls_to_rgb writes every channel as p1 + (p2 - p1) * w: exact for w = 1 only because
    # p1 + (p2 - p1) == p2 for every 8-bit lightness and saturation.
    light = (np.arange(256, dtype=np.float32) * np.float32(1 / 255))[:, None]
    sat = (np.arange(256, dtype=np.float32) * np.float32(1 / 255))[None, :]
    bright = light > np.float32(0.5)
    high = np.where(bright, light + sat - light * sat, light * (np.float32(1) + sat))
    low = np.float32(2) * light - high
    assert high.dtype == np.float32
    np.testing.assert_array_equal(low + (high - low), high)


def test_shadow_matches_the_authors_albumentations_shadow():
    cv2 = cv2_or_skip()
    for size, n in ((32, 300), (224, 6)):
        images = photo_crops(n, size, seed=size)
        draw = draw_for(images, "shadow", seed=size + 1)
        out = apply_manipulations(images, draw, PARAMS)
        for i in range(n):
            polygons = draw.shadow_vertices[i, : draw.shadow_count[i]]
            np.testing.assert_array_equal(
                out[i], old_albumentations_shadow(cv2, images[i], polygons)
            )


def test_shadow_region_matches_albumentations_2_add_shadow():
    pytest.importorskip("albumentations", reason="albumentations (a test dependency) not installed")
    from albumentations.augmentations.pixel import functional as fpixel

    images = photo_crops(40, 32, seed=7)
    images = np.maximum(images, 2)  # so that halving changes every pixel it touches
    draw = draw_for(images, "shadow", seed=8)
    inside = shadow_mask(draw.shadow_vertices, draw.shadow_count, 32, 32)
    for i in range(len(images)):
        polygons = [p.astype(np.int32) for p in draw.shadow_vertices[i, : draw.shadow_count[i]]]
        # albumentations 2 darkens RGB by (1 - intensity) polygon after polygon (no HLS); its
        # region is the same cv2.fillPoly one.
        theirs = fpixel.add_shadow(images[i], polygons, np.full(len(polygons), 0.5))
        np.testing.assert_array_equal((theirs != images[i]).any(axis=-1), inside[i])


def test_shadow_is_deterministic_per_seed():
    images = photo_crops(40, 32, seed=2)
    first = draw_for(images, "shadow", seed=11)
    again = draw_for(images, "shadow", seed=11)
    other = draw_for(images, "shadow", seed=12)
    np.testing.assert_array_equal(first.shadow_vertices, again.shadow_vertices)
    np.testing.assert_array_equal(first.shadow_count, again.shadow_count)
    out = apply_manipulations(images, first, PARAMS)
    np.testing.assert_array_equal(out, apply_manipulations(images, again, PARAMS))
    assert not np.array_equal(out, apply_manipulations(images, other, PARAMS))


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
    # Tiny chunks: the noise stream is drawn in pieces, which must not change it; shadows are
    # rasterised and converted a few images at a time.
    monkeypatch.setattr(manipulation_batches, "_CHUNK_ELEMENTS", 3 * 32 * 32 * 3)
    monkeypatch.setattr(shadow, "_SHADOW_PIXELS", 1000)  # slices cut through images
    images = random_images(200, 32, seed=9)
    draw = draw_parameters(200, 32, 32, np.random.default_rng(10), PARAMS)
    np.testing.assert_array_equal(
        apply_manipulations(images, draw, PARAMS), apply_manipulations_loop(images, draw, PARAMS)
    )


def test_vectorised_equals_loop_with_other_params_and_a_pool():
    params = ManipulationParams(
        block_min=1,
        block_max=3,
        margin_max=0,
        noise_mean=-10.0,
        shadow_count_min=1,
        shadow_count_max=3,
        shadow_vertices=4,
        shadow_roi=(0.25, 0.0, 0.75, 0.5),
        shadow_lightness=0.3,
    )
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
