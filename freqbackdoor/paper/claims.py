"""The paper's qualitative claims, each judged on this run's data: the ``claims`` report.

The comparison files (``*_vs_paper.csv``) put every published number beside ours; they do not
say whether the paper's *statements* survive the reproduction. This module does: each claim of
the paper (triggers carry high-frequency energy, a frequency detector flags them, it beats the
pixel domain, ...) becomes one row per dataset (or transfer column, named in ``setting``) with
the measured number, its 95% interval, the rule applied and a verdict, exactly one of
:data:`VERDICTS`. The report states what the data say; it does not defend the paper, and a
claim whose inputs this configuration does not produce is ``not measured``, with the missing
file or config block.

Criteria are the module constants below, the same at demo and paper scale (never tuned to
one run's numbers). Intervals are 95%:

* rates of one binomial count (an ASR, a clean FPR, one BDR): Wilson score intervals;
* everything else computed from per-image scores: a percentile bootstrap of :data:`N_BOOT`
  resamples with ``numpy.random.default_rng(seed)`` (the config's ``seed``, else 0), a fresh
  generator per claim row so that rows do not depend on each other. Each resample draws, chunk
  by chunk of resamples, one index array per group of images in the order the claim lists
  them (:func:`bootstrap`); comparisons of two detectors on the same images reuse the same
  indices for both (a paired bootstrap);
* MNA's claims (13, 14): a t-interval over the meta-classifier's seeds, paired by seed, as
  the MNA table's intervals (a bootstrap of 3-5 seeds would understate the spread).

Floats are rounded to :data:`DECIMALS` decimals in the CSV and the text holds no timestamps,
so the files are byte-identical from run to run.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..metrics import wilson_interval
from ..mna.meta import auc as model_auc
from ..mna.meta import mean_interval
from ..models.poisoning import asr_with_rejection, attack_success_rate

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


# --------------------------------------------------------------------------- statistics


def bootstrap(
    sizes: Sequence[int],
    statistic: Callable[[list[np.ndarray]], np.ndarray],
    seed: int = 0,
    n_boot: int = N_BOOT,
) -> np.ndarray:
    """``n_boot`` bootstrap replicates of ``statistic`` over independent groups of ``sizes``.

    A generator ``numpy.random.default_rng(seed)`` draws the resamples in chunks of
    ``max(1, CHUNK_ELEMENTS // sum(sizes))``; per chunk of ``b`` resamples it draws, for each
    group in order, ``rng.integers(0, n, size=(b, n))``. ``statistic`` gets that list of index
    arrays and returns the ``b`` replicates. Paired comparisons index both arrays with the
    same draws.
    """
    sizes = [int(n) for n in sizes]
    if not sizes or min(sizes) < 1:
        raise ValueError(f"every bootstrap group needs at least one element, got {sizes}")
    rng = np.random.default_rng(seed)
    chunk = max(1, CHUNK_ELEMENTS // sum(sizes))
    replicates = np.empty(n_boot)
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        draws = [rng.integers(0, n, size=(b, n)) for n in sizes]
        replicates[start : start + b] = statistic(draws)
    return replicates


def percentile_interval(replicates: np.ndarray) -> tuple[float, float]:
    """The two-sided percentile interval at :data:`CONFIDENCE` of bootstrap replicates."""
    tail = (1.0 - CONFIDENCE) / 2.0
    low, high = np.quantile(np.asarray(replicates, dtype=np.float64), [tail, 1.0 - tail])
    return float(low), float(high)


def mean_rate_interval(
    flags: Sequence[np.ndarray], seed: int = 0, n_boot: int = N_BOOT
) -> tuple[float, float, float]:
    """Mean over groups of the share of ``True`` flags, in percent, with a bootstrap interval.

    Each group (e.g. one attack's triggered images) is resampled on its own.
    """
    arrays = [np.asarray(f, dtype=bool) for f in flags]
    value = 100.0 * float(np.mean([a.mean() for a in arrays]))

    def statistic(draws: list[np.ndarray]) -> np.ndarray:
        return 100.0 * np.mean([a[d].mean(axis=1) for a, d in zip(arrays, draws, strict=True)], 0)

    low, high = percentile_interval(bootstrap([a.size for a in arrays], statistic, seed, n_boot))
    return value, low, high


class _AUC:
    """ROC AUC of triggered vs clean scores under resampling, without re-sorting per resample.

    The clean scores are sorted once; each triggered score's count of smaller and of tied
    clean scores comes from the resample's clean multiplicities (a cumulative sum), so the
    Mann-Whitney AUC of a resample, ties counted half, costs O(n) instead of a sort.
    """

    def __init__(self, clean: np.ndarray, triggered: np.ndarray) -> None:
        clean = np.asarray(clean, dtype=np.float64)
        self.order = np.argsort(clean, kind="stable")
        ordered = clean[self.order]
        triggered = np.asarray(triggered, dtype=np.float64)
        self.below = np.searchsorted(ordered, triggered, side="left")
        self.up_to = np.searchsorted(ordered, triggered, side="right")
        self.n_clean = clean.size

    def point(self) -> float:
        n = self.n_clean
        return float((self.below + 0.5 * (self.up_to - self.below)).mean() / n)

    def cumulative(self, clean_draws: np.ndarray) -> np.ndarray:
        """Per resample (row of clean indices): clean samples at or below each sorted position."""
        b, n = clean_draws.shape
        offsets = (np.arange(b) * n)[:, None]
        counts = np.bincount((clean_draws + offsets).ravel(), minlength=b * n).reshape(b, n)
        cumulative = np.zeros((b, n + 1))
        np.cumsum(counts[:, self.order], axis=1, out=cumulative[:, 1:])
        return cumulative

    def from_cumulative(self, cumulative: np.ndarray, triggered_draws: np.ndarray) -> np.ndarray:
        """The AUC of each resample: ``cumulative``'s clean rows against ``triggered_draws``."""
        below = np.take_along_axis(cumulative, self.below[triggered_draws], axis=1)
        up_to = np.take_along_axis(cumulative, self.up_to[triggered_draws], axis=1)
        return (below + 0.5 * (up_to - below)).mean(axis=1) / self.n_clean


def auc_score(clean: np.ndarray, triggered: np.ndarray) -> float:
    """ROC AUC of telling ``triggered`` from ``clean`` scores (ties count half)."""
    return _AUC(clean, triggered).point()


# --------------------------------------------------------------------------- formatting


def _pct(value: float) -> str:
    return f"{value:.1f}%"


def _pct_ci(value: float, low: float, high: float) -> str:
    return f"{value:.1f}% [{low:.1f}, {high:.1f}]"


def _num_ci(value: float, low: float, high: float, digits: int = 3, sign: bool = False) -> str:
    fmt = f"{{:{'+' if sign else ''}.{digits}f}}"
    if not (np.isfinite(low) and np.isfinite(high)):
        return f"{fmt.format(value)} [no interval]"
    return f"{fmt.format(value)} [{fmt.format(low)}, {fmt.format(high)}]"


def _outcome(
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
    return _outcome(NOT_MEASURED, reason, measured="not measured", criterion=criterion)


def target_fpr(config: Mapping[str, Any]) -> float:
    """The clean FPR the detector aims at: ``detection.target_fpr``, else :data:`NOMINAL_FPR`."""
    value = (config.get("detection") or {}).get("target_fpr")
    return NOMINAL_FPR if value is None else float(value)


# --------------------------------------------------------------------------- claims


def highfreq_above_one(ratios: pd.DataFrame) -> dict[str, Any]:
    """Claim 1 on one dataset's rows of ``tables/highfreq_ratio.csv`` (attack, ratio, ci_*)."""
    criterion = criterion_text("highfreq_above_one")
    if ratios.empty:
        return not_measured("no rows in tables/highfreq_ratio.csv", criterion)
    smallest = ratios.loc[ratios["ratio"].idxmin()]
    below = ratios[~(ratios["ci_low"] > 1.0)]
    measured = (
        f"smallest ratio {_num_ci(smallest.ratio, smallest.ci_low, smallest.ci_high)} "
        f"({smallest.attack}) over {len(ratios)} triggers"
    )
    if below.empty:
        verdict = HOLDS
        reason = (
            f"all {len(ratios)} lower bounds exceed 1 (lowest lower bound "
            f"{ratios['ci_low'].min():.3f}, {ratios.loc[ratios['ci_low'].idxmin(), 'attack']})"
        )
    else:
        verdict = FAILS
        listed = ", ".join(f"{r.attack} {r.ci_low:.3f}" for r in below.itertuples())
        reason = f"lower bound not above 1 for {listed}"
    return _outcome(
        verdict,
        reason,
        measured,
        smallest.ratio,
        (smallest.ci_low, smallest.ci_high),
        criterion,
    )


def _detects(
    clean: np.ndarray,
    triggered: Mapping[str, np.ndarray],
    threshold: float,
    target: float,
    seed: int,
    claim: str,
) -> dict[str, Any]:
    """Mean BDR over ``triggered`` (bootstrap) and the clean FPR (Wilson) at ``threshold``."""
    attacks = list(triggered)
    flags = [np.asarray(triggered[a]) >= threshold for a in attacks]
    bdr, low, high = mean_rate_interval(flags, seed)
    clean_flags = np.asarray(clean) >= threshold
    fp, n = int(clean_flags.sum()), clean_flags.size
    fpr = 100.0 * fp / n
    fpr_low, fpr_high = (100.0 * v for v in wilson_interval(fp, n))
    limit = 100.0 * FPR_FACTOR * target
    criterion = criterion_text(claim, target)
    measured = (
        f"mean BDR {_pct_ci(bdr, low, high)} over {len(attacks)} attacks "
        f"({', '.join(attacks)}); clean FPR {_pct_ci(fpr, fpr_low, fpr_high)} at threshold "
        f"{threshold:.4g}"
    )
    bdr_ok, fpr_ok = bdr >= MIN_BDR, fpr <= limit + 1e-9
    verdict = HOLDS if bdr_ok and fpr_ok else FAILS
    parts = [
        f"mean BDR {_pct(bdr)} {'>=' if bdr_ok else '<'} {MIN_BDR:.0f}%",
        f"clean FPR {_pct(fpr)} {'<=' if fpr_ok else '>'} {limit:.1f}%",
    ]
    return _outcome(verdict, "; ".join(parts), measured, bdr, (low, high), criterion)


def detector_flags_triggers(
    clean: np.ndarray,
    triggered: Mapping[str, np.ndarray],
    threshold: float,
    target: float,
    seed: int = 0,
) -> dict[str, Any]:
    """Claim 2: Table 1's DCT detector on the patch and noise triggers of one dataset.

    ``triggered`` maps every Table 1 attack to its scores; only :data:`PATCH_NOISE_ATTACKS`
    count. ``threshold`` is Table 1's, ``target`` the clean FPR aimed at (fraction).
    """
    chosen = {a: s for a, s in triggered.items() if a in PATCH_NOISE_ATTACKS}
    if not chosen:
        return not_measured(
            f"the dataset has none of {', '.join(PATCH_NOISE_ATTACKS)}",
            criterion_text("detector_flags_triggers", target),
        )
    return _detects(clean, chosen, threshold, target, seed, "detector_flags_triggers")


def frequency_beats_image(
    dct: Mapping[str, np.ndarray],
    pixel: Mapping[str, np.ndarray],
    attacks: Sequence[str],
    seed: int = 0,
) -> dict[str, Any]:
    """Claim 3: mean AUC over ``attacks`` of the DCT detector minus its pixel twin.

    ``dct`` and ``pixel`` are the ``detection_scores`` rule's arrays (``clean``,
    ``triggered_<attack>``) on the same test images; the bootstrap draws the clean indices,
    then each attack's triggered indices, and applies them to both detectors.
    """
    criterion = criterion_text("frequency_beats_image")
    attacks = list(attacks)
    if not attacks:
        return not_measured("the dataset has no attacks", criterion)
    for key in ["clean", *(f"triggered_{a}" for a in attacks)]:
        if np.shape(dct[key]) != np.shape(pixel[key]):
            raise ValueError(f"the DCT and pixel detectors scored different {key} test sets")
    models = {
        name: [_AUC(scores["clean"], scores[f"triggered_{a}"]) for a in attacks]
        for name, scores in (("dct", dct), ("pixel", pixel))
    }
    points = {name: np.array([m.point() for m in ms]) for name, ms in models.items()}
    difference = float(points["dct"].mean() - points["pixel"].mean())

    def statistic(draws: list[np.ndarray]) -> np.ndarray:
        clean_draws, triggered_draws = draws[0], draws[1:]
        means = {}
        for name, ms in models.items():
            cumulative = ms[0].cumulative(clean_draws)
            means[name] = np.mean(
                [
                    m.from_cumulative(cumulative, d)
                    for m, d in zip(ms, triggered_draws, strict=True)
                ],
                axis=0,
            )
        return means["dct"] - means["pixel"]

    sizes = [dct["clean"].size, *(dct[f"triggered_{a}"].size for a in attacks)]
    low, high = percentile_interval(bootstrap(sizes, statistic, seed))
    wins = [a for a, d, p in zip(attacks, points["dct"], points["pixel"], strict=True) if p > d]
    measured = (
        f"AUC difference {_num_ci(difference, low, high, sign=True)} (DCT mean "
        f"{points['dct'].mean():.3f}, pixel mean {points['pixel'].mean():.3f}); the pixel twin "
        f"wins {len(wins)} of {len(attacks)} attacks by AUC"
        + (f" ({', '.join(wins)})" if wins else "")
    )
    if low > 0:
        verdict, reason = HOLDS, f"the interval's lower bound {low:+.3f} is above 0"
    elif high < 0:
        verdict = FAILS
        reason = f"the image domain is better: the interval's upper bound {high:+.3f} is below 0"
    else:
        verdict = FAILS
        reason = f"difference not significant: the interval [{low:+.3f}, {high:+.3f}] contains 0"
    return _outcome(verdict, reason, measured, difference, (low, high), criterion)


def linear_separable_at_width(figure6: pd.DataFrame) -> dict[str, Any]:
    """Claim 4 on ``tables/figure6.csv`` (width, architecture, attack, auc, auc_low, auc_high)."""
    criterion = criterion_text("linear_separable_at_width")
    rows = figure6[figure6["attack"] != "pooled"]
    if rows.empty:
        return not_measured("tables/figure6.csv holds no per-attack rows", criterion)
    architectures = sorted(set(rows["architecture"]))
    if architectures != ["linear"]:
        return not_measured(
            f"Figure 6's detector is {', '.join(architectures)}, not linear "
            "(the figure6 dataset's detector.architecture)",
            criterion,
        )
    widths = sorted(set(int(w) for w in rows["width"]))
    if len(widths) < 2:
        return not_measured(f"figure6.widths holds one width ({widths[0]})", criterion)
    means = rows.groupby("width")[["auc", "auc_low", "auc_high"]].mean()
    small, large = means.loc[widths[0]], means.loc[widths[-1]]
    measured = (
        f"mean AUC {_num_ci(large.auc, large.auc_low, large.auc_high)} at {widths[-1]} px vs "
        f"{_num_ci(small.auc, small.auc_low, small.auc_high)} at {widths[0]} px "
        f"({', '.join(sorted(set(rows['attack'])))})"
    )
    high_ok, rises = large.auc >= MIN_WIDTH_AUC, large.auc > small.auc
    verdict = HOLDS if high_ok and rises else FAILS
    reason = (
        f"mean AUC {large.auc:.3f} at {widths[-1]} px is {'>=' if high_ok else '<'} "
        f"{MIN_WIDTH_AUC} and {'above' if rises else 'not above'} {small.auc:.3f} at "
        f"{widths[0]} px"
    )
    return _outcome(
        verdict, reason, measured, large.auc, (large.auc_low, large.auc_high), criterion
    )


def transfer_works(
    scores: Mapping[str, np.ndarray],
    attacks: Sequence[str],
    threshold: float,
    target: float,
    seed: int = 0,
) -> dict[str, Any]:
    """Claim 5: an untuned foreign detector on the target's clean and triggered test images."""
    triggered = {a: scores[f"triggered_{a}"] for a in attacks}
    return _detects(scores["clean"], triggered, threshold, target, seed, "transfer_works")


def _aligned(raw: Mapping[str, np.ndarray], tuned: Mapping[str, np.ndarray], key: str):
    """``raw[key]`` and ``tuned[key]`` on the test rows both scored (``test_rows``), in order."""
    if "test_rows" not in raw or "test_rows" not in tuned:
        return np.asarray(raw[key]), np.asarray(tuned[key])
    common, raw_at, tuned_at = np.intersect1d(
        raw["test_rows"], tuned["test_rows"], return_indices=True
    )
    if common.size == 0:
        raise ValueError("the raw and tuned detectors scored no common test image")
    return np.asarray(raw[key])[raw_at], np.asarray(tuned[key])[tuned_at]


def fine_tuning_improves(
    raw: Mapping[str, np.ndarray],
    tuned: Mapping[str, np.ndarray],
    attacks: Sequence[str],
    raw_threshold: float,
    tuned_threshold: float,
    seed: int = 0,
) -> dict[str, Any]:
    """Claim 6: tuned minus raw mean ACC (percent) over ``attacks``, paired by test image.

    ACC per attack is the accuracy over the clean and that attack's triggered test images; the
    bootstrap draws the clean indices, then each attack's, and applies them to both detectors.
    """
    criterion = criterion_text("fine_tuning_improves")
    keys = ["clean", *(f"triggered_{a}" for a in attacks)]
    pairs = [_aligned(raw, tuned, k) for k in keys]
    flags = {
        "raw": [p[0] >= raw_threshold for p in pairs],
        "tuned": [p[1] >= tuned_threshold for p in pairs],
    }

    def mean_acc(f: list[np.ndarray], draws: list[np.ndarray]) -> np.ndarray:
        clean_right = (~f[0][draws[0]]).sum(axis=1)
        n_clean = draws[0].shape[1]
        accs = [
            (clean_right + t[d].sum(axis=1)) / (n_clean + d.shape[1])
            for t, d in zip(f[1:], draws[1:], strict=True)
        ]
        return 100.0 * np.mean(accs, axis=0)

    identity = [np.arange(p[0].size)[None, :] for p in pairs]
    raw_acc = float(mean_acc(flags["raw"], identity)[0])
    tuned_acc = float(mean_acc(flags["tuned"], identity)[0])
    difference = tuned_acc - raw_acc

    def statistic(draws: list[np.ndarray]) -> np.ndarray:
        return mean_acc(flags["tuned"], draws) - mean_acc(flags["raw"], draws)

    low, high = percentile_interval(bootstrap([p[0].size for p in pairs], statistic, seed))
    measured = (
        f"mean ACC {raw_acc:.1f}% raw -> {tuned_acc:.1f}% tuned; difference "
        f"{_num_ci(difference, low, high, digits=1, sign=True)} points"
    )
    verdict = HOLDS if low > 0 else FAILS
    reason = f"the difference's lower bound {low:+.1f} is {'above' if low > 0 else 'not above'} 0"
    if raw_acc >= RAW_CEILING:
        reason += f" (raw already at {raw_acc:.1f}%)"
    return _outcome(verdict, reason, measured, difference, (low, high), criterion)


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
        f"smooth {_num_ci(value, smooth['ci_low'], smooth['ci_high'])}; lowest Section 3 "
        f"trigger {lowest.attack} {lowest.ratio:.3f}"
    )
    if official is not None:
        ratio = official.get("ratio")
        if ratio is not None and np.isfinite(ratio):
            measured += (
                "; authors' published trigger "
                f"{_num_ci(float(ratio), official['ci_low'], official['ci_high'])}"
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
    return _outcome(
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
        f"ASR {_pct_ci(asr, low, high)} ({k} of {n}); clean-accuracy drop {clean_acc_drop:.2f} "
        "points"
    )
    asr_ok, drop_ok = asr >= MIN_ASR, clean_acc_drop <= MAX_ACC_DROP
    verdict = HOLDS if asr_ok and drop_ok else FAILS
    reason = (
        f"ASR {_pct(asr)} {'>=' if asr_ok else '<'} {MIN_ASR:.0f}% and drop "
        f"{clean_acc_drop:.2f} {'<=' if drop_ok else '>'} {MAX_ACC_DROP:g} points"
    )
    return _outcome(verdict, reason, measured, asr, (low, high), criterion)


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
        f"smooth BDR {_pct_ci(bdr, low, high)} vs Table 1 mean BDR "
        f"{_pct_ci(mean, mean_low, mean_high)} over {len(others)} attacks"
    )
    separated = high < mean_low
    verdict = HOLDS if separated else FAILS
    reason = (
        f"smooth upper bound {high:.1f}% is {'below' if separated else 'not below'} the Table "
        f"1 lower bound {mean_low:.1f}%"
    )
    return _outcome(verdict, reason, measured, bdr, (low, high), criterion)


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
        f"BDR {_pct_ci(bdr, low, high)} after vs {_pct(100.0 * before.mean())} before "
        f"(difference {_num_ci(difference, diff_low, diff_high, digits=1, sign=True)} points); "
        f"clean FPR after {_pct(fpr)}"
    )
    history = (tuning or {}).get("history") or {}
    if history.get("train_acc"):
        epochs = len(history["train_acc"])
        measured += (
            f"; fine-tuned on {tuning.get('fine_tune_samples')} images for {epochs} "
            f"epoch{'s' if epochs != 1 else ''}, last training accuracy "
            f"{_pct(100.0 * history['train_acc'][-1])}"
        )
    bdr_ok, diff_ok, fpr_ok = bdr >= MIN_UPGRADE_BDR, diff_low > 0, fpr <= limit + 1e-9
    verdict = HOLDS if bdr_ok and diff_ok and fpr_ok else FAILS
    reason = (
        f"BDR {_pct(bdr)} {'>=' if bdr_ok else '<'} {MIN_UPGRADE_BDR:.0f}%; difference lower "
        f"bound {diff_low:+.1f} {'>' if diff_ok else '<='} 0; clean FPR {_pct(fpr)} "
        f"{'<=' if fpr_ok else '>'} {limit:.1f}%"
    )
    return _outcome(verdict, reason, measured, bdr, (low, high), criterion)


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
        f"mean BDR {_pct_ci(bdr, low, high)} over {len(lowpass)} triggers "
        f"({', '.join(lowpass)}); {_pct(before)} before the upgrade"
    )
    ok = bdr >= MIN_UPGRADE_BDR
    verdict = HOLDS if ok else FAILS
    reason = f"mean BDR {_pct(bdr)} {'>=' if ok else '<'} {MIN_UPGRADE_BDR:.0f}%"
    return _outcome(verdict, reason, measured, bdr, (low, high), criterion)


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
        f"ASR {_pct(asr)} -> {_pct(with_filter)} with the training set filtered (cut "
        f"{_num_ci(difference, low, high, digits=1)} points); {_pct(at_inference)} with the "
        "detector at inference only"
    )
    ok = difference >= MIN_ASR_CUT
    verdict = HOLDS if ok else FAILS
    reason = f"ASR cut {difference:.1f} points {'>=' if ok else '<'} {MIN_ASR_CUT:.0f}"
    return _outcome(verdict, reason, measured, difference, (low, high), criterion)


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
        f"{_num_ci(mean, low, high, sign=True)} over {differences.size} seeds; "
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
    return _outcome(verdict, reason, measured, mean, (low, high), criterion)


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
        f"mean AUC change {_num_ci(mean, low, high, sign=True)} over {len(kinds)} kinds "
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
    return _outcome(verdict, reason, measured, mean, (low, high), criterion)


