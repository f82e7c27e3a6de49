"""Meta Neural Analysis' shadow models: what each is poisoned with, its seed and its rows.

Section 5.4 of the paper runs MNA (Xu et al., "Detecting AI Trojans Using Meta Neural
Analysis", S&P 2021; the authors' code calls it MNTD) against a classifier poisoned with the
smooth trigger, before and after "upgrading" it with the smooth-trigger generation. MNA's
defender trains shadow models; this module draws what each is poisoned with. The workflow's
``mna_*`` rules train them by MNTD's recipe (:mod:`freqbackdoor.mna.mntd`), and the
meta-classifier (:mod:`freqbackdoor.mna.meta`) learns from them.

* The defender trains *shadow models* on a small clean share of the training data: benign ones,
  and "jumbo" trojaned ones, each poisoned with a trigger drawn by :func:`draw_jumbo_trigger`
  from MNTD's jumbo distribution (a random patch or a full-image blend; random size, location,
  pattern, transparency, target label and poison share).
* The *upgrade* adds shadow models poisoned with smooth triggers (:func:`draw_lowpass_trigger`,
  a random pattern through the low-pass filter ``g``, or Algorithm 1 run on a benign shadow
  model, :func:`algorithm1_trigger`).
* :func:`model_seed` gives every shadow and target model its own seed, and :func:`split_rows`
  the defender's and the attacker's disjoint training rows (MNTD: 2% and 50% of the set).
"""

from __future__ import annotations

import logging
import math
import zlib
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, DataError
from ..triggers.naive_smooth import lowpass_trigger
from ..triggers.registry import Trigger, TriggerContext
from ..triggers.smooth import SmoothSettings, generate_smooth_trigger

#: MNTD's jumbo distribution (its authors' code, CIFAR-10): patch sides, the full-image side
#: added at run time; transparency of a patch (set to 1 above ``PATCH_OPAQUE_ABOVE``) and of a
#: full-image blend; pattern noise margin; poison share.
PATCH_SIDES = (2, 3, 4, 5)
PATCH_ALPHA = (0.2, 0.6)
PATCH_OPAQUE_ABOVE = 0.5
BLEND_ALPHA = (0.05, 0.2)
PATTERN_MARGIN = (0.0, 1.0)
POISON_SHARE = (0.05, 0.5)

SHADOW_KINDS = ("benign", "jumbo", "smooth")


def model_seed(seed: int, role: str, kind: str, index: int) -> int:
    """A 31-bit seed for model ``index`` of ``role`` (shadow, target) and ``kind``.

    Every model of the DAG gets its own stream, stable under changes to the counts of other
    kinds, so adding models never retrains the existing ones.
    """
    if index < 0:
        raise ValueError(f"model index must be >= 0, got {index}")
    tag = zlib.crc32(f"{role}/{kind}".encode())
    state = np.random.SeedSequence([int(seed), tag, int(index)]).generate_state(1)[0]
    return int(state) & 0x7FFFFFFF


def split_rows(
    n: int, shadow_share: float, target_share: float, seed: int
) -> dict[str, np.ndarray]:
    """Disjoint seeded training rows of the defender (``shadow``) and the attacker (``target``).

    MNTD gives the defender 2% of the training set and the attacker's target models 50%.
    """
    for key, share in (("shadow_share", shadow_share), ("target_share", target_share)):
        if not 0 < share < 1:
            raise ConfigError(f"mna.{key} must be in (0, 1), got {share!r}")
    if shadow_share + target_share > 1:
        raise ConfigError(
            f"mna.shadow_share + mna.target_share must be at most 1, got "
            f"{shadow_share} + {target_share}"
        )
    n_shadow, n_target = round(shadow_share * n), round(target_share * n)
    if n_shadow < 1 or n_target < 1:
        raise DataError(
            f"a training set of {n} images leaves {n_shadow} shadow and {n_target} target "
            "rows; raise mna.shadow_share / mna.target_share or use a larger dataset"
        )
    order = np.random.default_rng(seed).permutation(n)
    return {
        "shadow": np.sort(order[:n_shadow]),
        "target": np.sort(order[n_shadow : n_shadow + n_target]),
    }


