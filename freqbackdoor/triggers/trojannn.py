"""TrojanNN's triggers (Liu et al., NDSS 2018): Trojan square and Trojan watermark.

Both are optimised by the recipe of :mod:`freqbackdoor.triggers.optimisation`: pick the
penultimate neurons the trigger region reaches best, then drive them to ``target_activation``
with Adam, the pattern clamped to [0, 1] inside its mask after every step. The TrojanNN triggers
are optimised on minibatches of training images with the trigger stamped in the same way it
will be inserted later: the neurons then fire whatever the background is, which is what
poisoning needs.

Insertion follows the authors' evaluation code (``../shared/reference/README.md``): Trojan
square and Trojan watermark are added and clipped (``mode: additive``, weight 1, mask 1 where
the pattern lives). The square's size and margin are given at 32 px and scale with the image;
the watermark is the outline of an image (:func:`watermark_mask`, scikit-image's logo by
default: the TrojanNN watermark itself is not redistributable).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from PIL import Image, ImageFilter
from scipy import ndimage

from ..errors import ConfigError
from .images import load_pattern_image
from .optimisation import (
    OPTIMISATION_DEFAULTS,
    FrozenModel,
    OptimisationSettings,
    additive_insert,
    evaluate_trigger,
    float_option,
    int_option,
    mask_plane,
    neuron_meta,
    optimisation_problem,
    optimise_trigger,
    select_neurons,
    short_history,
    to_hwc,
)
from .registry import Trigger, TriggerContext, merge_options, register_trigger, scaled_length

TROJAN_SOURCE = "Liu et al., Trojaning Attack on Neural Networks, NDSS 2018"

TROJAN_SQ_DEFAULTS = {"size": 9, "margin": 2, **OPTIMISATION_DEFAULTS}
TROJAN_WM_DEFAULTS = {"image": "logo", "stroke": 1.0, **OPTIMISATION_DEFAULTS}
WATERMARK_COLOURS = 3  # flat colour regions the watermark image is reduced to


def _trojan(
    name: str,
    mask2d: np.ndarray,
    settings: OptimisationSettings,
    context: TriggerContext,
    extra_meta: dict[str, Any],
) -> Trigger:
    """Optimise an additive pattern inside ``mask2d`` to excite TrojanNN's selected neurons."""
    height, width = mask2d.shape
    problem = optimisation_problem(name, height, width, settings, context)
    with FrozenModel(problem.model):
        mask = mask_plane(mask2d, problem.device)
        insert = additive_insert(mask)
        neurons, selection = select_neurons(problem, insert, settings.neurons)
        pattern = problem.rand(1, 3, height, width)
        activation_clean, loss_clean = evaluate_trigger(
            problem, insert, None, neurons, settings.target
        )
        activation_initial, loss_initial = evaluate_trigger(
            problem, insert, pattern, neurons, settings.target
        )
        losses = optimise_trigger(
            problem,
            insert,
            pattern,
            lambda p: p.clamp_(0.0, 1.0),
            neurons,
            settings,
            settings.steps,
        )
        activation_final, loss_final = evaluate_trigger(
            problem, insert, pattern, neurons, settings.target
        )
    meta = {
        **extra_meta,
        **neuron_meta(problem, neurons),
        "selection": selection,
        "target_activation": settings.target,
        "activation_clean": activation_clean,
        "activation_initial": activation_initial,
        "activation_final": activation_final,
        "loss_clean": round(loss_clean, 6),
        "loss_initial": round(loss_initial, 6),
        "loss_final": round(loss_final, 6),
        "loss_history": short_history(losses),
        "steps": settings.steps,
        "lr": settings.lr,
        "samples": int(problem.images.shape[0]),
        "batch_size": problem.batch_size,
        "seed": int(context.seed),
    }
    mask3 = np.repeat(mask2d[..., None], 3, axis=2).astype(np.float32)
    return Trigger(
        name=name,
        pattern=to_hwc(pattern) * mask3,
        mask=mask3,
        mode="additive",
        weight=1.0,
        target_label=settings.target_label,
        meta=meta,
    )


