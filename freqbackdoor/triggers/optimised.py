"""Triggers optimised against the reference classifier: TrojanNN and Li et al.'s invisible ones.

The paper examines four triggers that are not drawn by hand but optimised against a trained
model (Section 3.2): Trojan square and Trojan watermark (Liu et al., NDSS 2018) and the
l2- and l0-constrained invisible triggers (Li et al., IEEE TDSC 2020, the regularisation
variant). All four share one recipe, which this module implements once:

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

What the network sees during step 2 differs by trigger. The TrojanNN triggers and l0-invisible
are optimised on minibatches of training images with the trigger stamped in the same way it
will be inserted later: the neurons then fire whatever the background is, which is what
poisoning needs. l2-invisible by default (``optimise_on: trigger``) does what Li et al. did:
the network input is the perturbation alone, started from random noise, and the neurons are
chosen in that same regime (responses to noise alone, measured against a blank input). That
matters for its frequency content, the property the paper examines: a full-image perturbation
whose gradient is averaged over many stamped images converges to a smooth, low-frequency
universal perturbation, while one optimised as the input itself stays noise-like, like the
authors' published file. ``optimise_on: images`` keeps the universal variant available.

Insertion follows the authors' evaluation code (``../shared/reference/README.md``): Trojan
square, Trojan watermark and l2-invisible are added and clipped (``mode: additive``, weight 1,
mask 1 where the pattern lives); l0-invisible replaces a few pixels (``mode: replace``).

Lengths, pixel counts and batch sizes are given for 32x32 images and scale with the image, like
the hand-drawn triggers in :mod:`freqbackdoor.triggers.registry`, so one set of options serves both the
32 px and the 224 px datasets. Every random draw comes from a ``torch.Generator`` seeded with
``context.seed``: the same model, images and options give the same trigger (on a GPU, up to
cuDNN's non-deterministic backward kernels unless ``torch.backends.cudnn.deterministic`` is set).

Each trigger's ``meta`` records how the optimisation went, for the sidecar and for checks:
``neurons`` (flat indices into the features), ``neuron_channel_row_col``, ``selection`` (rule,
connectivity and response of the chosen units, how many units were eligible), the mean
activations of the selected units on clean images, with the starting random trigger and with
the final one (``activation_clean``/``_initial``/``_final``), the neuron loss over all samples
for the same three (``loss_clean``/``_initial``/``_final``), a short ``loss_history`` of
``[step, minibatch loss]`` pairs and the settings used (``steps``, ``lr``, ``samples``, the
scaled ``batch_size``, ``seed``). The ``loss_*`` and ``activation_*`` values are always measured
on the context images with the trigger inserted, as it will be used. l2-invisible also records
the objective its optimiser minimised (``objective_initial``/``_final`` and a short
``objective_history``), which is not the same quantity when it optimises the trigger alone.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageFilter
from scipy import ndimage
from torch import nn

from ..errors import ConfigError, DataError
from .registry import (
    Trigger,
    TriggerContext,
    load_pattern_image,
    merge_options,
    register_trigger,
    scaled_length,
)

TROJAN_SOURCE = "Liu et al., Trojaning Attack on Neural Networks, NDSS 2018"
INVISIBLE_SOURCE = (
    "Li et al., Invisible Backdoor Attacks on Deep Neural Networks via Steganography and "
    "Regularization, IEEE TDSC 2020"
)

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

TROJAN_SQ_DEFAULTS = {"size": 9, "margin": 2, **OPTIMISATION_DEFAULTS}
TROJAN_WM_DEFAULTS = {"image": "logo", "stroke": 1.0, **OPTIMISATION_DEFAULTS}
L2_INV_DEFAULTS = {
    **OPTIMISATION_DEFAULTS,
    "lr": 0.02,
    "l2_budget": 3.0,  # L2 radius in [0, 1] pixel units at 32x32, scaled by size/32
    "max_value": 68 / 255,  # largest pixel value of the perturbation (the published one's)
    "l2_penalty": 0.1,  # weight of Li et al.'s squared-L2 regulariser in the loss
    "optimise_on": "trigger",  # network input while optimising: "trigger" alone or "images"
}
L0_INV_DEFAULTS = {
    **OPTIMISATION_DEFAULTS,
    "pixels": 9,  # pixels replaced at 32x32, scaled by (size/32)^2
    "region": "bottom_row",  # where they may lie: "bottom_row" (scaled) or "anywhere"
}
REGIONS = ("bottom_row", "anywhere")
OPTIMISE_ON = ("trigger", "images")

RESPONSE_FLOOR = 0.1  # a unit is eligible if it responds at least this share of the strongest
SENSITIVITY_DRAWS = 2  # random fillings of the trigger region used to measure responses
HISTORY_POINTS = 20  # loss values kept in a trigger's meta
WATERMARK_COLOURS = 3  # flat colour regions the watermark image is reduced to

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
class _Settings:
    """The optimisation options shared by every trigger here, checked."""

    neurons: int
    target: float
    steps: int
    lr: float
    samples: int
    batch_size: int
    target_label: int

    @classmethod
    def parse(cls, opts: dict, name: str) -> _Settings:
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
class _Problem:
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


def _problem(
    name: str, height: int, width: int, settings: _Settings, context: TriggerContext
) -> _Problem:
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
    return _Problem(
        model=model,
        images=x,
        device=device,
        generator=generator,
        batch_size=min(batch, count),
        chunk_size=chunk,
        n_features=n_features,
    )


def _blank(problem: _Problem) -> _Problem:
    """``problem`` with one black image as the only background: the trigger-alone regime.

    Adding a perturbation with values in [0, 1] to a black image and clipping gives the
    perturbation itself, so optimising on this problem feeds the network the trigger alone (as
    Li et al. and TrojanNN did), and :func:`select_neurons` on it measures each unit's response
    to noise alone against a blank input. The model and the seeded random stream are shared.
    """
    _, channels, height, width = problem.images.shape
    black = torch.zeros(1, channels, height, width, device=problem.device)
    return dataclasses.replace(problem, images=black, batch_size=1, chunk_size=1)


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


def _responses(problem: _Problem, insert: Insert, scale: float) -> torch.Tensor:
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
    problem: _Problem, insert: Insert, count: int, scale: float = 1.0
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


def _evaluate(
    problem: _Problem, insert: Insert, pattern: torch.Tensor | None, neurons: list[int], target
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


def _optimise(
    problem: _Problem,
    insert: Insert,
    variable: torch.Tensor,
    project: Callable[[torch.Tensor], None],
    neurons: list[int],
    settings: _Settings,
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


def _history(losses: list[float]) -> list[list[float]]:
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


def _additive(mask: torch.Tensor) -> Insert:
    """``clip(x + mask * pattern, 0, 1)``: Trigger mode ``additive`` with weight 1."""
    return lambda x, pattern: torch.clamp(x + mask * pattern, 0.0, 1.0)


def _replace(mask: torch.Tensor) -> Insert:
    """``x * (1 - mask) + pattern * mask``: Trigger mode ``replace``."""
    return lambda x, pattern: x * (1.0 - mask) + pattern * mask


def to_hwc(tensor: torch.Tensor) -> np.ndarray:
    """A ``1 x C x H x W`` tensor as a float32 ``H x W x 3`` array (channels broadcast)."""
    array = tensor.detach().float().cpu().numpy()[0].transpose(1, 2, 0)
    return np.ascontiguousarray(np.broadcast_to(array, array.shape[:2] + (3,)), dtype=np.float32)


def _plane(mask2d: np.ndarray, device: torch.device) -> torch.Tensor:
    """A boolean ``H x W`` mask as a float ``1 x 1 x H x W`` tensor."""
    return torch.from_numpy(mask2d.astype(np.float32))[None, None].to(device)


def _neuron_meta(problem: _Problem, neurons: list[int]) -> dict[str, Any]:
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


# --------------------------------------------------------------------------- TrojanNN


def _trojan(
    name: str,
    mask2d: np.ndarray,
    settings: _Settings,
    context: TriggerContext,
    extra_meta: dict[str, Any],
) -> Trigger:
    """Optimise an additive pattern inside ``mask2d`` to excite TrojanNN's selected neurons."""
    height, width = mask2d.shape
    problem = _problem(name, height, width, settings, context)
    with FrozenModel(problem.model):
        mask = _plane(mask2d, problem.device)
        insert = _additive(mask)
        neurons, selection = select_neurons(problem, insert, settings.neurons)
        pattern = problem.rand(1, 3, height, width)
        activation_clean, loss_clean = _evaluate(problem, insert, None, neurons, settings.target)
        activation_initial, loss_initial = _evaluate(
            problem, insert, pattern, neurons, settings.target
        )
        losses = _optimise(
            problem,
            insert,
            pattern,
            lambda p: p.clamp_(0.0, 1.0),
            neurons,
            settings,
            settings.steps,
        )
        activation_final, loss_final = _evaluate(problem, insert, pattern, neurons, settings.target)
    meta = {
        **extra_meta,
        **_neuron_meta(problem, neurons),
        "selection": selection,
        "target_activation": settings.target,
        "activation_clean": activation_clean,
        "activation_initial": activation_initial,
        "activation_final": activation_final,
        "loss_clean": round(loss_clean, 6),
        "loss_initial": round(loss_initial, 6),
        "loss_final": round(loss_final, 6),
        "loss_history": _history(losses),
        "steps": settings.steps,
        "lr": settings.lr,
        "samples": int(problem.images.shape[0]),
        "batch_size": problem.batch_size,
        "seed": int(context.seed),
    }
    mask3 = np.repeat(mask2d[..., None], 3, axis=2).astype(np.float32)
    return Trigger(
        name=name,
        pattern=to_hwc(pattern) * mask3,
        mask=mask3,
        mode="additive",
        weight=1.0,
        target_label=settings.target_label,
        meta=meta,
    )


