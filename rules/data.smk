# Dataset download (inside a job, never at DAG-build time) and preparation to uint8 arrays,
# with the DCT of the clean test images (results/dct/{dataset}/clean.npy).


rule raw_dataset:
    output:
        directory(f"{RAW}/{{dataset}}"),
    log:
        "logs/raw_dataset/{dataset}.log",
    benchmark:
        "results/benchmarks/raw_dataset/{dataset}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=120,
    params:
        spec=lambda wc: resolve.dataset_spec(config, wc.dataset),
    script:
        "../workflow/scripts/raw_dataset.py"


rule prepared_dataset:
    input:
        f"{RAW}/{{dataset}}",
    output:
        x_train="results/data/{dataset}/x_train.npy",
        y_train="results/data/{dataset}/y_train.npy",
        x_test="results/data/{dataset}/x_test.npy",
        y_test="results/data/{dataset}/y_test.npy",
        meta="results/data/{dataset}/meta.json",
        dct="results/dct/{dataset}/clean.npy",
        dct_meta="results/dct/{dataset}/clean.json",
    log:
        "logs/prepared_dataset/{dataset}.log",
    benchmark:
        "results/benchmarks/prepared_dataset/{dataset}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        spec=lambda wc: resolve.dataset_spec(config, wc.dataset),
        seed=config["seed"],
        # an imagefolder's files (added, removed, edited) rebuild the dataset when they change
        source_state=lambda wc: source_fingerprint(
            wc.dataset, resolve.dataset_spec(config, wc.dataset)
        ),
        device="cpu",  # a DCT of the test set takes seconds on a CPU: no GPU slot for it
        chunk_size=config["dct"]["chunk_size"],
    script:
        "../workflow/scripts/prepared_dataset.py"
