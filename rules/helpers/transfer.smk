# Input functions and paths of rules/transfer.smk (Section 4.3: Tables 2-4).
# Snakemake's linter keeps functions out of rule files; shared ones are in rules/common.smk.


def source_detector(source):
    """The DCT detector a transfer column starts from (trained on one dataset or several, or
    the authors' published one)."""
    if source in AUTHORS_DETECTORS:
        return f"results/authors/{source}"
    architecture = resolve.transfer_detector(config, source)["architecture"]
    return path("detector", dataset=source, architecture=architecture, domain="dct")


def transfer_inputs(wildcards):
    """The source detector, and the target's test images (to tune on) and DCT caches (to score)."""
    target, model = wildcards.target, source_detector(wildcards.source)
    return {
        "model": f"{model}.pt",
        "meta": f"{model}.json",
        "x_test": path("data", dataset=target, name="x_test.npy"),
        "clean": path("dct", dataset=target, variant="clean"),
        "triggered": dct_paths(target, attacks_of(target)),
    }


def transfer_metrics_path(target, source, tuned, budget, repeat=0):
    stage = "tuned" if tuned else "raw"
    return f"results/transfer/{target}/{source}/{stage}_b{budget}_r{repeat}/metrics.csv"


def transfer_columns(table):
    """A transfer table's columns: source, tuned, our label and the paper's column name."""
    spec = config["transfer"]["tables"][table]
    authors = authors_table1_detector()
    authors_fit = authors and config["datasets"][spec["target"]]["size"] == 32
    columns = []
    for column in spec["columns"]:
        source, tuned = column["source"], bool(column.get("tune", False))
        paper = "combined" if "+" in source else paper_names()[source]
        sources = [(source, paper)]
        # beside each CIFAR-10 column: the authors' own CIFAR-10 detector
        if authors_fit and paper == "cifar10":
            sources.append((authors, authors))
        for source, key in sources:
            columns.append(
                {
                    "source": source,
                    "tuned": tuned,
                    "label": f"{source}+Tune" if tuned else source,
                    "key": f"{key}_tune" if tuned else key,
                }
            )
    return columns


def transfer_table_inputs(table):
    target, budget = (
        config["transfer"]["tables"][table]["target"],
        config["transfer"]["budget"],
    )
    return [
        transfer_metrics_path(target, c["source"], c["tuned"], budget)
        for c in transfer_columns(table)
    ]


def budget_figure_inputs(wildcards):
    spec = config["transfer"]["budget_figure"]
    target, source = spec["target"], spec["source"]
    return {
        "raw": transfer_metrics_path(
            target, source, False, config["transfer"]["budget"]
        ),
        "tuned": [
            transfer_metrics_path(target, source, True, budget, repeat)
            for budget in spec["budgets"]
            for repeat in range(spec["repeats"])
        ],
    }


def transfer_outputs():
    outputs = [
        f"results/tables/{table}{suffix}.md"
        for table in config["transfer"]["tables"]
        for suffix in ("", "_vs_paper")
    ]
    if config["transfer"]["budget_figure"]["budgets"]:
        outputs += [f"results/figures/transfer_budget.{ext}" for ext in ("png", "pdf")]
    return outputs
