"""Training of groups of small classifiers (the MNTD shadow and target models).

Meta Neural Analysis needs many small classifiers of one architecture, each trained on its own
(poisoned) training set for a fixed number of epochs (MNTD keeps the last epoch, no validation).
Training them one after another leaves a GPU mostly idle (MNTD's CIFAR-10 network on a
100-image batch is a few small kernels), so :func:`train_model_group` can also train the K
models of a group at once: their parameters are stacked along a new leading axis with
:func:`torch.func.stack_module_state` and one forward/backward runs
``torch.vmap(torch.func.functional_call)`` over the stack, which turns each convolution into one
grouped convolution. The loss is the sum of the K per-model mean losses, so each model's
gradient is its own, and :class:`StackedOptimizer` applies Adam, SGD or Adadelta (elementwise
updates) to each model's slice with that model's own step count.

Training sets may differ in size (a trojaned MNTD model's set has ``int(p * N)`` poisoned copies
appended, with ``p`` drawn per model). Each model still sees every epoch as its own permutation
cut into ``batch_size`` batches, the last partial batch kept: a step stacks every model's next
batch, pads the shorter ones with masked rows (they add nothing to the loss) and skips, in the
optimiser, the models whose epoch has no batch left, so a model with fewer batches neither moves
nor ages its optimiser state. Only BatchNorm models, whose batch statistics the padding would
change, fall back to training one after another when the sizes differ.

Both modes give every model the same mini-batches: per epoch a permutation of its rows from a
CPU ``torch.Generator`` seeded with the model's seed. Without dropout, stacked and sequential
training therefore agree up to floating-point rounding (the tests check it, equal and unequal
sizes), and a CPU run is repeatable bit for bit. Dropout draws its masks from torch's generator,
seeded per model (sequential) or per group (stacked, ``vmap(randomness="different")``), so
either mode repeats itself for the same seeds but the two draw different masks. On CUDA both
run in the autocast precision of :mod:`freqbackdoor.models.training`.

Their logits come from :func:`freqbackdoor.models.prediction.group_logits`; a group is stored by
:mod:`freqbackdoor.models.group_files`.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, DataError
from ..frequency.dct import resolve_device
from ..mna import mntd  # noqa: F401  (registers MNTD's architecture in MODELS)
from .prediction import parameter_dtype, to_device_uint8, uint8_to_float
from .training import TrainSettings, autocast_dtype, make_optimizer

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


def _has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@contextmanager
def _seeded_torch(seed: int, device: torch.device):
    """Seed torch's generators (dropout) inside, and restore them afterwards."""
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed) & 0x7FFFFFFFFFFFFFFF)
        yield


def _group_seed(seeds: list[int]) -> int:
    """One seed for a stacked group's dropout masks, from every model's seed."""
    return int(np.random.SeedSequence([int(s) for s in seeds]).generate_state(1)[0])


