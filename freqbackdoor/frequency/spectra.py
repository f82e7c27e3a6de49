"""Mean DCT spectra: the quantity behind Figure 1's heatmaps.

The paper plots, per dataset, the mean DCT spectrum of clean images next to that of images
carrying each trigger; natural images concentrate energy in low frequencies (top-left) and
triggers add high-frequency energy (bottom-right). We average the coefficient magnitude
``|D|`` over samples and channels and show it on a log10 scale.
"""

from __future__ import annotations

import numpy as np


def sample_indices(n_total: int, n_samples: int, seed: int) -> np.ndarray:
    """A sorted, seeded sample of ``min(n_samples, n_total)`` row indices."""
    rng = np.random.default_rng(seed)
    n = min(n_samples, n_total)
    return np.sort(rng.choice(n_total, size=n, replace=False))


def mean_abs_spectrum(
    coefficients: np.ndarray, indices: np.ndarray | None = None, chunk: int = 2048
) -> np.ndarray:
    """Mean ``|D|`` over samples and channels of an ``N x H x W x C`` DCT array -> ``H x W`` (float64).

    Reads ``coefficients`` (often a memory map) chunk by chunk.
    """
    rows = np.arange(coefficients.shape[0]) if indices is None else np.asarray(indices)
    if rows.size == 0:
        raise ValueError("cannot average the spectrum of an empty set")
    total = np.zeros(coefficients.shape[1:3], dtype=np.float64)
    for start in range(0, rows.size, chunk):
        block = np.abs(np.asarray(coefficients[rows[start : start + chunk]], dtype=np.float64))
        total += block.sum(axis=(0, 3))
    return total / (rows.size * coefficients.shape[3])


def log_spectrum(mean_abs: np.ndarray, floor: float = 1e-3) -> np.ndarray:
    """log10 of a mean magnitude spectrum, floored so zero coefficients stay finite."""
    return np.log10(np.maximum(mean_abs, floor))
