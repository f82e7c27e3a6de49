"""Rule figure1: mean DCT spectra of clean and triggered test images as log-scale heatmaps."""

from freqbackdoor.frequency.spectra import log_spectrum, mean_abs_spectrum, sample_indices
from freqbackdoor.io import load_npy
from freqbackdoor.logs import setup_logging
from freqbackdoor.paper.figures import save_figure, spectrum_heatmaps

log = setup_logging(snakemake.log[0])
params = snakemake.params
spectra = []
for path in snakemake.input:
    coefficients = load_npy(path)
    rows = sample_indices(coefficients.shape[0], params.samples, params.seed)
    spectra.append(log_spectrum(mean_abs_spectrum(coefficients, rows)))
    log.info("%s: mean spectrum of %d samples", path, rows.size)
fig = spectrum_heatmaps(
    spectra,
    params.labels,
    title=f"Mean DCT spectrum, {snakemake.wildcards.dataset} test set",
    vmin=params.vmin,
    vmax=params.vmax,
)
save_figure(fig, snakemake.output.png, snakemake.output.pdf)
