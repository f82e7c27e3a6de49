# Input functions and time requests of rules/triggers.smk.
# Snakemake's linter keeps functions out of rule files; shared ones are in rules/common.smk.


def trigger_inputs(wildcards):
    """A clean test set (for the preview), plus the model and images the trigger is built from."""
    inputs = {"x_test": path("data", dataset=wildcards.dataset, name="x_test.npy")}
    source = resolve.reference_dataset(config, wildcards.dataset)
    needs = trigger_needs(trigger_builder(wildcards.attack))
    if "model" in needs:
        model = reference_model_path(wildcards.dataset)
        inputs["model"] = f"{model}.pt"
        inputs["model_meta"] = f"{model}.json"
    if "images" in needs:
        inputs["x_train"] = path("data", dataset=source, name="x_train.npy")
        inputs["y_train"] = path("data", dataset=source, name="y_train.npy")
    return inputs


def trigger_minutes(attack):
    """A trigger job's time request (Slurm): an hour for one optimised on a model or learned
    from images, ten minutes for a fixed pattern (so grouped poison chains ask for little).
    """
    needs = trigger_needs(trigger_builder(attack))
    return 60 if ("model" in needs or "images" in needs) else 10