@register_trigger("trojan_sq", TROJAN_SOURCE, needs=("model", "images"))
def trojan_square(height: int, width: int, options: dict, context: TriggerContext) -> Trigger:
    """TrojanNN's square trigger: a pattern optimised inside a bottom-right square.

    The authors' 32x32 file fills rows/cols 21..29 (``size: 9``, ``margin: 2``); both are given
    at 32 px and scale with the image (63 px with a 14 px margin at 224).
    """
    opts = merge_options(options, "trojan_sq", TROJAN_SQ_DEFAULTS)
    settings = _Settings.parse(opts, "trojan_sq")
    size = int_option(opts, "size", "trojan_sq", 1)
    margin = int_option(opts, "margin", "trojan_sq", 0)
    rows, cols = scaled_length(size, height), scaled_length(size, width)
    row_margin, col_margin = scaled_length(margin, height), scaled_length(margin, width)
    if rows + row_margin > height or cols + col_margin > width:
        raise ConfigError(
            f"triggers.trojan_sq: a {rows}+{row_margin} px square does not fit {height}x{width}"
        )
    mask2d = np.zeros((height, width), dtype=bool)
    mask2d[
        height - row_margin - rows : height - row_margin,
        width - col_margin - cols : width - col_margin,
    ] = True
    meta = {"square_px": [rows, cols], "margin_px": [row_margin, col_margin]}
    return _trojan("trojan_sq", mask2d, settings, context, meta)


