"""The hand-drawn pattern triggers of Section 3.2: BadNets' white square, Blend and Nature.

Each is a fixed pattern and mask built from its config options (no model, no training images),
inserted the way the authors' evaluation code does: BadNets replaces a square, Blend adds a whole
image pre-scaled by its weight, Nature adds a small photograph near the corner. Lengths are given
at 32 px and scale with the image (:func:`~freqbackdoor.triggers.registry.scaled_length`).

The builders register with :func:`~freqbackdoor.triggers.registry.register_trigger` when this
module is imported, which the registry does on its first look-up (it is the first of
:data:`~freqbackdoor.triggers.registry.BUILTIN_MODULES`, so these three stay the first registered
triggers). They are apart from the registry so that the record and the registry are one short
module every trigger module imports; the images they are drawn from come from
:mod:`freqbackdoor.triggers.images`.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from .images import load_pattern_image, open_rgb_image, resize_rgb_image
from .registry import Trigger, TriggerContext, merge_options, register_trigger, scaled_length


@register_trigger("badnets", "Gu et al., BadNets, arXiv:1708.06733 (2017)")
def badnets(height: int, width: int, options: dict, context: TriggerContext) -> Trigger:
    """A white square near the bottom-right corner.

    The authors' code sets rows/cols ``27..30`` of a 32x32 image to 1.0: a 4-px square one
    pixel from the corner. ``size`` and ``margin`` are given at 32 px and scale with the image.
    """
    opts = merge_options(options, "badnets", {"size": 4, "margin": 1, "target_label": 0})
    if opts["size"] <= 0 or opts["margin"] < 0:
        raise ConfigError(f"triggers.badnets: size must be > 0 and margin >= 0, got {opts}")
    rows, cols = scaled_length(opts["size"], height), scaled_length(opts["size"], width)
    row_margin, col_margin = (
        scaled_length(opts["margin"], height),
        scaled_length(opts["margin"], width),
    )
    if rows + row_margin > height or cols + col_margin > width:
        raise ConfigError(f"triggers.badnets: square {rows}+{row_margin} px does not fit {height}")
    mask = np.zeros((height, width, 3), dtype=np.float32)
    mask[
        height - row_margin - rows : height - row_margin,
        width - col_margin - cols : width - col_margin,
    ] = 1.0
    return Trigger(
        name="badnets",
        pattern=np.ones_like(mask),
        mask=mask,
        mode="replace",
        target_label=int(opts["target_label"]),
        meta={"square_px": [rows, cols], "margin_px": [row_margin, col_margin]},
    )


@register_trigger(
    "blend", "Chen et al., Targeted backdoor attacks ... data poisoning, arXiv:1712.05526"
)
def blend(height: int, width: int, options: dict, context: TriggerContext) -> Trigger:
    """A whole image blended into the input with a small weight.

    The authors' code adds a cartoon already scaled by 0.2 and clips (``mode: additive``);
    ``mode: blend`` gives Chen et al.'s convex blend instead. ``image`` is the name of a
    scikit-image image or a path to any image file. The paper's Hello Kitty cartoon may not be
    redistributed; the default, scikit-image's ``logo``, has the same hard edges and flat colours.
    """
    opts = merge_options(
        options, "blend", {"image": "logo", "weight": 0.2, "mode": "additive", "target_label": 0}
    )
    if opts["mode"] not in ("additive", "blend"):
        raise ConfigError(
            f"triggers.blend.mode must be 'additive' or 'blend', got {opts['mode']!r}"
        )
    if not 0.0 < float(opts["weight"]) <= 1.0:
        raise ConfigError(f"triggers.blend.weight must be in (0, 1], got {opts['weight']!r}")
    pattern = load_pattern_image(opts["image"], height, width)
    return Trigger(
        name="blend",
        pattern=pattern,
        mask=np.ones_like(pattern),
        mode=opts["mode"],
        weight=float(opts["weight"]),
        target_label=int(opts["target_label"]),
        meta={"image": str(opts["image"])},
    )


# The cup (with its handle and a bit of saucer) in scikit-image's ``coffee`` photograph, as
# [top, left, bottom, right] fractions of the 400 x 600 image.
COFFEE_CUP_CROP = (0.03, 0.28, 0.78, 0.70)


@register_trigger(
    "nature",
    "Zeng et al. (ICCV 2021) Sec. 3.2 'Nature' trigger, citing Chen et al., Targeted backdoor "
    "attacks ... data poisoning, arXiv:1712.05526: a natural-image patch (the authors' mug)",
)
def nature(height: int, width: int, options: dict, context: TriggerContext) -> Trigger:
    """A small photograph of an everyday object added near the bottom-right corner.

    The authors' published ``nature.png`` is a 12 x 14 mug cut-out at rows 18..29, cols 17..30
    of a 32 x 32 image, inserted as ``x + trigger`` and clipped; their mug photo has no stated
    licence, so the default here is the cup of scikit-image's ``coffee`` photograph (CC0, no
    copyright restrictions), cropped by ``crop`` and resized to a ``size`` x ``size`` patch that sits ``margin``
    px from the bottom and right edges (both given at 32 px and scaled with the image, like
    BadNets). With the defaults the patch covers rows/cols 18..29 at 32 px. Insertion is
    ``additive`` with weight 1 and the mask is the patch rectangle, as the authors do.

    ``image`` is a ``skimage.data`` name or an image file; ``crop`` is ``[top, left, bottom,
    right]`` as fractions of that image (default: the cup for ``coffee``, else the whole image).
    """
    opts = merge_options(
        options,
        "nature",
        {"image": "coffee", "crop": None, "size": 12, "margin": 2, "target_label": 0},
    )
    if opts["size"] <= 0 or opts["margin"] < 0:
        raise ConfigError(f"triggers.nature: size must be > 0 and margin >= 0, got {opts}")
    crop = opts["crop"]
    if crop is None:
        crop = COFFEE_CUP_CROP if opts["image"] == "coffee" else (0.0, 0.0, 1.0, 1.0)
    try:
        top, left, bottom, right = (float(v) for v in crop)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"triggers.nature.crop must be [top, left, bottom, right]: {exc}"
        ) from exc
    if not (0.0 <= top < bottom <= 1.0 and 0.0 <= left < right <= 1.0):
        raise ConfigError(
            f"triggers.nature.crop must be fractions with top < bottom and left < right, got {crop}"
        )
    source = open_rgb_image(str(opts["image"]))
    box = (
        int(round(left * source.width)),
        int(round(top * source.height)),
        max(int(round(right * source.width)), int(round(left * source.width)) + 1),
        max(int(round(bottom * source.height)), int(round(top * source.height)) + 1),
    )
    rows, cols = scaled_length(opts["size"], height), scaled_length(opts["size"], width)
    row_margin, col_margin = (
        scaled_length(opts["margin"], height),
        scaled_length(opts["margin"], width),
    )
    if rows + row_margin > height or cols + col_margin > width:
        raise ConfigError(f"triggers.nature: patch {rows}+{row_margin} px does not fit {height}")
    patch = resize_rgb_image(source.crop(box), rows, cols)
    row0, col0 = height - row_margin - rows, width - col_margin - cols
    pattern = np.zeros((height, width, 3), dtype=np.float32)
    mask = np.zeros_like(pattern)
    pattern[row0 : row0 + rows, col0 : col0 + cols] = patch
    mask[row0 : row0 + rows, col0 : col0 + cols] = 1.0
    return Trigger(
        name="nature",
        pattern=pattern,
        mask=mask,
        mode="additive",
        weight=1.0,
        target_label=int(opts["target_label"]),
        meta={
            "image": str(opts["image"]),
            "crop": [top, left, bottom, right],
            "crop_box_px": list(box),
            "patch_px": [rows, cols],
            "top_left_px": [row0, col0],
        },
    )
