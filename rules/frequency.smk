# The frequency figures and the high-frequency energy table, from the DCT of every test set
# (written by prepared_dataset and poisoned_test_set).


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


rule figure2:
    input:
        x_test="results/data/{dataset}/x_test.npy",
        triggers=lambda wc: expand(
            "results/triggers/{{dataset}}/{attack}.npz", attack=attacks_of(wc.dataset)
        ),
    output:
        png=report(
            "results/figures/figure2/{dataset}.png",
            caption="../report/figure2.rst",
            category="Figure 2",
        ),
        pdf="results/figures/figure2/{dataset}.pdf",
    log:
        "logs/figure2/{dataset}.log",
    benchmark:
        "results/benchmarks/figure2/{dataset}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        labels=lambda wc: attacks_of(wc.dataset),
        index=config["figures"]["example_index"],
    script:
        "../workflow/scripts/figure2.py"


rule figure5:
    input:
        x_test="results/data/{dataset}/x_test.npy",
    output:
        png=report(
            "results/figures/figure5/{dataset}.png",
            caption="../report/figure5.rst",
            category="Figure 5",
        ),
        pdf="results/figures/figure5/{dataset}.pdf",
    log:
        "logs/figure5/{dataset}.log",
    benchmark:
        "results/benchmarks/figure5/{dataset}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        manipulations=config["manipulations"],
        seed=config["seed"],
        index=config["figures"]["example_index"],
    script:
        "../workflow/scripts/figure5.py"


rule pairs_figure:
    input:
        unpack(pairs_inputs),
    output:
        png=report(
            "results/figures/pairs/{dataset}.png",
            caption="../report/pairs.rst",
            category="Figures 7-10",
        ),
        pdf="results/figures/pairs/{dataset}.pdf",
    log:
        "logs/pairs_figure/{dataset}.log",
    benchmark:
        "results/benchmarks/pairs_figure/{dataset}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        labels=lambda wc: attacks_of(wc.dataset),
        samples=config["figures"]["pairs_samples"],
        seed=config["seed"],
        index=config["figures"]["example_index"],
    script:
        "../workflow/scripts/pairs_figure.py"


rule highfreq_table:
    input:
        clean=[f"results/dct/{d}/clean.npy" for d, _ in highfreq_pairs()],
        triggered=[f"results/dct/{d}/{a}.npy" for d, a in highfreq_pairs()],
    output:
        csv="results/tables/highfreq_ratio.csv",
        md=report(
            "results/tables/highfreq_ratio.md",
            caption="../report/highfreq.rst",
            category="Tables",
        ),
    log:
        "logs/highfreq_table.log",
    benchmark:
        "results/benchmarks/highfreq_table.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        pairs=highfreq_pairs(),
        cutoff=config["highfreq"]["cutoff"],
        n_boot=config["highfreq"]["bootstrap"],
        seed=config["seed"],
        samples=config["highfreq"]["samples"],
    script:
        "../workflow/scripts/highfreq_table.py"
