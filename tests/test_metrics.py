"""Detection metrics on hand-made scores, and the paper-vs-reproduced comparison helpers."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats
from sklearn.metrics import accuracy_score, f1_score, precision_score, roc_auc_score

from freqbackdoor import metrics
from freqbackdoor.errors import ConfigError

PAPER_NUMBERS = Path(__file__).resolve().parents[1] / "config" / "paper_numbers.yaml"


@pytest.fixture
def counts_case():
    """10 clean (1 flagged at 0.5) and 10 triggered (8 flagged) scores."""
    clean = np.array([0.9, 0.1, 0.2, 0.3, 0.05, 0.15, 0.25, 0.35, 0.45, 0.4])
    triggered = np.array([0.6, 0.7, 0.8, 0.95, 0.55, 0.65, 0.75, 0.85, 0.3, 0.2])
    return clean, triggered


@pytest.fixture
def paper():
    return metrics.load_paper_numbers(PAPER_NUMBERS)


def test_perfect_separation():
    clean = np.linspace(0.0, 0.4, 50)
    triggered = np.linspace(0.6, 1.0, 50)
    result = metrics.detection_metrics(clean, triggered, n_boot=200)
    for key in ("acc", "bdr", "precision", "f1", "auc"):
        assert result[key] == 1.0, key
    assert result["fpr"] == 0.0
    assert result["f1_low"] == result["f1_high"] == 1.0
    assert result["auc_low"] == result["auc_high"] == 1.0
    assert result["n_clean"] == result["n_triggered"] == 50


def test_known_counts(counts_case):
    clean, triggered = counts_case
    result = metrics.detection_metrics(clean, triggered, threshold=0.5, n_boot=100)
    precision, recall = 8 / 9, 0.8
    assert result["acc"] == pytest.approx(0.85)
    assert result["bdr"] == pytest.approx(0.8)
    assert result["fpr"] == pytest.approx(0.1)
    assert result["precision"] == pytest.approx(precision)
    assert result["f1"] == pytest.approx(2 * precision * recall / (precision + recall))
    # the same numbers from scikit-learn on the pooled labels
    labels = np.r_[np.zeros(10), np.ones(10)]
    predicted = np.r_[clean, triggered] >= 0.5
    assert result["acc"] == pytest.approx(accuracy_score(labels, predicted))
    assert result["precision"] == pytest.approx(precision_score(labels, predicted))
    assert result["f1"] == pytest.approx(f1_score(labels, predicted))


def test_nothing_flagged_gives_zero_precision_and_f1():
    result = metrics.detection_metrics([0.1, 0.2], [0.3, 0.4], threshold=0.9, n_boot=20)
    assert result["precision"] == result["f1"] == result["bdr"] == result["fpr"] == 0.0
    assert result["acc"] == 0.5 and result["auc"] == 1.0


def test_wilson_intervals_match_scipy_and_contain_the_estimate(counts_case):
    clean, triggered = counts_case
    result = metrics.detection_metrics(clean, triggered, n_boot=100, confidence=0.9)
    for name, k, n in (("acc", 17, 20), ("bdr", 8, 10), ("fpr", 1, 10)):
        ci = scipy.stats.binomtest(k, n).proportion_ci(confidence_level=0.9, method="wilson")
        assert result[f"{name}_low"] == pytest.approx(ci.low)
        assert result[f"{name}_high"] == pytest.approx(ci.high)
        assert result[f"{name}_low"] <= result[name] <= result[f"{name}_high"]


def test_bootstrap_is_seeded_and_auc_matches_sklearn(rng):
    clean = rng.normal(0.3, 0.2, 300)
    triggered = rng.normal(0.6, 0.2, 200)
    first = metrics.detection_metrics(clean, triggered, n_boot=300, seed=7)
    again = metrics.detection_metrics(clean, triggered, n_boot=300, seed=7)
    other = metrics.detection_metrics(clean, triggered, n_boot=300, seed=8)
    assert first == again
    assert (first["auc_low"], first["auc_high"]) != (other["auc_low"], other["auc_high"])
    labels = np.r_[np.zeros(300), np.ones(200)]
    expected = roc_auc_score(labels, np.r_[clean, triggered])
    assert first["auc"] == pytest.approx(expected)
    assert first["auc_low"] < first["auc"] < first["auc_high"]
    assert first["f1_low"] < first["f1"] < first["f1_high"]


def test_rank_auc_equals_sklearn_with_ties_and_in_batches(rng):
    clean = rng.integers(0, 5, 40).astype(float)  # many ties, also across the groups
    triggered = rng.integers(2, 8, 30).astype(float)
    labels = np.r_[np.zeros(40), np.ones(30)]
    expected = roc_auc_score(labels, np.r_[clean, triggered])
    assert metrics._auc_rank(clean, triggered) == pytest.approx(expected)
    batch = metrics._auc_rank(np.stack([clean, clean[::-1]]), np.stack([triggered, -triggered]))
    assert batch[0] == pytest.approx(expected)
    assert batch[1] == pytest.approx(roc_auc_score(labels, np.r_[clean[::-1], -triggered]))


def test_reversed_scores_give_one_minus_auc(rng):
    clean = rng.random(100)
    triggered = rng.random(80) + 0.2
    auc = metrics.detection_metrics(clean, triggered, n_boot=10)["auc"]
    reversed_auc = metrics.detection_metrics(-clean, -triggered, n_boot=10)["auc"]
    assert reversed_auc == pytest.approx(1.0 - auc)


def test_roc_points_span_the_unit_square(counts_case):
    clean, triggered = counts_case
    roc = metrics.roc_points(clean, triggered)
    assert list(roc.columns) == ["fpr", "tpr", "threshold"]
    assert (roc.fpr.iloc[0], roc.tpr.iloc[0]) == (0.0, 0.0)
    assert (roc.fpr.iloc[-1], roc.tpr.iloc[-1]) == (1.0, 1.0)
    assert roc.fpr.is_monotonic_increasing and roc.tpr.is_monotonic_increasing


@pytest.mark.parametrize("target", [0.0, 0.05, 0.1, 0.3, 0.5, 0.99])
def test_threshold_for_fpr_meets_the_target_and_is_smallest(rng, target):
    clean = np.round(rng.random(200), 2)  # ties
    threshold = metrics.threshold_for_fpr(clean, target)
    assert np.mean(clean >= threshold) <= target
    # any lower threshold that is still above a clean score flags too many: the next clean
    # score down is the largest one the threshold must stay above
    below = clean[clean < threshold].max()
    assert np.mean(clean >= below) > target


def test_threshold_for_fpr_edges():
    clean = [0.1, 0.5, 0.9]
    assert metrics.threshold_for_fpr(clean, 0.34) == np.nextafter(0.5, 1.0)
    assert metrics.threshold_for_fpr(clean, 0.0) > 0.9
    assert metrics.threshold_for_fpr(clean, 1.0) == -np.inf
    with pytest.raises(ValueError, match="target_fpr"):
        metrics.threshold_for_fpr(clean, 1.5)


@pytest.mark.parametrize(
    ("clean", "triggered", "culprit"),
    [
        ([], [0.5], "clean_scores"),
        ([0.5], [], "triggered_scores"),
        ([0.1, np.nan], [0.5], "clean_scores"),
        ([0.1], [0.5, np.inf], "triggered_scores"),
        ([[0.1, 0.2]], [0.5], "clean_scores"),
        (["a"], [0.5], "clean_scores"),
    ],
)
def test_errors_name_the_culprit(clean, triggered, culprit):
    with pytest.raises(ValueError, match=culprit):
        metrics.detection_metrics(clean, triggered, n_boot=10)
    with pytest.raises(ValueError, match=culprit):
        metrics.roc_points(clean, triggered)


def test_load_paper_numbers_names_the_file(tmp_path):
    with pytest.raises(ConfigError, match="missing.yaml"):
        metrics.load_paper_numbers(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("table1: [unclosed\n")
    with pytest.raises(ConfigError, match="broken.yaml"):
        metrics.load_paper_numbers(broken)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    with pytest.raises(ConfigError, match="scalar.yaml"):
        metrics.load_paper_numbers(scalar)


def test_paper_long_table1(paper):
    long = metrics.paper_long(paper, "table1")
    assert list(long.columns) == ["table", "dataset", "row", "column", "paper"]
    cifar = long[long.dataset == "cifar10"]
    assert cifar.row.nunique() == 7 and len(cifar) == 7 * 4
    assert set(cifar.column) == {"acc", "bdr", "acc_star", "bdr_star"}
    badnets = cifar.set_index(["row", "column"]).paper
    assert badnets["badnets", "acc"] == pytest.approx(94.10)
    assert set(long.dataset) == {"cifar10", "gtsrb", "pubfig"}
    assert len(long) == (7 + 7 + 6) * 4


def test_paper_long_table5_and_transfer_tables(paper):
    table5 = metrics.paper_long(paper, "table5").set_index(["row", "column"]).paper
    assert table5["cnn6_kmax128", "params"] == 292002
    assert table5["cnn6_kmax128", "acc:badnets"] == pytest.approx(94.10)
    assert table5["linear", "bdr:l0_inv"] == pytest.approx(50.00)
    table2 = metrics.paper_long(paper, "table2")
    assert set(table2.dataset) == {"gtsrb"}
    assert table2.set_index(["row", "column"]).paper["cifar10_tune", "bdr:blend"] == 45.67
    for table in ("table3", "table4"):
        assert set(metrics.paper_long(paper, table).dataset) == {"tsrd"}
    with pytest.raises(KeyError, match="table9"):
        metrics.paper_long(paper, "table9")


def test_compare_joins_and_flags(paper):
    published = metrics.paper_long(paper, "table1")
    ours = pd.DataFrame(
        {
            "table": "table1",
            "dataset": ["photos32", "photos32", "photos224"],
            "row": ["badnets", "badnets", "not_in_paper"],
            "column": ["acc", "bdr", "acc"],
            "reproduced": [93.10, 95.00, 60.0],
        }
    )
    mapping = {"photos32": "cifar10", "photos224": "pubfig"}
    result = metrics.compare(ours, published, mapping=mapping, tolerance=1.0)
    assert list(result.columns) == [
        "table",
        "dataset",
        "our_dataset",
        "row",
        "column",
        "paper",
        "reproduced",
        "difference",
        "within_tolerance",
    ]
    assert len(result) == len(published) + 1
    # paper order first, then the row only we have
    pd.testing.assert_frame_equal(
        result[metrics.KEYS].iloc[:-1], published[metrics.KEYS], check_dtype=False
    )
    keyed = result.set_index(["dataset", "row", "column"])
    acc = keyed.loc[("cifar10", "badnets", "acc")]
    assert acc.our_dataset == "photos32"
    assert acc.difference == pytest.approx(-1.0) and acc.within_tolerance
    bdr = keyed.loc[("cifar10", "badnets", "bdr")]
    assert bdr.difference == pytest.approx(4.5) and not bdr.within_tolerance
    only_paper = keyed.loc[("gtsrb", "badnets", "acc")]
    assert np.isnan(only_paper.reproduced) and np.isnan(only_paper.difference)
    assert not only_paper.within_tolerance
    only_ours = result.iloc[-1]
    assert (only_ours.dataset, only_ours.our_dataset, only_ours.row) == (
        "pubfig",
        "photos224",
        "not_in_paper",
    )
    assert np.isnan(only_ours.paper) and not only_ours.within_tolerance
    assert result.within_tolerance.dtype == bool
    assert "within_tolerance" not in metrics.compare(ours, published, mapping).columns


def test_compare_rejects_duplicates_and_missing_columns(paper):
    published = metrics.paper_long(paper, "table1")
    ours = pd.DataFrame(
        {"table": "table1", "dataset": ["a", "b"], "row": "badnets", "column": "acc"}
    )
    with pytest.raises(ValueError, match="reproduced"):
        metrics.compare(ours, published)
    ours["reproduced"] = [1.0, 2.0]
    with pytest.raises(ValueError, match="duplicate"):
        metrics.compare(ours, published, mapping={"a": "cifar10", "b": "cifar10"})


def test_markdown_renders_missing_values():
    frame = pd.DataFrame({"row": ["x", "y"], "paper": [94.1, np.nan], "flag": [True, False]})
    text = metrics.markdown(frame, digits=1)
    lines = text.splitlines()
    assert len(lines) == 4 and lines[0].startswith("| row")
    assert "94.1" in text and "n/a" in text and "nan" not in text.lower()


def test_decision_threshold_follows_table1s_rule():
    from freqbackdoor.errors import DataError
    from freqbackdoor.metrics import decision_threshold

    sidecar = {"calibration": {"threshold": 0.37}}
    assert decision_threshold(sidecar, None, 0.5) == 0.5  # the paper's fixed threshold
    assert decision_threshold(sidecar, 0.05, 0.5) == 0.37
    with pytest.raises(DataError, match="detector_smooth.json.*val_fraction 0"):
        decision_threshold({"calibration": {"threshold": None}}, 0.05, 0.5, "detector_smooth.json")


def test_paired_difference_of_two_detectors_on_the_same_images():
    from freqbackdoor.metrics import paired_difference

    rng = np.random.default_rng(0)
    clean, triggered = rng.uniform(0, 0.6, 200), rng.uniform(0.3, 1.0, 200)
    same = paired_difference((clean, triggered), (clean, triggered), (0.5, 0.5), 200, 1)
    assert all(value == 0 for value in same.values())  # identical detectors: no difference at all
    better = (clean * 0.5, np.minimum(triggered + 0.2, 1.0))
    diff = paired_difference((clean, triggered), better, (0.5, 0.5), 500, 1)
    expected_bdr = (better[1] >= 0.5).mean() - (triggered >= 0.5).mean()
    expected_fpr = (better[0] >= 0.5).mean() - (clean >= 0.5).mean()
    assert diff["bdr"] == pytest.approx(expected_bdr) and diff["fpr"] == pytest.approx(expected_fpr)
    assert diff["bdr_low"] <= diff["bdr"] <= diff["bdr_high"] and diff["auc_low"] > 0
    with pytest.raises(ValueError, match="same images"):
        paired_difference((clean, triggered), (clean[:10], triggered), (0.5, 0.5))
