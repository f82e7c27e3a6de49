"""Rule figure2: one test image with each trigger, the trigger itself, and their DCT spectra."""

import numpy as np

from freqbackdoor.io import load_npy
from freqbackdoor.logs import setup_logging
from freqbackdoor.paper.figures import save_figure, trigger_examples_figure
from freqbackdoor.triggers.registry import Trigger


def as_list(paths):
    """Snakemake gives a list input as a list; accept a single path too."""
    return [paths] if isinstance(paths, str) else list(paths)


log = setup_logging(snakemake.log[0])
dataset = snakemake.wildcards.dataset
index = int(snakemake.params.index)
paths = as_list(snakemake.input.triggers)
labels = list(snakemake.params.labels)
if len(paths) != len(labels):
    raise ValueError(f"{len(paths)} trigger files but {len(labels)} labels: {labels}")

x_test = load_npy(snakemake.input.x_test)
if not 0 <= index < x_test.shape[0]:
    raise ValueError(f"figures.example_index {index} is outside the {x_test.shape[0]} test images")
clean = np.asarray(x_test[index])
triggered = {}
for label, path in zip(labels, paths, strict=True):
    trigger = Trigger.load(path)
    triggered[label] = trigger.apply(clean[None])[0]
    log.info("%s: trigger %s (%s) applied to test image %d", label, path, trigger.mode, index)
fig = trigger_examples_figure(
    clean,
    triggered,
    title=f"Triggers in the image and frequency domain, {dataset} test image {index}",
)
save_figure(fig, snakemake.output.png, snakemake.output.pdf)
log.info("wrote %s and %s", snakemake.output.png, snakemake.output.pdf)
