"""Training, inference and storage of groups of small classifiers (the MNTD shadow and target models).

Meta Neural Analysis needs many small classifiers of one architecture, each trained on its own
(poisoned) training set for a fixed number of epochs (MNTD keeps the last epoch, no validation).
Training them one after another leaves a GPU mostly idle (a :class:`~freqbackdoor.models.ReferenceCNN`
on a 64-image batch is a few small kernels), so :func:`train_model_group` can also train the K
models of a group at once: their parameters are stacked along a new leading axis with
:func:`torch.func.stack_module_state` and one forward/backward runs
``torch.vmap(torch.func.functional_call)`` over the stack, which turns each convolution into one
grouped convolution. One optimizer steps the stacked leaf tensors; Adam and SGD (with momentum
and weight decay) are elementwise, so this is the same update as K separate optimizers, and the
loss is the sum of the K per-model mean losses, so each model's gradient is its own.

Both modes give every model the same mini-batches: per epoch a permutation of its rows from a
CPU ``torch.Generator`` seeded with the model's seed, cut into ``batch_size`` batches with the
last partial batch kept. Stacked and sequential training therefore agree up to floating-point
rounding (the tests check it), and a CPU run is repeatable bit for bit. On CUDA both run in the
autocast precision of :mod:`freqbackdoor.training`.

A group is stored as one ``.pt`` file holding ``{parameter name: tensor[K, ...]}``, read back with
``weights_only=True`` and checked key by key against the architecture it is loaded into.
"""

from __future__ import annotations

import copy
import logging
import os
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .dct import resolve_device
from .errors import ConfigError, DataError
from .io import atomic_path, read_json
from .models import build_model
from .training import (
    TrainSettings,
    _as_float,
    _make_optimizer,
    _model_device,
    _precision,
    _to_device_uint8,
    check_state_keys,
)

_log = logging.getLogger(__name__)

MODES = ("stacked", "sequential")


def _check_group(
    models: list[nn.Module],
    x_sets: list[np.ndarray],
    y_sets: list[np.ndarray],
    seeds: list[int],
    settings: TrainSettings,
) -> list[np.ndarray]:
    """Validate a group's inputs; return the labels as private int64 arrays."""
    if settings.augment:
        raise ConfigError(
            "train_model_group: augment=True is not supported (MNTD shadow models are trained "
            "without augmentation); set augment to false"
        )
    if not models:
        raise ConfigError("train_model_group: empty group of models")
    counts = {"models": models, "x_sets": x_sets, "y_sets": y_sets, "seeds": seeds}
    counts = {name: len(items) for name, items in counts.items()}
    if len(set(counts.values())) != 1:
        listed = ", ".join(f"{count} {name}" for name, count in counts.items())
        raise ConfigError(
            f"train_model_group: one image set, label set and seed per model; got {listed}"
        )
    reference = {k: tuple(v.shape) for k, v in models[0].state_dict().items()}
    for i, model in enumerate(models[1:], start=1):
        shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        if shapes != reference:
            raise ConfigError(
                f"train_model_group: model {i} ({type(model).__name__}) does not have the "
                f"parameters of model 0 ({type(models[0]).__name__}); a group shares one architecture"
            )
    labels = []
    for i, (model, x, y) in enumerate(zip(models, x_sets, y_sets, strict=True)):
        y = np.array(y, dtype=np.int64)  # a private, writable copy
        n = np.shape(x)[0] if np.ndim(x) else 0
        if y.ndim != 1 or y.shape[0] != n:
            raise DataError(
                f"model {i}: labels of shape {y.shape} do not match {n} training images"
            )
        if n == 0:
            raise DataError(f"model {i}: no training images")
        num_classes = getattr(model, "num_classes", None)
        if num_classes is not None and (y.min() < 0 or y.max() >= num_classes):
            raise DataError(
                f"model {i}: labels range over [{y.min()}, {y.max()}] but the model has "
                f"{num_classes} classes"
            )
        labels.append(y)
    return labels


def _param_dtype(model: nn.Module) -> torch.dtype:
    """The dtype inputs are cast to: float32 normally, float64 for a ``model.double()``."""
    param = next(model.parameters(), None)
    return param.dtype if param is not None else torch.float32


