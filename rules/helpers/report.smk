# Input functions of rules/report.smk (the paper-vs-reproduced report and the claims).
# Snakemake's linter keeps functions out of rule files; shared ones are in rules/common.smk.


def comparison_files():
    """Every ``*_vs_paper.csv`` the configured DAG writes, in the order of ``all_outputs``."""
    outputs = [
        o.removesuffix(".md") + ".csv"
        for o in all_outputs()
        if o.endswith("_vs_paper.md")
    ]
    return list(dict.fromkeys(outputs))


def claims_inputs(wildcards):
    """Every file freqbackdoor.paper.claims_run.claims_table reads under this config.

    The same choices: Table 1's detectors and twins, untuned transfer columns from another
    dataset, tuned ones beside their raw detector where the DAG scores it, the Section 5 and
    MNA datasets.
    """
    inputs = ["results/tables/highfreq_ratio.csv"]
    for dataset in config["detection"]["datasets"]:
        for domain in DOMAINS:
            folder = f"results/detection/{dataset}/{resolve.default_architecture(config, dataset)}_{domain}"
            inputs += [f"{folder}/scores.npz", f"{folder}/metrics.csv"]
    if config["figure6"]["widths"] and config["figure6"]["attacks"]:
        inputs.append("results/tables/figure6.csv")
    budget = config["transfer"]["budget"]
    raw_runs = set(transfer_raw_runs())
    for table in config["transfer"]["tables"]:
        target = config["transfer"]["tables"][table]["target"]
        for column in transfer_columns(table):
            source, tuned = column["source"], column["tuned"]
            if tuned:  # compared with the raw detector, where the DAG scores it
                stages = [True, False] if (target, source) in raw_runs else []
            else:  # an untuned detector from another dataset
                stages = [False] if target not in source.split("+") else []
            for stage in stages:
                metrics = transfer_metrics_path(target, source, stage, budget)
                inputs += [metrics, metrics.removesuffix("metrics.csv") + "scores.npz"]
    if smooth_datasets():
        inputs += ["results/tables/section5.csv", "results/tables/poisoned_models.csv"]
        if official_smooth_datasets():
            inputs.append("results/tables/smooth_highfreq.csv")
        for dataset in smooth_datasets():
            stem = f"results/poisoned_models/{dataset}"
            inputs += [f"{stem}/smooth_predictions.npz"]
            inputs += [f"{stem}/filtered/smooth_predictions.npz"]
            inputs.append(f"results/smooth/{dataset}/scores.npz")
            inputs.append(f"results/smooth/{dataset}/detector_smooth.json")
    for dataset in mna_datasets():
        inputs.append(f"results/mna/{dataset}/scores.csv")
    return list(dict.fromkeys(inputs))


def transfer_raw_runs():
    """(target, source) pairs whose untuned detector the DAG scores at ``transfer.budget``."""
    runs = [
        (spec["target"], column["source"])
        for spec in config["transfer"]["tables"].values()
        for column in spec["columns"]
        if not column.get("tune", False)
    ]
    figure = config["transfer"]["budget_figure"]
    if figure["budgets"]:
        runs.append((figure["target"], figure["source"]))
    return runs
