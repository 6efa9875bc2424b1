"""`saeseeds plan`: a dry run summed into jobs, GPU-hours, CPU-hours and disk per rule."""

import shutil
from pathlib import Path

import pytest
import yaml

from saeseeds.plan import estimates
from saeseeds.config import study
from saeseeds.plan.planner import PlanError, caching_tradeoff, largest_job, parse_jobs, plan, summarize

ROOT = Path(__file__).resolve().parents[2]


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
    per_job = config["train"]["seeds_per_job"]  # 3: a variant's seeds in one job
    assert table.loc["train", "jobs"] == sum(-(-s // per_job) for s in seeds) == 3
    pairs = [s * (s - 1) // 2 for s in seeds]  # 3, 1 and 3 pairs, matched in jobs of match.pairs_per_job = 2
    assert table.loc["match", "jobs"] == sum(-(-p // 2) for p in pairs) == 5
    assert table.loc["total", "jobs"] == table.drop("total")["jobs"].sum()
    assert table.loc["total", "gpu_hours"] == 0  # the smoke study runs on CPU
    expected_mb = 2 * estimates.activations_disk_mb(config["activations"], 576)
    assert table.loc["activations", "disk_gb"] == pytest.approx(expected_mb / 1000)


def test_gpu_jobs_count_as_gpu_hours(workdir):
    config = yaml.safe_load((ROOT / "config/smoke.yaml").read_text())
    config["train"]["device"] = "cuda"
    config["match"]["pairs_per_job"] = 1  # as on a cluster: a job per pair
    (workdir / "config/gpu.yaml").write_text(yaml.safe_dump(config))
    table = plan(workdir, "config/gpu.yaml").set_index("rule")
    assert table.loc["train", "gpu_hours"] > 0
    assert table.loc["match", "gpu_hours"] == 0
    assert table.loc["match", "jobs"] == 3 + 1 + 3


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


def test_match_memory_counts_the_stored_screen_and_int8_copies_only_where_a_cpu_pass_keeps_them():
    acts = {"max_tokens": 10**6, "heldout_tokens": 1}
    saes = {"s16k": {"num_latents": 16384}, "s256k": {"num_latents": 262144}}
    models = {"m": {"source": "hf:m", "d_model": 768}}

    def mem(sae, device):
        return estimates.match_mem_mb({"activations": acts, "saes": saes, "models": models, "match": {"device": device}}, "m", sae)

    # 1,024 values a row at 6 bytes each (int16 value, int32 column), and a count and a floor: 96 MiB at 16K;
    # the int8 screen's integers and packed copy, 3 bytes a coordinate: 36 MiB at 16K x 768.
    int8 = 3 * 16384 * 768 / 2**20
    assert abs(mem("s16k", "cpu") - mem("s16k", "cuda") - 16384 * (6 * 1024 + 8) / 2**20 - int8) <= 1
    # Above KEEP_MAX_LATENTS nothing is kept; the int8 copies stay.
    assert abs(mem("s256k", "cpu") - mem("s256k", "cuda") - 3 * 262144 * 768 / 2**20) <= 1


def test_cli_plan_prints_the_totals(workdir, capsys):
    from saeseeds.cli import main

    assert main(["plan", "--directory", str(workdir), "--configfile", "config/smoke.yaml"]) == 0
    out = capsys.readouterr().out
    assert "total" in out and "GPU-hours" in out and "train" in out


def test_cli_plan_names_the_largest_job_and_the_caching_tradeoff(workdir, capsys):
    from saeseeds.cli import main

    assert main(["plan", "--directory", str(workdir), "--configfile", "config/smoke.yaml"]) == 0
    out = capsys.readouterr().out
    assert "largest job: " in out and "Caching activations once vs computing them" in out


def test_largest_job_is_the_one_reserving_most_hours():
    jobs = parse_jobs("""
rule match:
    wildcards: a=0, b=1
    threads: 1
    resources: runtime=30, gpu=0
rule train_seeds_0_1:
    wildcards: sae=big
    threads: 2
    resources: runtime=20, gpu=1
rule activations_0:
    threads: 4
    resources: runtime=10, gpu=0
""")
    assert [j.rule for j in jobs] == ["match", "train", "activations"]
    big = largest_job(jobs)  # 30 CPU-minutes (match) < 20 GPU-minutes (train)? no: 40 CPU-minutes (activations)
    assert (big.rule, big.threads) == ("activations", 4)
    assert jobs[1].wildcards == "sae=big"


def test_caching_pays_when_many_jobs_read_the_cache_and_not_for_one_short_job():
    config = yaml.safe_load((ROOT / "config/smoke.yaml").read_text())
    config["train"]["seeds_per_job"] = 1
    row = caching_tradeoff(config).iloc[0]
    # one forward pass for both hooks; 8 training jobs of one seed (3 + 2 seeds at layers.2.mlp, 3 at layers.1)
    assert (row["hooks"], row["train_jobs"], row["cheaper"]) == (2, 8, "cache")
    assert row["epochs"] == pytest.approx(10240 / (12288 - 2048))
    config["sites"] = [{"model": "smollm2-135m", "dataset": "kjv-pydoc", "hooks": ["layers.1"], "saes": ["topk-128"]}]
    config["saes"]["topk-128"].update(seeds=[0, 1], max_tokens=5120)
    config["train"]["seeds_per_job"] = 2
    row = caching_tradeoff(config).iloc[0]
    # one job training on half the cache: computing 5,120 + 2,048 tokens in it beats caching 12,288
    assert (row["train_jobs"], row["epochs"], row["cheaper"]) == (1, 0.5, "on the fly")
    assert row["on_the_fly_hours"] < row["cache_hours"]


def test_throughput_table_sets_the_runtimes():
    config = {"cluster": {"gpu_model": "h100", "throughput": {"h100": {"forward_flops": 4e14}, "cuda": {"train_flops": 1e13}}}}
    assert estimates.forward_flops(config, "cuda") == 4e14
    assert estimates.train_flops(config, "cuda:0") == 1e13  # no h100 train column: the cuda row
    assert estimates.forward_flops({}, "cpu") == estimates.FORWARD_FLOPS["cpu"]
    acts = {"max_tokens": 10**9}
    assert estimates.activations_minutes(acts, 768, ["layers.3"], flops=4e14) < estimates.activations_minutes(acts, 768, ["layers.3"], flops=1e14)


def test_sharded_caching_plans_parallel_shard_jobs_and_one_join(workdir):
    config = yaml.safe_load((ROOT / "config/smoke.yaml").read_text())
    config["activations"].update(max_tokens=4 * 8192 + 2048, shards=4)
    (workdir / "config/shards.yaml").write_text(yaml.safe_dump(config))
    table = plan(workdir, "config/shards.yaml").set_index("rule")
    assert table.loc["activations_shard", "jobs"] == 4 and table.loc["activations", "jobs"] == 1
    # the shards write the stores' bytes (two hooks); the join only links them
    full = 2 * estimates.activations_disk_mb(config["activations"], 576) / 1000
    assert table.loc["activations_shard", "disk_gb"] == pytest.approx(full, rel=0.1)
    assert table.loc["activations", "disk_gb"] == 0


def test_on_the_fly_plans_no_caching_and_charges_the_forward_passes_to_training(workdir):
    config = yaml.safe_load((ROOT / "config/smoke.yaml").read_text())
    config["activations"].update(device="cuda", mode="on_the_fly")  # forward passes on a GPU, SAEs on CPU
    config.pop("autointerp")
    (workdir / "config/fly.yaml").write_text(yaml.safe_dump(config))
    table = plan(workdir, "config/fly.yaml").set_index("rule")
    cached = plan(workdir, "config/smoke.yaml").set_index("rule")
    assert "activations" not in table.index and table.loc["train", "jobs"] == cached.loc["train", "jobs"] == 3
    assert table.loc["train", "gpu_hours"] > 0  # the model runs on activations.device inside each training job
    # each job adds a model load and a forward over its 10,240 training and 2,048 held-out tokens, with the margin
    extra = estimates.on_the_fly_minutes(config, "smollm2-135m", "layers.2.mlp", "topk-256", config["activations"])
    assert extra == estimates.on_the_fly_minutes(config, "smollm2-135m", "layers.1", "topk-128", config["activations"]) == 3
    threads = config["train"]["threads"]  # cpu_hours count threads x runtime; gpu_hours count runtime
    assert table.loc["train", "gpu_hours"] == pytest.approx(cached.loc["train", "cpu_hours"] / threads + 3 * extra / 60)
    assert table.loc["total", "disk_gb"] < cached.loc["total", "disk_gb"] - cached.loc["activations", "disk_gb"] + 1e-9
    assert list(caching_tradeoff(config)["configured"]) == ["on the fly"]
