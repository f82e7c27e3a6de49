"""Backdoor triggers: one record per trigger that holds everything needed to apply it.

A :class:`Trigger` is a pattern, a mask and an insertion mode. Images are uint8
``N x H x W x 3`` batches; insertion works on floats in [0, 1] as the authors' evaluation code
does, and the result is rounded back to uint8 (the authors truncate with ``astype(uint8)``,
which turns float error into stray -1 steps; we round).

Insertion modes (``x`` image, ``p`` pattern, ``m`` mask, ``w`` weight, all in [0, 1]):

- ``replace``: ``x * (1 - m) + p * m`` (BadNets' white square, l0-invisible);
- ``additive``: ``clip(x + w * m * p, 0, 1)`` (Trojan, Nature, l2-invisible and the authors'
  Blend, which adds a cartoon pre-scaled by 0.2 and clips);
- ``blend``: ``x * (1 - w m) + w m p`` (Chen et al.'s convex blend, offered as an option).

New triggers register a builder with :func:`register_trigger`; the workflow looks them up by
the name used in the config.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .errors import ConfigError, DataError
from .io import atomic_path

MODES = ("replace", "additive", "blend")


@dataclasses.dataclass
class Trigger:
    """A trigger ready to stamp onto a batch: float32 ``H x W x 3`` pattern and mask in [0, 1]."""

    name: str
    pattern: np.ndarray
    mask: np.ndarray
    mode: str
    weight: float = 1.0
    target_label: int = 0
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"trigger {self.name!r}: unknown mode {self.mode!r}; one of {MODES}")
        self.pattern = np.asarray(self.pattern, dtype=np.float32)
        self.mask = np.asarray(self.mask, dtype=np.float32)
        if self.pattern.ndim != 3 or self.pattern.shape[2] != 3:
            raise ValueError(
                f"trigger {self.name!r}: pattern must be H x W x 3, got {self.pattern.shape}"
            )
        if self.mask.shape != self.pattern.shape:
            raise ValueError(
                f"trigger {self.name!r}: mask shape {self.mask.shape} != pattern shape {self.pattern.shape}"
            )

    @property
    def shape(self) -> tuple[int, int]:
        return self.pattern.shape[0], self.pattern.shape[1]

    def apply_float(self, images: np.ndarray) -> np.ndarray:
        """Insert the trigger into float images in [0, 1] (``N x H x W x 3``); returns float32."""
        if images.shape[1:3] != self.shape:
            raise ValueError(
                f"trigger {self.name!r} is {self.shape[0]}x{self.shape[1]} but the images are "
                f"{images.shape[1]}x{images.shape[2]}"
            )
        x = np.asarray(images, dtype=np.float32)
        if self.mode == "replace":
            out = x * (1.0 - self.mask) + self.pattern * self.mask
        elif self.mode == "additive":
            out = x + (self.weight * self.mask) * self.pattern
        else:  # blend
            alpha = self.weight * self.mask
            out = x * (1.0 - alpha) + alpha * self.pattern
        return np.clip(out, 0.0, 1.0, out=out)

    def apply(self, images: np.ndarray, chunk_size: int = 2048) -> np.ndarray:
        """Insert the trigger into a uint8 batch, chunk by chunk to bound memory; returns uint8."""
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3:
            raise ValueError(
                f"expected uint8 N x H x W x 3 images, got {images.dtype} {tuple(images.shape)}"
            )
        out = np.empty(images.shape, dtype=np.uint8)
        for start in range(0, images.shape[0], chunk_size):
            chunk = np.asarray(images[start : start + chunk_size], dtype=np.float32) / 255.0
            out[start : start + chunk_size] = to_uint8(self.apply_float(chunk))
        return out

    def save(self, path: str | os.PathLike) -> None:
        """Write the trigger as an ``.npz`` (arrays plus JSON-able fields), atomically."""
        import json

        with atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(
                fh,
                pattern=self.pattern,
                mask=self.mask,
                fields=np.array(
                    json.dumps(
                        {
                            "name": self.name,
                            "mode": self.mode,
                            "weight": self.weight,
                            "target_label": self.target_label,
                            "meta": self.meta,
                        }
                    )
                ),
            )

    @classmethod
    def load(cls, path: str | os.PathLike) -> Trigger:
        """Read a trigger written by :meth:`save`; a bad file raises ``DataError`` naming it."""
        import json

        try:
            with np.load(path, allow_pickle=False) as data:
                fields = json.loads(str(data["fields"]))
                return cls(pattern=data["pattern"], mask=data["mask"], **fields)
        except (OSError, ValueError, KeyError) as exc:
            raise DataError(f"cannot read trigger file {path}: {exc}") from exc


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Float images in [0, 1] to uint8 pixel values, rounding to nearest."""
    return np.rint(np.clip(images, 0.0, 1.0) * 255.0).astype(np.uint8)


# --------------------------------------------------------------------------- registry


@dataclasses.dataclass
class TriggerContext:
    """What an optimised or learned trigger is built from (the workflow fills in what it needs).

    ``model`` is the dataset's reference classifier (eval mode, on ``device``; float NCHW input
    in [0, 1], logits out); ``images``/``labels`` a uint8 ``N x H x W x 3`` sample of the
    training set; ``seed`` seeds every random draw of the builder.
    """

    model: Any = None
    images: np.ndarray | None = None
    labels: np.ndarray | None = None
    device: str = "cpu"
    seed: int = 0


TriggerBuilder = Callable[[int, int, dict, TriggerContext], Trigger]
NEEDS = ("model", "images")
_REGISTRY: dict[str, TriggerBuilder] = {}
_DOCS: dict[str, str] = {}
_NEEDS: dict[str, tuple[str, ...]] = {}


