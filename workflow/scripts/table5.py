"""Rule table5: the detector architecture ablation and its paper comparison."""

import pandas as pd

from freqbackdoor.io import atomic_path, read_json
from freqbackdoor.logs import setup_logging
from freqbackdoor.metrics import compare, load_paper_numbers, markdown, paper_long
from freqbackdoor.paper.detection_tables import table5_frame, table5_long, table5_markdown

log = setup_logging(snakemake.log[0])
params = snakemake.params
metrics = {
    a: pd.read_csv(p) for a, p in zip(params.architectures, snakemake.input.metrics, strict=True)
}
sidecars = {
    a: read_json(p) for a, p in zip(params.architectures, snakemake.input.models, strict=True)
}
table = table5_frame(metrics, sidecars)
paper = paper_long(load_paper_numbers(params.paper_numbers), "table5")
mapping = {params.dataset: params.paper_names.get(params.dataset, params.dataset)}
side_by_side = compare(
    table5_long(table, params.dataset), paper, mapping=mapping, tolerance=params.tolerance
)

with atomic_path(snakemake.output.csv) as tmp:
    table.to_csv(tmp, index=False)
with atomic_path(snakemake.output.md) as tmp:
    tmp.write_text(table5_markdown(table, params.dataset))
with atomic_path(snakemake.output.vs_csv) as tmp:
    side_by_side.to_csv(tmp, index=False)
with atomic_path(snakemake.output.vs_md) as tmp:
    tmp.write_text(
        f"# Table 5: paper (CIFAR-10) vs reproduced ({params.dataset})\n\n"
        "Parameters are counts; the other columns percent. difference = reproduced - paper.\n\n"
        + markdown(side_by_side)
        + "\n"
    )
log.info("Table 5: %d architectures", len(table))
