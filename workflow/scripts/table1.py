"""Rule table1: Table 1 (frequency vs image domain detection) and its paper comparison."""

import pandas as pd

from freqbackdoor.io import atomic_path
from freqbackdoor.logs import setup_logging
from freqbackdoor.metrics import compare, load_paper_numbers, markdown, paper_long
from freqbackdoor.paper.detection_tables import table1_frame, table1_long, table1_markdown

log = setup_logging(snakemake.log[0])
params = snakemake.params
metrics = {}
for path in snakemake.input.metrics:
    frame = pd.read_csv(path)
    metrics[(frame.dataset.iloc[0], frame.domain.iloc[0])] = frame
# the authors' published detector on the same test sets, where authors_models is in use
authors = {}
for path in snakemake.input.authors:
    frame = pd.read_csv(path)
    authors[frame.dataset.iloc[0]] = frame
table = table1_frame(metrics, params.datasets, authors)
paper = paper_long(load_paper_numbers(params.paper_numbers), "table1")
mapping = {d: params.paper_names.get(d, d) for d in params.datasets}
side_by_side = compare(table1_long(table), paper, mapping=mapping, tolerance=params.tolerance)

with atomic_path(snakemake.output.csv) as tmp:
    table.to_csv(tmp, index=False)
with atomic_path(snakemake.output.md) as tmp:
    tmp.write_text(table1_markdown(table, params.target_fpr))
with atomic_path(snakemake.output.vs_csv) as tmp:
    side_by_side.to_csv(tmp, index=False)
with atomic_path(snakemake.output.vs_md) as tmp:
    tmp.write_text(
        "# Table 1: paper vs reproduced (percent)\n\n"
        f"Our datasets stand in for the paper's as {mapping}; difference = reproduced - paper; "
        f"within tolerance = |difference| <= {params.tolerance} points.\n\n"
        + markdown(side_by_side)
        + "\n"
    )
log.info("Table 1: %d rows; mean BDR %.2f%%", len(table), table.bdr.mean())
