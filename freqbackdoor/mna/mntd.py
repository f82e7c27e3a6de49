"""MNTD's recipe for the shadow and target models of Meta Neural Analysis (Section 5.4).

Xu et al.'s code (``Meta-Nerual-Trojan-Detection``, CIFAR-10) trains every shadow and target
model the same way, and this module is that recipe:

* :class:`MNTDCifar10CNN`, their CIFAR-10 network (``model_lib/cifar10_cnn_model.py``): 3x3
  convolutions 32-32 with 'same' padding, a 2x2 max-pooling, convolutions 64-64, a max-pooling,
  dense layers 256 and 256, a dropout of 0.5 after the second, then the classes; ReLU after
  every convolution and hidden dense layer. Registered in :data:`freqbackdoor.models.classifier.MODELS`
  as ``mntd_cifar10`` when this module is imported (:mod:`freqbackdoor.mna.meta` and
  :mod:`freqbackdoor.models.groups` import it).
* :class:`MNTDTraining` (config key ``mna.training``): Adam with learning rate 1e-3, batches of
  100, a fixed number of epochs with the last kept. Shadow models train ``shadow_epochs`` (MNTD:
  100) on the defender's share, target models ``int(shadow_epochs * shadow_share / target_share)``
  on the attacker's (MNTD: ``int(100 * 0.02 / 0.5) = 4``), so both take about the same number of
  optimiser steps (:func:`target_epochs`).
* :func:`append_poisoned_copies`: a trojaned model's training set is its clean set with
  ``int(p * N)`` triggered, relabelled copies of randomly chosen rows *appended* (MNTD's
  ``BackdoorDataset``), where Section 5's poisoned models replace rows instead
  (:func:`freqbackdoor.models.poisoning.poison_training_set`).
* :func:`channel_stats`: the per-channel mean and standard deviation of the defender's images,
  from which MNTD's ``run_meta.py`` draws the meta-classifier's initial queries for CIFAR-10.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from torch import nn

from ..config.options import ConfigSettings
from ..errors import ConfigError, DataError
from ..models.classifier import MODELS, downsampled_side
from ..models.poisoning import POISON_STREAM, check_images, check_labels
from ..models.training import OPTIMIZERS, TrainSettings
from ..triggers.registry import Trigger

ARCHITECTURE = "mntd_cifar10"
CONV_CHANNELS = (32, 32, 64, 64)
DENSE_UNITS = (256, 256)
DROPOUT = 0.5
ROLES = ("shadow", "validation", "target")


class MNTDCifar10CNN(nn.Module):
    """MNTD's CIFAR-10 classifier, for any square input whose side (after ``downsample``)
    divides by 4.

    ``conv(3->32) ReLU conv(32->32) ReLU maxpool conv(32->64) ReLU conv(64->64) ReLU maxpool
    flatten dense(256) ReLU dense(256) ReLU dropout(0.5) dense(classes)``, 3x3 kernels with one
    pixel of zero padding. At 32 px the first dense layer sees 64 x 8 x 8 = 4,096 values and the
    model has 1,182,762 parameters for 10 classes. At other sizes only that layer grows, with
    the square of the side: 64 x (side / 4)^2 inputs, so 51 million weights at 224 px; the
    ``downsample`` option (an average pooling in front, as in
    :class:`~freqbackdoor.models.classifier.ReferenceCNN`) brings a large input back to 32 px. ``dropout``
    is MNTD's 0.5; the tests set 0 to compare training modes exactly.

    ``features`` maps an input to the 256 penultimate activations (after the dropout, which is
    the identity in eval mode), ``classifier`` those to logits, as in the reference classifier,
    so Algorithm 1 and the trigger optimisers can run on it.
    """

    architecture = ARCHITECTURE

    def __init__(
        self,
        num_classes: int,
        input_size: int = 32,
        downsample: int = 1,
        dropout: float = DROPOUT,
    ) -> None:
        super().__init__()
        side = downsampled_side(input_size, downsample, 4, "two 2x2 poolings")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        layers: list[nn.Module] = [nn.AvgPool2d(downsample)] if downsample > 1 else []
        in_channels = 3
        for i, out_channels in enumerate(CONV_CHANNELS):
            layers += [nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.ReLU(inplace=True)]
            if i % 2 == 1:
                layers.append(nn.MaxPool2d(2))
            in_channels = out_channels
        flat = CONV_CHANNELS[-1] * (side // 4) ** 2
        layers += [
            nn.Flatten(),
            nn.Linear(flat, DENSE_UNITS[0]),
            nn.ReLU(inplace=True),
            nn.Linear(DENSE_UNITS[0], DENSE_UNITS[1]),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
        ]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(DENSE_UNITS[1], num_classes)
        self.num_classes = num_classes
        self.input_size = input_size
        self.downsample = downsample
        self.dropout = float(dropout)

    @property
    def options(self) -> dict[str, Any]:
        """Constructor options beyond classes and size, recorded in model-group sidecars."""
        return {"downsample": self.downsample, "dropout": self.dropout}

    def forward(self, x):
        return self.classifier(self.features(x))


MODELS[ARCHITECTURE] = MNTDCifar10CNN


def target_epochs(shadow_epochs: int, shadow_share: float, target_share: float) -> int:
    """Epochs of a target model: ``int(shadow_epochs * shadow_share / target_share)``, at least 1.

    MNTD's rule (``train_basic_trojaned.py``): a target model trains on ``target_share /
    shadow_share`` times as many images as a shadow model, for that many times fewer epochs, so
    both take about the same number of optimiser steps; CIFAR-10: ``int(100 * 0.02 / 0.5) = 4``.
    The product is nudged by 1e-9 before truncation so that float rounding (``0.6 / 0.2``
    is 2.9999999999999996) does not lose an epoch, and a result of 0 becomes 1 (a model
    trains at least once).
    """
    if not isinstance(shadow_epochs, int) or isinstance(shadow_epochs, bool) or shadow_epochs < 1:
        raise ConfigError(
            f"mna.training.shadow_epochs must be an integer >= 1, got {shadow_epochs!r}"
        )
    if not (0 < shadow_share < 1 and 0 < target_share < 1):
        raise ConfigError(
            f"mna.shadow_share and mna.target_share must be in (0, 1), got {shadow_share!r} "
            f"and {target_share!r}"
        )
    return max(1, int(shadow_epochs * shadow_share / target_share + 1e-9))


@dataclasses.dataclass(frozen=True)
class MNTDTraining(ConfigSettings):
    """How every MNA shadow and target model is trained (config key ``mna.training``).

    MNTD's values are the defaults: ``architecture`` (a :data:`~freqbackdoor.models.classifier.MODELS`
    name; ``mntd_cifar10``), ``optimizer`` Adam with ``lr`` 1e-3, ``batch_size`` 100,
    ``shadow_epochs`` 100 for the shadow (and validation shadow) models, the target models'
    epochs derived by :func:`target_epochs`; ``downsample`` average-pools the input first (1:
    none). No validation split, no augmentation, no weight decay: the last epoch is kept.
    """

    CONFIG_NAME = "mna.training"
    REQUIRED = ()

    architecture: str = ARCHITECTURE
    optimizer: str = "adam"
    lr: float = 1e-3
    batch_size: int = 100
    shadow_epochs: int = 100
    downsample: int = 1

    def __post_init__(self) -> None:
        if self.architecture not in MODELS:
            raise ConfigError(
                f"mna.training.architecture: unknown {self.architecture!r}; known: "
                f"{', '.join(sorted(MODELS))}"
            )
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(
                f"mna.training.optimizer must be one of {', '.join(OPTIMIZERS)}, got "
                f"{self.optimizer!r}"
            )
        if not self.lr > 0:
            raise ConfigError(f"mna.training.lr must be positive, got {self.lr!r}")
        for key in ("batch_size", "shadow_epochs", "downsample"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"mna.training.{key} must be an integer >= 1, got {value!r}")

    def epochs(self, role: str, shadow_share: float, target_share: float) -> int:
        """Epochs of a ``shadow``, ``validation`` (shadow) or ``target`` model."""
        if role not in ROLES:
            raise ConfigError(f"unknown MNA model role {role!r}; known: {', '.join(ROLES)}")
        if role == "target":
            return target_epochs(self.shadow_epochs, shadow_share, target_share)
        return self.shadow_epochs

    def train_settings(
        self, role: str, shadow_share: float, target_share: float, seed: int = 0
    ) -> TrainSettings:
        """The :class:`~freqbackdoor.models.training.TrainSettings` of a model of ``role``."""
        return TrainSettings(
            epochs=self.epochs(role, shadow_share, target_share),
            batch_size=self.batch_size,
            lr=self.lr,
            optimizer=self.optimizer,
            augment=False,
            val_fraction=0.0,
            seed=int(seed),
        )

    def model_options(self) -> dict[str, Any]:
        """Options for :func:`~freqbackdoor.models.classifier.build_model` beyond classes and size."""
        return {"downsample": self.downsample} if self.downsample > 1 else {}


def append_poisoned_copies(
    x: np.ndarray, y: np.ndarray, trigger: Trigger, share: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(x_out, y_out, rows)``: the clean set with ``int(share * N)`` poisoned copies appended.

    MNTD's ``BackdoorDataset``: ``rows`` (sorted, distinct, from ``np.random.default_rng([seed,
    POISON_STREAM])``) are copied, given the trigger and the trigger's target label, and added
    after the ``N`` clean rows, which stay as they were; a set of ``N`` rows becomes
    ``N + int(share * N)``. Rows of the target class are copied too (their label does not
    change). ``ConfigError`` for a share outside (0, 1) or one that truncates to no row.
    """
    x = np.asarray(x)
    check_images(x, "training images")
    labels = check_labels(y, x.shape[0], "training set")
    share = float(share)
    if not 0.0 < share < 1.0:
        raise ConfigError(f"poison share must lie strictly between 0 and 1, got {share}")
    n = x.shape[0]
    count = int(share * n)
    if count == 0:
        raise ConfigError(f"poison share {share} of {n} training images truncates to no image")
    rng = np.random.default_rng([int(seed), POISON_STREAM])
    rows = np.sort(rng.choice(n, size=count, replace=False))
    x_out = np.concatenate([x, trigger.apply(x[rows])])
    y_out = np.concatenate([labels, np.full(count, int(trigger.target_label), dtype=np.int64)])
    return x_out, y_out, rows


def channel_stats(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation (float32, 3 each) of uint8 ``N x H x W x 3``
    images scaled to [0, 1], over every image and pixel (the population standard deviation,
    as CIFAR-10's usual 0.247, 0.243, 0.261 that MNTD's ``utils_meta.py`` hard-codes)."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8 or not len(images):
        raise DataError(
            f"channel statistics need uint8 images of shape N x H x W x 3 with N > 0, got "
            f"{images.dtype} {images.shape}"
        )
    values = images.reshape(-1, 3).astype(np.float64) / 255.0
    return values.mean(0).astype(np.float32), values.std(0).astype(np.float32)