# --------------------------------------------------------------------------- the table


class _Run:
    """One run's results folder and configuration: the files it reads (cached, remembered for
    the rule's log) and the choices of the configured DAG (the same as rules/common.smk's)."""

    def __init__(self, root: Path, config: Mapping[str, Any]) -> None:
        self.root, self.config = Path(root), config
        self.read: list[str] = []
        self._cache: dict[str, Any] = {}
        self.seed = int(config.get("seed", 0) or 0)
        self.target = target_fpr(config)
        self.datasets = list(config.get("datasets") or {})
        self.order = {d: i for i, d in enumerate(self.datasets)}

    def block(self, key: str) -> Mapping[str, Any]:
        return self.config.get(key) or {}

    def listed(self, key: str) -> list[str]:
        """The datasets of ``<key>.datasets``, in the config's dataset order."""
        chosen = self.block(key).get("datasets") or []
        return [d for d in self.datasets if d in chosen]

    def attacks(self, dataset: str) -> list[str]:
        return list(self.config["datasets"][dataset].get("attacks", []))

    def detector(self, dataset: str) -> str:
        """The architecture of ``dataset``'s Table 1 detector: ``detector``, then its overrides."""
        overrides = self.config["datasets"][dataset].get("detector", {})
        return str({**self.block("detector"), **overrides}["architecture"])

    def detection_dir(self, dataset: str, domain: str) -> str:
        return f"detection/{dataset}/{self.detector(dataset)}_{domain}"

    def naive(self, dataset: str) -> list[str]:
        """The naive low-pass triggers of ``dataset``: ``smooth.naive``, or its override."""
        spec = {**self.block("smooth"), **self.config["datasets"][dataset].get("smooth", {})}
        return list(spec.get("naive") or [])

    def transfer_columns(self) -> list[dict[str, Any]]:
        """Every transfer table column (table, target, source, tuned), in config order."""
        return [
            {
                "table": table,
                "target": spec["target"],
                "source": column["source"],
                "tuned": bool(column.get("tune", False)),
            }
            for table, spec in (self.block("transfer").get("tables") or {}).items()
            for column in spec.get("columns", [])
        ]

    def raw_scored(self, target: str, source: str) -> bool:
        """Whether the DAG scores ``source``'s untuned detector on ``target``: an untuned table
        column, or the budget figure's raw point."""
        columns = self.transfer_columns()
        if any((c["target"], c["source"], c["tuned"]) == (target, source, False) for c in columns):
            return True
        figure = self.block("transfer").get("budget_figure") or {}
        pair = (figure.get("target"), figure.get("source"))
        return bool(figure.get("budgets")) and pair == (target, source)

    def transfer_dir(self, target: str, source: str, tuned: bool) -> str:
        budget = self.block("transfer").get("budget")
        return f"transfer/{target}/{source}/{'tuned' if tuned else 'raw'}_b{budget}_r0"

    def missing(self, *relative: str) -> dict[str, Any] | None:
        """A ``not measured`` outcome naming the first absent file, else None."""
        for name in relative:
            if not (self.root / name).is_file():
                return not_measured(f"results/{name} is absent")
        return None

    def csv(self, relative: str) -> pd.DataFrame:
        if relative not in self._cache:
            self.read.append(relative)
            self._cache[relative] = pd.read_csv(self.root / relative)
        return self._cache[relative]

    def json(self, relative: str) -> dict[str, Any]:
        if relative not in self._cache:
            self.read.append(relative)
            self._cache[relative] = json.loads((self.root / relative).read_text())
        return self._cache[relative]

    def npz(self, relative: str) -> dict[str, np.ndarray]:
        if relative not in self._cache:
            self.read.append(relative)
            with np.load(self.root / relative, allow_pickle=False) as data:
                self._cache[relative] = {key: data[key] for key in data.files}
        return self._cache[relative]

    def threshold(self, folder: str) -> float:
        """The one decision threshold of ``<folder>/metrics.csv``."""
        thresholds = sorted(set(self.csv(f"{folder}/metrics.csv")["threshold"].astype(float)))
        if len(thresholds) != 1:
            raise ValueError(f"{folder}/metrics.csv holds several thresholds: {thresholds}")
        return thresholds[0]

    def scored(self, folder: str) -> tuple[dict[str, Any] | None, dict[str, np.ndarray], float]:
        """``<folder>``'s scores and threshold, or the ``not measured`` outcome naming a gap."""
        missing = self.missing(f"{folder}/scores.npz", f"{folder}/metrics.csv")
        if missing:
            return missing, {}, math.nan
        return None, self.npz(f"{folder}/scores.npz"), self.threshold(folder)


