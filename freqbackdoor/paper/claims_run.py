"""Every claim judged on one run: the claims table from a results folder and its configuration.

:func:`claims_table` reads the files the configured DAG writes (the same choices as the
rules', made by ``_Run`` through :mod:`freqbackdoor.config.settings`), calls the judges of :mod:`.claims_detection` and
:mod:`.claims_smooth` once per claim and dataset (or transfer column), gives a ``not
measured`` row naming the absent file or empty config block where inputs are missing, and
orders the rows by :data:`~.claims.CLAIMS`, then the config's dataset order.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..config import settings as resolve
from .claims import CLAIM_NAMES, CLAIMS, COLUMNS, DECIMALS, criterion_text, not_measured, target_fpr
from .claims_detection import (
    detector_flags_triggers,
    fine_tuning_improves,
    frequency_beats_image,
    highfreq_above_one,
    linear_separable_at_width,
    transfer_works,
)
from .claims_smooth import (
    filtering_cuts_asr,
    mna_classic_no_cost,
    mna_smooth_harder_before,
    smooth_lowest_highfreq,
    smooth_poisoning_effective,
    untuned_detector_misses_smooth,
    upgrade_catches_smooth,
    upgrade_catches_unseen_lowpass,
)


class _Run:
    """One run's results folder and configuration: the files it reads (cached, remembered for
    the rule's log) and the choices of the configured DAG (:mod:`freqbackdoor.config.settings`, as the rules)."""

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
        return resolve.default_architecture(self.config, dataset)

    def detection_dir(self, dataset: str, domain: str) -> str:
        return f"detection/{dataset}/{self.detector(dataset)}_{domain}"

    def naive(self, dataset: str) -> list[str]:
        """The naive low-pass triggers of ``dataset``: ``smooth.naive``, or its override."""
        return list(resolve.smooth_spec(self.config, dataset).get("naive") or [])

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
