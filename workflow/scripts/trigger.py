"""Rule trigger: build one trigger for one dataset's image size and write it with a preview.

Optimised triggers get the reference classifier and a seeded sample of training images; with
``trigger_source: official`` the authors' published 32x32 files replace the generated ones.
"""

from pathlib import Path

import numpy as np
import torch

from freqbackdoor.authors.triggers import (
    OFFICIAL_FILES,
    fetch_official,
    official_trigger,
    official_variant,
)
from freqbackdoor.errors import DataError
from freqbackdoor.frequency.dct import resolve_device
from freqbackdoor.frequency.spectra import sample_indices
from freqbackdoor.io import load_npy
from freqbackdoor.logs import setup_logging
from freqbackdoor.models.checkpoints import load_checkpoint
from freqbackdoor.triggers.images import save_preview
from freqbackdoor.triggers.registry import TriggerContext, build_trigger

log = setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)  # the cores Snakemake gave this job
params = snakemake.params
attack = snakemake.wildcards.attack
x_test = load_npy(snakemake.input.x_test)
height, width = x_test.shape[1:3]
options = dict(params.options)
# The smooth trigger has one published file per dataset family, chosen by paper_name.
official_name = official_variant(attack, params.paper_name)
use_official = params.trigger_source == "official" and official_name in OFFICIAL_FILES
if use_official and (height, width) != (32, 32):
    log.warning(
        "official triggers are 32x32; %s is %dx%d, so %s is generated",
        snakemake.wildcards.dataset,
        height,
        width,
        attack,
    )
    use_official = False

if use_official:
    files = fetch_official(official_name, params.official_dir)
    # No target_label (the smooth trigger's options have none): the published label, else 0.
    trigger = official_trigger(official_name, files, target_label=options.get("target_label"))
else:
    device = str(resolve_device(params.device))
    context = TriggerContext(device=device, seed=params.seed)
    if "model" in snakemake.input.keys():
        context.model, model_meta = load_checkpoint(
            snakemake.input.model,
            snakemake.input.model_meta,
            device=device,
            expect={
                "checkpoint": Path(snakemake.input.model).name,
                "dataset": params.model_dataset,
            },
        )
        log.info(
            "reference classifier: %s (test acc %s)",
            snakemake.input.model,
            model_meta.get("metrics", {}).get("test_acc"),
        )
    if "x_train" in snakemake.input.keys():
        x_train = load_npy(snakemake.input.x_train)
        rows = sample_indices(x_train.shape[0], params.context_samples, params.seed)
        context.images = np.asarray(x_train[rows])
        context.labels = np.asarray(load_npy(snakemake.input.y_train)[rows])
        classes = getattr(context.model, "num_classes", None)
        if classes is not None and context.labels.size and int(context.labels.max()) >= classes:
            raise DataError(
                f"{snakemake.input.model}: a {classes}-class classifier cannot build a trigger "
                f"for {snakemake.wildcards.dataset}, whose labels reach "
                f"{int(context.labels.max())} (authors_models.reference_classifier?)"
            )
    trigger = build_trigger(attack, height, width, options, context)

trigger.meta["dataset"] = snakemake.wildcards.dataset
trigger.save(snakemake.output.trigger)
save_preview(trigger, np.asarray(x_test[0]), snakemake.output.preview)
log.info("trigger %s (%s, %dx%d) written", trigger.name, trigger.mode, height, width)
