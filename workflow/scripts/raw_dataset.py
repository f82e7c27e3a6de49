"""Rule raw_dataset: fetch (or stage) one dataset's raw files into its raw directory."""

from pathlib import Path

from freqbackdoor.data.datasets import download
from freqbackdoor.logs import setup_logging

log = setup_logging(snakemake.log[0])
raw_dir = Path(snakemake.output[0]).parent
path = download(snakemake.wildcards.dataset, snakemake.params.spec, raw_dir)
log.info("raw data for %s in %s", snakemake.wildcards.dataset, path)
