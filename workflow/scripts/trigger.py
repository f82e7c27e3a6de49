"""Rule trigger: build one trigger for one dataset's image size and write it with a preview."""

from freqbackdoor.io import load_npy
from freqbackdoor.logs import setup_logging
from freqbackdoor.triggers import build_trigger, save_preview

log = setup_logging(snakemake.log[0])
x_test = load_npy(snakemake.input.x_test)
height, width = x_test.shape[1:3]
trigger = build_trigger(snakemake.wildcards.attack, height, width, snakemake.params.options)
trigger.meta["dataset"] = snakemake.wildcards.dataset
trigger.save(snakemake.output.trigger)
save_preview(trigger, x_test[0], snakemake.output.preview)
log.info("trigger %s (%s, %dx%d) written", trigger.name, trigger.mode, height, width)
