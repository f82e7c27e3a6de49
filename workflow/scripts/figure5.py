"""Rule figure5: the five random manipulations the detector trains on, on one test image."""

import numpy as np

from freqbackdoor.detection.manipulation_batches import apply_manipulations
from freqbackdoor.detection.manipulations import (
    MANIPULATIONS,
    ManipulationParams,
    draw_parameters,
)
from freqbackdoor.io import load_npy
from freqbackdoor.logs import setup_logging
from freqbackdoor.paper.figures import save_figure
from freqbackdoor.paper.figures_section4 import manipulations_figure

log = setup_logging(snakemake.log[0])
dataset = snakemake.wildcards.dataset
index = int(snakemake.params.index)
params = ManipulationParams.from_config(snakemake.params.manipulations)
rng = np.random.default_rng(int(snakemake.params.seed))

x_test = load_npy(snakemake.input.x_test)
n_test, height, width = x_test.shape[:3]
if not 0 <= index < n_test:
    raise ValueError(f"figures.example_index {index} is outside the {n_test} test images")
if n_test < 2:
    raise ValueError("the blend example needs a second test image")
clean = np.asarray(x_test[index])
partner = np.asarray(x_test[(index + 1) % n_test])  # the image the blend example adds

# One draw, one sample per kind, all of the same clean image; blends take the partner (pool of 1).
draw = draw_parameters(
    len(MANIPULATIONS), height, width, rng, params, kinds=list(MANIPULATIONS), pool_size=1
)
batch = np.repeat(clean[None], len(MANIPULATIONS), axis=0)
manipulated = apply_manipulations(batch, draw, params, pool=partner[None])
fig = manipulations_figure(
    clean,
    dict(zip(MANIPULATIONS, manipulated, strict=True)),
    title=f"Random manipulations used to train the detector, {dataset} test image {index}",
)
save_figure(fig, snakemake.output.png, snakemake.output.pdf)
log.info("wrote %s and %s", snakemake.output.png, snakemake.output.pdf)
