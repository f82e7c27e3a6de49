"""The claims report: verdict paths, intervals against hand computations, determinism."""

import math

import numpy as np
import pandas as pd
import pytest
import scipy.stats
from sklearn.metrics import roc_auc_score

from freqbackdoor.metrics import wilson_interval
from freqbackdoor.paper import claims, claims_detection, claims_smooth, claims_statistics
from freqbackdoor.paper.claims import FAILS, HOLDS, NOT_MEASURED
from freqbackdoor.paper.claims_run import claims_table

Z = scipy.stats.norm.ppf(0.975)


def wilson(k, n):
    """The Wilson score interval, written out."""
    p = k / n
    centre = (p + Z**2 / (2 * n)) / (1 + Z**2 / n)
    half = Z / (1 + Z**2 / n) * math.sqrt(p * (1 - p) / n + Z**2 / (4 * n**2))
    return centre - half, centre + half


def hand_bootstrap(flags, seed):
    """One group's BDR bootstrap as the module documents it: one chunk of N_BOOT resamples."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, flags.size, size=(claims.N_BOOT, flags.size))
    return np.quantile(100 * flags[draws].mean(axis=1), [0.025, 0.975])


# --------------------------------------------------------------------------- statistics


def test_auc_score_matches_scikit_learn_with_ties():
    rng = np.random.default_rng(0)
    clean = np.round(rng.normal(size=120), 1)
    triggered = np.round(rng.normal(0.4, size=80), 1)
    labels = np.r_[np.zeros(120), np.ones(80)]
    expected = roc_auc_score(labels, np.r_[clean, triggered])
    assert claims_statistics.auc_score(clean, triggered) == pytest.approx(expected, abs=1e-12)


def test_wilson_interval_matches_the_formula():
    assert wilson_interval(45, 50) == pytest.approx(wilson(45, 50), abs=1e-9)


# --------------------------------------------------------------------------- single claims


def test_highfreq_above_one_holds_and_fails():
    ratios = pd.DataFrame(
        {
            "attack": ["badnets", "blend"],
            "ratio": [3.0, 1.2],
            "ci_low": [2.8, 1.1],
            "ci_high": [3.2, 1.3],
        }
    )
    result = claims_detection.highfreq_above_one(ratios)
    assert result["verdict"] == HOLDS
    assert result["value"] == 1.2 and (result["ci_low"], result["ci_high"]) == (1.1, 1.3)
    assert "blend" in result["measured"]
    ratios.loc[1, "ci_low"] = 0.95
    result = claims_detection.highfreq_above_one(ratios)
    assert result["verdict"] == FAILS and "blend 0.950" in result["reason"]
    assert claims_detection.highfreq_above_one(ratios.iloc[:0])["verdict"] == NOT_MEASURED


def test_detector_flags_triggers_interval_is_the_hand_bootstrap_over_patch_attacks():
    rng = np.random.default_rng(1)
    clean = rng.uniform(0, 0.4, size=40)  # nothing flagged at 0.5
    badnets = rng.uniform(0.2, 1.0, size=50)
    blend = np.zeros(50)  # blend is not a patch or noise trigger: left out
    result = claims_detection.detector_flags_triggers(
        clean, {"badnets": badnets, "blend": blend}, 0.5, 0.05, seed=7
    )
    flags = badnets >= 0.5
    assert result["value"] == pytest.approx(100 * flags.mean())
    low, high = hand_bootstrap(flags, 7)
    assert result["ci_low"] == pytest.approx(low) and result["ci_high"] == pytest.approx(high)
    assert "blend" not in result["measured"].split("over")[1].split(";")[0]
    expected = HOLDS if 100 * flags.mean() >= claims.MIN_BDR else FAILS
    assert result["verdict"] == expected


def test_detector_flags_triggers_verdict_paths():
    clean = np.r_[np.zeros(80), np.ones(20)]  # 20% clean FPR
    triggered = {"badnets": np.ones(50), "trojan_sq": np.ones(50)}
    assert claims_detection.detector_flags_triggers(clean, triggered, 0.5, 0.05)["verdict"] == FAILS
    # a target FPR of 10% allows 20%
    assert claims_detection.detector_flags_triggers(clean, triggered, 0.5, 0.10)["verdict"] == HOLDS
    low_bdr = {"badnets": np.r_[np.ones(30), np.zeros(20)]}  # 60%
    result = claims_detection.detector_flags_triggers(np.zeros(100), low_bdr, 0.5, 0.05)
    assert result["verdict"] == FAILS and "60.0% < 80%" in result["reason"]
    result = claims_detection.detector_flags_triggers(
        np.zeros(10), {"blend": np.ones(10)}, 0.5, 0.05
    )
    assert result["verdict"] == NOT_MEASURED and math.isnan(result["value"])


def _scores(clean, triggered):
    return {"clean": clean, **{f"triggered_{a}": s for a, s in triggered.items()}}


def test_frequency_beats_image_three_verdicts():
    rng = np.random.default_rng(2)
    clean = rng.normal(size=60)
    separated = _scores(clean, {"badnets": clean + 3, "blend": clean + 2})
    noise = _scores(rng.normal(size=60), {"badnets": rng.normal(size=60), "blend": clean})
    attacks = ["badnets", "blend"]

    result = claims_detection.frequency_beats_image(separated, noise, attacks)
    assert result["verdict"] == HOLDS and result["ci_low"] > 0
    assert "wins 0 of 2" in result["measured"]

    result = claims_detection.frequency_beats_image(noise, separated, attacks)
    assert result["verdict"] == FAILS and "image domain is better" in result["reason"]
    assert "wins 2 of 2" in result["measured"]

    result = claims_detection.frequency_beats_image(separated, separated, attacks)
    assert result["verdict"] == FAILS and "not significant" in result["reason"]
    assert result["value"] == 0 and result["ci_low"] == result["ci_high"] == 0


def test_frequency_beats_image_point_is_the_mean_auc_difference():
    rng = np.random.default_rng(3)
    dct = _scores(rng.normal(size=30), {"a": rng.normal(1, size=30), "b": rng.normal(size=30)})
    pixel = _scores(rng.normal(size=30), {"a": rng.normal(size=30), "b": rng.normal(size=30)})
    labels = np.r_[np.zeros(30), np.ones(30)]

    def mean_auc(s):
        return np.mean(
            [roc_auc_score(labels, np.r_[s["clean"], s[f"triggered_{a}"]]) for a in "ab"]
        )

    result = claims_detection.frequency_beats_image(dct, pixel, ["a", "b"])
    assert result["value"] == pytest.approx(mean_auc(dct) - mean_auc(pixel))
    assert result["ci_low"] <= result["value"] <= result["ci_high"]


def test_frequency_beats_image_interval_is_the_hand_paired_bootstrap():
    rng = np.random.default_rng(4)
    dct = _scores(np.round(rng.normal(size=15), 1), {"a": np.round(rng.normal(1, size=12), 1)})
    pixel = _scores(rng.normal(size=15), {"a": rng.normal(0.3, size=12)})
    draws = np.random.default_rng(9)
    clean_idx = draws.integers(0, 15, size=(claims.N_BOOT, 15))
    triggered_idx = draws.integers(0, 12, size=(claims.N_BOOT, 12))

    def pairwise_auc(scores):  # every (triggered, clean) pair of each resample, ties half
        c = scores["clean"][clean_idx][:, None, :]
        t = scores["triggered_a"][triggered_idx][:, :, None]
        return ((t > c) + 0.5 * (t == c)).mean(axis=(1, 2))

    differences = pairwise_auc(dct) - pairwise_auc(pixel)
    low, high = np.quantile(differences, [0.025, 0.975])
    result = claims_detection.frequency_beats_image(dct, pixel, ["a"], seed=9)
    assert (result["ci_low"], result["ci_high"]) == pytest.approx((low, high), abs=1e-12)


def test_linear_separable_at_width_paths():
    rows = []
    for width, auc in ((32, 0.7), (224, 0.95)):
        for attack in ("badnets", "blend"):
            rows.append(
                {
                    "width": width,
                    "architecture": "linear",
                    "attack": attack,
                    "auc": auc,
                    "auc_low": auc - 0.05,
                    "auc_high": auc + 0.02,
                }
            )
    rows.append({**rows[-1], "attack": "pooled", "auc": 0.1})  # pooled rows are left out
    frame = pd.DataFrame(rows)
    result = claims_detection.linear_separable_at_width(frame)
    assert result["verdict"] == HOLDS
    assert result["value"] == pytest.approx(0.95)
    assert (result["ci_low"], result["ci_high"]) == pytest.approx((0.90, 0.97))
    frame.loc[frame.width == 224, "auc"] = 0.85
    assert claims_detection.linear_separable_at_width(frame)["verdict"] == FAILS
    frame["architecture"] = "cnn6_kmax128"
    assert claims_detection.linear_separable_at_width(frame)["verdict"] == NOT_MEASURED


def test_fine_tuning_improves_paired_and_ceiling():
    raw = _scores(np.r_[np.ones(30), np.zeros(70)], {"badnets": np.ones(100)})  # ACC 85%
    tuned = _scores(np.zeros(100), {"badnets": np.ones(100)})  # ACC 100%
    result = claims_detection.fine_tuning_improves(raw, tuned, ["badnets"], 0.5, 0.5)
    assert result["verdict"] == HOLDS and result["value"] == pytest.approx(15.0)
    # paired: both clean halves drawn with the same indices, so the interval is the
    # bootstrap of the 30 clean images the tuned detector stops flagging
    low, high = hand_bootstrap(np.r_[np.ones(30), np.zeros(70)].astype(bool), 0)
    assert (result["ci_low"], result["ci_high"]) == pytest.approx((low / 2, high / 2))

    result = claims_detection.fine_tuning_improves(tuned, tuned, ["badnets"], 0.5, 0.5)
    assert result["verdict"] == FAILS and "raw already at 100.0%" in result["reason"]
    assert result["ci_low"] == result["ci_high"] == 0


def test_fine_tuning_aligns_test_rows():
    raw = {**_scores(np.r_[1.0, 0.0, 0.0], {"a": np.ones(3)}), "test_rows": np.array([5, 1, 2])}
    tuned = {**_scores(np.r_[0.0, 0.0, 1.0], {"a": np.ones(3)}), "test_rows": np.array([1, 2, 5])}
    # row 5 is flagged by both: no change after alignment
    assert claims_detection.fine_tuning_improves(raw, tuned, ["a"], 0.5, 0.5)["value"] == 0


def test_smooth_lowest_highfreq_paths():
    ratios = pd.DataFrame({"attack": ["badnets", "blend"], "ratio": [2.0, 1.3]})
    smooth = {"ratio": 1.1, "ci_low": 1.05, "ci_high": 1.15}
    official = {"ratio": float("nan"), "note": "not measured: x.npy not available (place it)"}
    result = claims_smooth.smooth_lowest_highfreq(smooth, ratios, official)
    assert result["verdict"] == HOLDS
    assert "authors' published trigger: not measured: x.npy not available" in result["measured"]
    result = claims_smooth.smooth_lowest_highfreq({**smooth, "ratio": 1.28}, ratios)
    assert result["verdict"] == FAILS and "> 1.25" in result["reason"]
    result = claims_smooth.smooth_lowest_highfreq({**smooth, "ratio": 1.31}, ratios)
    assert "not below blend" in result["reason"]


def _predictions(hits, n_target=10, n=60):
    labels = np.r_[np.zeros(n_target, int), np.ones(n - n_target, int)]
    triggered = np.ones(n, int)
    triggered[:n_target] = 0
    triggered[n_target : n_target + hits] = 0  # predicted as the target 0
    return {"triggered": triggered, "labels": labels, "target": np.array(0)}


def test_smooth_poisoning_effective_wilson_and_paths():
    result = claims_smooth.smooth_poisoning_effective(_predictions(45), clean_acc_drop=1.0)
    assert result["verdict"] == HOLDS
    assert result["value"] == pytest.approx(90.0)
    low, high = wilson(45, 50)
    assert result["ci_low"] == pytest.approx(100 * low) and result["ci_high"] == pytest.approx(
        100 * high
    )
    assert "45 of 50" in result["measured"]
    assert claims_smooth.smooth_poisoning_effective(_predictions(45), 5.0)["verdict"] == FAILS
    assert claims_smooth.smooth_poisoning_effective(_predictions(30), 0.0)["verdict"] == FAILS


def _stages(section4, tuned, clean_after=None, threshold=0.5, **extra):
    n = len(section4)
    scores = {
        "section4__smooth": np.asarray(section4, float),
        "section4__clean": np.zeros(n),
        "section4__threshold": np.array(threshold),
        "tuned_smooth__smooth": np.asarray(tuned, float),
        "tuned_smooth__clean": np.zeros(n) if clean_after is None else np.asarray(clean_after),
        "tuned_smooth__threshold": np.array(threshold),
    }
    scores.update(extra)
    return scores


def test_upgrade_catches_smooth_paths():
    before = np.r_[np.ones(10), np.zeros(90)]
    after = np.r_[np.ones(80), np.zeros(20)]
    result = claims_smooth.upgrade_catches_smooth(_stages(before, after), 0.05)
    assert result["verdict"] == HOLDS and result["value"] == pytest.approx(80.0)
    noisy = _stages(before, after, clean_after=np.r_[np.ones(30), np.zeros(70)])
    result = claims_smooth.upgrade_catches_smooth(noisy, 0.05)
    assert result["verdict"] == FAILS and "clean FPR 30.0% > 10.0%" in result["reason"]
    result = claims_smooth.upgrade_catches_smooth(_stages(before, before), 0.05)
    assert result["verdict"] == FAILS and "lower bound +0.0 <= 0" in result["reason"]
    tuning = {"fine_tune_samples": 800, "history": {"train_acc": [0.5, 0.504]}}
    result = claims_smooth.upgrade_catches_smooth(_stages(before, before), 0.05, tuning=tuning)
    assert (
        "fine-tuned on 800 images for 2 epochs, last training accuracy 50.4%"
        in (result["measured"])
    )


def test_untuned_detector_misses_smooth_needs_separated_intervals():
    smooth = _stages(np.r_[np.ones(5), np.zeros(95)], np.zeros(100))
    result = claims_smooth.untuned_detector_misses_smooth(smooth, {"badnets": np.ones(100)}, 0.5)
    assert result["verdict"] == HOLDS
    low, high = wilson(5, 100)
    assert result["ci_high"] == pytest.approx(100 * high)
    close = {"badnets": np.r_[np.ones(8), np.zeros(92)]}
    assert claims_smooth.untuned_detector_misses_smooth(smooth, close, 0.5)["verdict"] == FAILS


def test_upgrade_catches_unseen_lowpass_paths():
    extra = {
        "tuned_smooth__lowpass_a": np.r_[np.ones(60), np.zeros(40)],
        "section4__lowpass_a": np.zeros(100),
    }
    scores = _stages(np.zeros(100), np.zeros(100), **extra)
    result = claims_smooth.upgrade_catches_unseen_lowpass(scores, ["lowpass_a"], seed=4)
    assert result["verdict"] == HOLDS and result["value"] == pytest.approx(60.0)
    low, high = hand_bootstrap(extra["tuned_smooth__lowpass_a"].astype(bool), 4)
    assert (result["ci_low"], result["ci_high"]) == pytest.approx((low, high))
    assert claims_smooth.upgrade_catches_unseen_lowpass(scores, [])["verdict"] == NOT_MEASURED


def test_filtering_cuts_asr_paths():
    poisoned = _predictions(45)  # ASR 90%
    filtered = _predictions(20)  # ASR 40% before rejection
    flags = np.zeros(60)
    flags[10:15] = 1  # five of the filtered model's successes rejected too
    scores = _stages(np.zeros(60), flags)
    result = claims_smooth.filtering_cuts_asr(poisoned, filtered, scores)
    assert result["value"] == pytest.approx(90.0 - 30.0) and result["verdict"] == HOLDS
    assert "80.0% with the detector at inference only" in result["measured"]
    assert (
        claims_smooth.filtering_cuts_asr(poisoned, poisoned, _stages(np.zeros(60), np.zeros(60)))[
            "verdict"
        ]
        == FAILS
    )


def _mna_scores(before, after, kinds=("smooth",)):
    """Per seed: 2 clean models scored 0.5; each kind's 2 models score ``before``/``after``."""
    rows = []
    for stage, values in (("before", before), ("after", after)):
        for seed, value in enumerate(values):
            for index in range(2):
                rows.append((stage, seed, "clean", index, 0, 0.5))
                for kind in kinds:
                    score = value[kind] if isinstance(value, dict) else value
                    rows.append((stage, seed, kind, index, 1, score))
    return pd.DataFrame(rows, columns=["stage", "seed", "kind", "index", "trojaned", "score"])


