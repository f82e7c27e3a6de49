"""The judges of claims 7-14, Section 5: the smooth trigger and the defences upgraded against it.

Each function judges one claim on one dataset's data and returns its outcome
(:func:`~.claims.claim_outcome`): the smooth trigger's spectrum is closest to natural images
(claim 7), it poisons at almost no clean-accuracy cost (8), the Section 4 detector misses it
(9), the upgraded detector catches it (10) and unseen low-pass triggers (11), filtering the
training set cuts its ASR (12), and MNA's upgrade helps on smooth-poisoned models (13) at no
cost on classic ones (14). MNA's intervals are t-intervals over the meta-classifier's seeds
(:func:`~freqbackdoor.mna.evaluation.mean_interval`), not a bootstrap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..metrics import wilson_interval
from ..mna.evaluation import auc as model_auc
from ..mna.evaluation import mean_interval
from ..models.poisoning import asr_with_rejection, attack_success_rate
from .claims import (
    FAILS,
    FEW_MODELS,
    FPR_FACTOR,
    HOLDS,
    MAX_ACC_DROP,
    MAX_CLASSIC_AUC_LOSS,
    MAX_SMOOTH_RATIO,
    MIN_ASR,
    MIN_ASR_CUT,
    MIN_UPGRADE_BDR,
    claim_outcome,
    criterion_text,
    format_interval,
    format_percent,
    format_percent_interval,
    not_measured,
)
from .claims_statistics import bootstrap, mean_rate_interval, percentile_interval


def smooth_lowest_highfreq(
    smooth: Mapping[str, float],
    ratios: pd.DataFrame,
    official: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Claim 7: the smooth trigger's HF ratio (``ratio``, ``ci_low``, ``ci_high``) against the
    Section 3 triggers' rows of the same dataset; ``official`` is the authors' trigger's row
    (``ratio``, ``ci_low``, ``ci_high``, ``note``) when the table has one."""
    criterion = criterion_text("smooth_lowest_highfreq")
    if ratios.empty:
        return not_measured("no Section 3 trigger in tables/highfreq_ratio.csv", criterion)
    value = float(smooth["ratio"])
    lowest = ratios.loc[ratios["ratio"].idxmin()]
    measured = (
        f"smooth {format_interval(value, smooth['ci_low'], smooth['ci_high'])}; lowest Section 3 "
        f"trigger {lowest.attack} {lowest.ratio:.3f}"
    )
    if official is not None:
        ratio = official.get("ratio")
        if ratio is not None and np.isfinite(ratio):
            measured += (
                "; authors' published trigger "
                f"{format_interval(float(ratio), official['ci_low'], official['ci_high'])}"
            )
        else:
            note = str(official.get("note") or "not measured").split(" (")[0]
            measured += f"; authors' published trigger: {note}"
    below, small = value < lowest.ratio, value <= MAX_SMOOTH_RATIO
    verdict = HOLDS if below and small else FAILS
    reason = (
        f"smooth ratio {value:.3f} is {'below' if below else 'not below'} {lowest.attack}'s "
        f"{lowest.ratio:.3f} and {'<=' if small else '>'} {MAX_SMOOTH_RATIO}"
    )
    return claim_outcome(
        verdict, reason, measured, value, (smooth["ci_low"], smooth["ci_high"]), criterion
    )


def _non_target(predictions: Mapping[str, np.ndarray]) -> tuple[np.ndarray, int]:
    labels = np.asarray(predictions["labels"])
    target = int(predictions["target"])
    return labels != target, target


def smooth_poisoning_effective(
    predictions: Mapping[str, np.ndarray], clean_acc_drop: float
) -> dict[str, Any]:
    """Claim 8: the smooth-poisoned model's ASR (Wilson interval from its test predictions:
    ``triggered``, ``labels``, ``target``) and its clean-accuracy drop (points)."""
    criterion = criterion_text("smooth_poisoning_effective")
    keep, target = _non_target(predictions)
    hits = np.asarray(predictions["triggered"])[keep] == target
    k, n = int(hits.sum()), int(hits.size)
    asr = 100.0 * k / n
    low, high = (100.0 * v for v in wilson_interval(k, n))
    measured = (
        f"ASR {format_percent_interval(asr, low, high)} ({k} of {n}); clean-accuracy drop {clean_acc_drop:.2f} "
        "points"
    )
    asr_ok, drop_ok = asr >= MIN_ASR, clean_acc_drop <= MAX_ACC_DROP
    verdict = HOLDS if asr_ok and drop_ok else FAILS
    reason = (
        f"ASR {format_percent(asr)} {'>=' if asr_ok else '<'} {MIN_ASR:.0f}% and drop "
        f"{clean_acc_drop:.2f} {'<=' if drop_ok else '>'} {MAX_ACC_DROP:g} points"
    )
    return claim_outcome(verdict, reason, measured, asr, (low, high), criterion)


