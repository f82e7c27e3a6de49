"""Rule smooth_detection: the Section 4 detector and its upgrades on every low-pass trigger.

Stages: ``section4`` (the detector of Table 1, never shown a trigger), then one
``tuned_<trigger>`` per fine-tuning (on a naive low-pass pattern, on the smooth trigger). Each
stage scores the clean test set and every evaluated trigger's test set (DCT caches) at its own
calibrated threshold. Figure 4's numbers come from the penultimate features: the clean
representative (the clean sample nearest the benign class's last-layer weights) and each
filtered trigger's mean distance to it, for every stage.
"""

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from freqbackdoor.detection.detector import detector_scores, evaluate_attacks
from freqbackdoor.detection.upgrade import (
    clean_representative,
    cluster_distances,
    detector_features,
    project_2d,
)
from freqbackdoor.frequency.spectra import sample_indices
from freqbackdoor.io import atomic_path, load_npy, save_npz
from freqbackdoor.logs import setup_logging
from freqbackdoor.metrics import decision_threshold
from freqbackdoor.models.checkpoints import load_checkpoint

log = setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)  # the cores Snakemake gave this job
params, inputs = snakemake.params, snakemake.input


def threshold_of(meta):
    """Table 1's rule: the calibrated threshold when a target FPR is set, else the fixed one."""
    return decision_threshold(meta, params.target_fpr, params.threshold, meta.get("checkpoint"))


stages = {"section4": (inputs.model, inputs.meta)}
for name, model_path, meta_path in zip(
    params.tuned_on, inputs.tuned_models, inputs.tuned_metas, strict=True
):
    stages[f"tuned_{name}"] = (model_path, meta_path)
clean = load_npy(inputs.clean)
triggered = {
    attack: load_npy(path) for attack, path in zip(params.evaluated, inputs.triggered, strict=True)
}
rows = sample_indices(clean.shape[0], params.figure4_samples, params.seed)

metrics, scores, distances, projection = [], {}, [], None
for stage, (model_path, meta_path) in stages.items():
    model, meta = load_checkpoint(
        model_path,
        meta_path,
        device=params.device,
        domain="dct",
        expect={"checkpoint": Path(model_path).name, "dataset": snakemake.wildcards.dataset},
    )
    threshold = threshold_of(meta)
    clean_scores = detector_scores(model, clean, transformed=True)
    attack_scores = {a: detector_scores(model, x, transformed=True) for a, x in triggered.items()}
    frame = evaluate_attacks(
        clean_scores, attack_scores, threshold, n_boot=params.bootstrap, seed=params.seed
    )
    frame.insert(0, "stage", stage)
    metrics.append(frame)
    scores[f"{stage}__clean"] = clean_scores
    scores.update({f"{stage}__{a}": s for a, s in attack_scores.items()})
    scores[f"{stage}__threshold"] = np.float64(threshold)
    for _, row in frame.iterrows():
        log.info("%s %s: BDR %.4f, F1 %.4f", stage, row["attack"], row["bdr"], row["f1"])

    clean_features = detector_features(model, np.asarray(clean[rows]), transformed=True)
    representative = clean_features[clean_representative(model, clean_features)]
    features = {
        a: detector_features(model, np.asarray(triggered[a][rows]), transformed=True)
        for a in params.filtered
    }
    table = cluster_distances(representative, features, n_boot=params.bootstrap, seed=params.seed)
    table.insert(0, "stage", stage)
    distances.append(table)
    if stage == "tuned_smooth":
        projection = project_2d({"clean": clean_features, **features})

with atomic_path(snakemake.output.metrics, suffix=".csv") as tmp:
    pd.concat(metrics, ignore_index=True).to_csv(tmp, index=False)
save_npz(snakemake.output.scores, **scores)
with atomic_path(snakemake.output.distances, suffix=".csv") as tmp:
    pd.concat(distances, ignore_index=True).to_csv(tmp, index=False)
with atomic_path(snakemake.output.projection, suffix=".csv") as tmp:
    projection.to_csv(tmp, index=False)
