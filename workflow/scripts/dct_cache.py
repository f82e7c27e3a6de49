"""Rule dct_cache: the float32 DCT of one evaluation set as a memory-mappable .npy plus sidecar."""

from freqbackdoor.dct import write_dct_cache
from freqbackdoor.io import load_npy
from freqbackdoor.logs import progress, setup_logging

log = setup_logging(snakemake.log[0])
images = load_npy(snakemake.input.images)
meta = write_dct_cache(
    images,
    snakemake.output.dct,
    snakemake.output.meta,
    device=snakemake.params.device,
    chunk_size=snakemake.params.chunk_size,
    extra_meta={
        "dataset": snakemake.wildcards.dataset,
        "variant": snakemake.wildcards.variant,
        "source": snakemake.input.images,
    },
    progress=progress,
)
log.info("DCT of %s on %s: %s", snakemake.input.images, meta["device"], meta["shape"])
