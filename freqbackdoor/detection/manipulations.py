"""The five random image manipulations that stand in for triggers when training the detector.

Section 4.1 of the paper trains the frequency detector without ever seeing a real trigger: the
"poisoned" class is made of clean images altered by one of five random digital manipulations
(Appendix C, Figure 5 shows examples). They follow the two ways triggers are patched onto
images, replacing a local patch or adding a pattern everywhere, and so leave the same kind of
high-frequency artifacts:

1. ``white_block``: a white rectangle, 2..7 px per side, at a random corner, 0..5 px from both
   edges of that corner;
2. ``random_block``: the same rectangle filled with uniformly random pixel values;
3. ``gaussian_noise``: additive Gaussian noise of mean 25 and variance uniform in 10..70 (pixel
   scale 0..255, so ``std = sqrt(variance)``), independent for every pixel and channel;
4. ``shadow``: one or two random 5-vertex polygons in the lower half of the image inside which
   the HLS lightness is halved;
5. ``blend``: ``clip(x + 0.3 * other)`` where ``other`` is another image of the batch (never the
   image itself) or of a separate pool.

The authors' notebook (``Train_Detection.ipynb``) does this one image at a time with NumPy and
albumentations (a 2020-21 release, 0.x): the block sides are drawn independently (a
rectangle), the margin is shared by both axes, the noise is
``albumentations.GaussNoise(mean=25, var_limit=(10, 70))`` (``sigma = var ** 0.5``, one
normal draw per pixel and channel) and the shadow ``albumentations.RandomShadow(p=1)`` with
its defaults. We reproduce that shadow exactly (the defaults are the config's ``shadow_*``
keys); later albumentations (such as the 2.0.8 the tests compare with) draws vertices in
``0..W-1`` and darkens RGB by ``1 - shadow_intensity`` polygon after polygon instead:

- ``shadow_count_min``..``shadow_count_max`` (1..2) polygons, each of ``shadow_vertices`` (5)
  integer vertices ``(x, y)`` drawn uniformly and independently, in drawing order (the polygon
  may cross itself), with ``x`` in ``int(x_min * W)..int(x_max * W)`` and ``y`` in
  ``int(y_min * H)..int(y_max * H)``, both ends included (Python's ``random.randint``), for
  ``shadow_roi = (x_min, y_min, x_max, y_max) = (0, 0.5, 1, 1)``: at 32 px ``x`` in 0..32 and
  ``y`` in 16..32, so a vertex may sit one pixel outside the image;
- the polygons are rasterised like ``cv2.fillPoly`` (integer vertices at pixel centres, the
  8-connected outline plus the even-odd interior, one call per polygon, so overlapping shadows
  are a union and darken once): :func:`polygon_mask` reproduces OpenCV's result pixel for
  pixel (checked against OpenCV 5.1 on tens of thousands of random polygons at 32, 48 and
  224 px), including its clipping of edges that leave the image;
- the whole image goes through OpenCV's 8-bit RGB -> HLS conversion (H = degrees / 2, L and S
  in 0..255), the lightness of the pixels inside the shadow becomes ``floor(L * shadow_lightness)``
  (0.5: the old ``add_shadow`` multiplied by 0.5 and stored into uint8), and the image goes back
  to RGB. :func:`rgb_to_hls` and :func:`hls_to_rgb` reproduce ``cv2.cvtColor`` bit for bit
  (checked against OpenCV 5.1 on all 2**24 colours and all 256 x 256 x 256 HLS triples).
  Note what this implies, as it did for the authors: the 8-bit HLS round trip is lossy, so
  pixels **outside** the shadow change too, by up to 5 grey levels (84% of all RGB colours
  change; 57-81% of the pixels of a natural photograph, mostly by 1 level).

Deviations from the authors' code that remain (measured or argued to be negligible):

- the authors' albumentations truncated ``x + noise`` to uint8 (``np.clip(...).astype``), and
  their blend was truncated too when the DCT cast ``x * 255`` to uint8; we round to nearest
  (``np.rint``), so our noise and blend are on average half a grey level brighter;
- their random block is ``np.random.rand`` cast to uint8 by the DCT, uniform on 0..254; ours is
  uniform on 0..255; their blend partner may be the image itself (probability 1/N); ours never;
- their shadow resized every image to 32x32 first (``cv2.resize(img, (32, 32))``, a no-op on
  CIFAR-10); ours works at the image's own size, its vertex ranges scaled by ``shadow_roi``;
- OpenCV changed how ``fillPoly`` fills a polygon's interior in 2023 and 2024 (pull requests
  23076 and 26187: edges clipped at the image border, spans overshooting the outline); the
  authors' 2020-21 OpenCV predates both, so a few boundary pixels of their shadows may differ
  from ours (the tests compare with OpenCV 4.11 or later only);
  OpenCV's hue rounding depends on its code path: its vector code (used for every pixel of a
  buffer whose length is a multiple of the vector width, as 32x32 and 224x224 images are)
  fuses a multiply-add, its scalar code (the last few pixels of other sizes, or builds without
  FMA) does not, and 3 of the 2**24 colours fall on an exact tie (``H = n + 0.5``) that the
  two round apart. We always follow the vector code.

Geometry (block sides and margin) is given for 32x32 images, as in the paper, and scales with
``height / 32`` (rounded half up, at least 1 px): at 224x224 blocks are 14..49 px and the margin
0..35 px. Shadow vertices scale through ``shadow_roi`` (fractions of the image). Noise and blend
act per pixel and do not scale.

Randomness is drawn once, apart from the pixels, by :func:`draw_parameters` into a
:class:`ManipulationDraw`; :func:`apply_manipulations` (vectorised over each kind's group) and
:func:`apply_manipulations_loop` (one image at a time, the test oracle and benchmark baseline)
turn the same draw into bit-identical images:

- every per-sample scalar (kind, corner, block sides, margin, noise std, shadow count and
  vertices, blend partner) is an array in the draw;
- the random block's pixel values are stored in the draw (at most ``block_max**2 * 3`` bytes a
  sample);
- the Gaussian noise is not stored (at 224 px it would be 600 kB a sample). The draw holds one
  ``noise_seed``; the noise images, one per ``gaussian_noise`` sample in increasing sample
  order, are consecutive ``float32`` standard normals of ``default_rng(noise_seed)``. The
  vectorised path draws them for the whole group (in chunks), the loop draws one image's worth
  per sample; NumPy's ``standard_normal`` yields the same stream whichever way the request is
  split (checked by the tests), so both see the same values;
- all arithmetic is float32 on the 0..255 scale in the same order in both paths, then
  ``np.rint`` and a clip to 0..255, so results match bit for bit. The shadow's rasteriser
  (integer arithmetic) and colour conversion (elementwise float32) give every polygon and pixel
  the same result whether it is processed alone or with others.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import ConfigError

MANIPULATIONS: tuple[str, ...] = (
    "white_block",
    "random_block",
    "gaussian_noise",
    "shadow",
    "blend",
)

WHITE_BLOCK, RANDOM_BLOCK, GAUSSIAN_NOISE, SHADOW, BLEND = range(len(MANIPULATIONS))

#: Corners a block is placed at, as stored in :attr:`ManipulationDraw.corner`.
CORNERS: tuple[str, ...] = ("top_left", "top_right", "bottom_left", "bottom_right")

#: Shadow polygons need at least this many vertices (albumentations' RandomShadow: 5).
MIN_SHADOW_VERTICES = 3

#: Geometry in :class:`ManipulationParams` is given for images of this height.
REFERENCE_SIZE = 32

# Float32 values per temporary array in the vectorised path (2**18, 1 MB): large enough to amortise
# the per-call overhead at 32 px, small enough to stay in cache and to bound memory at 224 px.
_CHUNK_ELEMENTS = 1 << 18
# Pixels per call of the shadow's colour conversion (its float32 planes: 128 kB), see
# shadow_pixels.
_SHADOW_PIXELS = 1 << 15


# --------------------------------------------------------------------------- parameters


@dataclasses.dataclass(frozen=True)
class ManipulationParams:
    """Ranges of the random manipulations (the authors' values by default).

    Block sides and margin are in pixels of a 32x32 image and scale with the image height;
    noise values are on the 0..255 pixel scale; ``noise_var_*`` is the variance, not the std.
    The ``shadow_*`` values are albumentations' ``RandomShadow`` defaults: ``shadow_roi`` is
    ``(x_min, y_min, x_max, y_max)`` as fractions of the width and height (a list in YAML).
    """

    block_min: int = 2
    block_max: int = 7
    margin_max: int = 5
    noise_mean: float = 25.0
    noise_var_min: float = 10.0
    noise_var_max: float = 70.0
    shadow_count_min: int = 1
    shadow_count_max: int = 2
    shadow_vertices: int = 5
    shadow_roi: tuple[float, float, float, float] = (0.0, 0.5, 1.0, 1.0)
    shadow_lightness: float = 0.5
    blend_weight: float = 0.3

    def __post_init__(self) -> None:
        integers = ("block_min", "block_max", "margin_max")
        integers += ("shadow_count_min", "shadow_count_max", "shadow_vertices")
        for name in integers:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise ConfigError(f"manipulations.{name} must be an integer, got {value!r}")
        for field in dataclasses.fields(self):
            if field.name == "shadow_roi":
                continue
            _check_number(field.name, getattr(self, field.name))
        roi = self.shadow_roi
        if isinstance(roi, str | bytes) or not isinstance(roi, Sequence) or len(roi) != 4:
            raise ConfigError(
                f"manipulations.shadow_roi must be [x_min, y_min, x_max, y_max], got {roi!r}"
            )
        for value in roi:
            _check_number("shadow_roi", value)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"manipulations.shadow_roi values must be in [0, 1], got {roi!r}")
        if roi[0] > roi[2] or roi[1] > roi[3]:
            raise ConfigError(
                f"manipulations.shadow_roi must have x_min <= x_max and y_min <= y_max, got {roi!r}"
            )
        object.__setattr__(self, "shadow_roi", tuple(float(value) for value in roi))
        if self.block_min < 1:
            raise ConfigError(f"manipulations.block_min must be >= 1, got {self.block_min}")
        if self.margin_max < 0:
            raise ConfigError(f"manipulations.margin_max must be >= 0, got {self.margin_max}")
        if self.noise_var_min < 0:
            raise ConfigError(f"manipulations.noise_var_min must be >= 0, got {self.noise_var_min}")
        if self.shadow_count_min < 1:
            raise ConfigError(
                f"manipulations.shadow_count_min must be >= 1, got {self.shadow_count_min}"
            )
        if self.shadow_vertices < MIN_SHADOW_VERTICES:
            raise ConfigError(
                f"manipulations.shadow_vertices must be >= {MIN_SHADOW_VERTICES}, "
                f"got {self.shadow_vertices}"
            )
        for name in ("shadow_lightness", "blend_weight"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(
                    f"manipulations.{name} must be in [0, 1], got {getattr(self, name)}"
                )
        for low, high in (
            ("block_min", "block_max"),
            ("noise_var_min", "noise_var_max"),
            ("shadow_count_min", "shadow_count_max"),
        ):
            if getattr(self, low) > getattr(self, high):
                raise ConfigError(
                    f"manipulations.{low} ({getattr(self, low)}) must be <= "
                    f"manipulations.{high} ({getattr(self, high)})"
                )

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> ManipulationParams:
        """Parameters from the ``manipulations`` section of the workflow config.

        Missing keys keep their defaults; an unknown key raises :class:`ConfigError` naming it
        (a typo would otherwise silently fall back to a default).
        """
        cfg = dict(cfg or {})
        known = [field.name for field in dataclasses.fields(cls)]
        unknown = sorted(set(cfg) - set(known))
        if unknown:
            raise ConfigError(
                f"manipulations: unknown key(s) {', '.join(map(repr, unknown))}; "
                f"known: {', '.join(known)}"
            )
        return cls(**cfg)

    def geometry(self, height: int, width: int) -> tuple[int, int, int]:
        """``(block_min, block_max, margin_max)`` in pixels for ``height x width`` images.

        Lengths scale by ``height / 32``, rounded half up, at least 1 px when positive. Raises
        ``ValueError`` when the largest block with the largest margin does not fit the image.
        """
        block_min = scaled_length(self.block_min, height)
        block_max = scaled_length(self.block_max, height)
        margin_max = scaled_length(self.margin_max, height)
        if block_max + margin_max > min(height, width):
            raise ValueError(
                f"a {block_max}-px block with a {margin_max}-px margin does not fit a "
                f"{height}x{width} image"
            )
        return block_min, block_max, margin_max

    def shadow_box(self, height: int, width: int) -> tuple[int, int, int, int]:
        """``(x_lo, y_lo, x_hi, y_hi)``: shadow vertices have ``x_lo <= x <= x_hi`` (columns)
        and ``y_lo <= y <= y_hi`` (rows), as albumentations' ``int(fraction * size)``."""
        x_min, y_min, x_max, y_max = self.shadow_roi
        return int(x_min * width), int(y_min * height), int(x_max * width), int(y_max * height)


def _check_number(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise ConfigError(f"manipulations.{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ConfigError(f"manipulations.{name} must be finite, got {value!r}")


def scaled_length(pixels_at_32: float, size: int) -> int:
    """A length given for 32-px images scaled to ``size`` px, rounded half up, >= 1 if positive."""
    if pixels_at_32 <= 0:
        return 0
    return max(1, math.floor(pixels_at_32 * size / REFERENCE_SIZE + 0.5))


# --------------------------------------------------------------------------- the draw


@dataclasses.dataclass
class ManipulationDraw:
    """Everything random about manipulating one batch, apart from the images themselves.

    Arrays have one row per sample. Fields that do not apply to a sample's kind still hold
    drawn values (so the random stream does not depend on the kinds) and are ignored, except
    ``partner`` (-1 unless ``blend``) and ``block_values`` (zeros unless ``random_block``).
    """

    height: int
    width: int
    kind: np.ndarray  # (N,) int8, index into MANIPULATIONS
    corner: np.ndarray  # (N,) int8, index into CORNERS
    block_size: np.ndarray  # (N, 2) int32, block rows and columns in pixels
    margin: np.ndarray  # (N,) int32, pixels between the block and both edges of its corner
    block_values: np.ndarray  # (N, B, B, 3) uint8, random_block pixels (top-left h x w used)
    noise_std: np.ndarray  # (N,) float32, sqrt of the drawn variance
    noise_seed: int  # seeds the float32 standard normals of the gaussian_noise samples
    shadow_count: np.ndarray  # (N,) int16, number of shadow polygons (the first slots are used)
    shadow_vertices: np.ndarray  # (N, S, V, 2) int32 (x, y) = (column, row), S = count max
    partner: np.ndarray  # (N,) int64, index of the blended image in the pool, -1 if not blend

    def __len__(self) -> int:
        return int(self.kind.shape[0])

    def kind_names(self) -> list[str]:
        """The manipulation name of every sample."""
        return [MANIPULATIONS[k] for k in self.kind]

    def block_origin(self) -> tuple[np.ndarray, np.ndarray]:
        """Top row and left column of every sample's block (meaningful for block kinds)."""
        rows, cols = self.block_size[:, 0], self.block_size[:, 1]
        top_corner = self.corner <= 1  # top_left, top_right
        left_corner = (self.corner % 2) == 0  # top_left, bottom_left
        top = np.where(top_corner, self.margin, self.height - self.margin - rows)
        left = np.where(left_corner, self.margin, self.width - self.margin - cols)
        return top.astype(np.int64), left.astype(np.int64)


def _kind_indices(kinds: Any, n: int) -> np.ndarray:
    """Per-sample kind indices from a name, an index, or a length-``n`` sequence of either."""
    array = np.asarray(kinds)
    if array.ndim == 0:
        array = np.full(n, array.item(), dtype=array.dtype)
    if array.shape != (n,):
        raise ValueError(f"kinds must be a scalar or have shape ({n},), got {array.shape}")
    if array.dtype.kind in "US":
        unknown = sorted(set(array.tolist()) - set(MANIPULATIONS))
        if unknown:
            raise ValueError(f"unknown manipulation(s) {unknown}; one of {MANIPULATIONS}")
        lookup = {name: i for i, name in enumerate(MANIPULATIONS)}
        return np.array([lookup[name] for name in array.tolist()], dtype=np.int8)
    if array.dtype.kind not in "iu":
        raise ValueError(f"kinds must be manipulation names or indices, got dtype {array.dtype}")
    if n and (array.min() < 0 or array.max() >= len(MANIPULATIONS)):
        raise ValueError(f"kind indices must be in 0..{len(MANIPULATIONS) - 1}")
    return array.astype(np.int8)


def draw_parameters(
    n: int,
    height: int,
    width: int,
    rng: np.random.Generator,
    params: ManipulationParams,
    kinds: np.ndarray | Sequence[str] | str | int | None = None,
    *,
    pool_size: int | None = None,
) -> ManipulationDraw:
    """Draw the random parameters that manipulate ``n`` images of ``height x width``.

    ``kinds`` fixes each sample's manipulation (names or indices into :data:`MANIPULATIONS`,
    one per sample or one for all); by default each sample gets one uniformly at random.
    ``pool_size`` is the number of images blends draw from when a separate pool is passed to
    :func:`apply_manipulations`; ``None`` means the batch itself, and then a sample's partner
    is always another sample (so ``n >= 2`` is needed when any sample blends).
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    block_min, block_max, margin_max = params.geometry(height, width)
    kind = (
        rng.integers(0, len(MANIPULATIONS), size=n).astype(np.int8)
        if kinds is None
        else _kind_indices(kinds, n)
    )
    corner = rng.integers(0, len(CORNERS), size=n).astype(np.int8)
    block_size = rng.integers(block_min, block_max + 1, size=(n, 2)).astype(np.int32)
    margin = rng.integers(0, margin_max + 1, size=n).astype(np.int32)
    noise_var = rng.uniform(params.noise_var_min, params.noise_var_max, size=n)
    noise_std = np.sqrt(noise_var).astype(np.float32)
    noise_seed = int(rng.integers(0, 2**63 - 1))

    # Shadow (albumentations' RandomShadow): the number of polygons, then for every polygon slot
    # its integer x and y coordinates, both ends of the ROI included; drawn for every sample.
    shadow_count = rng.integers(params.shadow_count_min, params.shadow_count_max + 1, size=n)
    x_lo, y_lo, x_hi, y_hi = params.shadow_box(height, width)
    slots = (n, params.shadow_count_max, params.shadow_vertices)
    shadow_vertices = np.stack(
        [rng.integers(x_lo, x_hi + 1, size=slots), rng.integers(y_lo, y_hi + 1, size=slots)],
        axis=-1,
    ).astype(np.int32)

    blends = kind == BLEND
    if pool_size is None:
        if blends.any() and n < 2:
            raise ValueError("a blend needs another image: pass a pool or at least 2 images")
        # Uniform over the other n - 1 samples: draw in 0..n-2 and skip one's own index.
        partner = rng.integers(0, max(n - 1, 1), size=n)
        partner = partner + (partner >= np.arange(n))
    else:
        if pool_size < 1:
            raise ValueError(f"pool_size must be >= 1, got {pool_size}")
        partner = rng.integers(0, pool_size, size=n)
    partner = np.where(blends, partner, -1).astype(np.int64)

    random_blocks = np.flatnonzero(kind == RANDOM_BLOCK)
    block_values = np.zeros((n, block_max, block_max, 3), dtype=np.uint8)
    block_values[random_blocks] = rng.integers(
        0, 256, size=(random_blocks.size, block_max, block_max, 3), dtype=np.uint8
    )
    return ManipulationDraw(
        height=height,
        width=width,
        kind=kind,
        corner=corner,
        block_size=block_size,
        margin=margin,
        block_values=block_values,
        noise_std=noise_std,
        noise_seed=noise_seed,
        shadow_count=shadow_count.astype(np.int16),
        shadow_vertices=shadow_vertices,
        partner=partner,
    )


# --------------------------------------------------------------------------- shared pieces


# OpenCV's fixed-point polygon edges: x carries this many fraction bits.
_XY_SHIFT = 16
# A crossing that is not there (sorts after every real one, stays positive after rounding).
_NO_CROSSING = np.int64(1) << 60


def _trunc_div(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """C integer division (rounds toward zero; NumPy's ``//`` rounds toward minus infinity)."""
    quotient = np.abs(numerator) // np.abs(denominator)
    return np.where((numerator < 0) != (denominator < 0), -quotient, quotient)


def _clip_segments(
    x0: np.ndarray, y0: np.ndarray, x1: np.ndarray, y1: np.ndarray, height: int, width: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """OpenCV's ``clipLine`` on arrays of integer segments: new ends and whether any is left.

    One pass of Cohen-Sutherland against ``[0, width-1] x [0, height-1]``: ends above or below
    are moved onto the top or bottom row, then ends left or right onto the first or last
    column, each new coordinate truncated toward zero from a float64 quotient, the second end
    computed from the first end's new position (as OpenCV does). Segments already inside
    come back unchanged.
    """
    right, bottom = width - 1, height - 1

    def outcode(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return (x < 0) * 1 + (x > right) * 2 + (y < 0) * 4 + (y > bottom) * 8

    def moved(
        start: np.ndarray, target: np.ndarray, at: np.ndarray, rise: np.ndarray, run: np.ndarray
    ) -> np.ndarray:
        run = np.where(run == 0, 1, run)  # only in lanes that are not used
        return start + np.trunc((target - at).astype(np.float64) * rise / run).astype(np.int64)

    c0, c1 = outcode(x0, y0), outcode(x1, y1)
    clip = ((c0 & c1) == 0) & ((c0 | c1) != 0)
    use = clip & ((c0 & 12) != 0)
    target = np.where(c0 < 8, 0, bottom)
    x0 = np.where(use, moved(x0, target, y0, x1 - x0, y1 - y0), x0)
    y0 = np.where(use, target, y0)
    c0 = np.where(use, (x0 < 0) * 1 + (x0 > right) * 2, c0)
    use = clip & ((c1 & 12) != 0)
    target = np.where(c1 < 8, 0, bottom)
    x1 = np.where(use, moved(x1, target, y1, x1 - x0, y1 - y0), x1)
    y1 = np.where(use, target, y1)
    c1 = np.where(use, (x1 < 0) * 1 + (x1 > right) * 2, c1)
    clip &= ((c0 & c1) == 0) & ((c0 | c1) != 0)
    use = clip & (c0 != 0)
    target = np.where(c0 == 1, 0, right)
    y0 = np.where(use, moved(y0, target, x0, y1 - y0, x1 - x0), y0)
    x0 = np.where(use, target, x0)
    c0 = np.where(use, 0, c0)
    use = clip & (c1 != 0)
    target = np.where(c1 == 1, 0, right)
    y1 = np.where(use, moved(y1, target, x1, y1 - y0, x1 - x0), y1)
    x1 = np.where(use, target, x1)
    c1 = np.where(use, 0, c1)
    return x0, y0, x1, y1, (c0 | c1) == 0


def polygon_mask(vertices: np.ndarray, height: int, width: int) -> np.ndarray:
    """Rasterise polygons as ``cv2.fillPoly`` does: ``(K, V, 2)`` integer ``(x, y)`` vertices
    (x a column, y a row, a vertex at a pixel centre) to a ``K x H x W`` boolean mask.

    Each polygon as one ``cv2.fillPoly(mask, [vertices], 255)`` call of recent OpenCV
    (8-connected lines, no sub-pixel shift), in two parts:

    - the outline: every edge ``v[i-1] -> v[i]`` clipped by OpenCV's ``clipLine`` and drawn as
      an 8-connected Bresenham line traversed left to right, whose minor coordinate at major
      step ``t`` is ``round(t * minor / major)`` with exact halves rounded toward the left end;
    - the interior: edges in 16-bit fixed point (``x << 16``, slope truncated toward zero; an
      edge with an end outside the image is rebuilt through its clipped ends), each spanning
      the rows ``top <= y < bottom``; on every row the crossings are sorted and each pair
      ``(a, b)`` fills the columns ``ceil(a) .. floor(b)`` (even-odd, so a self-intersecting
      polygon has holes).

    Everything is integer arithmetic, vectorised over polygons and edges (the Python loops run
    over the V/2 crossing pairs only), so a polygon's mask does not depend on the others.
    """
    v = np.asarray(vertices, dtype=np.int64)
    if v.ndim != 3 or v.shape[2] != 2:
        raise ValueError(f"vertices must be K x V x 2 (x, y), got shape {v.shape}")
    count, corners = v.shape[:2]
    mask = np.zeros((count, height, width), dtype=bool)
    if count == 0 or corners == 0:
        return mask
    x1, y1 = v[..., 0], v[..., 1]  # (K, V): edge i ends at vertex i ...
    x0, y0 = np.roll(x1, 1, axis=1), np.roll(y1, 1, axis=1)  # ... and starts at vertex i - 1
    cx0, cy0, cx1, cy1, visible = _clip_segments(x0, y0, x1, y1, height, width)

    # Outline: Bresenham from the left end, t = 0 .. major along the major axis.
    flip = cx1 < cx0
    sx, sy = np.where(flip, cx1, cx0), np.where(flip, cy1, cy0)
    ex, ey = np.where(flip, cx0, cx1), np.where(flip, cy0, cy1)
    run, rise = ex - sx, ey - sy
    steep = np.abs(rise) > run
    major = np.maximum(run, np.abs(rise))[..., None]
    minor = np.minimum(run, np.abs(rise))[..., None]
    t = np.arange(max(height, width), dtype=np.int64)
    offset = (2 * t * minor + np.maximum(major - 1, 0)) // np.maximum(2 * major, 1)
    along, across = np.where(steep[..., None], offset, t), np.where(steep[..., None], t, offset)
    px = sx[..., None] + along
    py = sy[..., None] + np.where(rise < 0, -1, 1)[..., None] * across
    drawn = visible[..., None] & (t <= major)
    polygon = np.arange(count, dtype=np.int64)[:, None, None]
    mask.reshape(-1)[((polygon * height + py) * width + px)[drawn]] = True

    # Interior: fixed-point edges through the clipped ends (unchanged when inside the image).
    moved = cy0 != cy1
    ey0, ey1 = np.where(moved, cy0, y0), np.where(moved, cy1, y1)
    edge = y0 != y1
    slope = _trunc_div((cx1 - cx0) << _XY_SHIFT, np.where(edge, ey1 - ey0, 1))
    down = y0 < y1
    top, bottom = np.minimum(y0, y1), np.maximum(y0, y1)
    start = np.where(
        down,
        (cx0 << _XY_SHIFT) + (y0 - ey0) * slope,
        (cx1 << _XY_SHIFT) + (y1 - ey1) * slope,
    )
    first = int(np.clip(top[edge].min(initial=height), 0, height))
    last = int(np.clip(bottom[edge].max(initial=0), 0, height))
    if first >= last:
        return mask
    rows = np.arange(first, last, dtype=np.int64)
    active = edge[..., None] & (rows >= top[..., None]) & (rows < bottom[..., None])
    crossings = start[..., None] + (rows - top[..., None]) * slope[..., None]
    crossings = np.where(active, crossings, _NO_CROSSING)
    crossings.sort(axis=1)  # (K, V, rows): every row has an even number of real crossings
    band = mask[:, first:last]
    columns = np.arange(width, dtype=np.int64)
    for pair in range(0, corners - 1, 2):
        left = (crossings[:, pair] + ((1 << _XY_SHIFT) - 1)) >> _XY_SHIFT
        right = crossings[:, pair + 1] >> _XY_SHIFT
        band |= (columns >= left[..., None]) & (columns <= right[..., None])
    return mask


def shadow_mask(vertices: np.ndarray, count: np.ndarray, height: int, width: int) -> np.ndarray:
    """Union of each sample's first ``count`` shadow polygons: ``(K, S, V, 2)`` -> ``K x H x W``.

    Rasterised slot by slot with :func:`polygon_mask` (one ``cv2.fillPoly`` call per polygon,
    as albumentations did, so overlapping polygons are a union).
    """
    vertices = np.asarray(vertices)
    count = np.asarray(count)
    inside = np.zeros((vertices.shape[0], height, width), dtype=bool)
    for slot in range(vertices.shape[1]):
        samples = np.flatnonzero(count > slot)
        if samples.size:
            inside[samples] |= polygon_mask(vertices[samples, slot], height, width)
    return inside


_INV_255 = np.float32(1.0 / 255.0)
_TINY = np.float32(np.finfo(np.float32).tiny)
_EPSILON = np.float32(np.finfo(np.float32).eps)  # C's FLT_EPSILON


def _hue_weights() -> np.ndarray:
    """``(256, 3)`` float32: for every 8-bit hue, where R, G, B lie between OpenCV's levels.

    OpenCV's HLS -> RGB takes, for the hue ``h = H * 6 / 180`` (minus 6 when >= 6) with sector
    ``floor(h)`` and fraction ``f``, each channel from ``p2`` (high), ``p1`` (low) or a ramp
    ``p1 + (p2 - p1) * (1 - f)`` or ``p1 + (p2 - p1) * f``. Writing every channel as
    ``p1 + (p2 - p1) * w`` with ``w`` in ``{1, 1 - f, 0, f}`` gives the same float32 values:
    for the ramps and ``p1`` by construction, for ``p2`` because ``p1 + (p2 - p1) == p2`` for
    every 8-bit (L, S) pair (checked exhaustively by the tests).
    """
    hue = np.arange(256, dtype=np.float32) * np.float32(6.0 / 180.0)
    hue -= np.float32(6.0) * (hue >= np.float32(6.0))
    sector = np.floor(hue)
    fraction = hue - sector
    # R by sector 0..5: high, falling, low, low, rising, high; G at sector s is R at s + 4,
    # B is R at s + 2 (mod 6).
    sources = np.array([[0, 1, 2, 2, 3, 0], [3, 0, 0, 1, 2, 2], [2, 2, 3, 0, 0, 1]])
    levels = np.stack(
        [np.ones_like(fraction), np.float32(1.0) - fraction, np.zeros_like(fraction), fraction]
    )
    picked = sources[:, sector.astype(np.intp)]  # (3, 256)
    return np.stack([levels[picked[c], np.arange(256)] for c in range(3)], axis=-1)


_HUE_WEIGHTS = _hue_weights()


def _hls_planes(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(H, L, S)`` uint8 planes of uint8 RGB pixels ``(..., 3)``; see :func:`rgb_to_hls`.

    The selections are arithmetic (``value * mask`` summed, exact for finite values: adding
    zeros changes nothing) rather than ``np.where``, which is several times slower on random
    masks.
    """
    planes = np.moveaxis(np.asarray(rgb), -1, 0).astype(np.float32, order="C")
    planes *= _INV_255
    red, green, blue = planes
    high = np.maximum(np.maximum(red, green), blue)
    low = np.minimum(np.minimum(red, green), blue)
    spread = high - low
    total = high + low
    chroma = spread > _EPSILON  # OpenCV's test; a colour's spread is otherwise >= 1/255
    # l < 0.5 picks total, else 2 - total: the smaller of the two (equal at total == 1).
    saturation = spread / np.maximum(np.minimum(total, np.float32(2.0) - total), _TINY)
    red_max = high == red
    green_max = (high == green) & ~red_max
    blue_max = ~(red_max | green_max)
    difference = (green - blue) * red_max + (blue - red) * green_max + (red - green) * blue_max
    offset = np.float32(360.0) * (red_max & (difference < 0))
    offset += np.float32(120.0) * green_max
    offset += np.float32(240.0) * blue_max
    scale = np.float32(60.0) / np.maximum(spread, _EPSILON)  # finite where grey (then unused)
    hue = (difference.astype(np.float64) * scale + offset).astype(np.float32)
    hue *= chroma
    hue *= np.float32(0.5)
    total *= np.float32(0.5 * 255.0)  # (high + low) / 2 * 255: both factors exact
    saturation *= np.float32(255.0)
    return _to_uint8(hue), _to_uint8(total), _to_uint8(saturation)


def _rgb_from_hls_planes(hue: np.ndarray, light: np.ndarray, saturation: np.ndarray) -> np.ndarray:
    """uint8 RGB ``(..., 3)`` from uint8 ``H, L, S`` planes; see :func:`hls_to_rgb`.

    Grey (``S == 0``), which OpenCV treats apart, needs no case of its own: then
    ``p2 == p1 == l`` exactly and every channel is ``l``.
    """
    lum = light.astype(np.float32)
    lum *= _INV_255
    sat = saturation.astype(np.float32)
    sat *= _INV_255
    bright = lum > np.float32(0.5)
    high = lum * (np.float32(1.0) + sat) * ~bright + (lum + sat - lum * sat) * bright
    low = np.float32(2.0) * lum - high
    rgb = _HUE_WEIGHTS[hue]  # (..., 3) weights w: channel = p1 + (p2 - p1) * w
    rgb *= (high - low)[..., None]
    rgb += low[..., None]
    rgb *= np.float32(255.0)
    return _to_uint8(rgb)


def rgb_to_hls(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB to uint8 HLS as ``cv2.cvtColor(rgb, cv2.COLOR_RGB2HLS)``, bit for bit.

    H is degrees / 2 (0..180: 180 for hues within a quarter degree of 360), L and S are
    scaled to 0..255. Float32 on ``rgb / 255`` in
    OpenCV's order: ``l = (max + min) / 2``; ``s = (max - min) / (max + min)`` if ``l < 0.5``
    else ``/ (2 - (max + min))``; the hue as OpenCV's vector code computes it, one fused
    multiply-add ``(difference of the other two channels) * (60 / (max - min)) + offset``
    (offset 0 or 360, 120, 240), emulated in float64 and rounded once to float32; then each
    channel rounded half to even. Matches OpenCV 5.1's vector code on all 2**24 colours (its
    scalar code, for the last pixels of a buffer that do not fill a vector, rounds 3 exact hue
    ties the other way).
    """
    return np.stack(_hls_planes(rgb), axis=-1)


def hls_to_rgb(hls: np.ndarray) -> np.ndarray:
    """uint8 HLS to uint8 RGB as ``cv2.cvtColor(hls, cv2.COLOR_HLS2RGB)``, bit for bit.

    OpenCV's float32 formula on ``(H * 6 / 180, L / 255, S / 255)``: ``p2 = l * (1 + s)`` if
    ``l <= 0.5`` else ``l + s - l * s``, ``p1 = 2 * l - p2``, the hue's sector and fraction
    pick each channel among ``p2``, ``p1`` and the two ramps between them; grey when
    ``s == 0``; each channel ``* 255`` rounded half to even. Matches OpenCV 5.1 on all
    256 x 256 x 256 HLS triples.
    """
    hls = np.asarray(hls)
    return _rgb_from_hls_planes(hls[..., 0], hls[..., 1], hls[..., 2])


def shadow_pixels(images: np.ndarray, inside: np.ndarray, lightness: float) -> np.ndarray:
    """The old albumentations ``add_shadow`` on uint8 RGB images with a precomputed mask.

    The whole image goes to HLS and back (so pixels outside the shadow pick up the 8-bit
    round trip's error too); inside, ``L = floor(L * lightness)``. Pixels are independent:
    they are converted ``_SHADOW_PIXELS`` at a time, so that the conversion's float32
    temporaries stay small (allocations past glibc's mmap threshold page-fault on every call,
    which halves the throughput).
    """
    pixels = np.ascontiguousarray(images).reshape(-1, 3)
    shadowed = np.asarray(inside).reshape(-1)
    out = np.empty_like(pixels)
    for start in range(0, pixels.shape[0], _SHADOW_PIXELS):
        part = slice(start, start + _SHADOW_PIXELS)
        hue, light, saturation = _hls_planes(pixels[part])
        dark = shadowed[part]
        light[dark] = np.floor(light[dark].astype(np.float64) * float(lightness))
        out[part] = _rgb_from_hls_planes(hue, light, saturation)
    return out.reshape(np.shape(images))


def _to_uint8(values: np.ndarray) -> np.ndarray:
    """Float pixel values (0..255 scale) to uint8: round to nearest even, then clip."""
    np.rint(values, out=values)
    np.clip(values, 0.0, 255.0, out=values)
    return values.astype(np.uint8)


def _check_inputs(
    images: np.ndarray, draw: ManipulationDraw, pool: np.ndarray | None
) -> np.ndarray:
    """Validate the batch (and pool) against the draw; returns the images blends draw from."""
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
        raise ValueError("images must be a uint8 numpy array (pixel values 0..255)")
    if images.ndim != 4 or images.shape[3] != 3:
        raise ValueError(f"images must be N x H x W x 3, got shape {images.shape}")
    expected = (len(draw), draw.height, draw.width)
    if images.shape[:3] != expected:
        raise ValueError(f"images of shape {images.shape} do not match a draw for {expected}")
    source = images if pool is None else pool
    if pool is not None and (
        not isinstance(pool, np.ndarray)
        or pool.dtype != np.uint8
        or pool.ndim != 4
        or pool.shape[1:] != images.shape[1:]
    ):
        raise ValueError(f"pool must be a uint8 M x {draw.height} x {draw.width} x 3 array")
    blocks = (draw.kind == WHITE_BLOCK) | (draw.kind == RANDOM_BLOCK)
    if blocks.any() and draw.block_size[blocks].max() > draw.block_values.shape[1]:
        raise ValueError("draw holds a block larger than its block_values slots")
    partners = draw.partner[draw.kind == BLEND]
    if partners.size and (partners.min() < 0 or partners.max() >= source.shape[0]):
        raise ValueError(
            f"blend partner indices reach {partners.max()} but the pool holds {source.shape[0]} "
            "images; draw with pool_size=len(pool)"
        )
    return source


def _chunk_length(elements_per_image: int) -> int:
    """Images per chunk: about _CHUNK_ELEMENTS values, at least one image."""
    return max(1, _CHUNK_ELEMENTS // max(1, elements_per_image))


def _chunks(indices: np.ndarray, elements_per_image: int) -> Iterator[np.ndarray]:
    """Split sample indices, in order, into chunks of at most ~_CHUNK_ELEMENTS pixel values."""
    step = _chunk_length(elements_per_image)
    for start in range(0, indices.size, step):
        yield indices[start : start + step]


# --------------------------------------------------------------------------- application


def apply_manipulations(
    images: np.ndarray,
    draw: ManipulationDraw,
    params: ManipulationParams,
    pool: np.ndarray | None = None,
) -> np.ndarray:
    """Apply a draw to a uint8 ``N x H x W x 3`` batch, vectorised over each kind's samples.

    ``pool`` holds the images blends add (default: the batch itself; the unmanipulated images
    are used either way). ``params`` supplies the noise mean, shadow lightness and blend
    weight; all ranges were already used by :func:`draw_parameters`. Returns a new uint8
    array; bit-identical to :func:`apply_manipulations_loop`.
    """
    source = _check_inputs(images, draw, pool)
    out = images.copy()
    height, width = draw.height, draw.width
    per_image = height * width * 3
    # The float work below is done in place on one float32 buffer per chunk; each step is the
    # same IEEE operation as in the loop version (``a + b == b + a`` exactly), only without
    # temporaries.

    # Blocks: scatter only the block pixels (K x B x B), by linear index into N*H*W pixels.
    top, left = draw.block_origin()
    pixels = out.reshape(-1, 3)
    side = draw.block_values.shape[1]
    offset = np.arange(side)
    for kind in (WHITE_BLOCK, RANDOM_BLOCK):
        idx = np.flatnonzero(draw.kind == kind)
        if not idx.size:
            continue
        rows, cols = draw.block_size[idx, 0], draw.block_size[idx, 1]
        valid = (offset[None, :, None] < rows[:, None, None]) & (
            offset[None, None, :] < cols[:, None, None]
        )  # (K, B, B): which cells of each B x B block slot the block covers
        first = (idx * height + top[idx]) * width + left[idx]  # pixel index of each top-left
        linear = first[:, None, None] + offset[None, :, None] * width + offset[None, None, :]
        if kind == WHITE_BLOCK:
            pixels[linear[valid]] = 255
        else:
            # Select the values byte-wise (K x B x 3B): boolean indexing with a trailing
            # length-3 axis is several times slower.
            covered = np.repeat(valid, 3, axis=-1)
            values = draw.block_values[idx].reshape(idx.size, side, side * 3)[covered]
            pixels[linear[valid]] = values.reshape(-1, 3)

    # Gaussian noise: the group's standard normals come from one stream, in sample order.
    idx = np.flatnonzero(draw.kind == GAUSSIAN_NOISE)
    if idx.size:
        noise_rng = np.random.default_rng(draw.noise_seed)
        mean = np.float32(params.noise_mean)
        buffer = np.empty((min(idx.size, _chunk_length(per_image)), height, width, 3), np.float32)
        for chunk in _chunks(idx, per_image):
            values = buffer[: chunk.size]  # reused: no page faults for a fresh array each chunk
            noise_rng.standard_normal(out=values, dtype=np.float32)
            values *= draw.noise_std[chunk][:, None, None, None]
            values += mean
            values += images[chunk]  # x + (std * z + mean)
            out[chunk] = _to_uint8(values)

    # Shadow: HLS round trip of the whole image, lightness scaled inside the polygons (masks
    # of one byte a pixel, so chunks of _CHUNK_ELEMENTS pixels).
    idx = np.flatnonzero(draw.kind == SHADOW)
    for chunk in _chunks(idx, height * width):
        inside = shadow_mask(draw.shadow_vertices[chunk], draw.shadow_count[chunk], height, width)
        out[chunk] = shadow_pixels(images[chunk], inside, params.shadow_lightness)

    # Blend: add a weighted partner image, clipped.
    idx = np.flatnonzero(draw.kind == BLEND)
    weight = np.float32(params.blend_weight)
    for chunk in _chunks(idx, per_image):
        values = source[draw.partner[chunk]].astype(np.float32)
        values *= weight
        values += images[chunk]  # x + weight * partner
        out[chunk] = _to_uint8(values)
    return out


def apply_manipulations_loop(
    images: np.ndarray,
    draw: ManipulationDraw,
    params: ManipulationParams,
    pool: np.ndarray | None = None,
) -> np.ndarray:
    """Reference implementation of :func:`apply_manipulations`, one image at a time.

    Written the plain way (slicing for blocks, one noise image drawn per sample, one polygon
    rasterised at a time as albumentations did) as the test oracle and the benchmark baseline;
    bit-identical to the vectorised version.
    """
    source = _check_inputs(images, draw, pool)
    out = images.copy()
    height, width = draw.height, draw.width
    noise_rng = np.random.default_rng(draw.noise_seed)
    mean = np.float32(params.noise_mean)
    blend_weight = np.float32(params.blend_weight)
    for i in range(len(draw)):
        kind = int(draw.kind[i])
        x = images[i]
        if kind in (WHITE_BLOCK, RANDOM_BLOCK):
            rows, cols = int(draw.block_size[i, 0]), int(draw.block_size[i, 1])
            margin = int(draw.margin[i])
            corner = CORNERS[draw.corner[i]]
            top = margin if corner.startswith("top") else height - margin - rows
            left = margin if corner.endswith("left") else width - margin - cols
            block = 255 if kind == WHITE_BLOCK else draw.block_values[i, :rows, :cols]
            out[i, top : top + rows, left : left + cols] = block
        elif kind == GAUSSIAN_NOISE:
            z = noise_rng.standard_normal((height, width, 3), dtype=np.float32)
            noise = draw.noise_std[i] * z + mean
            out[i] = _to_uint8(x.astype(np.float32) + noise)
        elif kind == SHADOW:
            inside = np.zeros((height, width), dtype=bool)
            for polygon in draw.shadow_vertices[i, : draw.shadow_count[i]]:
                inside |= polygon_mask(polygon[None], height, width)[0]
            out[i] = shadow_pixels(x, inside, params.shadow_lightness)
        else:  # BLEND
            partner = source[draw.partner[i]].astype(np.float32)
            out[i] = _to_uint8(x.astype(np.float32) + blend_weight * partner)
    return out


def manipulate(
    images: np.ndarray,
    rng: np.random.Generator,
    params: ManipulationParams | None = None,
    kinds: np.ndarray | Sequence[str] | str | int | None = None,
    pool: np.ndarray | None = None,
) -> np.ndarray:
    """Draw parameters with ``rng`` and apply them: one random manipulation per image."""
    params = params or ManipulationParams()
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"images must be N x H x W x 3, got shape {images.shape}")
    draw = draw_parameters(
        images.shape[0],
        images.shape[1],
        images.shape[2],
        rng,
        params,
        kinds,
        pool_size=None if pool is None else int(pool.shape[0]),
    )
    return apply_manipulations(images, draw, params, pool)
