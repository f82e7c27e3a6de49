"""Section 4's figures: the frequency-domain detector, its training data, accuracy and transfer.

Figure 5 (:func:`manipulations_figure`: the random manipulations the detector is trained on,
with their spectra), the ROC curves of Table 1's detectors in the DCT and the pixel domain
(:func:`roc_figure`), Figure 6 (:func:`width_figure`: the linear detector against the input
width, Appendix D) and the fine-tuning budget of a transferred detector
(:func:`budget_figure`; the paper tunes on 100 clean samples). Drawn with the helpers of
:mod:`.figures`.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from ..triggers.names import display_name  # noqa: E402
from .figures import (  # noqa: E402
    add_colorbar,
    image_log_spectrum,
    shared_range,
    show_image,
    show_spectrum,
)


def manipulations_figure(
    clean: np.ndarray,
    manipulated: dict[str, np.ndarray],
    title: str,
    vmin: float | None = None,
    vmax: float | None = None,
) -> plt.Figure:
    """Figure 5: one clean image and its random manipulations, with their spectra.

    Top row: the original and each manipulated uint8 ``H x W x 3`` image (``manipulated`` maps
    manipulation kind -> image; panels are lettered (a), (b), ... as in the paper); bottom row:
    log10 channel-mean ``|DCT|`` of each, on one colour scale (1st percentile to maximum over
    the row unless given) stated in the colour bar. Axes: ``2 * (1 + kinds) + 1``.
    """
    images = [("original", np.asarray(clean))]
    for i, (kind, image) in enumerate(manipulated.items()):
        images.append((f"({chr(ord('a') + i)}) {kind.replace('_', ' ')}", np.asarray(image)))
    spectra = [image_log_spectrum(image) for _, image in images]
    lo, hi = shared_range(spectra, vmin, vmax, 1.0)

    n = len(images)
    fig = plt.figure(figsize=(1.9 * n + 0.8, 4.3))
    grid = fig.add_gridspec(
        2, n + 1, width_ratios=[1] * n + [0.07], wspace=0.1, hspace=0.25, top=0.84, bottom=0.08
    )
    handle = None
    for c, ((label, image), spectrum) in enumerate(zip(images, spectra, strict=True)):
        show_image(fig.add_subplot(grid[0, c]), image, label)
        ax = fig.add_subplot(grid[1, c])
        handle = show_spectrum(ax, spectrum, lo, hi)
        ax.set_xlabel("horizontal freq. →", fontsize=7)
        if c == 0:
            ax.set_ylabel("log10 |DCT|\nvertical freq. →", fontsize=8)
    add_colorbar(
        fig,
        handle,
        fig.add_subplot(grid[1, n]),
        f"log10 |DCT|, channel mean\n(range {lo:.2f} to {hi:.2f}, clipped)",
    )
    fig.suptitle(title)
    return fig


def roc_figure(
    curves: dict[str, dict[str, pd.DataFrame]],
    aucs: dict[str, dict[str, float]],
    title: str,
    fpr_at: float | None = None,
) -> plt.Figure:
    """ROC curves per attack, one panel per input domain (``curves[domain][attack]``).

    Each curve is a frame with ``fpr`` and ``tpr`` columns; the legend gives the AUC. A dashed
    vertical line marks the false-positive rate of the fixed threshold when ``fpr_at`` is set.
    """
    domains = list(curves)
    fig, axes = plt.subplots(1, len(domains), figsize=(4.6 * len(domains), 4.4), squeeze=False)
    palette = sns.color_palette("tab10")
    for ax, domain in zip(axes[0], domains, strict=True):
        for i, (attack, frame) in enumerate(curves[domain].items()):
            ax.plot(
                frame["fpr"],
                frame["tpr"],
                color=palette[i % len(palette)],
                label=f"{display_name(attack)} (AUC {aucs[domain][attack]:.3f})",
                linewidth=1.6,
            )
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
        if fpr_at is not None and domain == "dct":
            ax.axvline(fpr_at, color="black", linestyle="--", linewidth=0.8)
        name = "frequency domain (DCT)" if domain == "dct" else "image domain (pixels)"
        ax.set_title(name)
        ax.set_xlabel("false-positive rate on clean images")
        ax.set_ylabel("detection rate on triggered images (BDR)")
        ax.set_xlim(-0.01, 1.0)
        ax.set_ylim(0.0, 1.01)
        ax.legend(loc="lower right", fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def width_figure(frame: pd.DataFrame, title: str, threshold_width: int | None = 160) -> plt.Figure:
    """Figure 6: linear detector accuracy and F1 against the input width, with 95% intervals.

    ``frame`` has one row per width with ``width``, ``acc``, ``acc_low``, ``acc_high``, ``f1``,
    ``f1_low``, ``f1_high`` (fractions), pooled over the evaluated triggers.
    """
    frame = frame.sort_values("width")
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    for key, label, colour in (("acc", "ACC", "tab:blue"), ("f1", "F1", "tab:orange")):
        ax.plot(frame["width"], frame[key], marker="o", color=colour, label=label)
        ax.fill_between(
            frame["width"], frame[f"{key}_low"], frame[f"{key}_high"], color=colour, alpha=0.2
        )
    if threshold_width is not None:
        ax.axvline(threshold_width, color="grey", linestyle="--", linewidth=0.8)
        ax.text(threshold_width, 0.02, f" {threshold_width} px (paper)", color="grey", fontsize=8)
    ax.set_xlabel("input width and height (pixels)")
    ax.set_ylabel("detection ACC / F1")
    ax.set_ylim(0.0, 1.02)
    ax.set_title(title)
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def budget_figure(
    frame: pd.DataFrame, title: str, raw: pd.DataFrame | None = None, paper_budget: int = 100
) -> plt.Figure:
    """Fine-tuning budget: mean ACC and BDR (over attacks) against the clean target samples used.

    ``frame`` has one row per (budget, repeat) with ``acc`` and ``bdr`` in percent; repeats are
    drawn as points, their mean as a line. ``raw`` (the same columns, budget 0) gives the
    untuned detector as dashed lines. The paper fine-tunes with ``paper_budget`` samples.
    """
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    means = frame.groupby("budget", as_index=False)[["acc", "bdr"]].mean()
    for key, label, colour in (("acc", "ACC", "tab:blue"), ("bdr", "BDR", "tab:red")):
        ax.plot(means["budget"], means[key], marker="o", color=colour, label=f"{label}, tuned")
        ax.scatter(frame["budget"], frame[key], color=colour, alpha=0.35, s=12)
        if raw is not None and len(raw):
            ax.axhline(
                raw[key].mean(), color=colour, linestyle="--", linewidth=1.0, label=f"{label}, raw"
            )
    ax.axvline(paper_budget, color="grey", linestyle=":", linewidth=0.8)
    ax.text(paper_budget, 2, f" {paper_budget} (paper)", color="grey", fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("clean target images used for fine-tuning (plus one manipulation each)")
    ax.set_ylabel("mean over attacks (%)")
    ax.set_ylim(0.0, 102.0)
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
