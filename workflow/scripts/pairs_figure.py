"""Rule pairs_figure (Figures 7-10): clean vs triggered test images and mean DCT spectra."""

import numpy as np

from freqbackdoor.frequency.spectra import log_spectrum, mean_abs_spectrum, sample_indices
from freqbackdoor.io import load_npy
from freqbackdoor.logs import setup_logging
from freqbackdoor.paper.figures import pair_comparison_figure, save_figure


def as_list(paths):
    """Snakemake gives a list input as a list; accept a single path too."""
    return [paths] if isinstance(paths, str) else list(paths)


log = setup_logging(snakemake.log[0])
dataset = snakemake.wildcards.dataset
params = snakemake.params
index = int(params.index)
labels = list(params.labels)
image_paths = as_list(snakemake.input.triggered_images)
dct_paths = as_list(snakemake.input.triggered_dct)
if not len(labels) == len(image_paths) == len(dct_paths):
    raise ValueError(
        f"{len(labels)} labels, {len(image_paths)} triggered image sets and {len(dct_paths)} "
        "triggered DCT caches: they must be aligned"
    )

clean_images = load_npy(snakemake.input.clean_images)
clean_dct = load_npy(snakemake.input.clean_dct)
if not 0 <= index < clean_images.shape[0]:
    raise ValueError(
        f"figures.example_index {index} is outside the {clean_images.shape[0]} test images"
    )
# The same seeded sample of images for the clean and every triggered spectrum (paired sets).
rows = sample_indices(clean_dct.shape[0], int(params.samples), int(params.seed))
clean_spectrum = log_spectrum(mean_abs_spectrum(clean_dct, rows))
log.info("clean: mean spectrum of %d of %d test images", rows.size, clean_dct.shape[0])

examples, spectra = [], []
for label, image_path, dct_path in zip(labels, image_paths, dct_paths, strict=True):
    images = load_npy(image_path)
    coefficients = load_npy(dct_path)
    if coefficients.shape != clean_dct.shape or images.shape != clean_images.shape:
        raise ValueError(f"{label}: {image_path} / {dct_path} do not match the clean test set")
    examples.append((label, np.asarray(clean_images[index]), np.asarray(images[index])))
    spectra.append((label, clean_spectrum, log_spectrum(mean_abs_spectrum(coefficients, rows))))
    log.info("%s: mean spectrum of %d test images", label, rows.size)

fig = pair_comparison_figure(
    examples,
    spectra,
    title=f"Clean vs triggered samples, {dataset} test set",
    n_samples=int(rows.size),
)
save_figure(fig, snakemake.output.png, snakemake.output.pdf)
log.info("wrote %s and %s", snakemake.output.png, snakemake.output.pdf)
