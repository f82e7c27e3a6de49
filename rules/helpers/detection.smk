# Input functions and paths of rules/detection.smk (Tables 1 and 5, ROC curves).
# Snakemake's linter keeps functions out of rule files; shared ones are in rules/common.smk.


def detection_test_inputs(wildcards):
    """Clean and triggered test sets in the detector's domain: DCT caches or images."""
    dataset, attacks = wildcards.dataset, attacks_of(wildcards.dataset)
    if wildcards.domain == "dct":
        return {
            "clean": path("dct", dataset=dataset, variant="clean"),
            "triggered": dct_paths(dataset, attacks),
        }
    return {
        "clean": path("data", dataset=dataset, name="x_test.npy"),
        "triggered": [path("poisoned", dataset=dataset, attack=a) for a in attacks],
    }


def detection_metrics_path(dataset, architecture, domain):
    return f"results/detection/{dataset}/{architecture}_{domain}/metrics.csv"


def table1_inputs(wildcards):
    """Our detectors' metrics per dataset and domain, and the authors' detector's, if used."""
    authors = authors_table1_detector()
    return {
        "metrics": [
            detection_metrics_path(d, resolve.default_architecture(config, d), domain)
            for d in config["detection"]["datasets"]
            for domain in DOMAINS
        ],
        "authors": (
            [authors_scores_path(d, authors) for d in authors_datasets()]
            if authors
            else []
        ),
    }


def detector_expect(wildcards):
    """What a Table 1/5 detector's sidecar must say: its path, dataset, body and settings."""
    settings = DetectorSettings.from_config(
        resolve.detector(config, wildcards.dataset, wildcards.architecture)
    )
    return {
        "checkpoint": f"{wildcards.architecture}_{wildcards.domain}.pt",
        "dataset": wildcards.dataset,
        "body": wildcards.architecture,
        "training": json.loads(json.dumps(settings.as_dict())),
    }


def table5_inputs(wildcards):
    dataset = config["table5"]["dataset"]
    architectures = config["table5"]["architectures"]
    return {
        "metrics": [detection_metrics_path(dataset, a, "dct") for a in architectures],
        "models": [f"results/detectors/{dataset}/{a}_dct.json" for a in architectures],
    }


def detection_outputs():
    outputs = [
        f"results/tables/{t}{suffix}.md"
        for t in ("table1", "table5", "table6", "table7")
        for suffix in ("", "_vs_paper")
    ]
    outputs += [f"results/figures/figure6.{ext}" for ext in ("png", "pdf")]
    outputs.append("results/tables/figure6_vs_paper.md")
    outputs += [
        f"results/figures/roc/{d}_{resolve.default_architecture(config, d)}.{ext}"
        for d in config["detection"]["datasets"]
        for ext in ("png", "pdf")
    ]
    return outputs
