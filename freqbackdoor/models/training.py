"""Training, evaluation and checkpoints of the image classifiers (Table 8's reference model).

The whole training set is turned into one uint8 ``N x 3 x H x W`` tensor on the training device
once (it is small next to a GPU's memory: CIFAR-10 is 150 MB), so an epoch is a loop of index
look-ups with no data loader. Every random draw (initial shuffle, validation split, batch order,
augmentation) comes from ``settings.seed``, so a CPU run is bit-for-bit repeatable; on CUDA the
loop runs in bf16 (fp16 plus loss scaling where bf16 is missing) autocast for speed instead.

A held-out, class-stratified ``val_fraction`` of the training set picks the epoch whose weights
are kept, which also guards against a late divergence (the paper's Adam learning rate of 0.05 is
high). Checkpoints are a plain ``state_dict`` plus a JSON sidecar that names the architecture and
the checkpoint's sha256; :func:`load_checkpoint` rebuilds the model from the sidecar and loads
the weights with ``weights_only=True``, refusing files that do not match it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, DataError
from ..frequency.dct import resolve_device
from ..io import load_weights, read_json, save_torch, sha256_file, write_json
from .classifier import build_model, count_parameters

_log = logging.getLogger(__name__)

OPTIMIZERS = ("adam", "sgd", "adadelta")
#: Training images the BatchNorm statistics are recomputed on (:func:`recompute_batchnorm`).
BATCHNORM_SAMPLES = 4096
CROP_PADDING = 4
#: Sidecar keys written by :func:`save_checkpoint` itself; ``meta`` may not override them.
SIDECAR_KEYS = (
    "architecture",
    "num_classes",
    "input_size",
    "model_options",
    "domain",
    "input_format",
    "parameters",
    "checkpoint",
    "sha256",
    "torch_version",
)


@dataclass
class TrainSettings:
    """How a classifier is trained (config key ``reference_classifier``).

    ``optimizer`` is ``adadelta`` (the authors' model files: ``lr`` 0.05, ``rho`` 0.95, ``eps``
    1e-7, Keras' update rule, which PyTorch's Adadelta implements), ``adam`` or ``sgd`` (with
    ``momentum``). ``kernel_l2`` is Keras' ``l2(kernel_l2)`` regulariser on every convolution
    kernel (a penalty ``kernel_l2 * sum(w**2)`` in the loss; the authors: 1e-3 for the classifier,
    1e-4 for the detector), applied as a weight decay of ``2 * kernel_l2`` on those kernels only;
    ``weight_decay`` applies to every parameter. ``augment`` adds random crops (4 px zero padding) and
    horizontal flips; ``val_fraction`` of the training set is held out to choose the best epoch
    (0 keeps the last epoch).
    """

    epochs: int
    batch_size: int = 128
    lr: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    momentum: float = 0.9
    rho: float = 0.95
    eps: float = 1e-7
    kernel_l2: float = 0.0
    augment: bool = False
    val_fraction: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        checks = [
            (isinstance(self.epochs, int) and self.epochs >= 1, "epochs must be an integer >= 1"),
            (
                isinstance(self.batch_size, int) and self.batch_size >= 1,
                "batch_size must be an integer >= 1",
            ),
            (self.lr > 0, "lr must be positive"),
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of {', '.join(OPTIMIZERS)}"),
            (self.weight_decay >= 0, "weight_decay must be >= 0"),
            (0 <= self.momentum <= 1, "momentum must be in [0, 1]"),
            *optimizer_checks(self),
            (0 <= self.val_fraction < 1, "val_fraction must be in [0, 1)"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"training settings: {message} ({self})")

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> TrainSettings:
        """Settings from a config mapping; unknown or missing keys raise ``ConfigError``."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ConfigError(
                f"unknown training setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        if "epochs" not in config:
            raise ConfigError("training settings: 'epochs' is required")
        return cls(**dict(config))

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def split_validation(
    labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded, class-stratified ``(train_indices, val_indices)`` with ``round(fraction * N)`` held out.

    Each sample gets its position within its (shuffled) class as a fraction of the class size;
    the smallest fractions go to validation, so every class gives about ``fraction`` of its
    samples, and the total is exact even when classes are too small to give one each.
    """
    labels = np.asarray(labels)
    n = labels.shape[0]
    n_val = int(round(fraction * n))
    if n_val == 0:
        return np.arange(n), np.arange(0)
    if n_val >= n:
        raise ConfigError(f"val_fraction {fraction} leaves no training samples out of {n}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    position = np.empty(n, dtype=np.float64)
    for cls in np.unique(labels):
        members = order[labels[order] == cls]
        position[members] = (np.arange(members.size) + rng.random()) / members.size
    ranked = np.argsort(position, kind="stable")
    return np.sort(ranked[n_val:]), np.sort(ranked[:n_val])


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


def _augment(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random crops after 4 px zero padding and random horizontal flips, for a whole batch.

    The random numbers are drawn on the CPU from ``generator`` so that a seed gives the same
    augmentations whatever the device.
    """
    n, _, height, width = batch.shape
    pad = CROP_PADDING
    padded = F.pad(batch, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(batch.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(batch.device)
    flip = (torch.rand(n, generator=generator) < 0.5).to(batch.device)
    rows = dy[:, None] + torch.arange(height, device=batch.device)  # N x H
    cols = dx[:, None] + torch.arange(width, device=batch.device)  # N x W
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    index = torch.arange(n, device=batch.device)[:, None, None]
    # Advanced indices around the channel slice put the indexed axes first: N x H x W x C.
    cropped = padded[index, :, rows[:, :, None], cols[:, None, :]]
    return cropped.permute(0, 3, 1, 2).contiguous()


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """Autocast dtype for ``device``: bf16 on CUDA where supported, else fp16; None on the CPU."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def optimizer_checks(settings: Any) -> list[tuple[bool, str]]:
    """``(ok, message)`` checks of the optimiser fields every training-settings class shares."""
    return [
        (0 < getattr(settings, "rho", 0.95) < 1, "rho must be in (0, 1)"),
        (getattr(settings, "eps", 1e-7) > 0, "eps must be positive"),
        (getattr(settings, "kernel_l2", 0.0) >= 0, "kernel_l2 must be >= 0"),
    ]


def is_kernel(parameter: torch.Tensor) -> bool:
    """Whether a parameter is a convolution kernel: 4 axes (5 when models are stacked).

    These are the tensors Keras' ``kernel_regularizer`` penalises in the authors' models; dense
    kernels (2 axes; 3 stacked), biases and BatchNorm scales (1; 2 stacked) are left alone.
    """
    return parameter.ndim >= 4


def make_optimizer(model: nn.Module, settings: Any) -> torch.optim.Optimizer:
    """The optimiser ``settings`` names for ``model``'s parameters.

    ``settings`` has ``optimizer``, ``lr``, ``weight_decay`` and, where they apply,
    ``momentum`` (sgd), ``rho`` and ``eps`` (adadelta) and ``kernel_l2`` (all three): the
    convolution kernels (:func:`is_kernel`) get ``weight_decay + 2 * kernel_l2``, which is the
    gradient of Keras' ``l2(kernel_l2)`` penalty added to the loss. Every optimiser here adds
    weight decay to the gradient before its update, as a Keras loss term does.
    """
    weight_decay = float(getattr(settings, "weight_decay", 0.0))
    kernel_l2 = float(getattr(settings, "kernel_l2", 0.0))
    kernels, others = [], []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (kernels if is_kernel(parameter) else others).append(parameter)
    groups = [{"params": others, "weight_decay": weight_decay}]
    if kernels:
        groups.append({"params": kernels, "weight_decay": weight_decay + 2.0 * kernel_l2})
    if settings.optimizer == "adam":
        return torch.optim.Adam(groups, lr=settings.lr)
    if settings.optimizer == "adadelta":
        return torch.optim.Adadelta(
            groups,
            lr=settings.lr,
            rho=getattr(settings, "rho", 0.95),
            eps=getattr(settings, "eps", 1e-7),
        )
    if settings.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=settings.lr, momentum=getattr(settings, "momentum", 0.9))
    raise ConfigError(f"unknown optimizer {settings.optimizer!r}; known: {', '.join(OPTIMIZERS)}")


def _batchnorms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def recompute_batchnorm(model: nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """Set every BatchNorm layer's running statistics to their exact average over ``batches``.

    Why: the running statistics that eval mode uses are an exponential average over past steps
    (Keras' momentum 0.99 averages over about 100), taken while the weights moved. A long run
    (the paper's 150 epochs of 350 steps) ends with averages that fit its final weights; a
    short one (the demo's 50 steps) does not, and its model predicts in eval mode from
    statistics of earlier weights: measured on the demo's photos32, 44-48% test accuracy with
    the running averages, 75-92% with the statistics recomputed on the training images
    (README, deviations). So after training, and before each validation that picks the best
    epoch, the statistics are recomputed ("precise BatchNorm") with the BatchNorm layers in
    train mode and every other layer (Dropout) in eval mode, as at inference. ``batches`` are
    the model's inputs on its device; the model comes back in eval mode. Returns the number of
    BatchNorm layers (0: nothing to do, ``batches`` is not consumed).
    """
    norms = _batchnorms(model)
    if not norms:
        return 0
    momenta = [norm.momentum for norm in norms]
    model.eval()
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over every batch seen
        norm.train()
    try:
        for batch in batches:
            model(batch)
    finally:
        for norm, momentum in zip(norms, momenta, strict=True):
            norm.momentum = momentum
        model.eval()
    return len(norms)


def batchnorm_rows(n: int, limit: int = BATCHNORM_SAMPLES) -> torch.Tensor:
    """At most ``limit`` evenly spaced row indices of ``n`` rows: the images the statistics use."""
    if n <= limit:
        return torch.arange(n)
    return torch.linspace(0, n - 1, limit).round().long()


@torch.no_grad()
def _predict_tensor(
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


def train_classifier(
    model: nn.Module,
    x_train: np.ndarray,
    y_train: np.ndarray,
    settings: TrainSettings,
    device: str | torch.device = "auto",
    progress: Callable | None = None,
    log: logging.Logger | None = None,
    epoch_callback: Callable[[int, nn.Module], Mapping[str, float]] | None = None,
) -> dict[str, Any]:
    """Train ``model`` in place on uint8 ``N x H x W x 3`` images and int labels.

    Seeds torch with ``settings.seed``, holds out a stratified ``val_fraction`` and, after the
    last epoch, loads the weights of the epoch with the best validation accuracy (the last epoch
    without validation data). A non-finite training loss stops training early, keeping the best
    weights so far (``ConfigError`` if that happens in the first epoch). ``progress(iterable, desc, total)`` wraps the epoch loop (e.g.
    :func:`freqbackdoor.logs.progress`). The model is left on ``device`` in eval mode.

    Returns the history: per-epoch lists ``epoch``, ``train_loss``, ``train_acc`` (on the
    augmented training batches) and ``val_acc`` (None without validation data), plus
    ``best_epoch``, ``best_val_acc``, ``train_samples``, ``val_samples``, ``device``,
    ``precision``, ``seconds`` (training loop wall time), ``samples_per_second`` (training
    samples processed per second, validation excluded) and ``stopped_early`` (reason or None).

    ``epoch_callback(epoch, model)``, if given, runs after each epoch's validation with the
    model in eval mode on the training device (the next epoch puts it back in train mode), so
    a caller can track metrics the validation split cannot give (a poisoned model's attack
    success rate, :mod:`freqbackdoor.models.poisoning`). Each item of the mapping it returns is
    appended to the per-epoch list ``history[key]`` and logged; a key that is one of the
    history's own raises ``ConfigError``. Its time counts in ``seconds``.
    """
    log = log or _log
    target = resolve_device(device)
    labels = np.array(y_train, dtype=np.int64)  # a private, writable copy
    if labels.ndim != 1 or labels.shape[0] != np.shape(x_train)[0]:
        raise DataError(
            f"labels of shape {labels.shape} do not match {np.shape(x_train)[0]} training images"
        )
    if labels.shape[0] == 0:
        raise DataError("no training images")
    num_classes = getattr(model, "num_classes", None)
    if num_classes is not None and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(
            f"labels range over [{labels.min()}, {labels.max()}] but the model has "
            f"{num_classes} classes"
        )

    torch.manual_seed(settings.seed)
    generator = torch.Generator().manual_seed(settings.seed)
    train_idx, val_idx = split_validation(labels, settings.val_fraction, settings.seed)
    images = to_device_uint8(x_train, target)
    targets = torch.from_numpy(labels).to(target)
    train_rows = torch.from_numpy(train_idx).to(target)
    val_rows = torch.from_numpy(val_idx).to(target)
    x_tr, y_tr = images[train_rows], targets[train_rows]
    x_val, y_val = images[val_rows], targets[val_rows]
    del images

    dtype = autocast_dtype(target)
    if target.type == "cuda":
        torch.backends.cudnn.benchmark = True
    scaler = torch.amp.GradScaler(target.type, enabled=dtype == torch.float16)
    model.to(target)
    optimizer = make_optimizer(model, settings)
    n_train = x_tr.shape[0]
    norm_rows = batchnorm_rows(n_train).to(target)
    history: dict[str, Any] = {
        "epoch": [],
        "train_loss": [],
        "train_acc": [],
        "val_acc": [],
    }
    best_acc, best_epoch, best_state = -math.inf, 0, None
    stopped_early = None
    processed = 0
    epochs = range(1, settings.epochs + 1)
    if progress is not None:
        epochs = progress(epochs, desc="training epochs", total=settings.epochs)
    start_time = time.perf_counter()
    for epoch in epochs:
        model.train()
        order = torch.randperm(n_train, generator=generator).to(target)
        loss_sum = torch.zeros((), device=target)
        correct = torch.zeros((), dtype=torch.int64, device=target)
        for start in range(0, n_train, settings.batch_size):
            rows = order[start : start + settings.batch_size]
            batch = x_tr[rows]
            if settings.augment:
                batch = _augment(batch, generator)
            batch, batch_targets = uint8_to_float(batch), y_tr[rows]
            with torch.autocast(target.type, dtype=dtype, enabled=dtype is not None):
                logits = model(batch)
                loss = F.cross_entropy(logits.float(), batch_targets)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            loss_sum += loss.detach() * rows.shape[0]
            correct += (logits.detach().argmax(1) == batch_targets).sum()
        processed += n_train
        train_loss = loss_sum.item() / n_train
        train_acc = correct.item() / n_train
        recompute_batchnorm(
            model,
            (
                uint8_to_float(x_tr[norm_rows[start : start + settings.batch_size]])
                for start in range(0, norm_rows.shape[0], settings.batch_size)
            ),
        )
        model.eval()
        val_acc = None
        if x_val.shape[0]:
            val_pred = _predict_tensor(model, x_val, 4 * settings.batch_size, dtype).argmax(1)
            val_acc = (val_pred == y_val).sum().item() / x_val.shape[0]
        extra = _epoch_extras(epoch_callback, epoch, model, history)
        history["epoch"].append(epoch)
        history["train_loss"].append(train_loss)
        history["train_acc"].append(train_acc)
        history["val_acc"].append(val_acc)
        log.info(
            "epoch %d/%d: train loss %.4f, train acc %.4f, val acc %s",
            epoch,
            settings.epochs,
            train_loss,
            train_acc,
            "n/a" if val_acc is None else f"{val_acc:.4f}",
        )
        if extra:
            log.info(
                "epoch %d/%d: %s",
                epoch,
                settings.epochs,
                ", ".join(f"{key} {value:.4f}" for key, value in extra.items()),
            )
        if not math.isfinite(train_loss):
            stopped_early = f"non-finite training loss at epoch {epoch}"
            log.warning("%s; keeping the weights of epoch %d", stopped_early, best_epoch)
            break
        score = val_acc if val_acc is not None else float(epoch)  # no validation: last epoch
        if score > best_acc:
            best_acc, best_epoch = score, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    seconds = time.perf_counter() - start_time
    if best_state is None:
        raise ConfigError(
            "training diverged in the first epoch (non-finite loss with learning rate "
            f"{settings.lr}); lower the learning rate"
        )
    model.load_state_dict(best_state)
    model.eval()
    history.update(
        best_epoch=best_epoch,
        best_val_acc=history["val_acc"][best_epoch - 1] if best_epoch else None,
        train_samples=int(n_train),
        val_samples=int(x_val.shape[0]),
        device=str(target),
        precision={None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype],
        seconds=seconds,
        samples_per_second=processed / seconds if seconds > 0 else None,
        stopped_early=stopped_early,
    )
    return history


#: History keys :func:`train_classifier` writes itself; an epoch callback may not return them.
HISTORY_KEYS = (
    "epoch",
    "train_loss",
    "train_acc",
    "val_acc",
    "best_epoch",
    "best_val_acc",
    "train_samples",
    "val_samples",
    "device",
    "precision",
    "seconds",
    "samples_per_second",
    "stopped_early",
)


def _epoch_extras(
    callback: Callable[[int, nn.Module], Mapping[str, float]] | None,
    epoch: int,
    model: nn.Module,
    history: dict[str, Any],
) -> dict[str, float]:
    """Run an epoch callback and append what it returns to ``history``'s per-epoch lists."""
    if callback is None:
        return {}
    extra = {str(key): float(value) for key, value in dict(callback(epoch, model)).items()}
    clash = sorted(set(extra) & set(HISTORY_KEYS))
    if clash:
        raise ConfigError(
            f"epoch_callback returned {', '.join(clash)}, which the training history uses itself"
        )
    for key, value in extra.items():
        history.setdefault(key, []).append(value)
    return extra


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
            outputs.append(_predict_tensor(model, batch, batch_size, None).cpu().numpy())
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


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Torch's global generators seeded with ``seed`` inside, restored afterwards.

    Dropout masks come from the global generator, so every trainer here runs its loop under
    this: without it a run's numbers would depend on whatever drew random numbers before it in
    the process (a test order, a benchmark's earlier recipes, the model's initialisation).
    """
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))
        yield


def model_description(model: nn.Module) -> dict[str, Any]:
    """What a sidecar says of a model to rebuild it: ``architecture`` (its registry name),
    ``num_classes``, ``input_size``, ``model_options``, input ``domain`` and ``input_format``,
    and its trainable ``parameters``."""
    architecture = getattr(model, "architecture", None)
    if architecture is None:
        raise ValueError(f"{type(model).__name__} has no 'architecture' name to rebuild it from")
    return {
        "architecture": architecture,
        "num_classes": int(model.num_classes),
        "input_size": int(model.input_size),
        "model_options": dict(getattr(model, "options", {})),
        "domain": getattr(model, "domain", "pixel"),
        "input_format": getattr(
            model,
            "input_format",
            "float32 N x 3 x H x W in [0, 1] (freqbackdoor.models.images_to_tensor)",
        ),
        "parameters": count_parameters(model),
    }


def save_checkpoint(
    model: nn.Module,
    path: str | os.PathLike,
    sidecar_path: str | os.PathLike,
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``model``'s state dict to ``path`` and a JSON sidecar describing it; both atomic.

    The sidecar holds what :func:`load_checkpoint` needs to rebuild and verify the model
    (``architecture``, ``num_classes``, ``input_size``, ``sha256`` of the checkpoint file) plus
    ``domain`` ("pixel": the model reads images, not spectra), ``input_format``, ``parameters``,
    ``checkpoint`` (file name), ``torch_version`` and every key of ``meta`` (training settings,
    seed, metrics...). Returns the sidecar dict.
    """
    meta = dict(meta or {})
    clash = sorted(set(meta) & set(SIDECAR_KEYS))
    if clash:
        raise ValueError(f"meta may not set the sidecar's own key(s) {', '.join(clash)}")
    description = model_description(model)  # before writing: a nameless model is refused
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    digest = save_torch(path, state)
    sidecar = {
        **meta,
        **description,
        "checkpoint": os.path.basename(os.fspath(path)),
        "sha256": digest,
        "torch_version": torch.__version__,
    }
    write_json(sidecar_path, sidecar)
    return sidecar


def check_state_keys(
    path: str | os.PathLike, state: Mapping, expected: Mapping, what: str, model: str
) -> None:
    """``DataError`` naming ``path`` and the keys when ``state`` lacks or adds to ``expected``'s.

    ``what`` names the file's kind (``checkpoint``, ``model group``), ``model`` what it is
    loaded into; shapes are the caller's to check.
    """
    absent = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if absent or extra:
        parts = []
        if absent:
            parts.append(f"lacks {', '.join(absent)}")
        if extra:
            parts.append(f"has unexpected {', '.join(extra)}")
        raise DataError(f"{path}: {what} {' and '.join(parts)} for {model}")


def check_identity(
    meta: Mapping[str, Any], expect: Mapping[str, Any], sidecar_path: str | os.PathLike
) -> None:
    """``DataError`` unless every field of ``expect`` has that value in the sidecar ``meta``.

    A checkpoint must be what its path and the config say it is: a detector copied over
    another's file (sha256 and shapes can both agree with its own sidecar) is caught here by
    the sidecar's ``checkpoint`` name, ``dataset``, ``body``, ``domain`` and the like. The
    message names the file and the first field that differs.
    """
    for field, wanted in expect.items():
        actual = meta.get(field)
        if actual != wanted:
            raise DataError(
                f"{sidecar_path}: {field} is {actual!r} but this path and the config expect "
                f"{wanted!r}: copied or renamed from another checkpoint? (the pipeline retrains "
                "one whose .pt and .json are deleted)"
            )


def load_checkpoint(
    path: str | os.PathLike,
    sidecar_path: str | os.PathLike,
    device: str | torch.device = "cpu",
    domain: str | None = "pixel",
    expect: Mapping[str, Any] | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model a sidecar describes and load ``path`` into it: ``(model, sidecar)``.

    The checkpoint must match the sidecar's sha256 and hold exactly the architecture's
    parameters with the same shapes; otherwise ``DataError`` names the file and the mismatch.
    Weights are read with ``torch.load(weights_only=True)``, so a checkpoint cannot run code.
    The model comes back in eval mode on ``device`` (``"auto"`` allowed). ``domain`` is the
    input domain the caller expects (``"pixel"`` for classifiers, ``"dct"`` or ``"pixel"`` for
    detectors; ``None`` accepts any). ``expect`` maps sidecar fields to the values the caller's
    path and config imply (:func:`check_identity`); the pipeline passes at least the file name
    as ``checkpoint``.
    """
    target = resolve_device(device)
    meta = read_json(sidecar_path)
    if not isinstance(meta, dict):
        raise DataError(f"{sidecar_path}: not a checkpoint sidecar (expected a JSON object)")
    check_identity(meta, expect or {}, sidecar_path)
    missing = [k for k in ("architecture", "num_classes", "input_size", "sha256") if k not in meta]
    if missing:
        raise DataError(f"{sidecar_path}: checkpoint sidecar lacks {', '.join(missing)}")
    if domain is not None and meta.get("domain", "pixel") != domain:
        raise DataError(
            f"{sidecar_path}: domain {meta.get('domain', 'pixel')!r} is not the expected {domain!r}"
        )
    try:
        model = build_model(
            meta["architecture"],
            int(meta["num_classes"]),
            int(meta["input_size"]),
            **meta.get("model_options", {}),
        )
    except ConfigError as exc:
        raise DataError(f"{sidecar_path}: {exc}") from exc
    try:
        digest = sha256_file(path)
    except OSError as exc:
        raise DataError(f"cannot read checkpoint {path}: {exc}") from exc
    if digest != meta["sha256"]:
        raise DataError(
            f"{path}: sha256 {digest} differs from {meta['sha256']} recorded in {sidecar_path} "
            "(the checkpoint was changed or the sidecar belongs to another file)"
        )
    state = load_weights(path, map_location=target)
    if not isinstance(state, dict):
        raise DataError(f"{path}: expected a state dict, found {type(state).__name__}")
    expected = model.state_dict()
    check_state_keys(
        path, state, expected, "checkpoint", f"the sidecar's architecture {meta['architecture']}"
    )
    for key, value in expected.items():
        if tuple(state[key].shape) != tuple(value.shape):
            raise DataError(
                f"{path}: layer {key} has shape {tuple(state[key].shape)} but the sidecar's "
                f"architecture expects {tuple(value.shape)}"
            )
    model.load_state_dict(state)
    model.to(target).eval()
    return model, meta
