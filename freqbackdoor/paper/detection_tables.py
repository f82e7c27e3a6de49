"""Tables 1 and 5 from detector metrics, and their paper-vs-reproduced companions.

Metrics come from :func:`freqbackdoor.detection.detector.evaluate_attacks` (one row per attack, rates as
fractions with 95% intervals). Tables show percentages, as the paper does; the long format
(``table, dataset, row, column, reproduced``) feeds :func:`freqbackdoor.metrics.compare`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ..metrics import paired_difference, roc_auc
from ..triggers.names import display_name

PERCENT_COLUMNS = ("acc", "bdr", "fpr")


def _label(attack: str) -> str:
    return display_name(attack)


def _interval(value: float, low: float, high: float, digits: int = 2) -> str:
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def _rates(m: pd.Series, suffix: str, auc_interval: bool = False) -> dict[str, float]:
    """ACC, BDR and FPR of one metrics row in percent with their intervals, keys ``<rate><suffix>``
    (``bdr_star``, ``bdr_star_low``, ...), and with ``auc_interval`` its AUC with interval."""
    row = {}
    for key in PERCENT_COLUMNS:
        for bound in ("", "_low", "_high"):
            row[f"{key}{suffix}{bound}"] = 100 * m[f"{key}{bound}"]
    if auc_interval:
        for bound in ("", "_low", "_high"):
            row[f"auc{suffix}{bound}"] = m[f"auc{bound}"]
    return row


def table1_frame(
    metrics: Mapping[tuple[str, str], pd.DataFrame],
    datasets: Sequence[str],
    authors: Mapping[str, pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """Table 1 as one row per (dataset, attack): frequency-domain and image-domain metrics.

    ``metrics[(dataset, domain)]`` holds a detector's per-attack metrics; ``domain`` is ``dct``
    or ``pixel`` (the starred columns). ``authors[dataset]``, where given, holds the authors'
    published detector's metrics on the same test sets (``*_authors`` columns). Rates are in
    percent; AUC and F1 stay in [0, 1].
    """
    rows = []
    authors = authors or {}
    for dataset in datasets:
        dct = metrics[(dataset, "dct")].set_index("attack")
        pixel = metrics.get((dataset, "pixel"))
        pixel = pixel.set_index("attack") if pixel is not None else None
        published = authors.get(dataset)
        published = published.set_index("attack") if published is not None else None
        for attack, m in dct.iterrows():
            row = {
                "dataset": dataset,
                "attack": attack,
                "n_clean": int(m.n_clean),
                "threshold": float(m.threshold),
            }
            row.update(_rates(m, ""))
            for key in ("f1", "auc"):
                for bound in ("", "_low", "_high"):
                    row[f"{key}{bound}"] = m[f"{key}{bound}"]
            if pixel is not None and attack in pixel.index:
                row.update(_rates(pixel.loc[attack], "_star"))
                row["auc_star"] = pixel.loc[attack, "auc"]
            if published is not None and attack in published.index:
                row.update(_rates(published.loc[attack], "_authors", auc_interval=True))
            rows.append(row)
    return pd.DataFrame.from_records(rows)


def table1_markdown(frame: pd.DataFrame, target_fpr: float | None = None) -> str:
    """Readable Table 1: per dataset, attacks as rows, with 95% intervals."""
    has_star = "acc_star" in frame.columns
    parts = [
        "# Table 1: detection of triggered images in the frequency domain "
        "(and the image domain, starred)",
        "",
        "A detector trained only on clean and randomly manipulated images flags an image when "
        "its score reaches the threshold: "
        + (
            f"calibrated per detector for a {100 * target_fpr:g}% false-positive rate on clean "
            "training images held out of its training (no trigger is used). "
            if target_fpr is not None
            else "the fixed value given per dataset. "
        )
        + "ACC: accuracy on the clean test images plus the "
        "same images with the trigger; BDR: share of triggered images flagged; FPR: share of "
        "clean images flagged; in percent with 95% Wilson intervals. F1 and AUC with 95% "
        "bootstrap intervals. Starred columns: the same architecture trained on pixels."
        + (
            " Columns marked (authors'): the authors' published CIFAR-10 cnn6 detector on the "
            "same test images, fed raw DCT coefficients and flagging at 0.5 as they did "
            "(results/tables/authors_detectors.md compares it with ours)."
            if "bdr_authors" in frame.columns
            else ""
        ),
    ]
    for dataset, group in frame.groupby("dataset", sort=False):
        body = pd.DataFrame(
            {
                "Attack": [_label(a) for a in group.attack],
                "ACC": [_interval(*r) for r in group[["acc", "acc_low", "acc_high"]].values],
                "BDR": [_interval(*r) for r in group[["bdr", "bdr_low", "bdr_high"]].values],
                "FPR": [_interval(*r) for r in group[["fpr", "fpr_low", "fpr_high"]].values],
                "F1": [_interval(*r, digits=3) for r in group[["f1", "f1_low", "f1_high"]].values],
                "AUC": [
                    _interval(*r, digits=3) for r in group[["auc", "auc_low", "auc_high"]].values
                ],
            }
        )
        if has_star:
            body["ACC*"] = group["acc_star"].map("{:.2f}".format).values
            body["BDR*"] = group["bdr_star"].map("{:.2f}".format).values
            body["AUC*"] = group["auc_star"].map("{:.3f}".format).values
        authors = "bdr_authors" in group.columns and group["bdr_authors"].notna().any()
        if authors:
            body["BDR (authors')"] = [
                _interval(*r)
                for r in group[["bdr_authors", "bdr_authors_low", "bdr_authors_high"]].values
            ]
            body["AUC (authors')"] = group["auc_authors"].map("{:.3f}".format).values
        n = int(group.n_clean.iloc[0])
        parts += [
            "",
            f"## {dataset} ({n} clean + {n} triggered test images per attack; "
            f"threshold {group.threshold.iloc[0]:.4g})",
            "",
        ]
        parts.append(body.to_markdown(index=False))
        parts += [
            "",
            f"Mean BDR {group.bdr.mean():.2f}%, mean ACC {group.acc.mean():.2f}%, "
            f"FPR on clean images {group.fpr.iloc[0]:.2f}%."
            + (
                f" The authors' detector: mean BDR {group.bdr_authors.mean():.2f}%, FPR on clean "
                f"images {group.fpr_authors.iloc[0]:.2f}%."
                if authors
                else ""
            ),
        ]
    return "\n".join(parts) + "\n"


def table1_long(frame: pd.DataFrame) -> pd.DataFrame:
    """Table 1 in the comparison format (percent), columns acc, bdr, acc_star, bdr_star."""
    rows = []
    for _, r in frame.iterrows():
        for column in ("acc", "bdr", "acc_star", "bdr_star"):
            if column in frame.columns and pd.notna(r.get(column)):
                rows.append(
                    {
                        "table": "table1",
                        "dataset": r.dataset,
                        "row": r.attack,
                        "column": column,
                        "reproduced": float(r[column]),
                    }
                )
    return pd.DataFrame.from_records(
        rows, columns=["table", "dataset", "row", "column", "reproduced"]
    )


def table5_frame(metrics: Mapping[str, pd.DataFrame], sidecars: Mapping[str, dict]) -> pd.DataFrame:
    """Table 5: one row per architecture with parameters, training accuracy, ACC/BDR per attack."""
    rows = []
    for architecture, frame in metrics.items():
        meta = sidecars[architecture]
        history = meta.get("history", {})
        row = {
            "architecture": architecture,
            "parameters": int(meta.get("body_parameters", meta.get("parameters", 0))),
            "train_acc": 100 * float(history["train_acc"][-1])
            if history.get("train_acc")
            else None,
        }
        for _, m in frame.iterrows():
            row[f"acc:{m.attack}"] = 100 * m.acc
            row[f"bdr:{m.attack}"] = 100 * m.bdr
            row[f"auc:{m.attack}"] = m.auc
        row["mean_bdr"] = 100 * frame.bdr.mean()
        row["fpr"] = 100 * frame.fpr.iloc[0]
        rows.append(row)
    return pd.DataFrame.from_records(rows)


def table5_markdown(frame: pd.DataFrame, dataset: str) -> str:
    attacks = [c.split(":", 1)[1] for c in frame.columns if c.startswith("acc:")]
    body = pd.DataFrame(
        {
            "Architecture": frame.architecture,
            "Parameters": frame.parameters.map("{:,}".format),
            "Train ACC": frame.train_acc.map("{:.2f}".format),
        }
    )
    for attack in attacks:
        body[f"{_label(attack)} ACC"] = frame[f"acc:{attack}"].map("{:.2f}".format)
        body[f"{_label(attack)} BDR"] = frame[f"bdr:{attack}"].map("{:.2f}".format)
    body["FPR"] = frame.fpr.map("{:.2f}".format)
    body["Mean BDR"] = frame.mean_bdr.map("{:.2f}".format)
    return (
        f"# Table 5: detector architecture ablation on {dataset} (frequency domain)\n\n"
        "Training accuracy on the clean + manipulated training set (last epoch), detection ACC "
        "and BDR per attack and the false-positive rate on clean test images, in percent. "
        "Parameters: trainable parameters of the network (the input standardisation has none).\n\n"
        + body.to_markdown(index=False)
        + "\n"
    )


def table5_long(frame: pd.DataFrame, dataset: str) -> pd.DataFrame:
    rows = []
    for _, r in frame.iterrows():
        for column in ["params", "train_acc"] + [
            c for c in frame.columns if c.startswith(("acc:", "bdr:"))
        ]:
            value = r.parameters if column == "params" else r[column]
            if pd.notna(value):
                rows.append(
                    {
                        "table": "table5",
                        "dataset": dataset,
                        "row": r.architecture,
                        "column": column,
                        "reproduced": float(value),
                    }
                )
    return pd.DataFrame.from_records(
        rows, columns=["table", "dataset", "row", "column", "reproduced"]
    )


# The paper's Tables 6 and 7 as printed: (layer, output shape).
PAPER_TABLE6 = [("Input", "224 x 224 x 3"), ("Flatten", "150528"), ("Dense", "2")]
PAPER_TABLE7 = [
    ("Input", "32 x 32 x 3"),
    ("Conv2d 3x3", "32 x 32 x 32"),
    ("Conv2d 3x3", "32 x 32 x 32"),
    ("Max-Pooling 2x2", "16 x 16 x 32"),
    ("Conv2d 3x3", "16 x 16 x 64"),
    ("Conv2d 3x3", "16 x 16 x 64"),
    ("Max-Pooling 2x2", "8 x 8 x 64"),
    ("Conv2d 3x3", "8 x 8 x 128"),
    ("Conv2d 3x3", "8 x 8 x 128"),
    ("Max-Pooling 2x2", "4 x 4 x 128"),
    ("Flatten", "2048"),
    ("Dense", "2"),
]


def layer_comparison(ours: pd.DataFrame, paper: Sequence[tuple[str, str]]) -> pd.DataFrame:
    """Row by row: the paper's layer and output shape beside ours (from the model definition)."""
    length = max(len(ours), len(paper))
    rows = []
    for i in range(length):
        p_layer, p_shape = paper[i] if i < len(paper) else (None, None)
        o = ours.iloc[i] if i < len(ours) else None
        o_layer = None if o is None else o["layer"]
        o_shape = None if o is None else o["output_shape"]
        rows.append(
            {
                "position": i + 1,
                "paper_layer": p_layer,
                "paper_shape": p_shape,
                "reproduced_layer": o_layer,
                "reproduced_shape": o_shape,
                "match": p_layer == o_layer and p_shape == o_shape,
            }
        )
    return pd.DataFrame.from_records(rows)


