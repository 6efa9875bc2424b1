"""What jobs ask a scheduler for: GPUs and GPU model from config `cluster`, CPUs, memory and time per attempt."""

import shutil
from pathlib import Path

import pytest
import yaml

from saeseeds.plan import scheduler
from saeseeds.plan.planner import dry_run, parse_jobs

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "mode, device, expected",
    [("auto", "cuda", 1), ("auto", "cuda:1", 1), ("auto", "cpu", 0), ("always", "cpu", 1), ("never", "cuda", 0)],
)
def test_gpu_requests_follow_the_mode_and_the_device(mode, device, expected):
    assert scheduler.gpus({"cluster": {"gpu_requests": mode}}, device) == expected


def test_no_cluster_section_means_auto_and_no_gpu_model():
    assert scheduler.gpus({}, "cuda") == 1 and scheduler.gpus({}, "cpu") == 0
    assert scheduler.gpu_model_resources({}) == {}
    assert scheduler.gpu_model_resources({"cluster": {"gpu_model": "a100"}}) == {"gpu_model": "a100"}


def test_bad_mode_names_the_key():
    with pytest.raises(ValueError, match="cluster.gpu_requests"):
        scheduler.gpus({"cluster": {"gpu_requests": "sometimes"}}, "cpu")


def test_retries_ask_for_more():
    assert [scheduler.scaled(3000, attempt) for attempt in (1, 2, 3)] == [3000, 6000, 9000]


def jobs_of(tmp_path, **sections):
    """Returns the smoke study's dry-run jobs, by rule family, with the given config sections replaced."""
    for name in ("workflow", "config"):
        shutil.copytree(ROOT / name, tmp_path / name)
    config = yaml.safe_load((ROOT / "config/smoke.yaml").read_text())
    config.update(sections)
    (tmp_path / "config/test.yaml").write_text(yaml.safe_dump(config))
    jobs = {}
    for job in parse_jobs(dry_run(tmp_path, "config/test.yaml")):
        jobs.setdefault(job.rule, job)
    return jobs


def test_gpu_stages_ask_for_a_gpu_of_the_configured_model_and_cpu_stages_do_not(tmp_path):
    jobs = jobs_of(tmp_path, cluster={"gpu_requests": "always", "gpu_model": "a100"})
    for rule in ("activations", "train", "match", "chance"):
        assert jobs[rule].resources["gpu"] == "1" and jobs[rule].resources["gpu_model"] == "a100", rule
        assert int(jobs[rule].resources["cpus_per_task"]) == jobs[rule].threads, rule
    for rule in ("orphans", "summary", "fig1_matched_cosine"):
        assert jobs[rule].number("gpu") == 0 and "gpu_model" not in jobs[rule].resources, rule


def test_never_keeps_cuda_stages_off_the_gpu_queue(tmp_path):
    jobs = jobs_of(tmp_path, cluster={"gpu_requests": "never"}, train={"device": "cuda", "threads": 2})
    assert jobs["train"].resources["gpu"] == "0" and "gpu_model" not in jobs["train"].resources


def test_never_keeps_the_autointerp_stages_off_the_gpu_queue_too(tmp_path):
    smoke = yaml.safe_load((ROOT / "config/smoke.yaml").read_text())
    autointerp = {**smoke["autointerp"], "device": "cuda", "backend": {**smoke["autointerp"]["backend"], "device": "cuda"}}
    asked = jobs_of(tmp_path / "auto", autointerp=autointerp)
    assert asked["latent_examples"].resources["gpu"] == asked["autointerp"].resources["gpu"] == "1"
    kept = jobs_of(tmp_path / "never", autointerp=autointerp, cluster={"gpu_requests": "never"})
    assert kept["latent_examples"].resources["gpu"] == kept["autointerp"].resources["gpu"] == "0"
