"""The naive smooth triggers of Section 5.3: random noise or a photograph through ``g``.

The paper compares Algorithm 1's trigger (:mod:`freqbackdoor.triggers.smooth`) with naive
smooth triggers, patterns that are only low-pass filtered, with no search. The ``lowpass``
builder draws a uniform random pattern from ``seed`` (``source: noise``) or loads a photograph
(``source: image``), passes it through the same ``g`` (:func:`~freqbackdoor.triggers.filters.lowpass`)
and min-max scales it to [0, max_value]; it is inserted like the smooth trigger (mode
``normalise``). It is a family: every config name ``lowpass_<variant>`` (``lowpass_noise1``,
``lowpass_astronaut``, ...) builds one with its own options. MNA's upgrade poisons shadow models
with it too (:func:`freqbackdoor.mna.shadow_models.draw_lowpass_trigger`).

It registers after the smooth trigger (:data:`~freqbackdoor.triggers.registry.BUILTIN_MODULES`),
as when both lived in one module.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import ConfigError
from .filters import lowpass_pattern, minmax
from .images import load_pattern_image
from .optimisation import float_option, int_option, to_hwc
from .registry import Trigger, TriggerContext, merge_options, register_trigger

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
