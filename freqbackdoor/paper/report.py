"""Every comparison with the paper in one table: the ``paper_vs_reproduced`` report.

Each stage writes its own ``results/tables/<artifact>_vs_paper.csv`` in one of three shapes:

* number comparisons (``metrics.compare``): table, dataset, our_dataset, row, column, paper,
  reproduced, difference, within_tolerance;
* layer-by-layer architectures (Tables 6 and 7): position, paper_layer, paper_shape,
  reproduced_layer, reproduced_shape, match;
* named quantities (Figure 6): quantity, paper, reproduced.

This module reads all three into one long table (artifact, dataset, row, column, paper,
reproduced, difference, within_tolerance), so a reader sees at a glance which of the paper's
numbers the run reproduces, and writes it as CSV and Markdown with a per-artifact summary.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

COLUMNS = [
    "artifact",
    "dataset",
    "row",
    "column",
    "paper",
    "reproduced",
    "difference",
    "within_tolerance",
]
NUMBER_COLUMNS = {
    "table",
    "dataset",
    "our_dataset",
    "row",
    "column",
    "paper",
    "reproduced",
    "difference",
    "within_tolerance",
}
LAYER_COLUMNS = {
    "position",
    "paper_layer",
    "paper_shape",
    "reproduced_layer",
    "reproduced_shape",
    "match",
}
QUANTITY_COLUMNS = {"quantity", "paper", "reproduced"}


def artifact_name(path: str | Path) -> str:
    """``results/tables/table1_vs_paper.csv`` -> ``table1``."""
    stem = Path(path).stem
    return stem.removesuffix("_vs_paper")


def _numbers(frame: pd.DataFrame, artifact: str) -> pd.DataFrame:
    dataset, paper_name = frame["our_dataset"].fillna(""), frame["dataset"].fillna("")
    label = [
        f"{ours} ({paper})" if ours and paper and ours != paper else ours or paper
        for ours, paper in zip(dataset, paper_name, strict=True)
    ]
    return pd.DataFrame(
        {
            "artifact": frame["table"].fillna(artifact).astype(str),
            "dataset": label,
            "row": frame["row"].astype(str),
            "column": frame["column"].astype(str),
            "paper": frame["paper"],
            "reproduced": frame["reproduced"],
            "difference": frame["difference"],
            # Judged only where both sides have a number (compare writes False otherwise).
            "within_tolerance": [
                _as_bool(w) if pd.notna(p) and pd.notna(r) else None
                for w, p, r in zip(
                    frame["within_tolerance"], frame["paper"], frame["reproduced"], strict=True
                )
            ],
        }
    )


def _layers(frame: pd.DataFrame, artifact: str) -> pd.DataFrame:
    def layer(name, shape):
        return f"{name} ({shape})" if isinstance(shape, str) and shape else str(name)

    return pd.DataFrame(
        {
            "artifact": artifact,
            "dataset": "",
            "row": [f"layer {p}" for p in frame["position"]],
            "column": "layer (output shape)",
            "paper": [
                layer(n, s) for n, s in zip(frame["paper_layer"], frame["paper_shape"], strict=True)
            ],
            "reproduced": [
                layer(n, s)
                for n, s in zip(frame["reproduced_layer"], frame["reproduced_shape"], strict=True)
            ],
            "difference": float("nan"),
            "within_tolerance": frame["match"].map(_as_bool),
        }
    )


def _quantities(frame: pd.DataFrame, artifact: str) -> pd.DataFrame:
    paper = pd.to_numeric(frame["paper"], errors="coerce")
    reproduced = pd.to_numeric(frame["reproduced"], errors="coerce")
    return pd.DataFrame(
        {
            "artifact": artifact,
            "dataset": "",
            "row": frame["quantity"].astype(str),
            "column": "value",
            "paper": frame["paper"],
            "reproduced": frame["reproduced"],
            "difference": reproduced - paper,
            # No stated tolerance for these (pixel widths, pooled accuracies): not judged.
            "within_tolerance": None,
        }
    )


def _as_bool(value) -> bool | None:
    if isinstance(value, bool):
        return value
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    return None


def read_comparison(path: str | Path) -> pd.DataFrame:
    """One ``*_vs_paper.csv`` as rows of the report; an unknown layout is an error naming it."""
    path = Path(path)
    try:
        frame = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise ValueError(f"{path}: not a readable comparison CSV ({error})") from error
    artifact = artifact_name(path)
    columns = set(frame.columns)
    if NUMBER_COLUMNS <= columns:
        return _numbers(frame, artifact)
    if LAYER_COLUMNS <= columns:
        return _layers(frame, artifact)
    if QUANTITY_COLUMNS <= columns:
        return _quantities(frame, artifact)
    raise ValueError(
        f"{path}: unknown comparison layout, columns {sorted(columns)}; expected the columns of "
        f"metrics.compare, of a layer comparison or of a quantity comparison"
    )


def paper_vs_reproduced(paths: Iterable[str | Path]) -> pd.DataFrame:
    """Every comparison file's rows in one table, in the order of ``paths``."""
    frames = [read_comparison(p) for p in paths]
    if not frames:
        return pd.DataFrame(columns=COLUMNS)
    table = pd.concat(frames, ignore_index=True)[COLUMNS]
    table["within_tolerance"] = table["within_tolerance"].astype(object)
    return table


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per artifact: rows, numbers the paper gives, numbers this run has, both (judged), and
    how many of the judged are within tolerance."""

    def present(column):
        return table[column].notna() & (table[column].astype(str) != "")

    frame = pd.DataFrame(
        {
            "artifact": table["artifact"],
            "rows": 1,
            "paper_values": present("paper"),
            "reproduced_values": present("reproduced"),
            "judged": table["within_tolerance"].map(lambda v: v is True or v is False),
            "within_tolerance": table["within_tolerance"].map(lambda v: v is True),
        }
    )
    grouped = frame.groupby("artifact", sort=False).sum().reset_index()
    share = 100 * grouped["within_tolerance"] / grouped["judged"].where(grouped["judged"] > 0)
    grouped["share_within"] = share.round(1)
    return grouped


def report_markdown(table: pd.DataFrame, tolerance: float) -> str:
    """The report as Markdown: what "within tolerance" means, the summary, then every row."""
    counts = summary(table)
    total_judged, total_within = int(counts["judged"].sum()), int(counts["within_tolerance"].sum())
    share = f"{100 * total_within / total_judged:.1f}%" if total_judged else "n/a"
    shown = table.copy()
    shown["within_tolerance"] = (
        shown["within_tolerance"].map({True: "yes", False: "no"}).fillna("-")
    )
    for column in ("paper", "reproduced", "difference"):
        shown[column] = shown[column].map(_format_value)
    lines = [
        "# The paper against this run",
        "",
        f"Every number of the paper this run reproduces, beside the paper's. Within tolerance: "
        f"|difference| <= {tolerance:g} percentage points for percentages ({tolerance / 100:g} for "
        f"F1 and AUC, which are fractions); counts, parameters and layers must match exactly. "
        f"`-`: no stated tolerance, or nothing reproduced to compare. "
        f"{total_within} of {total_judged} judged numbers ({share}) are within tolerance.",
        "",
        "## Per artifact",
        "",
        counts.to_markdown(index=False),
        "",
        "## Every comparison",
        "",
        shown.to_markdown(index=False),
        "",
    ]
    return "\n".join(lines)


def _format_value(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
