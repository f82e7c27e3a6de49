"""What the triggers optimised against the reference classifier share: one recipe, done once.

The paper examines four triggers that are not drawn by hand but optimised against a trained
model (Section 3.2): Trojan square and Trojan watermark (Liu et al., NDSS 2018,
:mod:`freqbackdoor.triggers.trojannn`) and the l2- and l0-constrained invisible triggers (Li et
al., IEEE TDSC 2020, the regularisation variant, :mod:`freqbackdoor.triggers.invisible`). All
four share one recipe, which this module implements once:

1. **Pick target neurons** in the penultimate layer (``model.features``'s output). TrojanNN
   picks the neuron(s) with the largest total absolute weight connecting them to the preceding
   layer, because those are the easiest to drive from the input. Our penultimate units are the
   flattened, pooled activations of the last convolution, so a unit's incoming weights are its
   channel's kernel: every spatial position of a channel ties. Ties are broken by how strongly
   the unit responds when the trigger region is filled with random noise, and units that barely
   respond to the region (less than 10% of the strongest response, e.g. whose receptive field
   misses a corner square, or that are dead) are not eligible. See :func:`select_neurons`.
2. **Optimise the trigger** by gradient descent (Adam) so that the selected neurons reach
   ``target_activation``: loss ``mean((act - target)^2)`` as in TrojanNN. Each step is
   followed by a projection onto the trigger's constraint set (pixel range, L2 ball, mask).

Lengths, pixel counts and batch sizes are given for 32x32 images and scale with the image, like
the hand-drawn triggers in :mod:`freqbackdoor.triggers.patterns`, so one set of options serves
both the 32 px and the 224 px datasets. Every random draw comes from a ``torch.Generator`` seeded
with ``context.seed``: the same model, images and options give the same trigger (on a GPU, up to
cuDNN's non-deterministic backward kernels unless ``torch.backends.cudnn.deterministic`` is set).

Each trigger's ``meta`` records how the optimisation went, for the sidecar and for checks:
``neurons`` (flat indices into the features), ``neuron_channel_row_col``, ``selection`` (rule,
connectivity and response of the chosen units, how many units were eligible), the mean
activations of the selected units on clean images, with the starting random trigger and with
the final one (``activation_clean``/``_initial``/``_final``), the neuron loss over all samples
for the same three (``loss_clean``/``_initial``/``_final``), a short ``loss_history`` of
``[step, minibatch loss]`` pairs and the settings used (``steps``, ``lr``, ``samples``, the
scaled ``batch_size``, ``seed``). The ``loss_*`` and ``activation_*`` values are always measured
on the context images with the trigger inserted, as it will be used.

The option checks (:func:`int_option`, :func:`float_option`), :class:`FrozenModel` and
:func:`to_hwc` serve the smooth trigger (:mod:`freqbackdoor.triggers.smooth`) too.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, DataError
from .registry import TriggerContext

# Options every optimised trigger takes, with their defaults.
OPTIMISATION_DEFAULTS: dict[str, Any] = {
    "neurons": 1,  # penultimate units to excite
    "target_activation": 10.0,  # the value the selected units are pushed to
    "steps": 200,  # Adam steps
    "lr": 0.1,  # Adam learning rate, in pixel units ([0, 1])
    "samples": 128,  # context images the trigger is optimised and evaluated on
    "batch_size": 32,  # images per step at 32x32, scaled by (32/size)^2, at least 2
    "target_label": 0,  # recorded for poisoning; the optimisation does not use it
}


RESPONSE_FLOOR = 0.1  # a unit is eligible if it responds at least this share of the strongest
SENSITIVITY_DRAWS = 2  # random fillings of the trigger region used to measure responses
HISTORY_POINTS = 20  # loss values kept in a trigger's meta

Insert = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# --------------------------------------------------------------------------- options


def int_option(opts: dict, key: str, name: str, minimum: int) -> int:
    """``opts[key]`` as an int of at least ``minimum``, or a ``ConfigError`` naming it."""
    value = opts[key]
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ConfigError(f"triggers.{name}.{key} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def float_option(opts: dict, key: str, name: str, positive: bool = True) -> float:
    """``opts[key]`` as a finite float (> 0 when ``positive``), or a ``ConfigError`` naming it."""
    value = opts[key]
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise ConfigError(f"triggers.{name}.{key} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or (positive and value <= 0):
        raise ConfigError(
            f"triggers.{name}.{key} must be a {'positive ' if positive else ''}number, got {value!r}"
        )
    return value


@dataclasses.dataclass
class OptimisationSettings:
    """The optimisation options shared by every trigger here, checked."""

    neurons: int
    target: float
    steps: int
    lr: float
    samples: int
    batch_size: int
    target_label: int

    @classmethod
    def parse(cls, opts: dict, name: str) -> OptimisationSettings:
        return cls(
            neurons=int_option(opts, "neurons", name, 1),
            target=float_option(opts, "target_activation", name, positive=False),
            steps=int_option(opts, "steps", name, 1),
            lr=float_option(opts, "lr", name),
            samples=int_option(opts, "samples", name, 1),
            batch_size=int_option(opts, "batch_size", name, 1),
            target_label=int_option(opts, "target_label", name, 0),
        )


# --------------------------------------------------------------------------- optimisation


@dataclasses.dataclass
class OptimisationProblem:
    """A model, the images a trigger is optimised on and the random stream it draws from."""

    model: nn.Module
    images: torch.Tensor  # float N x 3 x H x W in [0, 1], on ``device``
    device: torch.device
    generator: torch.Generator  # on the CPU, so draws do not depend on the device
    batch_size: int
    chunk_size: int  # images per forward pass when evaluating without gradients
    n_features: int

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.features(x).flatten(1)

    def rand(self, *shape: int) -> torch.Tensor:
        """Uniform [0, 1) draws of ``shape`` from the seeded stream, on the device."""
        return torch.rand(shape, generator=self.generator).to(self.device)

    def batches(self, steps: int) -> Iterator[torch.Tensor]:
        """``steps`` minibatches of image indices, reshuffled at each pass over the images."""
        n = self.images.shape[0]
        order = torch.randperm(n, generator=self.generator)
        position = 0
        for _ in range(steps):
            if position + self.batch_size > n:
                order = torch.randperm(n, generator=self.generator)
                position = 0
            yield order[position : position + self.batch_size].to(self.device)
            position += self.batch_size


def optimisation_problem(
    name: str, height: int, width: int, settings: OptimisationSettings, context: TriggerContext
) -> OptimisationProblem:
    """Check the context and move a seeded subset of its images to the device."""
    images = np.asarray(context.images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3:
        raise DataError(
            f"trigger {name!r}: context images must be uint8 N x H x W x 3, got "
            f"{images.dtype} {images.shape}"
        )
    if images.shape[1:3] != (height, width) or images.shape[0] == 0:
        raise DataError(
            f"trigger {name!r} is built for {height}x{width} images but the context holds "
            f"{images.shape[0]} of {images.shape[1]}x{images.shape[2]}"
        )
    device = torch.device(context.device)
    generator = torch.Generator().manual_seed(int(context.seed))
    count = min(settings.samples, images.shape[0])
    rows = torch.randperm(images.shape[0], generator=generator)[:count].sort().values.numpy()
    x = torch.from_numpy(np.ascontiguousarray(images[rows])).to(device)
    x = x.permute(0, 3, 1, 2).float().div_(255.0)
    pixels = height * width
    batch = max(2, int(round(settings.batch_size * 32 * 32 / pixels)))
    chunk = max(1, (256 * 32 * 32) // pixels)
    model = context.model
    if not callable(getattr(model, "features", None)):
        raise ConfigError(f"trigger {name!r}: the model has no features() to read neurons from")
    with FrozenModel(model), torch.no_grad():  # eval mode: BatchNorm statistics stay untouched
        n_features = model.features(x[:1]).flatten(1).shape[1]
    classifier = getattr(model, "classifier", None)
    if isinstance(classifier, nn.Linear) and classifier.in_features != n_features:
        raise ConfigError(
            f"trigger {name!r}: the reference classifier takes {classifier.in_features} features "
            f"but {height}x{width} images give {n_features}; was it trained at this size?"
        )
    if settings.neurons > n_features:
        raise ConfigError(
            f"triggers.{name}.neurons is {settings.neurons} but the model has {n_features}"
        )
    return OptimisationProblem(
        model=model,
        images=x,
        device=device,
        generator=generator,
        batch_size=min(batch, count),
        chunk_size=chunk,
        n_features=n_features,
    )


def neuron_loss(activations: torch.Tensor, target: float) -> torch.Tensor:
    """TrojanNN's objective: mean squared distance of the selected activations to the target."""
    return (activations - target).square().mean()