def figure6_comparison(
    pooled: pd.DataFrame, paper_min_width: int, level: float = 0.9
) -> pd.DataFrame:
    """Figure 6's claim as numbers: the smallest width from which the linear detector separates.

    The paper's reading of its Figure 6 is that from ``paper_min_width`` (160 px) on, a linear
    model detects well; ours is the smallest width from which the pooled ACC stays at or above
    ``level`` for every larger width (NaN if it never does). Also lists the ACC and F1 at the
    paper's width and at the largest one.
    """
    frame = pooled.sort_values("width").reset_index(drop=True)
    ok = frame["acc"] >= level
    reproduced = float("nan")
    for i in range(len(frame)):
        if ok.iloc[i:].all():
            reproduced = float(frame.width.iloc[i])
            break
    rows = [
        {
            "quantity": f"smallest width with pooled ACC >= {level:g} at every larger width",
            "paper": float(paper_min_width),
            "reproduced": reproduced,
        }
    ]
    at = frame.iloc[(frame.width - paper_min_width).abs().argmin()]
    last = frame.iloc[-1]
    for row, label in ((at, "nearest the paper's width"), (last, "largest width")):
        for key in ("acc", "f1"):
            rows.append(
                {
                    "quantity": f"pooled {key.upper()} at {int(row.width)} px ({label})",
                    "paper": float("nan"),
                    "reproduced": float(row[key]),
                }
            )
    return pd.DataFrame.from_records(rows)


