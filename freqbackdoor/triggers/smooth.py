"""The smooth trigger of Section 5 (Algorithm 1) and the naive low-pass baselines of Section 5.3.

The paper's answer to frequency-based detectors is a trigger without high-frequency content:
a universal perturbation toward one target class, searched with targeted DeepFool steps that
are passed through a low-pass filter ``g`` before they are added, so the trigger stays smooth.
This module implements the pieces and Algorithm 1 itself, with the choices of the authors'
published scripts (``Sec5_Smooth_Trigger/``) where the paper leaves them open:

- ``g`` (:func:`lowpass`): a separable Gaussian of 30 taps and standard deviation 6 px, zero
  padding, applied to each channel separately;
- ``M`` (:func:`minmax`): min-max scaling of a whole image (or of the whole trigger) at once;
- insertion at evaluation (:func:`patch_smooth`, the ``normalise`` mode of
  :class:`~freqbackdoor.triggers.registry.Trigger`): ``M(x + lambda r)`` scaled to [0, 1];
- the trigger update ``r = M(g(r + g(delta)))`` to [0, 0.2] after every converged DeepFool
  (first add the filtered perturbation, then filter the sum, then rescale the whole array);
  the target is retargeted to the dominant label once more than 5% of the labels change;
  the best trigger so far is kept with its label.

Two modes (config ``triggers.smooth.mode``) run the search:

``authors`` (the default; both shipped configs use it)
    Algorithm 1 as the authors' scripts ran it (``universal_pert.py``, ``deepfool.py``):

    - one image at a time, in a reshuffled order every pass; an image is skipped when the
      current trigger already changes its predicted label (``f(x + v) != f(x)``); every other
      image gets a targeted DeepFool from ``x + v`` and, if it converged, the update above,
      so the next image sees the updated trigger;
    - DeepFool differentiates the model's *softmax* outputs: the margin is
      ``p_target - p_k0`` with ``k0`` the class predicted for ``x + v`` when that image's
      DeepFool starts (kept for all its steps); each step adds ``|f| w / ||w||^2``, a step
      that is not finite is replaced by zero; overshoot 0.02, at most 200 steps (a zero step
      repeats until the cap, so that case stops at once with the same outcome: not converged);
    - "converged" is the authors' test ``steps < deepfool_steps - 1``: a DeepFool that
      needs 199 or all 200 of its 200 steps is discarded (as is one that never gets there), and
      an image already predicted as the target converges in 0 steps with ``delta = 0``, so
      the update still applies ``v = M(g(v))`` (the trigger is smoothed once more);
    - during the search the trigger is inserted as plain ``x + lambda v`` (no min-max, no
      clipping), both for DeepFool and for the fooling rate;
    - after each pass the fooling rate is the share of the *search* images whose predicted
      label ``x + lambda v`` changes against the clean prediction; the retarget and the
      dominant label use the same images; a pass whose rate is at least (``>=``) the best so
      far becomes the best, with the target as it stands after the retarget;
    - the search stops when the *current* pass's fooling rate reaches ``fooling_rate`` or
      after ``max_passes`` (the authors run unbounded; the cap is ours).

    Differences from the authors' code that remain: the search images are the first
    ``samples`` images handed in (the workflow passes a seeded sample of the training set,
    the authors the first 100 CIFAR-10 training images); the shuffle comes from the seeded
    generator; the authors' ``M`` divides by zero on a constant array (NaN), ours keeps a
    constant array as it is; ``strength`` (lambda) multiplies the trigger where the authors
    add it as is (identical at the default 1); with ``holdout > 0`` a held-out error rate
    (``M(x + lambda v)`` against ``M(x)``, as in the batched mode) is recorded per pass for
    information only; PyTorch instead of TF1 float32 arithmetic.

``batched`` (our faster reading of the paper)
    The search images are swept ``batch_size`` at a time (one batched DeepFool call, the
    converged perturbations summed into one update), DeepFool works on the logits with the
    current top class and steps ``(|f| + 1e-4) w / ||w||^2``, images the trigger already
    sends to the target are skipped, the trigger is inserted as ``M(x + lambda r)`` during
    the search, and ``Err`` is measured on ``holdout`` other images against ``M(x)``;
    ``batch_size`` 1 (or ``reference=True``) gives the per-image version of that reading.

:func:`generate_smooth_trigger` is the search; the ``smooth`` trigger builder wraps it and
records the mode, whether the fooling rate was reached and why the search stopped in the
trigger's meta. :data:`AUTHORS_DEVIATIONS` is the short text of the remaining differences.
The ``lowpass`` builder makes the naive baselines the paper compares against: random noise or
a photograph passed through the same ``g``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ConfigError, DataError
from ..frequency.dct import resolve_device
from ..models.classifier import images_to_tensor
from .optimised import FrozenModel, float_option, int_option, to_hwc
from .registry import Trigger, TriggerContext, load_pattern_image, merge_options, register_trigger

SMOOTH_SOURCE = "Zeng et al., ICCV 2021, Section 5 (Algorithm 1)"
LOWPASS_SOURCE = "Zeng et al., ICCV 2021, Section 5.3 (naive smooth triggers)"
LOWPASS_SOURCES = ("noise", "image")
LOWPASS_DEFAULTS: dict[str, Any] = {
    "source": "noise",  # "noise": uniform random pattern; "image": a photograph
    "image": None,  # a skimage.data name or an image file, for source "image"
    "seed": 0,  # seeds the random pattern
    "filter_size": 30,
    "filter_sigma": 6.0,
    "max_value": 0.2,
    "strength": 1.0,
    "target_label": 0,
}
# Images per forward pass when only predictions are needed.
PREDICT_CHUNK = 256
# The batched mode's DeepFool step is (|f| + DEEPFOOL_EPS) w / ||w||^2 (the original DeepFool's
# constant); the authors' Algorithm-1 DeepFool steps |f| w / ||w||^2.
DEEPFOOL_EPS = 1e-4
# triggers.smooth.mode: the authors' sequential search, or our batched reading of the paper.
SMOOTH_MODES = ("authors", "batched")
# The README's deviations entry for the authors' mode (see the module docstring).
AUTHORS_DEVIATIONS = (
    "Smooth trigger, `triggers.smooth.mode: authors` (both shipped configs): Algorithm 1 runs as "
    "the authors' `Sec5_Smooth_Trigger` scripts do: one image at a time, DeepFool on the "
    "softmax outputs (target minus the image's initial top class, overshoot 0.02, at most 200 "
    "steps, converged when it took fewer than 199), after each converged image "
    "`v = M(g(v + g(dr)))` to [0, 0.2], images whose label `x + v` already changes skipped, "
    "the trigger added as plain `x + v` during the search, the fooling rate measured on the "
    "search images, retargeting when more than 5% change, the best pass kept on ties too, "
    "stopping when the current pass reaches the fooling rate. Remaining differences: the "
    "search images are a seeded sample of the training set (the authors: the first 100 "
    "CIFAR-10 training images), the shuffle is seeded, a constant trigger stays constant "
    "under `M` where the authors' division by zero gives NaN, passes are capped by "
    "`max_passes` (the authors run until the rate is reached), and a held-out error rate is "
    "logged for information. `mode: batched` (faster: a batch of images per DeepFool call, "
    "logit DeepFool, `M(x + v)` during the search, held-out error against `M(x)`) is our "
    "earlier reading of the paper, kept as an option."
)


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


# --------------------------------------------------------------------------- DeepFool


def _deepfool(
    model: nn.Module,
    x: torch.Tensor,
    target: int | torch.Tensor,
    overshoot: float,
    max_steps: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`targeted_deepfool` plus the number of DeepFool steps each sample took."""
    n = x.shape[0]
    x = x.detach()
    targets = torch.as_tensor(target, dtype=torch.long, device=x.device).expand(n)
    total = torch.zeros_like(x)
    converged = torch.zeros(n, dtype=torch.bool, device=x.device)
    steps = torch.zeros(n, dtype=torch.long, device=x.device)
    active = torch.arange(n, device=x.device)
    scale = 1.0 + overshoot
    for step in range(max_steps + 1):
        moved = (x[active] + scale * total[active]).requires_grad_(True)
        logits = model(moved)
        top = logits.argmax(dim=1)
        at_target = top == targets[active]
        converged[active[at_target]] = True
        if step == max_steps or bool(at_target.all()):
            break
        # One backward pass for the whole batch: every sample's loss depends on its own input
        # only (the model is in eval mode), so the gradient of the sum is each sample's own.
        rows = torch.arange(active.numel(), device=x.device)
        margin = logits[rows, targets[active]] - logits[rows, top]
        (grad,) = torch.autograd.grad(margin.sum(), moved)
        keep = ~at_target
        w = grad[keep]
        f = margin.detach()[keep]
        norm2 = w.flatten(1).square().sum(dim=1)
        factor = (f.abs() + DEEPFOOL_EPS) / torch.where(norm2 > 0, norm2, torch.ones_like(norm2))
        factor = torch.where(norm2 > 0, factor, torch.zeros_like(factor))
        active = active[keep]
        total[active] += factor.view((-1,) + (1,) * (x.ndim - 1)) * w
        steps[active] += 1
    return scale * total, converged, steps


