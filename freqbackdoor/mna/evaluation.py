"""Scoring Meta Neural Analysis (Section 5.4): AUC over meta-training seeds, and MNA's tables.

* :func:`auc_summary` scores the *target models* (clean, smooth-poisoned, classic-poisoned) by
  AUC over several meta-training seeds, with a 95% t-interval across seeds.
* :func:`mna_rows` and :func:`paper_mna` put our numbers and the paper's (``mna`` in
  paper_numbers.yaml) in the long format of :func:`freqbackdoor.metrics.compare`;
  :func:`mna_table` is a dataset's table of target models, before and after the upgrade.

The meta-classifier that gives the scores is :mod:`freqbackdoor.mna.meta`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.stats
from sklearn.metrics import roc_auc_score

from ..errors import ConfigError, DataError

# --------------------------------------------------------------------------- evaluation


def auc(clean_scores: Sequence[float], trojaned_scores: Sequence[float]) -> float:
    """ROC AUC of telling trojaned from clean models by score (scikit-learn)."""
    clean, trojaned = np.asarray(clean_scores, float), np.asarray(trojaned_scores, float)
    if clean.size == 0 or trojaned.size == 0:
        raise DataError(
            f"AUC needs both kinds of model, got {clean.size} clean, {trojaned.size} trojaned"
        )
    labels = np.r_[np.zeros(clean.size), np.ones(trojaned.size)]
    return float(roc_auc_score(labels, np.r_[clean, trojaned]))


def mean_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and two-sided t-interval of ``values`` (NaN bounds for fewer than two)."""
    array = np.asarray(values, dtype=np.float64)
    mean = float(array.mean())
    if array.size < 2:
        return mean, math.nan, math.nan
    half = scipy.stats.t.ppf(0.5 + confidence / 2, array.size - 1) * array.std(ddof=1)
    half /= math.sqrt(array.size)
    return mean, mean - float(half), mean + float(half)


def auc_summary(scores: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """Per stage and trojaned kind: AUC, detection rate and accuracy over meta seeds.

    ``scores`` has one row per (``stage``, ``seed``, target model) with ``kind`` (``clean`` or
    a trigger), ``trojaned`` (0/1) and ``score``. Each trojaned kind is measured against the
    clean targets: ``auc`` (mean over seeds, with ``auc_low``/``auc_high``, the 95%
    t-interval clipped to [0, 1]), ``detection_rate`` (share of that kind's models flagged at ``threshold``,
    percent) and ``accuracy`` (clean and that kind together, percent), both means over seeds.
    """
    records = []
    for stage, frame in scores.groupby("stage", sort=False):
        kinds = [k for k in frame.loc[frame["trojaned"] == 1, "kind"].unique()]
        for kind in kinds:
            aucs, rates, accuracies = [], [], []
            for _, run in frame.groupby("seed"):
                clean = run.loc[run["kind"] == "clean", "score"].to_numpy()
                trojaned = run.loc[run["kind"] == kind, "score"].to_numpy()
                aucs.append(auc(clean, trojaned))
                rates.append(100.0 * float(np.mean(trojaned > threshold)))
                right = np.sum(clean <= threshold) + np.sum(trojaned > threshold)
                accuracies.append(100.0 * right / (clean.size + trojaned.size))
            mean, low, high = mean_interval(aucs)
            low, high = max(low, 0.0), min(high, 1.0)  # an AUC lies in [0, 1]
            records.append(
                {
                    "stage": stage,
                    "kind": kind,
                    "auc": mean,
                    "auc_low": low,
                    "auc_high": high,
                    "auc_seeds": " ".join(f"{a:.4f}" for a in aucs),
                    "detection_rate": float(np.mean(rates)),
                    "accuracy": float(np.mean(accuracies)),
                    "seeds": len(aucs),
                    "clean_models": int((frame["kind"] == "clean").sum() // len(aucs)),
                    "trojaned_models": int((frame["kind"] == kind).sum() // len(aucs)),
                }
            )
    return pd.DataFrame.from_records(records)


#: The paper's MNA numbers (``mna`` in paper_numbers.yaml) and our rows/columns for them: the
#: AUC against smooth-poisoned targets before and after the upgrade, and the share of
#: smooth-poisoned targets the upgraded MNA flags (see docs/mna.md on this reading).
PAPER_KEYS = {
    "auc_before_upgrade": ("smooth", "auc_before"),
    "auc_after_upgrade": ("smooth", "auc_after"),
    "detection_accuracy_after_upgrade": ("smooth", "detection_rate_after"),
}


def mna_rows(dataset: str, summary: pd.DataFrame) -> list[dict[str, Any]]:
    """One dataset's MNA numbers in the long format of :func:`freqbackdoor.metrics.compare`.

    ``row`` is the trojaned kind of the targets, ``column`` the metric and stage (``auc_before``,
    ``auc_after``, their intervals, ``detection_rate_*``, ``accuracy_*``).
    """
    records = []
    for _, row in summary.iterrows():
        for metric in ("auc", "auc_low", "auc_high", "detection_rate", "accuracy"):
            records.append(
                {
                    "table": "mna",
                    "dataset": dataset,
                    "row": row["kind"],
                    "column": f"{metric}_{row['stage']}",
                    "reproduced": float(row[metric]),
                }
            )
    return records


def paper_mna(block: Mapping[str, Any], dataset: str) -> pd.DataFrame:
    """The paper's ``mna`` block in long format, for ``dataset`` (the paper: CIFAR-10)."""
    records = []
    for key, value in block.items():
        if key not in PAPER_KEYS:
            raise ConfigError(
                f"paper numbers: unknown mna key {key!r}; known: {sorted(PAPER_KEYS)}"
            )
        row, column = PAPER_KEYS[key]
        records.append(
            {
                "table": "mna",
                "dataset": dataset,
                "row": row,
                "column": column,
                "paper": float(value),
            }
        )
    return pd.DataFrame.from_records(records)


def mna_table(dataset: str, summary: pd.DataFrame, meta: Mapping[str, Any]) -> pd.DataFrame:
    """One row per trojaned kind of target: its models' mean ASR and clean accuracy (percent),
    then AUC (with interval), detection rate and accuracy before and after the upgrade."""
    records = []
    for kind in dict.fromkeys(summary["kind"]):
        record: dict[str, Any] = {
            "dataset": dataset,
            "targets": kind,
            "models": int(summary.loc[summary["kind"] == kind, "trojaned_models"].iloc[0]),
            "target_asr": 100.0 * float(meta["target_asr"][kind]),
            "target_clean_acc": 100.0 * float(meta["target_clean_acc"][kind]),
        }
        for stage in ("before", "after"):
            rows = summary[(summary["kind"] == kind) & (summary["stage"] == stage)]
            if len(rows) != 1:
                raise DataError(f"MNA metrics of {dataset}: no {stage!r} row for targets {kind!r}")
            row = rows.iloc[0]
            record[f"auc_{stage}"] = float(row["auc"])
            record[f"auc_{stage}_ci"] = f"[{row['auc_low']:.3f}, {row['auc_high']:.3f}]"
            record[f"detection_rate_{stage}"] = float(row["detection_rate"])
            record[f"accuracy_{stage}"] = float(row["accuracy"])
        records.append(record)
    return pd.DataFrame.from_records(records)
