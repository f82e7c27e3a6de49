"""Applying a draw of the random manipulations to a batch: vectorised, and one image at a time.

:func:`apply_manipulations` turns a :class:`~freqbackdoor.detection.manipulations.ManipulationDraw`
into manipulated images, vectorised over each kind's group of samples, in chunks that bound the
memory; :func:`apply_manipulations_loop` does the same one image at a time, the plain way (the
test oracle and the benchmark baseline); :func:`manipulate` draws and applies in one call. Both
paths give bit-identical images: the draw holds the Gaussian noise's seed, not the noise, and
all arithmetic is float32 in the same order in both (the full account is in
:mod:`freqbackdoor.detection.manipulations`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from .manipulations import (
    BLEND,
    CORNERS,
    GAUSSIAN_NOISE,
    RANDOM_BLOCK,
    SHADOW,
    WHITE_BLOCK,
    ManipulationDraw,
    ManipulationParams,
    draw_parameters,
)
from .shadow import polygon_mask, round_to_uint8, shadow_mask, shadow_pixels

# Float32 values per temporary array in the vectorised path (2**18, 1 MB): large enough to amortise
# the per-call overhead at 32 px, small enough to stay in cache and to bound memory at 224 px.
_CHUNK_ELEMENTS = 1 << 18


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
            out[chunk] = round_to_uint8(values)

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
        out[chunk] = round_to_uint8(values)
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
            out[i] = round_to_uint8(x.astype(np.float32) + noise)
        elif kind == SHADOW:
            inside = np.zeros((height, width), dtype=bool)
            for polygon in draw.shadow_vertices[i, : draw.shadow_count[i]]:
                inside |= polygon_mask(polygon[None], height, width)[0]
            out[i] = shadow_pixels(x, inside, params.shadow_lightness)
        else:  # BLEND
            partner = source[draw.partner[i]].astype(np.float32)
            out[i] = round_to_uint8(x.astype(np.float32) + blend_weight * partner)
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
