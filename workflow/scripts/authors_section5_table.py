"""Rule authors_section5_table: Section 5's triggers against our detectors and the authors'."""

import pandas as pd

from freqbackdoor.io import atomic_path
from freqbackdoor.logs import setup_logging
from freqbackdoor.paper.detection_tables import (
    section5_detector_comparison,
    section5_detector_markdown,
)

log = setup_logging(snakemake.log[0])
params = snakemake.params
ours = {
    dataset: pd.read_csv(path)
    for dataset, path in zip(params.datasets, snakemake.input.ours, strict=True)
}
paths = iter(snakemake.input.authors)
authors = {(d, m): pd.read_csv(next(paths)) for d in params.datasets for m in params.detectors}
table = section5_detector_comparison(ours, authors)
with atomic_path(snakemake.output.csv) as tmp:
    table.to_csv(tmp, index=False)
with atomic_path(snakemake.output.md) as tmp:
    tmp.write_text(section5_detector_markdown(table))
log.info("Section 5 comparison: %d rows", len(table))
