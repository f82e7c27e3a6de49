"""The smooth trigger of Section 5 (Algorithm 1) and the naive low-pass baselines of Section 5.3.

The paper's answer to frequency-based detectors is a trigger without high-frequency content:
a universal perturbation toward one target class, searched with targeted DeepFool steps that
are passed through a low-pass filter ``g`` before they are added, so the trigger stays smooth.
This module implements the pieces and Algorithm 1 itself, with the choices of the authors'
published scripts where the paper leaves them open:

- ``g`` (:func:`lowpass`): a separable Gaussian of 30 taps and standard deviation 6 px, zero
  padding, applied to each channel separately;
- ``M`` (:func:`minmax`): min-max scaling of a whole image (or of the whole trigger) at once;
- insertion (:func:`patch_smooth`, the ``normalise`` mode of :class:`~freqbackdoor.triggers.Trigger`):
  ``M(x + lambda r)`` scaled to [0, 1];
- the trigger is kept in [0, 0.2] after every update; the search runs over the first 100
  training images; the target is retargeted to the dominant label once more than 5% of the
  labels change; the best trigger so far is kept with its dominant label.

:func:`generate_smooth_trigger` is the search; it runs the inner sweep over images in batches
(``batch_size`` images share one DeepFool call) and, with ``reference=True``, as the plain
per-image loop of the paper, kept as the test oracle and the benchmark baseline. The ``smooth``
trigger builder wraps it; the ``lowpass`` builder makes the naive baselines the paper compares
against: random noise or a photograph passed through the same ``g``.
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

from .dct import resolve_device
from .errors import ConfigError, DataError
from .models import images_to_tensor
from .optimised_triggers import _float_option, _Frozen, _int_option, _to_hwc
from .triggers import Trigger, TriggerContext, _take, load_pattern_image, register_trigger

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
# DeepFool's step is (|f| + DEEPFOOL_EPS) w / ||w||^2, as in the authors' code.
DEEPFOOL_EPS = 1e-4


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
    The rule matches the ``normalise`` mode of :class:`~freqbackdoor.triggers.Trigger`.
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


def targeted_deepfool(
    model: nn.Module,
    x: torch.Tensor,
    target: int | torch.Tensor,
    overshoot: float = 0.02,
    max_steps: int = 200,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched targeted DeepFool: the small perturbation that moves each sample to ``target``.

    Every sample of the float NCHW batch ``x`` is attacked on its own (``target`` is one class
    or one per sample). A step linearises the margin ``f = logit_target - logit_top`` (``top``
    the current arg-max) with its gradient ``w`` and moves by ``(|f| + 1e-4) w / ||w||^2``;
    the steps accumulate into ``r_tot`` and the attacked point is ``x + (1 + overshoot) r_tot``.
    A sample stops as soon as it is predicted as the target; the others share one forward and
    one backward pass per step. Returns ``(1 + overshoot) * r_tot`` and a bool mask of the
    samples that reached the target within ``max_steps`` (samples already there get a zero
    perturbation and count as converged). A sample whose gradient vanishes stops moving.

    ``model`` is switched to eval mode, its weights get no gradients; both come back after.
    """
    with _Frozen(model):
        perturbation, converged, _ = _deepfool(model, x, target, overshoot, max_steps)
    return perturbation.detach(), converged


# --------------------------------------------------------------------------- settings


@dataclasses.dataclass(frozen=True)
class SmoothSettings:
    """Algorithm 1's parameters, with the authors' values as defaults (config: ``triggers.smooth``)."""

    filter_size: int = 30  # taps of the Gaussian low-pass filter g
    filter_sigma: float = 6.0  # its standard deviation, px
    max_value: float = 0.2  # the trigger is min-max scaled to [0, max_value] after each update
    strength: float = 1.0  # lambda: the trigger is inserted as M(x + lambda r)
    fooling_rate: float = 0.2  # gamma: stop once the best held-out error reaches it (1 - 0.8)
    max_passes: int = 10  # cap on passes over the search set (the authors run unbounded)
    samples: int = 100  # search set: the first images (the authors: first 100 training images)
    holdout: int = 100  # the next images, disjoint, on which Err picks the best pass
    overshoot: float = 0.02  # DeepFool overshoot
    deepfool_steps: int = 200  # DeepFool iterations per image at most
    retarget_min_changed: float = 0.05  # retarget when more than this share of labels changed
    initial_target: int | None = None  # None: drawn from the seed, as Algorithm 1 (authors: 6)
    batch_size: int = 100  # not-yet-fooled images per DeepFool call; 1 = the per-image algorithm

    def __post_init__(self) -> None:
        opts = dataclasses.asdict(self)
        name = "smooth"
        for key in ("filter_size", "max_passes", "samples", "holdout", "deepfool_steps"):
            _int_option(opts, key, name, 1)
        _int_option(opts, "batch_size", name, 1)
        for key in ("filter_sigma", "max_value", "strength", "fooling_rate"):
            _float_option(opts, key, name)
        _float_option(opts, "overshoot", name, positive=False)
        _float_option(opts, "retarget_min_changed", name, positive=False)
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
            _int_option(opts, "initial_target", name, 0)

    @classmethod
    def from_config(cls, mapping: Mapping[str, Any] | None) -> SmoothSettings:
        """Settings from a config mapping; an unknown key raises ``ConfigError`` naming it."""
        defaults = {field.name: field.default for field in dataclasses.fields(cls)}
        return cls(**_take(dict(mapping or {}), "smooth", defaults))

    def as_dict(self) -> dict[str, Any]:
        """The settings as a JSON-able dict (for a trigger's meta and sidecar)."""
        return dataclasses.asdict(self)


