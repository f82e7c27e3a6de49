"""Rule figure6: the linear detector's ACC and F1 against the input width."""

import pandas as pd

from freqbackdoor.io import atomic_path
from freqbackdoor.logs import setup_logging
from freqbackdoor.metrics import load_paper_numbers, markdown
from freqbackdoor.paper.detection_tables import figure6_comparison
from freqbackdoor.paper.figures import save_figure
from freqbackdoor.paper.figures_section4 import width_figure

log = setup_logging(snakemake.log[0])
frame = pd.concat([pd.read_csv(p) for p in snakemake.input], ignore_index=True)
pooled = frame[frame.attack == "pooled"].sort_values("width")
architecture = frame.architecture.iloc[0]
fig = width_figure(pooled, f"{architecture} detector in the DCT domain vs input width")
save_figure(fig, snakemake.output.png, snakemake.output.pdf)
with atomic_path(snakemake.output.csv) as tmp:
    frame.to_csv(tmp, index=False)
paper_width = load_paper_numbers(snakemake.params.paper_numbers)["training"][
    "linear_separable_min_width"
]
comparison = figure6_comparison(pooled, paper_width)
with atomic_path(snakemake.output.vs_csv) as tmp:
    comparison.to_csv(tmp, index=False)
with atomic_path(snakemake.output.vs_md) as tmp:
    tmp.write_text(
        "# Figure 6: paper vs reproduced\n\n"
        "The paper reads its Figure 6 as: from 160 px on, a linear detector separates clean and "
        "triggered images. Ours, pooled over the configured triggers:\n\n"
        + markdown(comparison)
        + "\n"
    )
log.info("Figure 6: %s", pooled[["width", "acc", "f1"]].to_dict("records"))
