"""The Slurm profile on a real Slurm cluster: `.ci/slurm-up` starts a one-node one on localhost.

Marked `slurm` (plain `pytest` deselects them; `pytest -m slurm` runs them) and skipped when no
Slurm answers. A slice of the tiny config (data, two triggers with their poisoned test sets and
DCTs, two detectors, their scores, Table 1) goes through `profiles/slurm` with only its
placeholders filled in: this cluster's partition for both partitions, no account (no accounting
here), `device=cpu` (no GPU), and the squeue status command (no accounting, so sacct cannot
answer). The status polling interval is shortened so that the test takes minutes, not tens.
"""

import copy
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from test_workflow import TINY

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "profiles" / "slurm" / "config.yaml"
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
PLACEHOLDERS = ("YOUR_ACCOUNT", "YOUR_CPU_PARTITION", "YOUR_GPU_PARTITION")
TARGET = "results/tables/table1.csv"


def _no_slurm() -> str | None:
    """Why no Slurm cluster can run jobs here, or None when one answers."""
    if shutil.which("sinfo") is None:
        return "no Slurm answers: `sinfo` not found (start a local cluster with .ci/slurm-up)"
    try:
        result = subprocess.run(
            ["sinfo", "-h", "-o", "%P"], capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"no Slurm answers: sinfo: {error}"
    if result.returncode != 0 or not result.stdout.strip():
        return f"no Slurm answers: `sinfo` failed: {(result.stderr or result.stdout).strip()[:300]}"
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        return "snakemake-executor-plugin-slurm is not installed"
    return None


NO_SLURM = _no_slurm()
pytestmark = [pytest.mark.slurm, pytest.mark.skipif(NO_SLURM is not None, reason=str(NO_SLURM))]


def _partition() -> str:
    """The cluster's default partition (sinfo marks it with a star), else its first."""
    names = subprocess.run(
        ["sinfo", "-h", "-o", "%P"], capture_output=True, text=True, check=True
    ).stdout.split()
    return next((n.rstrip("*") for n in names if n.endswith("*")), names[0])


def site_args(partition: str, device: str = "cpu") -> list[str]:
    """`profiles/slurm` with its placeholders filled in for this cluster, as command-line options.

    Every default and per-rule resource of the profile is passed on, placeholders replaced:
    both partitions by this cluster's, the account dropped (this cluster has no accounting, so
    the plugin submits without `-A`). On the command line these lists replace the profile's.
    """
    profile = yaml.safe_load(PROFILE.read_text())
    fill = {"YOUR_CPU_PARTITION": partition, "YOUR_GPU_PARTITION": partition}
    defaults = [
        f"{name}={fill.get(value, value)!r}"
        for name, value in profile["default-resources"].items()
        if value != "YOUR_ACCOUNT"
    ]
    per_rule = [
        f"{rule}:{name}={fill.get(value, value)!r}"
        for rule, resources in profile["set-resources"].items()
        for name, value in resources.items()
    ]
    config = [f"device={device}" if c.startswith("device=") else c for c in profile["config"]]
    args = [
        "--profile",
        str(PROFILE.parent),
        "--workflow-profile",
        "none",
        "--default-resources",
        *defaults,
        "--set-resources",
        *per_rule,
        "--config",
        *config,
        # no accounting database here: sacct cannot answer, squeue can (MinJobAge 300 s)
        "--slurm-status-command",
        "squeue",
        # poll every few seconds instead of 40 s: jobs here take seconds
        "--slurm-init-seconds-before-status-checks",
        "2",
    ]
    assert not [p for p in PLACEHOLDERS if p in " ".join(args)], args
    return args


def _slice_config() -> dict:
    """The tiny config cut to Table 1 of one dataset: two attacks, DCT and pixel detectors."""
    config = copy.deepcopy(TINY)
    config["datasets"]["small"]["attacks"] = ["badnets", "blend"]
    config["detection"]["datasets"] = ["small"]
    return config


def _jobs(workdir: Path) -> list[tuple[str, str, str]]:
    """(Slurm job id, state, comment) of every job still known to Slurm that runs in workdir."""
    listing = subprocess.run(
        ["squeue", "--states=all", "-h", "-o", "%i|%T|%k|%Z"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = [line.split("|") for line in listing.splitlines() if line.count("|") == 3]
    return [(i, state, comment) for i, state, comment, wd in rows if Path(wd) == workdir]


def _run_and_cancel(command: list[str], workdir: Path, comment_prefix: str):
    """Run Snakemake; scancel the first of its Slurm jobs whose comment starts with
    comment_prefix 3 s after it starts running. Returns (process result, cancelled job id)."""
    log = workdir.parent / "cancelled-run.log"  # a file: a full pipe would stall Snakemake
    with log.open("w") as out:
        process = subprocess.Popen(command, cwd=workdir, stdout=out, stderr=subprocess.STDOUT)
    cancelled, running_since = None, None
    deadline = time.monotonic() + 600
    while process.poll() is None and time.monotonic() < deadline:
        if cancelled is None:
            running = [
                i
                for i, state, comment in _jobs(workdir)
                if state == "RUNNING" and comment.startswith(comment_prefix)
            ]
            if running and running_since is None:
                running_since = time.monotonic()
            elif running and time.monotonic() - running_since > 3:
                subprocess.run(["scancel", running[0]], check=True)
                cancelled = running[0]
        time.sleep(0.3)
    if process.poll() is None:
        process.kill()
    process.wait()
    return subprocess.CompletedProcess(command, process.returncode, log.read_text(), ""), cancelled


@pytest.fixture(scope="module")
def cluster_slice(tmp_path_factory):
    """The slice run three ways: through Slurm with its Table 1 job cancelled, the Slurm rerun
    that completes it, and locally (no Slurm) for reference."""
    from conftest import _copy_workflow

    config = _slice_config()
    partition = _partition()
    slurm_dir = _copy_workflow(tmp_path_factory.mktemp("slurm") / "wf", config)
    local_dir = _copy_workflow(tmp_path_factory.mktemp("local") / "wf", config)
    command = [*SNAKEMAKE, *site_args(partition), "--verbose", TARGET]

    start = time.monotonic()
    # the local reference run alongside: the Slurm run mostly waits for its status checks
    local_log = local_dir.parent / "local-run.log"
    with local_log.open("w") as out:
        local = subprocess.Popen(
            [*SNAKEMAKE, "--cores", "1", TARGET],
            cwd=local_dir,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    # --retries 0: the profile's automatic retry would resubmit the cancelled job at once
    cancelled_run, cancelled = _run_and_cancel(
        [*command, "--retries", "0"], slurm_dir, "rule_detection_tables"
    )
    left_after_cancel = sorted(
        str(p.relative_to(slurm_dir)) for p in (slurm_dir / "results" / "tables").glob("*")
    )
    rerun = subprocess.run(
        command, cwd=slurm_dir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    slurm_seconds = time.monotonic() - start
    local = subprocess.CompletedProcess(local.args, local.wait(), local_log.read_text(), "")
    return {
        "slurm_dir": slurm_dir,
        "local_dir": local_dir,
        "partition": partition,
        "cancelled_run": cancelled_run,
        "cancelled": cancelled,
        "left_after_cancel": left_after_cancel,
        "rerun": rerun,
        "local": local,
        "slurm_seconds": slurm_seconds,
    }


def _submissions(output: str) -> list[str]:
    return re.findall(r"^sbatch call: (sbatch .*)$", output, re.M)


def _job_count(output: str) -> int:
    """Jobs in Snakemake's "Job stats" table, the local rules (raw_dataset) left out."""
    stats = output[output.index("Job stats:") :]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", stats.split("\n\n")[0], re.M))
    return int(counts["total"]) - int(counts.get("raw_dataset", 0))


def test_slice_runs_through_the_profile_with_the_tables_of_a_local_run(cluster_slice):
    cancelled_run, rerun, local = (cluster_slice[k] for k in ("cancelled_run", "rerun", "local"))
    assert local.returncode == 0, local.stdout[-3000:]
    assert rerun.returncode == 0, rerun.stdout[-4000:]
    first = cancelled_run.stdout
    # 10 jobs of 6 rules in 6 sbatch submissions: each trigger with its poisoned test set (and
    # its DCT) in one group job, the two scorings in another, Table 1 in a third
    jobs, submissions = _job_count(first), _submissions(first)
    assert 10 <= jobs <= 30, first[-3000:]
    assert len(submissions) < jobs, submissions
    for rule in ("prepared_dataset", "trigger", "poisoned_test_set", "detector", "table1"):
        assert f"rule {rule}:" in first
    assert "Group job poison" in first and "Group job scoring" in first
    # every submission carries the filled-in partition, a time and memory request, no account
    partition = cluster_slice["partition"]
    for call in submissions:
        assert f"-p {partition}" in call and re.search(r" -t \d+ --mem \d+", call), call
        assert " -A " not in call and "--gpus" not in call, call

    slurm_dir, local_dir = cluster_slice["slurm_dir"], cluster_slice["local_dir"]
    tables = sorted(p.name for p in (local_dir / "results" / "tables").glob("*"))
    assert {"table1.csv", "table1.md", "table1_vs_paper.csv"} <= set(tables)
    compared = [f"results/tables/{name}" for name in tables] + [
        str(p.relative_to(local_dir)) for p in (local_dir / "results").glob("detection/*/*/*.csv")
    ]
    assert len(compared) > len(tables)
    differ = [
        path
        for path in compared
        if (slurm_dir / path).read_bytes() != (local_dir / path).read_bytes()
    ]
    assert not differ, f"Slurm and local runs differ: {differ}"
    print(f"slice: {jobs} jobs, {len(submissions)} sbatch submissions, "
          f"{cluster_slice['slurm_seconds']:.0f} s on Slurm (cancel + rerun)")  # fmt: skip


def test_a_cancelled_job_is_reported_leaves_no_output_and_the_rerun_completes(cluster_slice):
    cancelled, run, rerun = (cluster_slice[k] for k in ("cancelled", "cancelled_run", "rerun"))
    assert cancelled is not None, "the Table 1 job was never seen running:\n" + run.stdout[-3000:]
    assert run.returncode != 0
    # the failed group job, with its Slurm log (shown by the profile's show-failed-logs)
    assert "Error in group detection_tables" in run.stdout, run.stdout[-3000:]
    assert re.search(rf"\*\*\* JOB {cancelled} ON \S+ CANCELLED AT", run.stdout), run.stdout[-3000:]
    # nothing of the cancelled job's outputs is left, and the jobs before it are not redone
    assert cluster_slice["left_after_cancel"] == [], cluster_slice["left_after_cancel"]
    assert len(_submissions(rerun.stdout)) == 1, rerun.stdout[-3000:]
    assert "Group job detection_tables" in rerun.stdout


def test_the_gpu_request_reaches_sbatch_on_gpu_rules_only(cluster_slice):
    """With the profile's `device=cuda`: the detector (a GPU rule) is submitted with `--gpus=1`,
    which this cluster (no GPUs) rejects at sbatch, so it never waits in the queue; Figure 5 (a
    CPU rule, submitted at the same time) carries no GPU flag and runs."""
    workdir = cluster_slice["slurm_dir"]
    detector = "results/detectors/small/cnn3_kmax32_dct.pt"
    figure = "results/figures/figure5/small.png"
    command = [
        *SNAKEMAKE,
        *site_args(cluster_slice["partition"], device="cuda"),
        "--verbose",
        "--forcerun",
        "detector",
        "--retries",
        "0",
        figure,
        detector,
    ]
    result = subprocess.run(command, cwd=workdir, capture_output=True, text=True)
    output = result.stdout + result.stderr
    calls = _submissions(output)
    gpu_calls = [c for c in calls if "--comment rule_detector_" in c]
    cpu_calls = [c for c in calls if "figure5" in c.split("--comment ")[1].split()[0]]
    assert len(gpu_calls) == 1 and len(cpu_calls) == 1, calls
    assert "--gpus=1" in gpu_calls[0], gpu_calls[0]
    assert "--gpus" not in cpu_calls[0] and "--gres" not in cpu_calls[0], cpu_calls[0]
    # Slurm itself saw the GPU request (and refused it: no GPU here)
    assert "Invalid generic resource (gres) specification" in output, output[-3000:]
    assert result.returncode != 0
    assert (workdir / figure).exists()


OVERRUN = """
rule all:
    input:
        "overrun.txt",
        "overmem.txt",


rule overrun:
    output:
        "overrun.txt",
    log:
        "logs/overrun.log",
    retries: 0
    resources:
        mem_mb=500,
        runtime=1,
    shell:
        "sleep 300 && touch {output}"


rule overmem:
    output:
        "overmem.txt",
    log:
        "logs/overmem.log",
    retries: 0
    resources:
        mem_mb=500,
        runtime=5,
    shell:
        "python3 -c 'import time; block = b\\"x\\" * 3000 * 2**20; time.sleep(60)' && touch {output}"
"""


@pytest.fixture(scope="module", autouse=True)
def over_limits(tmp_path_factory):
    """A 1-minute job that sleeps 5 minutes and a 500 MB job that fills 3 GB, through the
    profile. Started first and in the background: Slurm checks time limits every 30 s, so the
    first job runs 60-90 s, while the other tests run beside it."""
    workdir = tmp_path_factory.mktemp("limits")
    (workdir / "Snakefile").write_text(OVERRUN)
    command = [*SNAKEMAKE, *site_args(_partition()), "--keep-going"]
    log = workdir / "snakemake.out"
    with log.open("w") as out:
        process = subprocess.Popen(command, cwd=workdir, stdout=out, stderr=subprocess.STDOUT)
    yield workdir, process, log
    if process.poll() is None:
        process.kill()
        process.wait()


def _slurm_log(output: str, rule: str) -> str:
    """The Slurm log that Snakemake names in its error report for rule."""
    path = re.search(rf"log: logs/{rule}.log, (\S+/slurm_logs/rule_{rule}/\d+\.log)", output)
    assert path, output[-4000:]
    return Path(path.group(1)).read_text()


def test_jobs_over_their_time_or_memory_request_fail_with_slurms_reason(over_limits):
    workdir, process, log = over_limits
    assert process.wait(timeout=400) != 0
    output = log.read_text()
    # the job states, then Slurm's own words in the job logs whose paths Snakemake prints
    assert "SLURM status is: 'TIMEOUT'" in output, output[-4000:]
    assert re.search(r"CANCELLED AT \S+ DUE TO TIME LIMIT", _slurm_log(output, "overrun"))
    assert re.search(
        r"exceeded memory limit \(\d+ > 524288000\), being killed", _slurm_log(output, "overmem")
    )
    assert not (workdir / "overrun.txt").exists() and not (workdir / "overmem.txt").exists()
