"""Tables 1 and 5 and the Figure 6 comparison from hand-made detector metrics."""

import numpy as np
import pandas as pd
import pytest

from freqbackdoor.detection.architectures import detector_table
from freqbackdoor.detection.detector import evaluate_attacks
from freqbackdoor.paper.detection_tables import (
    PAPER_TABLE7,
    figure6_comparison,
    layer_comparison,
    table1_frame,
    table1_long,
    table1_markdown,
    table5_frame,
    table5_long,
)


def _metrics(flagged_clean: int, flagged: dict[str, int], n: int = 10) -> pd.DataFrame:
    clean = np.r_[np.ones(flagged_clean), np.zeros(n - flagged_clean)]
    triggered = {a: np.r_[np.ones(k), np.zeros(n - k)] for a, k in flagged.items()}
    return evaluate_attacks(clean, triggered, threshold=0.5, n_boot=100)


def test_table1_in_percent_with_the_image_domain_beside():
    metrics = {
        ("photos32", "dct"): _metrics(1, {"badnets": 9, "blend": 2}),
        ("photos32", "pixel"): _metrics(5, {"badnets": 1, "blend": 6}),
    }
    table = table1_frame(metrics, ["photos32"])
    badnets = table.set_index("attack").loc["badnets"]
    assert badnets.bdr == pytest.approx(90.0) and badnets.fpr == pytest.approx(10.0)
    assert badnets.acc == pytest.approx(90.0) and badnets.bdr_star == pytest.approx(10.0)
    assert badnets.bdr_low < 90.0 < badnets.bdr_high
    long = table1_long(table)
    assert set(long.column) == {"acc", "bdr", "acc_star", "bdr_star"} and len(long) == 8
    text = table1_markdown(table, target_fpr=0.05)
    assert "BadNets" in text and "5% false-positive" in text and "photos32" in text


def test_table5_rows_and_long_format():
    metrics = {"linear": _metrics(0, {"badnets": 3}), "cnn6_kmax128": _metrics(0, {"badnets": 10})}
    sidecars = {
        "linear": {"body_parameters": 6146, "history": {"train_acc": [0.5, 0.6]}},
        "cnn6_kmax128": {"body_parameters": 292002, "history": {"train_acc": [0.9]}},
    }
    table = table5_frame(metrics, sidecars)
    assert list(table.architecture) == ["linear", "cnn6_kmax128"]
    assert table.train_acc.tolist() == pytest.approx([60.0, 90.0])
    assert table["bdr:badnets"].tolist() == pytest.approx([30.0, 100.0])
    long = table5_long(table, "photos32")
    params = long[(long.row == "cnn6_kmax128") & (long.column == "params")]
    assert params.reproduced.iloc[0] == 292002


def test_table7_matches_the_paper_layer_by_layer():
    comparison = layer_comparison(detector_table("cnn6_kmax128", 32), PAPER_TABLE7)
    assert comparison.match.all() and len(comparison) == len(PAPER_TABLE7)
    wrong = layer_comparison(detector_table("cnn6_kmax128", 64), PAPER_TABLE7)
    assert not wrong.match.all()


def test_figure6_comparison_finds_the_separating_width():
    pooled = pd.DataFrame(
        {"width": [32, 96, 160, 224], "acc": [0.6, 0.95, 0.92, 0.97], "f1": [0.5, 0.9, 0.9, 0.96]}
    )
    comparison = figure6_comparison(pooled, 160)
    assert comparison.reproduced.iloc[0] == 96 and comparison.paper.iloc[0] == 160
    never = figure6_comparison(pooled.assign(acc=0.5), 160)
    assert np.isnan(never.reproduced.iloc[0])


def test_detector_comparison_sets_other_detectors_against_ours():
    from freqbackdoor.paper.detection_tables import (
        detector_comparison,
        detector_comparison_markdown,
    )

    rng = np.random.default_rng(2)
    ours = {"clean": rng.uniform(0, 0.4, 50), "triggered_badnets": rng.uniform(0.3, 1, 50)}
    theirs = {"clean": rng.uniform(0, 0.8, 50), "triggered_badnets": rng.uniform(0.6, 1, 50)}
    frame = detector_comparison(
        {"d": ("cnn6", ours, 0.5)}, {("d", "authors"): (theirs, 0.5)}, {"d": ["badnets"]}, 100, 0
    )
    mine, other = frame[frame.ours].iloc[0], frame[~frame.ours].iloc[0]
    assert other.bdr - mine.bdr == pytest.approx(other.bdr_diff)  # percent points
    assert other.fpr - mine.fpr == pytest.approx(other.fpr_diff)
    assert other.auc - mine.auc == pytest.approx(other.auc_diff)
    assert other.bdr_diff_low <= other.bdr_diff <= other.bdr_diff_high
    text = detector_comparison_markdown(frame)
    assert "BDR cnn6 (ours)" in text and "BDR authors" in text and "FPR on clean images" in text


def test_section5_comparison_puts_the_authors_detectors_beside_our_stages():
    from freqbackdoor.paper.detection_tables import (
        section5_detector_comparison,
        section5_detector_markdown,
    )

    def metrics(bdr):
        return pd.DataFrame(
            {"attack": ["smooth"], "threshold": [0.5], "n_clean": [10], "bdr": [bdr],
             "bdr_low": [bdr - 0.1], "bdr_high": [bdr + 0.1], "fpr": [0.1], "fpr_low": [0.0],
             "fpr_high": [0.2], "auc": [0.7]}
        )  # fmt: skip

    ours = pd.concat(
        [metrics(0.2).assign(stage="section4"), metrics(0.6).assign(stage="tuned_smooth")]
    )
    frame = section5_detector_comparison({"d": ours}, {("d", "authors_cifar10"): metrics(0.4)})
    assert list(frame.detector) == ["section4", "tuned_smooth", "authors_cifar10"]
    assert list(frame.bdr) == pytest.approx([20, 60, 40])  # percent
    assert "| Smooth " in section5_detector_markdown(frame)