Row = tuple[str, str, dict[str, Any], str]  # claim, dataset, outcome, setting


def _per_dataset(claim: str, datasets: list[str], why_none: str, judge) -> list[Row]:
    """``judge(dataset)`` for each dataset, or one ``not measured`` row when there is none."""
    if not datasets:
        return [(claim, "", not_measured(why_none), "")]
    return [(claim, d, judge(d), "") for d in datasets]


def _highfreq_rows(run: _Run) -> list[Row]:
    def judge(dataset: str) -> dict[str, Any]:
        name = "tables/highfreq_ratio.csv"
        missing = run.missing(name)
        if missing:
            return missing
        ratios = run.csv(name)
        return highfreq_above_one(ratios[ratios["dataset"] == dataset])

    return _per_dataset("highfreq_above_one", run.datasets, "config has no datasets", judge)


def _table1_rows(run: _Run) -> list[Row]:
    datasets, why = run.listed("detection"), "detection.datasets is empty (no Table 1)"

    def flags(dataset: str) -> dict[str, Any]:
        missing, scores, threshold = run.scored(run.detection_dir(dataset, "dct"))
        if missing:
            return missing
        triggered = {a: scores[f"triggered_{a}"] for a in run.attacks(dataset)}
        return detector_flags_triggers(scores["clean"], triggered, threshold, run.target, run.seed)

    def beats(dataset: str) -> dict[str, Any]:
        if not run.block("detection").get("image_domain"):
            return not_measured("detection.image_domain is false: no pixel-domain twin is trained")
        missing, dct, _ = run.scored(run.detection_dir(dataset, "dct"))
        missing = missing or run.scored(run.detection_dir(dataset, "pixel"))[0]
        if missing:
            return missing
        pixel = run.npz(f"{run.detection_dir(dataset, 'pixel')}/scores.npz")
        return frequency_beats_image(dct, pixel, run.attacks(dataset), run.seed)

    return [
        *_per_dataset("detector_flags_triggers", datasets, why, flags),
        *_per_dataset("frequency_beats_image", datasets, why, beats),
    ]


