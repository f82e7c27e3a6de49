"""The claims' intervals: a chunked, seeded bootstrap and a resampling-friendly ROC AUC.

:func:`bootstrap` draws, per chunk of resamples, one index array per group of images in the
order a claim lists them, so paired comparisons index both detectors' scores with the same
draws; :func:`percentile_interval` turns replicates into the two-sided interval at
:data:`~.claims.CONFIDENCE`. :class:`ResampledAUC` computes the Mann-Whitney AUC of each
resample without re-sorting. The resample count and chunk bound are the criteria constants of
:mod:`.claims` (:data:`~.claims.N_BOOT`, :data:`~.claims.CHUNK_ELEMENTS`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .claims import CHUNK_ELEMENTS, CONFIDENCE, N_BOOT


def bootstrap(
    sizes: Sequence[int],
    statistic: Callable[[list[np.ndarray]], np.ndarray],
    seed: int = 0,
    n_boot: int = N_BOOT,
) -> np.ndarray:
    """``n_boot`` bootstrap replicates of ``statistic`` over independent groups of ``sizes``.

    A generator ``numpy.random.default_rng(seed)`` draws the resamples in chunks of
    ``max(1, CHUNK_ELEMENTS // sum(sizes))``; per chunk of ``b`` resamples it draws, for each
    group in order, ``rng.integers(0, n, size=(b, n))``. ``statistic`` gets that list of index
    arrays and returns the ``b`` replicates. Paired comparisons index both arrays with the
    same draws.
    """
    sizes = [int(n) for n in sizes]
    if not sizes or min(sizes) < 1:
        raise ValueError(f"every bootstrap group needs at least one element, got {sizes}")
    rng = np.random.default_rng(seed)
    chunk = max(1, CHUNK_ELEMENTS // sum(sizes))
    replicates = np.empty(n_boot)
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        draws = [rng.integers(0, n, size=(b, n)) for n in sizes]
        replicates[start : start + b] = statistic(draws)
    return replicates


def percentile_interval(replicates: np.ndarray) -> tuple[float, float]:
    """The two-sided percentile interval at :data:`CONFIDENCE` of bootstrap replicates."""
    tail = (1.0 - CONFIDENCE) / 2.0
    low, high = np.quantile(np.asarray(replicates, dtype=np.float64), [tail, 1.0 - tail])
    return float(low), float(high)


def mean_rate_interval(
    flags: Sequence[np.ndarray], seed: int = 0, n_boot: int = N_BOOT
) -> tuple[float, float, float]:
    """Mean over groups of the share of ``True`` flags, in percent, with a bootstrap interval.

    Each group (e.g. one attack's triggered images) is resampled on its own.
    """
    arrays = [np.asarray(f, dtype=bool) for f in flags]
    value = 100.0 * float(np.mean([a.mean() for a in arrays]))

    def statistic(draws: list[np.ndarray]) -> np.ndarray:
        return 100.0 * np.mean([a[d].mean(axis=1) for a, d in zip(arrays, draws, strict=True)], 0)

    low, high = percentile_interval(bootstrap([a.size for a in arrays], statistic, seed, n_boot))
    return value, low, high


class ResampledAUC:
    """ROC AUC of triggered vs clean scores under resampling, without re-sorting per resample.

    The clean scores are sorted once; each triggered score's count of smaller and of tied
    clean scores comes from the resample's clean multiplicities (a cumulative sum), so the
    Mann-Whitney AUC of a resample, ties counted half, costs O(n) instead of a sort.
    """

    def __init__(self, clean: np.ndarray, triggered: np.ndarray) -> None:
        clean = np.asarray(clean, dtype=np.float64)
        self.order = np.argsort(clean, kind="stable")
        ordered = clean[self.order]
        triggered = np.asarray(triggered, dtype=np.float64)
        self.below = np.searchsorted(ordered, triggered, side="left")
        self.up_to = np.searchsorted(ordered, triggered, side="right")
        self.n_clean = clean.size

    def point(self) -> float:
        n = self.n_clean
        return float((self.below + 0.5 * (self.up_to - self.below)).mean() / n)

    def cumulative(self, clean_draws: np.ndarray) -> np.ndarray:
        """Per resample (row of clean indices): clean samples at or below each sorted position."""
        b, n = clean_draws.shape
        offsets = (np.arange(b) * n)[:, None]
        counts = np.bincount((clean_draws + offsets).ravel(), minlength=b * n).reshape(b, n)
        cumulative = np.zeros((b, n + 1))
        np.cumsum(counts[:, self.order], axis=1, out=cumulative[:, 1:])
        return cumulative

    def from_cumulative(self, cumulative: np.ndarray, triggered_draws: np.ndarray) -> np.ndarray:
        """The AUC of each resample: ``cumulative``'s clean rows against ``triggered_draws``."""
        below = np.take_along_axis(cumulative, self.below[triggered_draws], axis=1)
        up_to = np.take_along_axis(cumulative, self.up_to[triggered_draws], axis=1)
        return (below + 0.5 * (up_to - below)).mean(axis=1) / self.n_clean


def auc_score(clean: np.ndarray, triggered: np.ndarray) -> float:
    """ROC AUC of telling ``triggered`` from ``clean`` scores (ties count half)."""
    return ResampledAUC(clean, triggered).point()
