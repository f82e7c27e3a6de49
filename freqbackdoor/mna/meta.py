"""Meta Neural Analysis (Xu et al., "Detecting AI Trojans Using Meta Neural Analysis", S&P 2021).

Section 5.4 of the paper runs MNA (the authors' code calls it MNTD) against a classifier poisoned
with the smooth trigger, before and after "upgrading" it with the smooth-trigger generation.
This module holds the defence itself, the meta-classifier; the workflow's ``mna_*`` rules train
the models. The shadow models' triggers are drawn by :mod:`freqbackdoor.mna.shadow_models` and
the target models scored by :mod:`freqbackdoor.mna.evaluation`.

* Every shadow and target model is trained by MNTD's recipe (:mod:`freqbackdoor.mna.mntd`: their
  CIFAR-10 network, Adam 1e-3, batches of 100, poisoned copies appended to the clean set).
* :class:`MetaClassifier` feeds a set of learned query images to a model, concatenates its
  logits on them and maps them through a small dense network to one "trojaned" logit;
  :func:`train_meta_classifier` trains the queries and the network together on the shadow
  models with binary cross-entropy, one model per step ("query tuning"), and keeps the epoch
  whose AUC on a separate set of validation shadow models is best (MNTD's ``run_meta.py``).
  The queries start at the defender's per-channel data mean and standard deviation.

:func:`check_mna_config` checks the ``mna`` config block as a whole before the workflow runs.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from ..config.options import ConfigSettings
from ..errors import ConfigError, DataError
from . import mntd  # noqa: F401  (registers MNTD's architecture in MODELS)

_log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- meta-classifier


QUERY_INIT_DATA = "data"


@dataclasses.dataclass(frozen=True)
class MetaSettings(ConfigSettings):
    """How the meta-classifier is built and trained (config key ``mna.meta``); MNTD's values.

    ``queries`` learned query images, initialised (``query_init``) from the data: ``"data"``
    draws each pixel of channel ``c`` from N(mean_c, std_c^2), the defender's per-channel
    statistics (MNTD's ``run_meta.py`` for CIFAR-10); a number ``s`` draws N(0, s^2) (MNTD's
    ``MetaClassifier`` default, 1e-3, used for tasks without data statistics). A dense layer of
    ``hidden`` units with ReLU and one output; Adam with ``lr`` for ``epochs`` passes over the
    shadow models, one model per step; ``query_tuning`` False freezes the queries (MNTD's
    ablation); ``threshold`` on the sigmoid output flags a model as trojaned.
    """

    CONFIG_NAME = "mna.meta"
    REQUIRED = ()

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
