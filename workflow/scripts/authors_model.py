"""Rule authors_model: one of the authors' published Keras models as a project checkpoint.

The file is taken from ``raw_dir/authors_models`` when a copy with the published sha256 is
there, else (``authors_models.use: fetch``) downloaded from the authors' repository and checked.
"""

from freqbackdoor.authors.models import authors_model_file, import_authors_model
from freqbackdoor.logs import setup_logging

log = setup_logging(snakemake.log[0])
params = snakemake.params
name = snakemake.wildcards.model
source = authors_model_file(name, params.folder, download=params.download, base_url=params.base_url)
meta = import_authors_model(name, source, snakemake.output.model, snakemake.output.meta)
log.info("%s: %s converted (%d parameters)", name, source, meta["parameters"])
