"""Rules detection_scores and authors_scores: score the clean and every triggered
test set with one detector; metrics and ROC points."""

import pandas as pd
import torch

from freqbackdoor.detection.detector import detector_scores, evaluate_attacks
from freqbackdoor.io import atomic_path, load_npy, save_npz
from freqbackdoor.logs import setup_logging
from freqbackdoor.metrics import decision_threshold, roc_points
from freqbackdoor.models.checkpoints import load_checkpoint

log = setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)  # the cores Snakemake gave this job
params = snakemake.params
domain = params.domain
# params.expect: what the path and config say the checkpoint is (name, dataset, body, training
# settings); a copied or stale checkpoint is refused
model, meta = load_checkpoint(
    snakemake.input.model,
    snakemake.input.meta,
    device=params.device,
    domain=domain,
    expect=params.expect,
)
transformed = domain == "dct"  # DCT detectors read the DCT cache directly
triggered_paths = list(snakemake.input.triggered)
if len(triggered_paths) != len(params.attacks):
    raise ValueError(f"{len(params.attacks)} attacks but {len(triggered_paths)} triggered sets")

clean = detector_scores(model, load_npy(snakemake.input.clean), transformed=transformed)
triggered = {
    attack: detector_scores(model, load_npy(path), transformed=transformed)
    for attack, path in zip(params.attacks, triggered_paths, strict=True)
}
# the fixed threshold, or the one calibrated on held-out clean training images (no triggers)
threshold = decision_threshold(meta, params.target_fpr, params.threshold, snakemake.input.meta)
if params.target_fpr is not None:
    log.info(
        "threshold %.6f calibrated for %.3f FPR on held-out clean images",
        threshold,
        params.target_fpr,
    )
metrics = evaluate_attacks(clean, triggered, threshold, params.bootstrap, params.seed)
metrics.insert(0, "dataset", snakemake.wildcards.dataset)
metrics.insert(1, "architecture", params.label)
metrics.insert(2, "domain", domain)
roc = pd.concat(
    [roc_points(clean, scores).assign(attack=attack) for attack, scores in triggered.items()],
    ignore_index=True,
)

save_npz(
    snakemake.output.scores, clean=clean, **{f"triggered_{a}": s for a, s in triggered.items()}
)
with atomic_path(snakemake.output.metrics) as tmp:
    metrics.to_csv(tmp, index=False)
with atomic_path(snakemake.output.roc) as tmp:
    roc.to_csv(tmp, index=False)
for _, row in metrics.iterrows():
    log.info(
        "%s: ACC %.4f BDR %.4f FPR %.4f F1 %.4f AUC %.4f",
        row.attack,
        row.acc,
        row.bdr,
        row.fpr,
        row.f1,
        row.auc,
    )
