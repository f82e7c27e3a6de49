# DCT cache of every evaluation set and the frequency figures.


rule dct_cache:
    input:
        images=test_images,
    output:
        dct="results/dct/{dataset}/{variant}.npy",
        meta="results/dct/{dataset}/{variant}.json",
    params:
        device=config["device"],
        chunk_size=config["dct"]["chunk_size"],
    log:
        "logs/dct_cache/{dataset}/{variant}.log",
    benchmark:
        "results/benchmarks/dct_cache/{dataset}/{variant}.tsv"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=30,
        gpu=gpu_count(),
    conda:
        ENV
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
    params:
        labels=lambda wc: ["clean", *attacks_of(wc.dataset)],
        samples=config["figure1"]["samples"],
        vmin=config["figure1"]["vmin"],
        vmax=config["figure1"]["vmax"],
        seed=config["seed"],
    log:
        "logs/figure1/{dataset}.log",
    benchmark:
        "results/benchmarks/figure1/{dataset}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    conda:
        ENV
    script:
        "../workflow/scripts/figure1.py"