def test_mna_smooth_harder_before_t_interval_by_hand():
    # AUC 0 (scores below clean), 0.5 (tied) or 1 (above), per seed
    scores = _mna_scores([0.1, 0.1, 0.1, 0.1, 0.5], [0.9, 0.9, 0.9, 0.9, 0.9])
    result = claims_smooth.mna_smooth_harder_before(scores)
    differences = np.array([1.0, 1.0, 1.0, 1.0, 0.5])
    half = scipy.stats.t.ppf(0.975, 4) * differences.std(ddof=1) / math.sqrt(5)
    assert result["value"] == pytest.approx(differences.mean())
    assert result["ci_low"] == pytest.approx(differences.mean() - half)
    assert result["ci_high"] == pytest.approx(differences.mean() + half)
    assert result["verdict"] == HOLDS  # lower bound 0.62
    assert "only 4 target models" in result["reason"]


def test_mna_smooth_harder_before_fails_when_after_is_not_better():
    scores = _mna_scores([0.9, 0.1, 0.9], [0.1, 0.9, 0.1])
    result = claims_smooth.mna_smooth_harder_before(scores)
    assert result["verdict"] == FAILS and result["value"] < 0


def test_mna_classic_no_cost_names_the_worst_kind():
    kinds = ("smooth", "badnets", "blend")
    before = [{"smooth": 0.1, "badnets": 0.9, "blend": 0.9}] * 2
    after = [{"smooth": 0.9, "badnets": 0.5, "blend": 0.9}] * 2  # badnets: AUC 1 -> 0.5
    result = claims_smooth.mna_classic_no_cost(
        _mna_scores(before, after, kinds), ["badnets", "blend"]
    )
    assert result["verdict"] == FAILS and "badnets -0.500" in result["reason"]
    assert result["value"] == pytest.approx(-0.25)
    result = claims_smooth.mna_classic_no_cost(
        _mna_scores(before, before, kinds), ["badnets", "blend"]
    )
    assert result["verdict"] == HOLDS
    result = claims_smooth.mna_classic_no_cost(_mna_scores(before, after, kinds), [])
    assert result["verdict"] == NOT_MEASURED


