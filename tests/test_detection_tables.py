"""Tables 1 and 5 and the Figure 6 comparison from hand-made detector metrics."""

import numpy as np
import pandas as pd
import pytest

from freqbackdoor.detection import evaluate_attacks
from freqbackdoor.detection_tables import (
    PAPER_TABLE7,
    figure6_comparison,
    layer_comparison,
    table1_frame,
    table1_long,
    table1_markdown,
    table5_frame,
    table5_long,
)
from freqbackdoor.detectors import detector_table


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
