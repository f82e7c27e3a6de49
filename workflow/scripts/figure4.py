"""Rule figure4: distances of the filtered triggers to the clean representative (Figure 4)."""

import pandas as pd

from freqbackdoor.logs import setup_logging
from freqbackdoor.paper.figures import save_figure
from freqbackdoor.paper.figures_section5 import distance_figure

log = setup_logging(snakemake.log[0])
distances = pd.read_csv(snakemake.input.distances)
tuned = distances[distances["stage"] == "tuned_smooth"]
fig = distance_figure(
    tuned,
    pd.read_csv(snakemake.input.projection),
    f"Figure 4: filtered triggers in the smooth-tuned detector's space, "
    f"{snakemake.wildcards.dataset}",
)
save_figure(fig, snakemake.output.png, snakemake.output.pdf)
for _, row in tuned.sort_values("distance").iterrows():
    log.info("%s: distance %.4f", row["trigger"], row["distance"])
