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
from freqbackdoor.config.references import check_references
from freqbackdoor.detection.transfer import check_transfer_config
from freqbackdoor.triggers.registry import trigger_builder, trigger_needs

RAW = config["raw_dir"]
DATASETS = list(config["datasets"])
ENV = "../environment.yml"
DATASET_KEYS_FOR_RULES = (
    "attacks",
    "reference_model",
    "reference_classifier",
    "detector",
    "paper_name",
    "smooth",
)
DOMAINS = ["dct", "pixel"] if config["detection"]["image_domain"] else ["dct"]
COMBINED_SOURCE = r"[A-Za-z0-9_]+(\+[A-Za-z0-9_]+)+"  # "photos32+digits32"
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


def dataset_spec(dataset):
    """The dataset's config as the library's ``datasets`` module expects it."""
    spec = config["datasets"][dataset]
    return {k: v for k, v in spec.items() if k not in DATASET_KEYS_FOR_RULES}


def reference_dataset(dataset):
    """The dataset whose reference classifier (and training images) optimised triggers use.

    A test-only dataset (TSRD) borrows another's (GTSRB) through ``reference_model``.
    """
    return config["datasets"][dataset].get("reference_model", dataset)


def classifier_settings(dataset):
    """Training settings of the dataset's reference classifier: the global ones, then overrides."""
    overrides = config["datasets"][dataset].get("reference_classifier", {})
    return {**config["reference_classifier"], **overrides, "seed": config["seed"]}


def trigger_options(attack):
    """The trigger's config; a naive low-pass one takes the smooth trigger's filter and range."""
    options = dict(config["triggers"].get(attack, {}))
    if trigger_builder(attack) == "lowpass":
        smooth = config["triggers"].get("smooth", {})
        shared = ("filter_size", "filter_sigma", "max_value", "strength")
        options = {**{k: smooth[k] for k in shared if k in smooth}, **options}
    return options


def trigger_inputs(wildcards):
    """A clean test set (for the preview), plus the model and images the trigger is built from."""
    inputs = {"x_test": f"results/data/{wildcards.dataset}/x_test.npy"}
    source = reference_dataset(wildcards.dataset)
    needs = trigger_needs(trigger_builder(wildcards.attack))
    if "model" in needs:
        model = reference_model_path(wildcards.dataset)
        inputs["model"] = f"{model}.pt"
        inputs["model_meta"] = f"{model}.json"
    if "images" in needs:
        inputs["x_train"] = f"results/data/{source}/x_train.npy"
        inputs["y_train"] = f"results/data/{source}/y_train.npy"
    return inputs


def reference_model_path(dataset):
    """The classifier (path without suffix) ``dataset``'s optimised triggers are built on:
    the authors' (``authors_models.reference_classifier``) or the reference dataset's own.
    """
    if authors_reference(dataset):
        return "results/authors/authors_cifar10_classifier"
    return f"results/models/{reference_dataset(dataset)}/reference_cnn"


def reference_model_dataset(dataset):
    """The ``dataset`` the sidecar of :func:`reference_model_path`'s model must name."""
    return AUTHORS_DATASET if authors_reference(dataset) else reference_dataset(dataset)


def trigger_minutes(attack):
    """A trigger job's time request (Slurm): an hour for one optimised on a model or learned
    from images, ten minutes for a fixed pattern (so grouped poison chains ask for little).
    """
    needs = trigger_needs(trigger_builder(attack))
    return 60 if ("model" in needs or "images" in needs) else 10


def dct_paths(dataset, variants):
    return [f"results/dct/{dataset}/{v}.npy" for v in variants]


def figure1_inputs(wildcards):
    return dct_paths(wildcards.dataset, ["clean", *attacks_of(wildcards.dataset)])