@dataclasses.dataclass
class SmoothResult:
    """What Algorithm 1 returns: the best trigger, its dominant label and how the search went.

    ``pattern`` is float32 ``H x W x 3`` in [0, max_value]; ``best_pass`` 0 means no pass
    beat the zero trigger; ``history`` holds one dict per pass (pass 0: the zero trigger);
    ``reached`` says whether the best held-out error reached ``fooling_rate``.
    """

    pattern: np.ndarray
    target_label: int
    best_pass: int
    best_error_rate: float
    history: list[dict[str, Any]]
    reached: bool


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
    updates: int = 0  # images whose DeepFool perturbation was accumulated this pass
    steps: list[int] = dataclasses.field(default_factory=list)  # DeepFool steps per image

    def update(self, perturbation: torch.Tensor) -> None:
        """Lines 8-9 of Algorithm 1 plus the authors' rescaling: ``r = M(g(r + g(delta)))``."""
        s = self.settings
        r = self.r + lowpass(perturbation, s.filter_size, s.filter_sigma)
        r = lowpass(r, s.filter_size, s.filter_sigma)
        self.r = minmax(r, 0.0, s.max_value)


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
    """One pass over the search set as the paper writes it: one image at a time (the oracle)."""
    s = search.settings
    for index in order:
        x = search.images[int(index)].unsqueeze(0)
        seen = patch_smooth(x, search.r, s.strength)
        with torch.no_grad():
            label = int(search.model(seen).argmax(dim=1)[0])
        if label == search.target:
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
    """Algorithm 1: search a smooth universal trigger and its dominant label.

    ``images`` are uint8 ``N x H x W x 3``: the first ``settings.samples`` form the search set
    ``X``, the next ``settings.holdout`` the disjoint set on which ``Err`` is estimated (the
    share of images whose predicted label the trigger changes, against ``M(x)``, the images
    normalised without a trigger) and ``Domi`` taken. ``model``
    (on ``device``, float NCHW input in [0, 1], logits out) is switched to eval mode for the
    search. The trigger starts at zero and the target at ``initial_target`` or a class drawn
    from ``seed``. Pass 0 evaluates the zero trigger (line 3, ``gamma_best = Err(X)``); each
    later pass

    1. reshuffles the search set (seeded) and sweeps it: every image that ``M(x + lambda r)``
       does not send to the target gets a targeted DeepFool from that patched image, and a
       converged perturbation ``delta`` updates ``r = M(g(r + g(delta)))`` to [0, max_value];
    2. on the holdout, compares predictions with and without the trigger: ``Err``, the
       dominant label (mode of the changed labels, ties to the smallest) and, when more than
       ``retarget_min_changed`` of the labels changed, the dominant label as the next target;
    3. keeps a copy of ``r`` and its dominant label when ``Err`` beats the best so far.

    The search stops once the best ``Err`` reaches ``fooling_rate`` or after ``max_passes``.
    The sweep runs ``batch_size`` images per DeepFool call (see :func:`_sweep_batched` for the
    one way this differs from the per-image algorithm); ``batch_size`` 1 or ``reference=True``
    (a plain loop over single images, the oracle) follow the paper image by image, and give
    the same trigger. The search is deterministic for a ``seed`` on the CPU.
    """
    settings = settings or SmoothSettings()
    images = _check_images(images, settings)
    device = resolve_device(str(device))
    rng = np.random.default_rng(seed)
    sweep: Callable[[_Search, np.ndarray], None] = _sweep_reference if reference else _sweep_batched
    search_x = images_to_tensor(images[: settings.samples], device)
    holdout_x = images_to_tensor(
        images[settings.samples : settings.samples + settings.holdout], device
    )
    height, width = images.shape[1:3]
    with _Frozen(model):
        # Labels are compared with those of M(x), the zero trigger inserted: the normalisation
        # alone changes low-contrast images (a quarter of the demo's photo crops), and Err
        # should measure the trigger. For an image that spans [0, 1], M(x) is x (the authors
        # compare with the clean prediction).
        clean = _predict(model, patch_smooth(holdout_x, torch.zeros_like(holdout_x[:1]), 1.0))
        if num_classes is None:
            num_classes = getattr(model, "num_classes", None)
        if num_classes is None:
            with torch.no_grad():
                num_classes = int(model(holdout_x[:1]).shape[1])
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
        search = _Search(
            model, settings, search_x, torch.zeros(1, 3, height, width, device=device), target
        )
        history: list[dict[str, Any]] = []
        best_r, best_label, best_pass, best_err = search.r.clone(), target, 0, -1.0
        for pass_index in range(settings.max_passes + 1):
            started = time.perf_counter()
            search.updates, search.steps = 0, []
            if pass_index > 0:
                sweep(search, rng.permutation(settings.samples))
            patched = _predict(model, patch_smooth(holdout_x, search.r, settings.strength))
            fooled = _predict(model, patch_smooth(search_x, search.r, settings.strength))
            changed = float((patched != clean).float().mean())
            dominant = dominant_label(clean.cpu().numpy(), patched.cpu().numpy())
            record = {
                "pass": pass_index,
                "target": search.target,
                "fooled_search": round(float((fooled == search.target).float().mean()), 6),
                "error_rate": round(changed, 6),
                "changed_share": round(changed, 6),
                "dominant_label": dominant,
                "dominant_share": round(
                    float((patched[patched != clean] == dominant).float().mean())
                    if dominant is not None
                    else 0.0,
                    6,
                ),
                "updates": search.updates,
                "deepfool_steps_mean": round(float(np.mean(search.steps)), 3)
                if search.steps
                else 0.0,
                "seconds": round(time.perf_counter() - started, 4),
            }
            history.append(record)
            if changed > best_err:
                best_r = search.r.clone()
                best_label = dominant if dominant is not None else search.target
                best_pass, best_err = pass_index, changed
            if pass_index > 0 and dominant is not None and changed > settings.retarget_min_changed:
                search.target = dominant
            if log is not None:
                log.info(
                    "Algorithm 1 pass %d: target %d, %d updates, held-out Err %.3f "
                    "(dominant label %s), best %.3f at pass %d",
                    pass_index,
                    record["target"],
                    search.updates,
                    changed,
                    dominant,
                    best_err,
                    best_pass,
                )
            if best_err >= settings.fooling_rate:
                break
    pattern = np.clip(_to_hwc(best_r), 0.0, settings.max_value)
    return SmoothResult(
        pattern=pattern,
        target_label=int(best_label),
        best_pass=best_pass,
        best_error_rate=best_err,
        history=history,
        reached=bool(best_err >= settings.fooling_rate),
    )


