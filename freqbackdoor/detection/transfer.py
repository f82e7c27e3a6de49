"""Section 4.3: a detector trained on one dataset (or several combined) judged on another.

The paper tests a detector raw on a new dataset, then after fine-tuning it on a small set drawn
from that dataset's test split: ``budget`` clean images plus one random manipulation of each
(paper: 100 + 100). Those images are taken out of the test set, so the fine-tuned detector is
never scored on an image it was tuned on. :func:`fine_tune_split` draws them (nested: a larger
budget keeps the smaller one's images) and :func:`check_disjoint` proves the separation by index.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..config.options import ConfigSettings
from ..errors import ConfigError, DataError
from ..models.training import autocast_dtype, make_optimizer, optimizer_checks, seeded
from ..triggers.names import display_name
from .detector import (
    OPTIMIZERS,
    Detector,
    check_detector_images,
    detector_scores,
    evaluate_attacks,
    fit_epoch,
    manipulated_copy,
)
from .manipulations import ManipulationParams

_log = logging.getLogger(__name__)

COMBINE = "+"  # "photos32+digits32": a detector trained on both training sets
SPLIT_STREAM = 271828  # the fine-tuning draw's random stream, apart from every other


def source_datasets(source: str, datasets: Sequence[str], key: str = "transfer") -> list[str]:
    """The datasets a source name stands for: one, or several joined by ``+``.

    Raises ``ConfigError`` naming ``key`` when a part is not a configured dataset or repeats.
    """
    parts = source.split(COMBINE)
    unknown = [p for p in parts if p not in datasets]
    if unknown:
        raise ConfigError(
            f"{key}: {', '.join(map(repr, unknown))} in source {source!r} is not a configured "
            f"dataset (datasets: {', '.join(datasets)})"
        )
    if len(set(parts)) != len(parts):
        raise ConfigError(f"{key}: source {source!r} names a dataset twice")
    return parts


def check_transfer_config(transfer: Mapping[str, Any], datasets: Mapping[str, Any]) -> None:
    """Cross-key checks of the ``transfer`` config that the schema cannot express.

    Every target and source part must be a configured dataset, every source part must have
    training images (not ``test_fraction: 1``), and a source's images must be the target's
    size (a detector reads one size). Raises ``ConfigError`` naming the offending key.
    """
    names = list(datasets)

    def check(target: str, target_key: str, source: str, key: str) -> None:
        if target not in datasets:
            raise ConfigError(
                f"{target_key}: {target!r} is not a configured dataset (datasets: "
                f"{', '.join(names)})"
            )
        parts = source_datasets(source, names, f"{key}.source")
        test_only = [p for p in parts if datasets[p].get("test_fraction", 0) >= 1]
        if test_only:
            raise ConfigError(
                f"{key}.source: {', '.join(test_only)} is test-only (test_fraction 1) and has "
                "no training images to train a detector on"
            )
        sizes = {p: datasets[p].get("size") for p in dict.fromkeys([*parts, target])}
        if len(set(sizes.values())) != 1:
            raise ConfigError(f"{key}: a detector reads images of one size, got sizes {sizes}")

    for table, spec in transfer.get("tables", {}).items():
        for i, column in enumerate(spec["columns"]):
            key = f"transfer.tables.{table}"
            check(spec["target"], f"{key}.target", column["source"], f"{key}.columns[{i}]")
    figure = transfer.get("budget_figure", {})
    if figure.get("budgets"):
        key = "transfer.budget_figure"
        check(figure["target"], f"{key}.target", figure["source"], key)


def combine_training_sets(arrays: Sequence[np.ndarray], names: Sequence[str]) -> np.ndarray:
    """The training images of several datasets, one after the other (they must share a size)."""
    for array, name in zip(arrays, names, strict=True):
        check_detector_images(np.asarray(array), f"x_train of {name}")
    shapes = {name: tuple(np.asarray(a).shape[1:]) for a, name in zip(arrays, names, strict=True)}
    if len(set(shapes.values())) != 1:
        raise DataError(f"a combined detector needs images of one size; got {shapes}")
    return np.concatenate([np.asarray(a) for a in arrays])


@dataclasses.dataclass(frozen=True)
class FineTuneSettings(ConfigSettings):
    """How a transferred detector is fine-tuned (config key ``transfer.fine_tune``)."""

    CONFIG_NAME = "transfer.fine_tune"
    REQUIRED = ("epochs",)

    epochs: int
    batch_size: int = 32
    lr: float = 1e-4
    optimizer: str = "adam"
    weight_decay: float = 0.0
    momentum: float = 0.9
    rho: float = 0.95
    eps: float = 1e-7
    kernel_l2: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        checks = [
            (isinstance(self.epochs, int) and self.epochs >= 1, "epochs must be an integer >= 1"),
            (
                isinstance(self.batch_size, int) and self.batch_size >= 1,
                "batch_size must be an integer >= 1",
            ),
            (self.lr > 0, "lr must be positive"),
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of {', '.join(OPTIMIZERS)}"),
            (self.weight_decay >= 0, "weight_decay must be >= 0"),
            (0 <= self.momentum <= 1, "momentum must be in [0, 1]"),
            *optimizer_checks(self),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"transfer.fine_tune: {message} (got {self})")


def fine_tune_split(
    n_test: int, budget: int, seed: int, repeat: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``(tune, test)``: sorted row indices of a test split, ``budget`` of them for fine-tuning.

    One seeded permutation per ``(seed, repeat)``; the tuning rows are its first ``budget``, so
    budgets are nested. ``test`` is every other row. ``budget`` 0 (the raw detector) tunes on
    nothing. Raises ``ConfigError`` when the budget leaves no test image.
    """
    if not isinstance(budget, int | np.integer) or budget < 0:
        raise ConfigError(f"transfer budget must be an integer >= 0, got {budget!r}")
    if budget >= n_test:
        raise ConfigError(
            f"transfer budget {budget} leaves none of the target's {n_test} test images to "
            "test on; lower the budget or raise the target's test set size"
        )
    order = np.random.default_rng([seed, SPLIT_STREAM, repeat]).permutation(n_test)
    tune, test = np.sort(order[:budget]), np.sort(order[budget:])
    check_disjoint(tune, test, n_test)
    return tune, test


