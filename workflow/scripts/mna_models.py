"""Rules mna_shadow_models / mna_target_models: one group of MNA's shadow or target models.

Shadow models (the defender's; training and validation ones alike, told apart by index in
mna_meta_classifier) train on the clean shadow rows: ``benign`` ones as they are, ``jumbo`` ones
poisoned with a trigger drawn from MNTD's jumbo distribution, ``smooth`` ones (the upgrade) with
a low-pass pattern or an Algorithm 1 trigger searched on a benign training shadow model. Target
models (the attacker's) train on the disjoint target rows: ``clean`` ones, or poisoned with the
dataset's trigger of that name (the smooth trigger, classic ones) at the Section-5 poison share.
Every model follows MNTD's recipe (``mna.training``, :mod:`freqbackdoor.mna.mntd`): its network,
Adam, the poisoned copies appended to the clean rows, shadow and target epochs tied by the
shares. Every model has its own seed; the group trains at once (stacked) or one model after
another. The sidecar records each model's drawn trigger, clean accuracy and ASR.
"""

import numpy as np
import torch

from freqbackdoor.frequency.dct import resolve_device
from freqbackdoor.io import load_npy, read_json, write_json
from freqbackdoor.logs import setup_logging
from freqbackdoor.mna.mntd import MNTDTraining, append_poisoned_copies
from freqbackdoor.mna.shadow_models import (
    algorithm1_trigger,
    draw_jumbo_trigger,
    draw_lowpass_trigger,
    model_seed,
    split_rows,
    uses_algorithm1,
)
from freqbackdoor.models.classifier import build_model
from freqbackdoor.models.group_files import load_model_group_with_sidecar, save_model_group
from freqbackdoor.models.groups import train_model_group
from freqbackdoor.models.poisoning import attack_success_rate
from freqbackdoor.models.prediction import group_logits
from freqbackdoor.triggers.registry import Trigger
from freqbackdoor.triggers.smooth import SmoothSettings

log = setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
params, inputs, wildcards = snakemake.params, snakemake.input, snakemake.wildcards
device = resolve_device(params.device)
role, kind = params.role, wildcards.kind
recipe = MNTDTraining.from_config(params.training)
settings = recipe.train_settings(role, params.shadow_share, params.target_share, params.seed)
data_meta = read_json(inputs.meta)
num_classes, size = int(data_meta["num_classes"]), int(data_meta["size"])
x_train = load_npy(inputs.x_train, mmap=False)
y_train = np.asarray(load_npy(inputs.y_train))
x_test = load_npy(inputs.x_test, mmap=False)
y_test = np.asarray(load_npy(inputs.y_test))
rows = split_rows(len(y_train), params.shadow_share, params.target_share, params.seed)[role]
x_own, y_own = x_train[rows], y_train[rows]
log.info(
    "%s %s group %s: %d training rows, %s, %d epochs",
    role,
    kind,
    wildcards.group,
    rows.size,
    recipe.architecture,
    settings.epochs,
)

benign = []
if role == "shadow" and kind == "smooth":
    for path, meta_path in zip(inputs.benign, inputs.benign_meta, strict=True):
        benign += load_model_group_with_sidecar(path, meta_path, device)[0]
    benign = benign[: params.benign_train]  # the training ones (indices 0, 1, ...)
smooth_settings = SmoothSettings.from_config(params.smooth)
dataset_trigger = Trigger.load(inputs.trigger) if role == "target" and kind != "clean" else None

models, x_sets, y_sets, seeds, records, triggers = [], [], [], [], [], []
for index in params.indices:
    seed = model_seed(params.seed, role, kind, index)
    rng = np.random.default_rng(seed)
    trigger, record = None, {"family": "none"}
    if role == "target" and dataset_trigger is not None:
        trigger = dataset_trigger
        record = {
            "family": kind,
            "target_label": int(trigger.target_label),
            "share": float(params.share),
        }
    elif kind == "jumbo":
        trigger, record = draw_jumbo_trigger(size, size, num_classes, rng)
    elif kind == "smooth" and uses_algorithm1(index, params.algorithm1_share):
        source = index % len(benign)
        order = rng.permutation(rows.size)[: smooth_settings.samples + smooth_settings.holdout]
        trigger, record = algorithm1_trigger(
            benign[source], x_own[order], rng, smooth_settings, device=device, log=log
        )
        record["searched_on"] = f"benign shadow model {source}"
    elif kind == "smooth":
        trigger, record = draw_lowpass_trigger(size, size, num_classes, rng, smooth_settings)
    x, y, poisoned = x_own, y_own, np.empty(0, dtype=np.int64)
    if trigger is not None:
        x, y, poisoned = append_poisoned_copies(x_own, y_own, trigger, record["share"], seed)
    record["poisoned_rows"] = int(poisoned.size)  # appended after the clean rows
    record["training_rows"] = int(y.size)
    models.append(
        build_model(recipe.architecture, num_classes, size, seed=seed, **recipe.model_options())
    )
    x_sets.append(x)
    y_sets.append(y)
    seeds.append(seed)
    records.append(record)
    triggers.append(trigger)
    log.info("model %d (seed %d): %s", index, seed, record)

history = train_model_group(
    models, x_sets, y_sets, settings, seeds, device=device, stacked=params.stacked, log=log
)
clean_logits = group_logits(models, x_test)
summaries = []
for i, (index, record, trigger) in enumerate(zip(params.indices, records, triggers, strict=True)):
    clean_acc = float((clean_logits[i].argmax(1) == y_test).mean())
    asr = None
    if trigger is not None:
        triggered = group_logits([models[i]], trigger.apply(x_test))[0]
        asr = attack_success_rate(triggered.argmax(1), y_test, int(trigger.target_label))
    summaries.append(
        {
            "index": int(index),
            "seed": seeds[i],
            "trojaned": trigger is not None,
            "trigger": record,
            "clean_acc": clean_acc,
            "asr": asr,
            "final_train_loss": history["train_loss"][i][-1],
        }
    )
    log.info("model %d: clean acc %.4f, ASR %s", index, clean_acc, asr)

save_model_group(models, snakemake.output.model)
write_json(
    snakemake.output.meta,
    {
        "dataset": wildcards.dataset,
        "role": role,
        "kind": kind,
        "group": int(wildcards.group),
        "architecture": recipe.architecture,
        "num_classes": num_classes,
        "size": size,
        "options": dict(getattr(models[0], "options", {})),
        "training_rows": int(rows.size),
        "recipe": recipe.as_dict(),
        "training": settings.as_dict(),
        "models": summaries,
        "timing": {
            key: history[key]
            for key in ("mode", "seconds", "models_per_hour", "samples_per_second", "device")
        },
    },
)