def _figure6_rows(run: _Run) -> list[Row]:
    spec = run.block("figure6")
    dataset = str(spec.get("dataset", ""))
    if not spec.get("widths") or not spec.get("attacks"):
        outcome = not_measured("figure6.widths or figure6.attacks is empty")
    else:
        name = "tables/figure6.csv"
        outcome = run.missing(name) or linear_separable_at_width(run.csv(name))
    return [("linear_separable_at_width", dataset, outcome, "")]


def _transfer_rows(run: _Run) -> list[Row]:
    """Claim 5 per untuned column with a foreign source, claim 6 per +Tune column; each
    (target, source) pair once, targets in the config's dataset order, then table order."""
    columns = sorted(
        run.transfer_columns(), key=lambda c: run.order.get(c["target"], len(run.order))
    )
    rows: list[Row] = []
    seen: set[tuple[str, str, bool]] = set()
    for column in columns:
        target, source, tuned = column["target"], column["source"], column["tuned"]
        if (target, source, tuned) in seen or (not tuned and target in source.split("+")):
            continue  # a repeated column, or a detector on its own dataset (Table 1's case)
        seen.add((target, source, tuned))
        setting = f"{column['table']}: {source} -> {target}"
        attacks = run.attacks(target)
        raw_dir = run.transfer_dir(target, source, False)
        if not tuned:
            missing, scores, threshold = run.scored(raw_dir)
            outcome = missing or transfer_works(scores, attacks, threshold, run.target, run.seed)
            rows.append(("transfer_works", target, outcome, setting))
            continue
        if not run.raw_scored(target, source):
            outcome = not_measured(
                f"no untuned {source} -> {target} run: no transfer.tables column (or "
                "transfer.budget_figure) scores the raw detector"
            )
        else:
            tuned_dir = run.transfer_dir(target, source, True)
            missing_raw, raw, raw_threshold = run.scored(raw_dir)
            missing_tuned, tuned_scores, tuned_threshold = run.scored(tuned_dir)
            outcome = (
                missing_raw
                or missing_tuned
                or fine_tuning_improves(
                    raw, tuned_scores, attacks, raw_threshold, tuned_threshold, run.seed
                )
            )
        rows.append(("fine_tuning_improves", target, outcome, setting))
    for claim, kind in (("transfer_works", "untuned foreign"), ("fine_tuning_improves", "+Tune")):
        if not any(r[0] == claim for r in rows):
            rows.append((claim, "", not_measured(f"transfer.tables has no {kind} column"), ""))
    return rows


