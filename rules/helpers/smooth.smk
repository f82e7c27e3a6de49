# Helpers of rules/smooth.smk (Section 5: the smooth trigger, poisoned models, upgrade).
# Snakemake's linter keeps functions out of rule files; shared ones are in rules/common.smk.


def smooth_datasets():
    return list(config["smooth"]["datasets"])


def naive_triggers(dataset):
    """The naive low-pass baselines (Section 5.3) of ``dataset``."""
    return list(resolve.smooth_spec(config, dataset)["naive"])


def filtered_triggers(dataset):
    """Every low-pass trigger of ``dataset``: the smooth one, then the naive baselines."""
    return ["smooth", *naive_triggers(dataset)]


def poisoned_triggers(dataset):
    """Triggers a model is poisoned with: smooth, naive baselines, classic ones for contrast."""
    return [
        *filtered_triggers(dataset),
        *resolve.smooth_spec(config, dataset)["classic"],
    ]


def upgrade_triggers(dataset):
    """Triggers the Section 4 detector is fine-tuned on: the smooth one, and one naive pattern."""
    spec = resolve.smooth_spec(config, dataset)
    lowpass = spec["lowpass_tune"]
    return ["smooth", lowpass] if lowpass in naive_triggers(dataset) else ["smooth"]


def section4_detector(dataset):
    return path(
        "detector",
        dataset=dataset,
        architecture=resolve.default_architecture(config, dataset),
        domain="dct",
    )


def poisoned_model_inputs(wildcards):
    dataset, attack = wildcards.dataset, wildcards.attack
    inputs = {
        "x_train": path("data", dataset=dataset, name="x_train.npy"),
        "y_train": path("data", dataset=dataset, name="y_train.npy"),
        "x_test": path("data", dataset=dataset, name="x_test.npy"),
        "y_test": path("data", dataset=dataset, name="y_test.npy"),
        "meta": path("data", dataset=dataset, name="meta.json"),
        "trigger": path("trigger", dataset=dataset, attack=attack, ext="npz"),
        "x_triggered": path("poisoned", dataset=dataset, attack=attack),
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
        "x_train": path("data", dataset=dataset, name="x_train.npy"),
        "clean": path("dct", dataset=dataset, variant="clean"),
        "triggered": dct_paths(dataset, evaluated),
    }


def section5_inputs(wildcards):
    inputs = {"reference": [], "triggers": [], "models": [], "histories": []}
    inputs.update({"predictions": [], "filtered": [], "detection": [], "scores": []})
    inputs.update({"filtered_history": [], "filtered_predictions": []})
    inputs.update({"distances": [], "clean_dct": [], "smooth_dct": []})
    for dataset in smooth_datasets():
        inputs["reference"].append(f"results/models/{dataset}/reference_cnn.json")
        inputs["triggers"].append(
            path("trigger", dataset=dataset, attack="smooth", ext="npz")
        )
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
        inputs["clean_dct"].append(path("dct", dataset=dataset, variant="clean"))
        inputs["smooth_dct"].append(path("dct", dataset=dataset, variant="smooth"))
    return inputs


def figure3_inputs(wildcards):
    dataset = wildcards.dataset
    return {
        "trigger": path("trigger", dataset=dataset, attack="smooth", ext="npz"),
        "x_test": path("data", dataset=dataset, name="x_test.npy"),
        "x_smooth": path("poisoned", dataset=dataset, attack="smooth"),
        "smooth_dct": path("dct", dataset=dataset, variant="smooth"),
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
