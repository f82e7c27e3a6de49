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
4. ``shadow``: a random polygon (3 to 5 vertices anywhere in the image) inside which the image is
   darkened, ``pixel * weight`` with ``weight`` uniform in ``[0.6, 0.85]``;
5. ``blend``: ``clip(x + 0.3 * other)`` where ``other`` is another image of the batch (never the
   image itself) or of a separate pool.

The authors' notebook (``Train_Detection.ipynb``) does this one image at a time with NumPy and
albumentations: the block sides are drawn independently (a rectangle), the margin is shared by
both axes, the noise is ``albumentations.GaussNoise(mean=25, var_limit=(10, 70))`` and the shadow
``albumentations.RandomShadow`` with its defaults (one or two random 5-gons in the lower half of
the image whose HLS lightness is halved). We keep the blocks, noise and blend as they are and
replace the shadow by a direct darkening of RGB values inside one random polygon anywhere in the
image, by a factor drawn per sample from a configurable range ([0.6, 0.85] in the project's
config): the same kind of hard-edged, region-wise multiplicative perturbation, without
the colour-space round trip and vectorisable.

Geometry (block sides and margin) is given for 32x32 images, as in the paper, and scales with
``height / 32`` (rounded half up, at least 1 px): at 224x224 blocks are 14..49 px and the margin
0..35 px. Noise and blend act per pixel and do not scale.

Randomness is drawn once, apart from the pixels, by :func:`draw_parameters` into a
:class:`ManipulationDraw`; :func:`apply_manipulations` (vectorised over each kind's group) and
:func:`apply_manipulations_loop` (one image at a time, the test oracle and benchmark baseline)
turn the same draw into bit-identical images:

- every per-sample scalar (kind, corner, block sides, margin, noise std, polygon, shadow weight,
  blend partner) is an array in the draw;
- the random block's pixel values are stored in the draw (at most ``block_max**2 * 3`` bytes a
  sample);
- the Gaussian noise is not stored (at 224 px it would be 600 kB a sample). The draw holds one
  ``noise_seed``; the noise images, one per ``gaussian_noise`` sample in increasing sample
  order, are consecutive ``float32`` standard normals of ``default_rng(noise_seed)``. The
  vectorised path draws them for the whole group (in chunks), the loop draws one image's worth
  per sample; NumPy's ``standard_normal`` yields the same stream whichever way the request is
  split (checked by the tests), so both see the same values;
- all arithmetic is float32 on the 0..255 scale in the same order in both paths, then
  ``np.rint`` and a clip to 0..255, so results match bit for bit. The shadow polygon is
  rasterised by one function, :func:`polygon_mask`, whose per-pixel result does not depend on
  how many polygons are rasterised together.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from .errors import ConfigError

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

#: Shadow polygons have 3 to ``MAX_SHADOW_VERTICES`` vertices (albumentations' RandomShadow: 5).
MIN_SHADOW_VERTICES = 3
MAX_SHADOW_VERTICES = 5

#: Geometry in :class:`ManipulationParams` is given for images of this height.
REFERENCE_SIZE = 32

# Float32 values per temporary array in the vectorised path (2**18, 1 MB): large enough to amortise
# the per-call overhead at 32 px, small enough to stay in cache and to bound memory at 224 px.
_CHUNK_ELEMENTS = 1 << 18


# --------------------------------------------------------------------------- parameters