def draw_jumbo_trigger(
    height: int, width: int, num_classes: int, rng: np.random.Generator
) -> tuple[Trigger, dict[str, Any]]:
    """One trigger from MNTD's jumbo distribution, and the record of what was drawn.

    The side is drawn from {2, 3, 4, 5, full image}; a patch has transparency uniform on
    [0.2, 0.6], made opaque above 0.5, a full-image blend uniform on [0.05, 0.2]; the patch lies
    uniformly where it fits; the pattern is uniform on [-e, 1 + e] per pixel and channel with
    ``e`` uniform on [0, 1], clipped to [0, 1]; the target label is uniform and the poison share
    uniform on [0.05, 0.5]. A non-square image blends over its full height and width.
    """
    sides = [s for s in PATCH_SIDES if s < min(height, width)]
    choice = int(rng.integers(len(sides) + 1))
    full = choice == len(sides)
    if full:
        alpha = float(rng.uniform(*BLEND_ALPHA))
        side_h, side_w, top, left = height, width, 0, 0
    else:
        side_h = side_w = sides[choice]
        alpha = float(rng.uniform(*PATCH_ALPHA))
        if alpha > PATCH_OPAQUE_ABOVE:
            alpha = 1.0
        top = int(rng.integers(height - side_h + 1))
        left = int(rng.integers(width - side_w + 1))
    margin = float(rng.uniform(*PATTERN_MARGIN))
    pattern = rng.uniform(-margin, 1.0 + margin, size=(side_h, side_w, 3))
    pattern = np.clip(pattern, 0.0, 1.0).astype(np.float32)
    target = int(rng.integers(num_classes))
    share = float(rng.uniform(*POISON_SHARE))
    patch = np.zeros((height, width, 3), dtype=np.float32)
    mask = np.zeros_like(patch)
    patch[top : top + side_h, left : left + side_w] = pattern
    mask[top : top + side_h, left : left + side_w] = alpha
    trigger = Trigger(name="jumbo", pattern=patch, mask=mask, mode="replace", target_label=target)
    record = {
        "family": "blend" if full else "patch",
        "side": int(side_h) if not full else None,
        "top": top,
        "left": left,
        "alpha": alpha,
        "pattern_margin": margin,
        "target_label": target,
        "share": share,
    }
    return trigger, record


def draw_lowpass_trigger(
    height: int,
    width: int,
    num_classes: int,
    rng: np.random.Generator,
    settings: SmoothSettings,
) -> tuple[Trigger, dict[str, Any]]:
    """A naive smooth trigger for the upgrade: the ``lowpass`` trigger (Section 5.3's noise
    through ``g``, scaled and inserted like the smooth trigger, ``settings``' filter and range)
    with a drawn noise seed, a uniform target label and a poison share from the jumbo range."""
    noise_seed = int(rng.integers(2**31 - 1))
    target = int(rng.integers(num_classes))
    share = float(rng.uniform(*POISON_SHARE))
    options = {
        "source": "noise",
        "seed": noise_seed,
        "filter_size": settings.filter_size,
        "filter_sigma": settings.filter_sigma,
        "max_value": settings.max_value,
        "strength": settings.strength,
        "target_label": target,
    }
    trigger = lowpass_trigger(height, width, options, TriggerContext())
    record = {"family": "lowpass", "noise_seed": noise_seed, "target_label": target}
    return trigger, {**record, "share": share}


def algorithm1_trigger(
    model: nn.Module,
    images: np.ndarray,
    rng: np.random.Generator,
    settings: SmoothSettings,
    device: str | torch.device = "cpu",
    log: logging.Logger | None = None,
) -> tuple[Trigger, dict[str, Any]]:
    """A smooth trigger found by Algorithm 1 on ``model`` (a benign shadow model), for the upgrade.

    The target is Algorithm 1's dominant label; the poison share is drawn from the jumbo range.
    """
    seed = int(rng.integers(2**31 - 1))
    share = float(rng.uniform(*POISON_SHARE))
    result = generate_smooth_trigger(model, images, settings, device=device, seed=seed, log=log)
    trigger = Trigger(
        name="smooth",
        pattern=result.pattern,
        mask=np.ones_like(result.pattern),
        mode="normalise",
        weight=settings.strength,
        target_label=result.target_label,
    )
    record = {
        "family": "algorithm1",
        "target_label": int(result.target_label),
        "share": share,
        "search_seed": seed,
        "best_pass": int(result.best_pass),
        "best_error_rate": float(result.best_error_rate),
        "reached": bool(result.reached),
    }
    return trigger, record


def uses_algorithm1(index: int, share: float) -> bool:
    """Whether smooth shadow model ``index`` gets an Algorithm 1 trigger (else a low-pass one).

    A ``share`` of the smooth shadow models, spread evenly over the indices (0.5: every second
    one, models 1, 3, 5, ...; 0: none; 1: all).
    """
    if not 0 <= share <= 1:
        raise ConfigError(f"mna.smooth_shadow.algorithm1_share must be in [0, 1], got {share!r}")
    return math.floor((index + 1) * share + 1e-9) > math.floor(index * share + 1e-9)
