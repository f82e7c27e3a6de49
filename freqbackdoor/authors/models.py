"""The authors' trained CIFAR-10 models (Keras 2.2.4 HDF5 files) as this project's checkpoints.

Zeng et al. published three trained models with their code (repository
YiZeng623/frequency-backdoor, MIT licence), listed in :data:`AUTHORS_MODELS`:

- ``authors_cifar10``: the Section 4 cnn6 detector trained on CIFAR-10 (``6_CNN_CIF1R10.h5py``);
- ``authors_cifar10_tuned``: the same detector after the smooth-trigger upgrade of Section 5.4
  (``Tuned_CIFAR10.h5py``);
- ``authors_cifar10_classifier``: the Table 8 classifier their smooth trigger was searched on
  (``cifar10_model.h5``).

The project never redistributes them: :func:`authors_model_file` takes a copy placed by hand, or
downloads one from the authors' repository, and accepts it only if its sha256 is the published
one. :func:`convert_keras_model` then reads the file with h5py (no Keras, nothing in the file is
executed) and maps every layer explicitly onto the project's network of the same layout:
:class:`freqbackdoor.detection.detector.Detector` around ``cnn6_kmax128`` for the detectors,
:class:`freqbackdoor.models.classifier.ReferenceCNN` for the classifier. The file's layer list is checked
against the expected one (layer kinds from the file's ``model_config``, activations, dropout
rates, BatchNorm epsilon, every weight's shape); anything else is refused with an error naming
the layer.

What the conversion does to the numbers:

- convolution kernels are stored (kh, kw, in, out) and become PyTorch's (out, in, kh, kw); both
  frameworks cross-correlate and pad a 3x3 'same' convolution by one pixel on every side;
- BatchNorm keeps gamma, beta and the moving mean and variance; Keras' epsilon 1e-3 is the
  project's Keras BatchNorm epsilon (:func:`freqbackdoor.models.classifier.keras_batchnorm`);
- the dense layer reads a feature map that Keras flattens in (H, W, C) order and PyTorch in
  (C, H, W) order, so its input rows are permuted;
- the final softmax is dropped: the project's models return logits, and the softmax of those is
  the file's output (index 1 of a detector = manipulated).

The authors fed their detector the raw orthonormal 2D DCT of the uint8 image (0..255 values per
channel, H x W x C) with no scaling, so a converted detector's standardisation buffers are mean 0
and standard deviation 1: it reads the project's DCT cache as it is. The classifier reads images
as floats in [0, 1], as this project's does. The authors flagged an image when the softmax's
"manipulated" output won, i.e. at a threshold of 0.5 (:data:`AUTHORS_THRESHOLD`), recorded in
the sidecar.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..detection.detector import Detector
from ..errors import ConfigError, DataError
from ..io import download_verified, sha256_file
from ..models.checkpoints import save_checkpoint
from ..models.classifier import BATCHNORM_EPS, ReferenceCNN
from .triggers import OFFICIAL_REPO_URL

log = logging.getLogger(__name__)

AUTHORS_THRESHOLD = 0.5
"""The authors' decision rule: the larger of the two softmax outputs, a 0.5 threshold."""
AUTHORS_DATASET = "authors_cifar10"
"""The ``dataset`` a converted model's sidecar names: CIFAR-10 as the authors trained on it."""
FOLDER = "authors_models"
"""The folder under the config's ``raw_dir`` where the files are placed or downloaded."""


@dataclasses.dataclass(frozen=True)
class AuthorsModel:
    """One published model file and the project network it converts into."""

    name: str
    file: str
    repo_path: str
    sha256: str
    kind: str  # "detector" or "classifier"
    num_classes: int
    activation: str  # the Keras activation after every convolution
    dropout: tuple[float, ...]  # after each pooling
    kernel_l2: float  # the file's L2 penalty on convolution kernels (recorded, not used)
    description: str

    @property
    def url(self) -> str:
        return OFFICIAL_REPO_URL + self.repo_path

    @property
    def cli_name(self) -> str:
        """The name ``freqbackdoor screen --detector`` takes (hyphens)."""
        return self.name.replace("_", "-")


