"""The paper's qualitative claims, each judged on this run's data: the ``claims`` report.

The comparison files (``*_vs_paper.csv``) put every published number beside ours; they do not
say whether the paper's *statements* survive the reproduction. The claims report does: each
claim of the paper (triggers carry high-frequency energy, a frequency detector flags them, it
beats the pixel domain, ...) becomes one row per dataset (or transfer column, named in
``setting``) with the measured number, its 95% interval, the rule applied and a verdict,
exactly one of :data:`VERDICTS`. The report states what the data say; it does not defend the
paper, and a claim whose inputs this configuration does not produce is ``not measured``, with
the missing file or config block.

This module holds what the claims are and how they are judged in words: the claim records
(:data:`CLAIMS`), the criteria (the module constants below and :data:`CRITERIA`), the outcome
of one row (:func:`claim_outcome`, :func:`not_measured`, the ``format_*`` helpers of its
``measured`` text) and the report's CSV and Markdown. The judges are by subject:
:mod:`.claims_detection` (claims 1-6: Sections 3 and 4) and :mod:`.claims_smooth` (claims
7-14: Section 5); :mod:`.claims_statistics` holds their intervals and :mod:`.claims_run`
judges a whole run's results folder (:func:`~.claims_run.claims_table`).

Criteria are the module constants below, the same at demo and paper scale (never tuned to
one run's numbers). Intervals are 95%:

* rates of one binomial count (an ASR, a clean FPR, one BDR): Wilson score intervals;
* everything else computed from per-image scores: a percentile bootstrap of :data:`N_BOOT`
  resamples with ``numpy.random.default_rng(seed)`` (the config's ``seed``, else 0), a fresh
  generator per claim row so that rows do not depend on each other. Each resample draws, chunk
  by chunk of resamples, one index array per group of images in the order the claim lists
  them (:func:`~.claims_statistics.bootstrap`); comparisons of two detectors on the same
  images reuse the same indices for both (a paired bootstrap);
* MNA's claims (13, 14): a t-interval over the meta-classifier's seeds, paired by seed, as
  the MNA table's intervals (a bootstrap of 3-5 seeds would understate the spread).

Floats are rounded to :data:`DECIMALS` decimals in the CSV and the text holds no timestamps,
so the files are byte-identical from run to run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# --------------------------------------------------------------------------- constants

#: The only verdicts a row can have.
HOLDS, FAILS, NOT_MEASURED = "holds", "does not hold", "not measured"
VERDICTS = (HOLDS, FAILS, NOT_MEASURED)

#: Bootstrap resamples and the two-sided confidence level of every interval.
N_BOOT = 2000
CONFIDENCE = 0.95

#: Decimals of the floats written to the CSV (stable text from run to run).
DECIMALS = 4

#: Claim 2's attacks: Table 1's patch and noise triggers, i.e. every Table 1 attack except the
#: image-blending ones (blend, nature), wherever the dataset has them.
PATCH_NOISE_ATTACKS = ("badnets", "trojan_sq", "trojan_wm", "l2_inv", "l0_inv", "gan_tri")

#: A detection claim holds when the mean BDR is at least this (percent) ...
MIN_BDR = 80.0
#: ... with the clean test FPR at most this multiple of the target rate: ``detection.target_fpr``
#: when set, else :data:`NOMINAL_FPR` (the paper's fixed threshold 0.5 targets no rate; its
#: Table 1 implies a CIFAR-10 clean FPR of about 2.3%, FPR = 100 - (2 ACC - BDR)).
FPR_FACTOR = 2.0
NOMINAL_FPR = 0.05

#: Claim 4: the linear detector's mean AUC at the largest width must reach this.
MIN_WIDTH_AUC = 0.9

#: Claim 6: a raw detector at or above this mean ACC (percent) leaves no room to improve.
RAW_CEILING = 99.0

#: Claim 7: the smooth trigger's high-frequency energy ratio must be at most this.
MAX_SMOOTH_RATIO = 1.25

#: Claim 8: the smooth-poisoned model's ASR (percent) and its clean-accuracy drop (points).
MIN_ASR = 80.0
MAX_ACC_DROP = 3.0

#: Claims 10 and 11: the upgraded detector's BDR (percent) on the smooth / unseen low-pass triggers.
MIN_UPGRADE_BDR = 50.0

#: Claim 12: filtering the training set must cut the ASR by at least this (points).
MIN_ASR_CUT = 20.0

#: Claim 14: MNA's AUC on a classic trigger may drop by at most this after the upgrade.
MAX_CLASSIC_AUC_LOSS = 0.05

#: Claim 13: with fewer target models than this the reason says the interval is wide.
FEW_MODELS = 10

#: Bound on the index elements drawn per bootstrap chunk (resamples x images): bounds memory.
CHUNK_ELEMENTS = 1_000_000

#: The config blocks the claims read (the rule passes these as ``params``).
CONFIG_KEYS = ("seed", "datasets", "detector", "detection", "figure6", "transfer", "smooth", "mna")

#: Columns of the CSV, in order; ``setting`` names the transfer column (source -> target).
COLUMNS = [
    "claim",
    "dataset",
    "statement",
    "paper_evidence",
    "measured",
    "value",
    "ci_low",
    "ci_high",
    "criterion",
    "verdict",
    "reason",
    "setting",
]


@dataclass(frozen=True)
class Claim:
    """One claim of the paper: its id, the sentence and where the paper shows it."""

    name: str
    statement: str
    paper_evidence: str


CLAIMS = (
    Claim(
        "highfreq_above_one",
        "Every backdoor trigger leaves high-frequency artifacts: triggered images carry more "
        "energy in the high-frequency DCT band than the same clean images (ratio above 1).",
        "Section 3.2, Figures 1-3 and 7-10: severe high-frequency artifacts for every trigger "
        "(heatmaps; no ratio published)",
    ),
    Claim(
        "detector_flags_triggers",
        "A DCT-domain detector trained only on clean images and random manipulations flags "
        "patch and noise triggers at a high rate while flagging few clean images.",
        "Table 1: mean BDR 98.5% over CIFAR-10, GTSRB and PubFig; CIFAR-10 clean FPR about "
        "2.3% (100 - (2 ACC - BDR))",
    ),
    Claim(
        "frequency_beats_image",
        "The detector separates triggered from clean images better on DCT coefficients than "
        "the same detector on pixels.",
        "Table 1, starred columns: image-domain ACC* 48.4-89.5% against DCT-domain ACC 90.2-99.3%",
    ),
    Claim(
        "linear_separable_at_width",
        "In the DCT domain a linear detector separates triggered from clean images at large "
        "input widths, better than at small ones.",
        "Appendix D, Figure 6: linearly separable from 160 px width on",
    ),
    Claim(
        "transfer_works",
        "A detector trained on another dataset flags the target dataset's triggers without "
        "any tuning.",
        "Tables 2-4: untuned transfer BDR 86.4-100% (ACC 55.4-69.3%)",
    ),
    Claim(
        "fine_tuning_improves",
        "Fine-tuning a transferred detector on a few clean target images (100 in the paper) "
        "raises its detection accuracy on the target.",
        "Tables 2-4: ACC about 68% -> 89% (CIFAR-10 -> GTSRB), 58-65% -> 77-83% (GTSRB -> "
        "TSRD) after tuning on 100 clean samples",
    ),
    Claim(
        "smooth_lowest_highfreq",
        "The smooth trigger of Algorithm 1 has a spectrum close to natural images: its "
        "high-frequency energy ratio is below every Section 3 trigger's and close to 1.",
        "Section 5.1-5.2, Figure 3: no high-frequency artifacts (heatmaps; no ratio published)",
    ),
    Claim(
        "smooth_poisoning_effective",
        "A model poisoned with the smooth trigger learns the backdoor at almost no cost in "
        "clean accuracy.",
        "Section 5.3: CIFAR-10 ASR 97.25% at clean ACC 84.54% (clean model 85.50%); Appendix "
        "G: GTSRB ASR 97.86% at 97.42% (97.45%)",
    ),
    Claim(
        "untuned_detector_misses_smooth",
        "The Section 4 detector, never shown a smooth trigger, detects it less often than the "
        "Section 3 triggers.",
        "Appendix G: GTSRB BDR 55.31% on the smooth trigger before the upgrade; Table 1: GTSRB "
        "mean BDR 98.1%",
    ),
    Claim(
        "upgrade_catches_smooth",
        "Fine-tuning the detector on smooth-triggered samples makes it detect the smooth trigger.",
        "Section 5.4: BDR 82.49% on CIFAR-10; Appendix G: GTSRB 55.31% -> 85.53% after the upgrade",
    ),
    Claim(
        "upgrade_catches_unseen_lowpass",
        "The detector upgraded with the smooth trigger also detects low-pass triggers it "
        "never saw.",
        "Section 5.4: 89.37% mean detection rate over unseen low-pass filtered triggers",
    ),
    Claim(
        "filtering_cuts_asr",
        "Removing the training samples the upgraded detector flags (and rejecting flagged "
        "inputs) cuts the smooth trigger's attack success rate.",
        "Section 5.4: CIFAR-10 ASR 97.25% -> 19.72% with the detector at inference, 18.03% "
        "with the training set filtered; Appendix G: GTSRB 13.03%",
    ),
    Claim(
        "mna_smooth_harder_before",
        "Meta Neural Analysis detects smooth-poisoned models worse before its shadow models "
        "include smooth triggers than after.",
        "Section 5.4: MNA AUC 0.0776 before, 0.694 after the upgrade",
    ),
    Claim(
        "mna_classic_no_cost",
        "Adding smooth triggers to MNA's shadow models costs nothing on models poisoned with "
        "classic triggers.",
        "Section 5.4: implied (the upgrade is presented as a pure gain); no number published",
    ),
)
CLAIM_NAMES = tuple(c.name for c in CLAIMS)

_FPR_RULE = (
    f"clean test FPR <= {FPR_FACTOR:g} x target = {{fpr_limit:.1f}}% (target: "
    f"detection.target_fpr, else a nominal {100 * NOMINAL_FPR:.0f}%)"
)
_BDR_RULE = (
    f">= {MIN_BDR:.0f}% (point estimate; 95% bootstrap interval, {N_BOOT} resamples of each "
    f"attack's triggered images at the threshold) AND {_FPR_RULE}"
)

#: Each claim's rule in words, with its numbers; ``{fpr_limit}`` is filled per configuration.
CRITERIA = {
    "highfreq_above_one": (
        "holds when every attack's 95% bootstrap lower bound of the HF energy ratio is > 1"
    ),
    "detector_flags_triggers": (
        f"mean BDR over the dataset's patch and noise triggers (those of "
        f"{', '.join(PATCH_NOISE_ATTACKS)}: every Table 1 attack but blend and nature) " + _BDR_RULE
    ),
    "frequency_beats_image": (
        f"mean over attacks of AUC(DCT) - AUC(pixel twin), 95% paired bootstrap interval "
        f"({N_BOOT} resamples; the same clean and triggered test images for both detectors): "
        "lower bound > 0 holds; upper bound < 0 does not hold (the image domain is better); "
        "otherwise does not hold (difference not significant)"
    ),
    "linear_separable_at_width": (
        f"the linear detector's mean AUC over attacks at the largest width >= {MIN_WIDTH_AUC} "
        "AND above its mean AUC at the smallest width (point estimates); per-width scores are "
        "not stored, so the interval is the mean of the per-attack AUC bootstrap bounds"
    ),
    "transfer_works": "mean BDR over every attack of the target " + _BDR_RULE,
    "fine_tuning_improves": (
        f"tuned mean ACC - raw mean ACC over the target's attacks, 95% paired bootstrap "
        f"interval ({N_BOOT} resamples of the same test images for both): lower bound > 0"
    ),
    "smooth_lowest_highfreq": (
        "the smooth trigger's HF energy ratio is below every Section 3 trigger's ratio on the "
        f"same dataset AND <= {MAX_SMOOTH_RATIO} (point estimates)"
    ),
    "smooth_poisoning_effective": (
        f"ASR >= {MIN_ASR:.0f}% (point estimate; Wilson 95% interval over the non-target "
        f"triggered test images) AND clean-accuracy drop vs the clean model <= {MAX_ACC_DROP:g} "
        "points"
    ),
    "untuned_detector_misses_smooth": (
        "BDR of the Section 4 detector on the smooth trigger (Wilson 95%) below its mean BDR "
        f"over every Table 1 attack of the dataset (bootstrap 95%, {N_BOOT} resamples), with "
        "non-overlapping intervals (smooth upper bound < Table 1 lower bound)"
    ),
    "upgrade_catches_smooth": (
        f"after the upgrade: BDR on the smooth trigger >= {MIN_UPGRADE_BDR:.0f}% (point "
        f"estimate, Wilson 95%) AND BDR after - before, 95% paired bootstrap ({N_BOOT} "
        f"resamples of the same triggered images), lower bound > 0 AND {_FPR_RULE}"
    ),
    "upgrade_catches_unseen_lowpass": (
        f"mean BDR of the smooth-upgraded detector over the low-pass triggers it was not tuned "
        f"on (the lowpass_* ones) >= {MIN_UPGRADE_BDR:.0f}% (point estimate; 95% bootstrap "
        f"interval, {N_BOOT} resamples of each trigger's images)"
    ),
    "filtering_cuts_asr": (
        f"ASR - ASR with the upgraded detector filtering the training set (and rejecting "
        f"flagged inputs) >= {MIN_ASR_CUT:.0f} points (point estimate; 95% paired bootstrap, "
        f"{N_BOOT} resamples of the non-target triggered test images)"
    ),
    "mna_smooth_harder_before": (
        "MNA AUC on smooth-poisoned vs clean target models, after - before the upgrade, paired "
        "by meta-classifier seed: the 95% t-interval over seeds (the MNA table's) has lower "
        "bound > 0"
    ),
    "mna_classic_no_cost": (
        f"for every classic target kind, mean AUC after >= mean AUC before - "
        f"{MAX_CLASSIC_AUC_LOSS} (means over seeds); value: mean over kinds of after - before, "
        "95% t-interval over seeds"
    ),
}


def criterion_text(claim: str, target: float = NOMINAL_FPR) -> str:
    """``claim``'s rule in words, for a clean-FPR target ``target`` (a fraction)."""
    return CRITERIA[claim].format(fpr_limit=100 * FPR_FACTOR * target)


