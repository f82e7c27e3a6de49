"""Figures of the paper, drawn with matplotlib/seaborn and written as PNG and PDF."""

from __future__ import annotations

import os
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402

from .io import atomic_path  # noqa: E402

LABELS = {
    "clean": "Clean",
    "badnets": "BadNets",
    "blend": "Blend",
    "trojan_sq": "Troj-SQ",
    "trojan_wm": "Troj-WM",
    "nature": "Nature",
    "l2_inv": "l2 inv",
    "l0_inv": "l0 inv",
    "gan_tri": "GAN-Tri",
    "smooth": "Smooth",
}


def display_name(name: str) -> str:
    """The paper's spelling of a trigger name (``trojan_wm`` -> ``Troj-WM``)."""
    return LABELS.get(name, name)


def save_figure(
    fig: plt.Figure, png: str | os.PathLike, pdf: str | os.PathLike | None = None
) -> None:
    """Write ``fig`` as PNG (and PDF), atomically, then close it."""
    with atomic_path(png, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=150, bbox_inches="tight")
    if pdf is not None:
        with atomic_path(pdf, suffix=".pdf") as tmp:
            fig.savefig(tmp, format="pdf", bbox_inches="tight")
    plt.close(fig)


def spectrum_heatmaps(
    spectra: Sequence[np.ndarray],
    labels: Sequence[str],
    title: str,
    vmin: float | None = None,
    vmax: float | None = None,
) -> plt.Figure:
    """A row of log10 spectrum heatmaps sharing one colour scale (Figure 1).

    ``spectra`` are log10 mean-magnitude spectra; the colour range defaults to the range over
    all panels and is printed in the colour bar's label so readers can compare figures.
    """
    stacked = np.stack(spectra)
    lo = float(stacked.min()) if vmin is None else vmin
    hi = float(stacked.max()) if vmax is None else vmax
    n = len(spectra)
    fig, axes = plt.subplots(
        1, n + 1, figsize=(2.4 * n + 0.6, 2.9), gridspec_kw={"width_ratios": [1] * n + [0.06]}
    )
    for ax, spectrum, label in zip(axes[:-1], spectra, labels, strict=True):
        sns.heatmap(
            np.clip(spectrum, lo, hi),
            ax=ax,
            vmin=lo,
            vmax=hi,
            cmap="viridis",
            cbar=ax is axes[0],
            cbar_ax=axes[-1] if ax is axes[0] else None,
            square=True,
            xticklabels=False,
            yticklabels=False,
            rasterized=True,
        )
        ax.set_title(display_name(label))
        ax.set_xlabel("horizontal frequency")
    axes[0].set_ylabel("vertical frequency")
    axes[-1].set_ylabel(f"log10 mean |DCT| (range {lo:.2f} to {hi:.2f})")
    fig.suptitle(title)
    return fig
