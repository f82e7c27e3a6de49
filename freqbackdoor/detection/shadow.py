"""The shadow manipulation, bit for bit: OpenCV's polygon fill and its 8-bit HLS conversion.

The authors' shadow is ``albumentations.RandomShadow(p=1)`` with its defaults (see
:mod:`freqbackdoor.detection.manipulations`, whose
:func:`~freqbackdoor.detection.manipulations.draw_parameters` draws the polygons' vertices).
It fills the polygons with OpenCV and darkens the image in OpenCV's HLS colour space; both are
reproduced here with NumPy alone:

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

Deviations from the authors' code that remain:

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

The rasteriser (integer arithmetic) and the colour conversion (elementwise float32) give every
polygon and pixel the same result whether it is processed alone or with others, so the
vectorised and the one-image-at-a-time application
(:mod:`freqbackdoor.detection.manipulation_batches`) agree bit for bit. :func:`round_to_uint8`
is the rounding both use for every float result.
"""

from __future__ import annotations

import numpy as np

# Pixels per call of the shadow's colour conversion (its float32 planes: 128 kB), see
# shadow_pixels.
_SHADOW_PIXELS = 1 << 15


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
    return round_to_uint8(hue), round_to_uint8(total), round_to_uint8(saturation)


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
    return round_to_uint8(rgb)


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


def round_to_uint8(values: np.ndarray) -> np.ndarray:
    """Float pixel values (0..255 scale) to uint8: round to nearest even, then clip."""
    np.rint(values, out=values)
    np.clip(values, 0.0, 255.0, out=values)
    return values.astype(np.uint8)
