"""Rule prepared_dataset: raw files -> uint8 N x H x W x 3 arrays, labels and a JSON sidecar,
then the float32 DCT of the clean test images (memory-mappable, with its own sidecar)."""

from pathlib import Path

from freqbackdoor.data.datasets import prepare
from freqbackdoor.frequency.dct import write_dct_cache
from freqbackdoor.io import load_npy
from freqbackdoor.logs import progress, setup_logging

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
dct = write_dct_cache(
    load_npy(snakemake.output.x_test),
    snakemake.output.dct,
    snakemake.output.dct_meta,
    device=snakemake.params.device,
    chunk_size=snakemake.params.chunk_size,
    extra_meta={"dataset": dataset, "variant": "clean", "source": snakemake.output.x_test},
    progress=progress,
)
log.info("DCT of the clean test images on %s: %s", dct["device"], dct["shape"])
