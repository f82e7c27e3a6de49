"""Shared fixtures: small seeded image batches."""

import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def images32(rng):
    return rng.integers(0, 256, size=(16, 32, 32, 3), dtype=np.uint8)
