"""The smooth trigger of Section 5 (Algorithm 1): its settings, the search and its builder.

The paper's answer to frequency-based detectors is a trigger without high-frequency content:
a universal perturbation toward one target class, searched with targeted DeepFool steps that
are passed through a low-pass filter ``g`` before they are added, so the trigger stays smooth.
Algorithm 1 follows the choices of the authors' published scripts (``Sec5_Smooth_Trigger/``)
where the paper leaves them open. Its pieces live by subject:

- ``g``, ``M`` and the insertion ``M(x + lambda r)``: :mod:`freqbackdoor.triggers.filters`;
- targeted DeepFool, on the softmax (the authors') or on the logits:
  :mod:`freqbackdoor.triggers.deepfool`;
- the passes of the search in both modes below: :mod:`freqbackdoor.triggers.smooth_search`;
- the naive low-pass baselines of Section 5.3: :mod:`freqbackdoor.triggers.naive_smooth`.

The search:

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
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, DataError
from ..frequency.dct import resolve_device
from ..models.classifier import images_to_tensor
from .optimisation import FrozenModel, float_option, int_option
from .registry import Trigger, TriggerContext, merge_options, register_trigger
from .smooth_search import SmoothResult, run_authors, run_batched

SMOOTH_SOURCE = "Zeng et al., ICCV 2021, Section 5 (Algorithm 1)"
# triggers.smooth.mode: the authors' sequential search, or our batched reading of the paper.
SMOOTH_MODES = ("authors", "batched")
# docs/deviations.md's entry for the authors' mode (see the module docstring).
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
            return run_authors(model, images, settings, device, rng, target, log)
        return run_batched(model, images, settings, device, rng, target, reference, log)


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
