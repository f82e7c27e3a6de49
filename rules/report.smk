# The paper-vs-reproduced report: every comparison file in one table.


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
        mem_mb=1000,
        runtime=5,
    params:
        tolerance=config["detection"]["tolerance"],
    script:
        "../workflow/scripts/paper_vs_reproduced.py"
