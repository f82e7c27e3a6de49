# Input functions of rules/frequency.smk (Figures 1 and 2, the high-frequency table).
# Snakemake's linter keeps functions out of rule files; shared ones are in rules/common.smk.


def figure1_inputs(wildcards):
    return dct_paths(wildcards.dataset, ["clean", *attacks_of(wildcards.dataset)])


def pairs_inputs(wildcards):
    dataset, attacks = wildcards.dataset, attacks_of(wildcards.dataset)
    return {
        "clean_images": path("data", dataset=dataset, name="x_test.npy"),
        "triggered_images": [
            path("poisoned", dataset=dataset, attack=a) for a in attacks
        ],
        "clean_dct": path("dct", dataset=dataset, variant="clean"),
        "triggered_dct": dct_paths(dataset, attacks),
    }


def highfreq_pairs():
    """Every (dataset, attack) pair of the configuration, in config order."""
    return [[d, a] for d in DATASETS for a in attacks_of(d)]
