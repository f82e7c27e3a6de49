"""The reference classifier of Table 8 (the paper's "target model"), as the authors trained it.

Six 3x3 convolutions (32-32-64-64-128-128, 'same' padding) with a 2x2 max-pooling after each
pair, flattened into one dense layer to the classes. Triggers that are optimised against a model
(Trojan, invisible, Algorithm 1) and the poisoned models of Section 5 use it.

Table 8 lists only the convolutions, poolings and the dense layer. The authors' trained model
file (``Sec5_Smooth_Trigger/model/cifar10_model.h5``, Keras) fills in what the table leaves out:
every convolution is followed by ReLU **then** BatchNorm (Keras momentum 0.99 and epsilon 1e-3,
i.e. PyTorch ``momentum=0.01``, ``eps=1e-3``), every pooling by a dropout of 0.3, 0.4 and 0.5,
and the convolution kernels carry an L2 penalty of 1e-3 (a training setting,
:attr:`freqbackdoor.models.training.TrainSettings.kernel_l2`). This is the only layout: a BatchNorm-free
network does not train with the paper's learning rate of 0.05 (docs/deviations.md).

The BatchNorm layers add 2 trainable parameters per channel (896) and 2 running statistics per
channel (896, buffers) to the 307,498 that Table 8 prints; :func:`table8_markdown` keeps the
published count in the table and states the BatchNorm parameters beside it.

Models take float ``N x 3 x H x W`` tensors in [0, 1] (see :func:`images_to_tensor`) and return
logits. ``model.features`` maps an input to its flattened penultimate activations and
``model.classifier`` maps those to logits, so trigger optimisers can read internal neurons.

:func:`build_model` is the registry that checkpoints are rebuilt through (a sidecar names the
architecture), and :func:`layer_table` derives Table 8 from the definition itself, so the
published table and the trained model cannot drift apart.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..errors import ConfigError

CHANNELS = (32, 32, 64, 64, 128, 128)
DROPOUT = (0.3, 0.4, 0.5)  # after each pooling, in the authors' model file
#: Keras' BatchNormalization defaults (momentum 0.99 = PyTorch 0.01, epsilon 1e-3), as trained.
BATCHNORM_MOMENTUM = 0.01
BATCHNORM_EPS = 1e-3


def downsampled_side(input_size: int, downsample: int, multiple: int, why: str) -> int:
    """The side a ``downsample`` average pooling leaves of ``input_size``; ``ValueError`` unless
    ``downsample`` divides the input and the side is a positive multiple of ``multiple``
    (``why``: the layers that need it)."""
    if downsample < 1 or input_size % downsample:
        raise ValueError(
            f"downsample must be a positive divisor of the input size {input_size}, "
            f"got {downsample}"
        )
    side = input_size // downsample
    if side < multiple or side % multiple:
        raise ValueError(
            f"input size (after downsampling by {downsample}) must be divisible by {multiple} "
            f"(a positive multiple of {multiple} for {why}), got {side}"
        )
    return side


def keras_batchnorm(channels: int) -> nn.BatchNorm2d:
    """A ``BatchNorm2d`` with Keras' defaults, as in the authors' classifier and detector."""
    return nn.BatchNorm2d(channels, eps=BATCHNORM_EPS, momentum=BATCHNORM_MOMENTUM)


class ReferenceCNN(nn.Module):
    """Table 8's classifier; any square input whose side (after ``downsample``) divides by 8.

    Conv -> ReLU -> BatchNorm for each convolution, MaxPool -> Dropout after each pair (the
    authors' model file; see the module docstring).

    ``downsample > 1`` puts a ``downsample x downsample`` average pooling in front of the first
    convolution, so a large input (224 px) is area-averaged to a small one (32 px) before the
    Table-8 layers run. Table 8 has no such layer; the option exists because the six full-width
    convolutions cost about 1.5 GFLOP per 224 px image, which a CPU trains at under ten images
    per second. The demo sets it for its 224 px dataset; the paper config does not.
    """

    architecture = "reference_cnn"

    def __init__(self, num_classes: int, input_size: int = 32, downsample: int = 1) -> None:
        super().__init__()
        side = downsampled_side(input_size, downsample, 8, "three 2x2 poolings")
        layers: list[nn.Module] = [nn.AvgPool2d(downsample)] if downsample > 1 else []
        in_channels = 3
        for i, out_channels in enumerate(CHANNELS):
            layers += [
                nn.Conv2d(in_channels, out_channels, 3, padding=1),
                nn.ReLU(inplace=True),
                keras_batchnorm(out_channels),
            ]
            if i % 2 == 1:
                layers += [nn.MaxPool2d(2), nn.Dropout(DROPOUT[i // 2])]
            in_channels = out_channels
        layers.append(nn.Flatten())
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(CHANNELS[-1] * (side // 8) ** 2, num_classes)
        self.num_classes = num_classes
        self.input_size = input_size
        self.downsample = downsample

    @property
    def options(self) -> dict[str, int]:
        """Constructor options beyond classes and size, recorded in checkpoint sidecars."""
        return {"downsample": self.downsample}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def images_to_tensor(images: np.ndarray, device: str | torch.device = "cpu") -> torch.Tensor:
    """uint8 ``N x H x W x 3`` images to a float32 ``N x 3 x H x W`` tensor in [0, 1]."""
    tensor = torch.from_numpy(np.ascontiguousarray(images)).to(device)
    return tensor.permute(0, 3, 1, 2).float().div_(255.0)


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def batchnorm_parameters(model: nn.Module) -> tuple[int, int]:
    """``(trainable, running)``: BatchNorm scale + offset parameters and running statistics."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    trainable = sum(p.numel() for m in norms for p in m.parameters(recurse=False))
    running = sum(
        m.running_mean.numel() + m.running_var.numel() for m in norms if m.running_mean is not None
    )
    return trainable, running


MODELS: dict[str, type[nn.Module]] = {ReferenceCNN.architecture: ReferenceCNN}


def build_model(
    name: str, num_classes: int, input_size: int = 32, seed: int | None = None, **options
) -> nn.Module:
    """A fresh model of architecture ``name`` (see ``MODELS``); ``options`` go to its constructor.

    With ``seed`` the initial weights come from a private, seeded random stream (the global one
    is left untouched), so training runs that share a seed start from identical weights.
    """
    if name not in MODELS:
        raise ConfigError(
            f"unknown model architecture {name!r}; known: {', '.join(sorted(MODELS))}"
        )
    if num_classes < 1:
        raise ConfigError(f"{name}: num_classes must be at least 1, got {num_classes}")
    try:
        if seed is None:
            return MODELS[name](num_classes, input_size, **options)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return MODELS[name](num_classes, input_size, **options)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name}: {exc}") from exc


