# Helpers of rules/authors.smk (the authors' published models).
# Snakemake's linter keeps functions out of rule files; shared ones are in rules/common.smk.


AUTHORS = pipeline_settings(config)
AUTHORS_RAW = f"{RAW}/{AUTHORS_FOLDER}"
AUTHORS_USED = models_in_use(config, RAW)


def authors_detectors_used():
    """The authors' detectors this run scores (their Section 4 one, then the tuned one)."""
    return [m for m in AUTHORS_DETECTORS if m in AUTHORS_USED]


def authors_datasets():
    """Table 1's datasets the authors' 32 px detectors can read."""
    return [
        d
        for d in config["detection"]["datasets"]
        if config["datasets"][d]["size"] == 32
    ]


def authors_table1_detector():
    """The authors' detector Table 1 shows beside ours (their Section 4 one), if in use."""
    return "authors_cifar10" if "authors_cifar10" in AUTHORS_USED else None


def authors_reference(dataset):
    """Whether ``dataset``'s optimised triggers are built on the authors' classifier."""
    return dataset in AUTHORS["reference_classifier"]


def authors_scores_path(dataset, model, name="metrics.csv", stage="detection"):
    """A file the authors' detectors write scoring Table 1's test sets (``smooth``: Section 5's)."""
    return f"results/{stage}/{dataset}/authors/{model}/{name}"


def authors_scored_attacks(stage, dataset):
    """What the authors' detectors score on ``dataset``: Table 1's attacks (``detection``) or
    Section 5's triggers (``smooth``)."""
    return attacks_of(dataset) if stage == "detection" else poisoned_triggers(dataset)


def authors_scores_inputs(wildcards):
    """The converted detector, and the clean and triggered DCT caches it scores."""
    dataset = wildcards.dataset
    return {
        "model": f"results/authors/{wildcards.model}.pt",
        "meta": f"results/authors/{wildcards.model}.json",
        "clean": path("dct", dataset=dataset, variant="clean"),
        "triggered": dct_paths(
            dataset, authors_scored_attacks(wildcards.stage, dataset)
        ),
    }


def authors_smooth_datasets():
    """Section 5's datasets the authors' 32 px detectors can read."""
    return [d for d in smooth_datasets() if config["datasets"][d]["size"] == 32]


def authors_table_inputs(wildcards):
    """Our Table 1 detector's scores and each authors' detector's, per 32 px dataset."""
    datasets = authors_datasets()
    return {
        "ours": [
            f"results/detection/{d}/{resolve.default_architecture(config, d)}_dct/scores.npz"
            for d in datasets
        ],
        "ours_metrics": [
            detection_metrics_path(d, resolve.default_architecture(config, d), "dct")
            for d in datasets
        ],
        "authors": [
            authors_scores_path(d, m, "scores.npz")
            for d in datasets
            for m in authors_detectors_used()
        ],
    }


def authors_section5_inputs(wildcards):
    """Our Section 5 detection metrics and the authors' detectors' on the same triggers."""
    datasets = authors_smooth_datasets()
    return {
        "ours": [f"results/smooth/{d}/detection.csv" for d in datasets],
        "authors": [
            authors_scores_path(d, m, stage="smooth")
            for d in datasets
            for m in authors_detectors_used()
        ],
    }


def authors_outputs():
    """The comparison table, when the run scores any of the authors' detectors."""
    if not (authors_detectors_used() and authors_datasets()):
        return []
    outputs = [f"results/tables/authors_detectors.{ext}" for ext in ("csv", "md")]
    if authors_smooth_datasets():
        outputs += [f"results/tables/authors_section5.{ext}" for ext in ("csv", "md")]
    return outputs
