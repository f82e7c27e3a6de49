"""Section 5's figures: the smooth trigger and the defences upgraded against it.

Figures 3 and 11 (:func:`smooth_trigger_figure`: the trigger and its spectrum on Figure 1's
colour range), the per-epoch poisoning curves (:func:`poisoning_figure`), Figure 4
(:func:`distance_figure`: the filtered triggers' distances to the clean representative) and
MNA's ROC curves before and after the upgrade (:func:`mna_roc_figure`). Drawn with the
helpers of :mod:`.figures`.
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
    show_image,
    show_spectrum,
)


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
    show_image(fig.add_subplot(grid[0, 0]), np.clip(5 * pattern, 0, 1), "trigger × 5")
    show_image(fig.add_subplot(grid[0, 1]), clean_image, "clean test image")
    show_image(fig.add_subplot(grid[0, 2]), patched_image, "patched: M(x + λr)")
    trigger_spectrum = image_log_spectrum(255.0 * pattern)
    ax = fig.add_subplot(grid[1, 0])
    handle = ax.imshow(trigger_spectrum, cmap="viridis", interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title("log10 |DCT| of the trigger", fontsize=9)
    fig.colorbar(handle, ax=ax, fraction=0.046, pad=0.04).ax.tick_params(labelsize=7)
    show_spectrum(
        fig.add_subplot(grid[1, 1]), clean_mean_spectrum, lo, hi, f"mean, {samples} clean"
    )
    handle = show_spectrum(
        fig.add_subplot(grid[1, 2]), patched_mean_spectrum, lo, hi, f"mean, {samples} patched"
    )
    add_colorbar(
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