def _smooth_ratio(run: _Run, dataset: str) -> tuple[dict | None, dict | None, dict | None]:
    """The smooth trigger's HF ratio row and the authors' trigger's row (or None), or the
    ``not measured`` outcome: from ``smooth_highfreq.csv`` where it has the dataset (the 32 px
    ones), else from ``section5.csv``'s ``highfreq_ratio`` rows."""
    own, official = None, None
    if (run.root / "tables/smooth_highfreq.csv").is_file():
        table = run.csv("tables/smooth_highfreq.csv")
        table = table[table["dataset"] == dataset]
        smooth = table[(table["attack"] == "smooth") & table["ratio"].notna()]
        if len(smooth):
            own = smooth.iloc[0][["ratio", "ci_low", "ci_high"]].astype(float).to_dict()
        published = table[table["attack"] == "smooth_official"]
        official = published.iloc[0].to_dict() if len(published) else None
    if own is not None:
        return None, own, official
    missing = run.missing("tables/section5.csv")
    if missing:
        return missing, None, None
    section5 = run.csv("tables/section5.csv")
    if dataset not in section5.columns:
        return not_measured(f"results/tables/section5.csv has no column {dataset}"), None, None
    summary = section5[section5["row"] == "attack"].set_index("column")[dataset]
    keys = {
        "ratio": "highfreq_ratio",
        "ci_low": "highfreq_ratio_low",
        "ci_high": "highfreq_ratio_high",
    }
    if not all(k in summary.index for k in keys.values()):
        return not_measured("results/tables/section5.csv holds no smooth HF ratio"), None, None
    return None, {k: float(summary[v]) for k, v in keys.items()}, None