def incoming_connectivity(model: nn.Module, n_features: int) -> tuple[torch.Tensor, str]:
    """Per penultimate unit, the total absolute weight connecting it to the preceding layer.

    The last convolution or linear layer inside ``model.features`` produces the units: a
    convolution's output channel ``c`` feeds units ``c * k .. (c + 1) * k - 1`` of the flattened
    activations (``k`` spatial positions, channel-major as ``nn.Flatten`` orders them), so all
    of them get the sum of ``|kernel c|``. Without such a layer, the total absolute weight into
    the classifier is used instead. Returns the scores and which rule gave them.
    """
    features = getattr(model, "features", None)
    layers = []
    if isinstance(features, nn.Module):
        layers = [m for m in features.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    if layers:
        weight = layers[-1].weight.detach().abs()
        per_output = weight.reshape(weight.shape[0], -1).sum(dim=1).float().cpu()
        if n_features % per_output.numel() == 0:
            repeats = n_features // per_output.numel()
            return per_output.repeat_interleave(repeats), "incoming |weights| of the last layer"
    classifier = getattr(model, "classifier", None)
    if isinstance(classifier, nn.Linear) and classifier.in_features == n_features:
        return classifier.weight.detach().abs().sum(dim=0).float().cpu(), (
            "outgoing |weights| into the classifier"
        )
    raise ConfigError("cannot read the weights into the model's penultimate layer")


def _responses(problem: OptimisationProblem, insert: Insert, scale: float) -> torch.Tensor:
    """Mean absolute change of every penultimate unit when the region gets random noise."""
    total = torch.zeros(problem.n_features, dtype=torch.float64)
    _, _, height, width = problem.images.shape
    noises = [scale * problem.rand(1, 3, height, width) for _ in range(SENSITIVITY_DRAWS)]
    with torch.no_grad():
        for start in range(0, problem.images.shape[0], problem.chunk_size):
            x = problem.images[start : start + problem.chunk_size]
            clean = problem.features(x)
            for noise in noises:
                change = (problem.features(insert(x, noise)) - clean).abs()
                total += change.sum(dim=0).double().cpu()
    return (total / (problem.images.shape[0] * SENSITIVITY_DRAWS)).float()


def select_neurons(
    problem: OptimisationProblem, insert: Insert, count: int, scale: float = 1.0
) -> tuple[list[int], dict[str, Any]]:
    """TrojanNN's neuron choice among the units the trigger region can reach.

    Eligible units respond to random noise in the region (inserted by ``insert``, values in
    ``[0, scale]``) by at least ``RESPONSE_FLOOR`` of the strongest response. They are ranked
    by :func:`incoming_connectivity`, ties (units of one convolution channel) by the response.
    """
    connectivity, rule = incoming_connectivity(problem.model, problem.n_features)
    response = _responses(problem, insert, scale)
    strongest = float(response.max())
    eligible = (
        response >= RESPONSE_FLOOR * strongest
        if strongest > 0
        else torch.ones_like(response, dtype=torch.bool)
    )
    if int(eligible.sum()) < count:
        eligible = torch.ones_like(eligible)
    primary = np.where(eligible.numpy(), connectivity.numpy(), -np.inf)
    order = np.lexsort((-response.numpy(), -primary))  # the last key sorts first
    chosen = [int(i) for i in order[:count]]
    info = {
        "rule": rule,
        "connectivity": [round(float(connectivity[i]), 6) for i in chosen],
        "response_to_region": [round(float(response[i]), 6) for i in chosen],
        "eligible_units": int(eligible.sum()),
        "units": problem.n_features,
    }
    return chosen, info


def evaluate_trigger(
    problem: OptimisationProblem,
    insert: Insert,
    pattern: torch.Tensor | None,
    neurons: list[int],
    target,
) -> tuple[list[float], float]:
    """Mean activation of each selected unit and the neuron loss over all images."""
    sums = torch.zeros(len(neurons), dtype=torch.float64)
    squares = 0.0
    with torch.no_grad():
        for start in range(0, problem.images.shape[0], problem.chunk_size):
            x = problem.images[start : start + problem.chunk_size]
            if pattern is not None:
                x = insert(x, pattern)
            acts = problem.features(x)[:, neurons].double()
            sums += acts.sum(dim=0).cpu()
            squares += float((acts - target).square().sum())
    n = problem.images.shape[0]
    return [round(float(v), 6) for v in sums / n], squares / (n * len(neurons))


def optimise_trigger(
    problem: OptimisationProblem,
    insert: Insert,
    variable: torch.Tensor,
    project: Callable[[torch.Tensor], None],
    neurons: list[int],
    settings: OptimisationSettings,
    steps: int,
    penalty: Callable[[torch.Tensor], torch.Tensor] | None = None,
    objectives: list[float] | None = None,
) -> list[float]:
    """Adam on ``variable`` (projected after every step); returns the minibatch neuron losses.

    The minimised objective is the neuron loss plus ``penalty(variable)`` when given; if
    ``objectives`` is a list, each step's objective value is appended to it. Gradients are taken
    with respect to the trigger only (the caller holds the model in :class:`FrozenModel`), so the
    model's weights are neither changed nor given ``.grad`` buffers.
    """
    variable.requires_grad_(True)
    optimiser = torch.optim.Adam([variable], lr=settings.lr)
    losses = []
    for rows in problem.batches(steps):
        activations = problem.features(insert(problem.images[rows], variable))[:, neurons]
        loss = neuron_loss(activations, settings.target)
        total = loss + penalty(variable) if penalty is not None else loss
        (variable.grad,) = torch.autograd.grad(total, [variable])
        optimiser.step()
        with torch.no_grad():
            project(variable)
        losses.append(float(loss.detach()))
        if objectives is not None:
            objectives.append(float(total.detach()))
    variable.requires_grad_(False)
    return losses


def short_history(losses: list[float]) -> list[list[float]]:
    """At most ``HISTORY_POINTS`` ``[step, loss]`` pairs, always including the first and last."""
    if not losses:
        return []
    every = max(1, math.ceil(len(losses) / HISTORY_POINTS))
    steps = sorted(set(range(0, len(losses), every)) | {len(losses) - 1})
    return [[step, round(losses[step], 6)] for step in steps]


class FrozenModel:
    """Eval mode and no weight gradients for the build; the model's own settings come back after.

    Only the trigger needs gradients. Switching the weights' ``requires_grad`` off for the build
    makes sure no backend spends time on weight gradients and that the shared model cannot pick
    up ``.grad`` state; the flags and the train/eval mode are restored when the build ends or
    fails.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.was_training = bool(getattr(model, "training", False))
        self.flags: list[tuple[torch.Tensor, bool]] = []

    def __enter__(self) -> None:
        self.model.eval()
        for parameter in self.model.parameters():
            self.flags.append((parameter, parameter.requires_grad))
            parameter.requires_grad_(False)

    def __exit__(self, *exc) -> None:
        for parameter, flag in self.flags:
            parameter.requires_grad_(flag)
        self.flags.clear()
        self.model.train(self.was_training)


def additive_insert(mask: torch.Tensor) -> Insert:
    """``clip(x + mask * pattern, 0, 1)``: Trigger mode ``additive`` with weight 1."""
    return lambda x, pattern: torch.clamp(x + mask * pattern, 0.0, 1.0)


def replace_insert(mask: torch.Tensor) -> Insert:
    """``x * (1 - mask) + pattern * mask``: Trigger mode ``replace``."""
    return lambda x, pattern: x * (1.0 - mask) + pattern * mask


def to_hwc(tensor: torch.Tensor) -> np.ndarray:
    """A ``1 x C x H x W`` tensor as a float32 ``H x W x 3`` array (channels broadcast)."""
    array = tensor.detach().float().cpu().numpy()[0].transpose(1, 2, 0)
    return np.ascontiguousarray(np.broadcast_to(array, array.shape[:2] + (3,)), dtype=np.float32)


def mask_plane(mask2d: np.ndarray, device: torch.device) -> torch.Tensor:
    """A boolean ``H x W`` mask as a float ``1 x 1 x H x W`` tensor."""
    return torch.from_numpy(mask2d.astype(np.float32))[None, None].to(device)


def neuron_meta(problem: OptimisationProblem, neurons: list[int]) -> dict[str, Any]:
    """Where the selected units sit: flat index and, for conv features, (channel, row, col)."""
    meta: dict[str, Any] = {"neurons": neurons}
    features = getattr(problem.model, "features", None)
    convs = (
        [m for m in features.modules() if isinstance(m, nn.Conv2d)]
        if isinstance(features, nn.Module)
        else []
    )
    if convs and problem.n_features % convs[-1].out_channels == 0:
        positions = problem.n_features // convs[-1].out_channels
        side = math.isqrt(positions)
        if side * side == positions:
            meta["neuron_channel_row_col"] = [
                [i // positions, *divmod(i % positions, side)] for i in neurons
            ]
    return meta