AUTHORS_MODELS: dict[str, AuthorsModel] = {
    model.name: model
    for model in (
        AuthorsModel(
            name="authors_cifar10",
            file="6_CNN_CIF1R10.h5py",
            repo_path="Sec4_Frequency_Detection/detector/6_CNN_CIF1R10.h5py",
            sha256="3abdc21878696ab0f4d3c4c0f78e9e92596f91749d1504ecc8150fe9364b8b28",
            kind="detector",
            num_classes=2,
            activation="elu",
            dropout=(0.2, 0.3, 0.4),
            kernel_l2=1e-4,
            description="the authors' Section 4 cnn6 DCT detector, trained on CIFAR-10",
        ),
        AuthorsModel(
            name="authors_cifar10_tuned",
            file="Tuned_CIFAR10.h5py",
            repo_path="Sec4_Frequency_Detection/detector/Tuned_CIFAR10.h5py",
            sha256="0b253fe9974e34db6a10f29dc66735091fee88550022d40f139f1da9c23860da",
            kind="detector",
            num_classes=2,
            activation="elu",
            dropout=(0.2, 0.3, 0.4),
            kernel_l2=1e-4,
            description="the authors' cnn6 DCT detector after their smooth-trigger upgrade "
            "(Section 5.4)",
        ),
        AuthorsModel(
            name="authors_cifar10_classifier",
            file="cifar10_model.h5",
            repo_path="Sec5_Smooth_Trigger/model/cifar10_model.h5",
            sha256="2f6ed4acd2dfa7c04be7ea20dabf967fa0df381e558aab9d437728692b8348ce",
            kind="classifier",
            num_classes=10,
            activation="relu",
            dropout=(0.3, 0.4, 0.5),
            kernel_l2=1e-3,
            description="the authors' Table 8 classifier on CIFAR-10, the model their smooth "
            "trigger was searched on",
        ),
    )
}
AUTHORS_DETECTORS = tuple(n for n, m in AUTHORS_MODELS.items() if m.kind == "detector")
INPUT_SIZE = 32
CONVOLUTIONS = (32, 32, 64, 64, 128, 128)
BATCHNORM_WEIGHTS = ("gamma", "beta", "moving_mean", "moving_variance")  # Keras' names


def authors_model(name: str) -> AuthorsModel:
    """The :data:`AUTHORS_MODELS` entry called ``name`` (underscores or hyphens)."""
    key = name.replace("-", "_")
    if key not in AUTHORS_MODELS:
        known = ", ".join(m.cli_name for m in AUTHORS_MODELS.values())
        raise ConfigError(f"no published model {name!r}; the authors published: {known}")
    return AUTHORS_MODELS[key]


# --------------------------------------------------------------------------- the files


def placed_file(name: str, folder: str | os.PathLike) -> Path | None:
    """The verified copy of model ``name`` in ``folder``, or None when there is none.

    A file with the right name but another sha256 raises ``DataError``: a truncated download
    or another model must not be used silently, nor silently ignored.
    """
    spec = authors_model(name)
    path = Path(folder) / spec.file
    if not path.is_file():
        return None
    actual = sha256_file(path)
    if actual != spec.sha256:
        raise DataError(
            f"{path}: sha256 {actual} is not the published {spec.sha256} of {spec.file} "
            f"({spec.url}); replace it with the authors' file or remove it"
        )
    return path


def authors_model_file(
    name: str, folder: str | os.PathLike, download: bool = True, base_url: str | None = None
) -> Path:
    """The published file of model ``name``: a verified copy in ``folder``, else downloaded.

    ``download`` False turns a missing copy into a ``DataError`` that says where to put it.
    ``base_url`` names a mirror holding the files side by side (``file://`` works).
    """
    spec = authors_model(name)
    path = placed_file(name, folder)
    if path is not None:
        return path
    target = Path(folder) / spec.file
    if not download:
        raise DataError(
            f"{target}: {spec.description} is not there; download {spec.url} (sha256 "
            f"{spec.sha256}) and place it there"
        )
    url = spec.url if base_url is None else base_url.rstrip("/") + "/" + spec.file
    log.info("downloading %s", url)
    download_verified(url, target, spec.sha256)
    return target


