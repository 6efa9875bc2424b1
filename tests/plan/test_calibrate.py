"""`saeseeds plan --calibrate`: FLOP/s from finished stores and training metrics, each job counted once."""

import json

import numpy as np
import pytest

from saeseeds.plan.calibrate import CalibrationError, measurements, stage_times, throughput_table, tokens_per_second
from saeseeds.cli import main
from saeseeds.activations.store import write_store

D = 8


def cached(results, hooks, tokens_per_second, device="cpu"):
    """Writes one store per hook as one caching pass over 64 tokens would (same pass attrs in each)."""
    for hook in hooks:
        write_store(
            results / "m" / "data" / hook / "activations.zarr", np.ones((64, D), np.float32), n_heldout=16,
            attrs={"hook": hook, "hooks_in_pass": hooks, "tokens_per_second": tokens_per_second,
                   "tokens_sha256": "same tokens", "config": {"device": device}},
        )


def trained(results, seeds, n, tokens, wall, device="cpu", sae="sae", **extra):
    """Writes metrics.json + cfg.json of one job that trained `seeds` stacked."""
    for seed in seeds:
        folder = results / "m" / "data" / "layers.1" / sae / f"seed{seed}"
        folder.mkdir(parents=True)
        (folder / "cfg.json").write_text(json.dumps({"d_in": D, "num_latents": n}))
        (folder / "metrics.json").write_text(json.dumps({
            "tokens_seen": tokens, "wall_time_s": wall, "seeds_in_job": len(seeds), "seed": seed,
            "sae": {"num_latents": n}, "train": {"device": device}, "store": "m/data/layers.1", **extra,
        }))


def test_one_pass_and_one_stacked_job_each_count_once(tmp_path):
    cached(tmp_path, ["layers.1", "layers.3.mlp"], tokens_per_second=32.0)  # one pass to layer 3: 4 layers
    trained(tmp_path, [0, 1], n=16, tokens=1000, wall=2.0)
    found = measurements(tmp_path)
    assert sorted(m.kind for m in found) == ["forward", "train"]
    table = throughput_table(found)
    # forward: 32 tok/s x 24 d^2 (layer 3 + 1) = 32 * 24 * 64 * 4; train: 2 seeds x 1000 tokens x 6 d n / 2 s
    # (printed to 3 significant digits)
    assert table == {"cpu": {"forward_flops": 197_000.0, "train_flops": 768_000.0}}
    assert 32 * 24 * 64 * 4 == 196_608 and 2 * 1000 * 6 * D * 16 / 2.0 == 768_000
    assert tokens_per_second(found, "forward", "cpu") == pytest.approx(32.0)
    assert tokens_per_second(found, "train", "cpu") == pytest.approx(1000.0)


def test_jobs_on_the_fly_do_not_count_as_training_speed(tmp_path):
    trained(tmp_path, [0], n=16, tokens=1000, wall=2.0, activations="cache")
    trained(tmp_path, [0], n=16, tokens=1000, wall=20.0, sae="fly", activations="on_the_fly")  # 18 s of forward passes
    found = measurements(tmp_path)
    assert len(found) == 1 and tokens_per_second(found, "train", "cpu") == pytest.approx(500.0)


def test_long_jobs_weigh_more_and_cuda_rows_take_the_gpu_model(tmp_path):
    cached(tmp_path, ["layers.0"], tokens_per_second=64.0, device="cuda")
    cached(tmp_path, ["layers.1"], tokens_per_second=16.0, device="cuda")  # 4x the seconds of the first
    table = throughput_table(measurements(tmp_path), gpu_model="h100")
    # all FLOPs over all seconds: (64 tok x 24 d^2 x 1 + 64 tok x 24 d^2 x 2) / (1 s + 4 s)
    assert table == {"h100": {"forward_flops": pytest.approx(64 * 24 * 64 * 3 / 5, rel=1e-3)}}


def test_nothing_to_calibrate_names_the_folder(tmp_path, capsys):
    with pytest.raises(CalibrationError, match=str(tmp_path)):
        measurements(tmp_path)
    assert main(["plan", "--calibrate", "--results", str(tmp_path)]) == 2
    assert str(tmp_path) in capsys.readouterr().err


def test_cli_prints_the_config_section(tmp_path, capsys):
    trained(tmp_path, [0], n=16, tokens=3000, wall=1.5)
    assert main(["plan", "--calibrate", "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "train   on cpu: 1 jobs, 2,000 tokens/s" in out
    # 3000 tokens x 6 d n / 1.5 s = 1,536,000 FLOP/s, to 3 significant digits
    assert "cluster:\n  throughput:\n    cpu:\n      train_flops: 1540000.0" in out


def test_stage_times_sum_the_rules_benchmark_files(tmp_path, capsys):
    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    for rel, seconds, rss in (("train/m/d/h/sae/seeds_0_1.tsv", 50.5, 900.0), ("train/m/d/h/sae2/seeds_0_1.tsv", 20.0, 1200.0),
                              ("match/m/d/h/sae/seed0-seed1.tsv", 2.5, "NA")):
        path = tmp_path / "bench" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(header + f"{seconds}\t0:00:{int(seconds):02d}\t{rss}\t1\t1\t1\t0\t0\t0\t0\n")
    train, match = stage_times(tmp_path / "bench")
    assert (train.stage, train.jobs, train.seconds, train.longest, train.max_rss_mb) == ("train", 2, 70.5, 50.5, 1200.0)
    assert (match.stage, match.jobs, match.max_rss_mb) == ("match", 1, None)
    assert stage_times(tmp_path / "none") == []
    trained(tmp_path, [0], n=16, tokens=3000, wall=1.5)
    assert main(["plan", "--calibrate", "--results", str(tmp_path), "--benchmarks", str(tmp_path / "bench")]) == 0
    assert "# stage train: 2 jobs, 70 job-s (97%), longest 50 s, peak 1,200 MB" in capsys.readouterr().out