def _section5_rows(run: _Run) -> list[Row]:
    datasets, why = run.listed("smooth"), "smooth.datasets is empty (no Section 5)"
    ratios_name = "tables/highfreq_ratio.csv"

    def predictions(dataset: str, filtered: bool = False) -> str:
        return f"poisoned_models/{dataset}/{'filtered/' if filtered else ''}smooth_predictions.npz"

    def smooth_scores(dataset: str) -> str:
        return f"smooth/{dataset}/scores.npz"

    def lowest(dataset: str) -> dict[str, Any]:
        missing = run.missing(ratios_name)
        missing_smooth, smooth, official = _smooth_ratio(run, dataset)
        if missing or missing_smooth:
            return missing or missing_smooth
        ratios = run.csv(ratios_name)
        return smooth_lowest_highfreq(smooth, ratios[ratios["dataset"] == dataset], official)

    def poisoning(dataset: str) -> dict[str, Any]:
        missing = run.missing(predictions(dataset), "tables/poisoned_models.csv")
        if missing:
            return missing
        models = run.csv("tables/poisoned_models.csv")
        row = models[(models["dataset"] == dataset) & (models["trigger"] == "smooth")]
        if row.empty:
            return not_measured("results/tables/poisoned_models.csv has no smooth row")
        drop = float(row["clean_acc_drop"].iloc[0])
        return smooth_poisoning_effective(run.npz(predictions(dataset)), drop)

    def misses(dataset: str) -> dict[str, Any]:
        if dataset not in run.listed("detection"):
            return not_measured(
                f"{dataset} is not in detection.datasets: no Table 1 row to compare with"
            )
        missing, table1, threshold = run.scored(run.detection_dir(dataset, "dct"))
        missing = missing or run.missing(smooth_scores(dataset))
        if missing:
            return missing
        triggered = {a: table1[f"triggered_{a}"] for a in run.attacks(dataset)}
        scores = run.npz(smooth_scores(dataset))
        return untuned_detector_misses_smooth(scores, triggered, threshold, run.seed)

    def upgrade(dataset: str) -> dict[str, Any]:
        tuned = f"smooth/{dataset}/detector_smooth.json"
        missing = run.missing(smooth_scores(dataset), tuned)
        return missing or upgrade_catches_smooth(
            run.npz(smooth_scores(dataset)), run.target, run.seed, run.json(tuned)
        )

    def unseen(dataset: str) -> dict[str, Any]:
        missing = run.missing(smooth_scores(dataset))
        if missing:
            return missing
        scores = run.npz(smooth_scores(dataset))
        return upgrade_catches_unseen_lowpass(scores, run.naive(dataset), run.seed)

    def filtering(dataset: str) -> dict[str, Any]:
        names = [predictions(dataset), predictions(dataset, True), smooth_scores(dataset)]
        missing = run.missing(*names)
        if missing:
            return missing
        return filtering_cuts_asr(*(run.npz(n) for n in names), run.seed)

    judges = (lowest, poisoning, misses, upgrade, unseen, filtering)
    return [
        row
        for claim, judge in zip(CLAIM_NAMES[6:12], judges, strict=True)
        for row in _per_dataset(claim, datasets, why, judge)
    ]


