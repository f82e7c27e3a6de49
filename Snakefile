# frequency-backdoor: regenerates the tables and figures of "Rethinking the Backdoor Attacks'
# Triggers: A Frequency Perspective" (Zeng et al., ICCV 2021). See README.md.
from pathlib import Path

from snakemake.utils import min_version, validate

min_version("9.0")


# The demo config is the default; `--configfile config/paper.yaml` replaces it (not merged into
# it). `--config key=value` (or a profile's `config:`) overrides either, e.g. `device=cuda`.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


# a bad key or value: one line naming it (Snakemake's validate would print the whole schema)
from freqbackdoor.config.references import check_schema

check_schema(config, Path(workflow.basedir) / "config" / "schema.yaml")
validate(config, "config/schema.yaml")


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/helpers/triggers.smk"
include: "rules/helpers/frequency.smk"
include: "rules/helpers/detection.smk"
include: "rules/helpers/transfer.smk"
include: "rules/helpers/smooth.smk"
include: "rules/helpers/mna.smk"
include: "rules/helpers/report.smk"
include: "rules/helpers/authors.smk"


wildcard_constraints:
    dataset="|".join(DATASETS),
    attack="[a-z0-9_]+",
    variant="[a-z0-9_]+",
    architecture="|".join(DETECTORS),
    domain="dct|pixel",
    width="[0-9]+",
    target="|".join(DATASETS),
    source=r"[A-Za-z0-9_]+(\+[A-Za-z0-9_]+)*",
    budget="[0-9]+",
    repeat="[0-9]+",
    kind="[a-z0-9_]+",
    group="[0-9]+",


include: "rules/data.smk"
include: "rules/authors.smk"
include: "rules/triggers.smk"
include: "rules/frequency.smk"
include: "rules/detection.smk"
include: "rules/transfer.smk"
include: "rules/smooth.smk"
include: "rules/mna.smk"
include: "rules/report.smk"


# Downloads run where Snakemake runs: on a cluster that is the login node, which has the network
# compute nodes often lack.
localrules:
    raw_dataset,
    authors_model,


rule all:
    default_target: True
    input:
        all_outputs(),
        "results/report/paper_vs_reproduced.md",
        "results/report/claims.md",


onsuccess:
    # where this run's numbers came from (commit, time, versions): apart from the results
    from freqbackdoor.provenance import write_provenance

    write_provenance(
        "results/report/provenance.json",
        workflow.basedir,
        [str(file) for file in workflow.configfiles],
    )
    # the claims' verdicts, when this run (or an earlier one) wrote them
    if Path("results/report/claims.csv").exists():
        from freqbackdoor.paper.claims import claims_summary, load_claims

        print(claims_summary(load_claims("results/report/claims.csv")))
