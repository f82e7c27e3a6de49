"""Meta Neural Analysis (Xu et al., "Detecting AI Trojans Using Meta Neural Analysis", S&P 2021).

Section 5.4 of the paper runs MNA (the authors' code calls it MNTD) against a classifier poisoned
with the smooth trigger, before and after "upgrading" it with the smooth-trigger generation.
This module holds the defence itself; the workflow's ``mna_*`` rules train the models.

* The defender trains *shadow models* on a small clean share of the training data: benign ones,
  and "jumbo" trojaned ones, each poisoned with a trigger drawn by :func:`draw_jumbo_trigger`
  from MNTD's jumbo distribution (a random patch or a full-image blend; random size, location,
  pattern, transparency, target label and poison share).
* The *upgrade* adds shadow models poisoned with smooth triggers (:func:`draw_lowpass_trigger`,
  a random pattern through the low-pass filter ``g``, or Algorithm 1 run on a benign shadow
  model, :func:`algorithm1_trigger`).
* Every shadow and target model is trained by MNTD's recipe (:mod:`freqbackdoor.mna.mntd`: their
  CIFAR-10 network, Adam 1e-3, batches of 100, poisoned copies appended to the clean set).
* :class:`MetaClassifier` feeds a set of learned query images to a model, concatenates its
  logits on them and maps them through a small dense network to one "trojaned" logit;
  :func:`train_meta_classifier` trains the queries and the network together on the shadow
  models with binary cross-entropy, one model per step ("query tuning"), and keeps the epoch
  whose AUC on a separate set of validation shadow models is best (MNTD's ``run_meta.py``).
  The queries start at the defender's per-channel data mean and standard deviation.
* :func:`auc_summary` scores the *target models* (clean, smooth-poisoned, classic-poisoned) by
  AUC over several meta-training seeds, with a 95% t-interval across seeds.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.stats
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from ..errors import ConfigError, DataError
from ..triggers.registry import Trigger, TriggerContext
from ..triggers.smooth import SmoothSettings, generate_smooth_trigger, lowpass_trigger
from . import mntd  # noqa: F401  (registers MNTD's architecture in MODELS)

_log = logging.getLogger(__name__)

#: MNTD's jumbo distribution (its authors' code, CIFAR-10): patch sides, the full-image side
#: added at run time; transparency of a patch (set to 1 above ``PATCH_OPAQUE_ABOVE``) and of a
#: full-image blend; pattern noise margin; poison share.
PATCH_SIDES = (2, 3, 4, 5)
PATCH_ALPHA = (0.2, 0.6)
PATCH_OPAQUE_ABOVE = 0.5
BLEND_ALPHA = (0.05, 0.2)
PATTERN_MARGIN = (0.0, 1.0)
POISON_SHARE = (0.05, 0.5)

SHADOW_KINDS = ("benign", "jumbo", "smooth")


def model_seed(seed: int, role: str, kind: str, index: int) -> int:
    """A 31-bit seed for model ``index`` of ``role`` (shadow, target) and ``kind``.

    Every model of the DAG gets its own stream, stable under changes to the counts of other
    kinds, so adding models never retrains the existing ones.
    """
    if index < 0:
        raise ValueError(f"model index must be >= 0, got {index}")
    tag = zlib.crc32(f"{role}/{kind}".encode())
    state = np.random.SeedSequence([int(seed), tag, int(index)]).generate_state(1)[0]
    return int(state) & 0x7FFFFFFF


def split_rows(
    n: int, shadow_share: float, target_share: float, seed: int
) -> dict[str, np.ndarray]:
    """Disjoint seeded training rows of the defender (``shadow``) and the attacker (``target``).

    MNTD gives the defender 2% of the training set and the attacker's target models 50%.
    """
    for key, share in (("shadow_share", shadow_share), ("target_share", target_share)):
        if not 0 < share < 1:
            raise ConfigError(f"mna.{key} must be in (0, 1), got {share!r}")
    if shadow_share + target_share > 1:
        raise ConfigError(
            f"mna.shadow_share + mna.target_share must be at most 1, got "
            f"{shadow_share} + {target_share}"
        )
    n_shadow, n_target = round(shadow_share * n), round(target_share * n)
    if n_shadow < 1 or n_target < 1:
        raise DataError(
            f"a training set of {n} images leaves {n_shadow} shadow and {n_target} target "
            "rows; raise mna.shadow_share / mna.target_share or use a larger dataset"
        )
    order = np.random.default_rng(seed).permutation(n)
    return {
        "shadow": np.sort(order[:n_shadow]),
        "target": np.sort(order[n_shadow : n_shadow + n_target]),
    }


def draw_jumbo_trigger(
    height: int, width: int, num_classes: int, rng: np.random.Generator
) -> tuple[Trigger, dict[str, Any]]:
    """One trigger from MNTD's jumbo distribution, and the record of what was drawn.

    The side is drawn from {2, 3, 4, 5, full image}; a patch has transparency uniform on
    [0.2, 0.6], made opaque above 0.5, a full-image blend uniform on [0.05, 0.2]; the patch lies
    uniformly where it fits; the pattern is uniform on [-e, 1 + e] per pixel and channel with
    ``e`` uniform on [0, 1], clipped to [0, 1]; the target label is uniform and the poison share
    uniform on [0.05, 0.5]. A non-square image blends over its full height and width.
    """
    sides = [s for s in PATCH_SIDES if s < min(height, width)]
    choice = int(rng.integers(len(sides) + 1))
    full = choice == len(sides)
    if full:
        alpha = float(rng.uniform(*BLEND_ALPHA))
        side_h, side_w, top, left = height, width, 0, 0
    else:
        side_h = side_w = sides[choice]
        alpha = float(rng.uniform(*PATCH_ALPHA))
        if alpha > PATCH_OPAQUE_ABOVE:
            alpha = 1.0
        top = int(rng.integers(height - side_h + 1))
        left = int(rng.integers(width - side_w + 1))
    margin = float(rng.uniform(*PATTERN_MARGIN))
    pattern = rng.uniform(-margin, 1.0 + margin, size=(side_h, side_w, 3))
    pattern = np.clip(pattern, 0.0, 1.0).astype(np.float32)
    target = int(rng.integers(num_classes))
    share = float(rng.uniform(*POISON_SHARE))
    patch = np.zeros((height, width, 3), dtype=np.float32)
    mask = np.zeros_like(patch)
    patch[top : top + side_h, left : left + side_w] = pattern
    mask[top : top + side_h, left : left + side_w] = alpha
    trigger = Trigger(name="jumbo", pattern=patch, mask=mask, mode="replace", target_label=target)
    record = {
        "family": "blend" if full else "patch",
        "side": int(side_h) if not full else None,
        "top": top,
        "left": left,
        "alpha": alpha,
        "pattern_margin": margin,
        "target_label": target,
        "share": share,
    }
    return trigger, record


def draw_lowpass_trigger(
    height: int,
    width: int,
    num_classes: int,
    rng: np.random.Generator,
    settings: SmoothSettings,
) -> tuple[Trigger, dict[str, Any]]:
    """A naive smooth trigger for the upgrade: the ``lowpass`` trigger (Section 5.3's noise
    through ``g``, scaled and inserted like the smooth trigger, ``settings``' filter and range)
    with a drawn noise seed, a uniform target label and a poison share from the jumbo range."""
    noise_seed = int(rng.integers(2**31 - 1))
    target = int(rng.integers(num_classes))
    share = float(rng.uniform(*POISON_SHARE))
    options = {
        "source": "noise",
        "seed": noise_seed,
        "filter_size": settings.filter_size,
        "filter_sigma": settings.filter_sigma,
        "max_value": settings.max_value,
        "strength": settings.strength,
        "target_label": target,
    }
    trigger = lowpass_trigger(height, width, options, TriggerContext())
    record = {"family": "lowpass", "noise_seed": noise_seed, "target_label": target}
    return trigger, {**record, "share": share}


def algorithm1_trigger(
    model: nn.Module,
    images: np.ndarray,
    rng: np.random.Generator,
    settings: SmoothSettings,
    device: str | torch.device = "cpu",
    log: logging.Logger | None = None,
) -> tuple[Trigger, dict[str, Any]]:
    """A smooth trigger found by Algorithm 1 on ``model`` (a benign shadow model), for the upgrade.

    The target is Algorithm 1's dominant label; the poison share is drawn from the jumbo range.
    """
    seed = int(rng.integers(2**31 - 1))
    share = float(rng.uniform(*POISON_SHARE))
    result = generate_smooth_trigger(model, images, settings, device=device, seed=seed, log=log)
    trigger = Trigger(
        name="smooth",
        pattern=result.pattern,
        mask=np.ones_like(result.pattern),
        mode="normalise",
        weight=settings.strength,
        target_label=result.target_label,
    )
    record = {
        "family": "algorithm1",
        "target_label": int(result.target_label),
        "share": share,
        "search_seed": seed,
        "best_pass": int(result.best_pass),
        "best_error_rate": float(result.best_error_rate),
        "reached": bool(result.reached),
    }
    return trigger, record


def uses_algorithm1(index: int, share: float) -> bool:
    """Whether smooth shadow model ``index`` gets an Algorithm 1 trigger (else a low-pass one).

    A ``share`` of the smooth shadow models, spread evenly over the indices (0.5: every second
    one, models 1, 3, 5, ...; 0: none; 1: all).
    """
    if not 0 <= share <= 1:
        raise ConfigError(f"mna.smooth_shadow.algorithm1_share must be in [0, 1], got {share!r}")
    return math.floor((index + 1) * share + 1e-9) > math.floor(index * share + 1e-9)


# --------------------------------------------------------------------------- meta-classifier


QUERY_INIT_DATA = "data"


@dataclasses.dataclass(frozen=True)
class MetaSettings:
    """How the meta-classifier is built and trained (config key ``mna.meta``); MNTD's values.

    ``queries`` learned query images, initialised (``query_init``) from the data: ``"data"``
    draws each pixel of channel ``c`` from N(mean_c, std_c^2), the defender's per-channel
    statistics (MNTD's ``run_meta.py`` for CIFAR-10); a number ``s`` draws N(0, s^2) (MNTD's
    ``MetaClassifier`` default, 1e-3, used for tasks without data statistics). A dense layer of
    ``hidden`` units with ReLU and one output; Adam with ``lr`` for ``epochs`` passes over the
    shadow models, one model per step; ``query_tuning`` False freezes the queries (MNTD's
    ablation); ``threshold`` on the sigmoid output flags a model as trojaned.
    """

    queries: int = 10
    hidden: int = 20
    epochs: int = 10
    lr: float = 1e-3
    query_init: str | float = QUERY_INIT_DATA
    query_tuning: bool = True
    threshold: float = 0.5

    def __post_init__(self) -> None:
        for key in ("queries", "hidden", "epochs"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"mna.meta.{key} must be an integer >= 1, got {value!r}")
        if not self.lr > 0:
            raise ConfigError(f"mna.meta.lr must be positive, got {self.lr!r}")
        init = self.query_init
        numeric = isinstance(init, int | float) and not isinstance(init, bool)
        if not (init == QUERY_INIT_DATA or (numeric and init >= 0)):
            raise ConfigError(
                f"mna.meta.query_init must be {QUERY_INIT_DATA!r} or a standard deviation >= 0, "
                f"got {init!r}"
            )
        if not 0 < self.threshold < 1:
            raise ConfigError(f"mna.meta.threshold must be in (0, 1), got {self.threshold!r}")

    @classmethod
    def from_config(cls, mapping: Mapping[str, Any] | None) -> MetaSettings:
        mapping = dict(mapping or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(mapping) - known)
        if unknown:
            raise ConfigError(
                f"unknown mna.meta key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return cls(**mapping)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def initial_queries(
    settings: MetaSettings,
    input_shape: tuple[int, int, int],
    generator: torch.Generator,
    query_stats: tuple[Sequence[float], Sequence[float]] | None = None,
) -> torch.Tensor:
    """``settings.queries`` x ``input_shape`` starting queries (see :class:`MetaSettings`).

    ``query_stats`` is ``(mean, std)`` per channel (:func:`freqbackdoor.mna.mntd.channel_stats` of
    the defender's shadow images), required by ``query_init: data``.
    """
    noise = torch.randn(settings.queries, *input_shape, generator=generator)
    if settings.query_init != QUERY_INIT_DATA:
        return noise * float(settings.query_init)
    if query_stats is None:
        raise ConfigError(
            "mna.meta.query_init: data needs the per-channel mean and standard deviation of the "
            "shadow data (query_stats)"
        )
    mean, std = (torch.as_tensor(np.asarray(v, dtype=np.float32)) for v in query_stats)
    channels = input_shape[0]
    if mean.shape != (channels,) or std.shape != (channels,):
        raise DataError(
            f"query statistics of shapes {tuple(mean.shape)} and {tuple(std.shape)} for "
            f"{channels}-channel queries"
        )
    return noise * std.view(-1, 1, 1) + mean.view(-1, 1, 1)


class MetaClassifier(nn.Module):
    """MNTD's meta-classifier: learned queries, the model's logits on them, a dense network.

    ``forward(model)`` runs ``model`` (float NCHW input, logits out) on the queries and returns
    one logit: positive means "trojaned". Gradients flow through the (frozen) model into the
    queries, which is what query tuning trains. ``query_stats`` as in :func:`initial_queries`.
    :func:`train_meta_classifier` and :func:`meta_scores` query models in eval mode (dropout
    off), so a model's score is a function of its weights; MNTD's ``utils_meta.py`` leaves them
    in train mode, so its scores carry dropout noise.
    """

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        settings: MetaSettings,
        seed: int = 0,
        query_stats: tuple[Sequence[float], Sequence[float]] | None = None,
    ) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(int(seed))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            self.fc = nn.Linear(settings.queries * num_classes, settings.hidden)
            self.output = nn.Linear(settings.hidden, 1)
        queries = initial_queries(settings, input_shape, generator, query_stats)
        self.queries = nn.Parameter(queries)
        self.queries.requires_grad_(settings.query_tuning)
        self.num_classes = num_classes

    def forward(self, model: nn.Module) -> torch.Tensor:
        logits = model(self.queries)
        if logits.shape != (self.queries.shape[0], self.num_classes):
            raise DataError(
                f"a model returned logits of shape {tuple(logits.shape)} on the queries; the "
                f"meta-classifier expects {self.queries.shape[0]} x {self.num_classes}"
            )
        return self.output(torch.relu(self.fc(logits.reshape(-1)))).squeeze(0)


def _frozen(models: Sequence[nn.Module], device: torch.device) -> list[nn.Module]:
    out = []
    for model in models:
        model.to(device).eval()
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        out.append(model)
    return out


def best_epoch(val_aucs: Sequence[float]) -> int:
    """The 1-based epoch whose validation AUC is highest; ties go to the earliest (MNTD keeps a
    later epoch only when its AUC is strictly higher). NaN AUCs never win unless all are NaN,
    when the last epoch is kept."""
    values = np.asarray(val_aucs, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no epochs to choose from")
    if np.isnan(values).all():
        return int(values.size)
    return int(np.nanargmax(values)) + 1


def _labels(labels: Sequence[int], count: int, what: str) -> np.ndarray:
    labels = np.asarray(labels, dtype=np.float32)
    if count != labels.size:
        raise ValueError(f"{count} {what} models but {labels.size} labels")
    if set(labels.tolist()) != {0.0, 1.0}:
        raise DataError(f"the meta-classifier needs both benign (0) and trojaned (1) {what} models")
    return labels


def train_meta_classifier(
    models: Sequence[nn.Module],
    labels: Sequence[int],
    input_shape: tuple[int, int, int],
    num_classes: int,
    settings: MetaSettings,
    seed: int = 0,
    device: str | torch.device = "cpu",
    val_models: Sequence[nn.Module] | None = None,
    val_labels: Sequence[int] | None = None,
    query_stats: tuple[Sequence[float], Sequence[float]] | None = None,
) -> tuple[MetaClassifier, dict[str, Any]]:
    """Train a :class:`MetaClassifier` on shadow ``models`` (label 1: trojaned, 0: benign).

    Each epoch visits the models in a seeded random order, one Adam step per model on the
    binary cross-entropy of its logit (MNTD's loop). With ``val_models`` (validation shadow
    models, both kinds) the AUC of their scores is measured after every epoch and the weights
    of the best epoch (:func:`best_epoch`) are kept, as MNTD's ``run_meta.py`` does; without,
    the last epoch is kept. ``query_stats`` as in :func:`initial_queries`.

    Returns the classifier (eval mode) and its history: per epoch ``loss`` (mean) and
    ``train_acc``, ``val_auc`` (None without validation models), and ``best_epoch``.
    """
    labels = _labels(labels, len(models), "shadow")
    validate = val_models is not None and len(val_models) > 0
    if validate:
        val_labels = _labels(
            val_labels if val_labels is not None else [], len(val_models), "validation"
        )
    device = torch.device(device)
    models = _frozen(models, device)
    meta = MetaClassifier(input_shape, num_classes, settings, seed, query_stats).to(device)
    optimiser = torch.optim.Adam([p for p in meta.parameters() if p.requires_grad], lr=settings.lr)
    loss_fn = nn.BCEWithLogitsLoss()
    rng = np.random.default_rng(seed)
    history: dict[str, Any] = {"loss": [], "train_acc": [], "val_auc": []}
    best_state, best_auc = None, -math.inf
    for _ in range(settings.epochs):
        meta.train()
        losses, correct = [], 0
        for i in rng.permutation(len(models)):
            target = torch.tensor(labels[i], device=device)
            logit = meta(models[i])
            loss = loss_fn(logit, target)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            losses.append(float(loss.detach()))
            correct += int((float(logit.detach()) > 0) == bool(labels[i]))
        history["loss"].append(float(np.mean(losses)))
        history["train_acc"].append(correct / len(models))
        if validate:
            meta.eval()
            scores = meta_scores(meta, val_models)
            value = float(roc_auc_score(val_labels, scores))
            history["val_auc"].append(value)
            if value > best_auc:  # strictly better, as in MNTD: ties keep the earlier epoch
                best_auc = value
                best_state = {k: v.detach().clone() for k, v in meta.state_dict().items()}
        else:
            history["val_auc"].append(None)
    if validate:
        history["best_epoch"] = best_epoch(history["val_auc"])
        if best_state is not None:
            meta.load_state_dict(best_state)
    else:
        history["best_epoch"] = settings.epochs
    meta.eval()
    return meta, history


@torch.no_grad()
def meta_scores(meta: MetaClassifier, models: Sequence[nn.Module]) -> np.ndarray:
    """The meta-classifier's probability that each model is trojaned."""
    device = meta.queries.device
    models = _frozen(models, device)
    logits = [float(meta(model)) for model in models]
    return 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))


