"""Shared fixtures: small seeded image batches."""

import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def images32(rng):
    return rng.integers(0, 256, size=(16, 32, 32, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def photos():
    """Smooth-ish 32 px images: blurred random fields, so triggers stand out as in photographs."""
    import torch

    rng = np.random.default_rng(0)
    base = rng.uniform(0, 255, size=(320, 8, 8, 3))
    images = torch.nn.functional.interpolate(
        torch.from_numpy(base).permute(0, 3, 1, 2), size=(32, 32), mode="bicubic"
    )
    return images.clamp(0, 255).round().permute(0, 2, 3, 1).numpy().astype(np.uint8)
