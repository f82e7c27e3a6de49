"""Rule highfreq_table: high-frequency band energy of triggered vs clean test images (CSV + Markdown)."""

from freqbackdoor.frequency.highfreq import highfreq_markdown, highfreq_table
from freqbackdoor.io import atomic_path
from freqbackdoor.logs import setup_logging


def as_list(paths):
    """Snakemake gives a list input as a list; accept a single path too."""
    return [paths] if isinstance(paths, str) else list(paths)


log = setup_logging(snakemake.log[0])
params = snakemake.params
pairs = [tuple(pair) for pair in params.pairs]
clean = as_list(snakemake.input.clean)
triggered = as_list(snakemake.input.triggered)
if not len(pairs) == len(clean) == len(triggered):
    raise ValueError(
        f"{len(pairs)} (dataset, attack) pairs, {len(clean)} clean and {len(triggered)} "
        "triggered DCT caches: they must be aligned, one of each per pair"
    )
entries = [
    (dataset, attack, clean_path, triggered_path)
    for (dataset, attack), clean_path, triggered_path in zip(pairs, clean, triggered, strict=True)
]
samples = params.samples
table = highfreq_table(
    entries,
    cutoff=float(params.cutoff),
    n_boot=int(params.n_boot),
    seed=int(params.seed),
    max_samples=None if samples is None else int(samples),
)
with atomic_path(snakemake.output.csv) as tmp:
    table.to_csv(tmp, index=False)
with atomic_path(snakemake.output.md) as tmp:
    tmp.write_text(highfreq_markdown(table, float(params.cutoff), int(params.n_boot)))
log.info(
    "%d of %d (dataset, attack) pairs have a ratio interval above 1",
    int(table["above_one"].sum()),
    len(table),
)
