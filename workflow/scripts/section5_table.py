"""Rule section5_table: every Section-5 number beside the paper's, and the poisoned-models table.

Per dataset: the smooth trigger (dominant label, search passes, high-frequency energy ratio of
its test set), the smooth-poisoned model (ASR, clean accuracy against the clean model's, ASR
after one epoch), the naive baselines' mean ASR and accuracy, the detector before and after the
upgrade (BDR, F1, ASR with the detector rejecting flagged inputs, with the training set
filtered), Figure 4's closest distance.
"""

import numpy as np
import pandas as pd

from freqbackdoor.frequency.highfreq import highfreq_table
from freqbackdoor.io import atomic_path, read_json
from freqbackdoor.logs import setup_logging
from freqbackdoor.metrics import compare, load_paper_numbers, markdown
from freqbackdoor.paper.section5 import paper_section5, poisoned_models_table, section5_rows
from freqbackdoor.triggers.registry import Trigger

log = setup_logging(snakemake.log[0])
params, inputs = snakemake.params, snakemake.input


def npz(path):
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


models_iter = iter(zip(inputs.models, inputs.histories, inputs.predictions, strict=True))
ours, model_tables = [], []
for i, dataset in enumerate(params.datasets):
    spec, naive = params.specs[dataset], params.naive[dataset]
    baseline = read_json(inputs.reference[i])["metrics"]["test_acc"]
    trigger = Trigger.load(inputs.triggers[i])
    models, histories, predictions, targets = {}, {}, {}, {}
    for attack in params.triggers[dataset]:
        meta_path, history_path, predictions_path = next(models_iter)
        meta = read_json(meta_path)
        models[attack] = meta["metrics"]
        targets[attack] = meta["target_label"]
        histories[attack] = pd.read_csv(history_path)
        predictions[attack] = npz(predictions_path)
    filtered_meta = read_json(inputs.filtered[i])
    filtered_predictions = npz(inputs.filtered_predictions[i])
    filtered_history = pd.read_csv(inputs.filtered_history[i])
    ratio = highfreq_table(
        [(dataset, "smooth", inputs.clean_dct[i], inputs.smooth_dct[i])],
        cutoff=params.highfreq["cutoff"],
        n_boot=params.highfreq["bootstrap"],
        seed=params.seed,
        max_samples=params.highfreq["samples"],
    ).iloc[0]
    ours += section5_rows(
        dataset,
        baseline_acc=baseline,
        trigger_meta=trigger.meta,
        target_label=trigger.target_label,
        models=models,
        histories=histories,
        smooth_predictions=predictions["smooth"],
        filtered_predictions=filtered_predictions,
        filtered_info=filtered_meta["filtered"],
        metrics=pd.read_csv(inputs.detection[i]),
        scores=npz(inputs.scores[i]),
        distances=pd.read_csv(inputs.distances[i]),
        naive=naive,
        spec=spec,
        highfreq=ratio,
    )
    model_tables.append(
        poisoned_models_table(
            dataset,
            baseline,
            models,
            histories,
            targets,
            filtered={"metrics": filtered_meta["metrics"], "history": filtered_history},
        )
    )

ours = pd.DataFrame.from_records(ours)
paper = paper_section5(load_paper_numbers(params.paper_numbers)["smooth_trigger"])
side_by_side = compare(ours, paper, mapping=params.paper_names, tolerance=params.tolerance)
table = ours.pivot_table(
    index=["row", "column"], columns="dataset", values="reproduced", sort=False
).reset_index()
poisoned = pd.concat(model_tables, ignore_index=True)

with atomic_path(snakemake.output.csv) as tmp:
    table.to_csv(tmp, index=False)
with atomic_path(snakemake.output.md) as tmp:
    tmp.write_text(
        "# Section 5: the smooth trigger, poisoned models and the detector upgrade\n\n"
        "Percent unless a count, an F1 (fraction), a distance or a label; the row is the "
        "paper's block (`attack`: the attack's own numbers).\n\n" + markdown(table) + "\n"
    )
with atomic_path(snakemake.output.vs_csv) as tmp:
    side_by_side.to_csv(tmp, index=False)
with atomic_path(snakemake.output.vs_md) as tmp:
    tmp.write_text(
        "# Section 5: paper vs reproduced\n\n"
        f"Our datasets stand in for the paper's as {params.paper_names}; difference = "
        f"reproduced - paper; within tolerance = |difference| <= {params.tolerance}. Rows "
        "without a paper value are ours only.\n\n" + markdown(side_by_side) + "\n"
    )
with atomic_path(snakemake.output.models_csv) as tmp:
    poisoned.to_csv(tmp, index=False)
with atomic_path(snakemake.output.models_md) as tmp:
    tmp.write_text(
        "# Poisoned models: final ASR and clean accuracy per trigger (percent)\n\n"
        "ASR on the triggered test images whose true label is not the target; the clean "
        "model's accuracy is Table 8's reference classifier.\n\n" + markdown(poisoned) + "\n"
    )
for _, row in side_by_side.iterrows():
    log.info(
        "%s %s/%s: paper %s, ours %s", row.dataset, row.row, row.column, row.paper, row.reproduced
    )
