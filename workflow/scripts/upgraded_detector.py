"""Rule upgraded_detector: the Section 4 detector fine-tuned on one low-pass trigger (Section 5.4).

The fine-tuning set is ``samples`` training images, half clean and half carrying the trigger
(paper: 20,000, one epoch), drawn from the rows the Section 4 detector trained on; its held-out
rows, which neither training saw, calibrate the tuned detector's threshold for the same clean
false-positive rate as Table 1's.
"""

from pathlib import Path

import numpy as np
import torch

from freqbackdoor.detection.detector import detector_scores, validation_split
from freqbackdoor.detection.transfer import FineTuneSettings
from freqbackdoor.detection.upgrade import fine_tune_on_triggered, upgrade_set
from freqbackdoor.errors import ConfigError, DataError
from freqbackdoor.io import load_npy
from freqbackdoor.logs import progress, setup_logging
from freqbackdoor.metrics import calibration_record
from freqbackdoor.models.checkpoints import load_checkpoint, save_checkpoint
from freqbackdoor.triggers.registry import Trigger

log = setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)  # the cores Snakemake gave this job
params, wildcards = snakemake.params, snakemake.wildcards
model, source_meta = load_checkpoint(
    snakemake.input.model,
    snakemake.input.meta,
    device=params.device,
    domain="dct",
    expect={"checkpoint": Path(snakemake.input.model).name, "dataset": wildcards.dataset},
)
training = source_meta["training"]
x_train = load_npy(snakemake.input.x_train, mmap=False)
train_rows, val_rows = validation_split(
    x_train.shape[0], training["val_fraction"], training["seed"]
)
trigger = Trigger.load(snakemake.input.trigger)
try:
    clean, triggered = upgrade_set(x_train[train_rows], trigger, params.samples, params.seed)
except DataError as error:
    raise ConfigError(
        f"smooth.upgrade_samples (or datasets.{wildcards.dataset}.smooth.upgrade_samples) is "
        f"{params.samples}: {error}"
    ) from error
settings = FineTuneSettings.from_config(params.fine_tune)
log.info(
    "fine-tuning %s on %d clean + %d %s-patched images of %s: %s",
    snakemake.input.model,
    clean.shape[0],
    triggered.shape[0],
    wildcards.attack,
    wildcards.dataset,
    settings,
)
tuned, history = fine_tune_on_triggered(
    model, clean, triggered, settings, progress=progress, log=log
)
val_clean = detector_scores(tuned, x_train[val_rows]) if val_rows.size else np.empty(0)
calibration = calibration_record(val_clean, params.target_fpr)
save_checkpoint(
    tuned,
    snakemake.output.model,
    snakemake.output.meta,
    meta={
        "dataset": wildcards.dataset,
        "tuned_on": wildcards.attack,
        "source_checkpoint": snakemake.input.model,
        "source_checkpoint_sha256": source_meta["sha256"],
        "body": source_meta.get("body"),
        "training": training,
        "fine_tune": settings.as_dict(),
        "fine_tune_samples": int(clean.shape[0] + triggered.shape[0]),
        "history": history,
        "calibration": calibration,
    },
)
log.info("tuned on %s: calibrated threshold %s", wildcards.attack, calibration["threshold"])