def _train_sequential(
    models: list[nn.Module],
    images: list[torch.Tensor],
    targets: list[torch.Tensor],
    settings: TrainSettings,
    seeds: list[int],
    device: torch.device,
    dtype: torch.dtype | None,
    log: logging.Logger,
) -> tuple[list[list[float]], list[list[float]]]:
    """Train each model in turn with plain autograd; per-model (loss, acc) histories."""
    losses, accs = [], []
    for i, (model, x, y, seed) in enumerate(zip(models, images, targets, seeds, strict=True)):
        scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
        optimizer = _make_optimizer(model, settings)
        param_dtype = _param_dtype(model)
        generator = torch.Generator().manual_seed(int(seed))
        n = x.shape[0]
        model.train()
        losses.append([])
        accs.append([])
        for epoch in range(1, settings.epochs + 1):
            order = torch.randperm(n, generator=generator).to(device)
            loss_sum = torch.zeros((), device=device)
            correct = torch.zeros((), dtype=torch.int64, device=device)
            for start in range(0, n, settings.batch_size):
                rows = order[start : start + settings.batch_size]
                batch, batch_targets = _as_float(x[rows]).to(param_dtype), y[rows]
                with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                    logits = model(batch)
                    loss = F.cross_entropy(logits.float(), batch_targets)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                loss_sum += loss.detach() * rows.shape[0]
                correct += (logits.detach().argmax(1) == batch_targets).sum()
            losses[i].append(loss_sum.item() / n)
            accs[i].append(correct.item() / n)
            log.debug(
                "model %d/%d epoch %d/%d: train loss %.4f, train acc %.4f",
                i + 1,
                len(models),
                epoch,
                settings.epochs,
                losses[i][-1],
                accs[i][-1],
            )
        model.eval()
    return losses, accs


def _train_stacked(
    models: list[nn.Module],
    images: list[torch.Tensor],
    targets: list[torch.Tensor],
    settings: TrainSettings,
    seeds: list[int],
    device: torch.device,
    dtype: torch.dtype | None,
    log: logging.Logger,
) -> tuple[list[list[float]], list[list[float]]]:
    """Train all models at once through ``vmap`` over stacked parameters; write them back.

    ``nn.ReLU(inplace=True)`` is fine under ``vmap`` here: it mutates the (batched) output of a
    convolution, never an unbatched tensor. Buffers are stacked and passed through as well but
    must not be updated in the forward pass (no BatchNorm in training mode).
    """
    k = len(models)
    params, buffers = torch.func.stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")  # the structure only; weights come from `params`
    base.train()

    def forward(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], x: torch.Tensor):
        return torch.func.functional_call(base, (p, b), (x,))

    batched_forward = torch.vmap(forward)
    holder = nn.Module()  # lets _make_optimizer see the stacked leaves as `parameters()`
    holder.stacked = nn.ParameterList(
        [nn.Parameter(v, requires_grad=True) for v in params.values()]
    )
    stacked = dict(zip(params, holder.stacked, strict=True))
    optimizer = _make_optimizer(holder, settings)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    param_dtype = _param_dtype(models[0])

    x_all = torch.stack(images)  # K x N x 3 x H x W uint8
    y_all = torch.stack(targets)  # K x N
    n = x_all.shape[1]
    model_index = torch.arange(k, device=device)[:, None]
    generators = [torch.Generator().manual_seed(int(seed)) for seed in seeds]
    losses: list[list[float]] = [[] for _ in range(k)]
    accs: list[list[float]] = [[] for _ in range(k)]
    for epoch in range(1, settings.epochs + 1):
        order = torch.stack([torch.randperm(n, generator=g) for g in generators])
        order = order.to(device)  # K x N, row i from model i's generator
        loss_sum = torch.zeros(k, device=device)
        correct = torch.zeros(k, dtype=torch.int64, device=device)
        for start in range(0, n, settings.batch_size):
            rows = order[:, start : start + settings.batch_size]  # K x B
            batch = _as_float(x_all[model_index, rows]).to(param_dtype)  # K x B x 3 x H x W
            batch_targets = y_all[model_index, rows]  # K x B
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                logits = batched_forward(stacked, buffers, batch)  # K x B x classes
                per_sample = F.cross_entropy(
                    logits.float().flatten(0, 1), batch_targets.flatten(), reduction="none"
                )
                per_model = per_sample.view(k, -1).mean(1)
                loss = per_model.sum()
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            loss_sum += per_model.detach() * rows.shape[1]
            correct += (logits.detach().argmax(2) == batch_targets).sum(1)
        epoch_loss = (loss_sum / n).tolist()
        epoch_acc = (correct.double() / n).tolist()
        for i in range(k):
            losses[i].append(epoch_loss[i])
            accs[i].append(epoch_acc[i])
        log.debug(
            "stacked group of %d, epoch %d/%d: mean train loss %.4f, mean train acc %.4f",
            k,
            epoch,
            settings.epochs,
            float(np.mean(epoch_loss)),
            float(np.mean(epoch_acc)),
        )
    with torch.no_grad():
        for i, model in enumerate(models):
            state = {name: value[i] for name, value in stacked.items()}
            state.update({name: value[i] for name, value in buffers.items()})
            model.load_state_dict(state)
            model.eval()
    return losses, accs


