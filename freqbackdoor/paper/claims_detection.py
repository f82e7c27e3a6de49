"""The judges of claims 1-6, Sections 3 and 4: high-frequency artifacts and the frequency detector.

Each function judges one claim on one dataset's (or transfer column's) data and returns its
outcome (:func:`~.claims.claim_outcome`): triggers raise the high-frequency energy ratio
(claim 1), the DCT detector flags patch and noise triggers at a low clean FPR (2) and beats
its pixel-domain twin (3), a linear detector separates them at large widths (4, Figure 6), a
foreign detector transfers untuned (5) and fine-tuning on a few clean target images improves
it (6). The criteria are the constants of :mod:`.claims`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..metrics import wilson_interval
from .claims import (
    FAILS,
    FPR_FACTOR,
    HOLDS,
    MIN_BDR,
    MIN_WIDTH_AUC,
    PATCH_NOISE_ATTACKS,
    RAW_CEILING,
    claim_outcome,
    criterion_text,
    format_interval,
    format_percent,
    format_percent_interval,
    not_measured,
)
from .claims_statistics import ResampledAUC, bootstrap, mean_rate_interval, percentile_interval


def highfreq_above_one(ratios: pd.DataFrame) -> dict[str, Any]:
    """Claim 1 on one dataset's rows of ``tables/highfreq_ratio.csv`` (attack, ratio, ci_*)."""
    criterion = criterion_text("highfreq_above_one")
    if ratios.empty:
        return not_measured("no rows in tables/highfreq_ratio.csv", criterion)
    smallest = ratios.loc[ratios["ratio"].idxmin()]
    below = ratios[~(ratios["ci_low"] > 1.0)]
    measured = (
        f"smallest ratio {format_interval(smallest.ratio, smallest.ci_low, smallest.ci_high)} "
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
    return claim_outcome(
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
        f"mean BDR {format_percent_interval(bdr, low, high)} over {len(attacks)} attacks "
        f"({', '.join(attacks)}); clean FPR {format_percent_interval(fpr, fpr_low, fpr_high)} at threshold "
        f"{threshold:.4g}"
    )
    bdr_ok, fpr_ok = bdr >= MIN_BDR, fpr <= limit + 1e-9
    verdict = HOLDS if bdr_ok and fpr_ok else FAILS
    parts = [
        f"mean BDR {format_percent(bdr)} {'>=' if bdr_ok else '<'} {MIN_BDR:.0f}%",
        f"clean FPR {format_percent(fpr)} {'<=' if fpr_ok else '>'} {limit:.1f}%",
    ]
    return claim_outcome(verdict, "; ".join(parts), measured, bdr, (low, high), criterion)


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
        name: [ResampledAUC(scores["clean"], scores[f"triggered_{a}"]) for a in attacks]
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
        f"AUC difference {format_interval(difference, low, high, sign=True)} (DCT mean "
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
    return claim_outcome(verdict, reason, measured, difference, (low, high), criterion)


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
        f"mean AUC {format_interval(large.auc, large.auc_low, large.auc_high)} at {widths[-1]} px vs "
        f"{format_interval(small.auc, small.auc_low, small.auc_high)} at {widths[0]} px "
        f"({', '.join(sorted(set(rows['attack'])))})"
    )
    high_ok, rises = large.auc >= MIN_WIDTH_AUC, large.auc > small.auc
    verdict = HOLDS if high_ok and rises else FAILS
    reason = (
        f"mean AUC {large.auc:.3f} at {widths[-1]} px is {'>=' if high_ok else '<'} "
        f"{MIN_WIDTH_AUC} and {'above' if rises else 'not above'} {small.auc:.3f} at "
        f"{widths[0]} px"
    )
    return claim_outcome(
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
        f"{format_interval(difference, low, high, digits=1, sign=True)} points"
    )
    verdict = HOLDS if low > 0 else FAILS
    reason = f"the difference's lower bound {low:+.1f} is {'above' if low > 0 else 'not above'} 0"
    if raw_acc >= RAW_CEILING:
        reason += f" (raw already at {raw_acc:.1f}%)"
    return claim_outcome(verdict, reason, measured, difference, (low, high), criterion)
