"""Images for triggers: pattern images from scikit-image or files, and trigger previews.

Blend and Nature (:mod:`freqbackdoor.triggers.patterns`), TrojanNN's watermark
(:mod:`freqbackdoor.triggers.trojannn`) and the naive smooth triggers
(:mod:`freqbackdoor.triggers.naive_smooth`) draw their patterns from an image named by the config:
a ``skimage.data`` name (the redistributable defaults) or a path to any image file. Resizing is
bicubic, antialiased when shrinking. :func:`save_preview` renders a trigger on black, mid-grey and
an example image for the workflow's PNG previews. Kept apart from the registry so that reading
and inserting a trigger needs neither PIL's resizing nor scikit-image.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import ConfigError, DataError
from ..io import atomic_path
from .registry import Trigger


def load_pattern_image(image: str, height: int, width: int) -> np.ndarray:
    """An RGB float32 ``height x width x 3`` image in [0, 1] from a scikit-image name or a file."""
    return resize_rgb_image(open_rgb_image(image), height, width)


def open_rgb_image(image: str) -> Image.Image:
    """An RGB PIL image from a file path (anything with a suffix) or a ``skimage.data`` name."""
    import skimage.data

    if Path(image).suffix:  # a file path
        try:
            with Image.open(image) as img:
                return img.convert("RGB")
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read trigger image {image}: {exc}") from exc
    loader = getattr(skimage.data, image, None)
    if loader is None or not callable(loader):
        raise ConfigError(f"trigger image {image!r} is neither a file nor a skimage.data name")
    array = np.asarray(loader())
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    return Image.fromarray(array[..., :3].astype(np.uint8))


def resize_rgb_image(pil: Image.Image, height: int, width: int) -> np.ndarray:
    """Bicubic resize (antialiased when shrinking) to float32 ``height x width x 3`` in [0, 1]."""
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