def watermark_mask(height: int, width: int, image: str = "logo", stroke: float = 1.0) -> np.ndarray:
    """A sparse watermark-shaped boolean ``height x width`` mask: the outlines of an image.

    The image (a scikit-image name or a file, as for ``blend``) is smoothed, reduced to
    ``WATERMARK_COLOURS`` flat colours (median cut) and the borders between colour regions are
    drawn ``stroke`` pixels wide (given at 32 px, scaled with the image). The work is done at an
    integer multiple of the output size of at least 512 px and box-averaged down, so the strokes
    look the same at every resolution. For scikit-image's logo (the default; the TrojanNN
    watermark itself is not redistributable) this gives the logo's circle and its S curve,
    about 22% of the pixels, like the sparse strokes of the authors' watermark file.
    """
    if stroke <= 0:
        raise ConfigError(f"triggers.trojan_wm.stroke must be positive, got {stroke!r}")
    factor = max(1, math.ceil(512 / min(height, width)))
    work_h, work_w = height * factor, width * factor
    rgb = load_pattern_image(image, work_h, work_w)
    pil = Image.fromarray(np.rint(rgb * 255).astype(np.uint8))
    pil = pil.filter(ImageFilter.GaussianBlur(radius=min(work_h, work_w) / 128))
    labels = np.asarray(
        pil.quantize(
            colors=WATERMARK_COLOURS,
            method=Image.Quantize.MEDIANCUT,
            dither=Image.Dither.NONE,
        )
    )
    edges = np.zeros(labels.shape, dtype=bool)
    edges[:-1] |= labels[:-1] != labels[1:]
    edges[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    radius = stroke * min(height, width) / 32 * factor / 2
    reach = int(radius)
    yy, xx = np.mgrid[-reach : reach + 1, -reach : reach + 1]
    edges = ndimage.binary_dilation(edges, structure=(yy**2 + xx**2) <= radius**2)
    coverage = edges.reshape(height, factor, width, factor).mean(axis=(1, 3))
    mask = coverage >= 0.5
    if not mask.any():
        raise ConfigError(f"triggers.trojan_wm: image {image!r} gives an empty watermark")
    return mask


@register_trigger("trojan_wm", TROJAN_SOURCE, needs=("model", "images"))
def trojan_watermark(height: int, width: int, options: dict, context: TriggerContext) -> Trigger:
    """TrojanNN's watermark trigger: a pattern optimised on the strokes of a watermark shape.

    The shape is :func:`watermark_mask` of ``image`` (default scikit-image's logo) with strokes
    ``stroke`` px wide at 32 px.
    """
    opts = merge_options(options, "trojan_wm", TROJAN_WM_DEFAULTS)
    settings = _Settings.parse(opts, "trojan_wm")
    stroke = float_option(opts, "stroke", "trojan_wm")
    mask2d = watermark_mask(height, width, str(opts["image"]), stroke)
    meta = {"image": str(opts["image"]), "mask_fraction": round(float(mask2d.mean()), 4)}
    return _trojan("trojan_wm", mask2d, settings, context, meta)


# --------------------------------------------------------------------------- Li et al.


@register_trigger("l2_inv", INVISIBLE_SOURCE, needs=("model", "images"))
def l2_invisible(height: int, width: int, options: dict, context: TriggerContext) -> Trigger:
    """Li et al.'s l2-regularised invisible trigger: small full-image noise that excites neurons.

    Objective: the neuron loss plus ``l2_penalty * ||delta||^2`` (Li et al.'s regulariser);
    after every step ``delta`` is clamped to ``[0, max_value]`` and projected onto the L2 ball
    of radius ``l2_budget`` (pixel units, given at 32x32 and scaled by size/32, as the norm of
    a fixed per-pixel amplitude grows with the side). The published 32x32 trigger has max
    68/255 and L2 norm 3.2, hence the defaults. Inserted by adding and clipping, like the
    authors.

    ``optimise_on`` says what the network sees while ``delta`` is optimised:

    - ``trigger`` (default, Li et al.'s method): ``delta`` alone, a ``1 x 3 x H x W`` input
      started from uniform noise in ``[0, max_value]``; one step per Adam update, so
      ``batch_size`` is unused. Neurons are selected in the same regime (response to noise
      alone against a black input), since a unit the perturbation alone cannot wake gives the
      optimiser no gradient. The result is noise-like, with much of its energy at high
      frequencies, like the authors' file.
    - ``images``: minibatches of context images with ``delta`` added and clipped, and neurons
      selected by noise added to those images. This finds a universal perturbation that
      excites the units on any background; averaging gradients over backgrounds makes it
      smooth, a low-frequency trigger unlike Li et al.'s.

    Either way ``loss_*``/``activation_*`` in ``meta`` are measured on the context images with
    ``delta`` inserted, and ``objective_*`` is what the optimiser minimised (on the trigger
    alone, or over all context images, plus the penalty); ``loss_history`` holds the neuron
    loss of each step's input (the trigger alone, or the minibatch).
    """
    opts = merge_options(options, "l2_inv", L2_INV_DEFAULTS)
    settings = _Settings.parse(opts, "l2_inv")
    max_value = float_option(opts, "max_value", "l2_inv")
    if max_value > 1.0:
        raise ConfigError(f"triggers.l2_inv.max_value must be in (0, 1], got {max_value!r}")
    budget32 = float_option(opts, "l2_budget", "l2_inv")
    budget = budget32 * math.sqrt(height * width) / 32.0
    weight = float_option(opts, "l2_penalty", "l2_inv", positive=False)
    if weight < 0:
        raise ConfigError(f"triggers.l2_inv.l2_penalty must be >= 0, got {weight!r}")
    optimise_on = opts["optimise_on"]
    if optimise_on not in OPTIMISE_ON:
        raise ConfigError(
            f"triggers.l2_inv.optimise_on must be one of {OPTIMISE_ON}, got {optimise_on!r}"
        )
    problem = _problem("l2_inv", height, width, settings, context)
    source = _blank(problem) if optimise_on == "trigger" else problem

    def project(delta: torch.Tensor) -> None:
        delta.clamp_(0.0, max_value)
        norm = float(delta.norm())
        if norm > budget:
            delta.mul_(budget / norm)  # scaling keeps every value in [0, max_value]

    def penalty(delta: torch.Tensor) -> torch.Tensor:
        return weight * delta.square().sum()

    with FrozenModel(problem.model):
        insert = _additive(torch.ones(1, 1, height, width, device=problem.device))
        neurons, selection = select_neurons(source, insert, settings.neurons, scale=max_value)

        def objective(delta: torch.Tensor) -> float:
            """The optimiser's objective at ``delta``, over all of ``source``'s images."""
            _, loss = _evaluate(source, insert, delta, neurons, settings.target)
            return loss + (float(penalty(delta)) if weight > 0 else 0.0)

        delta = max_value * problem.rand(1, 3, height, width)
        project(delta)
        activation_clean, loss_clean = _evaluate(problem, insert, None, neurons, settings.target)
        activation_initial, loss_initial = _evaluate(
            problem, insert, delta, neurons, settings.target
        )
        objective_initial = objective(delta)
        objectives: list[float] = []
        losses = _optimise(
            source,
            insert,
            delta,
            project,
            neurons,
            settings,
            settings.steps,
            penalty=penalty if weight > 0 else None,
            objectives=objectives,
        )
        activation_final, loss_final = _evaluate(problem, insert, delta, neurons, settings.target)
        objective_final = objective(delta)
    pattern = to_hwc(delta)
    meta = {
        **_neuron_meta(problem, neurons),
        "selection": selection,
        "optimise_on": optimise_on,
        "l2_budget": round(budget, 6),
        "l2_norm": round(float(np.sqrt(np.square(pattern, dtype=np.float64).sum())), 6),
        "max_value": max_value,
        "l2_penalty": weight,
        "target_activation": settings.target,
        "activation_clean": activation_clean,
        "activation_initial": activation_initial,
        "activation_final": activation_final,
        "loss_clean": round(loss_clean, 6),
        "loss_initial": round(loss_initial, 6),
        "loss_final": round(loss_final, 6),
        "loss_history": _history(losses),
        "objective_initial": round(objective_initial, 6),
        "objective_final": round(objective_final, 6),
        "objective_history": _history(objectives),
        "steps": settings.steps,
        "lr": settings.lr,
        "samples": int(problem.images.shape[0]),
        "batch_size": source.batch_size,
        "seed": int(context.seed),
    }
    return Trigger(
        name="l2_inv",
        pattern=pattern,
        mask=np.ones_like(pattern),
        mode="additive",
        weight=1.0,
        target_label=settings.target_label,
        meta=meta,
    )


def _region(height: int, width: int, region: str) -> np.ndarray:
    """Where l0-invisible pixels may go: the bottom row (scaled with the image) or anywhere."""
    mask = np.zeros((height, width), dtype=bool)
    if region == "bottom_row":
        mask[height - scaled_length(1, height) :] = True
    else:
        mask[:] = True
    return mask


def _saliency(
    problem: _Problem, pattern: torch.Tensor, region: torch.Tensor, neurons: list[int], target
) -> torch.Tensor:
    """How much the neuron loss would rise if each region pixel were left unreplaced.

    With a soft mask ``m`` (1 on the region), dropping pixel ``i`` changes the loss by about
    ``-dL/dm_i`` (first order), so that is the score; it is summed over all images.
    """
    total = torch.zeros_like(region)
    for start in range(0, problem.images.shape[0], problem.chunk_size):
        x = problem.images[start : start + problem.chunk_size]
        soft = region.clone().requires_grad_(True)
        acts = problem.features(x * (1.0 - soft) + pattern * soft)[:, neurons]
        loss = (acts - target).square().sum()
        (grad,) = torch.autograd.grad(loss, [soft])
        total -= grad
    return total[0, 0]


@register_trigger("l0_inv", INVISIBLE_SOURCE, needs=("model", "images"))
def l0_invisible(height: int, width: int, options: dict, context: TriggerContext) -> Trigger:
    """Li et al.'s l0-constrained invisible trigger: a few replaced pixels that excite neurons.

    Three stages, half the ``steps`` each for the first and last: optimise replacement values
    for every pixel of ``region`` (``bottom_row``: the last row at 32 px, the last 7 rows at
    224; or ``anywhere``); keep the ``pixels`` pixels (given at 32x32, scaled by (size/32)^2)
    whose removal would raise the neuron loss most (:func:`_saliency`); re-optimise their values
    in [0, 1] with all other pixels untouched. The authors' 32x32 file replaces 9 pixels on the
    bottom row. Inserted with ``mode: replace`` on those pixels, all three channels.
    """
    opts = merge_options(options, "l0_inv", L0_INV_DEFAULTS)
    settings = _Settings.parse(opts, "l0_inv")
    pixels32 = int_option(opts, "pixels", "l0_inv", 1)
    if opts["region"] not in REGIONS:
        raise ConfigError(
            f"triggers.l0_inv.region must be one of {REGIONS}, got {opts['region']!r}"
        )
    allowed = _region(height, width, opts["region"])
    pixels = max(1, int(round(pixels32 * height * width / (32 * 32))))
    if pixels > int(allowed.sum()):
        raise ConfigError(
            f"triggers.l0_inv: {pixels} pixels do not fit the {opts['region']} region "
            f"({int(allowed.sum())} pixels at {height}x{width})"
        )
    problem = _problem("l0_inv", height, width, settings, context)
    dense_steps = max(1, settings.steps // 2)
    refine_steps = max(1, settings.steps - dense_steps)
    with FrozenModel(problem.model):
        region = _plane(allowed, problem.device)
        neurons, selection = select_neurons(problem, _replace(region), settings.neurons)
        pattern = problem.rand(1, 3, height, width)
        start = pattern.clone()
        dense_losses = _optimise(
            problem,
            _replace(region),
            pattern,
            lambda p: p.clamp_(0.0, 1.0),
            neurons,
            settings,
            dense_steps,
        )
        _, loss_dense = _evaluate(problem, _replace(region), pattern, neurons, settings.target)
        score = _saliency(problem, pattern, region, neurons, settings.target).cpu()
        score = torch.where(torch.from_numpy(allowed), score, torch.full_like(score, -math.inf))
        flat = np.argsort(-score.flatten().numpy(), kind="stable")[:pixels]
        kept = np.zeros(height * width, dtype=bool)
        kept[flat] = True
        kept = kept.reshape(height, width)
        insert = _replace(_plane(kept, problem.device))
        activation_clean, loss_clean = _evaluate(problem, insert, None, neurons, settings.target)
        activation_initial, loss_initial = _evaluate(
            problem, insert, start, neurons, settings.target
        )
        activation_kept, loss_kept = _evaluate(problem, insert, pattern, neurons, settings.target)
        refine_losses = _optimise(
            problem,
            insert,
            pattern,
            lambda p: p.clamp_(0.0, 1.0),
            neurons,
            settings,
            refine_steps,
        )
        activation_final, loss_final = _evaluate(problem, insert, pattern, neurons, settings.target)
    mask3 = np.repeat(kept[..., None], 3, axis=2).astype(np.float32)
    rows, cols = np.nonzero(kept)
    meta = {
        **_neuron_meta(problem, neurons),
        "selection": selection,
        "region": opts["region"],
        "pixels": pixels,
        "pixel_rows_cols": [[int(r), int(c)] for r, c in zip(rows, cols, strict=True)],
        "target_activation": settings.target,
        "activation_clean": activation_clean,
        "activation_initial": activation_initial,
        "activation_pruned": activation_kept,
        "activation_final": activation_final,
        "loss_clean": round(loss_clean, 6),
        "loss_initial": round(loss_initial, 6),
        "loss_dense": round(loss_dense, 6),
        "loss_pruned": round(loss_kept, 6),
        "loss_final": round(loss_final, 6),
        "loss_history": _history(dense_losses + refine_losses),
        "steps": [dense_steps, refine_steps],
        "lr": settings.lr,
        "samples": int(problem.images.shape[0]),
        "batch_size": problem.batch_size,
        "seed": int(context.seed),
    }
    return Trigger(
        name="l0_inv",
        pattern=to_hwc(pattern) * mask3,
        mask=mask3,
        mode="replace",
        target_label=settings.target_label,
        meta=meta,
    )