# --------------------------------------------------------------------------- formatting


def format_percent(value: float) -> str:
    return f"{value:.1f}%"


def format_percent_interval(value: float, low: float, high: float) -> str:
    return f"{value:.1f}% [{low:.1f}, {high:.1f}]"


def format_interval(
    value: float, low: float, high: float, digits: int = 3, sign: bool = False
) -> str:
    fmt = f"{{:{'+' if sign else ''}.{digits}f}}"
    if not (np.isfinite(low) and np.isfinite(high)):
        return f"{fmt.format(value)} [no interval]"
    return f"{fmt.format(value)} [{fmt.format(low)}, {fmt.format(high)}]"


def claim_outcome(
    verdict: str,
    reason: str,
    measured: str = "",
    value: float | None = None,
    ci: tuple[float, float] | None = None,
    criterion: str = "",
) -> dict[str, Any]:
    if verdict not in VERDICTS:
        raise ValueError(f"unknown verdict {verdict!r}")
    low, high = ci if ci is not None else (math.nan, math.nan)
    return {
        "measured": measured,
        "value": math.nan if value is None else float(value),
        "ci_low": float(low),
        "ci_high": float(high),
        "criterion": criterion,
        "verdict": verdict,
        "reason": reason,
    }


def not_measured(reason: str, criterion: str = "") -> dict[str, Any]:
    """A row whose inputs this configuration does not produce; ``reason`` says which."""
    return claim_outcome(NOT_MEASURED, reason, measured="not measured", criterion=criterion)