def _deepfool_softmax(
    model: nn.Module,
    x: torch.Tensor,
    target: int | torch.Tensor,
    overshoot: float,
    max_steps: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The authors' targeted DeepFool (``tar_deepfool``), batched over independent samples.

    The outputs differentiated are the model's softmax probabilities; the margin of a sample
    is ``p_target - p_k0`` with ``k0`` its top class at step 0 (fixed for all its steps, as in
    the authors' code). A step adds ``|f| w / ||w||^2`` to ``r_tot`` (``w`` the margin's
    gradient at ``x + (1 + overshoot) r_tot``); a step with a non-finite value anywhere (a
    vanishing gradient) adds zero. A sample stops once it is predicted as the target; one
    whose step is zero would repeat that step until ``max_steps``, so it stops at once with
    ``max_steps`` steps counted, as if it had run them. Returns ``(1 + overshoot) r_tot``, the
    steps each sample took, whether it reached the target and its initial class ``k0``.
    """
    n = x.shape[0]
    x = x.detach()
    targets = torch.as_tensor(target, dtype=torch.long, device=x.device).expand(n)
    total = torch.zeros_like(x)
    reached = torch.zeros(n, dtype=torch.bool, device=x.device)
    steps = torch.zeros(n, dtype=torch.long, device=x.device)
    initial = torch.zeros(n, dtype=torch.long, device=x.device)
    active = torch.arange(n, device=x.device)
    scale = 1.0 + overshoot
    shape = (-1,) + (1,) * (x.ndim - 1)
    for step in range(max_steps + 1):
        moved = (x[active] + scale * total[active]).requires_grad_(True)
        probs = torch.softmax(model(moved), dim=1)
        top = probs.argmax(dim=1)
        if step == 0:
            initial = top.detach().clone()
        at_target = top == targets[active]
        reached[active[at_target]] = True
        if step == max_steps or bool(at_target.all()):
            break
        rows = torch.arange(active.numel(), device=x.device)
        margin = probs[rows, targets[active]] - probs[rows, initial[active]]
        # Each sample's margin depends on its own input only (eval mode), so the gradient of
        # the sum holds every sample's own gradient.
        (grad,) = torch.autograd.grad(margin.sum(), moved)
        keep = ~at_target
        w = grad[keep]
        f = margin.detach()[keep]
        r = (f.abs() / w.flatten(1).square().sum(dim=1)).view(shape) * w
        finite = torch.isfinite(r).flatten(1).all(dim=1)
        r = torch.where(finite.view(shape), r, torch.zeros_like(r))
        active = active[keep]
        total[active] += r
        steps[active] += 1
        # A zero step leaves the input as it was, so every later step repeats it: the sample
        # would run to max_steps without moving (typically a saturated softmax, whose huge
        # first step lands where every probability but one is exactly 0). Skip the repeats.
        stuck = ~(r != 0).flatten(1).any(dim=1)
        if bool(stuck.any()):
            steps[active[stuck]] = max_steps
            active = active[~stuck]
            if active.numel() == 0:
                break
    return scale * total, steps, reached, initial


def targeted_deepfool(
    model: nn.Module,
    x: torch.Tensor,
    target: int | torch.Tensor,
    overshoot: float = 0.02,
    max_steps: int = 200,
    softmax: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched targeted DeepFool: the small perturbation that moves each sample to ``target``.

    Every sample of the float NCHW batch ``x`` is attacked on its own (``target`` is one class
    or one per sample). With ``softmax=False`` (the batched mode) a step linearises the logit
    margin ``f = logit_target - logit_top`` (``top`` the current arg-max) with its gradient
    ``w`` and moves by ``(|f| + 1e-4) w / ||w||^2``; with ``softmax=True`` it is the authors'
    step on the softmax outputs (:func:`_deepfool_softmax`). The steps accumulate into
    ``r_tot`` and the attacked point is ``x + (1 + overshoot) r_tot``. A sample stops as soon
    as it is predicted as the target; the others share one forward and one backward pass per
    step. Returns ``(1 + overshoot) * r_tot`` and a bool mask of the samples that reached the
    target within ``max_steps`` (samples already there get a zero perturbation and count as
    converged). A sample whose gradient vanishes stops moving.

    ``model`` is switched to eval mode, its weights get no gradients; both come back after.
    """
    with FrozenModel(model):
        if softmax:
            perturbation, _, converged, _ = _deepfool_softmax(
                model, x, target, overshoot, max_steps
            )
        else:
            perturbation, converged, _ = _deepfool(model, x, target, overshoot, max_steps)
    return perturbation.detach(), converged


# --------------------------------------------------------------------------- settings


@dataclasses.dataclass(frozen=True)
class SmoothSettings:
    """Algorithm 1's parameters, with the authors' values as defaults (config: ``triggers.smooth``).

    ``mode`` picks the search (see the module docstring): ``authors`` (sequential, softmax
    DeepFool, fooling rate on the search images; ``holdout`` only adds a logged held-out rate
    and may be 0) or ``batched`` (``batch_size`` images per DeepFool call, Err on ``holdout``
    images, which must be at least 1).
    """

    mode: str = "authors"  # "authors": as their scripts ran it; "batched": our faster reading
    filter_size: int = 30  # taps of the Gaussian low-pass filter g
    filter_sigma: float = 6.0  # its standard deviation, px
    max_value: float = 0.2  # the trigger is min-max scaled to [0, max_value] after each update
    strength: float = 1.0  # lambda: the trigger is inserted as M(x + lambda r)
    fooling_rate: float = 0.2  # gamma: stop once the fooling rate reaches it (1 - 0.8)
    max_passes: int = 10  # cap on passes over the search set (the authors run unbounded)
    samples: int = 100  # search set: the first images (the authors: first 100 training images)
    holdout: int = 100  # the next images: batched Err (authors' mode: logged only, 0 = none)
    overshoot: float = 0.02  # DeepFool overshoot
    deepfool_steps: int = 200  # DeepFool iterations per image at most
    retarget_min_changed: float = 0.05  # retarget when more than this share of labels changed
    initial_target: int | None = None  # None: drawn from the seed, as Algorithm 1 (authors: 6)
    batch_size: int = 100  # not-yet-fooled images per DeepFool call; 1 = the per-image algorithm

    def __post_init__(self) -> None:
        opts = dataclasses.asdict(self)
        name = "smooth"
        if self.mode not in SMOOTH_MODES:
            raise ConfigError(
                f"triggers.smooth.mode must be one of {', '.join(SMOOTH_MODES)}, got {self.mode!r}"
            )
        for key in ("filter_size", "max_passes", "samples", "deepfool_steps"):
            int_option(opts, key, name, 1)
        int_option(opts, "holdout", name, 1 if self.mode == "batched" else 0)
        int_option(opts, "batch_size", name, 1)
        for key in ("filter_sigma", "max_value", "strength", "fooling_rate"):
            float_option(opts, key, name)
        float_option(opts, "overshoot", name, positive=False)
        float_option(opts, "retarget_min_changed", name, positive=False)
        if self.max_value > 1.0:
            raise ConfigError(
                f"triggers.smooth.max_value must be in (0, 1], got {self.max_value!r}"
            )
        if self.fooling_rate > 1.0:
            raise ConfigError(
                f"triggers.smooth.fooling_rate must be in (0, 1], got {self.fooling_rate!r}"
            )
        if self.overshoot < 0:
            raise ConfigError(f"triggers.smooth.overshoot must be >= 0, got {self.overshoot!r}")
        if not 0.0 <= self.retarget_min_changed < 1.0:
            raise ConfigError(
                "triggers.smooth.retarget_min_changed must be in [0, 1), got "
                f"{self.retarget_min_changed!r}"
            )
        if self.initial_target is not None:
            int_option(opts, "initial_target", name, 0)

    @classmethod
    def from_config(cls, mapping: Mapping[str, Any] | None) -> SmoothSettings:
        """Settings from a config mapping; an unknown key raises ``ConfigError`` naming it."""
        defaults = {field.name: field.default for field in dataclasses.fields(cls)}
        return cls(**merge_options(dict(mapping or {}), "smooth", defaults))

    def as_dict(self) -> dict[str, Any]:
        """The settings as a JSON-able dict (for a trigger's meta and sidecar)."""
        return dataclasses.asdict(self)


@dataclasses.dataclass
class SmoothResult:
    """What Algorithm 1 returns: the best trigger, its label and how the search went.

    ``pattern`` is float32 ``H x W x 3`` in [0, max_value]; ``best_pass`` 0 means no pass
    beat the zero trigger; ``history`` holds one dict per pass (pass 0: the zero trigger);
    ``best_error_rate`` is the best pass's fooling rate (``authors`` mode: the share of the
    search images whose label the trigger changes; ``batched``: the held-out ``Err``);
    ``reached`` says whether it reached ``fooling_rate``; ``stop_reason`` says in words why the
    search stopped (the rate reached, or ``max_passes`` hit with the best rate).
    """

    pattern: np.ndarray
    target_label: int
    best_pass: int
    best_error_rate: float
    history: list[dict[str, Any]]
    reached: bool
    mode: str = "authors"
    stop_reason: str = ""


# --------------------------------------------------------------------------- Algorithm 1


def dominant_label(clean: np.ndarray, patched: np.ndarray) -> int | None:
    """``Domi``: the most common new label among the samples whose label changed.

    ``clean`` and ``patched`` are predicted labels of the same samples without and with the
    trigger. Ties go to the smallest label; ``None`` when no label changed.
    """
    clean = np.asarray(clean).ravel()
    patched = np.asarray(patched).ravel()
    if clean.shape != patched.shape:
        raise ValueError(f"label arrays differ in length: {clean.size} and {patched.size}")
    moved = patched[clean != patched]
    if moved.size == 0:
        return None
    return int(np.bincount(moved.astype(np.int64)).argmax())  # argmax: first of the ties


def _predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Arg-max labels of a float NCHW batch, a chunk at a time, without gradients."""
    with torch.no_grad():
        return torch.cat(
            [
                model(x[start : start + PREDICT_CHUNK]).argmax(dim=1)
                for start in range(0, x.shape[0], PREDICT_CHUNK)
            ]
        )


@dataclasses.dataclass
class _Search:
    """The state one sweep over the search set reads and updates."""

    model: nn.Module
    settings: SmoothSettings
    images: torch.Tensor  # the search set, float NCHW in [0, 1]
    r: torch.Tensor  # the current trigger, 1 x C x H x W
    target: int
    clean: torch.Tensor | None = None  # authors' mode: clean predicted labels of the search set
    updates: int = 0  # images whose DeepFool perturbation was accumulated this pass
    skipped: int = 0  # images skipped (authors: label changed by v; batched: already at target)
    steps: list[int] = dataclasses.field(default_factory=list)  # DeepFool steps per image

    def update(self, perturbation: torch.Tensor) -> None:
        """Lines 8-9 of Algorithm 1 plus the authors' rescaling: ``r = M(g(r + g(delta)))``.

        The authors' order: ``v = v + g(dr)``, then ``v = g(v)``, then ``v`` min-max scaled
        over the whole array to [0, max_value].
        """
        s = self.settings
        r = self.r + lowpass(perturbation, s.filter_size, s.filter_sigma)
        r = lowpass(r, s.filter_size, s.filter_sigma)
        self.r = minmax(r, 0.0, s.max_value)


def _sweep_authors(search: _Search, order: np.ndarray) -> None:
    """One pass as the authors' ``universal_perturbation``: image by image, in ``order``.

    An image whose predicted label the current trigger changes (``f(x + lambda v) != f(x)``)
    is skipped. Every other image gets the authors' softmax DeepFool from ``x + lambda v``
    toward the current target and, when it converged in the authors' sense (fewer than
    ``deepfool_steps - 1`` steps, which includes an image already at the target: 0 steps and
    a zero perturbation), the trigger is updated before the next image is looked at.
    """
    s = search.settings
    assert search.clean is not None
    for index in order:
        i = int(index)
        seen = search.images[i : i + 1] + s.strength * search.r
        with torch.no_grad():
            label = int(search.model(seen).argmax(dim=1)[0])
        if label != int(search.clean[i]):
            search.skipped += 1
            continue
        perturbation, steps, _, _ = _deepfool_softmax(
            search.model, seen, search.target, s.overshoot, s.deepfool_steps
        )
        taken = int(steps[0])
        search.steps.append(taken)
        if taken < s.deepfool_steps - 1:
            search.updates += 1
            search.update(perturbation)


def _sweep_batched(search: _Search, order: np.ndarray) -> None:
    """One pass over the search set in ``order``, ``batch_size`` images per DeepFool call.

    Each batch keeps the images the current trigger does not yet send to the target, runs one
    batched DeepFool on their patched versions and adds the sum of the converged perturbations
    through the usual update. This is where batching changes the algorithm: within a batch
    every image sees the same trigger, instead of the trigger updated by the previous image,
    and the perturbations are summed before ``g`` and the rescaling instead of applied one by
    one. With ``batch_size`` 1 it is exactly the per-image algorithm.
    """
    s = search.settings
    for start in range(0, order.size, s.batch_size):
        rows = torch.as_tensor(order[start : start + s.batch_size], device=search.images.device)
        seen = patch_smooth(search.images[rows], search.r, s.strength)
        pending = _predict(search.model, seen) != search.target
        search.skipped += int((~pending).sum())
        if not bool(pending.any()):
            continue
        perturbation, converged, steps = _deepfool(
            search.model, seen[pending], search.target, s.overshoot, s.deepfool_steps
        )
        search.steps += steps.tolist()
        if bool(converged.any()):
            search.updates += int(converged.sum())
            search.update(perturbation[converged].sum(dim=0, keepdim=True))


def _sweep_reference(search: _Search, order: np.ndarray) -> None:
    """The batched mode's pass one image at a time, as the paper writes it (the oracle)."""
    s = search.settings
    for index in order:
        x = search.images[int(index)].unsqueeze(0)
        seen = patch_smooth(x, search.r, s.strength)
        with torch.no_grad():
            label = int(search.model(seen).argmax(dim=1)[0])
        if label == search.target:
            search.skipped += 1
            continue
        perturbation, converged, steps = _deepfool(
            search.model, seen, search.target, s.overshoot, s.deepfool_steps
        )
        search.steps.append(int(steps[0]))
        if bool(converged[0]):
            search.updates += 1
            search.update(perturbation)