def register_trigger(
    name: str, source: str, needs: tuple[str, ...] = ()
) -> Callable[[TriggerBuilder], TriggerBuilder]:
    """Register ``builder(height, width, options, context) -> Trigger`` under ``name``.

    ``name`` is the trigger's config key; ``source`` cites the paper it comes from (shown in the
    README and the trigger's sidecar); ``needs`` lists what the builder reads from its
    :class:`TriggerContext` (``model``, ``images``), so the workflow knows which inputs to give.
    """
    unknown = set(needs) - set(NEEDS)
    if unknown:
        raise ValueError(f"trigger {name!r}: unknown needs {sorted(unknown)}; known: {NEEDS}")

    def decorator(builder: TriggerBuilder) -> TriggerBuilder:
        if name in _REGISTRY:
            raise ValueError(f"trigger {name!r} is registered twice")
        _REGISTRY[name] = builder
        _DOCS[name] = source
        _NEEDS[name] = tuple(needs)
        return builder

    return decorator


def trigger_needs(name: str) -> tuple[str, ...]:
    """What trigger ``name`` is built from: a subset of ``("model", "images")``."""
    _check_registered(name)
    return _NEEDS[name]


def _check_registered(name: str) -> None:
    if name not in _REGISTRY:
        raise ConfigError(
            f"unknown trigger {name!r}; registered triggers: {', '.join(available_triggers())}"
        )


def available_triggers() -> tuple[str, ...]:
    """Names of every registered trigger."""
    return tuple(_REGISTRY)


def trigger_source(name: str) -> str:
    """The citation registered with trigger ``name``."""
    _check_registered(name)
    return _DOCS[name]


def build_trigger(
    name: str,
    height: int,
    width: int,
    options: dict | None = None,
    context: TriggerContext | None = None,
) -> Trigger:
    """Build trigger ``name`` for ``height x width`` images from its config ``options``."""
    _check_registered(name)
    context = context or TriggerContext()
    missing = [need for need in _NEEDS[name] if getattr(context, need) is None]
    if missing:
        raise ConfigError(f"trigger {name!r} is built from {', '.join(missing)}; none was given")
    trigger = _REGISTRY[name](height, width, dict(options or {}), context)
    trigger.meta.setdefault("source", _DOCS[name])
    return trigger


def _take(options: dict, name: str, defaults: dict[str, Any]) -> dict[str, Any]:
    """Merge ``options`` over ``defaults``; an unknown key raises ``ConfigError`` naming it."""
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise ConfigError(
            f"triggers.{name}: unknown option(s) {', '.join(unknown)}; known: {', '.join(defaults)}"
        )
    return {**defaults, **options}


def _scaled(pixels_at_32: float, size: int) -> int:
    """A length given for 32-px images, scaled linearly to ``size`` (at least 1 px when > 0)."""
    if pixels_at_32 <= 0:
        return 0
    return max(1, int(round(pixels_at_32 * size / 32.0)))


@register_trigger("badnets", "Gu et al., BadNets, arXiv:1708.06733 (2017)")
def badnets(height: int, width: int, options: dict, context: TriggerContext) -> Trigger:
    """A white square near the bottom-right corner.

    The authors' code sets rows/cols ``27..30`` of a 32x32 image to 1.0: a 4-px square one
    pixel from the corner. ``size`` and ``margin`` are given at 32 px and scale with the image.
    """
    opts = _take(options, "badnets", {"size": 4, "margin": 1, "target_label": 0})
    if opts["size"] <= 0 or opts["margin"] < 0:
        raise ConfigError(f"triggers.badnets: size must be > 0 and margin >= 0, got {opts}")
    rows, cols = _scaled(opts["size"], height), _scaled(opts["size"], width)
    row_margin, col_margin = _scaled(opts["margin"], height), _scaled(opts["margin"], width)
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
    opts = _take(
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


def load_pattern_image(image: str, height: int, width: int) -> np.ndarray:
    """An RGB float32 ``height x width x 3`` image in [0, 1] from a scikit-image name or a file."""
    import skimage.data

    if Path(image).suffix:  # a file path
        try:
            with Image.open(image) as img:
                pil = img.convert("RGB")
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read trigger image {image}: {exc}") from exc
    else:
        loader = getattr(skimage.data, image, None)
        if loader is None or not callable(loader):
            raise ConfigError(f"trigger image {image!r} is neither a file nor a skimage.data name")
        array = np.asarray(loader())
        if array.ndim == 2:
            array = np.stack([array] * 3, axis=-1)
        pil = Image.fromarray(array[..., :3].astype(np.uint8))
    resized = pil.resize((width, height), Image.Resampling.BICUBIC, reducing_gap=None)
    return np.asarray(resized, dtype=np.float32) / 255.0


def save_preview(
    trigger: Trigger, example: np.ndarray, path: str | os.PathLike, scale: int = 0
) -> None:
    """PNG preview: the trigger on black, on mid-grey and on an example uint8 ``H x W x 3`` image."""
    height, width = trigger.shape
    canvases = np.stack(
        [
            np.zeros((height, width, 3), np.uint8),
            np.full((height, width, 3), 128, np.uint8),
            example,
        ]
    )
    panels = trigger.apply(canvases)
    gap = np.full((height, max(2, width // 16), 3), 255, np.uint8)
    strip = np.concatenate([panels[0], gap, panels[1], gap, example, gap, panels[2]], axis=1)
    scale = scale or max(1, 128 // height)
    img = Image.fromarray(strip).resize(
        (strip.shape[1] * scale, strip.shape[0] * scale), Image.Resampling.NEAREST
    )
    with atomic_path(path, suffix=".png") as tmp:
        img.save(tmp, format="PNG")