def target_fpr(config: Mapping[str, Any]) -> float:
    """The clean FPR the detector aims at: ``detection.target_fpr``, else :data:`NOMINAL_FPR`."""
    value = (config.get("detection") or {}).get("target_fpr")
    return NOMINAL_FPR if value is None else float(value)


# --------------------------------------------------------------------------- output


def verdict_counts(frame: pd.DataFrame) -> dict[str, int]:
    return {v: int((frame["verdict"] == v).sum()) for v in VERDICTS}


def claims_summary(frame: pd.DataFrame) -> str:
    """The summary line, then one line per row that does not hold (claim, dataset, reason)."""
    counts = verdict_counts(frame)
    lines = [
        f"{counts[HOLDS]} claims hold, {counts[FAILS]} do not hold, {counts[NOT_MEASURED]} not "
        f"measured, of {len(frame)} rows"
    ]
    for row in frame[frame["verdict"] == FAILS].itertuples():
        where = _where(row.dataset, row.setting)
        lines.append(f"- {row.claim}{f' ({where})' if where else ''}: {row.reason}")
    return "\n".join(lines)


def _where(dataset: Any, setting: Any) -> str:
    dataset = "" if pd.isna(dataset) else str(dataset)
    setting = "" if pd.isna(setting) else str(setting)
    return setting or dataset