def _check_images(images: np.ndarray, settings: SmoothSettings) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3:
        raise DataError(
            f"Algorithm 1 needs uint8 N x H x W x 3 images, got {images.dtype} {images.shape}"
        )
    needed = settings.samples + settings.holdout
    if images.shape[0] < needed:
        raise DataError(
            f"Algorithm 1 needs {needed} images (samples {settings.samples} + holdout "
            f"{settings.holdout}) but got {images.shape[0]}"
        )
    return images


def _record(
    pass_index: int,
    search: _Search,
    sweep_target: int,
    rate: float,
    clean: torch.Tensor,
    patched: torch.Tensor,
    fooled: float,
) -> dict[str, Any]:
    """One pass's history entry (``error_rate`` is the rate the mode decides with).

    No wall time: the history goes into the trigger file, which is the same run after run;
    the log has each pass's seconds."""
    dominant = dominant_label(clean.cpu().numpy(), patched.cpu().numpy())
    moved = patched[patched != clean]
    return {
        "pass": pass_index,
        "target": sweep_target,
        "next_target": search.target,
        "fooled_search": round(fooled, 6),
        "error_rate": round(rate, 6),
        "changed_share": round(rate, 6),
        "dominant_label": dominant,
        "dominant_share": round(float((moved == dominant).float().mean()), 6)
        if dominant is not None
        else 0.0,
        "updates": search.updates,
        "skipped": search.skipped,
        "deepfool_steps_mean": round(float(np.mean(search.steps)), 3) if search.steps else 0.0,
    }


