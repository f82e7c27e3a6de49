# Triggers (one file per dataset and attack, with a PNG preview) and the poisoned test sets.


rule trigger:
    input:
        x_test="results/data/{dataset}/x_test.npy",
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
        mem_mb=1000,
        runtime=10,
    params:
        options=lambda wc: trigger_options(wc.attack),
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
    log:
        "logs/poisoned_test_set/{dataset}/{attack}.log",
    benchmark:
        "results/benchmarks/poisoned_test_set/{dataset}/{attack}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    script:
        "../workflow/scripts/poisoned_test_set.py"
