"""Detection metrics with confidence intervals, and the paper-vs-reproduced comparison tables.

A backdoor-data detector gives every image a score, its probability of "triggered". The paper
tests it (Section 4.2) on the clean test images (label 0, negatives) plus the same images with a
trigger (label 1, positives) and reports ACC, the accuracy over both halves, and BDR, the
backdoored-data detection rate (the share of triggered images flagged, i.e. the true-positive
rate). We add the false-positive rate, precision, F1 and the threshold-free ROC AUC, each with an
interval so that a gap to the paper can be told apart from sampling noise:

* ACC, BDR and FPR are binomial proportions: Wilson score intervals (good coverage near 0 and 1,
  where most of the paper's BDRs sit).
* F1 and AUC are not: a stratified percentile bootstrap. The clean and the triggered groups are
  resampled independently, as the test set is built from two fixed-size groups, not drawn as
  one pool. All resamples are evaluated with array operations; AUC uses its rank
  (Mann-Whitney U) form so a batch of resamples costs one vectorised ``rankdata``.

The second half turns the published tables (``config/paper_numbers.yaml``) into a long format
(``table, dataset, row, column, paper``) and joins our numbers onto it, so every table gets a
side-by-side file with the difference and, optionally, a within-tolerance flag.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.stats
import yaml
from sklearn.metrics import roc_auc_score, roc_curve

from .errors import ConfigError, DataError

#: Key columns shared by :func:`paper_long` output and the ``ours`` frame of :func:`compare`.
KEYS = ["table", "dataset", "row", "column"]

#: Test set of each transfer table (Tables 2-4 test on one dataset, trained on others).
_TEST_SET = {"table2": "gtsrb", "table3": "tsrd", "table4": "tsrd"}

#: Tables :func:`paper_long` understands.
TABLES = ("table1", "table2", "table3", "table4", "table5")

#: Upper bound on the number of pooled scores ranked at once during the AUC bootstrap
#: (batch size x (n_clean + n_triggered)); bounds memory at a few tens of MB.
_BOOT_CHUNK = 2_000_000


# --------------------------------------------------------------------------- detection metrics


def _scores(values: Any, name: str) -> np.ndarray:
    """``values`` as a finite, non-empty 1-D float64 array; ValueError naming ``name`` otherwise."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be numeric scores: {error}") from error
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of scores, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is empty: the test set needs at least one sample in each group")
    bad = ~np.isfinite(array)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{name} has {int(bad.sum())} non-finite score(s) (NaN or inf), first at index "
            f"{first}: {array[first]}"
        )
    return array


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of the proportion ``k / n`` (scipy's binomtest)."""
    ci = scipy.stats.binomtest(int(k), int(n)).proportion_ci(
        confidence_level=confidence, method="wilson"
    )
    return float(ci.low), float(ci.high)


def _f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """F1 from counts, ``2 tp / (2 tp + fp + fn)``; elementwise, so it serves every resample.

    Equal to ``2 p r / (p + r)`` whenever precision is defined, and 0 when nothing triggered
    is flagged. The denominator is never 0 here because the triggered group is non-empty.
    """
    tp = np.asarray(tp, dtype=np.float64)
    return 2.0 * tp / (2.0 * tp + fp + fn)


def _auc_rank(clean: np.ndarray, triggered: np.ndarray) -> np.ndarray:
    """ROC AUC of each row via the Mann-Whitney U statistic: ``(R_+ - n_+(n_+ + 1)/2) / (n_+ n_-)``.

    ``clean`` is ``(..., n_clean)`` and ``triggered`` ``(..., n_triggered)``; ``R_+`` is the sum
    of the triggered scores' ranks in the pooled row, with tied scores sharing their average
    rank, which counts a clean-triggered tie as half a correct ordering, as roc_auc_score does.
    """
    n_clean, n_triggered = clean.shape[-1], triggered.shape[-1]
    pooled = np.concatenate([clean, triggered], axis=-1)
    ranks = scipy.stats.rankdata(pooled, method="average", axis=-1)
    rank_sum = ranks[..., n_clean:].sum(axis=-1)
    return (rank_sum - n_triggered * (n_triggered + 1) / 2.0) / (n_triggered * n_clean)


def roc_auc(clean_scores: Any, triggered_scores: Any) -> float:
    """ROC AUC of separating triggered from clean scores (ties count half), as roc_auc_score."""
    clean = _scores(clean_scores, "clean_scores")
    triggered = _scores(triggered_scores, "triggered_scores")
    return float(_auc_rank(clean, triggered))


def _bootstrap(
    clean: np.ndarray, triggered: np.ndarray, threshold: float, n_boot: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """F1 and AUC of ``n_boot`` stratified resamples (each group resampled with replacement).

    Both statistics come from the same resamples. Resamples are processed in batches so that
    memory stays bounded for test sets of tens of thousands of images.
    """
    rng = np.random.default_rng(seed)
    n_clean, n_triggered = clean.size, triggered.size
    flagged_clean = clean >= threshold
    flagged_triggered = triggered >= threshold
    f1 = np.empty(n_boot)
    auc = np.empty(n_boot)
    batch = max(1, _BOOT_CHUNK // (n_clean + n_triggered))
    for start in range(0, n_boot, batch):
        size = min(batch, n_boot - start)
        clean_idx = rng.integers(0, n_clean, size=(size, n_clean))
        triggered_idx = rng.integers(0, n_triggered, size=(size, n_triggered))
        tp = flagged_triggered[triggered_idx].sum(axis=1)
        fp = flagged_clean[clean_idx].sum(axis=1)
        f1[start : start + size] = _f1(tp, fp, n_triggered - tp)
        auc[start : start + size] = _auc_rank(clean[clean_idx], triggered[triggered_idx])
    return f1, auc


def paired_difference(
    first: tuple[Any, Any],
    second: tuple[Any, Any],
    thresholds: tuple[float, float],
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, float]:
    """BDR, FPR and AUC of detector ``second`` minus detector ``first`` on the same images,
    with 95% percentile intervals from a paired bootstrap.

    Each argument pair is ``(clean_scores, triggered_scores)`` of one detector on the same
    clean and triggered images in the same order; ``thresholds`` flag each detector's scores.
    Every resample draws the clean and the triggered images once (stratified, with
    replacement) and scores both detectors on that draw, so the interval reflects the
    difference between the detectors, not the images' sampling twice over.
    """
    (clean_a, trig_a), (clean_b, trig_b) = [
        (_scores(c, "clean_scores"), _scores(t, "triggered_scores")) for c, t in (first, second)
    ]
    if clean_a.shape != clean_b.shape or trig_a.shape != trig_b.shape:
        raise ValueError("a paired comparison needs both detectors' scores on the same images")
    threshold_a, threshold_b = thresholds

    def statistics(ca, ta, cb, tb):
        bdr = (tb >= threshold_b).mean(-1) - (ta >= threshold_a).mean(-1)
        fpr = (cb >= threshold_b).mean(-1) - (ca >= threshold_a).mean(-1)
        return bdr, fpr, _auc_rank(cb, tb) - _auc_rank(ca, ta)

    point = [float(v) for v in statistics(clean_a, trig_a, clean_b, trig_b)]
    rng = np.random.default_rng(seed)
    n_clean, n_trig = clean_a.size, trig_a.size
    batch = max(1, _BOOT_CHUNK // (n_clean + n_trig))
    draws: list[list[np.ndarray]] = [[], [], []]
    for start in range(0, n_boot, batch):
        size = min(batch, n_boot - start)
        ci = rng.integers(0, n_clean, size=(size, n_clean))
        ti = rng.integers(0, n_trig, size=(size, n_trig))
        for store, values in zip(
            draws, statistics(clean_a[ci], trig_a[ti], clean_b[ci], trig_b[ti]), strict=True
        ):
            store.append(values)
    result: dict[str, float] = {}
    for name, value, store in zip(("bdr", "fpr", "auc"), point, draws, strict=True):
        samples = np.concatenate(store) if store else np.array([value])
        low, high = np.percentile(samples, [2.5, 97.5])
        result.update({name: value, f"{name}_low": float(low), f"{name}_high": float(high)})
    return result


def detection_metrics(
    clean_scores: Any,
    triggered_scores: Any,
    threshold: float = 0.5,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, float | int]:
    """ACC, BDR, FPR, precision, F1 and ROC AUC of one detector on one attack, with intervals.

    A sample is flagged as triggered when its score is ``>= threshold``. ``clean_scores`` are the
    negatives, ``triggered_scores`` the positives; both must be finite, non-empty 1-D arrays
    (ValueError naming the argument otherwise). Returns plain Python numbers:

    * ``n_clean``, ``n_triggered``, ``threshold``, ``confidence``, ``n_boot``;
    * ``acc`` (over both groups), ``bdr`` (true-positive rate), ``fpr`` (clean samples flagged),
      each with ``*_low``/``*_high`` Wilson score intervals at level ``confidence``;
    * ``precision`` (0 when nothing is flagged, scikit-learn's ``zero_division`` default);
    * ``f1`` and ``auc`` (scikit-learn's roc_auc_score), each with ``*_low``/``*_high`` from a
      stratified percentile bootstrap of ``n_boot`` resamples drawn with ``seed``.
    """
    clean = _scores(clean_scores, "clean_scores")
    triggered = _scores(triggered_scores, "triggered_scores")
    threshold = float(threshold)
    if math.isnan(threshold):
        raise ValueError("threshold is NaN")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")
    if int(n_boot) != n_boot or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot}")
    n_boot = int(n_boot)

    n_clean, n_triggered = clean.size, triggered.size
    tp = int((triggered >= threshold).sum())
    fp = int((clean >= threshold).sum())
    fn, tn = n_triggered - tp, n_clean - fp
    acc_low, acc_high = wilson_interval(tp + tn, n_clean + n_triggered, confidence)
    bdr_low, bdr_high = wilson_interval(tp, n_triggered, confidence)
    fpr_low, fpr_high = wilson_interval(fp, n_clean, confidence)

    labels = np.concatenate([np.zeros(n_clean), np.ones(n_triggered)])
    auc = float(roc_auc_score(labels, np.concatenate([clean, triggered])))
    boot_f1, boot_auc = _bootstrap(clean, triggered, threshold, n_boot, seed)
    tail = (1.0 - confidence) / 2.0
    f1_low, f1_high = np.quantile(boot_f1, [tail, 1.0 - tail])
    auc_low, auc_high = np.quantile(boot_auc, [tail, 1.0 - tail])

    return {
        "n_clean": n_clean,
        "n_triggered": n_triggered,
        "threshold": threshold,
        "confidence": float(confidence),
        "n_boot": n_boot,
        "acc": (tp + tn) / (n_clean + n_triggered),
        "acc_low": acc_low,
        "acc_high": acc_high,
        "bdr": tp / n_triggered,
        "bdr_low": bdr_low,
        "bdr_high": bdr_high,
        "fpr": fp / n_clean,
        "fpr_low": fpr_low,
        "fpr_high": fpr_high,
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "f1": float(_f1(tp, fp, fn)),
        "f1_low": float(f1_low),
        "f1_high": float(f1_high),
        "auc": auc,
        "auc_low": float(auc_low),
        "auc_high": float(auc_high),
    }


def roc_points(clean_scores: Any, triggered_scores: Any) -> pd.DataFrame:
    """The ROC curve (columns ``fpr, tpr, threshold``) of clean vs. triggered scores.

    From scikit-learn's roc_curve with ``drop_intermediate=True``, so collinear points are
    dropped and the curve stays small enough to store for every attack. It starts at (0, 0)
    with threshold ``+inf`` and ends at (1, 1).
    """
    clean = _scores(clean_scores, "clean_scores")
    triggered = _scores(triggered_scores, "triggered_scores")
    labels = np.concatenate([np.zeros(clean.size), np.ones(triggered.size)])
    fpr, tpr, thresholds = roc_curve(
        labels, np.concatenate([clean, triggered]), drop_intermediate=True
    )
    return pd.DataFrame({"fpr": fpr, "tpr": tpr, "threshold": thresholds})


def threshold_for_fpr(clean_scores: Any, target_fpr: float) -> float:
    """The smallest threshold whose false-positive rate on ``clean_scores`` is ``<= target_fpr``.

    Lets BDR be reported at a fixed FPR. Samples are flagged when ``score >= threshold``, so the
    set of admissible thresholds is open below: the answer is the smallest float just above the
    largest clean score that must stay unflagged (``numpy.nextafter``), which keeps every
    triggered score above that clean score flagged, i.e. maximises BDR at this FPR. Returns
    ``-inf`` when every clean sample may be flagged (``target_fpr >= 1``).
    """
    clean = np.sort(_scores(clean_scores, "clean_scores"))
    target = float(target_fpr)
    if not 0.0 <= target <= 1.0:
        raise ValueError(f"target_fpr must lie in [0, 1], got {target_fpr}")
    if target >= 1.0:
        return -math.inf
    # Threshold just above each distinct clean value v flags the clean scores > v.
    values = np.unique(clean)
    fpr = (clean.size - np.searchsorted(clean, values, side="right")) / clean.size
    first = int(np.argmax(fpr <= target))  # fpr is non-increasing and ends at 0
    return float(np.nextafter(values[first], np.inf))


# --------------------------------------------------------------------------- paper comparison


def decision_threshold(
    sidecar: Mapping[str, Any], target_fpr: float | None, fixed: float, where: str = "detector"
) -> float:
    """Table 1's threshold rule for a detector: the fixed one, or its calibrated one.

    With ``target_fpr`` None (the paper's rule, both shipped configs) every detector flags at
    ``fixed``; otherwise at the threshold its sidecar's ``calibration`` holds for that rate.
    ``DataError`` naming ``where`` when the sidecar has none (``val_fraction: 0``).
    """
    if target_fpr is None:
        return float(fixed)
    threshold = (sidecar.get("calibration") or {}).get("threshold")
    if threshold is None:
        raise DataError(
            f"{where} holds no threshold calibrated for detection.target_fpr {target_fpr} "
            "(was it trained with val_fraction 0?)"
        )
    return float(threshold)


def calibration_record(val_clean_scores: Any, target_fpr: float | None) -> dict[str, Any]:
    """A detector sidecar's ``calibration``: its threshold for ``target_fpr`` on held-out clean scores.

    ``threshold`` is None without a target rate or without held-out images (then the fixed
    threshold applies); ``val_fpr_at_0.5`` is the rate the paper's fixed 0.5 would give.
    """
    scores = np.asarray(val_clean_scores, dtype=np.float64)
    return {
        "target_fpr": target_fpr,
        "val_images": int(scores.size),
        "val_fpr_at_0.5": float((scores >= 0.5).mean()) if scores.size else None,
        "threshold": (
            float(threshold_for_fpr(scores, target_fpr))
            if target_fpr is not None and scores.size
            else None
        ),
    }


def load_paper_numbers(path: str | Path) -> dict[str, Any]:
    """The published numbers (``config/paper_numbers.yaml``) as a dict.

    Raises ConfigError naming the file when it is missing, is not valid YAML or is not a
    mapping, so a broken comparison step points straight at the file to fix.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as error:
        raise ConfigError(f"paper numbers file {path} not found") from error
    except OSError as error:
        raise ConfigError(f"cannot read paper numbers file {path}: {error}") from error
    try:
        paper = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"paper numbers file {path} is not valid YAML: {error}") from error
    if not isinstance(paper, dict):
        raise ConfigError(
            f"paper numbers file {path} must hold a mapping of tables, got {type(paper).__name__}"
        )
    return paper


def _values(values: Any, attacks: list[str], where: str) -> list[float]:
    """One published value per attack; ValueError naming ``where`` when the lengths differ."""
    if not isinstance(values, list) or len(values) != len(attacks):
        raise ValueError(
            f"{where}: expected a list of {len(attacks)} values (one per attack), got {values!r}"
        )
    return [float(v) for v in values]


def _per_attack(
    table: str, dataset: str, row: str, metrics: Mapping[str, Any], attacks: list[str]
) -> list[dict[str, Any]]:
    """Long rows ``<metric>:<attack>`` of one setting, attack by attack (ACC then BDR each)."""
    columns = {
        metric: _values(values, attacks, f"{table}.{row}.{metric}")
        for metric, values in metrics.items()
        if metric in ("acc", "bdr")
    }
    return [
        {
            "table": table,
            "dataset": dataset,
            "row": row,
            "column": f"{metric}:{attack}",
            "paper": values[i],
        }
        for i, attack in enumerate(attacks)
        for metric, values in columns.items()
    ]


def _table1(paper: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Table 1: per dataset, per attack: acc, bdr, acc_star, bdr_star (image domain)."""
    records = []
    for dataset, block in paper.items():
        if not isinstance(block, Mapping):  # e.g. average_bdr_headline
            continue
        attacks = list(block["attacks"])
        columns = {
            column: _values(values, attacks, f"table1.{dataset}.{column}")
            for column, values in block.items()
            if column != "attacks"
        }
        for i, attack in enumerate(attacks):
            for column, values in columns.items():
                records.append(
                    {
                        "table": "table1",
                        "dataset": dataset,
                        "row": attack,
                        "column": column,
                        "paper": values[i],
                    }
                )
    return records


def _transfer(table: str, paper: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Tables 2-4: per source setting (e.g. ``cifar10_tune``), ACC and BDR per attack."""
    attacks = list(paper["attacks"])
    records = []
    for setting, metrics in paper.items():
        if setting == "attacks" or not isinstance(metrics, Mapping):
            continue
        records += _per_attack(table, _TEST_SET[table], setting, metrics, attacks)
    return records


def _table5(paper: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Table 5: per detector architecture, params, train_acc, then ACC and BDR per attack."""
    attacks = list(paper["attacks"])
    records = []
    for model, block in paper["models"].items():
        for column in ("params", "train_acc"):
            if column in block:
                records.append(
                    {
                        "table": "table5",
                        "dataset": "cifar10",
                        "row": model,
                        "column": column,
                        "paper": float(block[column]),
                    }
                )
        records += _per_attack("table5", "cifar10", model, block, attacks)
    return records


def paper_long(paper: Mapping[str, Any], table: str) -> pd.DataFrame:
    """One published table in long format: columns ``table, dataset, row, column, paper``.

    * ``table1``: dataset cifar10/gtsrb/pubfig, row = attack, column acc/bdr/acc_star/bdr_star.
    * ``table2``-``table4``: dataset = the test set (gtsrb, tsrd, tsrd), row = the source setting
      (e.g. ``cifar10_tune``), column ``acc:<attack>`` / ``bdr:<attack>``.
    * ``table5``: dataset cifar10, row = detector (e.g. ``cnn6_kmax128``), column ``params``,
      ``train_acc``, ``acc:<attack>``, ``bdr:<attack>``.

    Values stay as published (percent; ``params`` a count) and rows keep the paper's order.
    Raises KeyError naming an unknown table or one missing from ``paper``.
    """
    if table not in TABLES:
        raise KeyError(f"unknown table {table!r}; known tables: {', '.join(TABLES)}")
    if table not in paper:
        raise KeyError(f"table {table!r} is missing from the paper numbers")
    block = paper[table]
    try:
        if table == "table1":
            records = _table1(block)
        elif table == "table5":
            records = _table5(block)
        else:
            records = _transfer(table, block)
    except KeyError as error:
        raise KeyError(f"paper numbers of {table} lack the key {error}") from error
    return pd.DataFrame.from_records(records, columns=[*KEYS, "paper"])


FRACTION_COLUMN = re.compile(r"(^|[_:])(f1|auc)($|[_:*])")
EXACT_COLUMN = re.compile(
    r"params|parameters|samples|epochs|count|label|passes|is_closest|generalizes|poison_rate"
)


def column_tolerance(column: str, tolerance: float) -> float:
    """The tolerance a compared ``column`` gets: ``tolerance`` percentage points for percents,
    ``tolerance / 100`` for F1 and AUC (fractions), zero for counts, labels and settings."""
    if EXACT_COLUMN.search(column):
        return 0.0
    if FRACTION_COLUMN.search(column.lower()):
        return tolerance / 100.0
    return tolerance


def compare(
    ours: pd.DataFrame,
    paper: pd.DataFrame,
    mapping: Mapping[str, str] | None = None,
    tolerance: float | None = None,
) -> pd.DataFrame:
    """Our numbers next to the paper's: an outer join on ``table, dataset, row, column``.

    ``ours`` has the key columns and ``reproduced`` (in the paper's units); ``paper`` comes
    from :func:`paper_long`. ``mapping`` renames our dataset names to the paper's (e.g.
    ``{"photos32": "cifar10"}``; unmapped names are kept) before the join, and ``our_dataset``
    keeps the original name. ``difference`` is ``reproduced - paper`` (NaN where one side is
    missing); with ``tolerance``, ``within_tolerance`` says whether ``|difference| <=
    limit`` with the limit of :func:`column_tolerance` (False where one side is missing). Rows follow the paper's order, then the
    rows only we have, in our order. Duplicate keys on either side raise ValueError.
    """
    for frame, name, value in ((ours, "ours", "reproduced"), (paper, "paper", "paper")):
        missing = [c for c in [*KEYS, value] if c not in frame.columns]
        if missing:
            raise ValueError(f"{name} lacks the column(s) {', '.join(missing)}")
    left = paper[[*KEYS, "paper"]].reset_index(drop=True)
    right = ours[[*KEYS, "reproduced"]].reset_index(drop=True)
    right.insert(2, "our_dataset", right["dataset"])
    if mapping:
        right["dataset"] = right["dataset"].map(lambda name: mapping.get(name, name))
    for frame, name in ((left, "paper"), (right, "ours")):
        duplicated = frame.duplicated(KEYS, keep=False)
        if duplicated.any():
            keys = frame.loc[duplicated, KEYS].drop_duplicates().to_dict("records")
            raise ValueError(f"{name} has duplicate keys (after dataset mapping): {keys}")

    left["_order"] = np.arange(len(left), dtype=np.float64)
    right["_ours"] = np.arange(len(right), dtype=np.float64)
    merged = left.merge(right, on=KEYS, how="outer", sort=False)
    merged["_order"] = merged["_order"].fillna(len(left) + merged["_ours"])
    merged = merged.sort_values("_order", kind="stable").reset_index(drop=True)
    merged["paper"] = merged["paper"].astype(np.float64)
    merged["reproduced"] = merged["reproduced"].astype(np.float64)
    merged["difference"] = merged["reproduced"] - merged["paper"]
    columns = ["table", "dataset", "our_dataset", "row", "column", "paper", "reproduced"]
    columns.append("difference")
    if tolerance is not None:
        limit = merged["column"].astype(str).map(lambda c: column_tolerance(c, tolerance))
        merged["within_tolerance"] = (merged["difference"].abs() <= limit + 1e-9).astype(bool)
        columns.append("within_tolerance")
    return merged[columns]


def markdown(frame: pd.DataFrame, digits: int = 2, missing: str = "n/a") -> str:
    """``frame`` as a GitHub Markdown table, floats to ``digits`` decimals, NaN as ``missing``.

    For the human-readable side-by-side files next to each CSV; the CSV keeps full precision.
    """
    shown = frame.astype(object).where(frame.notna(), None)
    return shown.to_markdown(index=False, floatfmt=f".{digits}f", missingval=missing)