def _stop_reason(
    settings: SmoothSettings, stopped_at: int | None, rate: float, best: float, best_pass: int
) -> str:
    """Why the search stopped, for the trigger's meta: the rate reached, or the pass cap hit."""
    measure = "fooling rate" if settings.mode == "authors" else "best held-out error rate"
    if stopped_at is not None:
        return (
            f"{measure} {rate:.3f} reached fooling_rate {settings.fooling_rate:g} at pass "
            f"{stopped_at}"
        )
    return (
        f"max_passes {settings.max_passes} hit before the {measure} reached fooling_rate "
        f"{settings.fooling_rate:g}; best {best:.3f} at pass {best_pass}"
    )


def _run_authors(
    model: nn.Module,
    images: np.ndarray,
    settings: SmoothSettings,
    device: torch.device,
    rng: np.random.Generator,
    target: int,
    log: logging.Logger | None,
) -> SmoothResult:
    """Algorithm 1 in the ``authors`` mode (see the module docstring)."""
    s = settings
    search_x = images_to_tensor(images[: s.samples], device)
    clean = _predict(model, search_x)
    holdout_x = holdout_clean = None
    if s.holdout:
        holdout_x = images_to_tensor(images[s.samples : s.samples + s.holdout], device)
        holdout_clean = _predict(model, patch_smooth(holdout_x, torch.zeros_like(holdout_x[:1])))
    height, width = images.shape[1:3]
    search = _Search(
        model, s, search_x, torch.zeros(1, 3, height, width, device=device), target, clean
    )
    history: list[dict[str, Any]] = []
    best_r, best_label, best_pass, best_rate = search.r.clone(), target, 0, -1.0
    stopped_at, rate = None, 0.0
    for pass_index in range(s.max_passes + 1):
        started = time.perf_counter()
        search.updates, search.skipped, search.steps = 0, 0, []
        sweep_target = search.target
        if pass_index > 0:
            _sweep_authors(search, rng.permutation(s.samples))
        patched = _predict(model, search_x + s.strength * search.r)
        changed = patched != clean
        rate = float(changed.float().mean())
        dominant = dominant_label(clean.cpu().numpy(), patched.cpu().numpy())
        if dominant is not None and int(changed.sum()) > s.retarget_min_changed * s.samples:
            search.target = dominant
        fooled = float((patched == sweep_target).float().mean())
        record = _record(pass_index, search, sweep_target, rate, clean, patched, fooled)
        if holdout_x is not None:
            held = _predict(model, patch_smooth(holdout_x, search.r, s.strength))
            record["holdout_error_rate"] = round(float((held != holdout_clean).float().mean()), 6)
        history.append(record)
        if rate >= best_rate:  # the authors keep the later pass on a tie
            best_r, best_label = search.r.clone(), search.target
            best_pass, best_rate = pass_index, rate
        if log is not None:
            log.info(
                "Algorithm 1 (authors) pass %d: target %d, %d updates, %d skipped, fooling rate "
                "%.3f on the search images (dominant label %s), best %.3f at pass %d (%.1f s)",
                pass_index,
                sweep_target,
                search.updates,
                search.skipped,
                rate,
                dominant,
                best_rate,
                best_pass,
                time.perf_counter() - started,
            )
        if rate >= s.fooling_rate:
            stopped_at = pass_index
            break
    return SmoothResult(
        pattern=np.clip(to_hwc(best_r), 0.0, s.max_value),
        target_label=int(best_label),
        best_pass=best_pass,
        best_error_rate=best_rate,
        history=history,
        reached=bool(best_rate >= s.fooling_rate),
        mode=s.mode,
        stop_reason=_stop_reason(s, stopped_at, rate, best_rate, best_pass),
    )