@dataclasses.dataclass(frozen=True)
class ManipulationParams:
    """Ranges of the random manipulations (the authors' values by default).

    Block sides and margin are in pixels of a 32x32 image and scale with the image height;
    noise values are on the 0..255 pixel scale; ``noise_var_*`` is the variance, not the std.
    """

    block_min: int = 2
    block_max: int = 7
    margin_max: int = 5
    noise_mean: float = 25.0
    noise_var_min: float = 10.0
    noise_var_max: float = 70.0
    shadow_weight_min: float = 0.6
    shadow_weight_max: float = 0.85
    blend_weight: float = 0.3

    def __post_init__(self) -> None:
        for name in ("block_min", "block_max", "margin_max"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise ConfigError(f"manipulations.{name} must be an integer, got {value!r}")
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int | float | np.number):
                raise ConfigError(f"manipulations.{field.name} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise ConfigError(f"manipulations.{field.name} must be finite, got {value!r}")
        if self.block_min < 1:
            raise ConfigError(f"manipulations.block_min must be >= 1, got {self.block_min}")
        if self.margin_max < 0:
            raise ConfigError(f"manipulations.margin_max must be >= 0, got {self.margin_max}")
        if self.noise_var_min < 0:
            raise ConfigError(f"manipulations.noise_var_min must be >= 0, got {self.noise_var_min}")
        for name in ("shadow_weight_min", "shadow_weight_max", "blend_weight"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(
                    f"manipulations.{name} must be in [0, 1], got {getattr(self, name)}"
                )
        for low, high in (
            ("block_min", "block_max"),
            ("noise_var_min", "noise_var_max"),
            ("shadow_weight_min", "shadow_weight_max"),
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
    shadow_vertices: np.ndarray  # (N, MAX_SHADOW_VERTICES, 2) float32 (row, col), see polygon_mask
    shadow_num_vertices: np.ndarray  # (N,) int8; rows past it repeat the last vertex
    shadow_weight: np.ndarray  # (N,) float32, factor applied inside the polygon
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

    # Shadow: 3..5 vertices anywhere in the image (continuous coordinates, pixel (r, c) covers
    # [r, r+1) x [c, c+1)), ordered by angle about their centroid so the polygon is simple
    # (star-shaped about the centroid). Unused vertex slots repeat the last vertex, which adds
    # zero-length edges that the even-odd rasteriser ignores.
    num_vertices = rng.integers(MIN_SHADOW_VERTICES, MAX_SHADOW_VERTICES + 1, size=n)
    vertices = rng.uniform(0.0, 1.0, size=(n, MAX_SHADOW_VERTICES, 2)) * np.array([height, width])
    used = np.arange(MAX_SHADOW_VERTICES)[None, :] < num_vertices[:, None]
    centroid = (vertices * used[:, :, None]).sum(axis=1) / np.maximum(num_vertices, 1)[:, None]
    angle = np.arctan2(
        vertices[..., 0] - centroid[:, None, 0], vertices[..., 1] - centroid[:, None, 1]
    )
    order = np.argsort(np.where(used, angle, np.inf), axis=1, kind="stable")
    vertices = np.take_along_axis(vertices, order[:, :, None], axis=1)
    last = np.take_along_axis(vertices, (num_vertices - 1)[:, None, None], axis=1)
    vertices = np.where(used[:, :, None], vertices, last).astype(np.float32)
    shadow_weight = rng.uniform(params.shadow_weight_min, params.shadow_weight_max, size=n).astype(
        np.float32
    )

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
        shadow_vertices=vertices,
        shadow_num_vertices=num_vertices.astype(np.int8),
        shadow_weight=shadow_weight,
        partner=partner,
    )


# --------------------------------------------------------------------------- shared pieces


def polygon_mask(vertices: np.ndarray, height: int, width: int) -> np.ndarray:
    """Rasterise polygons: ``(K, V, 2)`` (row, col) vertices to a ``K x H x W`` boolean mask.

    A pixel is inside when its centre ``(r + 0.5, c + 0.5)`` is, by the even-odd rule: a
    horizontal ray from the centre crosses the outline an odd number of times. For each edge
    and row, ``t`` counts the pixel centres of the row that lie left of the edge's crossing
    (``t = W`` when the edge does not span the row's centre line), so the crossing is left of
    centre ``c`` exactly when ``c >= t``. Every row is crossed an even number of times, so the
    parity of crossings left of a centre equals that of crossings right of it, and the mask is
    the XOR over the edges of ``c >= t``. The Python loop runs over the V edges only, each
    vectorised over every row of every polygon; the geometry is float64 on ``K x H`` arrays and
    purely elementwise, so a polygon's mask is the same whether it is rasterised alone or with
    others (what makes the loop and vectorised manipulations identical). Repeated vertices
    (zero-length edges) never span a row and change nothing.
    """
    vertices = np.asarray(vertices, dtype=np.float64)
    rows = np.arange(height, dtype=np.float64)[None, :] + 0.5  # (1, H) row centres
    cols = np.arange(width, dtype=np.int32)[None, None, :]  # (1, 1, W)
    following = np.roll(vertices, -1, axis=1)
    inside = np.zeros((vertices.shape[0], height, width), dtype=bool)
    for edge in range(vertices.shape[1]):
        y0, x0 = vertices[:, edge, 0:1], vertices[:, edge, 1:2]  # (K, 1)
        y1, x1 = following[:, edge, 0:1], following[:, edge, 1:2]
        crosses = (y0 > rows) != (y1 > rows)  # (K, H): the edge spans this row's centre line
        dy = np.where(y1 == y0, 1.0, y1 - y0)
        crossing = x0 + (rows - y0) * ((x1 - x0) / dy)
        # Centres c + 0.5 < crossing  <=>  c < crossing - 0.5 (exact in float64).
        left_of = np.clip(np.ceil(crossing - 0.5), 0, width)
        threshold = np.where(crosses, left_of, width).astype(np.int32)
        inside ^= cols >= threshold[:, :, None]
    return inside


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
    are used either way). ``params`` supplies the noise mean and blend weight; all ranges were
    already used by :func:`draw_parameters`. Returns a new uint8 array; bit-identical to
    :func:`apply_manipulations_loop`.
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

    # Shadow: darken inside each sample's polygon.
    idx = np.flatnonzero(draw.kind == SHADOW)
    for chunk in _chunks(idx, per_image):
        inside = polygon_mask(draw.shadow_vertices[chunk], height, width)
        x = images[chunk]
        values = x.astype(np.float32)
        values *= draw.shadow_weight[chunk][:, None, None, None]
        # Expand the mask to the channels first: np.where broadcasting over a length-3 last
        # axis is several times slower than over full arrays.
        inside = np.repeat(inside, 3, axis=-1).reshape(x.shape)
        out[chunk] = np.where(inside, _to_uint8(values), x)

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

    Written the plain way (slicing for blocks, one noise image drawn per sample) as the test
    oracle and the benchmark baseline; bit-identical to the vectorised version.
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
            mask = polygon_mask(draw.shadow_vertices[i : i + 1], height, width)[0]
            dark = _to_uint8(x.astype(np.float32) * draw.shadow_weight[i])
            out[i] = np.where(mask[..., None], dark, x)
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
