# The authors' published CIFAR-10 models (config key authors_models): converted into project
# checkpoints, their detectors scored like ours (Table 1, the transfer tables) and compared.
# Helpers: rules/common.smk, section "The authors' models".


rule authors_model:
    input:
        lambda wc: (
            [f"{AUTHORS_RAW}/{AUTHORS_MODELS[wc.model].file}"]
            if AUTHORS["use"] == "placed"
            else []
        ),
    output:
        model="results/authors/{model}.pt",
        meta="results/authors/{model}.json",
    log:
        "logs/authors_model/{model}.log",
    benchmark:
        "results/benchmarks/authors_model/{model}.tsv"
    wildcard_constraints:
        model="|".join(AUTHORS_MODELS),
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        folder=AUTHORS_RAW,
        download=AUTHORS["use"] == "fetch",
        base_url=AUTHORS["base_url"],
    script:
        "../workflow/scripts/authors_model.py"


rule authors_scores:
    input:
        unpack(authors_scores_inputs),
    output:
        scores="results/{stage}/{dataset}/authors/{model}/scores.npz",
        metrics="results/{stage}/{dataset}/authors/{model}/metrics.csv",
        roc="results/{stage}/{dataset}/authors/{model}/roc.csv",
    log:
        "logs/authors_scores/{stage}/{dataset}/{model}.log",
    benchmark:
        "results/benchmarks/authors_scores/{stage}/{dataset}/{model}.tsv"
    wildcard_constraints:
        stage="detection|smooth",  # Table 1's test sets, or Section 5's triggers
        model="|".join(AUTHORS_DETECTORS),
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
        gpu=gpu_count(),
    params:
        attacks=lambda wc: authors_scored_attacks(wc.stage, wc.dataset),
        label=lambda wc: wc.model,
        domain="dct",
        expect=lambda wc: {
            "checkpoint": f"{wc.model}.pt",
            "dataset": AUTHORS_DATASET,
            "authors_model": wc.model,
        },
        threshold=config["detection"]["threshold"],
        target_fpr=None,  # the authors' file records no held-out calibration
        bootstrap=config["detection"]["bootstrap"],
        seed=config["seed"],
        device=config["device"],
    script:
        "../workflow/scripts/detection_scores.py"


rule authors_detectors_table:
    input:
        unpack(authors_table_inputs),
    output:
        csv="results/tables/authors_detectors.csv",
        md=report(
            "results/tables/authors_detectors.md",
            caption="../report/authors_detectors.rst",
            category="Tables",
        ),
    log:
        "logs/authors_detectors_table.log",
    benchmark:
        "results/benchmarks/authors_detectors_table.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    params:
        datasets=lambda wc: authors_datasets(),
        detectors=lambda wc: authors_detectors_used(),
        ours=lambda wc: {
            d: resolve.default_architecture(config, d) for d in authors_datasets()
        },
        threshold=config["detection"]["threshold"],
        bootstrap=config["detection"]["bootstrap"],
        seed=config["seed"],
    script:
        "../workflow/scripts/authors_detectors_table.py"


rule authors_section5_table:
    input:
        unpack(authors_section5_inputs),
    output:
        csv="results/tables/authors_section5.csv",
        md=report(
            "results/tables/authors_section5.md",
            caption="../report/authors_section5.rst",
            category="Tables",
        ),
    log:
        "logs/authors_section5_table.log",
    benchmark:
        "results/benchmarks/authors_section5_table.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    params:
        datasets=lambda wc: authors_smooth_datasets(),
        detectors=lambda wc: authors_detectors_used(),
    script:
        "../workflow/scripts/authors_section5_table.py"
