"""The paper-vs-reproduced report: the three comparison layouts read into one table."""

import pandas as pd
import pytest

from freqbackdoor.metrics import compare
from freqbackdoor.paper.report import paper_vs_reproduced, read_comparison, report_markdown, summary


@pytest.fixture
def comparisons(tmp_path):
    ours = pd.DataFrame(
        {
            "table": "table1",
            "dataset": "photos32",
            "row": ["badnets", "badnets", "blend"],
            "column": ["bdr", "f1", "bdr"],
            "reproduced": [93.0, 0.80, 50.0],
        }
    )
    paper = pd.DataFrame(
        {
            "table": "table1",
            "dataset": "cifar10",
            "row": ["badnets", "badnets", "nature"],
            "column": ["bdr", "f1", "bdr"],
            "paper": [90.5, 0.95, 95.0],
        }
    )
    numbers = tmp_path / "table1_vs_paper.csv"
    compare(ours, paper, {"photos32": "cifar10"}, tolerance=5.0).to_csv(numbers, index=False)
    layers = tmp_path / "table7_vs_paper.csv"
    pd.DataFrame(
        {
            "position": [1, 2],
            "paper_layer": ["Input", "Conv2d 3x3"],
            "paper_shape": ["32 x 32 x 3", "32 x 32 x 32"],
            "reproduced_layer": ["Input", "Conv2d 5x5"],
            "reproduced_shape": ["32 x 32 x 3", "32 x 32 x 32"],
            "match": [True, False],
        }
    ).to_csv(layers, index=False)
    quantities = tmp_path / "figure6_vs_paper.csv"
    pd.DataFrame(
        {
            "quantity": ["smallest width", "pooled ACC"],
            "paper": [160.0, None],
            "reproduced": [176.0, 0.9],
        }
    ).to_csv(quantities, index=False)
    return [numbers, layers, quantities]


def test_every_layout_becomes_rows_of_one_table(comparisons):
    table = paper_vs_reproduced(comparisons)
    assert list(table.columns) == [
        "artifact",
        "dataset",
        "row",
        "column",
        "paper",
        "reproduced",
        "difference",
        "within_tolerance",
    ]
    assert table["artifact"].tolist() == ["table1"] * 4 + ["table7"] * 2 + ["figure6"] * 2
    rows = table.set_index(["artifact", "row", "column"])
    assert rows.loc[("table1", "badnets", "bdr"), "difference"] == pytest.approx(2.5)
    assert rows.loc[("table1", "badnets", "bdr"), "within_tolerance"] is True
    # F1 is a fraction: 0.15 off is outside a 5-point (0.05) tolerance
    assert rows.loc[("table1", "badnets", "f1"), "within_tolerance"] is False
    # one side missing: listed, not judged
    assert rows.loc[("table1", "nature", "bdr"), "within_tolerance"] is None
    assert rows.loc[("table1", "blend", "bdr"), "within_tolerance"] is None
    assert (
        rows.loc[("table7", "layer 2", "layer (output shape)"), "reproduced"]
        == "Conv2d 5x5 (32 x 32 x 32)"
    )
    assert rows.loc[("table7", "layer 2", "layer (output shape)"), "within_tolerance"] is False
    assert rows.loc[("figure6", "smallest width", "value"), "difference"] == pytest.approx(16.0)
    assert table["dataset"].iloc[0] == "photos32 (cifar10)"


def test_summary_counts_judged_and_within(comparisons):
    counts = summary(paper_vs_reproduced(comparisons)).set_index("artifact")
    assert counts.loc[
        "table1", ["rows", "paper_values", "reproduced_values", "judged", "within_tolerance"]
    ].tolist() == [4, 3, 3, 2, 1]
    assert counts.loc["table1", "share_within"] == pytest.approx(50.0)
    assert counts.loc["table7", "within_tolerance"] == 1
    assert pd.isna(counts.loc["figure6", "share_within"])
    text = report_markdown(paper_vs_reproduced(comparisons), 5.0)
    assert "2 of 4 judged numbers (50.0%)" in text and "| table7" in text


def test_unknown_layout_names_the_file(tmp_path):
    odd = tmp_path / "table9_vs_paper.csv"
    odd.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="table9_vs_paper.csv.*unknown comparison layout"):
        read_comparison(odd)
    empty = tmp_path / "table10_vs_paper.csv"
    empty.write_text("")
    with pytest.raises(ValueError, match="table10_vs_paper.csv"):
        read_comparison(empty)