def pairs_inputs(wildcards):
    dataset, attacks = wildcards.dataset, attacks_of(wildcards.dataset)
    return {
        "clean_images": f"results/data/{dataset}/x_test.npy",
        "triggered_images": [
            f"results/poisoned/{dataset}/{a}/x_test.npy" for a in attacks
        ],
        "clean_dct": f"results/dct/{dataset}/clean.npy",
        "triggered_dct": dct_paths(dataset, attacks),
    }


def highfreq_pairs():
    """Every (dataset, attack) pair of the configuration, in config order."""
    return [[d, a] for d in DATASETS for a in attacks_of(d)]


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
            needed.append(reference_dataset(dataset))
    trainable = [d for d in DATASETS if dataset_spec(d).get("test_fraction", 0) < 1]
    return sorted(set(needed) | set(trainable))


def detector_settings(dataset, architecture=None):
    """The detector's training settings on ``dataset``: global, then the dataset's overrides.

    ``architecture`` (a Table 5 ablation row) replaces the configured one and takes the
    ablation's epochs.
    """
    settings = {
        **config["detector"],
        **config["datasets"][dataset].get("detector", {}),
        "seed": config["seed"],
    }
    if architecture is not None and architecture != settings["architecture"]:
        settings["architecture"] = architecture
        settings["epochs"] = config["table5"].get("epochs", settings["epochs"])
    return settings


def default_detector(dataset):
    return detector_settings(dataset)["architecture"]


def paper_names():
    return {d: config["datasets"][d].get("paper_name", d) for d in DATASETS}


def detection_test_inputs(wildcards):
    """Clean and triggered test sets in the detector's domain: DCT caches or images."""
    dataset, attacks = wildcards.dataset, attacks_of(wildcards.dataset)
    if wildcards.domain == "dct":
        return {
            "clean": f"results/dct/{dataset}/clean.npy",
            "triggered": dct_paths(dataset, attacks),
        }
    return {
        "clean": f"results/data/{dataset}/x_test.npy",
        "triggered": [f"results/poisoned/{dataset}/{a}/x_test.npy" for a in attacks],
    }


def detection_metrics_path(dataset, architecture, domain):
    return f"results/detection/{dataset}/{architecture}_{domain}/metrics.csv"


