"""The low-pass filter ``g`` and the min-max scaling ``M`` of Section 5, and smooth insertion.

The smooth trigger (Algorithm 1, :mod:`freqbackdoor.triggers.smooth`) and its naive baselines
(:mod:`freqbackdoor.triggers.naive_smooth`) are made with these, following the authors'
published scripts (``Sec5_Smooth_Trigger/``) where the paper leaves the choice open:

- ``g`` (:func:`lowpass`): a separable Gaussian of 30 taps and standard deviation 6 px, zero
  padding, applied to each channel separately;
- ``M`` (:func:`minmax`): min-max scaling of a whole image (or of the whole trigger) at once;
- insertion at evaluation (:func:`patch_smooth`, the ``normalise`` mode of
  :class:`~freqbackdoor.triggers.registry.Trigger`): ``M(x + lambda r)`` scaled to [0, 1].
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from ..errors import ConfigError

# --------------------------------------------------------------------------- filter and scaling


def gaussian_kernel(size: int, sigma: float) -> np.ndarray:
    """A 1-D Gaussian of ``size`` taps and standard deviation ``sigma`` (px), summing to 1.

    Tap ``i`` sits at ``i - (size - 1) / 2``, so the kernel is symmetric about its middle for
    even sizes too (the authors use 30 taps, sigma 6); float64.
    """
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 1:
        raise ConfigError(f"filter_size must be an integer >= 1, got {size!r}")
    if not np.isfinite(sigma) or sigma <= 0:
        raise ConfigError(f"filter_sigma must be a positive number, got {sigma!r}")
    offsets = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    kernel = np.exp(-0.5 * (offsets / float(sigma)) ** 2)
    return kernel / kernel.sum()


def lowpass(x: torch.Tensor, size: int = 30, sigma: float = 6.0) -> torch.Tensor:
    """The low-pass filter ``g``: a separable Gaussian on every channel of an NCHW tensor.

    Zero padding (pixels outside the image count as 0, as in the authors' TF code), output of
    the same ``H x W``. An even kernel cannot be centred on a pixel; like TF's ``SAME`` padding
    it pads ``(size - 1) // 2`` before and ``size // 2`` after, which is what
    ``scipy.ndimage.convolve`` does with ``mode="constant"``. Each channel is filtered alone
    (a depthwise convolution), vertically then horizontally.
    """
    if x.ndim != 4:
        raise ValueError(f"expected an N x C x H x W tensor, got shape {tuple(x.shape)}")
    channels = x.shape[1]
    taps = torch.as_tensor(gaussian_kernel(size, sigma), dtype=x.dtype, device=x.device)
    before, after = (size - 1) // 2, size // 2
    vertical = taps.view(1, 1, size, 1).expand(channels, 1, size, 1)
    horizontal = taps.view(1, 1, 1, size).expand(channels, 1, 1, size)
    out = F.conv2d(F.pad(x, (0, 0, before, after)), vertical, groups=channels)
    return F.conv2d(F.pad(out, (before, after, 0, 0)), horizontal, groups=channels)


def lowpass_pattern(pattern: np.ndarray, size: int = 30, sigma: float = 6.0) -> np.ndarray:
    """:func:`lowpass` for one float ``H x W x C`` array; returns float32 ``H x W x C``."""
    array = np.asarray(pattern, dtype=np.float32)
    if array.ndim != 3:
        raise ValueError(f"expected an H x W x C pattern, got shape {array.shape}")
    tensor = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))[None]
    return np.ascontiguousarray(lowpass(tensor, size, sigma)[0].numpy().transpose(1, 2, 0))


def minmax(x: torch.Tensor, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    """Min-max scale every sample (dim 0) of ``x`` to [``low``, ``high``] over all its values.

    A constant sample has no range to stretch; it keeps its value, clipped to [low, high] (an
    all-zero trigger stays zero, a constant image stays as it is), so the result has no NaN.
    The rule matches the ``normalise`` mode of :class:`~freqbackdoor.triggers.registry.Trigger`.
    """
    flat = x.reshape(x.shape[0], -1)
    shape = (-1,) + (1,) * (x.ndim - 1)
    lo = flat.amin(dim=1).view(shape)
    span = flat.amax(dim=1).view(shape) - lo
    flat_span = span > 0
    scaled = (x - lo) / torch.where(flat_span, span, torch.ones_like(span))
    if (low, high) != (0.0, 1.0):
        scaled = low + scaled * (high - low)
    return torch.where(flat_span, scaled, x).clamp(low, high)


def patch_smooth(x: torch.Tensor, r: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
    """Insert the smooth trigger: ``M(x + strength * r)`` scaled to [0, 1] per image.

    ``x`` is a float NCHW batch in [0, 1], ``r`` a ``1 x C x H x W`` or ``C x H x W`` trigger.
    The same as ``Trigger(mode="normalise", weight=strength, mask=ones, pattern=r)``.
    """
    if r.ndim == 3:
        r = r.unsqueeze(0)
    return minmax(x + strength * r, 0.0, 1.0)
