# Section 5.4: Meta Neural Analysis (Xu et al.'s MNTD) against models poisoned with the smooth
# trigger, before and after its shadow models include smooth triggers. Each job trains one group
# of `mna.models_per_job` shadow or target models by MNTD's recipe (`mna.training`), so a cluster
# trains them in parallel; a kind's shadow models are its training ones, then its validation
# ones (`mna.validation_models`); the meta-classifier gathers them.


rule mna_shadow_models:
    input:
        unpack(mna_shadow_inputs),
    output:
        model="results/mna/{dataset}/shadow/{kind}_{group}.pt",
        meta="results/mna/{dataset}/shadow/{kind}_{group}.json",
    log:
        "logs/mna_shadow_models/{dataset}/{kind}_{group}.log",
    benchmark:
        "results/benchmarks/mna_shadow_models/{dataset}/{kind}_{group}.tsv"
    wildcard_constraints:
        kind="benign|jumbo|smooth",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=gpu_count(),
    params:
        role="shadow",
        indices=lambda wc: mna_group_indices(wc.dataset, "shadow", wc.kind, wc.group),
        training=lambda wc: resolve.mna_training(config),
        share=None,
        smooth=lambda wc: resolve.mna_search(config),
        algorithm1_share=lambda wc: resolve.mna_spec(config)["smooth_shadow"][
            "algorithm1_share"
        ],
        benign_train=lambda wc: resolve.mna_spec(config)["shadow_models"]["benign"],
        shadow_share=lambda wc: resolve.mna_spec(config)["shadow_share"],
        target_share=lambda wc: resolve.mna_spec(config)["target_share"],
        stacked=lambda wc: resolve.mna_spec(config)["stacked"],
        seed=config["seed"],
        device=config["device"],
    script:
        "../workflow/scripts/mna_models.py"


rule mna_target_models:
    input:
        unpack(mna_target_inputs),
    output:
        model="results/mna/{dataset}/target/{kind}_{group}.pt",
        meta="results/mna/{dataset}/target/{kind}_{group}.json",
    log:
        "logs/mna_target_models/{dataset}/{kind}_{group}.log",
    benchmark:
        "results/benchmarks/mna_target_models/{dataset}/{kind}_{group}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=gpu_count(),
    params:
        role="target",
        indices=lambda wc: mna_group_indices(wc.dataset, "target", wc.kind, wc.group),
        training=lambda wc: resolve.mna_training(config),
        share=lambda wc: resolve.smooth_spec(config, wc.dataset)["poison_share"],
        smooth=lambda wc: resolve.mna_search(config),
        algorithm1_share=0.0,
        benign_train=0,
        shadow_share=lambda wc: resolve.mna_spec(config)["shadow_share"],
        target_share=lambda wc: resolve.mna_spec(config)["target_share"],
        stacked=lambda wc: resolve.mna_spec(config)["stacked"],
        seed=config["seed"],
        device=config["device"],
    script:
        "../workflow/scripts/mna_models.py"


rule mna_meta_classifier:
    input:
        unpack(mna_meta_inputs),
    output:
        scores="results/mna/{dataset}/scores.csv",
        metrics="results/mna/{dataset}/metrics.csv",
        meta="results/mna/{dataset}/meta_classifier.json",
    log:
        "logs/mna_meta_classifier/{dataset}.log",
    benchmark:
        "results/benchmarks/mna_meta_classifier/{dataset}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=8000,
        runtime=120,
        gpu=gpu_count(),
    params:
        meta=lambda wc: resolve.mna_spec(config)["meta"],
        seeds=lambda wc: resolve.mna_spec(config)["seeds"],
        shadow_models=lambda wc: resolve.mna_spec(config)["shadow_models"],
        shadow_share=lambda wc: resolve.mna_spec(config)["shadow_share"],
        target_share=lambda wc: resolve.mna_spec(config)["target_share"],
        seed=config["seed"],
        device=config["device"],
    script:
        "../workflow/scripts/mna_meta_classifier.py"


rule mna_table:
    input:
        metrics=[f"results/mna/{d}/metrics.csv" for d in mna_datasets()],
        meta=[f"results/mna/{d}/meta_classifier.json" for d in mna_datasets()],
    output:
        csv="results/tables/mna.csv",
        md=report(
            "results/tables/mna.md",
            caption="../report/mna.rst",
            category="Tables",
        ),
        vs_csv="results/tables/mna_vs_paper.csv",
        vs_md="results/tables/mna_vs_paper.md",
    log:
        "logs/mna_table.log",
    benchmark:
        "results/benchmarks/mna_table.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        datasets=mna_datasets(),
        paper_dataset="cifar10",
        paper_names=paper_names(),
        paper_numbers="config/paper_numbers.yaml",
        tolerance=config["detection"]["tolerance"],
    script:
        "../workflow/scripts/mna_table.py"


rule mna_roc_figure:
    input:
        scores="results/mna/{dataset}/scores.csv",
    output:
        png=report(
            "results/figures/mna_roc/{dataset}.png",
            caption="../report/mna_roc.rst",
            category="Section 5",
        ),
        pdf="results/figures/mna_roc/{dataset}.pdf",
    log:
        "logs/mna_roc_figure/{dataset}.log",
    benchmark:
        "results/benchmarks/mna_roc_figure/{dataset}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../workflow/scripts/mna_roc_figure.py"
