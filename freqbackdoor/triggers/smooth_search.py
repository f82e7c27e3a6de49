"""Algorithm 1's passes over the search images, in the two modes of :mod:`freqbackdoor.triggers.smooth`.

A pass sweeps the search images in a reshuffled order and updates the trigger
``r = M(g(r + g(delta)))`` after each converged DeepFool: ``authors`` one image at a time,
skipping an image whose label the trigger already changes, as the authors' scripts; ``batched``
``batch_size`` images per DeepFool call (per image with ``reference=True``), skipping images
already sent to the target. After each pass the fooling rate is measured, the target retargeted
to the dominant label when enough labels changed, and the best trigger kept.
:func:`run_authors` and :func:`run_batched` run the passes until the rate is reached or
``max_passes`` are done and return a :class:`SmoothResult`;
:func:`~freqbackdoor.triggers.smooth.generate_smooth_trigger` checks the inputs, draws the
initial target and picks the mode. The modes' differences from the authors' code are listed in
:mod:`freqbackdoor.triggers.smooth`.

The settings are a :class:`~freqbackdoor.triggers.smooth.SmoothSettings`, named in annotations
only: :mod:`freqbackdoor.triggers.smooth` imports this module.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from ..models.classifier import images_to_tensor
from .deepfool import deepfool_on_logits, deepfool_on_softmax
from .filters import lowpass, minmax, patch_smooth
from .optimisation import to_hwc

if TYPE_CHECKING:  # annotations only: smooth.py imports this module
    from .smooth import SmoothSettings

# Images per forward pass when only predictions are needed.
PREDICT_CHUNK = 256


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
        perturbation, steps, _, _ = deepfool_on_softmax(
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
        perturbation, converged, steps = deepfool_on_logits(
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
        perturbation, converged, steps = deepfool_on_logits(
            search.model, seen, search.target, s.overshoot, s.deepfool_steps
        )
        search.steps.append(int(steps[0]))
        if bool(converged[0]):
            search.updates += 1
            search.update(perturbation)


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


def run_authors(
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


def run_batched(
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
