"""Rule poisoned_test_set: stamp a trigger onto every clean test image (labels kept, see sidecar),
then write the float32 DCT of the poisoned images (memory-mappable, with its own sidecar)."""

from freqbackdoor.frequency.dct import write_dct_cache
from freqbackdoor.io import load_npy, save_npy, sha256_array, write_json
from freqbackdoor.logs import progress, setup_logging
from freqbackdoor.triggers.registry import Trigger

log = setup_logging(snakemake.log[0])
x_test = load_npy(snakemake.input.x_test)
y_test = load_npy(snakemake.input.y_test, mmap=False)
trigger = Trigger.load(snakemake.input.trigger)
poisoned = trigger.apply(x_test)
save_npy(snakemake.output.x_test, poisoned)
save_npy(snakemake.output.y_test, y_test)
write_json(
    snakemake.output.meta,
    {
        "dataset": snakemake.wildcards.dataset,
        "attack": trigger.name,
        "mode": trigger.mode,
        "target_label": trigger.target_label,
        "count": int(poisoned.shape[0]),
        "labels": "the clean (true) labels; the attack's target label is target_label",
        "sha256": {"x_test": sha256_array(poisoned), "y_test": sha256_array(y_test)},
        "trigger_meta": trigger.meta,
    },
)
log.info(
    "poisoned %d test images of %s with %s",
    poisoned.shape[0],
    snakemake.wildcards.dataset,
    trigger.name,
)
dct = write_dct_cache(
    poisoned,
    snakemake.output.dct,
    snakemake.output.dct_meta,
    device=snakemake.params.device,
    chunk_size=snakemake.params.chunk_size,
    extra_meta={
        "dataset": snakemake.wildcards.dataset,
        "variant": snakemake.wildcards.attack,
        "source": snakemake.output.x_test,
    },
    progress=progress,
)
log.info("DCT of the poisoned test images on %s: %s", dct["device"], dct["shape"])
