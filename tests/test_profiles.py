"""The paper-scale DAG, dry-run offline with the workstation and the Slurm profiles.

Listing the paper's DAG needs no network (downloads happen inside jobs), so these tests check
on any machine that every artifact of the paper is a target, that the Slurm profile sends
GPU-capable jobs to GPUs and the rest to CPUs, that every profile option is one the installed
Snakemake and Slurm plugin accept, and that its groups submit far fewer jobs, each of a size a
scheduler takes. tests/test_slurm.py runs the profile on a real Slurm cluster.
"""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PAPER = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
GPU_RULES = {
    "reference_classifier",
    "detector",
    "detection_scores",
    "poisoned_model",
    "mna_shadow_models",
}
CPU_RULES = {"table1", "figure1", "section5_table", "paper_vs_reproduced"}
SLURM_PROFILE = ROOT / "profiles" / "slurm" / "config.yaml"
# never submitted: raw_dataset is a local rule (downloads on the login node), `all` has no action
NOT_SUBMITTED = {"raw_dataset", "all"}
# long trainings: one sbatch job each, never in a group
LONG_RULES = {"reference_classifier", "detector", "width_detector", "poisoned_model", "mna_shadow_models"}  # fmt: skip
# Snakemake with each group job's resources printed as Slurm gets them (GroupJob.resources is
# computed as for a local run during a dry run, which adds up the layers instead of taking the
# largest): the plain dry-run listing plus one "GROUP <id> <json>" line per group job.
WITH_GROUP_RESOURCES = """
import json, sys
import snakemake.jobs
from snakemake.cli import main
from snakemake.resources import GroupResources

log_info = snakemake.jobs.GroupJob.log_info


def log_with_resources(self):
    resources = GroupResources.basic_layered(
        self.toposorted, self.global_resources, run_local=False,
        additive_resources=["runtime"], sortby=["runtime"],
    )
    print("GROUP", self.groupid, json.dumps({k: v for k, v in resources.items() if isinstance(v, (int, str))}))
    log_info(self)


snakemake.jobs.GroupJob.log_info = log_with_resources
sys.argv[0] = "snakemake"
main()
"""


def paper_artifacts(config: dict) -> list[str]:
    """Each table and figure of the paper (and the report), as the workflow names them."""
    tables = [f"table{n}" for n in range(1, 9)] + ["section5", "mna", "highfreq_ratio"]
    artifacts = [f"results/tables/{t}.md" for t in tables]
    artifacts += [
        f"results/tables/{t}_vs_paper.md" for t in tables if t not in ("table8", "highfreq_ratio")
    ]
    artifacts += ["results/figures/figure6.png", "results/report/paper_vs_reproduced.md"]
    for dataset in config["datasets"]:
        # Figures 1, 2, 5, and 7-10 (the pair-to-pair comparisons)
        artifacts += [
            f"results/figures/{f}/{dataset}.png" for f in ("figure1", "figure2", "figure5", "pairs")
        ]
    for dataset in config["smooth"]["datasets"]:
        # Figure 3 (CIFAR-10) and Figure 11 (GTSRB): the smooth trigger; Figure 4: its distances
        artifacts += [f"results/figures/{f}/{dataset}.png" for f in ("figure3", "figure4")]
    return artifacts


def _dry_run(tmp_path: Path, *args: str, snakemake: tuple[str, ...] = ("-m", "snakemake")) -> str:
    for name in ("Snakefile", "rules", "workflow", "report", "profiles", "config"):
        source = ROOT / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, tmp_path / name)
    shutil.copy(ROOT / "environment.yml", tmp_path / "environment.yml")
    command = [sys.executable, *snakemake, "-n", "--configfile", "config/paper.yaml", *args]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-4000:]
    assert not (tmp_path / "results").exists()
    return result.stdout


def _resources_by_rule(listing: str) -> dict[str, str]:
    """The first job of each rule in a dry-run listing (alone or in a group job), mapped to its
    resources line."""
    resources, rule = {}, None
    for line in listing.splitlines():
        if match := re.match(r"^\s*(?:local)?rule (\w+):", line):
            rule = match.group(1)
        elif rule and line.strip().startswith("resources:"):
            resources.setdefault(rule, line.strip())
    return resources


def _requests_gpu(resources_line: str) -> bool:
    return re.search(r"\bgpu=([1-9]\d*)\b", resources_line) is not None


def test_paper_dag_has_every_paper_artifact_with_the_workstation_profile(tmp_path):
    listing = _dry_run(tmp_path, "--profile", "profiles/default", "--config", "device=cpu")
    missing = [a for a in paper_artifacts(PAPER) if a not in listing]
    assert not missing, missing
    for dataset in ("cifar10", "gtsrb", "pubfig", "tsrd"):
        assert f"resources/raw/{dataset}" in listing
    assert not any(_requests_gpu(r) for r in _resources_by_rule(listing).values())


@pytest.fixture(scope="module")
def slurm_listing(tmp_path_factory):
    """The paper DAG dry-run with the Slurm profile, each group job's resources added."""
    pytest.importorskip("snakemake_executor_plugin_slurm")
    return _dry_run(
        tmp_path_factory.mktemp("slurm"),
        "--profile",
        "profiles/slurm",
        "--workflow-profile",
        "none",
        snakemake=("-c", WITH_GROUP_RESOURCES),
    )