def _run_batched(
    model: nn.Module,
    images: np.ndarray,
    settings: SmoothSettings,
    device: torch.device,
    rng: np.random.Generator,
    target: int,
    reference: bool,
    log: logging.Logger | None,
) -> SmoothResult:
    """Algorithm 1 in the ``batched`` mode (see :func:`generate_smooth_trigger`)."""
    s = settings
    sweep: Callable[[_Search, np.ndarray], None] = _sweep_reference if reference else _sweep_batched
    search_x = images_to_tensor(images[: s.samples], device)
    holdout_x = images_to_tensor(images[s.samples : s.samples + s.holdout], device)
    # Labels are compared with those of M(x), the zero trigger inserted: the normalisation
    # alone changes low-contrast images (a quarter of the demo's photo crops), and Err
    # should measure the trigger. For an image that spans [0, 1], M(x) is x.
    clean = _predict(model, patch_smooth(holdout_x, torch.zeros_like(holdout_x[:1]), 1.0))
    height, width = images.shape[1:3]
    search = _Search(model, s, search_x, torch.zeros(1, 3, height, width, device=device), target)
    history: list[dict[str, Any]] = []
    best_r, best_label, best_pass, best_err = search.r.clone(), target, 0, -1.0
    stopped_at, changed = None, 0.0
    for pass_index in range(s.max_passes + 1):
        started = time.perf_counter()
        search.updates, search.steps = 0, []
        sweep_target = search.target
        if pass_index > 0:
            sweep(search, rng.permutation(s.samples))
        patched = _predict(model, patch_smooth(holdout_x, search.r, s.strength))
        fooled_labels = _predict(model, patch_smooth(search_x, search.r, s.strength))
        changed = float((patched != clean).float().mean())
        dominant = dominant_label(clean.cpu().numpy(), patched.cpu().numpy())
        if pass_index > 0 and dominant is not None and changed > s.retarget_min_changed:
            search.target = dominant
        fooled = float((fooled_labels == sweep_target).float().mean())
        record = _record(pass_index, search, sweep_target, changed, clean, patched, fooled)
        history.append(record)
        if changed > best_err:
            best_r = search.r.clone()
            best_label = dominant if dominant is not None else sweep_target
            best_pass, best_err = pass_index, changed
        if log is not None:
            log.info(
                "Algorithm 1 (batched) pass %d: target %d, %d updates, held-out Err %.3f "
                "(dominant label %s), best %.3f at pass %d (%.1f s)",
                pass_index,
                sweep_target,
                search.updates,
                changed,
                dominant,
                best_err,
                best_pass,
                time.perf_counter() - started,
            )
        if best_err >= s.fooling_rate:
            stopped_at = pass_index
            break
    return SmoothResult(
        pattern=np.clip(to_hwc(best_r), 0.0, s.max_value),
        target_label=int(best_label),
        best_pass=best_pass,
        best_error_rate=best_err,
        history=history,
        reached=bool(best_err >= s.fooling_rate),
        mode=s.mode,
        stop_reason=_stop_reason(s, stopped_at, best_err, best_err, best_pass),
    )


