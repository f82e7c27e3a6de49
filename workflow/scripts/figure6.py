"""Rule figure6: the linear detector's ACC and F1 against the input width."""

import pandas as pd

from freqbackdoor.figures import save_figure, width_figure
from freqbackdoor.io import atomic_path
from freqbackdoor.logs import setup_logging

log = setup_logging(snakemake.log[0])
frame = pd.concat([pd.read_csv(p) for p in snakemake.input], ignore_index=True)
pooled = frame[frame.attack == "pooled"].sort_values("width")
architecture = frame.architecture.iloc[0]
fig = width_figure(pooled, f"{architecture} detector in the DCT domain vs input width")
save_figure(fig, snakemake.output.png, snakemake.output.pdf)
with atomic_path(snakemake.output.csv) as tmp:
    frame.to_csv(tmp, index=False)
log.info("Figure 6: %s", pooled[["width", "acc", "f1"]].to_dict("records"))