def _stage_flags(scores: Mapping[str, np.ndarray], stage: str, attack: str) -> np.ndarray:
    return np.asarray(scores[f"{stage}__{attack}"]) >= float(scores[f"{stage}__threshold"])


def untuned_detector_misses_smooth(
    smooth_scores: Mapping[str, np.ndarray],
    table1_triggered: Mapping[str, np.ndarray],
    table1_threshold: float,
    seed: int = 0,
) -> dict[str, Any]:
    """Claim 9: the Section 4 detector's BDR on the smooth trigger (stage ``section4`` of the
    smooth_detection rule's scores, Wilson) against its mean BDR over Table 1's attacks
    (bootstrap), with non-overlapping intervals."""
    criterion = criterion_text("untuned_detector_misses_smooth")
    flags = _stage_flags(smooth_scores, "section4", "smooth")
    k, n = int(flags.sum()), flags.size
    bdr = 100.0 * k / n
    low, high = (100.0 * v for v in wilson_interval(k, n))
    others = [np.asarray(s) >= table1_threshold for s in table1_triggered.values()]
    mean, mean_low, mean_high = mean_rate_interval(others, seed)
    measured = (
        f"smooth BDR {format_percent_interval(bdr, low, high)} vs Table 1 mean BDR "
        f"{format_percent_interval(mean, mean_low, mean_high)} over {len(others)} attacks"
    )
    separated = high < mean_low
    verdict = HOLDS if separated else FAILS
    reason = (
        f"smooth upper bound {high:.1f}% is {'below' if separated else 'not below'} the Table "
        f"1 lower bound {mean_low:.1f}%"
    )
    return claim_outcome(verdict, reason, measured, bdr, (low, high), criterion)


