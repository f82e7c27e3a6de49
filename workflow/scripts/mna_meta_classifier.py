"""Rule mna_meta_classifier: MNA's meta-classifier before and after the smooth-trigger upgrade.

The shadow models of each kind with an index below ``mna.shadow_models[kind]`` train the
meta-classifier, the next ``mna.validation_models[kind]`` validate it (MNTD's split). For every
meta-training seed, two meta-classifiers with query tuning start from the same initial queries
(drawn from the shadow data's per-channel mean and standard deviation) and weights: ``before``
on the benign and jumbo shadow models (MNTD), ``after`` on those plus the smooth shadow models
(the upgrade), each kept at the epoch of its best validation AUC (validation models of the same
kinds). Both score every target model; the AUC of each trojaned kind against the clean targets,
its 95% interval over seeds, the detection rate and accuracy at the threshold go to the metrics
file, every score to the scores file.
"""

import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from freqbackdoor.frequency.dct import resolve_device
from freqbackdoor.io import atomic_path, load_npy, write_json
from freqbackdoor.logs import setup_logging
from freqbackdoor.mna.evaluation import auc_summary
from freqbackdoor.mna.meta import (
    MetaSettings,
    meta_scores,
    train_meta_classifier,
)
from freqbackdoor.mna.mntd import channel_stats
from freqbackdoor.mna.shadow_models import model_seed, split_rows
from freqbackdoor.models.group_files import load_model_group_with_sidecar

log = setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
params, inputs = snakemake.params, snakemake.input
device = resolve_device(params.device)
settings = MetaSettings.from_config(params.meta)


def load(models_paths, meta_paths):
    """Every model of the groups, with its sidecar record (kind, index, trojaned)."""
    models, records = [], []
    for model_path, meta_path in zip(models_paths, meta_paths, strict=True):
        role, stem = (
            Path(model_path).parent.name,
            Path(model_path).stem,
        )  # .../{role}/{kind}_{group}
        kind, group_index = stem.rsplit("_", 1)
        expect = {
            "dataset": snakemake.wildcards.dataset,
            "role": role,
            "kind": kind,
            "group": int(group_index),
        }
        group, meta = load_model_group_with_sidecar(model_path, meta_path, device, expect)
        models += group
        records += [{"kind": meta["kind"], **m} for m in meta["models"]]
    return models, records, meta


shadow, shadow_records, sample = load(inputs.shadow, inputs.shadow_meta)
targets, target_records, _ = load(inputs.targets, inputs.target_meta)
input_shape = (3, sample["size"], sample["size"])
num_classes = sample["num_classes"]
x_train = load_npy(inputs.x_train)
split = split_rows(len(x_train), params.shadow_share, params.target_share, params.seed)
mean, std = channel_stats(np.asarray(x_train[split["shadow"]]))
log.info("query initialisation: shadow data mean %s, std %s", mean.round(4), std.round(4))
training = [r["index"] < params.shadow_models[r["kind"]] for r in shadow_records]
kinds = {"before": ("benign", "jumbo"), "after": ("benign", "jumbo", "smooth")}
stages = {
    stage: [i for i, r in enumerate(shadow_records) if r["kind"] in chosen and training[i]]
    for stage, chosen in kinds.items()
}
validation = {
    stage: [i for i, r in enumerate(shadow_records) if r["kind"] in chosen and not training[i]]
    for stage, chosen in kinds.items()
}
labels = np.array([int(r["trojaned"]) for r in shadow_records])
log.info(
    "%d shadow models (%s; %d of them validation), %d target models",
    len(shadow),
    pd.Series([r["kind"] for r in shadow_records]).value_counts().to_dict(),
    len(validation["after"]),
    len(targets),
)

rows, histories = [], {}
start = time.perf_counter()
for repeat in range(params.seeds):
    seed = model_seed(params.seed, "meta", "classifier", repeat)
    for stage, chosen in stages.items():
        meta, history = train_meta_classifier(
            [shadow[i] for i in chosen],
            labels[chosen],
            input_shape,
            num_classes,
            settings,
            seed=seed,
            device=device,
            val_models=[shadow[i] for i in validation[stage]],
            val_labels=labels[validation[stage]],
            query_stats=(mean, std),
        )
        histories[f"{stage}_{repeat}"] = history
        scores = meta_scores(meta, targets)
        for record, score in zip(target_records, scores, strict=True):
            rows.append(
                {
                    "stage": stage,
                    "seed": repeat,
                    "kind": record["kind"],
                    "index": record["index"],
                    "trojaned": int(record["trojaned"]),
                    "score": float(score),
                }
            )
        log.info(
            "seed %d, %s: training loss %.4f, accuracy %.3f; validation AUC %s, kept epoch %d",
            repeat,
            stage,
            history["loss"][-1],
            history["train_acc"][-1],
            history["val_auc"],
            history["best_epoch"],
        )
seconds = time.perf_counter() - start

scores = pd.DataFrame.from_records(rows)
summary = auc_summary(scores, settings.threshold)
for _, row in summary.iterrows():
    log.info(
        "%s vs %s: AUC %.3f [%.3f, %.3f], detection rate %.1f%%",
        row.stage,
        row.kind,
        row.auc,
        row.auc_low,
        row.auc_high,
        row.detection_rate,
    )
with atomic_path(snakemake.output.scores, suffix=".csv") as tmp:
    scores.to_csv(tmp, index=False)
with atomic_path(snakemake.output.metrics, suffix=".csv") as tmp:
    summary.to_csv(tmp, index=False)
write_json(
    snakemake.output.meta,
    {
        "settings": settings.as_dict(),
        "seeds": params.seeds,
        "shadow_models": {
            stage: pd.Series([shadow_records[i]["kind"] for i in chosen]).value_counts().to_dict()
            for stage, chosen in stages.items()
        },
        "validation_models": {
            stage: pd.Series([shadow_records[i]["kind"] for i in chosen]).value_counts().to_dict()
            for stage, chosen in validation.items()
        },
        "query_stats": {"mean": mean.tolist(), "std": std.tolist()},
        "target_models": pd.Series([r["kind"] for r in target_records]).value_counts().to_dict(),
        "shadow_clean_acc": float(np.mean([r["clean_acc"] for r in shadow_records])),
        "shadow_asr": {
            kind: float(np.mean([r["asr"] for r in shadow_records if r["kind"] == kind]))
            for kind in ("jumbo", "smooth")
            if any(r["kind"] == kind for r in shadow_records)
        },
        "target_clean_acc": {
            kind: float(np.mean([r["clean_acc"] for r in target_records if r["kind"] == kind]))
            for kind in dict.fromkeys(r["kind"] for r in target_records)
        },
        "target_asr": {
            kind: float(np.mean([r["asr"] for r in target_records if r["kind"] == kind]))
            for kind in dict.fromkeys(r["kind"] for r in target_records)
            if kind != "clean"
        },
        "histories": histories,
        "timing": {"seconds": seconds},
    },
)