# --------------------------------------------------------------------------- evaluation


def auc(clean_scores: Sequence[float], trojaned_scores: Sequence[float]) -> float:
    """ROC AUC of telling trojaned from clean models by score (scikit-learn)."""
    clean, trojaned = np.asarray(clean_scores, float), np.asarray(trojaned_scores, float)
    if clean.size == 0 or trojaned.size == 0:
        raise DataError(
            f"AUC needs both kinds of model, got {clean.size} clean, {trojaned.size} trojaned"
        )
    labels = np.r_[np.zeros(clean.size), np.ones(trojaned.size)]
    return float(roc_auc_score(labels, np.r_[clean, trojaned]))


def mean_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and two-sided t-interval of ``values`` (NaN bounds for fewer than two)."""
    array = np.asarray(values, dtype=np.float64)
    mean = float(array.mean())
    if array.size < 2:
        return mean, math.nan, math.nan
    half = scipy.stats.t.ppf(0.5 + confidence / 2, array.size - 1) * array.std(ddof=1)
    half /= math.sqrt(array.size)
    return mean, mean - float(half), mean + float(half)


def auc_summary(scores: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """Per stage and trojaned kind: AUC, detection rate and accuracy over meta seeds.

    ``scores`` has one row per (``stage``, ``seed``, target model) with ``kind`` (``clean`` or
    a trigger), ``trojaned`` (0/1) and ``score``. Each trojaned kind is measured against the
    clean targets: ``auc`` (mean over seeds, with ``auc_low``/``auc_high``, the 95%
    t-interval clipped to [0, 1]), ``detection_rate`` (share of that kind's models flagged at ``threshold``,
    percent) and ``accuracy`` (clean and that kind together, percent), both means over seeds.
    """
    records = []
    for stage, frame in scores.groupby("stage", sort=False):
        kinds = [k for k in frame.loc[frame["trojaned"] == 1, "kind"].unique()]
        for kind in kinds:
            aucs, rates, accuracies = [], [], []
            for _, run in frame.groupby("seed"):
                clean = run.loc[run["kind"] == "clean", "score"].to_numpy()
                trojaned = run.loc[run["kind"] == kind, "score"].to_numpy()
                aucs.append(auc(clean, trojaned))
                rates.append(100.0 * float(np.mean(trojaned > threshold)))
                right = np.sum(clean <= threshold) + np.sum(trojaned > threshold)
                accuracies.append(100.0 * right / (clean.size + trojaned.size))
            mean, low, high = mean_interval(aucs)
            low, high = max(low, 0.0), min(high, 1.0)  # an AUC lies in [0, 1]
            records.append(
                {
                    "stage": stage,
                    "kind": kind,
                    "auc": mean,
                    "auc_low": low,
                    "auc_high": high,
                    "auc_seeds": " ".join(f"{a:.4f}" for a in aucs),
                    "detection_rate": float(np.mean(rates)),
                    "accuracy": float(np.mean(accuracies)),
                    "seeds": len(aucs),
                    "clean_models": int((frame["kind"] == "clean").sum() // len(aucs)),
                    "trojaned_models": int((frame["kind"] == kind).sum() // len(aucs)),
                }
            )
    return pd.DataFrame.from_records(records)


#: The paper's MNA numbers (``mna`` in paper_numbers.yaml) and our rows/columns for them: the
#: AUC against smooth-poisoned targets before and after the upgrade, and the share of
#: smooth-poisoned targets the upgraded MNA flags (see the README on this reading).
PAPER_KEYS = {
    "auc_before_upgrade": ("smooth", "auc_before"),
    "auc_after_upgrade": ("smooth", "auc_after"),
    "detection_accuracy_after_upgrade": ("smooth", "detection_rate_after"),
}


def mna_rows(dataset: str, summary: pd.DataFrame) -> list[dict[str, Any]]:
    """One dataset's MNA numbers in the long format of :func:`freqbackdoor.metrics.compare`.

    ``row`` is the trojaned kind of the targets, ``column`` the metric and stage (``auc_before``,
    ``auc_after``, their intervals, ``detection_rate_*``, ``accuracy_*``).
    """
    records = []
    for _, row in summary.iterrows():
        for metric in ("auc", "auc_low", "auc_high", "detection_rate", "accuracy"):
            records.append(
                {
                    "table": "mna",
                    "dataset": dataset,
                    "row": row["kind"],
                    "column": f"{metric}_{row['stage']}",
                    "reproduced": float(row[metric]),
                }
            )
    return records


def paper_mna(block: Mapping[str, Any], dataset: str) -> pd.DataFrame:
    """The paper's ``mna`` block in long format, for ``dataset`` (the paper: CIFAR-10)."""
    records = []
    for key, value in block.items():
        if key not in PAPER_KEYS:
            raise ConfigError(
                f"paper numbers: unknown mna key {key!r}; known: {sorted(PAPER_KEYS)}"
            )
        row, column = PAPER_KEYS[key]
        records.append(
            {
                "table": "mna",
                "dataset": dataset,
                "row": row,
                "column": column,
                "paper": float(value),
            }
        )
    return pd.DataFrame.from_records(records)


