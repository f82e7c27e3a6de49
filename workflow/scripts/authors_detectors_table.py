"""Rule authors_detectors_table: the authors' published detectors beside our Table 1 detector."""

import numpy as np
import pandas as pd

from freqbackdoor.io import atomic_path
from freqbackdoor.logs import setup_logging
from freqbackdoor.paper.detection_tables import detector_comparison, detector_comparison_markdown

log = setup_logging(snakemake.log[0])
params = snakemake.params
datasets, detectors = list(params.datasets), list(params.detectors)
ours, others, attacks = {}, {}, {}
for dataset, path, metrics in zip(
    datasets, snakemake.input.ours, snakemake.input.ours_metrics, strict=True
):
    scores = dict(np.load(path))
    threshold = float(pd.read_csv(metrics).threshold.iloc[0])  # fixed, or calibrated
    ours[dataset] = (params.ours[dataset], scores, threshold)
    attacks[dataset] = [k.removeprefix("triggered_") for k in scores if k != "clean"]
paths = iter(snakemake.input.authors)
for dataset in datasets:
    for detector in detectors:
        others[(dataset, detector)] = (dict(np.load(next(paths))), params.threshold)
table = detector_comparison(ours, others, attacks, params.bootstrap, params.seed)
with atomic_path(snakemake.output.csv) as tmp:
    table.to_csv(tmp, index=False)
with atomic_path(snakemake.output.md) as tmp:
    tmp.write_text(detector_comparison_markdown(table))
for (dataset, detector), group in table.groupby(["dataset", "detector"], sort=False):
    log.info(
        "%s %s: mean BDR %.2f%%, FPR %.2f%%", dataset, detector, group.bdr.mean(), group.fpr.iloc[0]
    )