class StackedOptimizer(torch.optim.Optimizer):
    """Adam, SGD or Adadelta over stacked parameters (K models on axis 0), stepping only the
    models in :attr:`active`.

    Built from the optimiser :func:`freqbackdoor.models.training.make_optimizer` makes for the stacked
    leaves, whose parameter groups (learning rate, weight decay per group, betas, momentum, rho,
    eps) it keeps; the update of an active model is PyTorch's for that optimiser, step for step
    (per-model step counts drive Adam's bias correction, per-model flags SGD's first momentum
    step). An inactive model's parameters and optimiser state are left exactly as they were.
    Subclassing :class:`torch.optim.Optimizer` keeps ``zero_grad`` and ``GradScaler`` working.
    """

    KINDS = {torch.optim.Adam: "adam", torch.optim.SGD: "sgd", torch.optim.Adadelta: "adadelta"}

    def __init__(self, template: torch.optim.Optimizer, k: int) -> None:
        kind = self.KINDS.get(type(template))
        if kind is None:
            raise ConfigError(
                f"stacked training supports {', '.join(self.KINDS.values())}, not "
                f"{type(template).__name__}"
            )
        for group in template.param_groups:
            for flag in ("amsgrad", "maximize", "nesterov"):
                if group.get(flag):
                    raise ConfigError(f"stacked training: {kind} with {flag}=True is not supported")
        super().__init__([dict(g) for g in template.param_groups], dict(template.defaults))
        self.kind = kind
        self.k = k
        self.active = torch.ones(k, dtype=torch.bool)

    def _mask(self, p: torch.Tensor) -> torch.Tensor:
        return self.active.to(p.device).view(-1, *([1] * (p.ndim - 1)))

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D102 (torch's signature)
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if group["weight_decay"]:
                    grad = grad.add(p, alpha=group["weight_decay"])
                active = self._mask(p)
                state = self.state[p]
                update = getattr(self, f"_{self.kind}")(group, p, grad, active, state)
                p.copy_(torch.where(active, p - update, p))
        return loss

    def _adam(self, group, p, grad, active, state) -> torch.Tensor:
        if not state:
            state["step"] = torch.zeros(self.k, dtype=p.dtype, device=p.device)
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_sq"] = torch.zeros_like(p)
        beta1, beta2 = group["betas"]
        state["step"] += self.active.to(p.device, p.dtype)
        m = torch.where(active, state["exp_avg"].lerp(grad, 1 - beta1), state["exp_avg"])
        v = torch.where(
            active, state["exp_avg_sq"] * beta2 + (1 - beta2) * grad * grad, state["exp_avg_sq"]
        )
        state["exp_avg"], state["exp_avg_sq"] = m, v
        step = state["step"].clamp(min=1).view(-1, *([1] * (p.ndim - 1)))
        bias1, bias2 = 1 - beta1**step, 1 - beta2**step
        denom = v.sqrt() / bias2.sqrt() + group["eps"]
        return (group["lr"] / bias1) * m / denom

    def _sgd(self, group, p, grad, active, state) -> torch.Tensor:
        momentum = group["momentum"]
        if not momentum:
            return group["lr"] * grad
        if not state:
            state["buffer"] = torch.zeros_like(p)
            state["started"] = torch.zeros(self.k, dtype=torch.bool, device=p.device)
        started = state["started"].view(-1, *([1] * (p.ndim - 1)))
        moved = state["buffer"] * momentum + (1 - group["dampening"]) * grad
        buffer = torch.where(active, torch.where(started, moved, grad), state["buffer"])
        state["buffer"] = buffer
        state["started"] |= self.active.to(p.device)
        return group["lr"] * buffer

    def _adadelta(self, group, p, grad, active, state) -> torch.Tensor:
        if not state:
            state["square_avg"] = torch.zeros_like(p)
            state["acc_delta"] = torch.zeros_like(p)
        rho, eps = group["rho"], group["eps"]
        square = state["square_avg"] * rho + (1 - rho) * grad * grad
        delta = (state["acc_delta"] + eps).sqrt() / (square + eps).sqrt() * grad
        acc = state["acc_delta"] * rho + (1 - rho) * delta * delta
        state["square_avg"] = torch.where(active, square, state["square_avg"])
        state["acc_delta"] = torch.where(active, acc, state["acc_delta"])
        return group["lr"] * delta


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
        optimizer = make_optimizer(model, settings)
        param_dtype = parameter_dtype(model)
        generator = torch.Generator().manual_seed(int(seed))
        n = x.shape[0]
        model.train()
        losses.append([])
        accs.append([])
        with _seeded_torch(seed, device):
            for epoch in range(1, settings.epochs + 1):
                order = torch.randperm(n, generator=generator).to(device)
                loss_sum = torch.zeros((), device=device)
                correct = torch.zeros((), dtype=torch.int64, device=device)
                for start in range(0, n, settings.batch_size):
                    rows = order[start : start + settings.batch_size]
                    batch, batch_targets = uint8_to_float(x[rows]).to(param_dtype), y[rows]
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


def _padded(tensors: list[torch.Tensor], length: int) -> torch.Tensor:
    """Stack tensors of different first-axis lengths, zero-padded to ``length``."""
    if all(t.shape[0] == length for t in tensors):
        return torch.stack(tensors)
    out = tensors[0].new_zeros((len(tensors), length, *tensors[0].shape[1:]))
    for i, tensor in enumerate(tensors):
        out[i, : tensor.shape[0]] = tensor
    return out


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

    Per step, every model's next batch is stacked (shorter ones padded with masked rows) and
    models without a batch left in the epoch are skipped by :class:`StackedOptimizer`.
    ``nn.ReLU(inplace=True)`` is fine under ``vmap`` here: it mutates the (batched) output of a
    convolution, never an unbatched tensor. BatchNorm running statistics are stacked buffers
    that the forward pass updates in place, model by model.
    """
    k = len(models)
    params, buffers = torch.func.stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")  # the structure only; weights come from `params`
    base.train()

    def forward(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], x: torch.Tensor):
        return torch.func.functional_call(base, (p, b), (x,))

    batched_forward = torch.vmap(forward, randomness="different")
    holder = nn.Module()  # lets make_optimizer see the stacked leaves as `parameters()`
    holder.stacked = nn.ParameterList(
        [nn.Parameter(v, requires_grad=True) for v in params.values()]
    )
    stacked = dict(zip(params, holder.stacked, strict=True))
    optimizer = StackedOptimizer(make_optimizer(holder, settings), k)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    param_dtype = parameter_dtype(models[0])

    sizes = torch.tensor([x.shape[0] for x in images], device=device)
    n_max = int(sizes.max())
    x_all = _padded(images, n_max)  # K x N_max x 3 x H x W uint8
    y_all = _padded(targets, n_max)  # K x N_max
    model_index = torch.arange(k, device=device)[:, None]
    generators = [torch.Generator().manual_seed(int(seed)) for seed in seeds]
    batch_size = settings.batch_size
    steps = math.ceil(n_max / batch_size)
    losses: list[list[float]] = [[] for _ in range(k)]
    accs: list[list[float]] = [[] for _ in range(k)]
    with _seeded_torch(_group_seed(seeds), device):
        for epoch in range(1, settings.epochs + 1):
            orders = [
                torch.randperm(x.shape[0], generator=g)
                for x, g in zip(images, generators, strict=True)
            ]
            order = _padded(orders, n_max).to(device)  # K x N_max, row i from model i's generator
            loss_sum = torch.zeros(k, device=device)
            correct = torch.zeros(k, dtype=torch.int64, device=device)
            for step in range(steps):
                start = step * batch_size
                counts = (sizes - start).clamp(0, batch_size)  # rows of each model's batch
                width = int(counts.max())
                rows = order[:, start : start + width]  # K x B (padding: row 0, masked)
                mask = torch.arange(width, device=device)[None, :] < counts[:, None]
                batch = uint8_to_float(x_all[model_index, rows]).to(
                    param_dtype
                )  # K x B x 3 x H x W
                batch_targets = y_all[model_index, rows]  # K x B
                with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                    logits = batched_forward(stacked, buffers, batch)  # K x B x classes
                    per_sample = F.cross_entropy(
                        logits.float().flatten(0, 1), batch_targets.flatten(), reduction="none"
                    ).view(k, width)
                    per_model = (per_sample * mask).sum(1) / counts.clamp(min=1)
                    loss = per_model.sum()
                optimizer.active = (counts > 0).cpu()
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                loss_sum += per_model.detach() * counts
                correct += ((logits.detach().argmax(2) == batch_targets) & mask).sum(1)
            epoch_loss = (loss_sum / sizes).tolist()
            epoch_acc = (correct.double() / sizes).tolist()
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

    All models share one architecture. Training uses ``settings.epochs``, ``batch_size`` and
    the optimiser settings (:func:`freqbackdoor.models.training.make_optimizer`); it runs a fixed
    number of epochs and keeps the last (``val_fraction`` and ``seed`` are ignored:
    ``seeds[i]`` orders model i's batches and seeds its dropout), and ``augment=True`` raises
    ``ConfigError``. Lists of different lengths raise ``ConfigError``, labels that do not fit
    their images or the model's classes ``DataError``.

    ``stacked=True`` trains the whole group at once (see the module docstring), sets of
    different sizes included; a BatchNorm model with sets of different sizes falls back to
    sequential training (logged). The models end on ``device`` in eval mode. Inputs are cast to
    the parameters' dtype (float32, or float64 after ``model.double()``, which the tests use to
    compare the two modes without float32 rounding).

    Returns the history: ``mode`` ("stacked" or "sequential", the mode actually used),
    ``models`` (K), ``epochs``, ``train_loss`` and ``train_acc`` (per model, per epoch, on the
    training batches), ``seconds`` (training wall time, data transfer included),
    ``models_per_hour``, ``samples_per_second`` (training samples over all models) and
    ``device``.
    """
    log = log or _log
    labels = _check_group(models, x_sets, y_sets, seeds, settings)
    target = resolve_device(device)
    dtype = autocast_dtype(target)
    if target.type == "cuda":
        torch.backends.cudnn.benchmark = True
    sizes = [y.shape[0] for y in labels]
    mode = "stacked" if stacked else "sequential"
    if stacked and len(set(sizes)) > 1 and _has_batchnorm(models[0]):
        log.info(
            "training sets of %d to %d images differ in size and the padding of a stacked "
            "batch would shift BatchNorm's statistics: training the group of %d sequentially",
            min(sizes),
            max(sizes),
            len(models),
        )
        mode = "sequential"

    start_time = time.perf_counter()
    for model in models:
        model.to(target)
    images = [to_device_uint8(x, target) for x in x_sets]
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