def mna_table(dataset: str, summary: pd.DataFrame, meta: Mapping[str, Any]) -> pd.DataFrame:
    """One row per trojaned kind of target: its models' mean ASR and clean accuracy (percent),
    then AUC (with interval), detection rate and accuracy before and after the upgrade."""
    records = []
    for kind in dict.fromkeys(summary["kind"]):
        record: dict[str, Any] = {
            "dataset": dataset,
            "targets": kind,
            "models": int(summary.loc[summary["kind"] == kind, "trojaned_models"].iloc[0]),
            "target_asr": 100.0 * float(meta["target_asr"][kind]),
            "target_clean_acc": 100.0 * float(meta["target_clean_acc"][kind]),
        }
        for stage in ("before", "after"):
            rows = summary[(summary["kind"] == kind) & (summary["stage"] == stage)]
            if len(rows) != 1:
                raise DataError(f"MNA metrics of {dataset}: no {stage!r} row for targets {kind!r}")
            row = rows.iloc[0]
            record[f"auc_{stage}"] = float(row["auc"])
            record[f"auc_{stage}_ci"] = f"[{row['auc_low']:.3f}, {row['auc_high']:.3f}]"
            record[f"detection_rate_{stage}"] = float(row["detection_rate"])
            record[f"accuracy_{stage}"] = float(row["accuracy"])
        records.append(record)
    return pd.DataFrame.from_records(records)


