"""Rule roc_figure: ROC curves of one detector per attack, frequency and image domain."""

import numpy as np
from sklearn.metrics import roc_auc_score

from freqbackdoor.logs import setup_logging
from freqbackdoor.metrics import roc_points
from freqbackdoor.paper.figures import save_figure
from freqbackdoor.paper.figures_section4 import roc_figure

log = setup_logging(snakemake.log[0])
curves, aucs, fpr_at = {}, {}, None
for domain, path in zip(snakemake.params.domains, snakemake.input.scores, strict=True):
    with np.load(path, allow_pickle=False) as data:
        clean = data["clean"]
        attacks = {k.removeprefix("triggered_"): data[k] for k in data.files if k != "clean"}
    curves[domain] = {a: roc_points(clean, s) for a, s in attacks.items()}
    aucs[domain] = {
        a: roc_auc_score(np.r_[np.zeros(clean.size), np.ones(s.size)], np.r_[clean, s])
        for a, s in attacks.items()
    }
    if domain == "dct":
        fpr_at = float((clean >= 0.5).mean())
wc = snakemake.wildcards
fig = roc_figure(curves, aucs, f"ROC of the {wc.architecture} detector on {wc.dataset}", fpr_at)
save_figure(fig, snakemake.output.png, snakemake.output.pdf)
log.info("ROC figure for %s written", wc.dataset)
