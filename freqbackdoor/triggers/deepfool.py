"""Targeted DeepFool, batched over independent samples: the inner step of Algorithm 1.

Algorithm 1 (:mod:`freqbackdoor.triggers.smooth`) moves each search image toward the target
class with a targeted DeepFool and adds the perturbation, low-pass filtered, to the trigger.
There are two variants, one per search mode:

- :func:`deepfool_on_softmax`, the authors' ``tar_deepfool`` (their ``deepfool.py``), used by
  the ``authors`` mode: it differentiates the softmax outputs, with the margin
  ``p_target - p_k0`` (``k0`` the class predicted when it starts), and steps ``|f| w / ||w||^2``;
- :func:`deepfool_on_logits`, the ``batched`` mode's: the logit margin to the current top
  class, steps ``(|f| + 1e-4) w / ||w||^2`` (the original DeepFool's constant).

Each sample is attacked on its own while the batch shares one forward and one backward pass per
step; :func:`targeted_deepfool` is the entry that returns the perturbation and which samples
reached the target.
"""

from __future__ import annotations

import torch
from torch import nn

from .optimisation import FrozenModel

# The batched mode's DeepFool step is (|f| + DEEPFOOL_EPS) w / ||w||^2 (the original DeepFool's
# constant); the authors' Algorithm-1 DeepFool steps |f| w / ||w||^2.
DEEPFOOL_EPS = 1e-4


# --------------------------------------------------------------------------- DeepFool


def deepfool_on_logits(
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


def deepfool_on_softmax(
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
    step on the softmax outputs (:func:`deepfool_on_softmax`). The steps accumulate into
    ``r_tot`` and the attacked point is ``x + (1 + overshoot) r_tot``. A sample stops as soon
    as it is predicted as the target; the others share one forward and one backward pass per
    step. Returns ``(1 + overshoot) * r_tot`` and a bool mask of the samples that reached the
    target within ``max_steps`` (samples already there get a zero perturbation and count as
    converged). A sample whose gradient vanishes stops moving.

    ``model`` is switched to eval mode, its weights get no gradients; both come back after.
    """
    with FrozenModel(model):
        if softmax:
            perturbation, _, converged, _ = deepfool_on_softmax(
                model, x, target, overshoot, max_steps
            )
        else:
            perturbation, converged, _ = deepfool_on_logits(model, x, target, overshoot, max_steps)
    return perturbation.detach(), converged
