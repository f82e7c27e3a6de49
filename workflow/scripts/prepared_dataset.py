"""Rule prepared_dataset: raw files -> uint8 N x H x W x 3 arrays, labels and a JSON sidecar."""

from pathlib import Path

from freqbackdoor.datasets import prepare
from freqbackdoor.logs import setup_logging

log = setup_logging(snakemake.log[0])
dataset = snakemake.wildcards.dataset
meta = prepare(
    dataset,
    snakemake.params.spec,
    raw_dir=Path(snakemake.input[0]).parent,
    out_dir=Path(snakemake.output.meta).parent,
    seed=snakemake.params.seed,
)
log.info("prepared %s: %s", dataset, meta["counts"])
