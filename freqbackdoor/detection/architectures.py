"""The backdoor-data detectors of Tables 5, 6 and 7: binary classifiers, clean vs. triggered.

A detector reads a float ``N x 3 x H x W`` tensor (a DCT spectrum, or pixels for the comparison
with the spatial domain) and returns two logits, trained with cross-entropy (the paper's final
``Dense (2)``). The registry names are the rows of Table 5, the model ablation on CIFAR-10:

=================  ==========  =================================================================
name               parameters  layout (32 x 32 x 3 input)
=================  ==========  =================================================================
``linear``              6,146  Flatten (3072) -> Dense (2); Table 6 at 224 px: 301,058
``mlp_128_hidden``    393,602  Flatten -> Dense (128) -> ELU -> Dense (2)
``cnn3_kmax32``        10,214  stem 3, conv 8, conv 16, MP, conv 32, MP -> Flatten (2048)
``cnn3_kmax64``        31,862  stem 3, conv 16, conv 32, MP, conv 64, MP -> Flatten (4096)
``cnn3_kmax128``      109,718  stem 3, conv 32, conv 64, MP, conv 128, MP -> Flatten (8192)
``cnn4_kmax128``      245,014  stem 3, conv 32, conv 64, MP, conv 128, MP, conv 128, MP
``cnn5_kmax128``      278,870  stem 3, conv 32, conv 64, MP, conv 64, MP, conv 128, MP,
                               conv 128, MP -> Flatten (512)
``cnn6_kmax128``      292,002  Table 7: conv 32, 32, MP, 64, 64, MP, 128, 128, MP -> 2048
=================  ==========  =================================================================

(conv = 3x3 'same' convolution + ELU, MP = 2x2 max-pooling; all counts are PyTorch's trainable
parameters and equal the published ones, :data:`PAPER_PARAMETERS`.)

How each layout was chosen
--------------------------
``linear``, ``mlp_128_hidden`` and ``cnn6_kmax128`` follow from the paper: Table 6 gives the
linear model, Table 5's name the 128-unit hidden layer, and Table 7 the six-layer CNN. Table 7
leaves out activations and normalisation; the authors' published Keras notebook puts
``Conv -> ELU -> BatchNorm`` and a dropout of 0.2, 0.3, 0.4 after the three poolings, and its
BatchNorm (2 trainable parameters per channel) is what makes the count 292,002 rather than
291,106. The hidden layer's activation is not given anywhere; ELU is used as in the CNNs.

The other CNN rows are described only as "N-layer CNN, kmax = K". Their layouts were found by an
exhaustive search (a throwaway script, not part of the package) over the cnn6 family (3x3 'same'
convolutions with non-decreasing widths up to K, 2x2 max-pooling after any subset of them, with or
without BatchNorm, flatten or global pooling, optional hidden dense layer, other kernel sizes and
'valid' padding). No layout in that space with exactly N convolutions gives any of the five counts.
But all five are, to the parameter, the plain ``N``-convolution layout whose widths grow by doubling
up to K (``K/4, K/2, K`` for three layers; ``32, 64, 128, 128`` and ``32, 64, 64, 128, 128`` for
four and five) *without* BatchNorm, plus 84 parameters - the same 84 in every row, whatever K or N.
A residual that follows neither the widths nor the depth points to a layer that only sees the three
input channels, and a 3x3 convolution from 3 to 3 channels with bias has exactly 3 * 3 * 3 * 3 + 3 =
84. So these detectors start with such a channel-preserving "stem" convolution and count the N
widening convolutions after it, as the row names do; with it every published count is reproduced
exactly. Without the stem each would be 84 short (10,130; 31,778; 109,634; 244,930; 278,786). Where
the 2x2 poolings sit is fixed by the flatten size the count requires (8 x 8 for three layers, 4 x 4
for four, 2 x 2 for five) and, among the equivalent placements, by cnn6's pattern: the first
widening convolution runs at full resolution and every later one is followed by a pooling. No
dropout is used in them (the paper describes none; it would not change the counts).

The flatten size, and so the dense layer, follows the input size: the CNNs take any square input
whose side divides by 8 (and, for ``cnn5_kmax128``, is at least 16), the linear and MLP detectors
any size. :func:`detector_table` derives Tables 6 and 7 from these definitions through
:func:`freqbackdoor.models.classifier.layer_table`, so the published tables and the trained detectors
cannot drift apart.

Importing this module registers every detector in :data:`freqbackdoor.models.classifier.MODELS`, so
checkpoints rebuild through :func:`freqbackdoor.models.classifier.build_model` like the target model does.
"""

from __future__ import annotations

import pandas as pd
import torch
from torch import nn

from ..errors import ConfigError
from ..models.classifier import MODELS, build_model, count_parameters, keras_batchnorm, layer_table

