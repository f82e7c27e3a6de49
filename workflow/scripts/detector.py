"""Rules detector / combined_detector: train one detector (architecture, input domain) on the
clean + manipulated training images of one dataset, or of several one after the other."""

import torch

from freqbackdoor.detection.detector import DetectorSettings, train_detector
from freqbackdoor.detection.manipulations import ManipulationParams
from freqbackdoor.detection.transfer import combine_training_sets
from freqbackdoor.io import load_npy
from freqbackdoor.logs import progress, setup_logging
from freqbackdoor.metrics import calibration_record
from freqbackdoor.models.checkpoints import save_checkpoint
from freqbackdoor.models.classifier import count_parameters

log = setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)  # the cores Snakemake gave this job
name, domain = snakemake.params.name, snakemake.params.domain
settings = DetectorSettings.from_config(snakemake.params.settings)
params = ManipulationParams.from_config(snakemake.params.manipulations)
paths = snakemake.input.x_train
paths = [paths] if isinstance(paths, str) else list(paths)
x_train = (
    load_npy(paths[0])
    if len(paths) == 1
    else combine_training_sets([load_npy(p, mmap=False) for p in paths], paths)
)
log.info(
    "training %s (%s domain) on %s: %d images, %d clean + %d manipulated per epoch, %s",
    settings.architecture,
    domain,
    name,
    x_train.shape[0],
    x_train.shape[0],
    x_train.shape[0],
    settings,
)
model, history = train_detector(
    x_train,
    settings,
    domain,
    params,
    snakemake.params.device,
    progress=progress,
    log=log,
)
calibration = {
    **calibration_record(history["val_clean_scores"], snakemake.params.target_fpr),
    "val_acc": history["val_acc"],
}
save_checkpoint(
    model,
    snakemake.output.model,
    snakemake.output.meta,
    meta={
        "dataset": name,
        "training_sets": paths,
        "body": settings.architecture,
        "body_parameters": count_parameters(model.body),
        "training": settings.as_dict(),
        "manipulations": snakemake.params.manipulations,
        "seed": settings.seed,
        "device": history["device"],
        "precision": history["precision"],
        "history": {k: history[k] for k in ("epoch", "train_loss", "train_acc")},
        "calibration": calibration,
        "timing": {
            "train_seconds": history["seconds"],
            "train_samples_per_second": history["samples_per_second"],
            "samples_per_epoch": history["samples"],
            "manipulation_rounds": history["rounds"],
        },
    },
)
log.info(
    "%s %s: final train acc %.4f, val acc %s, calibrated threshold %s, %.0f samples/s on %s",
    settings.architecture,
    domain,
    history["train_acc"][-1],
    history["val_acc"],
    calibration["threshold"],
    history["samples_per_second"] or 0,
    history["device"],
)
