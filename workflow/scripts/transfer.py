"""Rules transfer_raw / transfer_tuned: a source detector scored on a target's test set.

``tuned`` first fine-tunes it on ``budget`` clean target test images plus one manipulation of
each; both stages score only the test images outside that draw, so raw and tuned columns of a
table are measured on the same images.
"""

from pathlib import Path

import numpy as np
import torch

from freqbackdoor.detection.manipulations import ManipulationParams
from freqbackdoor.detection.transfer import (
    FineTuneSettings,
    check_disjoint,
    fine_tune_detector,
    fine_tune_split,
    transfer_metrics,
)
from freqbackdoor.errors import ConfigError
from freqbackdoor.io import atomic_path, load_npy, save_npz, sha256_array, write_json
from freqbackdoor.logs import progress, setup_logging
from freqbackdoor.models.checkpoints import load_checkpoint, save_checkpoint

log = setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)  # the cores Snakemake gave this job
params, wildcards = snakemake.params, snakemake.wildcards
budget, repeat = int(wildcards.budget), int(wildcards.repeat)
model, source_meta = load_checkpoint(
    snakemake.input.model,
    snakemake.input.meta,
    device=params.device,
    domain="dct",
    expect={"checkpoint": Path(snakemake.input.model).name, "dataset": snakemake.wildcards.source},
)
clean = load_npy(snakemake.input.clean)
triggered_paths = list(snakemake.input.triggered)
if len(triggered_paths) != len(params.attacks):
    raise ValueError(f"{len(params.attacks)} attacks but {len(triggered_paths)} triggered sets")
triggered = {a: load_npy(p) for a, p in zip(params.attacks, triggered_paths, strict=True)}
n_test = clean.shape[0]
tune, test = fine_tune_split(n_test, budget, params.seed, repeat)
check_disjoint(tune, test, n_test)
log.info(
    "%s detector from %s on %s: %d of %d test images held for fine-tuning, %d scored",
    params.stage,
    wildcards.source,
    wildcards.target,
    tune.size,
    n_test,
    test.size,
)

if params.stage == "tuned":
    if budget == 0:
        raise ConfigError("a tuned transfer column needs transfer.budget >= 1")
    settings = FineTuneSettings.from_config(params.fine_tune)
    x_test = load_npy(snakemake.input.x_test, mmap=False)
    if x_test.shape[0] != n_test:
        raise ValueError(
            f"{snakemake.input.x_test} holds {x_test.shape[0]} images but "
            f"{snakemake.input.clean} {n_test}"
        )
    model, history = fine_tune_detector(
        model,
        x_test[tune],
        settings,
        ManipulationParams.from_config(params.manipulations),
        progress=progress,
        log=log,
    )
    save_checkpoint(
        model,
        snakemake.output.model,
        snakemake.output.meta,
        meta={
            "dataset": wildcards.target,
            "source": wildcards.source,
            "source_checkpoint_sha256": source_meta["sha256"],
            "body": source_meta.get("body"),
            "budget": budget,
            "repeat": repeat,
            "fine_tune": settings.as_dict(),
            "fine_tune_rows": tune.tolist(),
            "manipulations": params.manipulations,
            "history": history,
            "calibration": source_meta.get("calibration"),
        },
    )

metrics, scores = transfer_metrics(
    model, clean, triggered, test, params.threshold, True, params.bootstrap, params.seed
)
for position, (key, value) in enumerate(
    (
        ("target", wildcards.target),
        ("source", wildcards.source),
        ("stage", params.stage),
        ("budget", budget),
        ("repeat", repeat),
    )
):
    metrics.insert(position, key, value)
save_npz(snakemake.output.scores, **scores, test_rows=test)
with atomic_path(snakemake.output.metrics) as tmp:
    metrics.to_csv(tmp, index=False)
write_json(
    snakemake.output.split,
    {
        "target": wildcards.target,
        "n_test": int(n_test),
        "budget": budget,
        "repeat": repeat,
        "seed": params.seed,
        "fine_tune_rows": tune.tolist(),
        "test_rows": test.tolist(),
        "test_rows_sha256": sha256_array(test.astype(np.int64)),
        "disjoint": True,
    },
)
log.info(
    "%s on %s: mean ACC %.4f, mean BDR %.4f, FPR %.4f, mean AUC %.4f",
    params.stage,
    wildcards.target,
    metrics.acc.mean(),
    metrics.bdr.mean(),
    metrics.fpr.iloc[0],
    metrics.auc.mean(),
)
