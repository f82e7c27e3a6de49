# Helpers shared by every .smk file: dataset and attack lists, input functions, paths.
import json

import torch

from freqbackdoor.authors.models import (
    AUTHORS_DATASET,
    AUTHORS_DETECTORS,
    AUTHORS_MODELS,
    FOLDER as AUTHORS_FOLDER,
    models_in_use,
    pipeline_settings,
)
from freqbackdoor.data.datasets import source_fingerprint
from freqbackdoor.detection.detector import DetectorSettings
from freqbackdoor.detection.architectures import DETECTORS
from freqbackdoor.mna.meta import check_mna_config
from freqbackdoor.config import settings as resolve
from freqbackdoor.config.references import check_references
from freqbackdoor.detection.transfer import check_transfer_config
from freqbackdoor.triggers.registry import trigger_builder, trigger_needs

RAW = config["raw_dir"]
DATASETS = list(config["datasets"])
ENV = "../environment.yml"
DOMAINS = ["dct", "pixel"] if config["detection"]["image_domain"] else ["dct"]
COMBINED_SOURCE = r"[A-Za-z0-9_]+(\+[A-Za-z0-9_]+)+"  # "photos32+digits32"

#: Where the artifacts that several stages read live: one template per kind, filled by
#: ``path(kind, ...)``. The rules' own ``output:`` strings are these with wildcards.
PATHS = {
    "data": "results/data/{dataset}/{name}",  # x_train.npy, y_test.npy, meta.json
    "dct": "results/dct/{dataset}/{variant}.npy",  # clean, or a trigger's test set
    "poisoned": "results/poisoned/{dataset}/{attack}/x_test.npy",
    "trigger": "results/triggers/{dataset}/{attack}.{ext}",
    "reference_model": "results/models/{dataset}/reference_cnn",
    "detector": "results/detectors/{dataset}/{architecture}_{domain}",
    "detection": "results/detection/{dataset}/{architecture}_{domain}",
}


def path(kind, **fields):
    """The path of a ``kind`` of artifact (a key of :data:`PATHS`) with ``fields`` filled in."""
    return PATHS[kind].format(**fields)


check_references(config)
check_transfer_config(config["transfer"], config["datasets"])
check_mna_config(
    config["mna"],
    config["smooth"]["datasets"],
    {d: spec["attacks"] for d, spec in config["datasets"].items()},
)


def attacks_of(dataset):
    """The triggers configured for ``dataset``."""
    return config["datasets"][dataset]["attacks"]


def reference_model_path(dataset):
    """The classifier (path without suffix) ``dataset``'s optimised triggers are built on:
    the authors' (``authors_models.reference_classifier``) or the reference dataset's own.
    """
    if authors_reference(dataset):
        return "results/authors/authors_cifar10_classifier"
    return path("reference_model", dataset=resolve.reference_dataset(config, dataset))


def reference_model_dataset(dataset):
    """The ``dataset`` the sidecar of :func:`reference_model_path`'s model must name."""
    return (
        AUTHORS_DATASET
        if authors_reference(dataset)
        else resolve.reference_dataset(config, dataset)
    )


def dct_paths(dataset, variants):
    return [path("dct", dataset=dataset, variant=v) for v in variants]


def gpu_count():
    """GPUs a GPU-capable job requests: 1 when it will run on CUDA, else 0.

    With ``device: auto`` that depends on this machine: on a CPU-only one, requesting the
    profile's single GPU slot would serialise every torch job for nothing.
    """
    if config["device"] == "cpu":
        return 0
    if config["device"] == "auto":
        return int(torch.cuda.is_available())
    return 1


def models_needed():
    """Datasets whose reference classifier some trigger needs (and each dataset's own)."""
    needed = []
    for dataset in DATASETS:
        if any(
            "model" in trigger_needs(trigger_builder(a)) for a in attacks_of(dataset)
        ):
            needed.append(resolve.reference_dataset(config, dataset))
    trainable = [
        d
        for d in DATASETS
        if resolve.dataset_spec(config, d).get("test_fraction", 0) < 1
    ]
    return sorted(set(needed) | set(trainable))


def paper_names():
    return {d: config["datasets"][d].get("paper_name", d) for d in DATASETS}


def all_outputs():
    outputs = ["results/tables/table8.md", "results/tables/highfreq_ratio.md"]
    outputs += detection_outputs()
    outputs += transfer_outputs()
    outputs += smooth_outputs()
    outputs += mna_outputs()
    outputs += authors_outputs()
    for dataset in models_needed():
        outputs.append(f"results/models/{dataset}/reference_cnn.json")
    for dataset in DATASETS:
        attacks = attacks_of(dataset)
        outputs += [f"results/data/{dataset}/{s}.npy" for s in ("x_train", "x_test")]
        for attack in attacks:
            outputs += [
                path("trigger", dataset=dataset, attack=attack, ext="png"),
                path("poisoned", dataset=dataset, attack=attack),
            ]
        outputs += dct_paths(dataset, ["clean", *attacks])
        for figure in ("figure1", "figure2", "figure5", "pairs"):
            outputs += [
                f"results/figures/{figure}/{dataset}.{ext}" for ext in ("png", "pdf")
            ]
    return outputs