def check_disjoint(tune: np.ndarray, test: np.ndarray, n_test: int | None = None) -> None:
    """Raise ``DataError`` unless no fine-tuning row is a test row (and, given ``n_test``,
    the two together are exactly the rows ``0 .. n_test - 1``)."""
    tune, test = np.asarray(tune), np.asarray(test)
    shared = np.intersect1d(tune, test)
    if shared.size:
        raise DataError(
            f"{shared.size} fine-tuning image(s) are also test images (rows {shared[:5].tolist()})"
        )
    if n_test is not None:
        union = np.union1d(tune, test)
        if union.size != n_test or tune.size + test.size != n_test or union[-1] != n_test - 1:
            raise DataError(f"fine-tuning and test rows do not partition the {n_test} test images")


def fine_tune_on_pairs(
    model: Detector,
    clean: np.ndarray,
    positives: np.ndarray,
    settings: FineTuneSettings,
    where: str = "transfer.fine_tune",
    progress: Callable | None = None,
    log: logging.Logger | None = None,
    positives_name: str = "manipulated",
) -> tuple[Detector, dict[str, Any]]:
    """A copy of ``model`` trained further on ``clean`` (label 0) and ``positives`` (label 1).

    Both are uint8 images of the detector's size, as many of each. The standardisation buffers
    stay the source detector's, so only the weights adapt; the input model is left untouched.
    ``where`` names the config block of the settings and ``positives_name`` the positives in
    errors and logs. Returns the tuned
    model (eval mode, on the input's device) and the history: per-epoch ``train_loss`` and
    ``train_acc``, ``samples`` and ``timing`` (``seconds``: wall time, kept apart from results).
    """
    log = log or _log
    clean, positives = np.asarray(clean), np.asarray(positives)
    check_detector_images(clean, "clean fine-tuning images")
    check_detector_images(positives, f"{positives_name} fine-tuning images")
    if clean.shape != positives.shape:
        raise DataError(
            f"fine-tuning needs as many clean as {positives_name} images of one size, got "
            f"clean {clean.shape} and {positives_name} {positives.shape}"
        )
    if clean.shape[1] != model.input_size:
        raise DataError(
            f"the detector reads {model.input_size} px inputs, the fine-tuning images are "
            f"{clean.shape[1]} px"
        )
    tuned = copy.deepcopy(model)
    optimiser = make_optimizer(tuned, settings)
    target = next(tuned.parameters()).device
    scaler = torch.amp.GradScaler("cuda", enabled=autocast_dtype(target) == torch.float16)
    generator = torch.Generator().manual_seed(settings.seed)
    history: dict[str, Any] = {"epoch": [], "train_loss": [], "train_acc": []}
    epochs = range(settings.epochs)
    if progress is not None:
        epochs = progress(epochs, desc=f"fine-tuning ({where})", total=settings.epochs)
    started = time.perf_counter()
    with seeded(settings.seed):  # dropout masks
        for epoch in epochs:
            loss, acc = fit_epoch(
                tuned,
                optimiser,
                clean,
                positives,
                settings.batch_size,
                generator,
                scaler,
                f"fine-tuning in epoch {epoch + 1}; lower {where}.lr (now {settings.lr})",
            )
            history["epoch"].append(epoch + 1)
            history["train_loss"].append(loss)
            history["train_acc"].append(acc)
            log.info("fine-tuning epoch %d: loss %.4f, train acc %.4f", epoch + 1, loss, acc)
    tuned.eval()
    history["samples"] = 2 * clean.shape[0]
    history["timing"] = {"seconds": round(time.perf_counter() - started, 3)}
    return tuned, history