# --------------------------------------------------------------------------- reading HDF5


@dataclasses.dataclass
class KerasLayer:
    """One layer of a Keras model file: its name, class, config and weights (NumPy)."""

    name: str
    kind: str  # the Keras class name
    config: dict[str, Any]
    weights: dict[str, np.ndarray]  # by suffix: "kernel", "bias", "gamma", ...


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def read_keras_layers(path: str | os.PathLike) -> list[KerasLayer]:
    """The layers of a Keras 2 HDF5 model file, in order, with their config and weights.

    Weights are read as NumPy arrays (h5py; nothing in the file is executed). A file that is
    not HDF5, or lacks Keras' ``model_config`` and ``model_weights``, raises ``DataError``.
    """
    import h5py  # only converting the authors' files needs it

    path = Path(path)
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise DataError(f"{path}: not a readable HDF5 file ({exc})") from exc
    with handle:
        if "model_config" not in handle.attrs or "model_weights" not in handle:
            raise DataError(f"{path}: not a Keras model file (no model_config / model_weights)")
        try:
            config = json.loads(_text(handle.attrs["model_config"]))
            described = config["config"]
            described = described["layers"] if isinstance(described, dict) else described
            kinds = {d["config"]["name"]: (d["class_name"], d["config"]) for d in described}
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{path}: unreadable model_config ({exc})") from exc
        group = handle["model_weights"]
        layers = []
        for raw_name in group.attrs.get("layer_names", []):
            name = _text(raw_name)
            if name not in kinds:
                raise DataError(f"{path}: layer {name} has weights but no model_config entry")
            weights = {}
            try:
                for weight_name in group[name].attrs.get("weight_names", []):
                    weight_name = _text(weight_name)
                    suffix = weight_name.rsplit("/", 1)[-1].split(":", 1)[0]
                    weights[suffix] = np.asarray(group[name][weight_name], dtype=np.float32)
            except (KeyError, OSError) as exc:
                raise DataError(f"{path}: layer {name}: unreadable weights ({exc})") from exc
            kind, layer_config = kinds[name]
            layers.append(KerasLayer(name, kind, layer_config, weights))
    return layers