def generate_smooth_trigger(
    model: nn.Module,
    images: np.ndarray,
    settings: SmoothSettings | None = None,
    device: str | torch.device = "cpu",
    seed: int = 0,
    num_classes: int | None = None,
    reference: bool = False,
    log: logging.Logger | None = None,
) -> SmoothResult:
    """Algorithm 1: search a smooth universal trigger and its target label.

    ``images`` are uint8 ``N x H x W x 3``: the first ``settings.samples`` form the search set
    ``X``, the next ``settings.holdout`` a disjoint held-out set. ``model`` (on ``device``,
    float NCHW input in [0, 1], logits out) is switched to eval mode for the search. The
    trigger starts at zero and the target at ``initial_target`` or a class drawn from
    ``seed``. Pass 0 evaluates the zero trigger; each later pass reshuffles the search set
    (seeded), sweeps it (DeepFool on the images not yet fooled, each converged perturbation
    ``delta`` updating ``r = M(g(r + g(delta)))`` to [0, max_value]), measures the pass's
    fooling rate, retargets to the dominant label when more than ``retarget_min_changed`` of
    the labels changed, and keeps the best trigger so far. Stops at ``fooling_rate`` or after
    ``max_passes``.

    ``settings.mode`` picks how (module docstring): ``authors`` reproduces the authors'
    scripts (sequential, softmax DeepFool, plain ``x + v`` during the search, the rate on the
    search images, a tie goes to the later pass, the current pass's rate stops the search);
    ``batched`` sweeps ``batch_size`` images per DeepFool call (see :func:`_sweep_batched`
    for how that differs from the per-image algorithm), inserts ``M(x + lambda r)`` and
    measures ``Err`` on the held-out images against ``M(x)``, the best being the strictly
    highest ``Err`` with its dominant label; ``reference=True`` (batched mode only) runs its
    sweep as a plain loop over single images, the oracle of ``batch_size`` 1. The search is
    deterministic for a ``seed`` on the CPU.
    """
    settings = settings or SmoothSettings()
    if reference and settings.mode != "batched":
        raise ValueError("reference=True is the batched mode's per-image oracle; mode is authors")
    images = _check_images(images, settings)
    device = resolve_device(str(device))
    rng = np.random.default_rng(seed)
    with FrozenModel(model):
        if num_classes is None:
            num_classes = getattr(model, "num_classes", None)
        if num_classes is None:
            with torch.no_grad():
                num_classes = int(model(images_to_tensor(images[:1], device)).shape[1])
        if settings.initial_target is not None and settings.initial_target >= num_classes:
            raise ConfigError(
                f"triggers.smooth.initial_target is {settings.initial_target} but the model "
                f"has {num_classes} classes"
            )
        target = (
            int(settings.initial_target)
            if settings.initial_target is not None
            else int(rng.integers(num_classes))
        )
        if settings.mode == "authors":
            return _run_authors(model, images, settings, device, rng, target, log)
        return _run_batched(model, images, settings, device, rng, target, reference, log)


