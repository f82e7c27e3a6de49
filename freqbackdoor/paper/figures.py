"""Figures of the paper, drawn with matplotlib/seaborn and written as PNG and PDF: the shared parts
and Section 3's figures.

Shared by every figure module: the paper's trigger names (:func:`~freqbackdoor.triggers.names.display_name`),
:func:`save_figure` (no creation date in the files, so the same figure gives the same bytes
run after run), one image's log spectrum, the display of a trigger difference, the shared
colour range and the panel helpers (:func:`show_image`, :func:`show_spectrum`,
:func:`add_colorbar`). Section 3's figures, the triggers' high-frequency artifacts: Figure 1
(:func:`spectrum_heatmaps`), Figure 2 (:func:`trigger_examples_figure`) and Figures 7-10
(:func:`pair_comparison_figure`). Section 4's figures are in :mod:`.figures_section4`,
Section 5's in :mod:`.figures_section5`.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402

from ..frequency.dct import dct2  # noqa: E402
from ..frequency.spectra import log_spectrum  # noqa: E402
from ..io import atomic_path  # noqa: E402
from ..triggers.names import display_name

# no creation time in the files, so the same figure gives the same bytes run after run
_NO_DATE = {"png": {}, "pdf": {"CreationDate": None}}


def save_figure(
    fig: plt.Figure, png: str | os.PathLike, pdf: str | os.PathLike | None = None
) -> None:
    """Write ``fig`` as PNG (and PDF), atomically, then close it."""
    with atomic_path(png, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=150, bbox_inches="tight", metadata=_NO_DATE["png"])
    if pdf is not None:
        with atomic_path(pdf, suffix=".pdf") as tmp:
            fig.savefig(tmp, format="pdf", bbox_inches="tight", metadata=_NO_DATE["pdf"])
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


# --------------------------------------------------------------------------- single images


def image_log_spectrum(image: np.ndarray, floor: float = 1e-3) -> np.ndarray:
    """log10 of the channel-mean ``|DCT|`` of one ``H x W x C`` image (uint8 or float) -> ``H x W``.

    The same quantity as Figure 1's mean spectrum, for a single image: the orthonormal DCT of
    :func:`freqbackdoor.frequency.dct.dct2` on the pixel scale, its magnitude averaged over channels,
    floored at ``floor`` so zero coefficients stay finite.
    """
    coefficients = dct2(np.asarray(image)[None], dtype=np.float64)[0]
    return log_spectrum(np.abs(coefficients).mean(axis=-1), floor)


def stretch_difference(difference: np.ndarray) -> tuple[np.ndarray, float]:
    """A pixel difference mapped to [0, 1] for display, and the gain used.

    A difference that is never negative (a stamped or added trigger) is divided by its maximum,
    so unchanged pixels stay black and the trigger shows at full brightness, as on a black
    canvas; a signed difference is shown around mid-grey, ``0.5 + d / (2 max |d|)``. The gain is
    how much the trigger was amplified (255 / max |d|); a zero difference gives black, gain 1.
    """
    d = np.asarray(difference, dtype=np.float64)
    peak = float(np.abs(d).max()) if d.size else 0.0
    if peak == 0.0:
        return np.zeros_like(d), 1.0
    if d.min() >= 0:
        return d / peak, 255.0 / peak
    return 0.5 + d / (2.0 * peak), 255.0 / peak


def shared_range(
    spectra: Sequence[np.ndarray], vmin: float | None, vmax: float | None, low_percentile: float
) -> tuple[float, float]:
    """Colour range over all panels: a low percentile (so floored zeros do not swamp the
    scale) up to the maximum, unless given."""
    values = np.concatenate([np.ravel(s) for s in spectra])
    lo = float(np.percentile(values, low_percentile)) if vmin is None else float(vmin)
    hi = float(values.max()) if vmax is None else float(vmax)
    if hi <= lo:
        hi = lo + 1e-6
    return lo, hi


def show_image(ax: plt.Axes, image: np.ndarray, title: str | None = None) -> None:
    """An RGB (uint8 or [0, 1] float) image without ticks."""
    ax.imshow(image, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title is not None:
        ax.set_title(title, fontsize=9)


def show_spectrum(
    ax: plt.Axes, spectrum: np.ndarray, lo: float, hi: float, title: str | None = None
) -> matplotlib.image.AxesImage:
    """A log10 spectrum heatmap on the shared colour range (low frequencies top left)."""
    handle = ax.imshow(
        np.clip(spectrum, lo, hi), cmap="viridis", vmin=lo, vmax=hi, interpolation="nearest"
    )
    ax.set_xticks([])
    ax.set_yticks([])
    if title is not None:
        ax.set_title(title, fontsize=9)
    return handle


def add_colorbar(fig: plt.Figure, handle, cax: plt.Axes, label: str) -> None:
    colorbar = fig.colorbar(handle, cax=cax)
    colorbar.set_label(label, fontsize=8)
    colorbar.ax.tick_params(labelsize=7)


def trigger_examples_figure(
    clean_image: np.ndarray,
    triggered: dict[str, np.ndarray],
    title: str,
    vmin: float | None = None,
    vmax: float | None = None,
) -> plt.Figure:
    """Figure 2: what each trigger does to one image, in the image and the frequency domain.

    One row per trigger (``triggered`` maps trigger name -> the uint8 ``H x W x 3`` image with
    that trigger), six panels a row: the clean image, the triggered image, the trigger itself
    (triggered - clean, stretched to full range by :func:`stretch_difference`, gain printed
    under it), then log10 channel-mean ``|DCT|`` of the clean image, of the triggered image and
    of the difference (by linearity, what the trigger adds to the spectrum). All spectra share
    one colour scale, from the 1st percentile over every spectrum panel (``vmin``) to the
    maximum (``vmax``), printed in the colour bar's label. Axes: ``6 * rows + 1`` (colour bar).
    """
    if not triggered:
        raise ValueError("no triggered image to show")
    clean = np.asarray(clean_image)
    rows = []
    for name, image in triggered.items():
        image = np.asarray(image)
        if image.shape != clean.shape:
            raise ValueError(f"{name}: triggered image {image.shape} != clean {clean.shape}")
        difference = image.astype(np.int16) - clean.astype(np.int16)
        shown, gain = stretch_difference(difference)
        rows.append(
            (
                name,
                image,
                shown,
                gain,
                image_log_spectrum(clean),
                image_log_spectrum(image),
                image_log_spectrum(difference),
            )
        )
    lo, hi = shared_range([s for row in rows for s in row[4:]], vmin, vmax, 1.0)

    n = len(rows)
    fig_height = 1.75 * n + 1.2
    fig = plt.figure(figsize=(11.5, fig_height))
    grid = fig.add_gridspec(
        n,
        7,
        width_ratios=[1] * 6 + [0.07],
        wspace=0.2,
        hspace=0.25,
        top=1.0 - 0.85 / fig_height,  # room for the title and the column titles
        bottom=0.35 / fig_height,
        left=0.05,
        right=0.92,
    )
    columns = (
        "clean image",
        "with trigger",
        "trigger = triggered − clean\n(stretched to full range)",
        "log10 |DCT|, clean",
        "log10 |DCT|, with trigger",
        "log10 |DCT|, trigger",
    )
    handle = None
    for r, (name, image, shown, gain, s_clean, s_trig, s_diff) in enumerate(rows):
        axes = [fig.add_subplot(grid[r, c]) for c in range(6)]
        titles = columns if r == 0 else (None,) * 6
        show_image(axes[0], clean, titles[0])
        show_image(axes[1], image, titles[1])
        show_image(axes[2], shown, titles[2])
        axes[2].set_xlabel(f"gain ×{gain:.3g}", fontsize=7)
        for ax, spectrum, column_title in zip(
            axes[3:], (s_clean, s_trig, s_diff), titles[3:], strict=True
        ):
            handle = show_spectrum(ax, spectrum, lo, hi, column_title)
        axes[0].set_ylabel(display_name(name), fontsize=10)
        axes[3].set_ylabel("vertical freq. →", fontsize=7)
        if r == n - 1:
            for ax in axes[3:]:
                ax.set_xlabel("horizontal freq. →", fontsize=7)
    add_colorbar(
        fig,
        handle,
        fig.add_subplot(grid[:, 6]),
        f"log10 |DCT|, channel mean (shared range {lo:.2f} to {hi:.2f}, clipped)",
    )
    fig.suptitle(title)
    return fig


def pair_comparison_figure(
    examples: Sequence[tuple[str, np.ndarray, np.ndarray]],
    spectra: Sequence[tuple[str, np.ndarray, np.ndarray]],
    title: str,
    n_samples: int,
    vmin: float | None = None,
    vmax: float | None = None,
    pairs_per_row: int = 4,
) -> plt.Figure:
    """Figures 7-10: clean vs triggered, pair by pair, in the image and the frequency domain.

    For each trigger, a pair of columns: on top an example test image without and with the
    trigger (``examples``: ``(name, clean_image, triggered_image)``), below the mean log10
    spectrum over ``n_samples`` clean test images and over the same images with the trigger
    (``spectra``: ``(name, clean_log_spectrum, triggered_log_spectrum)``, e.g. from
    :func:`freqbackdoor.frequency.spectra.log_spectrum`). One colour scale for every spectrum of the
    figure, the data's range unless ``vmin``/``vmax`` clip it (the paper clips PubFig to 1.5..4.5);
    the range and the sample count are printed. Pairs wrap after ``pairs_per_row`` triggers.
    Axes: ``4 * triggers + 1`` (colour bar).
    """
    if len(examples) != len(spectra) or not examples:
        raise ValueError("need one example and one spectrum pair per trigger")
    for (name_a, *_), (name_b, *_) in zip(examples, spectra, strict=True):
        if name_a != name_b:
            raise ValueError(f"examples and spectra are not aligned: {name_a!r} vs {name_b!r}")
    all_spectra = [s for _, clean, trig in spectra for s in (clean, trig)]
    lo = float(min(np.min(s) for s in all_spectra)) if vmin is None else float(vmin)
    hi = float(max(np.max(s) for s in all_spectra)) if vmax is None else float(vmax)
    if hi <= lo:
        hi = lo + 1e-6

    n = len(examples)
    per_row = max(1, min(pairs_per_row, n))
    bands = -(-n // per_row)  # rows of pairs
    # Columns: (clean, triggered, gap) per pair, then the colour bar; gaps separate the pairs.
    widths = [1, 1, 0.18] * per_row
    widths[-1] = 0.12
    widths.append(0.08)
    fig_width = 3.4 * per_row + 1.0
    fig_height = 3.2 * bands + 1.0
    fig = plt.figure(figsize=(fig_width, fig_height))
    grid = fig.add_gridspec(
        2 * bands,
        len(widths),
        width_ratios=widths,
        wspace=0.06,
        hspace=0.3,
        top=1.0 - 0.85 / fig_height,  # room for the title and the caption
        bottom=0.35 / fig_height,
    )
    handle = None
    clipped = "" if vmin is None and vmax is None else ", clipped"
    for i, ((name, clean_img, trig_img), (_, clean_spec, trig_spec)) in enumerate(
        zip(examples, spectra, strict=True)
    ):
        band, slot = divmod(i, per_row)
        label = display_name(name)
        top, left = 2 * band, 3 * slot
        show_image(fig.add_subplot(grid[top, left]), clean_img, "clean")
        show_image(fig.add_subplot(grid[top, left + 1]), trig_img, label)
        ax_clean = fig.add_subplot(grid[top + 1, left])
        ax_trig = fig.add_subplot(grid[top + 1, left + 1])
        handle = show_spectrum(ax_clean, clean_spec, lo, hi, "clean, mean")
        show_spectrum(ax_trig, trig_spec, lo, hi, f"{label}, mean")
        for ax in (ax_clean, ax_trig):
            ax.set_xlabel("horizontal freq. →", fontsize=7)
        if slot == 0:
            ax_clean.set_ylabel("vertical freq. →", fontsize=7)
    add_colorbar(
        fig,
        handle,
        fig.add_subplot(grid[:, -1]),
        f"log10 mean |DCT| (range {lo:.2f} to {hi:.2f}{clipped})",
    )
    caption = (
        "Top: an example test image without and with each trigger. Bottom: mean log10 |DCT| "
        f"over {n_samples} test images without and with the trigger (the same images)."
    )
    fig.suptitle(title, y=1.0 - 0.05 / fig_height, va="top")
    fig.text(
        0.5,
        1.0 - 0.35 / fig_height,
        textwrap.fill(caption, width=int(fig_width * 13)),
        ha="center",
        va="top",
        fontsize=8,
    )
    return fig