def expected_layers(spec: AuthorsModel) -> list[tuple[str, dict[str, Any]]]:
    """The Keras layer kinds (and the settings checked on them) a file of ``spec`` must list."""
    layers: list[tuple[str, dict[str, Any]]] = []
    in_channels = 3
    for i, channels in enumerate(CONVOLUTIONS):
        layers += [
            ("Conv2D", {"kernel": (3, 3, in_channels, channels), "bias": (channels,)}),
            ("Activation", {"activation": spec.activation}),
            ("BatchNormalization", {w: (channels,) for w in BATCHNORM_WEIGHTS}),
        ]
        if i % 2 == 1:
            layers += [("MaxPooling2D", {}), ("Dropout", {"rate": spec.dropout[i // 2]})]
        in_channels = channels
    side = INPUT_SIZE // 8
    flat = CONVOLUTIONS[-1] * side * side
    layers += [
        ("Flatten", {}),
        ("Dense", {"kernel": (flat, spec.num_classes), "bias": (spec.num_classes,)}),
    ]
    return layers


def check_layers(path: str | os.PathLike, layers: list[KerasLayer], spec: AuthorsModel) -> None:
    """``DataError`` naming the first layer of ``layers`` that is not what ``spec`` expects."""
    expected = expected_layers(spec)
    for index, (kind, wanted) in enumerate(expected):
        if index >= len(layers):
            raise DataError(
                f"{path}: ends after {len(layers)} layers; expected layer {index + 1} to be a "
                f"{kind} (is the file truncated?)"
            )
        layer = layers[index]
        where = f"{path}: layer {layer.name} (number {index + 1})"
        if layer.kind != kind:
            raise DataError(f"{where} is a {layer.kind}, expected a {kind} ({spec.file}'s layout)")
        if kind == "Activation" and layer.config.get("activation") != wanted["activation"]:
            raise DataError(
                f"{where}: activation {layer.config.get('activation')!r}, expected "
                f"{wanted['activation']!r}"
            )
        if kind == "Dropout" and not np.isclose(layer.config.get("rate", -1), wanted["rate"]):
            raise DataError(
                f"{where}: dropout {layer.config.get('rate')}, expected {wanted['rate']}"
            )
        if kind == "BatchNormalization" and not np.isclose(
            layer.config.get("epsilon", -1), BATCHNORM_EPS
        ):
            raise DataError(
                f"{where}: epsilon {layer.config.get('epsilon')}, expected {BATCHNORM_EPS}"
            )
        shapes = {k: v for k, v in wanted.items() if isinstance(v, tuple)}
        if set(layer.weights) != set(shapes):
            raise DataError(f"{where}: weights {sorted(layer.weights)}, expected {sorted(shapes)}")
        for weight, shape in shapes.items():
            if layer.weights[weight].shape != shape:
                raise DataError(
                    f"{where}: {weight} has shape {layer.weights[weight].shape}, expected {shape}"
                )
    if len(layers) > len(expected):
        raise DataError(
            f"{path}: layer {layers[len(expected)].name} follows the final Dense layer; "
            f"{spec.file} has {len(expected)} layers"
        )


# --------------------------------------------------------------------------- converting


def _target_model(spec: AuthorsModel) -> tuple[nn.Module, nn.Module, nn.Linear]:
    """The project network for ``spec``, its feature stack and its dense layer."""
    if spec.kind == "detector":
        model = Detector(num_classes=2, input_size=INPUT_SIZE, body="cnn6_kmax128", domain="dct")
        return model, model.body.features, model.body.classifier
    model = ReferenceCNN(spec.num_classes, INPUT_SIZE)
    return model, model.features, model.classifier


def _modules(stack: nn.Module, kind: type) -> Iterator[nn.Module]:
    return (m for m in stack.modules() if isinstance(m, kind))


def convert_keras_model(path: str | os.PathLike, name: str) -> nn.Module:
    """The published model ``name`` read from the Keras file ``path``, as a project network.

    Every layer is checked (:func:`check_layers`) and mapped explicitly (module docstring); the
    model comes back in eval mode on the CPU. A converted detector's standardisation is the
    identity (mean 0, std 1): it reads raw DCT coefficients, as the authors fed it.
    """
    spec = authors_model(name)
    layers = read_keras_layers(path)
    check_layers(path, layers, spec)
    model, features, dense = _target_model(spec)
    convs = [layer for layer in layers if layer.kind == "Conv2D"]
    norms = [layer for layer in layers if layer.kind == "BatchNormalization"]
    torch_convs = list(_modules(features, nn.Conv2d))
    torch_norms = list(_modules(features, nn.BatchNorm2d))
    if len(torch_convs) != len(convs) or len(torch_norms) != len(norms):
        raise DataError(f"{path}: the project network for {spec.name} has another layer count")
    activation = nn.ELU if spec.activation == "elu" else nn.ReLU
    if sum(1 for _ in _modules(features, activation)) != len(convs):
        raise DataError(f"{path}: the project network for {spec.name} uses another activation")

    def tensor(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))

    with torch.no_grad():
        for keras, conv in zip(convs, torch_convs, strict=True):
            conv.weight.copy_(tensor(keras.weights["kernel"].transpose(3, 2, 0, 1)))
            conv.bias.copy_(tensor(keras.weights["bias"]))
        for keras, norm in zip(norms, torch_norms, strict=True):
            norm.weight.copy_(tensor(keras.weights["gamma"]))
            norm.bias.copy_(tensor(keras.weights["beta"]))
            norm.running_mean.copy_(tensor(keras.weights["moving_mean"]))
            norm.running_var.copy_(tensor(keras.weights["moving_variance"]))
        kernel = layers[-1].weights["kernel"]
        side = INPUT_SIZE // 8
        channels = CONVOLUTIONS[-1]
        # Keras flattens (H, W, C); PyTorch (C, H, W): reorder the dense layer's input rows.
        reordered = kernel.reshape(side, side, channels, spec.num_classes).transpose(3, 2, 0, 1)
        dense.weight.copy_(tensor(reordered.reshape(spec.num_classes, -1)))
        dense.bias.copy_(tensor(layers[-1].weights["bias"]))
    return model.eval()


def authors_meta(name: str) -> dict[str, Any]:
    """What a converted model's sidecar says of it beyond its architecture: what it is
    (``dataset`` :data:`AUTHORS_DATASET`, ``source: authors``), how the authors fed it and
    decided (a detector's ``input_scaling`` and ``threshold``) and its provenance (file, URL,
    sha256, licence)."""
    spec = authors_model(name)
    meta: dict[str, Any] = {
        "dataset": AUTHORS_DATASET,
        "source": "authors",
        "authors_model": spec.name,
        "description": spec.description,
        "provenance": {
            "file": spec.file,
            "url": spec.url,
            "sha256": spec.sha256,
            "licence": "MIT (YiZeng623/frequency-backdoor)",
            "converted_by": "freqbackdoor.authors.models.convert_keras_model",
        },
        "training": {"by": "the authors (Keras 2.2.4)", "kernel_l2": spec.kernel_l2},
    }
    if spec.kind == "detector":
        meta["input_scaling"] = (
            "none: raw orthonormal 2D DCT of the uint8 image (0..255), as the authors fed it"
        )
        meta["threshold"] = AUTHORS_THRESHOLD
    return meta


def import_authors_model(
    name: str,
    source: str | os.PathLike,
    checkpoint: str | os.PathLike,
    sidecar: str | os.PathLike,
) -> dict[str, Any]:
    """Convert the verified file ``source`` of model ``name`` into a project checkpoint with
    its sidecar (:func:`authors_meta`); returns the sidecar."""
    spec = authors_model(name)
    digest = sha256_file(source)
    if digest != spec.sha256:
        raise DataError(
            f"{source}: sha256 {digest} is not the published {spec.sha256} of {spec.file}"
        )
    model = convert_keras_model(source, spec.name)
    return save_checkpoint(model, checkpoint, sidecar, authors_meta(name))


# --------------------------------------------------------------------------- the pipeline

USES = ("none", "placed", "fetch")
DEFAULT_SETTINGS: dict[str, Any] = {"use": "none", "base_url": None, "reference_classifier": []}


def pipeline_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The config's ``authors_models`` block with its defaults (the block may be absent)."""
    return {**DEFAULT_SETTINGS, **(config.get("authors_models") or {})}


def models_in_use(config: dict[str, Any], raw_dir: str | os.PathLike) -> list[str]:
    """The published models a run converts, in :data:`AUTHORS_MODELS` order.

    ``use: none``: none; ``placed``: those whose file is in ``raw_dir/authors_models`` (its
    sha256 is checked by the job that converts it); ``fetch``: all three (missing files are
    downloaded). With ``reference_classifier`` set, the classifier must be among them, and
    each dataset named there must exist and be 32 px; otherwise ``ConfigError`` names the key.
    """
    settings = pipeline_settings(config)
    use = settings["use"]
    if use not in USES:
        raise ConfigError(f"authors_models.use must be one of {', '.join(USES)}, got {use!r}")
    folder = Path(raw_dir) / FOLDER
    if use == "none":
        names: list[str] = []
    elif use == "placed":
        names = [n for n, m in AUTHORS_MODELS.items() if (folder / m.file).is_file()]
    else:
        names = list(AUTHORS_MODELS)
    datasets = config.get("datasets", {})
    for dataset in settings["reference_classifier"]:
        key = f"authors_models.reference_classifier: {dataset!r}"
        if dataset not in datasets:
            raise ConfigError(f"{key} is not a configured dataset ({', '.join(datasets)})")
        if datasets[dataset].get("size") != INPUT_SIZE:
            raise ConfigError(f"{key}: the authors' classifier takes 32 px images")
        if "authors_cifar10_classifier" not in names:
            spec = AUTHORS_MODELS["authors_cifar10_classifier"]
            raise ConfigError(
                f"{key} needs the authors' classifier: set authors_models.use to fetch, or "
                f"place {spec.file} (sha256 {spec.sha256}) in {folder}"
                if use != "none"
                else f"{key} needs authors_models.use: placed or fetch"
            )
    return names
