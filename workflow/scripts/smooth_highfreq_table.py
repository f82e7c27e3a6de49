"""Rule smooth_highfreq_table: our smooth trigger's high-frequency ratio beside the authors'.

The published trigger is fetched (sha256-checked) into ``official_dir`` or found there when placed
by hand. Offline, with no copy placed, its row is kept with an empty ratio and a note saying why
and where to put the file: the rest of the table is still this run's result. A file that is
present but does not match its sha256 is an error, as everywhere.
"""

import numpy as np
import pandas as pd

from freqbackdoor.authors.triggers import (
    OFFICIAL_FILES,
    fetch_official,
    official_trigger,
    official_variant,
    smooth_highfreq_ratios,
)
from freqbackdoor.errors import DownloadError
from freqbackdoor.frequency.highfreq import COLUMNS
from freqbackdoor.frequency.spectra import sample_indices
from freqbackdoor.io import atomic_path, load_npy
from freqbackdoor.logs import setup_logging
from freqbackdoor.triggers.registry import Trigger

log = setup_logging(snakemake.log[0])
params = snakemake.params
frames = []
for dataset, paper_name, x_path, trigger_path in zip(
    params.datasets,
    params.paper_names,
    snakemake.input.x_test,
    snakemake.input.triggers,
    strict=True,
):
    images = load_npy(x_path)
    if params.samples is not None:  # the highfreq table's sample of the same test set
        images = images[sample_indices(images.shape[0], int(params.samples), int(params.seed))]
    ours = Trigger.load(trigger_path)
    variant = official_variant("smooth", paper_name)
    file_name = OFFICIAL_FILES[variant][0][0]
    try:
        official = official_trigger(variant, fetch_official(variant, params.official_dir))
        note = f"the authors' {file_name}"
    except DownloadError as exc:
        log.warning("%s: the published smooth trigger is not available: %s", dataset, exc)
        official = None
        note = (
            f"not measured: {file_name} not available offline (place it in "
            f"{params.official_dir}/, sha256 {OFFICIAL_FILES[variant][1][0]})"
        )
    table = smooth_highfreq_ratios(
        images,
        official,
        ours,
        dataset=dataset,
        cutoff=float(params.cutoff),
        n_boot=int(params.n_boot),
        seed=int(params.seed),
    )
    if official is None:  # keep the row, empty, so the table says what was not measured
        missing = {column: np.nan for column in COLUMNS} | {
            "dataset": dataset,
            "attack": "smooth_official",
        }
        table = pd.concat([pd.DataFrame([missing]), table], ignore_index=True)
    table["note"] = [note, "this run's Algorithm 1 trigger"]
    frames.append(table)
table = pd.concat(frames, ignore_index=True)
with atomic_path(snakemake.output.csv) as tmp:
    table.to_csv(tmp, index=False)
lines = [
    "High-frequency energy ratio (band u/H + v/W >= "
    f"{params.cutoff:g}, {params.n_boot} bootstrap resamples, 95% interval) of the smooth "
    "triggers on the same test images: the authors' published file beside this run's.",
    "",
    table.to_markdown(index=False, floatfmt=".3f"),
    "",
]
with atomic_path(snakemake.output.md) as tmp:
    tmp.write_text("\n".join(lines))
log.info("smooth high-frequency ratios:\n%s", table.to_string(index=False))
