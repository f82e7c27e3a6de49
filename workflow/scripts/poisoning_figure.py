"""Rule poisoning_figure: per-epoch ASR, clean and training accuracy of every poisoned model."""

import pandas as pd

from freqbackdoor.io import read_json
from freqbackdoor.logs import setup_logging
from freqbackdoor.paper.figures import save_figure
from freqbackdoor.paper.figures_section5 import poisoning_figure

log = setup_logging(snakemake.log[0])
histories = {
    name: pd.read_csv(path)
    for name, path in zip(snakemake.params.triggers, snakemake.input.histories, strict=True)
}
baseline = read_json(snakemake.input.reference)["metrics"]["test_acc"]
fig = poisoning_figure(
    histories, baseline, f"Poisoned models on {snakemake.wildcards.dataset}, epoch by epoch"
)
save_figure(fig, snakemake.output.png, snakemake.output.pdf)
