# Section 5 and Appendices F-G: the smooth trigger (Algorithm 1, built by the `trigger` rule),
# models poisoned with it and with the naive and classic triggers, the detector before and after
# the smooth-trigger upgrade, Figures 3/11, 4 and the per-epoch poisoning figure, the Section-5 table.


rule poisoned_model:
    input:
        unpack(poisoned_model_inputs),
    output:
        model="results/poisoned_models/{dataset}/{attack}.pt",
        meta="results/poisoned_models/{dataset}/{attack}.json",
        history="results/poisoned_models/{dataset}/{attack}_history.csv",
        predictions="results/poisoned_models/{dataset}/{attack}_predictions.npz",
    log:
        "logs/poisoned_model/{dataset}/{attack}.log",
    benchmark:
        "results/benchmarks/poisoned_model/{dataset}/{attack}.tsv"
    priority: 1
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=gpu_count(),
    params:
        settings=lambda wc: resolve.poisoned_model(config, wc.dataset),
        share=lambda wc: resolve.smooth_spec(config, wc.dataset)["poison_share"],
        filtered=False,
        device=config["device"],
    script:
        "../workflow/scripts/poisoned_model.py"


rule filtered_poisoned_model:
    input:
        unpack(poisoned_model_inputs),
        detector="results/smooth/{dataset}/detector_smooth.pt",
        detector_meta="results/smooth/{dataset}/detector_smooth.json",
    output:
        model="results/poisoned_models/{dataset}/filtered/{attack}.pt",
        meta="results/poisoned_models/{dataset}/filtered/{attack}.json",
        history="results/poisoned_models/{dataset}/filtered/{attack}_history.csv",
        predictions="results/poisoned_models/{dataset}/filtered/{attack}_predictions.npz",
    log:
        "logs/filtered_poisoned_model/{dataset}/{attack}.log",
    benchmark:
        "results/benchmarks/filtered_poisoned_model/{dataset}/{attack}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=gpu_count(),
    params:
        settings=lambda wc: resolve.poisoned_model(config, wc.dataset),
        share=lambda wc: resolve.smooth_spec(config, wc.dataset)["poison_share"],
        filtered=True,
        threshold=config["detection"]["threshold"],
        target_fpr=config["detection"]["target_fpr"],
        device=config["device"],
    script:
        "../workflow/scripts/poisoned_model.py"


rule upgraded_detector:
    input:
        model=lambda wc: f"{section4_detector(wc.dataset)}.pt",
        meta=lambda wc: f"{section4_detector(wc.dataset)}.json",
        x_train="results/data/{dataset}/x_train.npy",
        trigger="results/triggers/{dataset}/{attack}.npz",
    output:
        model="results/smooth/{dataset}/detector_{attack}.pt",
        meta="results/smooth/{dataset}/detector_{attack}.json",
    log:
        "logs/upgraded_detector/{dataset}/{attack}.log",
    benchmark:
        "results/benchmarks/upgraded_detector/{dataset}/{attack}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=8000,
        runtime=120,
        gpu=gpu_count(),
    params:
        samples=lambda wc: resolve.smooth_spec(config, wc.dataset)["upgrade_samples"],
        fine_tune=lambda wc: resolve.smooth_upgrade(config, wc.dataset),
        target_fpr=config["detection"]["target_fpr"],
        seed=config["seed"],
        device=config["device"],
    script:
        "../workflow/scripts/upgraded_detector.py"


rule smooth_detection:
    input:
        unpack(smooth_detection_inputs),
    output:
        metrics="results/smooth/{dataset}/detection.csv",
        scores="results/smooth/{dataset}/scores.npz",
        distances="results/smooth/{dataset}/figure4_distances.csv",
        projection="results/smooth/{dataset}/figure4_projection.csv",
    log:
        "logs/smooth_detection/{dataset}.log",
    benchmark:
        "results/benchmarks/smooth_detection/{dataset}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
        gpu=gpu_count(),
    params:
        evaluated=lambda wc: poisoned_triggers(wc.dataset),
        filtered=lambda wc: filtered_triggers(wc.dataset),
        tuned_on=lambda wc: upgrade_triggers(wc.dataset),
        threshold=config["detection"]["threshold"],
        target_fpr=config["detection"]["target_fpr"],
        figure4_samples=lambda wc: resolve.smooth_spec(config, wc.dataset)[
            "figure4_samples"
        ],
        bootstrap=config["detection"]["bootstrap"],
        seed=config["seed"],
        device=config["device"],
    script:
        "../workflow/scripts/smooth_detection.py"


