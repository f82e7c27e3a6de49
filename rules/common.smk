# Helpers shared by every .smk file: dataset and attack lists, input functions, paths.
import json

RAW = config["raw_dir"]
DATASETS = list(config["datasets"])
ENV = "../environment.yml"


def attacks_of(dataset):
    """The triggers configured for ``dataset``."""
    return config["datasets"][dataset]["attacks"]


def dataset_spec(dataset):
    """The dataset's config as the library's ``datasets`` module expects it."""
    return {k: v for k, v in config["datasets"][dataset].items() if k != "attacks"}


def trigger_options(attack):
    return config["triggers"].get(attack, {})


def test_images(wildcards):
    """Clean test images for ``variant == clean``, else that attack's poisoned test set."""
    if wildcards.variant == "clean":
        return f"results/data/{wildcards.dataset}/x_test.npy"
    return f"results/poisoned/{wildcards.dataset}/{wildcards.variant}/x_test.npy"


def figure1_inputs(wildcards):
    variants = ["clean", *attacks_of(wildcards.dataset)]
    return [f"results/dct/{wildcards.dataset}/{v}.npy" for v in variants]


def gpu_count():
    """Number of GPUs that GPU-capable jobs request (0 when the config says cpu)."""
    return 0 if config["device"] == "cpu" else 1


def all_outputs():
    outputs = []
    for dataset in DATASETS:
        outputs += expand(
            "results/data/{dataset}/{split}.npy",
            dataset=dataset,
            split=["x_train", "y_train", "x_test", "y_test"],
        )
        for attack in attacks_of(dataset):
            outputs += [
                f"results/triggers/{dataset}/{attack}.npz",
                f"results/triggers/{dataset}/{attack}.png",
                f"results/poisoned/{dataset}/{attack}/x_test.npy",
            ]
        outputs += expand(
            "results/dct/{dataset}/{variant}.npy",
            dataset=dataset,
            variant=["clean", *attacks_of(dataset)],
        )
        outputs += expand(
            "results/figures/figure1/{dataset}.{ext}",
            dataset=dataset,
            ext=["png", "pdf"],
        )
    return outputs