# --------------------------------------------------------------------------- the authors' detectors


def detector_comparison(
    ours: Mapping[str, tuple[str, Mapping[str, np.ndarray], float]],
    others: Mapping[tuple[str, str], tuple[Mapping[str, np.ndarray], float]],
    attacks: Mapping[str, Sequence[str]],
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Other detectors (the authors' published ones) against ours on the same test images.

    ``ours[dataset]`` is ``(label, scores, threshold)`` of our Table 1 detector, where
    ``scores`` holds ``clean`` and ``triggered_<attack>`` as the scoring rules write them;
    ``others[(dataset, name)]`` is ``(scores, threshold)`` of another detector on the same
    files. One row per dataset, detector and attack: BDR, FPR (percent) and AUC, and for the
    other detectors the paired difference to ours (other minus ours) with its 95% bootstrap
    interval (:func:`freqbackdoor.metrics.paired_difference`).
    """
    rows = []
    for dataset, (label, our_scores, our_threshold) in ours.items():
        detectors = [(label, our_scores, our_threshold, True)] + [
            (name, scores, threshold, False)
            for (d, name), (scores, threshold) in others.items()
            if d == dataset
        ]
        for name, scores, threshold, is_ours in detectors:
            clean = np.asarray(scores["clean"], dtype=np.float64)
            for attack in attacks[dataset]:
                triggered = np.asarray(scores[f"triggered_{attack}"], dtype=np.float64)
                row = {
                    "dataset": dataset,
                    "detector": name,
                    "ours": is_ours,
                    "attack": attack,
                    "threshold": threshold,
                    "bdr": 100 * float((triggered >= threshold).mean()),
                    "fpr": 100 * float((clean >= threshold).mean()),
                    "auc": roc_auc(clean, triggered),
                }
                if not is_ours:
                    base = (our_scores["clean"], our_scores[f"triggered_{attack}"])
                    difference = paired_difference(
                        base, (clean, triggered), (our_threshold, threshold), n_boot, seed
                    )
                    for key, value in difference.items():  # bdr, bdr_low, ..., auc_high
                        statistic, _, bound = key.partition("_")
                        scale = 1.0 if statistic == "auc" else 100.0
                        row[f"{statistic}_diff" + (f"_{bound}" if bound else "")] = scale * value
                rows.append(row)
    return pd.DataFrame.from_records(rows)


def detector_comparison_markdown(frame: pd.DataFrame) -> str:
    """Readable comparison: per dataset, attacks as rows, each detector's BDR and AUC, and the
    other detectors' differences to ours with their 95% paired-bootstrap intervals."""
    parts = [
        "# The authors' published detectors beside ours",
        "",
        "The authors' CIFAR-10 cnn6 detector (`authors_cifar10`) and the same detector after "
        "their smooth-trigger upgrade (`authors_cifar10_tuned`), converted from their Keras "
        "files, score the same clean and triggered test images as our Table 1 detector. BDR and "
        "FPR in percent at each detector's threshold (the authors': 0.5); AUC is threshold-free. "
        "Δ: that detector minus ours, with a 95% paired-bootstrap interval (both detectors "
        "scored on the same resampled images). Our datasets are stand-ins: the authors' "
        "detector was trained on CIFAR-10 itself, so on them it is a transfer, not Table 1.",
    ]
    for dataset, group in frame.groupby("dataset", sort=False):
        ours = group[group.ours]
        body = pd.DataFrame({"Attack": [_label(a) for a in ours.attack]})
        label = ours.detector.iloc[0]
        body[f"BDR {label} (ours)"] = ours.bdr.map("{:.1f}".format).values
        body[f"AUC {label} (ours)"] = ours.auc.map("{:.3f}".format).values
        fprs = [f"{label} (ours) {ours.fpr.iloc[0]:.1f}%"]
        for name, other in group[~group.ours].groupby("detector", sort=False):
            body[f"BDR {name}"] = [
                f"{r.bdr:.1f} (Δ {r.bdr_diff:+.1f} [{r.bdr_diff_low:+.1f}, {r.bdr_diff_high:+.1f}])"
                for r in other.itertuples()
            ]
            body[f"AUC {name}"] = [
                f"{r.auc:.3f} (Δ {r.auc_diff:+.3f} [{r.auc_diff_low:+.3f}, {r.auc_diff_high:+.3f}])"
                for r in other.itertuples()
            ]
            first = other.iloc[0]
            fprs.append(
                f"{name} {first.fpr:.1f}% (Δ {first.fpr_diff:+.1f} "
                f"[{first.fpr_diff_low:+.1f}, {first.fpr_diff_high:+.1f}])"
            )
        parts += ["", f"## {dataset}", "", body.to_markdown(index=False), ""]
        parts.append("FPR on clean images: " + "; ".join(fprs) + ".")
    return "\n".join(parts) + "\n"


def section5_detector_comparison(
    ours: Mapping[str, pd.DataFrame], authors: Mapping[tuple[str, str], pd.DataFrame]
) -> pd.DataFrame:
    """Section 5's triggers against every detector: ours at each stage, the authors' detectors.

    ``ours[dataset]`` is ``results/smooth/{dataset}/detection.csv`` (a ``stage`` column:
    ``section4``, then ``tuned_<trigger>`` for each upgrade); ``authors[(dataset, name)]`` the
    metrics of the authors' detector ``name`` on the same triggers. One row per dataset,
    detector and trigger; BDR and FPR in percent with their 95% intervals.
    """
    frames = []
    for dataset, frame in ours.items():
        frames.append(frame.rename(columns={"stage": "detector"}).assign(dataset=dataset))
        for (d, name), other in authors.items():
            if d == dataset:
                frames.append(other.assign(detector=name, dataset=dataset))
    table = pd.concat(frames, ignore_index=True)
    for key in ("bdr", "fpr"):
        for suffix in ("", "_low", "_high"):
            table[f"{key}{suffix}"] = 100 * table[f"{key}{suffix}"]
    columns = ["dataset", "detector", "attack", "threshold", "n_clean"]
    columns += [f"{k}{s}" for k in ("bdr", "fpr") for s in ("", "_low", "_high")]
    return table[columns + ["auc"]]


def section5_detector_markdown(frame: pd.DataFrame) -> str:
    """Readable Section 5 comparison: per dataset, triggers as rows, one BDR column per
    detector, and each detector's clean FPR."""
    parts = [
        "# Section 5's triggers: our detector and its upgrades beside the authors' detectors",
        "",
        "BDR (percent, 95% Wilson interval): the share of triggered test images flagged. "
        "`section4`: our Table 1 detector; `tuned_<trigger>`: it after each upgrade "
        "(Section 5.4); `authors_cifar10` and `authors_cifar10_tuned`: the authors' published "
        "detector before and after their own smooth-trigger upgrade, at their threshold 0.5.",
    ]
    for dataset, group in frame.groupby("dataset", sort=False):
        detectors = list(dict.fromkeys(group.detector))
        attacks = list(dict.fromkeys(group.attack))
        body = pd.DataFrame({"Trigger": [_label(a) for a in attacks]})
        for detector in detectors:
            rows = group[group.detector == detector].set_index("attack")
            body[detector] = [
                _interval(*rows.loc[a, ["bdr", "bdr_low", "bdr_high"]], digits=1)
                if a in rows.index
                else "n/a"
                for a in attacks
            ]
        fprs = "; ".join(f"{d} {group[group.detector == d].fpr.iloc[0]:.1f}%" for d in detectors)
        parts += ["", f"## {dataset}", "", body.to_markdown(index=False), ""]
        parts.append(f"FPR on clean images: {fprs}.")
    return "\n".join(parts) + "\n"
