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
- the polygons are rasterised like ``cv2.fillPoly`` and the lightness inside them is scaled in
  OpenCV's 8-bit HLS, both reproduced bit for bit by :mod:`freqbackdoor.detection.shadow`
  (which also says what that implies for the pixels outside the shadow).

Deviations from the authors' code that remain (measured or argued to be negligible; those of
the shadow are listed in :mod:`freqbackdoor.detection.shadow`):

- the authors' albumentations truncated ``x + noise`` to uint8 (``np.clip(...).astype``), and
  their blend was truncated too when the DCT cast ``x * 255`` to uint8; we round to nearest
  (``np.rint``), so our noise and blend are on average half a grey level brighter;
- their random block is ``np.random.rand`` cast to uint8 by the DCT, uniform on 0..254; ours is
  uniform on 0..255; their blend partner may be the image itself (probability 1/N); ours never.

Geometry (block sides and margin) is given for 32x32 images, as in the paper, and scales with
``height / 32`` (rounded half up, at least 1 px): at 224x224 blocks are 14..49 px and the margin
0..35 px. Shadow vertices scale through ``shadow_roi`` (fractions of the image). Noise and blend
act per pixel and do not scale.

Randomness is drawn once, apart from the pixels, by :func:`draw_parameters` into a
:class:`ManipulationDraw`;
:func:`~freqbackdoor.detection.manipulation_batches.apply_manipulations` (vectorised over each
kind's group) and :func:`~freqbackdoor.detection.manipulation_batches.apply_manipulations_loop`
(one image at a time, the test oracle and benchmark baseline) turn the same draw into
bit-identical images:

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

This module holds the kinds, their parameters (:class:`ManipulationParams`) and the draw;
applying a draw to a batch, vectorised or one image at a time, is
:mod:`freqbackdoor.detection.manipulation_batches`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..config.options import ConfigSettings
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


# --------------------------------------------------------------------------- parameters


@dataclasses.dataclass(frozen=True)
class ManipulationParams(ConfigSettings):
    """Ranges of the random manipulations (the authors' values by default).

    Block sides and margin are in pixels of a 32x32 image and scale with the image height;
    noise values are on the 0..255 pixel scale; ``noise_var_*`` is the variance, not the std.
    The ``shadow_*`` values are albumentations' ``RandomShadow`` defaults: ``shadow_roi`` is
    ``(x_min, y_min, x_max, y_max)`` as fractions of the width and height (a list in YAML).
    """

    CONFIG_NAME = "manipulations"
    REQUIRED = ()

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