def _mna_rows(run: _Run) -> list[Row]:
    datasets, why = run.listed("mna"), "mna.datasets is empty (no MNA)"
    classic = list(run.block("mna").get("classic") or [])

    def scores(dataset: str) -> tuple[dict[str, Any] | None, pd.DataFrame | None]:
        name = f"mna/{dataset}/scores.csv"
        missing = run.missing(name)
        return (missing, None) if missing else (None, run.csv(name))

    def harder(dataset: str) -> dict[str, Any]:
        missing, frame = scores(dataset)
        return missing or mna_smooth_harder_before(frame)

    def no_cost(dataset: str) -> dict[str, Any]:
        missing, frame = scores(dataset)
        return missing or mna_classic_no_cost(frame, classic)

    return [
        *_per_dataset("mna_smooth_harder_before", datasets, why, harder),
        *_per_dataset("mna_classic_no_cost", datasets, why, no_cost),
    ]


def claims_table(results_dir: str | Path, config: Mapping[str, Any]) -> pd.DataFrame:
    """Every claim judged on the run under ``results_dir``, one row per claim and dataset.

    ``config`` is the workflow's configuration (at least :data:`CONFIG_KEYS`); datasets,
    attacks and transfer columns come from it, the numbers from the files the configured DAG
    writes. A claim whose config block is empty, or whose file is absent, gets a ``not
    measured`` row saying which. Rows follow :data:`CLAIMS`, then the config's dataset order
    (then the transfer tables' column order). ``frame.attrs["read"]`` lists the files read.
    """
    run = _Run(Path(results_dir), config)
    rows = [
        *_highfreq_rows(run),
        *_table1_rows(run),
        *_figure6_rows(run),
        *_transfer_rows(run),
        *_section5_rows(run),
        *_mna_rows(run),
    ]
    frame = _finish(rows, run.order, run.target)
    frame.attrs["read"] = sorted(run.read)
    return frame


def _finish(rows: list[Row], order: Mapping[str, int], target: float) -> pd.DataFrame:
    """The rows in claim order, then dataset order (stable), with statement, evidence and the
    rule (also on ``not measured`` rows)."""
    by_name = {c.name: c for c in CLAIMS}
    position = {c.name: i for i, c in enumerate(CLAIMS)}
    records = []
    for name, dataset, outcome, setting in rows:
        claim = by_name[name]
        records.append(
            {
                **outcome,
                "claim": name,
                "dataset": dataset,
                "setting": setting,
                "statement": claim.statement,
                "paper_evidence": claim.paper_evidence,
                "criterion": outcome["criterion"] or criterion_text(name, target),
            }
        )
    records.sort(key=lambda r: (position[r["claim"]], order.get(r["dataset"], len(order))))
    frame = pd.DataFrame.from_records(records, columns=COLUMNS)
    for column in ("value", "ci_low", "ci_high"):
        frame[column] = frame[column].astype(np.float64).round(DECIMALS)
    return frame


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