def train_model_group(
    models: list[nn.Module],
    x_sets: list[np.ndarray],
    y_sets: list[np.ndarray],
    settings: TrainSettings,
    seeds: list[int],
    device: str | torch.device = "auto",
    stacked: bool = True,
    log: logging.Logger | None = None,
) -> dict[str, Any]:
    """Train ``models[i]`` in place on uint8 ``x_sets[i]`` (N_i x H x W x 3) and ``y_sets[i]``.

    All models share one architecture. Training uses ``settings.epochs``, ``batch_size``,
    ``lr``, ``optimizer``, ``weight_decay`` and ``momentum``; it runs a fixed number of epochs
    and keeps the last (``val_fraction`` and ``seed`` are ignored: ``seeds[i]`` orders model
    i's batches), and ``augment=True`` raises ``ConfigError``. Lists of different lengths raise
    ``ConfigError``, labels that do not fit their images or the model's classes ``DataError``.

    ``stacked=True`` trains the whole group at once (see the module docstring); it needs every
    set to have the same size, and falls back to sequential training (logged) when they
    differ, since the result is the same either way. The models end on ``device`` in eval mode.
    Inputs are cast to the parameters' dtype (float32, or float64 after ``model.double()``,
    which the tests use to compare the two modes without float32 rounding).

    Returns the history: ``mode`` ("stacked" or "sequential", the mode actually used),
    ``models`` (K), ``epochs``, ``train_loss`` and ``train_acc`` (per model, per epoch, on the
    training batches), ``seconds`` (training wall time, data transfer included),
    ``models_per_hour``, ``samples_per_second`` (training samples over all models) and
    ``device``.
    """
    log = log or _log
    labels = _check_group(models, x_sets, y_sets, seeds, settings)
    target = resolve_device(device)
    dtype = _precision(target)
    if target.type == "cuda":
        torch.backends.cudnn.benchmark = True
    sizes = [y.shape[0] for y in labels]
    mode = "stacked" if stacked else "sequential"
    if stacked and len(set(sizes)) > 1:
        log.info(
            "training sets of %d to %d images differ in size: training the group of %d "
            "sequentially instead of stacked",
            min(sizes),
            max(sizes),
            len(models),
        )
        mode = "sequential"

    start_time = time.perf_counter()
    for model in models:
        model.to(target)
    images = [_to_device_uint8(x, target) for x in x_sets]
    targets = [torch.from_numpy(y).to(target) for y in labels]
    train = _train_stacked if mode == "stacked" else _train_sequential
    losses, accs = train(models, images, targets, settings, seeds, target, dtype, log)
    if target.type == "cuda":
        torch.cuda.synchronize(target)
    seconds = time.perf_counter() - start_time
    samples = sum(sizes) * settings.epochs
    log.info(
        "trained %d models (%s, %d epochs) in %.1f s: final train loss %.4f, train acc %.4f (means)",
        len(models),
        mode,
        settings.epochs,
        seconds,
        float(np.mean([loss[-1] for loss in losses])),
        float(np.mean([acc[-1] for acc in accs])),
    )
    return {
        "mode": mode,
        "models": len(models),
        "epochs": settings.epochs,
        "train_loss": losses,
        "train_acc": accs,
        "seconds": seconds,
        "models_per_hour": len(models) * 3600.0 / seconds if seconds > 0 else float("inf"),
        "samples_per_second": samples / seconds if seconds > 0 else float("inf"),
        "device": str(target),
    }


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
    device = _model_device(models[0])
    modes = [model.training for model in models]
    outputs: list[list[np.ndarray]] = [[] for _ in models]
    try:
        for model in models:
            model.to(device).eval()
        for start in range(0, len(images), batch_size):
            batch = _as_float(_to_device_uint8(images[start : start + batch_size], device))
            for i, model in enumerate(models):
                logits = model(batch.to(_param_dtype(model)))
                outputs[i].append(logits.float().cpu().numpy())
    finally:
        for model, mode in zip(models, modes, strict=True):
            model.train(mode)
    if not len(images):
        classes = getattr(models[0], "num_classes", 0)
        return np.zeros((len(models), 0, classes), dtype=np.float32)
    return np.stack([np.concatenate(parts) for parts in outputs]).astype(np.float32, copy=False)


