"""A real SLURM cluster (single node, localhost) runs a small study through the slurm profile.

tests/slurm/start_cluster.sh starts munge, slurmctld and slurmd from Debian's slurm-wlm with a fake `gpu` GRES;
the study (one hook of the smoke config, two seeds trained in one job) asks for GPUs with
`cluster.gpu_requests: always`, so the GPU request path runs on this CPU-only machine. Its outputs must be
the bytes a local run writes.
"""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SLURM = ROOT / "tests" / "slurm"
SAE = "results/smollm2-135m/kjv-pydoc/layers.1/topk-256"
TARGET = f"{SAE}/orphans/subsets.parquet"  # caching, training (both seeds), matching, orphans: one job each
pytestmark = pytest.mark.slow


def _why_no_cluster() -> str | None:
    missing = [tool for tool in ("munged", "slurmctld", "slurmd", "sbatch") if shutil.which(tool) is None]
    if missing:
        return f"{missing} not installed: apt-get install slurm-wlm munge (.ci/run does when apt is available)"
    if os.geteuid() != 0:
        return "slurmd starts jobs as their users' processes and must run as root"
    return None


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Starts the cluster; yields the environment whose client commands reach it; stops it afterwards."""
    reason = _why_no_cluster()
    if reason:
        pytest.skip(reason)
    folder = tmp_path_factory.mktemp("slurm")
    start = time.perf_counter()
    proc = subprocess.run([SLURM / "start_cluster.sh", folder, "1"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    print(f"cluster up in {time.perf_counter() - start:.1f} s")
    env = {**os.environ, "PATH": f"{folder}/bin:{os.environ['PATH']}", "SLURM_CONF": f"{folder}/slurm.conf"}
    yield env
    subprocess.run([SLURM / "stop_cluster.sh", folder], timeout=60)


def small_study(workdir: Path) -> None:
    """Copies the workflow and writes config/slurm.yaml: the smoke study's layers.1 site, two seeds, GPU requests on."""
    for name in ("workflow", "config"):
        shutil.copytree(ROOT / name, workdir / name)
    config = yaml.safe_load((ROOT / "config/smoke.yaml").read_text())
    config["sites"] = [{"model": "smollm2-135m", "dataset": "kjv-pydoc", "hooks": ["layers.1"], "saes": ["topk-256"]}]
    config.pop("autointerp", None)  # explains a site this cut-down study drops
    config.pop("functional", None)  # measures a site this cut-down study drops
    config["saes"] = {"topk-256": config["saes"]["topk-256"]}
    config["seeds"] = [0, 1]
    config["train"].update(seeds_per_job=2, threads=2)  # the training job asks SLURM for 2 CPUs
    config["match"]["pairs_per_job"] = 1  # a job per pair, as on a cluster
    config["cluster"] = {"gpu_requests": "always"}
    (workdir / "config/slurm.yaml").write_text(yaml.safe_dump(config))


def snakemake(workdir: Path, *args: str, env=None, timeout=300) -> subprocess.Popen:
    """Starts Snakemake on the small study's target; the caller waits (communicate) for (stdout, stderr)."""
    # timeout -s KILL: without slurmdbd a lost job status would otherwise leave Snakemake waiting forever
    cmd = ["timeout", "-s", "KILL", str(timeout), sys.executable, "-m", "snakemake", TARGET, *args, "--configfile", "config/slurm.yaml"]
    return subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def jobs_of_run(env) -> list[dict[str, str]]:
    """Returns `scontrol show job` records (finished jobs stay for MinJobAge = 300 s) as dicts."""
    out = subprocess.run(["scontrol", "show", "job", "-o"], capture_output=True, text=True, env=env, check=True).stdout
    return [dict(field.partition("=")[::2] for field in line.split()) for line in out.splitlines() if line.strip()]


def test_small_study_through_the_slurm_profile_equals_a_local_run(cluster, tmp_path):
    on_slurm, local = tmp_path / "slurm", tmp_path / "local"
    for workdir in (on_slurm, local):
        small_study(workdir)
    start = time.perf_counter()
    slurm_run = snakemake(on_slurm, "--profile", str(SLURM / "profile"), env=cluster)
    # The reference runs meanwhile: the SLURM run mostly waits (job start-up, status polling), and the
    # outputs do not depend on the thread count or the machine's load.
    local_run = snakemake(local, "--cores", "2")
    for name, run in (("local", local_run), ("SLURM", slurm_run)):
        _, err = run.communicate()
        assert run.returncode == 0, f"{name} run failed:\n{err[-6000:]}"
        print(f"small study {name} done after {time.perf_counter() - start:.0f} s")

    jobs = {job["Comment"].split("_wildcards")[0].removeprefix("rule_"): job for job in jobs_of_run(cluster)}
    # orphans is a localrule (a second of pandas): it runs in the Snakemake process, not in the queue
    assert set(jobs) == {"activations_0", "train_seeds_0_1", "match"}
    for rule, job in jobs.items():
        assert job["JobState"] == "COMPLETED", (rule, job["JobState"])
        assert job.get("TresPerJob") == "gres:gpu:1", (rule, job.get("TresPerJob"))  # caching, training, matching: GPU stages
    assert jobs["train_seeds_0_1"]["CPUs/Task"] == "2"  # cpus_per_task = train.threads

    for rel in ("seed0/sae.safetensors", "seed1/sae.safetensors", "seed1/firing.npy"):
        assert (on_slurm / SAE / rel).read_bytes() == (local / SAE / rel).read_bytes(), rel
    for rel in ("matches/seed0-seed1.parquet", "orphans/subsets.parquet", "orphans/latents.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(on_slurm / SAE / rel), pd.read_parquet(local / SAE / rel))