# --------------------------------------------------------------------------- trigger builders


@register_trigger("smooth", SMOOTH_SOURCE, needs=("model", "images"))
def smooth(height: int, width: int, options: dict, context: TriggerContext) -> Trigger:
    """The smooth trigger of Algorithm 1, paired with the label the search settled on.

    Options are the fields of :class:`SmoothSettings`; there is no ``target_label``, since the
    search picks it. The search set and the holdout are the first ``samples + holdout`` context
    images. Inserted with mode ``normalise``, weight ``strength``: ``M(x + lambda r)``. The
    meta records the mode, every pass, the best rate, whether it reached ``fooling_rate``
    and why the search stopped (``stop_reason``).
    """
    settings = SmoothSettings.from_config(options)
    images = np.asarray(context.images)
    if images.ndim != 4 or images.shape[1:3] != (height, width):
        raise DataError(
            f"trigger 'smooth' is built for {height}x{width} images but the context holds "
            f"images of shape {images.shape}"
        )
    result = generate_smooth_trigger(
        context.model,
        images,
        settings,
        device=context.device,
        seed=int(context.seed),
        log=logging.getLogger(__name__),
    )
    return Trigger(
        name="smooth",
        pattern=result.pattern,
        mask=np.ones_like(result.pattern),
        mode="normalise",
        weight=settings.strength,
        target_label=result.target_label,
        meta={
            "settings": settings.as_dict(),
            "mode": result.mode,
            "history": result.history,
            "best_pass": result.best_pass,
            "best_error_rate": result.best_error_rate,
            "rate_measured_on": "search images, x + v"
            if result.mode == "authors"
            else "held-out images, M(x + v) against M(x)",
            "reached": result.reached,
            "stop_reason": result.stop_reason,
            "seed": int(context.seed),
        },
    )


