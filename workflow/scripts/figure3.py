"""Rule figure3: the smooth trigger in the image and frequency domain (Figure 3; 11 for GTSRB).

The mean heatmaps use Figure 1's colour range (its spectra are recomputed from the same DCT
caches and samples), so the smooth trigger's spectrum compares with the other triggers'.
"""

import numpy as np

from freqbackdoor.frequency.spectra import log_spectrum, mean_abs_spectrum, sample_indices
from freqbackdoor.io import load_npy
from freqbackdoor.logs import setup_logging
from freqbackdoor.paper.figures import save_figure, shared_range
from freqbackdoor.paper.figures_section5 import smooth_trigger_figure
from freqbackdoor.triggers.registry import Trigger

log = setup_logging(snakemake.log[0])
params, inputs = snakemake.params, snakemake.input
trigger = Trigger.load(inputs.trigger)
x_test = load_npy(inputs.x_test)
index = min(params.example_index, x_test.shape[0] - 1)
clean_image = np.asarray(x_test[index])
patched_image = np.asarray(load_npy(inputs.x_smooth)[index])


def spectrum(path):
    coefficients = load_npy(path)
    rows = sample_indices(coefficients.shape[0], params.samples, params.seed)
    return log_spectrum(mean_abs_spectrum(coefficients, rows)), rows.size


figure1 = [spectrum(path)[0] for path in inputs.figure1]
# Figure 1 draws its range over all its panels (min to max, unless the config fixes it).
lo = float(np.min(figure1)) if params.vmin is None else float(params.vmin)
hi = float(np.max(figure1)) if params.vmax is None else float(params.vmax)
lo, hi = shared_range([np.array([lo, hi])], lo, hi, 0.0)
patched, samples = spectrum(inputs.smooth_dct)
fig = smooth_trigger_figure(
    trigger.pattern,
    clean_image,
    patched_image,
    figure1[0],
    patched,
    (lo, hi),
    f"Smooth trigger on {snakemake.wildcards.dataset} (target label {trigger.target_label})",
    samples,
)
save_figure(fig, snakemake.output.png, snakemake.output.pdf)
log.info("figure3 for %s: colour range %.2f to %.2f", snakemake.wildcards.dataset, lo, hi)
