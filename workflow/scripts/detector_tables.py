"""Rule detector_tables: Tables 6 and 7 from the detector definitions, with paper comparisons."""

from freqbackdoor.detection.architectures import detector_table, detector_table_markdown
from freqbackdoor.io import atomic_path
from freqbackdoor.logs import setup_logging
from freqbackdoor.metrics import markdown
from freqbackdoor.paper.detection_tables import PAPER_TABLE6, PAPER_TABLE7, layer_comparison

log = setup_logging(snakemake.log[0])
out = snakemake.output
for number, name, size, paper, csv, md, vs_csv, vs_md in (
    (6, "linear", 224, PAPER_TABLE6, out.table6, out.table6_md, out.vs6_csv, out.vs6_md),
    (7, "cnn6_kmax128", 32, PAPER_TABLE7, out.table7, out.table7_md, out.vs7_csv, out.vs7_md),
):
    table = detector_table(name, size)
    title = f"Table {number}: the {name} detector for {size} x {size} x 3 inputs"
    comparison = layer_comparison(table, paper)
    with atomic_path(csv) as tmp:
        table.to_csv(tmp, index=False)
    with atomic_path(md) as tmp:
        tmp.write_text(detector_table_markdown(name, size, title) + "\n")
    with atomic_path(vs_csv) as tmp:
        comparison.to_csv(tmp, index=False)
    with atomic_path(vs_md) as tmp:
        tmp.write_text(
            f"# Table {number}: paper vs reproduced layers\n\n"
            f"{int(comparison.match.sum())} of {len(comparison)} rows match.\n\n"
            + markdown(comparison)
            + "\n"
        )
    log.info(
        "Table %d: %d of %d layers match the paper", number, comparison.match.sum(), len(comparison)
    )
