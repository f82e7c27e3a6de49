"""Figures of the paper, drawn with matplotlib/seaborn and written as PNG and PDF."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from ..frequency.dct import dct2  # noqa: E402
from ..frequency.spectra import log_spectrum  # noqa: E402
from ..io import atomic_path  # noqa: E402

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


def _show_image(ax: plt.Axes, image: np.ndarray, title: str | None = None) -> None:
    """An RGB (uint8 or [0, 1] float) image without ticks."""
    ax.imshow(image, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title is not None:
        ax.set_title(title, fontsize=9)


def _show_spectrum(
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


def _colorbar(fig: plt.Figure, handle, cax: plt.Axes, label: str) -> None:
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
        _show_image(axes[0], clean, titles[0])
        _show_image(axes[1], image, titles[1])
        _show_image(axes[2], shown, titles[2])
        axes[2].set_xlabel(f"gain ×{gain:.3g}", fontsize=7)
        for ax, spectrum, column_title in zip(
            axes[3:], (s_clean, s_trig, s_diff), titles[3:], strict=True
        ):
            handle = _show_spectrum(ax, spectrum, lo, hi, column_title)
        axes[0].set_ylabel(display_name(name), fontsize=10)
        axes[3].set_ylabel("vertical freq. →", fontsize=7)
        if r == n - 1:
            for ax in axes[3:]:
                ax.set_xlabel("horizontal freq. →", fontsize=7)
    _colorbar(
        fig,
        handle,
        fig.add_subplot(grid[:, 6]),
        f"log10 |DCT|, channel mean (shared range {lo:.2f} to {hi:.2f}, clipped)",
    )
    fig.suptitle(title)
    return fig


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
        _show_image(fig.add_subplot(grid[0, c]), image, label)
        ax = fig.add_subplot(grid[1, c])
        handle = _show_spectrum(ax, spectrum, lo, hi)
        ax.set_xlabel("horizontal freq. →", fontsize=7)
        if c == 0:
            ax.set_ylabel("log10 |DCT|\nvertical freq. →", fontsize=8)
    _colorbar(
        fig,
        handle,
        fig.add_subplot(grid[1, n]),
        f"log10 |DCT|, channel mean\n(range {lo:.2f} to {hi:.2f}, clipped)",
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
        _show_image(fig.add_subplot(grid[top, left]), clean_img, "clean")
        _show_image(fig.add_subplot(grid[top, left + 1]), trig_img, label)
        ax_clean = fig.add_subplot(grid[top + 1, left])
        ax_trig = fig.add_subplot(grid[top + 1, left + 1])
        handle = _show_spectrum(ax_clean, clean_spec, lo, hi, "clean, mean")
        _show_spectrum(ax_trig, trig_spec, lo, hi, f"{label}, mean")
        for ax in (ax_clean, ax_trig):
            ax.set_xlabel("horizontal freq. →", fontsize=7)
        if slot == 0:
            ax_clean.set_ylabel("vertical freq. →", fontsize=7)
    _colorbar(
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


# --------------------------------------------------------------------------- Section 5


def smooth_trigger_figure(
    pattern: np.ndarray,
    clean_image: np.ndarray,
    patched_image: np.ndarray,
    clean_mean_spectrum: np.ndarray,
    patched_mean_spectrum: np.ndarray,
    scale: tuple[float, float],
    title: str,
    samples: int,
) -> plt.Figure:
    """Figures 3 and 11: the smooth trigger in the image and the frequency domain.

    Top row: the trigger (float ``H x W x 3`` in [0, max]) multiplied by 5 as in the paper, a
    clean test image and the same image patched; bottom row: the trigger's own log10
    channel-mean ``|DCT|`` (its own colour bar), then the mean log10 ``|DCT|`` over ``samples``
    clean and patched test images on ``scale``, Figure 1's colour range, so the panels compare
    with Figure 1 directly.
    """
    pattern = np.asarray(pattern, dtype=np.float64)
    lo, hi = scale
    fig = plt.figure(figsize=(9.6, 6.4))
    grid = fig.add_gridspec(2, 4, width_ratios=[1, 1, 1, 0.06], wspace=0.25, hspace=0.3)
    _show_image(fig.add_subplot(grid[0, 0]), np.clip(5 * pattern, 0, 1), "trigger × 5")
    _show_image(fig.add_subplot(grid[0, 1]), clean_image, "clean test image")
    _show_image(fig.add_subplot(grid[0, 2]), patched_image, "patched: M(x + λr)")
    trigger_spectrum = image_log_spectrum(255.0 * pattern)
    ax = fig.add_subplot(grid[1, 0])
    handle = ax.imshow(trigger_spectrum, cmap="viridis", interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title("log10 |DCT| of the trigger", fontsize=9)
    fig.colorbar(handle, ax=ax, fraction=0.046, pad=0.04).ax.tick_params(labelsize=7)
    _show_spectrum(
        fig.add_subplot(grid[1, 1]), clean_mean_spectrum, lo, hi, f"mean, {samples} clean"
    )
    handle = _show_spectrum(
        fig.add_subplot(grid[1, 2]), patched_mean_spectrum, lo, hi, f"mean, {samples} patched"
    )
    _colorbar(
        fig,
        handle,
        fig.add_subplot(grid[1, 3]),
        f"log10 mean |DCT| (Figure 1's range {lo:.2f} to {hi:.2f})",
    )
    fig.suptitle(title)
    return fig


def poisoning_figure(
    histories: dict[str, pd.DataFrame], baseline_acc: float | None, title: str
) -> plt.Figure:
    """Per-epoch ASR, clean test accuracy and training accuracy, one line per trigger.

    Each history has ``epoch``, ``asr``, ``clean_acc`` and ``train_acc`` (fractions); the clean
    model's test accuracy is a dashed line in the middle panel. Shows the paper's "about 95%
    ASR after one epoch while training accuracy is below 30%".
    """
    panels = (
        ("asr", "attack success rate (%)"),
        ("clean_acc", "clean test accuracy (%)"),
        ("train_acc", "training accuracy, poisoned set (%)"),
    )
    fig, axes = plt.subplots(1, 3, figsize=(13.5, 4.0), sharex=True)
    palette = sns.color_palette("tab10")
    for ax, (key, label) in zip(axes, panels, strict=True):
        for i, (name, frame) in enumerate(histories.items()):
            ax.plot(
                frame["epoch"],
                100 * frame[key],
                marker="o",
                markersize=3,
                color=palette[i % len(palette)],
                linewidth=2.2 if name == "smooth" else 1.2,
                label=display_name(name),
            )
        if key == "clean_acc" and baseline_acc is not None:
            ax.axhline(100 * baseline_acc, color="black", linestyle="--", linewidth=0.9)
            ax.text(1, 100 * baseline_acc + 1, "clean model", fontsize=7)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.set_ylabel(label)
        ax.set_ylim(0, 102)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def distance_figure(distances: pd.DataFrame, projection: pd.DataFrame, title: str) -> plt.Figure:
    """Figure 4: each filtered trigger's distance to the clean representative, and the clusters.

    Left: mean Euclidean distance (with its 95% bootstrap interval) in the smooth-tuned
    detector's penultimate space, per trigger, closest first; right: the clean and triggered
    samples in the first two principal components of that space.
    """
    frame = distances.sort_values("distance").reset_index(drop=True)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11.0, 4.3))
    palette = sns.color_palette("tab10")
    colours = {
        name: palette[(i + 1) % len(palette)] for i, name in enumerate(projection["group"].unique())
    }
    colours["clean"] = "grey"
    errors = np.vstack(
        [frame["distance"] - frame["distance_low"], frame["distance_high"] - frame["distance"]]
    )
    left.bar(
        [display_name(t) for t in frame["trigger"]],
        frame["distance"],
        yerr=errors,
        color=[colours.get(t, "tab:blue") for t in frame["trigger"]],
        capsize=3,
    )
    left.set_ylabel("mean distance to the clean representative")
    left.tick_params(axis="x", rotation=30, labelsize=8)
    left.grid(axis="y", alpha=0.3)
    for group, points in projection.groupby("group", sort=False):
        right.scatter(
            points["x"],
            points["y"],
            s=6,
            alpha=0.5,
            color=colours.get(group, "tab:blue"),
            label=display_name(group),
        )
    right.set_xlabel("principal component 1")
    right.set_ylabel("principal component 2")
    right.legend(fontsize=7, markerscale=2)
    right.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def mna_roc_figure(scores: pd.DataFrame, title: str) -> plt.Figure:
    """MNA's ROC curves on the target models: one panel per stage (before/after the upgrade),
    one curve per trojaned kind against the clean targets, from the scores averaged over the
    meta-training seeds (the legend gives that curve's AUC)."""
    from sklearn.metrics import roc_auc_score, roc_curve

    stages = list(dict.fromkeys(scores["stage"]))
    mean = scores.groupby(["stage", "kind", "index"], sort=False, as_index=False).agg(
        score=("score", "mean"), trojaned=("trojaned", "first")
    )
    fig, axes = plt.subplots(1, len(stages), figsize=(4.6 * len(stages), 4.3), squeeze=False)
    palette = sns.color_palette("tab10")
    for ax, stage in zip(axes[0], stages, strict=True):
        frame = mean[mean["stage"] == stage]
        clean = frame[frame["kind"] == "clean"]
        kinds = [k for k in dict.fromkeys(frame.loc[frame["trojaned"] == 1, "kind"])]
        for i, kind in enumerate(kinds):
            pair = pd.concat([clean, frame[frame["kind"] == kind]])
            fpr, tpr, _ = roc_curve(pair["trojaned"], pair["score"])
            auc = roc_auc_score(pair["trojaned"], pair["score"])
            ax.plot(
                fpr,
                tpr,
                drawstyle="steps-post",
                color=palette[i % len(palette)],
                linewidth=2.2 if kind == "smooth" else 1.3,
                label=f"{display_name(kind)} (AUC {auc:.2f})",
            )
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=0.9)
        ax.set_title(f"{stage} the smooth-trigger upgrade")
        ax.set_xlabel("false positive rate (clean targets)")
        ax.set_ylabel("true positive rate (trojaned targets)")
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
