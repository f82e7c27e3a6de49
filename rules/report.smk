# The paper-vs-reproduced report: every comparison file in one table; the claims report.
from freqbackdoor.paper.claims import CONFIG_KEYS as CLAIMS_CONFIG_KEYS


rule paper_vs_reproduced:
    input:
        comparison_files(),
    output:
        csv="results/report/paper_vs_reproduced.csv",
        md=report(
            "results/report/paper_vs_reproduced.md",
            caption="../report/paper_vs_reproduced.rst",
            category="Paper vs. reproduced",
        ),
    log:
        "logs/paper_vs_reproduced.log",
    benchmark:
        "results/benchmarks/paper_vs_reproduced.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    params:
        tolerance=config["detection"]["tolerance"],
    script:
        "../workflow/scripts/paper_vs_reproduced.py"


# The paper's qualitative claims, each judged on this run's data.


rule claims:
    input:
        claims_inputs,
    output:
        csv="results/report/claims.csv",
        md=report(
            "results/report/claims.md",
            caption="../report/claims.rst",
            category="1. Claims",
        ),
    log:
        "logs/claims.log",
    benchmark:
        "results/benchmarks/claims.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    params:
        config={key: config.get(key) for key in CLAIMS_CONFIG_KEYS},
    script:
        "../workflow/scripts/claims.py"
