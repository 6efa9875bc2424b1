"""Tests of SAE training: it learns, it is deterministic, every seed sees the same batches."""

import json
import logging
import signal
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import zarr

from saeseeds.sae.batches import BatchPlan, BatchReader
from saeseeds.sae.coder import SaeConfig, SaeConfigError, SparseCoder
from saeseeds.activations.store import StoreWriter, open_store, write_store
from saeseeds.activations import checksums
from saeseeds.sae.train import TrainConfig, TrainConfigError, TrainingDiverged, evaluate, train_sae, train_saes

D, TRUE_DIRS = 32, 64
SAE = SaeConfig(num_latents=96, k=4)
TRAIN = TrainConfig(batch_size=256, max_tokens=256 * 200, warmup_steps=10, lr=3e-3)


def sparse_combinations(n, seed=0):
    """Rows that are sparse non-negative combinations of 64 fixed unit directions in d=32, plus noise."""
    rng = np.random.default_rng(seed)
    dirs = rng.standard_normal((TRUE_DIRS, D))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    codes = np.zeros((n, TRUE_DIRS))
    for i in range(n):
        codes[i, rng.choice(TRUE_DIRS, 3, replace=False)] = rng.exponential(1.0, 3)
    return (codes @ dirs + 0.01 * rng.standard_normal((n, D))).astype(np.float32)


pytestmark = pytest.mark.usefixtures("torch_one_thread")  # conftest: tiny tensors run faster on one thread


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("store") / "activations.zarr"
    write_store(path, sparse_combinations(6000), n_heldout=1000, attrs={})
    return path