# --------------------------------------------------------------------------- the table


CONFIG = {
    "seed": 5,
    "datasets": {
        "alpha": {"attacks": ["badnets", "blend"], "size": 32},
        "beta": {"attacks": ["badnets"], "size": 32},
    },
    "detector": {"architecture": "cnn"},
    "detection": {"datasets": ["alpha"], "image_domain": False, "target_fpr": None},
    "figure6": {"dataset": "alpha", "widths": [], "attacks": []},
    "transfer": {
        "budget": 4,
        "tables": {"table4": {"target": "beta", "columns": [{"source": "alpha", "tune": True}]}},
        "budget_figure": {"target": "beta", "source": "alpha", "budgets": [], "repeats": 1},
    },
    "smooth": {"datasets": []},
    "mna": {"datasets": []},
}


def _results(tmp_path):
    rng = np.random.default_rng(0)
    tables = tmp_path / "tables"
    tables.mkdir(parents=True)
    pd.DataFrame(
        {
            "dataset": ["alpha", "alpha", "beta"],
            "attack": ["badnets", "blend", "badnets"],
            "ratio": [2.0, 1.5, 0.9],
            "ci_low": [1.8, 1.3, 0.8],
            "ci_high": [2.2, 1.7, 1.0],
        }
    ).to_csv(tables / "highfreq_ratio.csv", index=False)
    folder = tmp_path / "detection/alpha/cnn_dct"
    folder.mkdir(parents=True)
    np.savez(
        folder / "scores.npz",
        clean=rng.uniform(0, 0.45, 50),
        triggered_badnets=rng.uniform(0.4, 1, 50),
        triggered_blend=rng.uniform(0, 0.6, 50),
    )
    pd.DataFrame({"attack": ["badnets", "blend"], "threshold": [0.5, 0.5]}).to_csv(
        folder / "metrics.csv", index=False
    )
    return tmp_path


