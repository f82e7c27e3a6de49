# Reference classifier (Table 8), triggers (one file per dataset and attack, with a PNG preview)
# and the poisoned test sets.


rule reference_classifier:
    input:
        x_train="results/data/{dataset}/x_train.npy",
        y_train="results/data/{dataset}/y_train.npy",
        x_test="results/data/{dataset}/x_test.npy",
        y_test="results/data/{dataset}/y_test.npy",
        meta="results/data/{dataset}/meta.json",
    output:
        model="results/models/{dataset}/reference_cnn.pt",
        meta="results/models/{dataset}/reference_cnn.json",
    log:
        "logs/reference_classifier/{dataset}.log",
    benchmark:
        "results/benchmarks/reference_classifier/{dataset}.tsv"
    priority: 3
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=gpu_count(),
    params:
        settings=lambda wc: resolve.reference_classifier(config, wc.dataset),
        device=config["device"],
    script:
        "../workflow/scripts/reference_classifier.py"


rule table8:
    output:
        csv="results/tables/table8.csv",
        md=report(
            "results/tables/table8.md",
            caption="../report/table8.rst",
            category="Tables",
        ),
    log:
        "logs/table8.log",
    benchmark:
        "results/benchmarks/table8.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    params:
        num_classes=10,
        input_size=32,
    script:
        "../workflow/scripts/table8.py"


rule trigger:
    input:
        unpack(trigger_inputs),
    output:
        trigger="results/triggers/{dataset}/{attack}.npz",
        preview=report(
            "results/triggers/{dataset}/{attack}.png",
            caption="../report/trigger.rst",
            category="Triggers",
            subcategory="{dataset}",
        ),
    log:
        "logs/trigger/{dataset}/{attack}.log",
    benchmark:
        "results/benchmarks/trigger/{dataset}/{attack}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=lambda wc: trigger_minutes(wc.attack),
        gpu=gpu_count(),
    params:
        options=lambda wc: resolve.trigger_options(config, wc.attack),
        trigger_source=config["trigger_source"],
        official_dir=f"{RAW}/official_triggers",
        paper_name=lambda wc: config["datasets"][wc.dataset].get("paper_name"),
        model_dataset=lambda wc: reference_model_dataset(wc.dataset),
        device=config["device"],
        seed=config["seed"],
        context_samples=config["trigger_context_samples"],
    script:
        "../workflow/scripts/trigger.py"


rule poisoned_test_set:
    input:
        x_test="results/data/{dataset}/x_test.npy",
        y_test="results/data/{dataset}/y_test.npy",
        trigger="results/triggers/{dataset}/{attack}.npz",
    output:
        x_test="results/poisoned/{dataset}/{attack}/x_test.npy",
        y_test="results/poisoned/{dataset}/{attack}/y_test.npy",
        meta="results/poisoned/{dataset}/{attack}/meta.json",
        dct="results/dct/{dataset}/{attack}.npy",
        dct_meta="results/dct/{dataset}/{attack}.json",
    log:
        "logs/poisoned_test_set/{dataset}/{attack}.log",
    benchmark:
        "results/benchmarks/poisoned_test_set/{dataset}/{attack}.tsv"
    wildcard_constraints:
        attack=r"(?!clean\b)[a-z0-9_]+",  # results/dct/{dataset}/clean.npy is prepared_dataset's
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        device="cpu",  # a DCT of the test set takes seconds on a CPU: no GPU slot for it
        chunk_size=config["dct"]["chunk_size"],
    script:
        "../workflow/scripts/poisoned_test_set.py"
