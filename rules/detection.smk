# The Section 4 detector: training on random manipulations, scores on every attack's test set,
# Tables 1, 5, 6, 7, Figure 6 and ROC curves.


rule detector:
    input:
        x_train="results/data/{dataset}/x_train.npy",
    output:
        model="results/detectors/{dataset}/{architecture}_{domain}.pt",
        meta="results/detectors/{dataset}/{architecture}_{domain}.json",
    log:
        "logs/detector/{dataset}/{architecture}_{domain}.log",
    benchmark:
        "results/benchmarks/detector/{dataset}/{architecture}_{domain}.tsv"
    priority: 2
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=gpu_count(),
    params:
        name=lambda wc: wc.dataset,
        domain=lambda wc: wc.domain,
        settings=lambda wc: resolve.detector(config, wc.dataset, wc.architecture),
        manipulations=config["manipulations"],
        target_fpr=config["detection"]["target_fpr"],
        device=config["device"],
    script:
        "../workflow/scripts/detector.py"


rule detection_scores:
    input:
        unpack(detection_test_inputs),
        model="results/detectors/{dataset}/{architecture}_{domain}.pt",
        meta="results/detectors/{dataset}/{architecture}_{domain}.json",
    output:
        scores="results/detection/{dataset}/{architecture}_{domain}/scores.npz",
        metrics="results/detection/{dataset}/{architecture}_{domain}/metrics.csv",
        roc="results/detection/{dataset}/{architecture}_{domain}/roc.csv",
    log:
        "logs/detection_scores/{dataset}/{architecture}_{domain}.log",
    benchmark:
        "results/benchmarks/detection_scores/{dataset}/{architecture}_{domain}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=8000,
        runtime=20,
        gpu=gpu_count(),
    params:
        attacks=lambda wc: attacks_of(wc.dataset),
        label=lambda wc: wc.architecture,
        domain=lambda wc: wc.domain,
        expect=detector_expect,
        threshold=config["detection"]["threshold"],
        target_fpr=config["detection"]["target_fpr"],
        bootstrap=config["detection"]["bootstrap"],
        seed=config["seed"],
        device=config["device"],
    script:
        "../workflow/scripts/detection_scores.py"


rule table1:
    input:
        unpack(table1_inputs),
    output:
        csv="results/tables/table1.csv",
        md=report(
            "results/tables/table1.md",
            caption="../report/table1.rst",
            category="Tables",
        ),
        vs_csv="results/tables/table1_vs_paper.csv",
        vs_md="results/tables/table1_vs_paper.md",
    log:
        "logs/table1.log",
    benchmark:
        "results/benchmarks/table1.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    params:
        datasets=config["detection"]["datasets"],
        domains=DOMAINS,
        paper_names=paper_names(),
        paper_numbers="config/paper_numbers.yaml",
        tolerance=config["detection"]["tolerance"],
        target_fpr=config["detection"]["target_fpr"],
        authors=lambda wc: authors_table1_detector(),
    script:
        "../workflow/scripts/table1.py"


rule table5:
    input:
        unpack(table5_inputs),
    output:
        csv="results/tables/table5.csv",
        md=report(
            "results/tables/table5.md",
            caption="../report/table5.rst",
            category="Tables",
        ),
        vs_csv="results/tables/table5_vs_paper.csv",
        vs_md="results/tables/table5_vs_paper.md",
    log:
        "logs/table5.log",
    benchmark:
        "results/benchmarks/table5.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    params:
        dataset=config["table5"]["dataset"],
        architectures=config["table5"]["architectures"],
        paper_names=paper_names(),
        paper_numbers="config/paper_numbers.yaml",
        tolerance=config["detection"]["tolerance"],
    script:
        "../workflow/scripts/table5.py"


rule detector_tables:
    output:
        table6="results/tables/table6.csv",
        table6_md=report(
            "results/tables/table6.md",
            caption="../report/table6.rst",
            category="Tables",
        ),
        table7="results/tables/table7.csv",
        table7_md=report(
            "results/tables/table7.md",
            caption="../report/table7.rst",
            category="Tables",
        ),
        vs6_csv="results/tables/table6_vs_paper.csv",
        vs6_md="results/tables/table6_vs_paper.md",
        vs7_csv="results/tables/table7_vs_paper.csv",
        vs7_md="results/tables/table7_vs_paper.md",
    log:
        "logs/detector_tables.log",
    benchmark:
        "results/benchmarks/detector_tables.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    script:
        "../workflow/scripts/detector_tables.py"


rule roc_figure:
    input:
        scores=expand(
            "results/detection/{{dataset}}/{{architecture}}_{domain}/scores.npz",
            domain=DOMAINS,
        ),
    output:
        png=report(
            "results/figures/roc/{dataset}_{architecture}.png",
            caption="../report/roc.rst",
            category="Detection",
        ),
        pdf="results/figures/roc/{dataset}_{architecture}.pdf",
    log:
        "logs/roc_figure/{dataset}_{architecture}.log",
    benchmark:
        "results/benchmarks/roc_figure/{dataset}_{architecture}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    params:
        domains=DOMAINS,
    script:
        "../workflow/scripts/roc_figure.py"


rule width_detector:
    input:
        x_train=lambda wc: f"results/data/{config['figure6']['dataset']}/x_train.npy",
        x_test=lambda wc: f"results/data/{config['figure6']['dataset']}/x_test.npy",
    output:
        metrics="results/detection/figure6/width_{width}.csv",
    log:
        "logs/width_detector/{width}.log",
    benchmark:
        "results/benchmarks/width_detector/{width}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=8000,
        runtime=120,
        gpu=gpu_count(),
    params:
        settings=lambda wc: resolve.detector(config, config["figure6"]["dataset"]),
        attacks=config["figure6"]["attacks"],
        trigger_options=lambda wc: {
            a: resolve.trigger_options(config, a) for a in config["figure6"]["attacks"]
        },
        manipulations=config["manipulations"],
        threshold=config["detection"]["threshold"],
        bootstrap=config["detection"]["bootstrap"],
        seed=config["seed"],
        device=config["device"],
    script:
        "../workflow/scripts/width_detector.py"


rule figure6:
    input:
        expand(
            "results/detection/figure6/width_{width}.csv",
            width=config["figure6"]["widths"],
        ),
    output:
        png=report(
            "results/figures/figure6.png",
            caption="../report/figure6.rst",
            category="Detection",
        ),
        pdf="results/figures/figure6.pdf",
        csv="results/tables/figure6.csv",
        vs_csv="results/tables/figure6_vs_paper.csv",
        vs_md="results/tables/figure6_vs_paper.md",
    log:
        "logs/figure6.log",
    benchmark:
        "results/benchmarks/figure6.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    params:
        paper_numbers="config/paper_numbers.yaml",
    script:
        "../workflow/scripts/figure6.py"