def table1_inputs(wildcards):
    """Our detectors' metrics per dataset and domain, and the authors' detector's, if used."""
    authors = authors_table1_detector()
    return {
        "metrics": [
            detection_metrics_path(d, default_detector(d), domain)
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
        detector_settings(wildcards.dataset, wildcards.architecture)
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
        f"results/figures/roc/{d}_{default_detector(d)}.{ext}"
        for d in config["detection"]["datasets"]
        for ext in ("png", "pdf")
    ]
    return outputs


def transfer_detector_settings(source):
    """A transfer source's detector settings: the dataset's own, or the global ones combined."""
    if "+" not in source:
        return detector_settings(source)
    overrides = config["transfer"].get("combined_detector", {})
    return {**config["detector"], **overrides, "seed": config["seed"]}


def source_detector(source):
    """The DCT detector a transfer column starts from (trained on one dataset or several, or
    the authors' published one)."""
    if source in AUTHORS_DETECTORS:
        return f"results/authors/{source}"
    architecture = transfer_detector_settings(source)["architecture"]
    return f"results/detectors/{source}/{architecture}_dct"


def fine_tune_settings():
    return config["transfer"]["fine_tune"]


def transfer_inputs(wildcards):
    """The source detector, and the target's test images (to tune on) and DCT caches (to score)."""
    target, model = wildcards.target, source_detector(wildcards.source)
    return {
        "model": f"{model}.pt",
        "meta": f"{model}.json",
        "x_test": f"results/data/{target}/x_test.npy",
        "clean": f"results/dct/{target}/clean.npy",
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
                f"results/triggers/{dataset}/{attack}.png",
                f"results/poisoned/{dataset}/{attack}/x_test.npy",
            ]
        outputs += dct_paths(dataset, ["clean", *attacks])
        for figure in ("figure1", "figure2", "figure5", "pairs"):
            outputs += [
                f"results/figures/{figure}/{dataset}.{ext}" for ext in ("png", "pdf")
            ]
    return outputs


# --------------------------------------------------------------------------- Section 5


def smooth_spec(dataset):
    """Section 5 settings of ``dataset``: the global ``smooth`` block, then its overrides."""
    spec = {**config["smooth"], **config["datasets"][dataset].get("smooth", {})}
    spec.pop("datasets", None)
    return spec


def smooth_datasets():
    return list(config["smooth"]["datasets"])


def naive_triggers(dataset):
    """The naive low-pass baselines (Section 5.3) of ``dataset``."""
    return list(smooth_spec(dataset)["naive"])


def filtered_triggers(dataset):
    """Every low-pass trigger of ``dataset``: the smooth one, then the naive baselines."""
    return ["smooth", *naive_triggers(dataset)]


def poisoned_triggers(dataset):
    """Triggers a model is poisoned with: smooth, naive baselines, classic ones for contrast."""
    return [*filtered_triggers(dataset), *smooth_spec(dataset)["classic"]]


def upgrade_triggers(dataset):
    """Triggers the Section 4 detector is fine-tuned on: the smooth one, and one naive pattern."""
    spec = smooth_spec(dataset)
    lowpass = spec["lowpass_tune"]
    return ["smooth", lowpass] if lowpass in naive_triggers(dataset) else ["smooth"]


def section4_detector(dataset):
    return f"results/detectors/{dataset}/{default_detector(dataset)}_dct"


def poisoned_model_settings(dataset):
    """The poisoned models' training recipe: the reference classifier's, then overrides."""
    return {**classifier_settings(dataset), **smooth_spec(dataset)["poisoned_model"]}


def poisoned_model_inputs(wildcards):
    dataset, attack = wildcards.dataset, wildcards.attack
    inputs = {
        "x_train": f"results/data/{dataset}/x_train.npy",
        "y_train": f"results/data/{dataset}/y_train.npy",
        "x_test": f"results/data/{dataset}/x_test.npy",
        "y_test": f"results/data/{dataset}/y_test.npy",
        "meta": f"results/data/{dataset}/meta.json",
        "trigger": f"results/triggers/{dataset}/{attack}.npz",
        "x_triggered": f"results/poisoned/{dataset}/{attack}/x_test.npy",
    }
    return inputs


def smooth_detection_inputs(wildcards):
    dataset = wildcards.dataset
    evaluated = poisoned_triggers(dataset)
    detector = section4_detector(dataset)
    return {
        "model": f"{detector}.pt",
        "meta": f"{detector}.json",
        "tuned_models": [
            f"results/smooth/{dataset}/detector_{t}.pt"
            for t in upgrade_triggers(dataset)
        ],
        "tuned_metas": [
            f"results/smooth/{dataset}/detector_{t}.json"
            for t in upgrade_triggers(dataset)
        ],
        "x_train": f"results/data/{dataset}/x_train.npy",
        "clean": f"results/dct/{dataset}/clean.npy",
        "triggered": dct_paths(dataset, evaluated),
    }


def section5_inputs(wildcards):
    inputs = {"reference": [], "triggers": [], "models": [], "histories": []}
    inputs.update({"predictions": [], "filtered": [], "detection": [], "scores": []})
    inputs.update({"filtered_history": [], "filtered_predictions": []})
    inputs.update({"distances": [], "clean_dct": [], "smooth_dct": []})
    for dataset in smooth_datasets():
        inputs["reference"].append(f"results/models/{dataset}/reference_cnn.json")
        inputs["triggers"].append(f"results/triggers/{dataset}/smooth.npz")
        for attack in poisoned_triggers(dataset):
            stem = f"results/poisoned_models/{dataset}/{attack}"
            inputs["models"].append(f"{stem}.json")
            inputs["histories"].append(f"{stem}_history.csv")
            inputs["predictions"].append(f"{stem}_predictions.npz")
        filtered = f"results/poisoned_models/{dataset}/filtered/smooth"
        inputs["filtered"].append(f"{filtered}.json")
        inputs["filtered_history"].append(f"{filtered}_history.csv")
        inputs["filtered_predictions"].append(f"{filtered}_predictions.npz")
        inputs["detection"].append(f"results/smooth/{dataset}/detection.csv")
        inputs["scores"].append(f"results/smooth/{dataset}/scores.npz")
        inputs["distances"].append(f"results/smooth/{dataset}/figure4_distances.csv")
        inputs["clean_dct"].append(f"results/dct/{dataset}/clean.npy")
        inputs["smooth_dct"].append(f"results/dct/{dataset}/smooth.npy")
    return inputs


def figure3_inputs(wildcards):
    dataset = wildcards.dataset
    return {
        "trigger": f"results/triggers/{dataset}/smooth.npz",
        "x_test": f"results/data/{dataset}/x_test.npy",
        "x_smooth": f"results/poisoned/{dataset}/smooth/x_test.npy",
        "smooth_dct": f"results/dct/{dataset}/smooth.npy",
        "figure1": figure1_inputs(wildcards),
    }


def smooth_outputs():
    if not smooth_datasets():
        return []
    outputs = [
        f"results/tables/{t}{s}.md"
        for t in ("section5", "poisoned_models")
        for s in ("", "_vs_paper")
        if not (t == "poisoned_models" and s)
    ]
    for dataset in smooth_datasets():
        for figure in ("figure3", "figure4", "poisoning"):
            outputs += [
                f"results/figures/{figure}/{dataset}.{ext}" for ext in ("png", "pdf")
            ]
    if official_smooth_datasets():
        outputs.append("results/tables/smooth_highfreq.md")
    return outputs


def official_smooth_datasets():
    """Section 5 datasets of 32 px, where the authors' published smooth triggers apply."""
    return [d for d in smooth_datasets() if config["datasets"][d]["size"] == 32]


# --------------------------------------------------------------------------- Section 5.4: MNA


def mna_datasets():
    return list(config.get("mna", {}).get("datasets", []))


def mna_spec(dataset):
    """MNA settings of ``dataset``: the global ``mna`` block (datasets left out)."""
    spec = dict(config["mna"])
    spec.pop("datasets", None)
    return spec


def mna_counts(dataset, role):
    """Models per kind: shadow (benign, jumbo, smooth; the training ones, then the validation
    ones) or target (clean, smooth, classic)."""
    spec = mna_spec(dataset)
    if role == "shadow":
        validation = spec.get("validation_models", {})
        return {k: n + validation.get(k, 0) for k, n in spec["shadow_models"].items()}
    counts = {k: spec["target_models"][k] for k in ("clean", "smooth")}
    counts.update(
        {attack: spec["target_models"]["classic"] for attack in spec["classic"]}
    )
    return {kind: n for kind, n in counts.items() if n > 0}


def mna_groups(dataset, role, kind):
    """Job groups of ``kind``: ``models_per_job`` models each, the last one the remainder."""
    count = mna_counts(dataset, role).get(kind, 0)
    per_job = mna_spec(dataset)["models_per_job"]
    return [str(g) for g in range(-(-count // per_job))]


def mna_group_indices(dataset, role, kind, group):
    count = mna_counts(dataset, role)[kind]
    per_job = mna_spec(dataset)["models_per_job"]
    start = int(group) * per_job
    return list(range(start, min(start + per_job, count)))


def mna_group_paths(dataset, role, kind, ext):
    return [
        f"results/mna/{dataset}/{role}/{kind}_{g}.{ext}"
        for g in mna_groups(dataset, role, kind)
    ]


def mna_training_settings(dataset):
    """The shadow and target models' recipe, ``mna.training`` (MNTD's; not the reference
    classifier's): resolved by ``freqbackdoor.mna.mntd.MNTDTraining`` in the job."""
    return dict(mna_spec(dataset)["training"])


def mna_search_settings(dataset):
    """Algorithm 1 on the shadow models: ``triggers.smooth``, then ``mna.smooth_shadow.search``."""
    search = mna_spec(dataset)["smooth_shadow"].get("search", {})
    return {**config["triggers"].get("smooth", {}), **search}


def mna_data_inputs(dataset):
    return {
        "x_train": f"results/data/{dataset}/x_train.npy",
        "y_train": f"results/data/{dataset}/y_train.npy",
        "x_test": f"results/data/{dataset}/x_test.npy",
        "y_test": f"results/data/{dataset}/y_test.npy",
        "meta": f"results/data/{dataset}/meta.json",
    }


def mna_shadow_inputs(wildcards):
    """The data; smooth shadow models also the groups holding the benign training shadow
    models, which Algorithm 1 searches on."""
    dataset = wildcards.dataset
    inputs = mna_data_inputs(dataset)
    if wildcards.kind == "smooth":
        spec = mna_spec(dataset)
        groups = -(-spec["shadow_models"]["benign"] // spec["models_per_job"])
        for key, ext in (("benign", "pt"), ("benign_meta", "json")):
            inputs[key] = mna_group_paths(dataset, "shadow", "benign", ext)[:groups]
    return inputs


def mna_target_inputs(wildcards):
    """The data; poisoned target models also the dataset's trigger of that name."""
    inputs = mna_data_inputs(wildcards.dataset)
    if wildcards.kind != "clean":
        inputs["trigger"] = f"results/triggers/{wildcards.dataset}/{wildcards.kind}.npz"
    return inputs


def mna_meta_inputs(wildcards):
    """Every shadow and target group, and the training images (the queries' statistics)."""
    dataset = wildcards.dataset
    inputs = {"shadow": [], "shadow_meta": [], "targets": [], "target_meta": []}
    inputs["x_train"] = f"results/data/{dataset}/x_train.npy"
    for kind in mna_counts(dataset, "shadow"):
        inputs["shadow"] += mna_group_paths(dataset, "shadow", kind, "pt")
        inputs["shadow_meta"] += mna_group_paths(dataset, "shadow", kind, "json")
    for kind in mna_counts(dataset, "target"):
        inputs["targets"] += mna_group_paths(dataset, "target", kind, "pt")
        inputs["target_meta"] += mna_group_paths(dataset, "target", kind, "json")
    return inputs


def mna_outputs():
    if not mna_datasets():
        return []
    outputs = [
        f"results/tables/mna{s}.{e}" for s in ("", "_vs_paper") for e in ("md", "csv")
    ]
    for dataset in mna_datasets():
        outputs += [f"results/figures/mna_roc/{dataset}.{e}" for e in ("png", "pdf")]
    return outputs


# --------------------------------------------------------------------------- report


def comparison_files():
    """Every ``*_vs_paper.csv`` the configured DAG writes, in the order of ``all_outputs``."""
    outputs = [
        o.removesuffix(".md") + ".csv"
        for o in all_outputs()
        if o.endswith("_vs_paper.md")
    ]
    return list(dict.fromkeys(outputs))


# --------------------------------------------------------------------------- claims


def claims_inputs(wildcards):
    """Every file freqbackdoor.paper.claims.claims_table reads under this config.

    The same choices: Table 1's detectors and twins, untuned transfer columns from another
    dataset, tuned ones beside their raw detector where the DAG scores it, the Section 5 and
    MNA datasets.
    """
    inputs = ["results/tables/highfreq_ratio.csv"]
    for dataset in config["detection"]["datasets"]:
        for domain in DOMAINS:
            folder = f"results/detection/{dataset}/{default_detector(dataset)}_{domain}"
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


# --------------------------------------------------------------------------- The authors' models

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
        "clean": f"results/dct/{dataset}/clean.npy",
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
            f"results/detection/{d}/{default_detector(d)}_dct/scores.npz"
            for d in datasets
        ],
        "ours_metrics": [
            detection_metrics_path(d, default_detector(d), "dct") for d in datasets
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