def _layer_label(module: nn.Module) -> str | None:
    """Table 8's name of a layer, or None for layers the paper leaves out (activations)."""

    def pair(value) -> str:
        a, b = (value, value) if isinstance(value, int) else value
        return f"{a}x{b}"

    if isinstance(module, nn.Conv2d):
        return f"Conv2d {pair(module.kernel_size)}"
    if isinstance(module, nn.MaxPool2d):
        return f"Max-Pooling {pair(module.kernel_size)}"
    if isinstance(module, nn.Flatten):
        return "Flatten"
    if isinstance(module, nn.Linear):
        return "Dense"
    if isinstance(module, nn.ReLU):
        return None
    return type(module).__name__


def _shape_label(shape: torch.Size) -> str:
    """An activation's shape without the batch axis, as ``H x W x C`` (the paper's order)."""
    dims = list(shape[1:])
    if len(dims) == 3:
        channels, height, width = dims
        dims = [height, width, channels]
    return " x ".join(str(d) for d in dims)


def layer_table(model: nn.Module, input_size: int | None = None) -> pd.DataFrame:
    """Table 8 for ``model``: one row per layer with its output shape and parameter count.

    Shapes are measured by a forward pass of one blank ``input_size`` x ``input_size`` image
    with hooks on the leaf modules (in execution order), not restated by hand. ReLU activations
    are omitted; BatchNorm and Dropout rows are kept (labelled by their class name) so callers
    can fold or drop them (:func:`table8`, :func:`freqbackdoor.detection.architectures.detector_table`). Columns: ``layer`` ("Conv2d 3x3", "Max-Pooling 2x2", "Flatten",
    "Dense"), ``output_shape`` ("32 x 32 x 32", H x W x C), ``parameters`` and ``module`` (the
    module's name in the state dict).
    """
    size = input_size if input_size is not None else getattr(model, "input_size", 32)
    names = {module: name for name, module in model.named_modules()}
    rows: list[dict] = []

    def hook(module: nn.Module, _inputs, output: torch.Tensor) -> None:
        label = _layer_label(module)
        if label is not None:
            rows.append(
                {
                    "layer": label,
                    "output_shape": _shape_label(output.shape),
                    "parameters": sum(p.numel() for p in module.parameters(recurse=False)),
                    "module": names[module],
                }
            )

    leaves = [m for m in model.modules() if next(m.children(), None) is None]
    handles = [m.register_forward_hook(hook) for m in leaves]
    was_training = model.training
    try:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, size, size, device=device))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return pd.DataFrame(rows, columns=["layer", "output_shape", "parameters", "module"])


#: The layer kinds Table 8 lists; the others (ReLU, BatchNorm, Dropout) it leaves out.
TABLE8_LAYERS = ("Conv2d", "Max-Pooling", "Flatten", "Dense")


def table8(model: nn.Module, input_size: int | None = None) -> pd.DataFrame:
    """Table 8's rows for ``model``: :func:`layer_table` without the layers the paper omits.

    The BatchNorm parameters are left out with their rows, so the column sums to the
    published 307,498 for CIFAR-10; :func:`table8_markdown` states them beside the total.
    """
    table = layer_table(model, input_size)
    listed = table["layer"].str.startswith(TABLE8_LAYERS)
    return table[listed].reset_index(drop=True)


def table8_markdown(table: pd.DataFrame, num_classes: int, input_size: int) -> str:
    """Table 8 as Markdown: a title line, the layer table and the total parameter count."""
    body = table[["layer", "output_shape", "parameters"]].rename(
        columns={"layer": "Layer", "output_shape": "Output shape", "parameters": "Parameters"}
    )
    total = int(table["parameters"].sum())
    norm_trainable = 2 * sum(CHANNELS)  # gamma and beta per channel
    lines = [
        f"Table 8: the reference classifier (target model) for a {input_size} x {input_size} x 3 "
        f"input and {num_classes} classes; output shapes are height x width x channels. As in "
        "the paper, the layers after each convolution (ReLU, then BatchNorm) and after each "
        "pooling (Dropout 0.3, 0.4, 0.5) are not listed.",
        "",
        body.to_markdown(index=False),
        "",
        f"Total parameters: {total:,} (the listed layers, as Table 8 counts them). The "
        f"BatchNorm layers add {norm_trainable:,} trainable parameters (a scale and an offset "
        f"per channel; {total + norm_trainable:,} trainable in all) and {norm_trainable:,} "
        f"running statistics ({total + 2 * norm_trainable:,} weights in all, as in the "
        "authors' model file).",
        "",
    ]
    return "\n".join(lines)
