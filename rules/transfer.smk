# Section 4.3: detectors judged on another dataset, raw and fine-tuned; Tables 2-4 and the
# fine-tuning budget figure.


rule combined_detector:
    input:
        x_train=lambda wc: [
            f"results/data/{d}/x_train.npy" for d in wc.source.split("+")
        ],
    output:
        model="results/detectors/{source}/{architecture}_dct.pt",
        meta="results/detectors/{source}/{architecture}_dct.json",
    log:
        "logs/combined_detector/{source}/{architecture}.log",
    benchmark:
        "results/benchmarks/combined_detector/{source}/{architecture}.tsv"
    wildcard_constraints:
        source=COMBINED_SOURCE,
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=gpu_count(),
    params:
        name=lambda wc: wc.source,
        domain="dct",
        settings=lambda wc: resolve.transfer_detector(config, wc.source),
        manipulations=config["manipulations"],
        target_fpr=config["detection"]["target_fpr"],
        device=config["device"],
    script:
        "../workflow/scripts/detector.py"


rule transfer_raw:
    input:
        unpack(transfer_inputs),
    output:
        metrics="results/transfer/{target}/{source}/raw_b{budget}_r{repeat}/metrics.csv",
        scores="results/transfer/{target}/{source}/raw_b{budget}_r{repeat}/scores.npz",
        split="results/transfer/{target}/{source}/raw_b{budget}_r{repeat}/split.json",
    log:
        "logs/transfer_raw/{target}/{source}/b{budget}_r{repeat}.log",
    benchmark:
        "results/benchmarks/transfer_raw/{target}/{source}/b{budget}_r{repeat}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
        gpu=gpu_count(),
    params:
        stage="raw",
        attacks=lambda wc: attacks_of(wc.target),
        threshold=config["transfer"]["threshold"],
        fine_tune=lambda wc: resolve.transfer_fine_tune(config, int(wc.repeat)),
        manipulations=config["manipulations"],
        bootstrap=config["detection"]["bootstrap"],
        seed=config["seed"],
        device=config["device"],
    script:
        "../workflow/scripts/transfer.py"


rule transfer_tuned:
    input:
        unpack(transfer_inputs),
    output:
        metrics="results/transfer/{target}/{source}/tuned_b{budget}_r{repeat}/metrics.csv",
        scores="results/transfer/{target}/{source}/tuned_b{budget}_r{repeat}/scores.npz",
        split="results/transfer/{target}/{source}/tuned_b{budget}_r{repeat}/split.json",
        model="results/transfer/{target}/{source}/tuned_b{budget}_r{repeat}/detector.pt",
        meta="results/transfer/{target}/{source}/tuned_b{budget}_r{repeat}/detector.json",
    log:
        "logs/transfer_tuned/{target}/{source}/b{budget}_r{repeat}.log",
    benchmark:
        "results/benchmarks/transfer_tuned/{target}/{source}/b{budget}_r{repeat}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=15,
        gpu=gpu_count(),
    params:
        stage="tuned",
        attacks=lambda wc: attacks_of(wc.target),
        threshold=config["transfer"]["threshold"],
        fine_tune=lambda wc: resolve.transfer_fine_tune(config, int(wc.repeat)),
        manipulations=config["manipulations"],
        bootstrap=config["detection"]["bootstrap"],
        seed=config["seed"],
        device=config["device"],
    script:
        "../workflow/scripts/transfer.py"


rule transfer_table:
    input:
        lambda wc: transfer_table_inputs(wc.table),
    output:
        csv="results/tables/{table}.csv",
        md=report(
            "results/tables/{table}.md",
            caption="../report/transfer_table.rst",
            category="Tables",
        ),
        vs_csv="results/tables/{table}_vs_paper.csv",
        vs_md="results/tables/{table}_vs_paper.md",
    log:
        "logs/transfer_table/{table}.log",
    benchmark:
        "results/benchmarks/transfer_table/{table}.tsv"
    wildcard_constraints:
        table="table2|table3|table4",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    params:
        spec=lambda wc: config["transfer"]["tables"][wc.table],
        columns=lambda wc: transfer_columns(wc.table),
        target_paper_name=lambda wc: paper_names()[
            config["transfer"]["tables"][wc.table]["target"]
        ],
        paper_numbers="config/paper_numbers.yaml",
        tolerance=config["detection"]["tolerance"],
    script:
        "../workflow/scripts/transfer_table.py"


rule budget_figure:
    input:
        unpack(budget_figure_inputs),
    output:
        png=report(
            "results/figures/transfer_budget.png",
            caption="../report/transfer_budget.rst",
            category="Detection",
        ),
        pdf="results/figures/transfer_budget.pdf",
        csv="results/tables/transfer_budget.csv",
    log:
        "logs/budget_figure.log",
    benchmark:
        "results/benchmarks/budget_figure.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    params:
        spec=config["transfer"]["budget_figure"],
        paper_budget=config["transfer"]["budget"],
    script:
        "../workflow/scripts/budget_figure.py"
