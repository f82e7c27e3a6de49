"""Rule transfer_table: Table 2, 3 or 4 (transfer, raw and fine-tuned) and its paper comparison."""

import pandas as pd

from freqbackdoor.detection.transfer import transfer_frame, transfer_long, transfer_markdown
from freqbackdoor.io import atomic_path
from freqbackdoor.logs import setup_logging
from freqbackdoor.metrics import compare, load_paper_numbers, markdown, paper_long

log = setup_logging(snakemake.log[0])
params = snakemake.params
table_name = snakemake.wildcards.table
target = params.spec["target"]
columns = [
    {**column, "metrics": pd.read_csv(path)}
    for column, path in zip(params.columns, snakemake.input, strict=True)
]
table = transfer_frame(columns)
paper = paper_long(load_paper_numbers(params.paper_numbers), table_name)
ours = transfer_long(table, table_name, params.target_paper_name)
side_by_side = compare(ours, paper, tolerance=params.tolerance)
side_by_side["our_dataset"] = target
title = f"Table {table_name[-1]}: transfer to {target} (paper: {params.target_paper_name})"

with atomic_path(snakemake.output.csv) as tmp:
    table.to_csv(tmp, index=False)
with atomic_path(snakemake.output.md) as tmp:
    tmp.write_text(transfer_markdown(table, title, target))
with atomic_path(snakemake.output.vs_csv) as tmp:
    side_by_side.to_csv(tmp, index=False)
with atomic_path(snakemake.output.vs_md) as tmp:
    mapping = {c["label"]: c["key"] for c in params.columns}
    tmp.write_text(
        f"# {title}: paper vs reproduced (percent)\n\n"
        f"Our columns stand in for the paper's as {mapping}; difference = reproduced - paper; "
        f"within tolerance = |difference| <= {params.tolerance} points.\n\n"
        + markdown(side_by_side)
        + "\n"
    )
for label, group in table.groupby("column", sort=False):
    log.info(
        "%s %s: mean ACC %.2f, mean BDR %.2f", table_name, label, group.acc.mean(), group.bdr.mean()
    )
