"""Rule width_detector: one point of Figure 6 (a DCT detector at one input width)."""

import torch

from freqbackdoor.detection.detector import DetectorSettings, width_point
from freqbackdoor.detection.manipulations import ManipulationParams
from freqbackdoor.io import atomic_path, load_npy
from freqbackdoor.logs import setup_logging

log = setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)  # the cores Snakemake gave this job
params = snakemake.params
width = int(snakemake.wildcards.width)
settings = DetectorSettings.from_config(params.settings)
frame = width_point(
    load_npy(snakemake.input.x_train),
    load_npy(snakemake.input.x_test),
    width,
    settings,
    {name: params.trigger_options.get(name, {}) for name in params.attacks},
    ManipulationParams.from_config(params.manipulations),
    threshold=params.threshold,
    n_boot=params.bootstrap,
    device=params.device,
    log=log,
)
frame.insert(1, "architecture", settings.architecture)
with atomic_path(snakemake.output.metrics) as tmp:
    frame.to_csv(tmp, index=False)
pooled = frame[frame.attack == "pooled"].iloc[0]
log.info("width %d: pooled ACC %.4f F1 %.4f", width, pooled.acc, pooled.f1)
