"""Rule budget_figure: transferred detector's ACC/BDR against the fine-tuning budget."""

import pandas as pd

from freqbackdoor.detection.transfer import budget_frame
from freqbackdoor.io import atomic_path
from freqbackdoor.logs import setup_logging
from freqbackdoor.paper.figures import save_figure
from freqbackdoor.paper.figures_section4 import budget_figure

log = setup_logging(snakemake.log[0])
spec = snakemake.params.spec


def entries(paths):
    for path in paths:
        metrics = pd.read_csv(path)
        yield {
            "budget": metrics.budget.iloc[0],
            "repeat": metrics.repeat.iloc[0],
            "metrics": metrics,
        }


tuned = budget_frame(list(entries(snakemake.input.tuned)))
raw = budget_frame(list(entries([snakemake.input.raw])))
frame = pd.concat([raw.assign(stage="raw"), tuned.assign(stage="tuned")], ignore_index=True)
fig = budget_figure(
    tuned,
    f"detector from {spec['source']} fine-tuned on {spec['target']}",
    raw=raw,
    paper_budget=snakemake.params.paper_budget,
)
save_figure(fig, snakemake.output.png, snakemake.output.pdf)
with atomic_path(snakemake.output.csv) as tmp:
    frame.assign(source=spec["source"], target=spec["target"]).to_csv(tmp, index=False)
log.info("budget figure: %s", tuned.groupby("budget")[["acc", "bdr"]].mean().to_dict("index"))
