# frequency-backdoor: regenerates the tables and figures of "Rethinking the Backdoor Attacks'
# Triggers: A Frequency Perspective" (Zeng et al., ICCV 2021). See README.md.
from snakemake.utils import min_version, validate


min_version("9.0")


configfile: "config/config.yaml"


validate(config, "config/schema.yaml")


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/triggers.smk"
include: "rules/frequency.smk"


rule all:
    default_target: True
    input:
        all_outputs(),