def _cell(value: Any) -> str:
    text = "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def claims_markdown(frame: pd.DataFrame) -> str:
    """The report: a title, the summary line and a table of every row (nothing truncated)."""
    summary = claims_summary(frame).splitlines()[0]
    header = ["claim", "dataset", "verdict", "measured", "paper", "criterion", "reason"]
    lines = [
        "# The paper's claims on this run",
        "",
        summary,
        "",
        "Each claim of the paper judged on this run's data by the fixed rule in `criterion` "
        "(the same at demo and paper scale; freqbackdoor/paper/claims.py). Intervals are 95%. "
        "`not measured`: this configuration does not produce the claim's inputs.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    for row in frame.itertuples():
        cells = [
            row.claim,
            _where(row.dataset, row.setting),
            f"**{row.verdict}**",
            row.measured,
            row.paper_evidence,
            row.criterion,
            row.reason,
        ]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def claims_csv(frame: pd.DataFrame) -> str:
    """The CSV text of ``frame`` (floats as rounded; NaN as empty)."""
    return frame.to_csv(index=False, lineterminator="\n")


def load_claims(path: str | Path) -> pd.DataFrame:
    """A written ``claims.csv`` back as a frame (text columns as text, empty cells as '')."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    for column in ("value", "ci_low", "ci_high"):
        frame[column] = pd.to_numeric(frame[column].replace("", np.nan))
    return frame
