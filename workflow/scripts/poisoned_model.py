"""Rules poisoned_model / filtered_poisoned_model: Table 8's classifier trained on a poisoned set.

A seeded ``share`` of the training images carries the trigger and its target label (Section 5.3).
Every epoch records the clean test accuracy, the attack success rate (triggered test images
whose true label is not the target) and the training accuracy on the poisoned batches, for the
per-epoch figure. ``filtered``: the upgraded detector first scores the poisoned training set and
every flagged image is dropped before training (Section 5.4, "eliminate poisoned samples").
"""

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from freqbackdoor.detection.detector import detector_scores
from freqbackdoor.frequency.dct import resolve_device
from freqbackdoor.io import atomic_path, load_npy, read_json, save_npz
from freqbackdoor.logs import progress, setup_logging
from freqbackdoor.metrics import decision_threshold
from freqbackdoor.models.checkpoints import load_checkpoint, save_checkpoint
from freqbackdoor.models.classifier import ReferenceCNN, build_model
from freqbackdoor.models.poisoning import (
    filter_summary,
    filter_training_set,
    poison_training_set,
    train_poisoned_model,
)
from freqbackdoor.models.prediction import predict_logits
from freqbackdoor.models.training import TrainSettings
from freqbackdoor.triggers.registry import Trigger

log = setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)  # the cores Snakemake gave this job
params, wildcards = snakemake.params, snakemake.wildcards
device = resolve_device(params.device)
settings = TrainSettings.from_config(params.settings["training"])
downsample = params.settings["model"]["downsample"]
data_meta = read_json(snakemake.input.meta)
trigger = Trigger.load(snakemake.input.trigger)
x_train = load_npy(snakemake.input.x_train, mmap=False)
y_train = np.asarray(load_npy(snakemake.input.y_train))
x_test = load_npy(snakemake.input.x_test, mmap=False)
y_test = np.asarray(load_npy(snakemake.input.y_test))
x_triggered = load_npy(snakemake.input.x_triggered, mmap=False)
if x_triggered.shape != x_test.shape:
    raise ValueError(
        f"{snakemake.input.x_triggered} holds {x_triggered.shape} images but "
        f"{snakemake.input.x_test} {x_test.shape}"
    )

keep, filtering = None, None
if params.filtered:
    detector, detector_meta = load_checkpoint(
        snakemake.input.detector,
        snakemake.input.detector_meta,
        device=device,
        domain="dct",
        expect={"checkpoint": Path(snakemake.input.detector).name},
    )
    threshold = decision_threshold(
        detector_meta, params.target_fpr, params.threshold, snakemake.input.detector_meta
    )
    x_poisoned, _, rows = poison_training_set(
        x_train, y_train, trigger, params.share, settings.seed
    )
    scores = detector_scores(detector, x_poisoned)
    keep = filter_training_set(scores, threshold)
    filtering = {
        "detector": snakemake.input.detector,
        "threshold": threshold,
        "flagged": int((~keep).sum()),
        **filter_summary(keep, rows),
    }
    log.info("detector filter: %s", filtering)
    del x_poisoned

num_classes = int(data_meta["num_classes"])
model = build_model(
    ReferenceCNN.architecture,
    num_classes,
    int(data_meta["size"]),
    seed=settings.seed,
    downsample=downsample,
)
history, info = train_poisoned_model(
    model,
    x_train,
    y_train,
    trigger,
    params.share,
    settings,
    x_test,
    y_test,
    x_triggered,
    device,
    settings.seed,
    keep_rows=keep,
    progress=progress,
    log=log,
)
epochs = pd.DataFrame(
    {
        key: history[key]
        for key in ("epoch", "train_loss", "train_acc", "val_acc", "clean_acc", "asr")
    }
)
epochs.insert(0, "trigger", wildcards.attack)
with atomic_path(snakemake.output.history, suffix=".csv") as tmp:
    epochs.to_csv(tmp, index=False)
save_npz(
    snakemake.output.predictions,
    clean=predict_logits(model, x_test).argmax(1),
    triggered=predict_logits(model, x_triggered).argmax(1),
    labels=y_test,
    target=np.int64(trigger.target_label),
)
save_checkpoint(
    model,
    snakemake.output.model,
    snakemake.output.meta,
    meta={
        "dataset": wildcards.dataset,
        "trigger": wildcards.attack,
        "target_label": trigger.target_label,
        "poison_share": params.share,
        "filtered": filtering,
        "training": settings.as_dict(),
        "seed": settings.seed,
        "device": history["device"],
        "precision": history["precision"],
        "metrics": info,
        "best_epoch": history["best_epoch"],
        "timing": {
            "train_seconds": history["seconds"],
            "train_samples_per_second": history["samples_per_second"],
        },
    },
)
log.info(
    "%s/%s: clean acc %.4f, ASR %.4f (target %d, %s poisoned rows)",
    wildcards.dataset,
    wildcards.attack,
    info["clean_acc"],
    info["asr"],
    trigger.target_label,
    info.get("poisoned_rows"),
)
