"""The paper-scale DAG, dry-run offline with the workstation and the Slurm profiles.

Listing the paper's DAG needs no network (downloads happen inside jobs), so these tests check
on any machine that every artifact of the paper is a target and that the Slurm profile sends
GPU-capable jobs to GPUs and the rest to CPUs.
"""

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
CPU_RULES = {"table1", "figure1", "poisoned_test_set", "section5_table", "paper_vs_reproduced"}


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


def _dry_run(tmp_path: Path, *args: str) -> str:
    for name in ("Snakefile", "rules", "workflow", "report", "profiles", "config"):
        source = ROOT / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, tmp_path / name)
    shutil.copy(ROOT / "environment.yml", tmp_path / "environment.yml")
    command = [sys.executable, "-m", "snakemake", "-n", "--configfile", "config/paper.yaml", *args]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-4000:]
    assert not (tmp_path / "results").exists()
    return result.stdout


def _resources_by_rule(listing: str) -> dict[str, str]:
    """The first job of each rule in a dry-run listing, mapped to its resources line."""
    resources, rule = {}, None
    for line in listing.splitlines():
        if match := re.match(r"^(?:local)?rule (\w+):", line):
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


def test_slurm_profile_sends_gpu_rules_to_gpus_and_cpu_rules_to_cpus(tmp_path):
    pytest.importorskip("snakemake_executor_plugin_slurm")
    listing = _dry_run(tmp_path, "--profile", "profiles/slurm", "--workflow-profile", "none")
    missing = [a for a in paper_artifacts(PAPER) if a not in listing]
    assert not missing, missing
    resources = _resources_by_rule(listing)
    for rule in GPU_RULES:
        assert _requests_gpu(resources[rule]), resources[rule]
        assert "slurm_partition=YOUR_GPU_PARTITION" in resources[rule]
    for rule in CPU_RULES:
        assert not _requests_gpu(resources[rule]), resources[rule]
        assert "slurm_partition=YOUR_CPU_PARTITION" in resources[rule]
    assert all("slurm_account=YOUR_ACCOUNT" in line for line in resources.values())


def test_rule_graph_picture_names_every_rule():
    """docs/rulegraph.svg (the README's DAG picture) is regenerated when a rule is added."""
    command = [sys.executable, "-m", "snakemake", "--list-rules"]
    listed = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    svg = (ROOT / "docs" / "rulegraph.svg").read_text()
    missing = [rule for rule in listed if f">{rule}<" not in svg]
    assert not missing, f"regenerate docs/rulegraph.svg (README 'The DAG'); missing {missing}"
