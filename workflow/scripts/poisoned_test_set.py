"""Rule poisoned_test_set: stamp a trigger onto every clean test image (labels kept, see sidecar)."""

from freqbackdoor.io import load_npy, save_npy, sha256_array, write_json
from freqbackdoor.logs import setup_logging
from freqbackdoor.triggers import Trigger

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