# --------------------------------------------------------------------------- trigger builders


@register_trigger("smooth", SMOOTH_SOURCE, needs=("model", "images"))
def smooth(height: int, width: int, options: dict, context: TriggerContext) -> Trigger:
    """The smooth trigger of Algorithm 1, paired with its dominant label as the target.

    Options are the fields of :class:`SmoothSettings`; there is no ``target_label``, since the
    search picks it. The search set and the holdout are the first ``samples + holdout`` context
    images. Inserted with mode ``normalise``, weight ``strength``: ``M(x + lambda r)``.
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
            "history": result.history,
            "best_pass": result.best_pass,
            "best_error_rate": result.best_error_rate,
            "reached": result.reached,
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
    opts = _take(options, "lowpass", LOWPASS_DEFAULTS)
    name = "lowpass"
    source = opts["source"]
    if source not in LOWPASS_SOURCES:
        raise ConfigError(
            f"triggers.lowpass.source must be one of {LOWPASS_SOURCES}, got {source!r}"
        )
    size = _int_option(opts, "filter_size", name, 1)
    sigma = _float_option(opts, "filter_sigma", name)
    max_value = _float_option(opts, "max_value", name)
    if max_value > 1.0:
        raise ConfigError(f"triggers.lowpass.max_value must be in (0, 1], got {max_value!r}")
    strength = _float_option(opts, "strength", name)
    target_label = _int_option(opts, "target_label", name, 0)
    seed = _int_option(opts, "seed", name, 0)
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
    pattern = _to_hwc(minmax(tensor, 0.0, max_value))
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
