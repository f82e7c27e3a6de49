"""Rule paper_vs_reproduced: every ``*_vs_paper.csv`` in one table (CSV + Markdown)."""

from freqbackdoor.io import atomic_path
from freqbackdoor.logs import setup_logging
from freqbackdoor.paper.report import paper_vs_reproduced, report_markdown, summary

log = setup_logging(snakemake.log[0])
table = paper_vs_reproduced(snakemake.input)
with atomic_path(snakemake.output.csv) as tmp:
    table.to_csv(tmp, index=False)
with atomic_path(snakemake.output.md) as tmp:
    tmp.write_text(report_markdown(table, float(snakemake.params.tolerance)))
for row in summary(table).itertuples():
    log.info(
        "%s: %d of %d judged numbers within tolerance",
        row.artifact,
        row.within_tolerance,
        row.judged,
    )