def check_mna_config(
    mna: Mapping[str, Any], smooth_datasets: Sequence[str], attacks: Mapping[str, Sequence[str]]
) -> None:
    """``ConfigError`` naming the key when the ``mna`` block cannot run: a dataset without
    Section 5 (its smooth trigger), a classic trigger the dataset does not build, validation
    shadow models of one kind only (their AUC needs benign and jumbo ones), or a training
    recipe :class:`~freqbackdoor.mna.mntd.MNTDTraining` rejects."""
    validation = dict(mna.get("validation_models", {}))
    if validation.get("smooth", 0) and not validation.get("benign", 0):
        raise ConfigError("mna.validation_models: smooth validation models need benign ones")
    if bool(validation.get("benign", 0)) != bool(validation.get("jumbo", 0)):
        raise ConfigError(
            "mna.validation_models: benign and jumbo must both be 0 (keep the meta-classifier's "
            f"last epoch) or both at least 1 (keep its best validation AUC), got {validation}"
        )
    if "training" in mna:
        mntd.MNTDTraining.from_config(mna["training"])
    for dataset in mna.get("datasets", []):
        if dataset not in attacks:
            raise ConfigError(
                f"mna.datasets: unknown dataset {dataset!r}; known: {sorted(attacks)}"
            )
        if dataset not in smooth_datasets:
            raise ConfigError(
                f"mna.datasets: {dataset!r} needs the smooth trigger of Section 5; add it to "
                "smooth.datasets"
            )
        missing = [a for a in mna.get("classic", []) if a not in attacks[dataset]]
        if missing and mna["target_models"]["classic"] > 0:
            raise ConfigError(
                f"mna.classic: {', '.join(missing)} not among datasets.{dataset}.attacks "
                f"({', '.join(attacks[dataset])})"
            )
