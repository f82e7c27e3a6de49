"""Rule mna_table: the MNA table (Section 5.4) and its comparison with the paper.

One row per dataset and trojaned kind of target model (the smooth trigger, classic ones): AUC
before and after the smooth-trigger upgrade with 95% intervals over meta-training seeds, the
detection rate and accuracy at the threshold, and the target models' mean ASR.
"""

import pandas as pd

from freqbackdoor.io import atomic_path, read_json
from freqbackdoor.logs import setup_logging
from freqbackdoor.metrics import compare, load_paper_numbers, markdown
from freqbackdoor.mna.evaluation import mna_rows, mna_table, paper_mna

log = setup_logging(snakemake.log[0])
params, inputs = snakemake.params, snakemake.input

tables, ours = [], []
for dataset, metrics_path, meta_path in zip(
    params.datasets, inputs.metrics, inputs.meta, strict=True
):
    summary = pd.read_csv(metrics_path)
    meta = read_json(meta_path)
    tables.append(mna_table(dataset, summary, meta))
    ours += mna_rows(dataset, summary)
table = pd.concat(tables, ignore_index=True)
paper = paper_mna(load_paper_numbers(params.paper_numbers)["mna"], params.paper_dataset)
side_by_side = compare(
    pd.DataFrame.from_records(ours), paper, params.paper_names, tolerance=params.tolerance
)

with atomic_path(snakemake.output.csv) as tmp:
    table.to_csv(tmp, index=False)
with atomic_path(snakemake.output.md) as tmp:
    tmp.write_text(
        "# Meta Neural Analysis before and after the smooth-trigger upgrade (Section 5.4)\n\n"
        "AUC of telling target models poisoned with each trigger from clean ones (mean over "
        "meta-training seeds, 95% t-interval); detection rate: trojaned targets flagged, "
        "accuracy: clean and trojaned targets together, both percent at the threshold; "
        "`before`: benign + jumbo shadow models (MNTD), `after`: plus smooth ones.\n\n"
        + markdown(table, digits=3)
        + "\n"
    )
with atomic_path(snakemake.output.vs_csv) as tmp:
    side_by_side.to_csv(tmp, index=False)
with atomic_path(snakemake.output.vs_md) as tmp:
    tmp.write_text(
        "# MNA: paper vs reproduced\n\n"
        f"Our datasets stand in for the paper's as {params.paper_names}; difference = "
        f"reproduced - paper; within tolerance: |difference| <= {params.tolerance} percentage "
        f"points for rates, {params.tolerance / 100:g} for AUCs. Rows without a paper value "
        "are ours only.\n\n" + markdown(side_by_side, digits=4) + "\n"
    )
for _, row in side_by_side.dropna(subset=["paper"]).iterrows():
    log.info(
        "%s %s/%s: paper %s, ours %s", row.dataset, row.row, row.column, row.paper, row.reproduced
    )
