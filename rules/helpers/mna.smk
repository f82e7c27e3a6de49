# Helpers of rules/mna.smk (Section 5.4: Meta Neural Analysis model groups).
# Snakemake's linter keeps functions out of rule files; shared ones are in rules/common.smk.


def mna_datasets():
    return list(config.get("mna", {}).get("datasets", []))


def mna_counts(dataset, role):
    """Models per kind: shadow (benign, jumbo, smooth; the training ones, then the validation
    ones) or target (clean, smooth, classic)."""
    spec = resolve.mna_spec(config)
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
    per_job = resolve.mna_spec(config)["models_per_job"]
    return [str(g) for g in range(-(-count // per_job))]


def mna_group_indices(dataset, role, kind, group):
    count = mna_counts(dataset, role)[kind]
    per_job = resolve.mna_spec(config)["models_per_job"]
    start = int(group) * per_job
    return list(range(start, min(start + per_job, count)))


def mna_group_paths(dataset, role, kind, ext):
    return [
        f"results/mna/{dataset}/{role}/{kind}_{g}.{ext}"
        for g in mna_groups(dataset, role, kind)
    ]


def mna_data_inputs(dataset):
    return {
        "x_train": path("data", dataset=dataset, name="x_train.npy"),
        "y_train": path("data", dataset=dataset, name="y_train.npy"),
        "x_test": path("data", dataset=dataset, name="x_test.npy"),
        "y_test": path("data", dataset=dataset, name="y_test.npy"),
        "meta": path("data", dataset=dataset, name="meta.json"),
    }


def mna_shadow_inputs(wildcards):
    """The data; smooth shadow models also the groups holding the benign training shadow
    models, which Algorithm 1 searches on."""
    dataset = wildcards.dataset
    inputs = mna_data_inputs(dataset)
    if wildcards.kind == "smooth":
        spec = resolve.mna_spec(config)
        groups = -(-spec["shadow_models"]["benign"] // spec["models_per_job"])
        for key, ext in (("benign", "pt"), ("benign_meta", "json")):
            inputs[key] = mna_group_paths(dataset, "shadow", "benign", ext)[:groups]
    return inputs


def mna_target_inputs(wildcards):
    """The data; poisoned target models also the dataset's trigger of that name."""
    inputs = mna_data_inputs(wildcards.dataset)
    if wildcards.kind != "clean":
        inputs["trigger"] = path(
            "trigger", dataset=wildcards.dataset, attack=wildcards.kind, ext="npz"
        )
    return inputs


def mna_meta_inputs(wildcards):
    """Every shadow and target group, and the training images (the queries' statistics)."""
    dataset = wildcards.dataset
    inputs = {"shadow": [], "shadow_meta": [], "targets": [], "target_meta": []}
    inputs["x_train"] = path("data", dataset=dataset, name="x_train.npy")
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
