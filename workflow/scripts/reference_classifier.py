"""Rule reference_classifier: train Table 8's model clean on one dataset and checkpoint it.

The checkpoint's sidecar records how it was trained (settings, seed, device, precision), the
clean test accuracy the paper reports (85.50% CIFAR-10, 97.45% GTSRB at paper scale), the
per-epoch history and the training throughput, next to what ``load_checkpoint`` verifies.
"""

import numpy as np

from freqbackdoor.errors import DataError
from freqbackdoor.frequency.dct import resolve_device
from freqbackdoor.io import load_npy, read_json
from freqbackdoor.logs import progress, setup_logging
from freqbackdoor.models.checkpoints import save_checkpoint
from freqbackdoor.models.classifier import ReferenceCNN, build_model
from freqbackdoor.models.prediction import accuracy
from freqbackdoor.models.training import TrainSettings, train_classifier

log = setup_logging(snakemake.log[0])
dataset = snakemake.wildcards.dataset
data_meta = read_json(snakemake.input.meta)
settings = TrainSettings.from_config(snakemake.params.settings["training"])
downsample = snakemake.params.settings["model"]["downsample"]
device = resolve_device(snakemake.params.device)

x_train = load_npy(snakemake.input.x_train)
y_train = np.asarray(load_npy(snakemake.input.y_train))
x_test = load_npy(snakemake.input.x_test)
y_test = np.asarray(load_npy(snakemake.input.y_test))
size, num_classes = int(data_meta["size"]), int(data_meta["num_classes"])
for name, images in (("x_train", x_train), ("x_test", x_test)):
    if images.shape[1:] != (size, size, 3):
        raise DataError(
            f"{snakemake.input[name]}: images of shape {images.shape[1:]}, but "
            f"{snakemake.input.meta} says {size} x {size} x 3"
        )

log.info(
    "training %s on %s: %d train / %d test images, %d classes, %s",
    ReferenceCNN.architecture,
    dataset,
    len(y_train),
    len(y_test),
    num_classes,
    settings,
)
model = build_model(
    ReferenceCNN.architecture, num_classes, size, seed=settings.seed, downsample=downsample
)
history = train_classifier(model, x_train, y_train, settings, device, progress=progress, log=log)
test_acc = accuracy(model, x_test, y_test, device) if len(y_test) else None
best = history["best_epoch"] - 1
metrics = {
    "test_acc": test_acc,
    "val_acc": history["best_val_acc"],
    "train_acc": history["train_acc"][best],
    "train_loss": history["train_loss"][best],
    "best_epoch": history["best_epoch"],
}
save_checkpoint(
    model,
    snakemake.output.model,
    snakemake.output.meta,
    meta={
        "dataset": dataset,
        "classes": data_meta["classes"],
        "data_sha256": data_meta.get("sha256"),
        "training": settings.as_dict(),
        "seed": settings.seed,
        "device": history["device"],
        "precision": history["precision"],
        "metrics": metrics,
        "history": {key: history[key] for key in ("epoch", "train_loss", "train_acc", "val_acc")},
        "stopped_early": history["stopped_early"],
        "samples": {"train": history["train_samples"], "val": history["val_samples"]},
        "timing": {
            "train_seconds": history["seconds"],
            "train_samples_per_second": history["samples_per_second"],
            "epochs_run": len(history["epoch"]),
        },
    },
)
log.info(
    "%s: clean test accuracy %s (best epoch %d, val acc %s), %.0f training samples/s on %s",
    dataset,
    "n/a" if test_acc is None else f"{test_acc:.4f}",
    history["best_epoch"],
    history["best_val_acc"],
    history["samples_per_second"] or 0.0,
    history["device"],
)
