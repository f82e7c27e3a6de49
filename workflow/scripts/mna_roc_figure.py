"""Rule mna_roc_figure: ROC curves of MNA on the target models, before and after the upgrade."""

import pandas as pd

from freqbackdoor.logs import setup_logging
from freqbackdoor.paper.figures import save_figure
from freqbackdoor.paper.figures_section5 import mna_roc_figure

log = setup_logging(snakemake.log[0])
fig = mna_roc_figure(
    pd.read_csv(snakemake.input.scores),
    f"Meta Neural Analysis on {snakemake.wildcards.dataset}: target models",
)
save_figure(fig, snakemake.output.png, snakemake.output.pdf)