def test_claims_table_minimal_config(tmp_path):
    frame = claims_table(_results(tmp_path), CONFIG)
    assert list(frame.columns) == claims.COLUMNS
    assert set(frame.verdict) <= set(claims.VERDICTS)
    # every claim has a row, in the module's order
    assert list(dict.fromkeys(frame.claim)) == list(claims.CLAIM_NAMES)
    by = {(r.claim, r.dataset): r for r in frame.itertuples()}
    assert by[("highfreq_above_one", "alpha")].verdict == HOLDS
    assert by[("highfreq_above_one", "beta")].verdict == FAILS
    assert "image_domain is false" in by[("frequency_beats_image", "alpha")].reason
    assert "figure6" in by[("linear_separable_at_width", "alpha")].reason
    tuned = frame[frame.claim == "fine_tuning_improves"].iloc[0]
    assert tuned.verdict == NOT_MEASURED and "no untuned alpha -> beta run" in tuned.reason
    assert tuned.setting == "table4: alpha -> beta"
    assert "smooth.datasets is empty" in by[("filtering_cuts_asr", "")].reason
    assert "mna.datasets is empty" in by[("mna_classic_no_cost", "")].reason
    assert frame.attrs["read"] == [
        "detection/alpha/cnn_dct/metrics.csv",
        "detection/alpha/cnn_dct/scores.npz",
        "tables/highfreq_ratio.csv",
    ]

    counts = claims.verdict_counts(frame)
    summary = claims.claims_summary(frame).splitlines()
    assert summary[0] == (
        f"{counts[HOLDS]} claims hold, {counts[FAILS]} do not hold, {counts[NOT_MEASURED]} not "
        f"measured, of {len(frame)} rows"
    )
    assert sum(counts.values()) == len(frame) == 15
    assert len(summary) == 1 + counts[FAILS]
    assert summary[1].startswith("- highfreq_above_one (beta):")

    markdown = claims.claims_markdown(frame)
    assert markdown.startswith("# ") and summary[0] in markdown
    assert "| claim | dataset | verdict | measured | paper | criterion | reason |" in markdown
    assert markdown.count("\n| ") == len(frame) + 1


