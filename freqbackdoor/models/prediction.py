"""Predictions of the image classifiers: logits and accuracy of one model or of a group.

Images are uint8 ``N x H x W x 3`` arrays, possibly memory-mapped; they go to the device one batch
at a time as uint8 ``N x 3 x H x W`` tensors (:func:`to_device_uint8`) and are scaled to [0, 1]
there (:func:`uint8_to_float`), the classifiers' input scale. :func:`predict_logits` and
:func:`group_logits` run in eval mode without gradients and in fp32, so results are comparable
across devices, and restore each model's train/eval mode afterwards; training's validation
(:mod:`freqbackdoor.models.training`) calls :func:`predict_tensor_logits` with its autocast
precision. :func:`group_logits` feeds each batch to every model of a group
(:mod:`freqbackdoor.models.groups`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, DataError
from ..frequency.dct import resolve_device


def to_device_uint8(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 ``N x H x W x 3`` array to a uint8 ``N x 3 x H x W`` tensor on ``device``."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise DataError(
            f"expected uint8 images of shape N x H x W x 3, got {images.dtype} {images.shape}"
        )
    array = np.ascontiguousarray(images)
    if not array.flags.writeable:  # a memory-mapped file: torch wants memory it may own
        array = array.copy()
    return torch.from_numpy(array).to(device).permute(0, 3, 1, 2).contiguous()


def uint8_to_float(batch: torch.Tensor) -> torch.Tensor:
    """A uint8 image batch (0..255) as floats in [0, 1], the classifiers' input scale."""
    return batch.float().div_(255.0)


@torch.no_grad()
def predict_tensor_logits(
    model: nn.Module, images: torch.Tensor, batch_size: int, dtype: torch.dtype | None
) -> torch.Tensor:
    """Float32 logits of uint8 NCHW ``images`` already on the model's device."""
    outputs = []
    for start in range(0, images.shape[0], batch_size):
        batch = uint8_to_float(images[start : start + batch_size])
        with torch.autocast(images.device.type, dtype=dtype, enabled=dtype is not None):
            outputs.append(model(batch).float())
    if not outputs:
        return torch.empty(0, 0, device=images.device)
    return torch.cat(outputs)


def model_device(model: nn.Module) -> torch.device:
    """The device ``model``'s parameters live on (the CPU for a model without any)."""
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def predict_logits(
    model: nn.Module,
    x: np.ndarray,
    device: str | torch.device | None = None,
    batch_size: int = 512,
) -> np.ndarray:
    """float32 ``N x classes`` logits of uint8 ``N x H x W x 3`` images, batch by batch.

    Runs in eval mode without gradients (restoring the model's mode afterwards) and in fp32, so
    results are comparable across devices. ``device`` moves the model there (``"auto"`` allowed);
    None uses the model's device. ``x`` may be a memory-mapped array: only one batch is copied
    to the device at a time.
    """
    target = model_device(model) if device is None else resolve_device(device)
    model.to(target)
    was_training = model.training
    model.eval()
    outputs = []
    try:
        for start in range(0, len(x), batch_size):
            batch = to_device_uint8(x[start : start + batch_size], target)
            outputs.append(predict_tensor_logits(model, batch, batch_size, None).cpu().numpy())
    finally:
        model.train(was_training)
    if not outputs:
        return np.zeros((0, getattr(model, "num_classes", 0)), dtype=np.float32)
    return np.concatenate(outputs).astype(np.float32, copy=False)


def accuracy(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    device: str | torch.device | None = None,
    batch_size: int = 512,
) -> float:
    """Share of images whose arg-max logit is their label; an empty set raises ``DataError``."""
    labels = np.asarray(y)
    if labels.shape[0] != len(x):
        raise DataError(f"{labels.shape[0]} labels for {len(x)} images")
    if labels.shape[0] == 0:
        raise DataError("accuracy of an empty set of images")
    predictions = predict_logits(model, x, device, batch_size).argmax(1)
    return float((predictions == labels).mean())


def parameter_dtype(model: nn.Module) -> torch.dtype:
    """The dtype inputs are cast to: float32 normally, float64 for a ``model.double()``."""
    param = next(model.parameters(), None)
    return param.dtype if param is not None else torch.float32


@torch.no_grad()
def group_logits(models: list[nn.Module], images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """float32 ``K x N x classes`` logits of uint8 ``N x H x W x 3`` images for every model.

    Runs without gradients in eval mode and fp32 (each model's mode is restored afterwards), on
    the first model's device; each batch is copied there once and fed to all models, so
    ``images`` may be memory-mapped.
    """
    if not models:
        raise ConfigError("group_logits: empty group of models")
    if batch_size < 1:
        raise ConfigError(f"group_logits: batch_size must be >= 1, got {batch_size}")
    device = model_device(models[0])
    modes = [model.training for model in models]
    outputs: list[list[np.ndarray]] = [[] for _ in models]
    try:
        for model in models:
            model.to(device).eval()
        for start in range(0, len(images), batch_size):
            batch = uint8_to_float(to_device_uint8(images[start : start + batch_size], device))
            for i, model in enumerate(models):
                logits = model(batch.to(parameter_dtype(model)))
                outputs[i].append(logits.float().cpu().numpy())
    finally:
        for model, mode in zip(models, modes, strict=True):
            model.train(mode)
    if not len(images):
        classes = getattr(models[0], "num_classes", 0)
        return np.zeros((len(models), 0, classes), dtype=np.float32)
    return np.stack([np.concatenate(parts) for parts in outputs]).astype(np.float32, copy=False)
