"""Training of the image classifiers (Table 8's reference model).

The whole training set is turned into one uint8 ``N x 3 x H x W`` tensor on the training device
once (it is small next to a GPU's memory: CIFAR-10 is 150 MB), so an epoch is a loop of index
look-ups with no data loader. Every random draw (initial shuffle, validation split, batch order,
augmentation) comes from ``settings.seed``, so a CPU run is bit-for-bit repeatable; on CUDA the
loop runs in bf16 (fp16 plus loss scaling where bf16 is missing) autocast for speed instead.

A held-out, class-stratified ``val_fraction`` of the training set picks the epoch whose weights
are kept, which also guards against a late divergence (the paper's Adam learning rate of 0.05 is
high).

Predicting with a trained classifier (logits, accuracy) is :mod:`freqbackdoor.models.prediction`;
its checkpoint and JSON sidecar are :mod:`freqbackdoor.models.checkpoints`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config.options import ConfigSettings
from ..errors import ConfigError, DataError
from ..frequency.dct import resolve_device
from .prediction import predict_tensor_logits, to_device_uint8, uint8_to_float

_log = logging.getLogger(__name__)

OPTIMIZERS = ("adam", "sgd", "adadelta")
#: Training images the BatchNorm statistics are recomputed on (:func:`recompute_batchnorm`).
BATCHNORM_SAMPLES = 4096
CROP_PADDING = 4


@dataclass
class TrainSettings(ConfigSettings):
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

    CONFIG_NAME = "training settings"
    REQUIRED = ("epochs",)

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
    (docs/deviations.md). So after training, and before each validation that picks the best
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
            val_pred = predict_tensor_logits(model, x_val, 4 * settings.batch_size, dtype).argmax(1)
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
