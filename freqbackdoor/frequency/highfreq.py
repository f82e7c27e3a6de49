"""A number for the paper's central claim: triggers leave high-frequency artifacts.

Section 3.2 of the paper shows the claim with heatmaps (Figure 1): images carrying a trigger
have more energy in the bottom-right, high-frequency part of the DCT spectrum than the same
images without it. This module turns the heatmaps into one number per (dataset, trigger) with
an uncertainty, so the claim can be checked in a table rather than by eye.

The upper frequency band
    For an ``H x W`` DCT, coefficient ``(u, v)`` (``u`` the vertical, ``v`` the horizontal index,
    ``0 <= u < H``, ``0 <= v < W``) has normalised frequency ``(u / H, v / W)``, each in
    ``[0, 1)`` where 1 is the Nyquist frequency. The band is every coefficient with
    ``u / H + v / W >= cutoff``: the lower-right triangle of the spectrum, beyond the
    anti-diagonal. With ``cutoff = 1.0`` it holds the half of the coefficients with the highest
    combined frequency (``H (H - 1) / 2`` of ``H**2`` for a square image, so the fraction tends
    to 1/2); a larger cutoff keeps a smaller corner. The DC term is never in the band.

Band energy
    The mean magnitude ``|D|`` over the band's coefficients and the colour channels of one
    image, on the pixel scale of :func:`freqbackdoor.frequency.dct.dct2` (uint8 values 0..255).

Energy ratio
    ``mean over images of the triggered band energy / mean over images of the clean band
    energy``. The triggered set is the clean set with the trigger stamped on, row for row, so
    the two sets are paired: the bootstrap resamples image indices and uses the same indices
    for both sets, which keeps the pairing and gives a narrower, honest interval for the ratio.
    The interval is the percentile bootstrap interval. A ratio above 1, with the interval's
    lower end above 1, says the trigger adds high-frequency energy.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..io import load_npy
from ..triggers.names import display_name
from .spectra import sample_indices

log = logging.getLogger(__name__)

#: Values of the bootstrap index matrix held in memory at once (int64: 32 MB).
_BOOT_ELEMENTS = 1 << 22

#: Columns of :func:`highfreq_table`.
COLUMNS = (
    "dataset",
    "attack",
    "n",
    "clean_band_energy",
    "triggered_band_energy",
    "ratio",
    "ci_low",
    "ci_high",
    "above_one",
)


def high_band_mask(height: int, width: int, cutoff: float = 1.0) -> np.ndarray:
    """Boolean ``height x width`` mask of the upper frequency band: ``u/H + v/W >= cutoff``.

    ``u`` indexes rows (vertical frequency) and ``v`` columns (horizontal frequency) of the DCT,
    so the band is the lower-right triangle beyond the anti-diagonal; with ``cutoff = 1.0`` it
    is the half of the spectrum with the highest combined frequency. Raises ``ValueError`` when
    the band would be empty (``cutoff`` too large for the size), since its energy is undefined.
    """
    if height < 1 or width < 1:
        raise ValueError(f"height and width must be >= 1, got {height} x {width}")
    # u/H + v/W >= cutoff  <=>  u*W + v*H >= cutoff*H*W: the left side is an exact integer,
    # so the band's edge does not depend on rounding (u/H + v/W can land a hair below 1.0).
    combined = np.arange(height)[:, None] * width + np.arange(width)[None, :] * height
    mask = combined >= float(cutoff) * height * width
    if not mask.any():
        raise ValueError(
            f"the band u/H + v/W >= {cutoff} is empty for {height} x {width}; use cutoff < 2"
        )
    return mask


def band_energy(
    coefficients: np.ndarray,
    mask: np.ndarray,
    chunk: int = 2048,
    indices: np.ndarray | None = None,
) -> np.ndarray:
    """Per-image mean ``|D|`` over the band ``mask`` and the channels -> float64 ``(N,)``.

    ``coefficients`` is an ``N x H x W x C`` DCT array, typically a float32 memory map of a DCT
    cache; it is read ``chunk`` images at a time so sets larger than memory work.
    ``indices`` optionally selects (sorted) rows, e.g. a seeded sample from
    :func:`freqbackdoor.frequency.spectra.sample_indices`; the result follows their order.
    """
    if coefficients.ndim != 4:
        raise ValueError(f"expected N x H x W x C coefficients, got shape {coefficients.shape}")
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != coefficients.shape[1:3]:
        raise ValueError(
            f"mask shape {mask.shape} does not match the spectra's {coefficients.shape[1:3]}"
        )
    count = int(mask.sum()) * coefficients.shape[3]
    if count == 0:
        raise ValueError("the band mask selects no coefficient")
    rows = None if indices is None else np.asarray(indices)
    n = coefficients.shape[0] if rows is None else rows.size
    out = np.empty(n, dtype=np.float64)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        if rows is None:
            block = np.asarray(coefficients[start:stop])  # a slice reads a memory map in order
        else:
            block = np.asarray(coefficients[rows[start:stop]])
        band = np.abs(block[:, mask, :])  # (n, K, C), in the cache's precision
        out[start:stop] = band.sum(axis=(1, 2), dtype=np.float64) / count
    return out


def energy_ratio(
    clean_energy: np.ndarray,
    triggered_energy: np.ndarray,
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict:
    """Ratio of mean band energies, triggered over clean, with a paired percentile bootstrap.

    ``clean_energy[i]`` and ``triggered_energy[i]`` belong to the same image without and with
    the trigger, so each bootstrap resample draws ``N`` image indices with replacement and
    uses them for both sets. Resamples are drawn as ``n_boot x N`` index matrices, a bounded
    number of rows at a time. Returns ``{"ratio", "ci_low", "ci_high", "n"}``; the interval
    is the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of the resampled
    ratios. The result depends only on the inputs and ``seed``.
    """
    clean = np.asarray(clean_energy, dtype=np.float64)
    triggered = np.asarray(triggered_energy, dtype=np.float64)
    if clean.ndim != 1 or clean.shape != triggered.shape:
        raise ValueError(
            f"expected two paired 1-D energy arrays, got shapes {clean.shape} and {triggered.shape}"
        )
    n = clean.size
    if n == 0:
        raise ValueError("cannot compare empty sets")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not np.all(np.isfinite(clean)) or not np.all(np.isfinite(triggered)):
        raise ValueError("band energies must be finite")
    if clean.sum() <= 0:
        raise ValueError("the clean set has no energy in the band; the ratio is undefined")
    ratio = float(triggered.mean() / clean.mean())

    rng = np.random.default_rng(seed)
    ratios = np.empty(n_boot, dtype=np.float64)
    step = max(1, _BOOT_ELEMENTS // n)
    for start in range(0, n_boot, step):
        stop = min(start + step, n_boot)
        idx = rng.integers(0, n, size=(stop - start, n))
        # Sums over the same indices: the 1/N of both means cancels in the ratio.
        clean_sum = clean[idx].sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios[start:stop] = triggered[idx].sum(axis=1) / clean_sum
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(ratios, [tail, 1.0 - tail])
    return {"ratio": ratio, "ci_low": float(low), "ci_high": float(high), "n": int(n)}


def highfreq_table(
    entries: Sequence[tuple[str, str, str | os.PathLike, str | os.PathLike]],
    cutoff: float = 1.0,
    n_boot: int = 2000,
    seed: int = 0,
    max_samples: int | None = None,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """The energy ratio of every ``(dataset, attack, clean_dct_path, triggered_dct_path)``.

    Both DCT caches hold the same test images, row for row (the triggered set is the clean set
    with the trigger). At most ``max_samples`` rows are used, the same seeded sample
    (:func:`~freqbackdoor.frequency.spectra.sample_indices`) for both sets; ``None`` uses all. Each
    entry's bootstrap uses ``seed``, so rows that share a clean set resample the same images.
    Clean band energies are computed once per clean cache. Returns a frame with
    :data:`COLUMNS`: energies are the mean band energy of each set, ``above_one`` is
    ``ci_low > 1``.
    """
    records = []
    clean_cache: dict[tuple[str, int | None], tuple[np.ndarray, np.ndarray]] = {}
    for dataset, attack, clean_path, triggered_path in entries:
        clean = load_npy(clean_path)
        triggered = load_npy(triggered_path)
        if clean.shape != triggered.shape:
            raise ValueError(
                f"{dataset}/{attack}: clean DCT {clean_path} has shape {clean.shape} but "
                f"triggered DCT {triggered_path} has {triggered.shape}; they must hold the same "
                "images"
            )
        key = (os.fspath(clean_path), max_samples)
        if key not in clean_cache:
            rows = (
                None
                if max_samples is None
                else sample_indices(clean.shape[0], int(max_samples), seed)
            )
            mask = high_band_mask(clean.shape[1], clean.shape[2], cutoff)
            clean_cache[key] = (rows, band_energy(clean, mask, indices=rows))
        rows, clean_energy = clean_cache[key]
        mask = high_band_mask(clean.shape[1], clean.shape[2], cutoff)
        triggered_energy = band_energy(triggered, mask, indices=rows)
        record = ratio_record(
            dataset, attack, clean_energy, triggered_energy, n_boot, seed, confidence
        )
        records.append(record)
        log.info(
            "%s/%s: high-band energy ratio %.3f [%.3f, %.3f] over %d images",
            dataset,
            attack,
            record["ratio"],
            record["ci_low"],
            record["ci_high"],
            record["n"],
        )
    return pd.DataFrame.from_records(records, columns=list(COLUMNS))


def ratio_record(
    dataset: str,
    attack: str,
    clean_energy: np.ndarray,
    triggered_energy: np.ndarray,
    n_boot: int,
    seed: int,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """One :data:`COLUMNS` row: :func:`energy_ratio` of paired band energies, with their means."""
    result = energy_ratio(clean_energy, triggered_energy, n_boot, seed, confidence)
    return {
        "dataset": dataset,
        "attack": attack,
        "n": result["n"],
        "clean_band_energy": float(clean_energy.mean()),
        "triggered_band_energy": float(triggered_energy.mean()),
        "ratio": result["ratio"],
        "ci_low": result["ci_low"],
        "ci_high": result["ci_high"],
        "above_one": bool(result["ci_low"] > 1.0),
    }


def format_ratio(ratio: float, low: float, high: float, digits: int = 2) -> str:
    """A ratio with its interval as text: ``1.83 [1.79, 1.88]``."""
    return f"{ratio:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def format_table(table: pd.DataFrame, digits: int = 2, confidence: float = 0.95) -> pd.DataFrame:
    """The :func:`highfreq_table` frame as display strings, ready for a Markdown table.

    Attack names use the paper's spelling; the ratio and its interval share one column.
    """
    level = f"{confidence * 100:g}%"
    return pd.DataFrame(
        {
            "Dataset": table["dataset"].astype(str),
            "Attack": [display_name(a) for a in table["attack"]],
            "Images": table["n"].map(str),
            "Clean band energy": table["clean_band_energy"].map(lambda x: f"{x:.3g}"),
            "Triggered band energy": table["triggered_band_energy"].map(lambda x: f"{x:.3g}"),
            f"Ratio [{level} CI]": [
                format_ratio(r, lo, hi, digits)
                for r, lo, hi in zip(table["ratio"], table["ci_low"], table["ci_high"], strict=True)
            ],
            "CI above 1": table["above_one"].map(lambda x: "yes" if x else "no"),
        }
    )


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub-style pipe table of a frame of strings (no dependency on ``tabulate``)."""
    header = [str(c) for c in frame.columns]
    rows = [[str(v).replace("|", "\\|") for v in row] for row in frame.itertuples(index=False)]
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(header)]
    lines = [
        "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |",
        "| " + " | ".join("-" * w for w in widths) + " |",
    ]
    lines += [
        "| " + " | ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) + " |"
        for row in rows
    ]
    return "\n".join(lines)


def highfreq_markdown(
    table: pd.DataFrame,
    cutoff: float,
    n_boot: int,
    confidence: float = 0.95,
    digits: int = 2,
) -> str:
    """The Markdown document of the table: a title, what the numbers mean, the table."""
    level = f"{confidence * 100:g}%"
    return (
        "# High-frequency energy of triggered vs clean test images\n\n"
        f"Band energy is the mean DCT magnitude |D| over the upper frequency band "
        f"(coefficients (u, v) with u/H + v/W >= {cutoff:g}, the lower-right triangle of the "
        "spectrum) and the colour channels of an image; the ratio is the mean band energy of the "
        "triggered test images over that of the same images without the trigger, with a "
        f"{level} percentile bootstrap interval from {n_boot} paired resamples of the images.\n\n"
        + markdown_table(format_table(table, digits, confidence))
        + "\n"
    )