def test_slurm_profile_sends_gpu_rules_to_gpus_and_cpu_rules_to_cpus(slurm_listing):
    listing = slurm_listing
    missing = [a for a in paper_artifacts(PAPER) if a not in listing]
    assert not missing, missing
    resources = _resources_by_rule(listing)
    for rule in GPU_RULES:
        assert _requests_gpu(resources[rule]), resources[rule]
        assert "slurm_partition=YOUR_GPU_PARTITION" in resources[rule]
    for rule in CPU_RULES:
        assert not _requests_gpu(resources[rule]), resources[rule]
        assert "slurm_partition=YOUR_CPU_PARTITION" in resources[rule]
    # a poisoned test set shares its trigger's group job (one partition per job), without a GPU
    assert not _requests_gpu(resources["poisoned_test_set"])
    assert "slurm_partition=YOUR_GPU_PARTITION" in resources["poisoned_test_set"]
    assert all("slurm_account=YOUR_ACCOUNT" in line for line in resources.values())
    # any GPU rule, including one added later, needs the GPU partition in set-resources
    on_cpus = [r for r, line in resources.items() if _requests_gpu(line) and "YOUR_GPU" not in line]
    assert not on_cpus, f"GPU rules without the GPU partition in profiles/slurm: {on_cpus}"


def test_every_slurm_profile_option_is_one_the_installed_snakemake_and_plugin_take():
    """A profile key the installed versions do not know (one the plugin renamed, say) is an
    error only on the login node; here it fails a test."""
    plugin = pytest.importorskip("snakemake_executor_plugin_slurm")
    import dataclasses

    profile = yaml.safe_load(SLURM_PROFILE.read_text())
    helptext = subprocess.run(
        [sys.executable, "-m", "snakemake", "--help"], capture_output=True, text=True, check=True
    ).stdout
    options = set(re.findall(r"(?<![\w-])--([a-z][a-z0-9-]*)", helptext))
    unknown = [key for key in profile if key not in options]
    assert not unknown, f"not options of this Snakemake and its plugins: {unknown}"
    plugin_options = {
        "slurm-" + f.name.replace("_", "-") for f in dataclasses.fields(plugin.ExecutorSettings)
    }
    slurm_keys = {key for key in profile if key.startswith("slurm-")}
    assert slurm_keys and slurm_keys <= plugin_options, slurm_keys - plugin_options
    assert profile["slurm-status-command"] in ("sacct", "squeue")
    assert profile["executor"] == "slurm"
    # every rule the profile names exists (a renamed rule would silently lose its settings)
    rules = set(
        subprocess.run(
            [sys.executable, "-m", "snakemake", "--list-rules"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
    )
    named = set(profile["set-resources"]) | {g.split("=")[0] for g in profile["groups"]}
    assert named <= rules, named - rules
    groups = {g.split("=")[1] for g in profile["groups"]}
    assert {c.split("=")[0] for c in profile["group-components"]} <= groups


def _job_stats(listing: str) -> dict[str, int]:
    table = listing[listing.index("Job stats:") :].split("\n\n")[0]
    return {rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)$", table, re.M)}


def test_paper_dag_submits_far_fewer_slurm_jobs_than_it_has_jobs(slurm_listing):
    """Grouping in the profile: a group job is one sbatch submission. Measured 2026-12-04 on
    the paper DAG: 309 submissions ungrouped, 184 grouped."""
    stats = _job_stats(slurm_listing)
    instances = stats.pop("total") - sum(stats.get(rule, 0) for rule in NOT_SUBMITTED)
    alone = re.findall(r"^rule (\w+):", slurm_listing, re.M)
    groups = re.findall(r"Group job (\w+) \(", slurm_listing)
    submissions = len([r for r in alone if r not in NOT_SUBMITTED]) + len(groups)
    print(f"paper DAG: {instances} jobs, {submissions} sbatch submissions ({len(groups)} groups)")
    assert submissions <= 0.65 * instances, (submissions, instances)
    assert {"poison", "frequency", "scoring", "detection_tables", "report"} <= set(groups)
    for rule in LONG_RULES:  # every instance submitted on its own
        assert alone.count(rule) == stats[rule], rule


def test_each_group_job_fits_the_per_group_limits(slurm_listing):
    """Members that can run side by side are packed within `cores` and `resources` of the
    profile (the rest run after them), so no group job asks for more than one GPU, 4 CPUs or
    16 GB, nor for a day."""
    profile = yaml.safe_load(SLURM_PROFILE.read_text())
    limits = dict(r.split("=") for r in profile["resources"])
    groups = [
        (name, json.loads(values))
        for name, values in re.findall(r"^GROUP (\w+) (\{.*\})$", slurm_listing, re.M)
    ]
    assert len(groups) >= 10, slurm_listing[-2000:]
    for name, resources in groups:
        assert resources["_cores"] <= profile["cores"], (name, resources)
        assert resources["mem_mb"] <= int(limits["mem_mb"]), (name, resources)
        assert resources.get("gpu", 0) <= int(limits["gpu"]), (name, resources)
        assert resources["runtime"] <= 24 * 60, (name, resources)
    assert any(name == "poison" and r["gpu"] == 1 for name, r in groups)


def test_rule_graph_picture_names_every_rule():
    """docs/rulegraph.svg (the README's rule graph) is regenerated when a rule is added."""
    command = [sys.executable, "-m", "snakemake", "--list-rules"]
    listed = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    svg = (ROOT / "docs" / "rulegraph.svg").read_text()
    missing = [rule for rule in listed if f">{rule}<" not in svg]
    assert not missing, f"regenerate docs/rulegraph.svg (see README.md); missing {missing}"