@pytest.fixture(scope="module")
def seed0(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "seed0"
    return out, train_sae(store, out, SAE, TRAIN, seed=0, data_seed=7)


def test_training_lowers_heldout_fvu_and_writes_outputs(store, seed0):
    out, metrics = seed0
    assert sorted(p.name for p in out.iterdir()) == ["cfg.json", "firing.npy", "loss_curve.parquet", "metrics.json", "sae.safetensors"]
    untrained = SparseCoder(open_store(store).d_in, SAE, seed=0)
    heldout = open_store(store).heldout()
    with torch.no_grad():
        untrained.b_dec.copy_(torch.from_numpy(heldout.mean(0)))
    before = evaluate(untrained, heldout)["fvu"]
    assert metrics["fvu"] < 0.5 * before
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["fvu"] == metrics["fvu"] and on_disk["tokens_seen"] == 256 * 200
    assert (on_disk["seed"], on_disk["data_seed"]) == (0, 7)
    firing = np.load(out / "firing.npy")
    assert firing.dtype == np.float32 and firing.shape == (96,)
    assert metrics["l0"] == pytest.approx(firing.sum(), rel=1e-5)
    assert metrics["dead_fraction"] == pytest.approx(float((firing == 0).mean()))
    assert SparseCoder.load_from_disk(out).cfg == SAE


def test_same_seed_gives_identical_bytes(store, seed0, tmp_path):
    out, metrics = seed0
    again = train_sae(store, tmp_path / "again", SAE, TRAIN, seed=0, data_seed=7)
    assert (tmp_path / "again" / "sae.safetensors").read_bytes() == (out / "sae.safetensors").read_bytes()
    assert (tmp_path / "again" / "firing.npy").read_bytes() == (out / "firing.npy").read_bytes()
    assert again["fvu"] == metrics["fvu"]


def test_two_seeds_differ_in_weights_but_saw_the_same_batches(store, seed0, tmp_path):
    out, metrics = seed0
    other = train_sae(store, tmp_path / "seed1", SAE, TRAIN, seed=1, data_seed=7)
    a, b = SparseCoder.load_from_disk(out), SparseCoder.load_from_disk(tmp_path / "seed1")
    assert not torch.allclose(a.W_dec, b.W_dec)
    assert other["batch_order_sha256"] == metrics["batch_order_sha256"]
    plan = BatchPlan(5000, open_store(store).array.chunks[0], 256, 200, data_seed=8, window_rows=TRAIN.window_rows)
    assert plan.sha256() != metrics["batch_order_sha256"]


def test_batch_plan_covers_each_row_once_per_epoch_and_resumes_mid_stream():
    plan = BatchPlan(1000, 128, 100, 25, data_seed=3, window_rows=256)
    batches = list(plan.indices())
    assert len(batches) == 25 and all(len(b) == 100 for b in batches)
    flat = np.concatenate(batches)
    assert sorted(flat[:1000]) == list(range(1000)) and sorted(flat[1000:2000]) == list(range(1000))
    assert not np.array_equal(flat[:1000], flat[1000:2000])  # each epoch is reshuffled
    tail = list(plan.indices(start_step=13))
    assert all(np.array_equal(x, y) for x, y in zip(tail, batches[13:], strict=True))


def test_reader_yields_the_rows_the_plan_names(tmp_path):
    rows = sparse_combinations(2600, seed=2)
    writer = StoreWriter(tmp_path / "chunky.zarr", len(rows), D, chunk_rows=256)  # 11 chunks, 3 per window
    writer.append(rows)
    st = writer.finish({"model": "m", "revision": "r", "dataset": "d", "hook": "h", "n_train": 2300, "n_heldout": 300})
    plan = BatchPlan(st.n_train, st.array.chunks[0], 300, 20, data_seed=1, window_rows=800)
    stored = np.asarray(st.array[:], dtype=np.float32)
    with BatchReader(st, plan, start_step=4, prefetch=2) as reader:
        got = list(reader)
    want = list(plan.indices(start_step=4))
    assert len(got) == len(want) == 16
    assert all(np.array_equal(g.numpy(), stored[i]) for g, i in zip(got, want))
    assert all(i.max() < 2300 for i in want)  # never a held-out row


def test_nan_in_store_fails_naming_the_store(tmp_path):
    rows = sparse_combinations(1200, seed=1)
    path = tmp_path / "bad.zarr"
    write_store(path, rows, n_heldout=200, attrs={})
    arr = zarr.open_group(str(path), mode="r+")["activations"]
    arr[5] = np.full(D, np.nan, dtype=np.float16)
    # Checksums would catch the edit first; re-list them, as a store written with NaN by another tool would be.
    names = [f"activations/c/{i}/0" for i in range(len(checksums.read_manifest(path)))]
    checksums.rewrite_manifest(path, [(checksums.file_sha256(path / n), n) for n in names])
    with pytest.raises(TrainingDiverged, match=r"non-finite activations in the batch of step \d+ for seeds \[0\] \(store .*bad.zarr\)"):
        train_sae(path, tmp_path / "out", SAE, TrainConfig(batch_size=100, warmup_steps=1), seed=0, data_seed=0)
    assert not (tmp_path / "out").exists()


def test_bad_inputs_fail_naming_the_culprit(store, tmp_path):
    with pytest.raises(SaeConfigError, match="k=200"):
        train_sae(store, tmp_path / "o", SaeConfig(num_latents=100, k=200), TRAIN, seed=0, data_seed=0)
    with pytest.raises(TrainConfigError, match="warmup_steps"):
        train_sae(store, tmp_path / "o", SAE, TrainConfig(batch_size=256, max_tokens=2560, warmup_steps=10), seed=0, data_seed=0)
    with pytest.raises(TrainConfigError, match="optimizer"):
        TrainConfig(optimizer="sgd")
    with pytest.raises(TrainConfigError, match="max_tokens"):
        train_sae(store, tmp_path / "o", SAE, TrainConfig(batch_size=256, max_tokens=100), seed=0, data_seed=0)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("arch, extra", [("topk", {}), ("batchtopk", {}), ("relu", {"l1_coefficient": 0.5}), ("jumprelu", {}), ("gated", {"l1_coefficient": 0.5})])
def test_each_architecture_lowers_fvu(store, tmp_path, arch, extra):
    cfg = TrainConfig(batch_size=256, max_tokens=256 * 80, warmup_steps=5, lr=3e-3, **extra)
    metrics = train_sae(store, tmp_path / arch, SaeConfig(num_latents=96, k=4, arch=arch), cfg, seed=0, data_seed=7)
    curve = pq.read_table(tmp_path / arch / "loss_curve.parquet").to_pandas()
    assert list(curve.columns) == ["step", "loss", "fvu", "l0"] and list(curve.step) == list(range(80))
    assert curve.fvu.iloc[-10:].mean() < 0.6 * curve.fvu.iloc[:3].mean()
    assert metrics["fvu"] < 0.35 and metrics["warnings"] == []
    back = SparseCoder.load_from_disk(tmp_path / arch)
    assert back.cfg.arch == arch
    # the saved checkpoint reproduces the held-out FVU the trainer reported
    assert evaluate(back, open_store(store).heldout())["fvu"] == pytest.approx(metrics["fvu"], rel=1e-6)


def test_signum_trains(store, tmp_path):
    cfg = TrainConfig(batch_size=256, max_tokens=256 * 80, optimizer="signum", lr=1e-3)
    metrics = train_sae(store, tmp_path / "s", SaeConfig(num_latents=96, k=4), cfg, seed=0, data_seed=7)
    assert metrics["fvu"] < 0.5


def test_seed_batched_training_equals_one_by_one(store, seed0, tmp_path):
    out, metrics = seed0
    both = train_saes(store, [tmp_path / "a", tmp_path / "b"], SAE, TRAIN, seeds=[0, 1], data_seed=7)
    alone = SparseCoder.load_from_disk(out)
    stacked = SparseCoder.load_from_disk(tmp_path / "a")
    # seeds share no sums (per-seed matmuls, bags and CSR rows), so on CPU the results are bitwise equal
    for p, q in zip(alone.parameters(), stacked.parameters()):
        assert torch.equal(p, q)
    assert both[0]["fvu"] == metrics["fvu"]
    assert (tmp_path / "a" / "sae.safetensors").read_bytes() == (out / "sae.safetensors").read_bytes()
    assert both[0]["batch_order_sha256"] == both[1]["batch_order_sha256"] == metrics["batch_order_sha256"]
    assert both[0]["seeds_in_job"] == 2


KILL_SCRIPT = """
import os, signal, sys, torch
from saeseeds.sae.coder import SaeConfig
from saeseeds.sae.train import TrainConfig, train_sae
torch.set_num_threads(1)

def die(step):
    if step == 125:  # after the state saved at step 120, before the end
        os.kill(os.getpid(), signal.SIGKILL)

train_sae(sys.argv[1], sys.argv[2], SaeConfig(num_latents=96, k=4),
          TrainConfig(batch_size=256, max_tokens=256 * 200, warmup_steps=10, lr=3e-3, state_every_steps=20),
          seed=0, data_seed=7, on_step=die)
"""


def test_sigkill_then_restart_resumes_to_identical_bytes(store, seed0, tmp_path, caplog):
    out, _ = seed0
    script = tmp_path / "kill.py"
    script.write_text(KILL_SCRIPT)
    target = tmp_path / "seed0"
    proc = subprocess.run([sys.executable, str(script), str(store), str(target)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert not target.exists()
    assert (tmp_path / "seed0.state" / "state.pt").exists()
    with caplog.at_level(logging.INFO, logger="saeseeds.sae.train"):
        train_sae(store, target, SAE, TRAIN, seed=0, data_seed=7)
    assert "resuming at step 120 of 200" in caplog.text
    for name in ("sae.safetensors", "firing.npy", "loss_curve.parquet"):
        assert (target / name).read_bytes() == (out / name).read_bytes(), name
    assert not (tmp_path / "seed0.state").exists()


def test_state_from_another_config_is_not_resumed(store, tmp_path, caplog):
    cfg = TrainConfig(batch_size=256, max_tokens=256 * 30, warmup_steps=5, lr=3e-3, state_every_steps=10)
    state = tmp_path / "st"
    with pytest.raises(RuntimeError, match="stop"):
        train_sae(store, tmp_path / "x", SAE, cfg, seed=0, data_seed=7, state_dir=state, on_step=_stop_at(15))
    assert (state / "state.pt").exists()
    with caplog.at_level(logging.INFO, logger="saeseeds.sae.train"):
        train_sae(store, tmp_path / "y", SAE, cfg, seed=1, data_seed=7, state_dir=state)
    assert "belongs to another config" in caplog.text


def _stop_at(step_to_stop):
    def hook(step):
        if step == step_to_stop:
            raise RuntimeError("stop")

    return hook


def test_unhealthy_run_is_reported(store, tmp_path, caplog):
    cfg = TrainConfig(batch_size=256, max_tokens=256 * 20, warmup_steps=5, lr=3e-3, l1_coefficient=100.0)
    with caplog.at_level(logging.WARNING, logger="saeseeds.sae.train"):
        metrics = train_sae(store, tmp_path / "r", SaeConfig(num_latents=96, arch="relu"), cfg, seed=0, data_seed=7)
    assert any("FVU" in w for w in metrics["warnings"])
    assert "unhealthy SAE" in caplog.text
