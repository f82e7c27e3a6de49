"""Rule table8: the reference classifier's layers, output shapes and parameters (CSV + Markdown).

Derived from the model definition by a forward pass, so it documents the model actually trained.
"""

from freqbackdoor.io import atomic_path
from freqbackdoor.logs import setup_logging
from freqbackdoor.models.classifier import ReferenceCNN, build_model, table8, table8_markdown

log = setup_logging(snakemake.log[0])
num_classes = int(snakemake.params.get("num_classes", 10))
input_size = int(snakemake.params.get("input_size", 32))
model = build_model(ReferenceCNN.architecture, num_classes, input_size, seed=0)
table = table8(model, input_size)
with atomic_path(snakemake.output.csv) as tmp:
    table.to_csv(tmp, index=False)
with atomic_path(snakemake.output.md) as tmp:
    tmp.write_text(table8_markdown(table, num_classes, input_size))
log.info(
    "Table 8 (%d classes, %d px): %d layers, %d parameters",
    num_classes,
    input_size,
    len(table),
    table["parameters"].sum(),
)
