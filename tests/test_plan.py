"""`saeseeds plan`: a dry run summed into jobs, GPU-hours, CPU-hours and disk per rule."""

import shutil
from pathlib import Path

import pytest
import yaml

from saeseeds import estimates, study
from saeseeds.plan import PlanError, parse_jobs, plan, summarize

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def workdir(tmp_path):
    """A copy of the workflow and configs, so planning never sees the repository's own results/."""
    for name in ("workflow", "config"):
        shutil.copytree(ROOT / name, tmp_path / name)
    return tmp_path


def test_plan_counts_every_job_of_the_smoke_study(workdir):
    table = plan(workdir, "config/smoke.yaml").set_index("rule")
    config = yaml.safe_load((ROOT / "config/smoke.yaml").read_text())
    seeds = [len(study.sae_seeds(config, sae)) for _, sae in study.site_saes(config)]  # 3, 2 and 3 seeds
    assert table.loc["activations", "jobs"] == 1  # both hooks in one forward pass: same model, corpus, settings
    assert table.loc["train", "jobs"] == sum(seeds) == 8
    assert table.loc["match", "jobs"] == sum(s * (s - 1) // 2 for s in seeds) == 7
    assert table.loc["total", "jobs"] == table.drop("total")["jobs"].sum()
    assert table.loc["total", "gpu_hours"] == 0  # the smoke study runs on CPU
    expected_mb = 2 * estimates.activations_disk_mb(config["activations"], 576)
    assert table.loc["activations", "disk_gb"] == pytest.approx(expected_mb / 1000)


def test_gpu_jobs_count_as_gpu_hours(workdir):
    config = yaml.safe_load((ROOT / "config/smoke.yaml").read_text())
    config["train"]["device"] = "cuda"
    (workdir / "config/gpu.yaml").write_text(yaml.safe_dump(config))
    table = plan(workdir, "config/gpu.yaml").set_index("rule")
    assert table.loc["train", "gpu_hours"] > 0
    assert table.loc["match", "gpu_hours"] == 0


def test_bad_config_fails_the_plan_naming_the_key(workdir):
    config = yaml.safe_load((ROOT / "config/smoke.yaml").read_text())
    config["match"]["threshold"] = 2
    (workdir / "config/bad.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(PlanError, match="match.threshold"):
        plan(workdir, "config/bad.yaml")


def test_parse_jobs_reads_threads_and_resources():
    text = """
rule train:
    jobid: 3
    threads: 4
    resources: tmpdir=/tmp, runtime=30, gpu=1, disk_mb=100, mem_mb=2000
localrule all:
    jobid: 0
"""
    jobs = parse_jobs(text)
    assert [j.rule for j in jobs] == ["train", "all"]
    row = summarize(jobs).set_index("rule").loc["train"]
    assert (row["gpu_hours"], row["cpu_hours"], row["disk_gb"]) == (0.5, 2.0, 0.1)


def test_hook_layer_drives_the_forward_estimate():
    acts = {"max_tokens": 10**9, "heldout_tokens": 1}
    assert estimates.hook_layer("layers.11.mlp") == 11
    assert estimates.activations_minutes(acts, 768, "layers.11") > estimates.activations_minutes(acts, 768, "layers.0")


def test_cli_plan_prints_the_totals(workdir, capsys):
    from saeseeds.cli import main

    assert main(["plan", "--directory", str(workdir), "--configfile", "config/smoke.yaml"]) == 0
    out = capsys.readouterr().out
    assert "total" in out and "GPU-hours" in out and "train" in out
