"""Rule claims: each qualitative claim of the paper judged on this run's data (CSV + Markdown)."""

from pathlib import Path

from freqbackdoor.io import atomic_path
from freqbackdoor.logs import setup_logging
from freqbackdoor.paper.claims import claims_csv, claims_markdown, claims_summary
from freqbackdoor.paper.claims_run import claims_table

log = setup_logging(snakemake.log[0])
results = Path(snakemake.output.csv).parents[1]  # results/report/claims.csv -> results
frame = claims_table(results, snakemake.params.config)
listed = {str(Path(path)) for path in snakemake.input}
unlisted = [p for p in frame.attrs["read"] if str(results / p) not in listed]
if unlisted:  # the rule's input function and claims_table disagree: a rerun could be missed
    log.warning("read files the rule does not list as inputs: %s", ", ".join(unlisted))

with atomic_path(snakemake.output.csv) as tmp:
    tmp.write_text(claims_csv(frame))
with atomic_path(snakemake.output.md) as tmp:
    tmp.write_text(claims_markdown(frame))
log.info("read %d files", len(frame.attrs["read"]))
for line in claims_summary(frame).splitlines():
    log.info("%s", line)
