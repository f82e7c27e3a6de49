"""The reference classifier of Table 8 (the paper's "target model").

Six 3x3 convolutions (32-32-64-64-128-128, 'same' padding, ReLU) with a 2x2 max-pooling after each
pair, flattened into one dense layer to the classes. Triggers that are optimised against a model
(Trojan, invisible, Algorithm 1) and the poisoned models of Section 5 use it.

Models take float ``N x 3 x H x W`` tensors in [0, 1] (see :func:`images_to_tensor`) and return
logits. ``model.features`` maps an input to its flattened penultimate activations and
``model.classifier`` maps those to logits, so trigger optimisers can read internal neurons.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

CHANNELS = (32, 32, 64, 64, 128, 128)


class ReferenceCNN(nn.Module):
    """Table 8's classifier; any square input whose side is divisible by 8."""

    def __init__(self, num_classes: int, input_size: int = 32) -> None:
        super().__init__()
        if input_size % 8:
            raise ValueError(f"input size must be divisible by 8, got {input_size}")
        layers: list[nn.Module] = []
        in_channels = 3
        for i, out_channels in enumerate(CHANNELS):
            layers += [nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.ReLU(inplace=True)]
            if i % 2 == 1:
                layers.append(nn.MaxPool2d(2))
            in_channels = out_channels
        layers.append(nn.Flatten())
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(CHANNELS[-1] * (input_size // 8) ** 2, num_classes)
        self.num_classes = num_classes
        self.input_size = input_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def images_to_tensor(images: np.ndarray, device: str | torch.device = "cpu") -> torch.Tensor:
    """uint8 ``N x H x W x 3`` images to a float32 ``N x 3 x H x W`` tensor in [0, 1]."""
    tensor = torch.from_numpy(np.ascontiguousarray(images)).to(device)
    return tensor.permute(0, 3, 1, 2).float().div_(255.0)


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