def upgrade_catches_smooth(
    scores: Mapping[str, np.ndarray],
    target: float,
    seed: int = 0,
    tuning: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Claim 10: stage ``tuned_smooth`` against ``section4`` on the smooth trigger's images.

    ``tuning``, the upgraded detector's sidecar, adds how long it was fine-tuned and its last
    training accuracy to ``measured``: a fine-tuning still at chance explains a miss."""
    criterion = criterion_text("upgrade_catches_smooth", target)
    before = _stage_flags(scores, "section4", "smooth")
    after = _stage_flags(scores, "tuned_smooth", "smooth")
    k, n = int(after.sum()), after.size
    bdr = 100.0 * k / n
    low, high = (100.0 * v for v in wilson_interval(k, n))
    difference = bdr - 100.0 * before.mean()

    def statistic(draws: list[np.ndarray]) -> np.ndarray:
        return 100.0 * (after[draws[0]].mean(axis=1) - before[draws[0]].mean(axis=1))

    diff_low, diff_high = percentile_interval(bootstrap([n], statistic, seed))
    clean = _stage_flags(scores, "tuned_smooth", "clean")
    fpr = 100.0 * clean.mean()
    limit = 100.0 * FPR_FACTOR * target
    measured = (
        f"BDR {format_percent_interval(bdr, low, high)} after vs {format_percent(100.0 * before.mean())} before "
        f"(difference {format_interval(difference, diff_low, diff_high, digits=1, sign=True)} points); "
        f"clean FPR after {format_percent(fpr)}"
    )
    history = (tuning or {}).get("history") or {}
    if history.get("train_acc"):
        epochs = len(history["train_acc"])
        measured += (
            f"; fine-tuned on {tuning.get('fine_tune_samples')} images for {epochs} "
            f"epoch{'s' if epochs != 1 else ''}, last training accuracy "
            f"{format_percent(100.0 * history['train_acc'][-1])}"
        )
    bdr_ok, diff_ok, fpr_ok = bdr >= MIN_UPGRADE_BDR, diff_low > 0, fpr <= limit + 1e-9
    verdict = HOLDS if bdr_ok and diff_ok and fpr_ok else FAILS
    reason = (
        f"BDR {format_percent(bdr)} {'>=' if bdr_ok else '<'} {MIN_UPGRADE_BDR:.0f}%; difference lower "
        f"bound {diff_low:+.1f} {'>' if diff_ok else '<='} 0; clean FPR {format_percent(fpr)} "
        f"{'<=' if fpr_ok else '>'} {limit:.1f}%"
    )
    return claim_outcome(verdict, reason, measured, bdr, (low, high), criterion)


def upgrade_catches_unseen_lowpass(
    scores: Mapping[str, np.ndarray], lowpass: Sequence[str], seed: int = 0
) -> dict[str, Any]:
    """Claim 11: the ``tuned_smooth`` stage's mean BDR on the naive low-pass triggers."""
    criterion = criterion_text("upgrade_catches_unseen_lowpass")
    lowpass = list(lowpass)
    if not lowpass:
        return not_measured("no naive low-pass trigger (smooth.naive is empty)", criterion)
    flags = [_stage_flags(scores, "tuned_smooth", a) for a in lowpass]
    bdr, low, high = mean_rate_interval(flags, seed)
    before = 100.0 * np.mean([_stage_flags(scores, "section4", a).mean() for a in lowpass])
    measured = (
        f"mean BDR {format_percent_interval(bdr, low, high)} over {len(lowpass)} triggers "
        f"({', '.join(lowpass)}); {format_percent(before)} before the upgrade"
    )
    ok = bdr >= MIN_UPGRADE_BDR
    verdict = HOLDS if ok else FAILS
    reason = f"mean BDR {format_percent(bdr)} {'>=' if ok else '<'} {MIN_UPGRADE_BDR:.0f}%"
    return claim_outcome(verdict, reason, measured, bdr, (low, high), criterion)


def filtering_cuts_asr(
    predictions: Mapping[str, np.ndarray],
    filtered_predictions: Mapping[str, np.ndarray],
    scores: Mapping[str, np.ndarray],
    seed: int = 0,
) -> dict[str, Any]:
    """Claim 12: ASR of the smooth-poisoned model minus the ASR of the model retrained on the
    filtered training set with the upgraded detector rejecting flagged inputs (Section 5's
    ``asr_with_detector_filtering_training_set``), paired over the same triggered images."""
    criterion = criterion_text("filtering_cuts_asr")
    keep, target = _non_target(predictions)
    labels = np.asarray(predictions["labels"])
    triggered = np.asarray(predictions["triggered"])
    filtered = np.asarray(filtered_predictions["triggered"])
    flagged = _stage_flags(scores, "tuned_smooth", "smooth")
    asr = 100.0 * attack_success_rate(triggered, labels, target)
    with_filter = 100.0 * asr_with_rejection(filtered, flagged, labels, target)
    at_inference = 100.0 * asr_with_rejection(triggered, flagged, labels, target)
    plain = (triggered == target)[keep]
    cut = ((filtered == target) & ~flagged)[keep]
    difference = asr - with_filter

    def statistic(draws: list[np.ndarray]) -> np.ndarray:
        return 100.0 * (plain[draws[0]].mean(axis=1) - cut[draws[0]].mean(axis=1))

    low, high = percentile_interval(bootstrap([plain.size], statistic, seed))
    measured = (
        f"ASR {format_percent(asr)} -> {format_percent(with_filter)} with the training set filtered (cut "
        f"{format_interval(difference, low, high, digits=1)} points); {format_percent(at_inference)} with the "
        "detector at inference only"
    )
    ok = difference >= MIN_ASR_CUT
    verdict = HOLDS if ok else FAILS
    reason = f"ASR cut {difference:.1f} points {'>=' if ok else '<'} {MIN_ASR_CUT:.0f}"
    return claim_outcome(verdict, reason, measured, difference, (low, high), criterion)


def _seed_aucs(scores: pd.DataFrame, stage: str, kind: str) -> pd.Series:
    """Per meta-classifier seed: AUC of ``kind``'s target models against the clean ones."""
    frame = scores[scores["stage"] == stage]
    values = {}
    for seed, run in frame.groupby("seed", sort=True):
        clean = run.loc[run["kind"] == "clean", "score"].to_numpy()
        trojaned = run.loc[run["kind"] == kind, "score"].to_numpy()
        values[int(seed)] = model_auc(clean, trojaned)
    return pd.Series(values, dtype=np.float64)


def _seed_difference(scores: pd.DataFrame, kind: str) -> pd.Series:
    before, after = _seed_aucs(scores, "before", kind), _seed_aucs(scores, "after", kind)
    common = before.index.intersection(after.index)
    if common.empty:
        raise ValueError(f"MNA scores hold no seed with both stages for {kind!r}")
    return after[common] - before[common]


def mna_smooth_harder_before(scores: pd.DataFrame) -> dict[str, Any]:
    """Claim 13 on ``mna/<dataset>/scores.csv`` (stage, seed, kind, index, trojaned, score)."""
    criterion = criterion_text("mna_smooth_harder_before")
    if not (scores["kind"] == "smooth").any():
        return not_measured("no smooth-poisoned target model (mna.target_models.smooth)", criterion)
    differences = _seed_difference(scores, "smooth")
    mean, low, high = mean_interval(differences.to_numpy())
    before = float(_seed_aucs(scores, "before", "smooth").mean())
    after = float(_seed_aucs(scores, "after", "smooth").mean())
    first = scores[(scores["stage"] == "before") & (scores["seed"] == differences.index[0])]
    n_clean = int((first["kind"] == "clean").sum())
    n_smooth = int((first["kind"] == "smooth").sum())
    measured = (
        f"AUC {before:.3f} before -> {after:.3f} after; difference "
        f"{format_interval(mean, low, high, sign=True)} over {differences.size} seeds; "
        f"{n_clean} clean + {n_smooth} smooth target models"
    )
    if not np.isfinite(low):
        verdict, reason = FAILS, f"one seed gives no interval (difference {mean:+.3f})"
    elif low > 0:
        verdict, reason = HOLDS, f"the difference's lower bound {low:+.3f} is above 0"
    else:
        verdict, reason = FAILS, f"the difference's lower bound {low:+.3f} is not above 0"
    if n_clean + n_smooth < FEW_MODELS:
        reason += (
            f"; only {n_clean + n_smooth} target models (< {FEW_MODELS}): the AUCs are coarse "
            "and the interval, over seeds only, leaves out the choice of models"
        )
    return claim_outcome(verdict, reason, measured, mean, (low, high), criterion)


def mna_classic_no_cost(scores: pd.DataFrame, classic: Sequence[str]) -> dict[str, Any]:
    """Claim 14: MNA AUC after - before the upgrade on each classic trigger's target models."""
    criterion = criterion_text("mna_classic_no_cost")
    kinds = [k for k in classic if (scores["kind"] == k).any()]
    if not kinds:
        return not_measured(
            "no classic-poisoned target model (mna.classic or mna.target_models.classic)",
            criterion,
        )
    differences = {k: _seed_difference(scores, k) for k in kinds}
    per_kind = {k: float(d.mean()) for k, d in differences.items()}
    per_seed = pd.concat(differences, axis=1).mean(axis=1)
    mean, low, high = mean_interval(per_seed.to_numpy())
    worst = min(kinds, key=lambda k: per_kind[k])
    measured = (
        f"mean AUC change {format_interval(mean, low, high, sign=True)} over {len(kinds)} kinds "
        f"({', '.join(kinds)}); worst {worst} {per_kind[worst]:+.3f}"
    )
    failing = [k for k in kinds if per_kind[k] < -MAX_CLASSIC_AUC_LOSS]
    if failing:
        verdict = FAILS
        listed = ", ".join(f"{k} {per_kind[k]:+.3f}" for k in failing)
        reason = f"AUC falls by more than {MAX_CLASSIC_AUC_LOSS} for {listed}"
    else:
        verdict = HOLDS
        reason = f"worst change {worst} {per_kind[worst]:+.3f} >= -{MAX_CLASSIC_AUC_LOSS}"
    return claim_outcome(verdict, reason, measured, mean, (low, high), criterion)