def save_model_group(models: list[nn.Module], path: str | os.PathLike) -> None:
    """Write a group's weights to one ``.pt`` file as ``{name: tensor[K, ...]}``, atomically."""
    if not models:
        raise ConfigError(f"{path}: cannot save an empty group of models")
    states = [model.state_dict() for model in models]
    reference = {k: tuple(v.shape) for k, v in states[0].items()}
    for i, state in enumerate(states[1:], start=1):
        if {k: tuple(v.shape) for k, v in state.items()} != reference:
            raise ConfigError(
                f"{path}: model {i} does not have the parameters of model 0; a group shares "
                "one architecture"
            )
    stacked = {
        key: torch.stack([state[key].detach().cpu() for state in states]).contiguous()
        for key in reference
    }
    with atomic_path(path) as tmp:
        torch.save(stacked, tmp)


def load_model_group(
    path: str | os.PathLike,
    architecture: str,
    num_classes: int,
    input_size: int,
    count: int,
    device: str | torch.device = "cpu",
    **options,
) -> list[nn.Module]:
    """Rebuild ``count`` models of ``architecture`` and load a :func:`save_model_group` file.

    ``options`` go to :func:`~freqbackdoor.models.build_model`. The file is read with
    ``weights_only=True`` and must hold exactly the architecture's parameters, each stacked
    ``count`` times with the architecture's shape; otherwise ``DataError`` names the file and
    the mismatching key or count. The models come back in eval mode on ``device``.
    """
    target = resolve_device(device)
    template = build_model(architecture, num_classes, input_size, **options)
    try:
        stacked = torch.load(path, map_location=target, weights_only=True)
    except Exception as exc:  # torch raises several types for malformed or unsafe files
        raise DataError(f"cannot load model group {path}: {exc}") from exc
    if not isinstance(stacked, dict) or not all(
        isinstance(v, torch.Tensor) for v in stacked.values()
    ):
        raise DataError(
            f"{path}: expected a dict of stacked tensors, found {type(stacked).__name__}"
        )
    expected = template.state_dict()
    check_state_keys(path, stacked, expected, "model group", f"architecture {architecture}")
    for key, value in expected.items():
        found = tuple(stacked[key].shape)
        if not found or found[0] != count:
            held = found[0] if found else "no"
            raise DataError(f"{path}: {key} holds {held} models, expected a group of {count}")
        if found[1:] != tuple(value.shape):
            raise DataError(
                f"{path}: {key} has per-model shape {found[1:]} but {architecture} with "
                f"{num_classes} classes and input size {input_size} expects {tuple(value.shape)}"
            )
    models = []
    for i in range(count):
        model = template if i == 0 else copy.deepcopy(template)
        model.load_state_dict({key: value[i] for key, value in stacked.items()})
        models.append(model.to(target).eval())
    return models


def load_model_group_with_sidecar(
    path: str | os.PathLike, sidecar_path: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[list[nn.Module], dict[str, Any]]:
    """:func:`load_model_group` with the architecture, classes, input size, options and count
    read from the group's JSON sidecar (``architecture``, ``num_classes``, ``size``,
    ``options``, one ``models`` entry per model); returns the models and the sidecar."""
    meta = read_json(sidecar_path)
    try:
        spec = (meta["architecture"], int(meta["num_classes"]), int(meta["size"]))
        count, options = len(meta["models"]), dict(meta.get("options", {}))
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{sidecar_path}: not a model-group sidecar ({exc!r})") from exc
    return load_model_group(path, *spec, count=count, device=device, **options), meta