@register_trigger("trojan_sq", TROJAN_SOURCE, needs=("model", "images"))
def trojan_square(height: int, width: int, options: dict, context: TriggerContext) -> Trigger:
    """TrojanNN's square trigger: a pattern optimised inside a bottom-right square.

    The authors' 32x32 file fills rows/cols 21..29 (``size: 9``, ``margin: 2``); both are given
    at 32 px and scale with the image (63 px with a 14 px margin at 224).
    """
    opts = merge_options(options, "trojan_sq", TROJAN_SQ_DEFAULTS)
    settings = OptimisationSettings.parse(opts, "trojan_sq")
    size = int_option(opts, "size", "trojan_sq", 1)
    margin = int_option(opts, "margin", "trojan_sq", 0)
    rows, cols = scaled_length(size, height), scaled_length(size, width)
    row_margin, col_margin = scaled_length(margin, height), scaled_length(margin, width)
    if rows + row_margin > height or cols + col_margin > width:
        raise ConfigError(
            f"triggers.trojan_sq: a {rows}+{row_margin} px square does not fit {height}x{width}"
        )
    mask2d = np.zeros((height, width), dtype=bool)
    mask2d[
        height - row_margin - rows : height - row_margin,
        width - col_margin - cols : width - col_margin,
    ] = True
    meta = {"square_px": [rows, cols], "margin_px": [row_margin, col_margin]}
    return _trojan("trojan_sq", mask2d, settings, context, meta)


def watermark_mask(height: int, width: int, image: str = "logo", stroke: float = 1.0) -> np.ndarray:
    """A sparse watermark-shaped boolean ``height x width`` mask: the outlines of an image.

    The image (a scikit-image name or a file, as for ``blend``) is smoothed, reduced to
    ``WATERMARK_COLOURS`` flat colours (median cut) and the borders between colour regions are
    drawn ``stroke`` pixels wide (given at 32 px, scaled with the image). The work is done at an
    integer multiple of the output size of at least 512 px and box-averaged down, so the strokes
    look the same at every resolution. For scikit-image's logo (the default; the TrojanNN
    watermark itself is not redistributable) this gives the logo's circle and its S curve,
    about 22% of the pixels, like the sparse strokes of the authors' watermark file.
    """
    if stroke <= 0:
        raise ConfigError(f"triggers.trojan_wm.stroke must be positive, got {stroke!r}")
    factor = max(1, math.ceil(512 / min(height, width)))
    work_h, work_w = height * factor, width * factor
    rgb = load_pattern_image(image, work_h, work_w)
    pil = Image.fromarray(np.rint(rgb * 255).astype(np.uint8))
    pil = pil.filter(ImageFilter.GaussianBlur(radius=min(work_h, work_w) / 128))
    labels = np.asarray(
        pil.quantize(
            colors=WATERMARK_COLOURS,
            method=Image.Quantize.MEDIANCUT,
            dither=Image.Dither.NONE,
        )
    )
    edges = np.zeros(labels.shape, dtype=bool)
    edges[:-1] |= labels[:-1] != labels[1:]
    edges[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    radius = stroke * min(height, width) / 32 * factor / 2
    reach = int(radius)
    yy, xx = np.mgrid[-reach : reach + 1, -reach : reach + 1]
    edges = ndimage.binary_dilation(edges, structure=(yy**2 + xx**2) <= radius**2)
    coverage = edges.reshape(height, factor, width, factor).mean(axis=(1, 3))
    mask = coverage >= 0.5
    if not mask.any():
        raise ConfigError(f"triggers.trojan_wm: image {image!r} gives an empty watermark")
    return mask


@register_trigger("trojan_wm", TROJAN_SOURCE, needs=("model", "images"))
def trojan_watermark(height: int, width: int, options: dict, context: TriggerContext) -> Trigger:
    """TrojanNN's watermark trigger: a pattern optimised on the strokes of a watermark shape.

    The shape is :func:`watermark_mask` of ``image`` (default scikit-image's logo) with strokes
    ``stroke`` px wide at 32 px.
    """
    opts = merge_options(options, "trojan_wm", TROJAN_WM_DEFAULTS)
    settings = OptimisationSettings.parse(opts, "trojan_wm")
    stroke = float_option(opts, "stroke", "trojan_wm")
    mask2d = watermark_mask(height, width, str(opts["image"]), stroke)
    meta = {"image": str(opts["image"]), "mask_fraction": round(float(mask2d.mean()), 4)}
    return _trojan("trojan_wm", mask2d, settings, context, meta)
