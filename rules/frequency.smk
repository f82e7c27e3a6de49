# DCT cache of every evaluation set and the frequency figures.


rule dct_cache:
    input:
        images=test_images,
    output:
        dct="results/dct/{dataset}/{variant}.npy",
        meta="results/dct/{dataset}/{variant}.json",
    log:
        "logs/dct_cache/{dataset}/{variant}.log",
    benchmark:
        "results/benchmarks/dct_cache/{dataset}/{variant}.tsv"
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=4000,
        runtime=30,
        gpu=gpu_count(),
    params:
        device=config["device"],
        chunk_size=config["dct"]["chunk_size"],
    script:
        "../workflow/scripts/dct_cache.py"


rule figure1:
    input:
        figure1_inputs,
    output:
        png=report(
            "results/figures/figure1/{dataset}.png",
            caption="../report/figure1.rst",
            category="Figure 1",
        ),
        pdf="results/figures/figure1/{dataset}.pdf",
    log:
        "logs/figure1/{dataset}.log",
    benchmark:
        "results/benchmarks/figure1/{dataset}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        labels=lambda wc: ["clean", *attacks_of(wc.dataset)],
        samples=config["figure1"]["samples"],
        vmin=config["figure1"]["vmin"],
        vmax=config["figure1"]["vmax"],
        seed=config["seed"],
    script:
        "../workflow/scripts/figure1.py"
