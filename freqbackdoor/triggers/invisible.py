"""Li et al.'s invisible triggers (IEEE TDSC 2020, the regularisation variant): l2 and l0.

Both are optimised by the recipe of :mod:`freqbackdoor.triggers.optimisation` (select
penultimate neurons, drive them to ``target_activation`` with Adam, project after every step):
l2-invisible onto an L2 ball and a pixel range, l0-invisible onto a few replaced pixels.

What the network sees during step 2 differs by trigger. The TrojanNN triggers and l0-invisible
are optimised on minibatches of training images with the trigger stamped in the same way it
will be inserted later: the neurons then fire whatever the background is, which is what
poisoning needs. l2-invisible by default (``optimise_on: trigger``) does what Li et al. did:
the network input is the perturbation alone, started from random noise, and the neurons are
chosen in that same regime (responses to noise alone, measured against a blank input). That
matters for its frequency content, the property the paper examines: a full-image perturbation
whose gradient is averaged over many stamped images converges to a smooth, low-frequency
universal perturbation, while one optimised as the input itself stays noise-like, like the
authors' published file. ``optimise_on: images`` keeps the universal variant available.

Insertion follows the authors' evaluation code (``../shared/reference/README.md``):
l2-invisible is added and clipped (``mode: additive``, weight 1, mask 1 everywhere);
l0-invisible replaces a few pixels (``mode: replace``).

Besides the ``meta`` every optimised trigger records (see
:mod:`freqbackdoor.triggers.optimisation`), l2-invisible also records the objective its
optimiser minimised (``objective_initial``/``_final`` and a short ``objective_history``), which
is not the same quantity when it optimises the trigger alone.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from ..errors import ConfigError
from .optimisation import (
    OPTIMISATION_DEFAULTS,
    FrozenModel,
    OptimisationProblem,
    OptimisationSettings,
    additive_insert,
    evaluate_trigger,
    float_option,
    int_option,
    mask_plane,
    neuron_meta,
    optimisation_problem,
    optimise_trigger,
    replace_insert,
    select_neurons,
    short_history,
    to_hwc,
)
from .registry import Trigger, TriggerContext, merge_options, register_trigger, scaled_length

INVISIBLE_SOURCE = (
    "Li et al., Invisible Backdoor Attacks on Deep Neural Networks via Steganography and "
    "Regularization, IEEE TDSC 2020"
)

L2_INV_DEFAULTS = {
    **OPTIMISATION_DEFAULTS,
    "lr": 0.02,
    "l2_budget": 3.0,  # L2 radius in [0, 1] pixel units at 32x32, scaled by size/32
    "max_value": 68 / 255,  # largest pixel value of the perturbation (the published one's)
    "l2_penalty": 0.1,  # weight of Li et al.'s squared-L2 regulariser in the loss
    "optimise_on": "trigger",  # network input while optimising: "trigger" alone or "images"
}
L0_INV_DEFAULTS = {
    **OPTIMISATION_DEFAULTS,
    "pixels": 9,  # pixels replaced at 32x32, scaled by (size/32)^2
    "region": "bottom_row",  # where they may lie: "bottom_row" (scaled) or "anywhere"
}
REGIONS = ("bottom_row", "anywhere")
OPTIMISE_ON = ("trigger", "images")


def _blank(problem: OptimisationProblem) -> OptimisationProblem:
    """``problem`` with one black image as the only background: the trigger-alone regime.

    Adding a perturbation with values in [0, 1] to a black image and clipping gives the
    perturbation itself, so optimising on this problem feeds the network the trigger alone (as
    Li et al. and TrojanNN did), and :func:`select_neurons` on it measures each unit's response
    to noise alone against a blank input. The model and the seeded random stream are shared.
    """
    _, channels, height, width = problem.images.shape
    black = torch.zeros(1, channels, height, width, device=problem.device)
    return dataclasses.replace(problem, images=black, batch_size=1, chunk_size=1)


# --------------------------------------------------------------------------- Li et al.


@register_trigger("l2_inv", INVISIBLE_SOURCE, needs=("model", "images"))
def l2_invisible(height: int, width: int, options: dict, context: TriggerContext) -> Trigger:
    """Li et al.'s l2-regularised invisible trigger: small full-image noise that excites neurons.

    Objective: the neuron loss plus ``l2_penalty * ||delta||^2`` (Li et al.'s regulariser);
    after every step ``delta`` is clamped to ``[0, max_value]`` and projected onto the L2 ball
    of radius ``l2_budget`` (pixel units, given at 32x32 and scaled by size/32, as the norm of
    a fixed per-pixel amplitude grows with the side). The published 32x32 trigger has max
    68/255 and L2 norm 3.2, hence the defaults. Inserted by adding and clipping, like the
    authors.

    ``optimise_on`` says what the network sees while ``delta`` is optimised:

    - ``trigger`` (default, Li et al.'s method): ``delta`` alone, a ``1 x 3 x H x W`` input
      started from uniform noise in ``[0, max_value]``; one step per Adam update, so
      ``batch_size`` is unused. Neurons are selected in the same regime (response to noise
      alone against a black input), since a unit the perturbation alone cannot wake gives the
      optimiser no gradient. The result is noise-like, with much of its energy at high
      frequencies, like the authors' file.
    - ``images``: minibatches of context images with ``delta`` added and clipped, and neurons
      selected by noise added to those images. This finds a universal perturbation that
      excites the units on any background; averaging gradients over backgrounds makes it
      smooth, a low-frequency trigger unlike Li et al.'s.

    Either way ``loss_*``/``activation_*`` in ``meta`` are measured on the context images with
    ``delta`` inserted, and ``objective_*`` is what the optimiser minimised (on the trigger
    alone, or over all context images, plus the penalty); ``loss_history`` holds the neuron
    loss of each step's input (the trigger alone, or the minibatch).
    """
    opts = merge_options(options, "l2_inv", L2_INV_DEFAULTS)
    settings = OptimisationSettings.parse(opts, "l2_inv")
    max_value = float_option(opts, "max_value", "l2_inv")
    if max_value > 1.0:
        raise ConfigError(f"triggers.l2_inv.max_value must be in (0, 1], got {max_value!r}")
    budget32 = float_option(opts, "l2_budget", "l2_inv")
    budget = budget32 * math.sqrt(height * width) / 32.0
    weight = float_option(opts, "l2_penalty", "l2_inv", positive=False)
    if weight < 0:
        raise ConfigError(f"triggers.l2_inv.l2_penalty must be >= 0, got {weight!r}")
    optimise_on = opts["optimise_on"]
    if optimise_on not in OPTIMISE_ON:
        raise ConfigError(
            f"triggers.l2_inv.optimise_on must be one of {OPTIMISE_ON}, got {optimise_on!r}"
        )
    problem = optimisation_problem("l2_inv", height, width, settings, context)
    source = _blank(problem) if optimise_on == "trigger" else problem

    def project(delta: torch.Tensor) -> None:
        delta.clamp_(0.0, max_value)
        norm = float(delta.norm())
        if norm > budget:
            delta.mul_(budget / norm)  # scaling keeps every value in [0, max_value]

    def penalty(delta: torch.Tensor) -> torch.Tensor:
        return weight * delta.square().sum()

    with FrozenModel(problem.model):
        insert = additive_insert(torch.ones(1, 1, height, width, device=problem.device))
        neurons, selection = select_neurons(source, insert, settings.neurons, scale=max_value)

        def objective(delta: torch.Tensor) -> float:
            """The optimiser's objective at ``delta``, over all of ``source``'s images."""
            _, loss = evaluate_trigger(source, insert, delta, neurons, settings.target)
            return loss + (float(penalty(delta)) if weight > 0 else 0.0)

        delta = max_value * problem.rand(1, 3, height, width)
        project(delta)
        activation_clean, loss_clean = evaluate_trigger(
            problem, insert, None, neurons, settings.target
        )
        activation_initial, loss_initial = evaluate_trigger(
            problem, insert, delta, neurons, settings.target
        )
        objective_initial = objective(delta)
        objectives: list[float] = []
        losses = optimise_trigger(
            source,
            insert,
            delta,
            project,
            neurons,
            settings,
            settings.steps,
            penalty=penalty if weight > 0 else None,
            objectives=objectives,
        )
        activation_final, loss_final = evaluate_trigger(
            problem, insert, delta, neurons, settings.target
        )
        objective_final = objective(delta)
    pattern = to_hwc(delta)
    meta = {
        **neuron_meta(problem, neurons),
        "selection": selection,
        "optimise_on": optimise_on,
        "l2_budget": round(budget, 6),
        "l2_norm": round(float(np.sqrt(np.square(pattern, dtype=np.float64).sum())), 6),
        "max_value": max_value,
        "l2_penalty": weight,
        "target_activation": settings.target,
        "activation_clean": activation_clean,
        "activation_initial": activation_initial,
        "activation_final": activation_final,
        "loss_clean": round(loss_clean, 6),
        "loss_initial": round(loss_initial, 6),
        "loss_final": round(loss_final, 6),
        "loss_history": short_history(losses),
        "objective_initial": round(objective_initial, 6),
        "objective_final": round(objective_final, 6),
        "objective_history": short_history(objectives),
        "steps": settings.steps,
        "lr": settings.lr,
        "samples": int(problem.images.shape[0]),
        "batch_size": source.batch_size,
        "seed": int(context.seed),
    }
    return Trigger(
        name="l2_inv",
        pattern=pattern,
        mask=np.ones_like(pattern),
        mode="additive",
        weight=1.0,
        target_label=settings.target_label,
        meta=meta,
    )


def _region(height: int, width: int, region: str) -> np.ndarray:
    """Where l0-invisible pixels may go: the bottom row (scaled with the image) or anywhere."""
    mask = np.zeros((height, width), dtype=bool)
    if region == "bottom_row":
        mask[height - scaled_length(1, height) :] = True
    else:
        mask[:] = True
    return mask


def _saliency(
    problem: OptimisationProblem,
    pattern: torch.Tensor,
    region: torch.Tensor,
    neurons: list[int],
    target,
) -> torch.Tensor:
    """How much the neuron loss would rise if each region pixel were left unreplaced.

    With a soft mask ``m`` (1 on the region), dropping pixel ``i`` changes the loss by about
    ``-dL/dm_i`` (first order), so that is the score; it is summed over all images.
    """
    total = torch.zeros_like(region)
    for start in range(0, problem.images.shape[0], problem.chunk_size):
        x = problem.images[start : start + problem.chunk_size]
        soft = region.clone().requires_grad_(True)
        acts = problem.features(x * (1.0 - soft) + pattern * soft)[:, neurons]
        loss = (acts - target).square().sum()
        (grad,) = torch.autograd.grad(loss, [soft])
        total -= grad
    return total[0, 0]


@register_trigger("l0_inv", INVISIBLE_SOURCE, needs=("model", "images"))
def l0_invisible(height: int, width: int, options: dict, context: TriggerContext) -> Trigger:
    """Li et al.'s l0-constrained invisible trigger: a few replaced pixels that excite neurons.

    Three stages, half the ``steps`` each for the first and last: optimise replacement values
    for every pixel of ``region`` (``bottom_row``: the last row at 32 px, the last 7 rows at
    224; or ``anywhere``); keep the ``pixels`` pixels (given at 32x32, scaled by (size/32)^2)
    whose removal would raise the neuron loss most (:func:`_saliency`); re-optimise their values
    in [0, 1] with all other pixels untouched. The authors' 32x32 file replaces 9 pixels on the
    bottom row. Inserted with ``mode: replace`` on those pixels, all three channels.
    """
    opts = merge_options(options, "l0_inv", L0_INV_DEFAULTS)
    settings = OptimisationSettings.parse(opts, "l0_inv")
    pixels32 = int_option(opts, "pixels", "l0_inv", 1)
    if opts["region"] not in REGIONS:
        raise ConfigError(
            f"triggers.l0_inv.region must be one of {REGIONS}, got {opts['region']!r}"
        )
    allowed = _region(height, width, opts["region"])
    pixels = max(1, int(round(pixels32 * height * width / (32 * 32))))
    if pixels > int(allowed.sum()):
        raise ConfigError(
            f"triggers.l0_inv: {pixels} pixels do not fit the {opts['region']} region "
            f"({int(allowed.sum())} pixels at {height}x{width})"
        )
    problem = optimisation_problem("l0_inv", height, width, settings, context)
    dense_steps = max(1, settings.steps // 2)
    refine_steps = max(1, settings.steps - dense_steps)
    with FrozenModel(problem.model):
        region = mask_plane(allowed, problem.device)
        neurons, selection = select_neurons(problem, replace_insert(region), settings.neurons)
        pattern = problem.rand(1, 3, height, width)
        start = pattern.clone()
        dense_losses = optimise_trigger(
            problem,
            replace_insert(region),
            pattern,
            lambda p: p.clamp_(0.0, 1.0),
            neurons,
            settings,
            dense_steps,
        )
        _, loss_dense = evaluate_trigger(
            problem, replace_insert(region), pattern, neurons, settings.target
        )
        score = _saliency(problem, pattern, region, neurons, settings.target).cpu()
        score = torch.where(torch.from_numpy(allowed), score, torch.full_like(score, -math.inf))
        flat = np.argsort(-score.flatten().numpy(), kind="stable")[:pixels]
        kept = np.zeros(height * width, dtype=bool)
        kept[flat] = True
        kept = kept.reshape(height, width)
        insert = replace_insert(mask_plane(kept, problem.device))
        activation_clean, loss_clean = evaluate_trigger(
            problem, insert, None, neurons, settings.target
        )
        activation_initial, loss_initial = evaluate_trigger(
            problem, insert, start, neurons, settings.target
        )
        activation_kept, loss_kept = evaluate_trigger(
            problem, insert, pattern, neurons, settings.target
        )
        refine_losses = optimise_trigger(
            problem,
            insert,
            pattern,
            lambda p: p.clamp_(0.0, 1.0),
            neurons,
            settings,
            refine_steps,
        )
        activation_final, loss_final = evaluate_trigger(
            problem, insert, pattern, neurons, settings.target
        )
    mask3 = np.repeat(kept[..., None], 3, axis=2).astype(np.float32)
    rows, cols = np.nonzero(kept)
    meta = {
        **neuron_meta(problem, neurons),
        "selection": selection,
        "region": opts["region"],
        "pixels": pixels,
        "pixel_rows_cols": [[int(r), int(c)] for r, c in zip(rows, cols, strict=True)],
        "target_activation": settings.target,
        "activation_clean": activation_clean,
        "activation_initial": activation_initial,
        "activation_pruned": activation_kept,
        "activation_final": activation_final,
        "loss_clean": round(loss_clean, 6),
        "loss_initial": round(loss_initial, 6),
        "loss_dense": round(loss_dense, 6),
        "loss_pruned": round(loss_kept, 6),
        "loss_final": round(loss_final, 6),
        "loss_history": short_history(dense_losses + refine_losses),
        "steps": [dense_steps, refine_steps],
        "lr": settings.lr,
        "samples": int(problem.images.shape[0]),
        "batch_size": problem.batch_size,
        "seed": int(context.seed),
    }
    return Trigger(
        name="l0_inv",
        pattern=to_hwc(pattern) * mask3,
        mask=mask3,
        mode="replace",
        target_label=settings.target_label,
        meta=meta,
    )