def test_claims_table_is_deterministic_and_round_trips(tmp_path):
    results = _results(tmp_path)
    first = claims.claims_csv(claims_table(results, CONFIG))
    second = claims.claims_csv(claims_table(results, CONFIG))
    assert first == second
    path = tmp_path / "claims.csv"
    path.write_text(first)
    again = claims.load_claims(path)
    assert claims.claims_summary(again) == claims.claims_summary(claims_table(results, CONFIG))
    # the config's seed reaches the bootstrap: the badnets BDR interval by hand with seed 5
    with np.load(results / "detection/alpha/cnn_dct/scores.npz") as scores:
        flags = scores["triggered_badnets"] >= 0.5
    row = again[again.claim == "detector_flags_triggers"].iloc[0]
    low, high = hand_bootstrap(flags, CONFIG["seed"])
    assert (row.ci_low, row.ci_high) == pytest.approx((low, high), abs=1e-4)


def test_claims_table_names_an_absent_file(tmp_path):
    results = _results(tmp_path)
    (results / "detection/alpha/cnn_dct/scores.npz").unlink()
    frame = claims_table(results, CONFIG)
    row = frame[frame.claim == "detector_flags_triggers"].iloc[0]
    assert row.verdict == NOT_MEASURED
    assert row.reason == "results/detection/alpha/cnn_dct/scores.npz is absent"