BINARY_CLASSES = 2
"""Detectors separate two classes: clean (0) and triggered (1)."""

# Table 5 of the paper: trainable parameters for a 32 x 32 x 3 input and 2 outputs.
PAPER_PARAMETERS: dict[str, int] = {
    "linear": 6_146,
    "mlp_128_hidden": 393_602,
    "cnn3_kmax32": 10_214,
    "cnn3_kmax64": 31_862,
    "cnn3_kmax128": 109_718,
    "cnn4_kmax128": 245_014,
    "cnn5_kmax128": 278_870,
    "cnn6_kmax128": 292_002,
}

POOL = "M"
"""Marks a 2x2 max-pooling in a convolutional layout; integers are 3x3 convolution widths."""


class _BinaryDetector(nn.Module):
    """What every detector shares: the registry attributes and the binary-output check.

    ``features`` maps an input to its flattened penultimate activations and ``classifier`` those
    to the two logits, as in :class:`freqbackdoor.models.classifier.ReferenceCNN`, so code that reads
    internal neurons works on either.
    """

    architecture = ""

    def __init__(self, num_classes: int, input_size: int) -> None:
        super().__init__()
        if num_classes != BINARY_CLASSES:
            raise ValueError(
                f"detectors separate clean from triggered inputs and have 2 outputs, "
                f"got num_classes={num_classes}"
            )
        if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < 1:
            raise ValueError(f"input size must be a positive integer, got {input_size!r}")
        self.num_classes = num_classes
        self.input_size = input_size

    @property
    def options(self) -> dict:
        """Constructor options beyond classes and size (none), recorded in checkpoint sidecars."""
        return {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class LinearDetector(_BinaryDetector):
    """Flatten -> Dense (2): Table 6's detector for large inputs, Table 5's first row.

    6,146 parameters at 32 x 32 x 3 and 301,058 at Table 6's 224 x 224 x 3 (150,528 inputs).
    """

    architecture = "linear"

    def __init__(self, num_classes: int = 2, input_size: int = 32) -> None:
        super().__init__(num_classes, input_size)
        self.features = nn.Flatten()
        self.classifier = nn.Linear(3 * input_size * input_size, num_classes)


class Mlp128HiddenDetector(_BinaryDetector):
    """Flatten -> Dense (128) -> ELU -> Dense (2): Table 5's "128-cell-hidden", 393,602 params.

    The paper does not name the hidden activation; ELU matches the CNN detectors.
    """

    architecture = "mlp_128_hidden"
    HIDDEN_UNITS = 128

    def __init__(self, num_classes: int = 2, input_size: int = 32) -> None:
        super().__init__(num_classes, input_size)
        self.features = nn.Sequential(
            nn.Flatten(),
            nn.Linear(3 * input_size * input_size, self.HIDDEN_UNITS),
            nn.ELU(),
        )
        self.classifier = nn.Linear(self.HIDDEN_UNITS, num_classes)


class _ConvDetector(_BinaryDetector):
    """A stack of 3x3 'same' convolutions (each followed by ELU) and 2x2 max-poolings.

    Subclasses set ``LAYOUT`` (convolution widths and :data:`POOL` marks, in order),
    ``STEM`` (a 3 -> 3 channel convolution before the layout, the 84 parameters that Table 5's
    three- to five-layer rows have beyond their widening convolutions; see the module docstring),
    ``BATCH_NORM`` (a BatchNorm2d after each convolution's ELU, as in the authors' code) and
    ``DROPOUT`` (one rate per pooling, applied right after it, or empty for none). The flattened
    feature map feeds one dense layer to the two logits.
    """

    LAYOUT: tuple[int | str, ...] = ()
    STEM = False
    BATCH_NORM = False
    DROPOUT: tuple[float, ...] = ()

    def __init__(self, num_classes: int = 2, input_size: int = 32) -> None:
        super().__init__(num_classes, input_size)
        pools = self.LAYOUT.count(POOL)
        if input_size % 8:
            raise ValueError(
                f"{self.architecture} takes a square input whose side divides by 8, "
                f"got {input_size}"
            )
        if input_size < 2**pools:
            raise ValueError(
                f"{self.architecture} pools {pools} times and needs an input side of at least "
                f"{2**pools}, got {input_size}"
            )
        if self.DROPOUT and len(self.DROPOUT) != pools:
            raise ValueError(f"{self.architecture}: one dropout rate per pooling is needed")
        layers: list[nn.Module] = []
        in_channels, side, pool_index = 3, input_size, 0
        steps = ((3,) if self.STEM else ()) + self.LAYOUT
        for step in steps:
            if step == POOL:
                layers.append(nn.MaxPool2d(2))
                side //= 2
                if self.DROPOUT:
                    layers.append(nn.Dropout(self.DROPOUT[pool_index]))
                pool_index += 1
                continue
            layers += [nn.Conv2d(in_channels, step, 3, padding=1), nn.ELU()]
            if self.BATCH_NORM:
                layers.append(keras_batchnorm(step))
            in_channels = step
        layers.append(nn.Flatten())
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(in_channels * side * side, num_classes)

    @classmethod
    def layout_text(cls) -> str:
        """The layout in words, e.g. ``conv 32-32, MP, conv 64-64, MP (ELU, BatchNorm)``."""
        groups: list[str] = []
        widths: list[str] = []
        for step in cls.LAYOUT:
            if step == POOL:
                if widths:
                    groups.append("conv " + "-".join(widths))
                    widths = []
                groups.append("MP")
            else:
                widths.append(str(step))
        if widths:
            groups.append("conv " + "-".join(widths))
        if cls.STEM:
            groups.insert(0, "stem conv 3")
        extras = ["ELU", "BatchNorm" if cls.BATCH_NORM else "no BatchNorm"]
        if cls.DROPOUT:
            extras.append("dropout " + "/".join(f"{rate:g}" for rate in cls.DROPOUT))
        return f"{', '.join(groups)} ({', '.join(extras)}) -> Flatten -> Dense (2)"


class Cnn3Kmax32Detector(_ConvDetector):
    """Table 5's "3-layer CNN, kmax = 32": 10,214 parameters, as published.

    Stem conv 3 -> 3, then conv 8, conv 16, MP, conv 32, MP (ELU, no BatchNorm), flatten
    8 x 8 x 32 = 2048, Dense (2). Without the 84-parameter stem it would have 10,130.
    """

    architecture = "cnn3_kmax32"
    STEM = True
    LAYOUT = (8, 16, POOL, 32, POOL)


class Cnn3Kmax64Detector(_ConvDetector):
    """Table 5's "3-layer CNN, kmax = 64": 31,862 parameters, as published.

    Stem conv 3 -> 3, then conv 16, conv 32, MP, conv 64, MP (ELU, no BatchNorm), flatten
    8 x 8 x 64 = 4096, Dense (2). Without the 84-parameter stem it would have 31,778.
    """

    architecture = "cnn3_kmax64"
    STEM = True
    LAYOUT = (16, 32, POOL, 64, POOL)


class Cnn3Kmax128Detector(_ConvDetector):
    """Table 5's "3-layer CNN, kmax = 128": 109,718 parameters, as published.

    Stem conv 3 -> 3, then conv 32, conv 64, MP, conv 128, MP (ELU, no BatchNorm), flatten
    8 x 8 x 128 = 8192, Dense (2). Without the 84-parameter stem it would have 109,634.
    """

    architecture = "cnn3_kmax128"
    STEM = True
    LAYOUT = (32, 64, POOL, 128, POOL)


class Cnn4Kmax128Detector(_ConvDetector):
    """Table 5's "4-layer CNN, kmax = 128": 245,014 parameters, as published.

    Stem conv 3 -> 3, then conv 32, conv 64, MP, conv 128, MP, conv 128, MP (ELU, no
    BatchNorm), flatten 4 x 4 x 128 = 2048, Dense (2). Without the stem: 244,930.
    """

    architecture = "cnn4_kmax128"
    STEM = True
    LAYOUT = (32, 64, POOL, 128, POOL, 128, POOL)


class Cnn5Kmax128Detector(_ConvDetector):
    """Table 5's "5-layer CNN, kmax = 128": 278,870 parameters, as published.

    Stem conv 3 -> 3, then conv 32, conv 64, MP, conv 64, MP, conv 128, MP, conv 128, MP (ELU,
    no BatchNorm), flatten 2 x 2 x 128 = 512, Dense (2). Four poolings, so the input side must
    be at least 16. Without the stem: 278,786.
    """

    architecture = "cnn5_kmax128"
    STEM = True
    LAYOUT = (32, 64, POOL, 64, POOL, 128, POOL, 128, POOL)


class Cnn6Kmax128Detector(_ConvDetector):
    """Table 7's six-layer CNN detector for small inputs: 292,002 parameters, as published.

    conv 32, conv 32, MP, conv 64, conv 64, MP, conv 128, conv 128, MP, flatten 4 x 4 x 128 =
    2048, Dense (2); each convolution is followed by ELU and BatchNorm and each pooling by a
    dropout of 0.2, 0.3, 0.4, as in the authors' code.
    """

    architecture = "cnn6_kmax128"
    LAYOUT = (32, 32, POOL, 64, 64, POOL, 128, 128, POOL)
    BATCH_NORM = True
    DROPOUT = (0.2, 0.3, 0.4)


DETECTORS: dict[str, type[nn.Module]] = {
    detector.architecture: detector
    for detector in (
        LinearDetector,
        Mlp128HiddenDetector,
        Cnn3Kmax32Detector,
        Cnn3Kmax64Detector,
        Cnn3Kmax128Detector,
        Cnn4Kmax128Detector,
        Cnn5Kmax128Detector,
        Cnn6Kmax128Detector,
    )
}
"""Detector classes by registry name, in Table 5's order."""

MODELS.update(DETECTORS)


def build_detector(name: str, input_size: int = 32, seed: int | None = None) -> nn.Module:
    """A fresh detector ``name`` (see :data:`DETECTORS`) for ``input_size`` px square inputs.

    With ``seed`` the initial weights come from a private, seeded random stream (the global one
    is left untouched), so detectors that share a seed start from identical weights. Raises
    :class:`ConfigError` for an unknown name or an input size the architecture cannot take.
    """
    if name not in DETECTORS:
        raise ConfigError(f"unknown detector architecture {name!r}; known: {', '.join(DETECTORS)}")
    return build_model(name, BINARY_CLASSES, input_size, seed=seed)


def _layout_text(name: str) -> str:
    """One line describing the layers of detector ``name``."""
    detector = DETECTORS[name]
    if issubclass(detector, _ConvDetector):
        return detector.layout_text()
    if detector is Mlp128HiddenDetector:
        return "Flatten -> Dense (128) -> ELU -> Dense (2)"
    return "Flatten -> Dense (2)"


def architecture_summary(input_size: int = 32) -> pd.DataFrame:
    """One row per detector, in Table 5's order: our parameter count next to the paper's.

    Columns: ``architecture``, ``parameters`` (ours, for ``input_size``), ``paper_parameters``
    (Table 5's count, which is for 32 x 32 x 3 inputs, so missing for any other size) and
    ``layout``.
    """
    rows = []
    for name in DETECTORS:
        model = build_detector(name, input_size, seed=0)
        rows.append(
            {
                "architecture": name,
                "parameters": count_parameters(model),
                "paper_parameters": PAPER_PARAMETERS[name] if input_size == 32 else pd.NA,
                "layout": _layout_text(name),
            }
        )
    table = pd.DataFrame(rows, columns=["architecture", "parameters", "paper_parameters", "layout"])
    table["paper_parameters"] = table["paper_parameters"].astype("Int64")
    return table


# Layers the paper's Tables 6 and 7 list; the others (activations, BatchNorm, Dropout) are left
# out of the rows, and their parameters are added to the listed layer before them.
_LISTED_LAYERS = ("Conv2d", "Max-Pooling", "Flatten", "Dense")


def detector_table(name: str, input_size: int = 32) -> pd.DataFrame:
    """Tables 6/7 for detector ``name``: the input and each listed layer with its output shape.

    Rows are "Input", "Conv2d 3x3", "Max-Pooling 2x2", "Flatten" and "Dense", with output shapes
    as the paper writes them (``32 x 32 x 32``, height x width x channels; ``2048``; ``2``),
    traced by :func:`freqbackdoor.models.classifier.layer_table` from the definition itself. A BatchNorm's
    parameters are counted in the row of the convolution it follows, so the column sums to the
    model's trainable parameters. Columns: ``layer``, ``output_shape``, ``parameters``,
    ``module`` (the listed layer's name in the state dict).
    """
    model = build_detector(name, input_size, seed=0)
    rows = [
        {
            "layer": "Input",
            "output_shape": f"{input_size} x {input_size} x 3",
            "parameters": 0,
            "module": "",
        }
    ]
    for layer in layer_table(model, input_size).to_dict("records"):
        if layer["layer"].startswith(_LISTED_LAYERS):
            rows.append(layer)
        else:
            rows[-1]["parameters"] += layer["parameters"]
    return pd.DataFrame(rows, columns=["layer", "output_shape", "parameters", "module"])


def detector_table_markdown(name: str, input_size: int, title: str) -> str:
    """Tables 6/7 as Markdown: ``title``, the layer table, a note on what it omits, the total."""
    table = detector_table(name, input_size)
    body = table[["layer", "output_shape", "parameters"]].rename(
        columns={"layer": "Layer", "output_shape": "Output shape", "parameters": "Parameters"}
    )
    model = DETECTORS[name]
    has_batch_norm = issubclass(model, _ConvDetector) and model.BATCH_NORM
    note = (
        "Output shapes are height x width x channels. As in the paper, ELU activations, "
        "BatchNorm and Dropout layers are not listed; the Parameters column and the total "
        "include each BatchNorm's 2 trainable parameters per channel, counted in the row of the "
        "convolution it follows."
        if has_batch_norm
        else "Output shapes are height x width x channels; as in the paper, activations (if any) "
        "are not listed."
    )
    lines = [
        title,
        "",
        body.to_markdown(index=False),
        "",
        note,
        "",
        f"Total parameters: {int(table['parameters'].sum()):,}",
        "",
    ]
    return "\n".join(lines)
