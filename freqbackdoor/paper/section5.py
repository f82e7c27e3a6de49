"""The Section-5 table: every number the paper gives for the smooth trigger, reproduced.

The published numbers (``smooth_trigger`` in ``config/paper_numbers.yaml``) are nested per
dataset; :func:`paper_section5` flattens them into the long format of
:func:`freqbackdoor.metrics.compare`: ``row`` is the nested block (``attack`` for the scalars),
``column`` the key. :func:`section5_rows` computes the same keys, and a few more, from one
dataset's artifacts, so that both papers' datasets get every number (CIFAR-10's naive
baselines are measured on GTSRB's stand-in too, where configured, and GTSRB's before/after
detection on CIFAR-10's). Units follow the paper: percentages for accuracies, ASRs and
detection rates, fractions for F1, plain numbers for distances and counts.

Two readings of the paper are choices, documented in docs/deviations.md:

* ``asr_with_detector_filtering_training_set``: the model retrained on the training set without
  the samples the upgraded detector flags, with that detector also rejecting flagged inputs at
  inference (the paper's 18.03% is just below its 19.72% at inference alone, which fits this
  reading); the retrained model alone is ``asr_filtered_training_only``.
* ``generalizes`` (after fine-tuning on one naive low-pass pattern): 1 when the mean detection
  rate over the other filtered triggers (the other naive ones and the smooth one) is at least 50%.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..metrics import KEYS
from ..models.poisoning import asr_with_rejection, attack_success_rate

TABLE = "section5"
SUMMARY = "attack"


def paper_section5(block: Mapping[str, Any]) -> pd.DataFrame:
    """The paper's ``smooth_trigger`` block in long format (booleans as 0/1)."""
    records = []
    for dataset, numbers in block.items():
        for key, value in numbers.items():
            items = value.items() if isinstance(value, Mapping) else [(key, value)]
            row = key if isinstance(value, Mapping) else SUMMARY
            for column, number in items:
                records.append(
                    {
                        "table": TABLE,
                        "dataset": dataset,
                        "row": row,
                        "column": column,
                        "paper": float(number),
                    }
                )
    return pd.DataFrame.from_records(records, columns=[*KEYS, "paper"])


def _bdr(metrics: pd.DataFrame, stage: str, attack: str) -> float:
    rows = metrics[(metrics["stage"] == stage) & (metrics["attack"] == attack)]
    if len(rows) != 1:
        raise KeyError(f"no detection metrics for stage {stage!r}, trigger {attack!r}")
    return float(rows["bdr"].iloc[0])


def _f1(metrics: pd.DataFrame, stage: str, attack: str) -> float:
    rows = metrics[(metrics["stage"] == stage) & (metrics["attack"] == attack)]
    return float(rows["f1"].iloc[0])


def _flags(scores: Mapping[str, np.ndarray], stage: str, attack: str) -> np.ndarray:
    return np.asarray(scores[f"{stage}__{attack}"]) >= float(scores[f"{stage}__threshold"])