rule section5_table:
    input:
        unpack(section5_inputs),
    output:
        csv="results/tables/section5.csv",
        md=report(
            "results/tables/section5.md",
            caption="../report/section5.rst",
            category="Tables",
        ),
        vs_csv="results/tables/section5_vs_paper.csv",
        vs_md="results/tables/section5_vs_paper.md",
        models_csv="results/tables/poisoned_models.csv",
        models_md=report(
            "results/tables/poisoned_models.md",
            caption="../report/poisoned_models.rst",
            category="Tables",
        ),
    log:
        "logs/section5_table.log",
    benchmark:
        "results/benchmarks/section5_table.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        datasets=smooth_datasets(),
        triggers={d: poisoned_triggers(d) for d in smooth_datasets()},
        naive={d: naive_triggers(d) for d in smooth_datasets()},
        specs={d: resolve.smooth_spec(config, d) for d in smooth_datasets()},
        paper_names=paper_names(),
        paper_numbers="config/paper_numbers.yaml",
        highfreq=config["highfreq"],
        tolerance=config["detection"]["tolerance"],
        seed=config["seed"],
    script:
        "../workflow/scripts/section5_table.py"


rule figure3:
    input:
        unpack(figure3_inputs),
    output:
        png=report(
            "results/figures/figure3/{dataset}.png",
            caption="../report/figure3.rst",
            category="Section 5",
        ),
        pdf="results/figures/figure3/{dataset}.pdf",
    log:
        "logs/figure3/{dataset}.log",
    benchmark:
        "results/benchmarks/figure3/{dataset}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        example_index=config["figures"]["example_index"],
        samples=config["figure1"]["samples"],
        vmin=config["figure1"]["vmin"],
        vmax=config["figure1"]["vmax"],
        seed=config["seed"],
    script:
        "../workflow/scripts/figure3.py"


rule figure4:
    input:
        distances="results/smooth/{dataset}/figure4_distances.csv",
        projection="results/smooth/{dataset}/figure4_projection.csv",
    output:
        png=report(
            "results/figures/figure4/{dataset}.png",
            caption="../report/figure4.rst",
            category="Section 5",
        ),
        pdf="results/figures/figure4/{dataset}.pdf",
    log:
        "logs/figure4/{dataset}.log",
    benchmark:
        "results/benchmarks/figure4/{dataset}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../workflow/scripts/figure4.py"


rule poisoning_figure:
    input:
        histories=lambda wc: [
            f"results/poisoned_models/{wc.dataset}/{a}_history.csv"
            for a in poisoned_triggers(wc.dataset)
        ],
        reference="results/models/{dataset}/reference_cnn.json",
    output:
        png=report(
            "results/figures/poisoning/{dataset}.png",
            caption="../report/poisoning.rst",
            category="Section 5",
        ),
        pdf="results/figures/poisoning/{dataset}.pdf",
    log:
        "logs/poisoning_figure/{dataset}.log",
    benchmark:
        "results/benchmarks/poisoning_figure/{dataset}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        triggers=lambda wc: poisoned_triggers(wc.dataset),
    script:
        "../workflow/scripts/poisoning_figure.py"


rule smooth_highfreq_table:
    input:
        x_test=[f"results/data/{d}/x_test.npy" for d in official_smooth_datasets()],
        triggers=[
            f"results/triggers/{d}/smooth.npz" for d in official_smooth_datasets()
        ],
    output:
        csv="results/tables/smooth_highfreq.csv",
        md=report(
            "results/tables/smooth_highfreq.md",
            caption="../report/smooth_highfreq.rst",
            category="Tables",
        ),
    log:
        "logs/smooth_highfreq_table.log",
    benchmark:
        "results/benchmarks/smooth_highfreq_table.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        datasets=official_smooth_datasets(),
        paper_names=[
            config["datasets"][d].get("paper_name") for d in official_smooth_datasets()
        ],
        official_dir=f"{RAW}/official_triggers",
        cutoff=config["highfreq"]["cutoff"],
        n_boot=config["highfreq"]["bootstrap"],
        samples=config["highfreq"]["samples"],
        seed=config["seed"],
    script:
        "../workflow/scripts/smooth_highfreq_table.py"