@register_trigger("lowpass", LOWPASS_SOURCE, family=True)
def lowpass_trigger(height: int, width: int, options: dict, context: TriggerContext) -> Trigger:
    """A naive smooth trigger: random noise or a photograph through the low-pass filter ``g``.

    The paper's baselines for Algorithm 1 (Section 5.3): ``source: noise`` draws a uniform
    random ``H x W x 3`` pattern from ``seed``; ``source: image`` loads ``image`` (a
    ``skimage.data`` name such as ``astronaut``, ``chelsea``, ``coffee``, ``rocket``, ``logo``,
    or a file). The pattern goes through the same ``g`` as the smooth trigger and is min-max
    scaled to [0, max_value]; it is inserted like the smooth trigger (mode ``normalise``).
    """
    opts = merge_options(options, "lowpass", LOWPASS_DEFAULTS)
    name = "lowpass"
    source = opts["source"]
    if source not in LOWPASS_SOURCES:
        raise ConfigError(
            f"triggers.lowpass.source must be one of {LOWPASS_SOURCES}, got {source!r}"
        )
    size = int_option(opts, "filter_size", name, 1)
    sigma = float_option(opts, "filter_sigma", name)
    max_value = float_option(opts, "max_value", name)
    if max_value > 1.0:
        raise ConfigError(f"triggers.lowpass.max_value must be in (0, 1], got {max_value!r}")
    strength = float_option(opts, "strength", name)
    target_label = int_option(opts, "target_label", name, 0)
    seed = int_option(opts, "seed", name, 0)
    if source == "image":
        if not isinstance(opts["image"], str) or not opts["image"]:
            raise ConfigError(
                "triggers.lowpass.image must name a skimage.data image or a file for "
                f"source 'image', got {opts['image']!r}"
            )
        raw = load_pattern_image(opts["image"], height, width)
    else:
        raw = np.random.default_rng(seed).random((height, width, 3), dtype=np.float32)
    filtered = lowpass_pattern(raw, size, sigma)
    tensor = torch.from_numpy(filtered.transpose(2, 0, 1).copy())[None]
    pattern = to_hwc(minmax(tensor, 0.0, max_value))
    meta: dict[str, Any] = {
        "source_kind": source,
        "filter_size": size,
        "filter_sigma": sigma,
        "max_value": max_value,
    }
    meta.update({"image": opts["image"]} if source == "image" else {"seed": seed})
    return Trigger(
        name="lowpass",
        pattern=pattern,
        mask=np.ones_like(pattern),
        mode="normalise",
        weight=strength,
        target_label=target_label,
        meta=meta,
    )