def section5_rows(
    dataset: str,
    *,
    baseline_acc: float,
    trigger_meta: Mapping[str, Any],
    target_label: int,
    models: Mapping[str, Mapping[str, Any]],
    histories: Mapping[str, pd.DataFrame],
    smooth_predictions: Mapping[str, np.ndarray],
    filtered_predictions: Mapping[str, np.ndarray],
    filtered_info: Mapping[str, Any],
    metrics: pd.DataFrame,
    scores: Mapping[str, np.ndarray],
    distances: pd.DataFrame,
    naive: Sequence[str],
    spec: Mapping[str, Any],
    highfreq: Mapping[str, float],
) -> list[dict[str, Any]]:
    """Our value of every Section-5 number for one dataset, as ``compare``'s long rows.

    ``models[trigger]`` is a poisoned model's ``metrics`` (final ``clean_acc``, ``asr``),
    ``histories[trigger]`` its per-epoch frame; ``*_predictions`` hold ``triggered``,
    ``labels`` and ``target`` of the smooth-poisoned model and of the one retrained on the
    filtered training set; ``metrics``/``scores``/``distances`` are the smooth_detection rule's.
    """
    rows: list[tuple[str, str, float]] = []

    def put(row: str, column: str, value: float | None) -> None:
        if value is not None and np.isfinite(value):
            rows.append((row, column, float(value)))

    smooth = models["smooth"]
    history = histories["smooth"]
    first = history.iloc[0]
    put(SUMMARY, "poison_rate", spec["poison_share"])
    put(SUMMARY, "asr", 100 * smooth["asr"])
    put(SUMMARY, "clean_acc", 100 * smooth["clean_acc"])
    put(SUMMARY, "baseline_clean_acc", 100 * baseline_acc)
    put(SUMMARY, "asr_after_one_epoch_approx", 100 * first["asr"])
    put(SUMMARY, "asr_after_one_epoch_min", 100 * first["asr"])
    put(SUMMARY, "train_acc_after_one_epoch", 100 * first["train_acc"])
    put(SUMMARY, "dominant_label", target_label)
    put(SUMMARY, "dominant_label_official", target_label)
    # the history's first record is pass 0, the zero trigger
    put(SUMMARY, "search_passes", max(0, len(trigger_meta.get("history", [])) - 1))
    put(SUMMARY, "search_error_rate", 100 * trigger_meta.get("best_error_rate", np.nan))
    put(SUMMARY, "highfreq_ratio", highfreq["ratio"])
    put(SUMMARY, "highfreq_ratio_low", highfreq["ci_low"])
    put(SUMMARY, "highfreq_ratio_high", highfreq["ci_high"])

    target = int(smooth_predictions["target"])
    labels = np.asarray(smooth_predictions["labels"])
    triggered = np.asarray(smooth_predictions["triggered"])
    put(SUMMARY, "asr_check", 100 * attack_success_rate(triggered, labels, target))
    after = _flags(scores, "tuned_smooth", "smooth")
    before = _flags(scores, "section4", "smooth")
    at_inference_after = 100 * asr_with_rejection(triggered, after, labels, target)
    at_inference_before = 100 * asr_with_rejection(triggered, before, labels, target)
    filtered_triggered = np.asarray(filtered_predictions["triggered"])
    filtered_only = 100 * attack_success_rate(filtered_triggered, labels, target)
    filtered_both = 100 * asr_with_rejection(filtered_triggered, after, labels, target)
    put(SUMMARY, "asr_with_detector_at_inference", at_inference_after)
    put(SUMMARY, "asr_with_detector_filtering_training_set", filtered_both)
    put(SUMMARY, "asr_filtered_training_only", filtered_only)
    put(SUMMARY, "filtered_poisoned_removed", filtered_info.get("removed_poisoned"))
    put(SUMMARY, "filtered_clean_removed", filtered_info.get("lost_clean"))

    tuned = distances[distances["stage"] == "tuned_smooth"].sort_values("distance")
    if len(tuned):
        smooth_distance = tuned.loc[tuned["trigger"] == "smooth", "distance"]
        put(SUMMARY, "closest_distance_to_clean_representative", float(smooth_distance.iloc[0]))
        put(SUMMARY, "smooth_is_closest", float(tuned["trigger"].iloc[0] == "smooth"))

    if naive:
        put("naive_lowpass_triggers", "count", len(naive))
        put("naive_lowpass_triggers", "mean_asr", 100 * np.mean([models[t]["asr"] for t in naive]))
        put(
            "naive_lowpass_triggers",
            "mean_clean_acc",
            100 * np.mean([models[t]["clean_acc"] for t in naive]),
        )
        put(
            "naive_lowpass_triggers",
            "mean_asr_after_one_epoch",
            100 * np.mean([histories[t].iloc[0]["asr"] for t in naive]),
        )
        lowpass = spec["lowpass_tune"]
        stage = f"tuned_{lowpass}"
        if stage in set(metrics["stage"]):
            others = [t for t in ["smooth", *naive] if t != lowpass]
            other_mean = np.mean([_bdr(metrics, stage, t) for t in others])
            block = "detector_finetuned_on_lowpass_patterns"
            put(block, "same_trigger_accuracy", 100 * _bdr(metrics, stage, lowpass))
            put(block, "other_filtered_mean_detection", 100 * other_mean)
            put(block, "smooth_detection", 100 * _bdr(metrics, stage, "smooth"))
            put(block, "generalizes", float(other_mean >= 0.5))
        block = "detector_finetuned_on_smooth"
        put(block, "samples", spec["upgrade_samples"])
        put(block, "epochs", spec["fine_tune"]["epochs"])
        put(block, "smooth_accuracy", 100 * _bdr(metrics, "tuned_smooth", "smooth"))
        put(
            block,
            "unseen_lowpass_mean_detection",
            100 * np.mean([_bdr(metrics, "tuned_smooth", t) for t in naive]),
        )
        put(
            "detector_section4",
            "unseen_lowpass_mean_detection",
            100 * np.mean([_bdr(metrics, "section4", t) for t in naive]),
        )
    else:
        block = "detector_finetuned_on_smooth"
        put(block, "samples", spec["upgrade_samples"])
        put(block, "epochs", spec["fine_tune"]["epochs"])
        put(block, "smooth_accuracy", 100 * _bdr(metrics, "tuned_smooth", "smooth"))

    put("detector_before_upgrade", "bdr", 100 * _bdr(metrics, "section4", "smooth"))
    put("detector_before_upgrade", "f1", _f1(metrics, "section4", "smooth"))
    put("detector_before_upgrade", "asr_with_detector", at_inference_before)
    put("detector_after_upgrade", "bdr", 100 * _bdr(metrics, "tuned_smooth", "smooth"))
    put("detector_after_upgrade", "f1", _f1(metrics, "tuned_smooth", "smooth"))
    put("detector_after_upgrade", "asr_with_detector_at_inference", at_inference_after)
    put("detector_after_upgrade", "asr_with_detector_filtering_training_set", filtered_both)
    return [
        {"table": TABLE, "dataset": dataset, "row": row, "column": column, "reproduced": value}
        for row, column, value in rows
    ]


def poisoned_models_table(
    dataset: str,
    baseline_acc: float,
    models: Mapping[str, Mapping[str, Any]],
    histories: Mapping[str, pd.DataFrame],
    targets: Mapping[str, int],
    filtered: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Final ASR and clean accuracy per poisoning trigger, beside the clean model's accuracy.

    Percentages; ``asr_epoch1`` and ``train_acc_epoch1`` show how early the backdoor is learnt.
    ``filtered`` (the smooth model retrained without the flagged samples) adds a row.
    """
    records = []
    entries = [(name, models[name], histories[name]) for name in models]
    if filtered is not None:
        entries.append(("smooth (filtered training set)", filtered["metrics"], filtered["history"]))
    for name, info, history in entries:
        records.append(
            {
                "dataset": dataset,
                "trigger": name,
                "target_label": targets.get(name.split(" ")[0]),
                "epochs": int(len(history)),
                "clean_acc": 100 * info["clean_acc"],
                "baseline_clean_acc": 100 * baseline_acc,
                "clean_acc_drop": 100 * (baseline_acc - info["clean_acc"]),
                "asr": 100 * info["asr"],
                "asr_epoch1": 100 * float(history.iloc[0]["asr"]),
                "train_acc_epoch1": 100 * float(history.iloc[0]["train_acc"]),
            }
        )
    return pd.DataFrame.from_records(records)