def fine_tune_detector(
    model: Detector,
    images: np.ndarray,
    settings: FineTuneSettings,
    params: ManipulationParams | None = None,
    progress: Callable | None = None,
    log: logging.Logger | None = None,
) -> tuple[Detector, dict[str, Any]]:
    """A copy of ``model`` trained further on ``images`` clean and with one random manipulation.

    As the paper's fine-tuning set: every clean target image plus one manipulated copy (drawn
    once, seeded), labels 0 and 1 (:func:`fine_tune_on_pairs`). The input model is left
    untouched. Returns the tuned model and the history (``samples`` = 2 x images).
    """
    images = np.asarray(images)
    check_detector_images(images, "fine-tuning images")
    manipulated = manipulated_copy(images, params or ManipulationParams(), settings.seed, 0)
    return fine_tune_on_pairs(
        model, images, manipulated, settings, "transfer.fine_tune", progress, log
    )


def transfer_metrics(
    model: Detector,
    clean: np.ndarray,
    triggered: Mapping[str, np.ndarray],
    rows: np.ndarray,
    threshold: float,
    transformed: bool = True,
    n_boot: int = 1000,
    seed: int = 0,
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Per-attack metrics of ``model`` on the test ``rows`` of a target's clean/triggered sets.

    ``clean`` and each ``triggered[attack]`` are index-aligned (the triggered set is the clean
    test set with the trigger), as DCT caches (``transformed``) or images. Returns the metrics
    (:func:`freqbackdoor.detection.detector.evaluate_attacks`) and the scores (``clean`` and
    ``triggered_<attack>``) of the rows scored.
    """
    rows = np.asarray(rows)
    n = np.asarray(clean).shape[0]
    for attack, array in triggered.items():
        if np.asarray(array).shape[0] != n:
            raise DataError(
                f"{attack}: {np.asarray(array).shape[0]} triggered test images but {n} clean ones"
            )
    if rows.size and (rows.min() < 0 or rows.max() >= n):
        raise DataError(f"test rows span [{rows.min()}, {rows.max()}] but there are {n} images")

    def score(array: np.ndarray) -> np.ndarray:
        return detector_scores(model, np.asarray(array)[rows], transformed=transformed)

    clean_scores = score(clean)
    triggered_scores = {attack: score(array) for attack, array in triggered.items()}
    metrics = evaluate_attacks(clean_scores, triggered_scores, threshold, n_boot, seed)
    scores = {"clean": clean_scores, **{f"triggered_{a}": s for a, s in triggered_scores.items()}}
    return metrics, scores


# --------------------------------------------------------------------------- Tables 2-4


def column_key(source_paper_name: str, tuned: bool) -> str:
    """The paper's name of a table column, e.g. ``cifar10_tune``."""
    return f"{source_paper_name}_tune" if tuned else source_paper_name


def column_label(source: str, tuned: bool) -> str:
    """Our readable column header, e.g. ``photos32+Tune``."""
    return f"{source}+Tune" if tuned else source


def transfer_frame(columns: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """A transfer table as one row per (column, attack), rates in percent with intervals.

    Each column is ``{"label", "key", "source", "tuned", "metrics"}`` (``metrics`` from
    :func:`transfer_metrics`, ``key`` the paper's column name).
    """
    rows = []
    for column in columns:
        for _, m in column["metrics"].iterrows():
            row = {
                "column": column["label"],
                "paper_column": column["key"],
                "source": column["source"],
                "tuned": bool(column["tuned"]),
                "attack": m.attack,
                "n_clean": int(m.n_clean),
                "threshold": float(m.threshold),
            }
            for key in ("acc", "bdr", "fpr"):
                row[key] = 100 * m[key]
                row[f"{key}_low"] = 100 * m[f"{key}_low"]
                row[f"{key}_high"] = 100 * m[f"{key}_high"]
            for key in ("f1", "auc"):
                row[key] = m[key]
                row[f"{key}_low"] = m[f"{key}_low"]
                row[f"{key}_high"] = m[f"{key}_high"]
            rows.append(row)
    return pd.DataFrame.from_records(rows)


def transfer_long(frame: pd.DataFrame, table: str, target: str) -> pd.DataFrame:
    """A transfer table in the comparison format: row = paper column, column ``acc:<attack>``."""
    records = []
    for _, r in frame.iterrows():
        for key in ("acc", "bdr"):
            records.append(
                {
                    "table": table,
                    "dataset": target,
                    "row": r.paper_column,
                    "column": f"{key}:{r.attack}",
                    "reproduced": r[key],
                }
            )
    return pd.DataFrame.from_records(records)


def transfer_markdown(frame: pd.DataFrame, title: str, target: str) -> str:
    """Readable transfer table: attacks as rows, ACC and BDR per source column, with a summary."""
    attacks = list(dict.fromkeys(frame.attack))
    body = pd.DataFrame({"Attack": [display_name(a) for a in attacks]})
    for label, group in frame.groupby("column", sort=False):
        group = group.set_index("attack").loc[attacks]
        for key in ("acc", "bdr"):
            body[f"{label} {key.upper()}"] = [
                f"{v:.2f} [{lo:.2f}, {hi:.2f}]"
                for v, lo, hi in group[[key, f"{key}_low", f"{key}_high"]].values
            ]
    summary = [
        "",
        "| Column | mean ACC | mean BDR | FPR | mean AUC | test images |",
        "|---" * 6 + "|",
    ]
    for label, group in frame.groupby("column", sort=False):
        summary.append(
            f"| {label} | {group.acc.mean():.2f} | {group.bdr.mean():.2f} | "
            f"{group.fpr.iloc[0]:.2f} | {group.auc.mean():.3f} | "
            f"{int(group.n_clean.iloc[0])} clean + as many triggered |"
        )
    threshold = frame.threshold.iloc[0]
    text = [
        f"# {title}",
        "",
        f"Detectors tested on {target}. Column headers name the detector's training set; "
        "'+Tune' = then fine-tuned on clean images drawn from the target's test split plus one "
        "random manipulation of each; those images are left out of every column's test set. "
        f"Threshold {threshold:g}. ACC and BDR in percent with 95% Wilson intervals.",
        "",
        body.to_markdown(index=False),
        *summary,
    ]
    return "\n".join(text) + "\n"


def budget_frame(metrics: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Mean ACC/BDR/FPR/AUC over attacks per (budget, repeat), for the budget figure.

    Each entry is ``{"budget", "repeat", "metrics"}``; rates in percent.
    """
    rows = []
    for entry in metrics:
        m = entry["metrics"]
        rows.append(
            {
                "budget": int(entry["budget"]),
                "repeat": int(entry["repeat"]),
                "acc": 100 * float(m.acc.mean()),
                "bdr": 100 * float(m.bdr.mean()),
                "fpr": 100 * float(m.fpr.iloc[0]),
                "auc": float(m.auc.mean()),
                "n_clean": int(m.n_clean.iloc[0]),
            }
        )
    return pd.DataFrame.from_records(rows).sort_values(["budget", "repeat"], ignore_index=True)
