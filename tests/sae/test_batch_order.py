"""Tests of `batch_order: sequences`: batches of whole contexts, the same for every seed, resumable."""

import logging
import signal
import subprocess
import sys

import numpy as np
import pytest

from saeseeds.sae.batches import BatchPlan, BatchReader
from saeseeds.sae.coder import SaeConfig
from saeseeds.activations.store import StoreWriter, write_store
from saeseeds.sae.train import TrainConfig, TrainConfigError, train_sae, train_saes
from saeseeds.config.validate import validate_config

L = 50  # rows per context
SAE = SaeConfig(num_latents=48, k=4)
TRAIN = TrainConfig(batch_size=200, max_tokens=200 * 60, warmup_steps=5, lr=3e-3, window_rows=2000, batch_order="sequences")

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def contexts_of(batch):
    """Returns the context index of each group of L rows, asserting each group is one whole context in order."""
    groups = batch.reshape(-1, L)
    assert (groups[:, 0] % L == 0).all()
    assert (np.diff(groups, axis=1) == 1).all()
    return groups[:, 0] // L


def test_plan_batches_whole_contexts_each_once_per_epoch_reshuffled_and_resumable():
    # 3 contexts a batch: batches straddle windows (20 contexts) and epochs (60) and stay whole contexts
    plan = BatchPlan(3000, 500, 150, 60, data_seed=4, window_rows=1000, context_length=L)
    batches = list(plan.indices())
    ctx = np.concatenate([contexts_of(b) for b in batches])  # 60 batches x 3 contexts = 3 epochs of 60
    for epoch in range(3):
        assert sorted(ctx[60 * epoch : 60 * (epoch + 1)]) == list(range(60))
    assert not np.array_equal(ctx[:60], ctx[60:120])
    assert not np.array_equal(ctx[:60], np.arange(60))  # shuffled, not the store's order
    tail = list(plan.indices(start_step=17))
    assert all(np.array_equal(x, y) for x, y in zip(tail, batches[17:], strict=True))
    other = BatchPlan(3000, 500, 150, 60, data_seed=5, window_rows=1000, context_length=L)
    assert other.sha256() != plan.sha256()
    tokens = BatchPlan(3000, 500, 150, 60, data_seed=4, window_rows=1000)
    with pytest.raises(AssertionError):
        contexts_of(next(tokens.indices()))  # token order mixes contexts


def test_plan_refuses_batches_that_are_not_whole_contexts():
    with pytest.raises(ValueError, match="whole contexts"):
        BatchPlan(3000, 500, 220, 10, data_seed=1, window_rows=1000, context_length=L)


@pytest.fixture(scope="module")
def seq_store(tmp_path_factory):
    rng = np.random.default_rng(0)
    dirs = rng.standard_normal((64, 16))
    codes = rng.exponential(1.0, (6000, 64)) * (rng.random((6000, 64)) < 0.05)
    rows = (codes @ dirs + 0.01 * rng.standard_normal((6000, 16))).astype(np.float32)
    path = tmp_path_factory.mktemp("seq") / "activations.zarr"
    writer = StoreWriter(path, len(rows), 16, chunk_rows=1000)  # 6 chunks, 2 per window, 20 contexts each
    writer.append(rows)
    writer.finish({"model": "m", "revision": "r", "dataset": "d", "hook": "h", "n_train": 5000, "n_heldout": 1000, "context_length": L})
    return path


def test_reader_reads_the_contexts_the_plan_names(seq_store):
    from saeseeds.activations.store import open_store

    st = open_store(seq_store)
    plan = BatchPlan(st.n_train, st.array.chunks[0], 200, 30, data_seed=2, window_rows=2000, context_length=L)
    stored = np.asarray(st.array[:], dtype=np.float32)
    with BatchReader(st, plan, start_step=3) as reader:
        got = list(reader)
    want = list(plan.indices(start_step=3))
    assert len(got) == 27 and all(np.array_equal(g.numpy(), stored[i]) for g, i in zip(got, want))


@pytest.fixture(scope="module")
def seq_run(seq_store, tmp_path_factory):
    out = tmp_path_factory.mktemp("seqrun")
    metrics = train_saes(seq_store, [out / "seed0", out / "seed1"], SAE, TRAIN, seeds=[0, 1], data_seed=9)
    return out, metrics


def test_every_seed_gets_the_same_sequence_batches_and_alone_equals_stacked(seq_store, seq_run, tmp_path):
    out, (m0, m1) = seq_run
    plan = BatchPlan(5000, 1000, 200, 60, data_seed=9, window_rows=2000, context_length=L)
    assert m0["batch_order_sha256"] == m1["batch_order_sha256"] == plan.sha256()
    assert m0["train"]["batch_order"] == "sequences"
    tokens = train_sae(seq_store, tmp_path / "tok", SAE, TrainConfig(**{**TRAIN.__dict__, "batch_order": "tokens"}), seed=1, data_seed=9)
    assert tokens["batch_order_sha256"] != m1["batch_order_sha256"]
    alone = train_sae(seq_store, tmp_path / "alone1", SAE, TRAIN, seed=1, data_seed=9)
    assert (tmp_path / "alone1" / "sae.safetensors").read_bytes() == (out / "seed1" / "sae.safetensors").read_bytes()
    assert alone["fvu"] == m1["fvu"] < 0.5


KILL_SCRIPT = """
import os, signal, sys, torch
from saeseeds.sae.coder import SaeConfig
from saeseeds.sae.train import TrainConfig, train_saes
torch.set_num_threads(1)

def die(step):
    if step == 37:  # after the state saved at step 30, before the end
        os.kill(os.getpid(), signal.SIGKILL)

out = sys.argv[2]
train_saes(sys.argv[1], [out + "/seed0", out + "/seed1"], SaeConfig(num_latents=48, k=4),
           TrainConfig(batch_size=200, max_tokens=200 * 60, warmup_steps=5, lr=3e-3, window_rows=2000,
                       batch_order="sequences", state_every_steps=10),
           seeds=[0, 1], data_seed=9, on_step=die)
"""


def test_killed_sequence_run_resumes_to_identical_bytes(seq_store, seq_run, tmp_path, caplog):
    out, _ = seq_run
    script = tmp_path / "kill.py"
    script.write_text(KILL_SCRIPT)
    target = tmp_path / "run"
    target.mkdir()
    proc = subprocess.run([sys.executable, str(script), str(seq_store), str(target)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert (target / "seed0.state" / "state.pt").exists()
    with caplog.at_level(logging.INFO, logger="saeseeds.sae.train"):
        train_saes(seq_store, [target / "seed0", target / "seed1"], SAE, TRAIN, seeds=[0, 1], data_seed=9)
    assert "resuming at step 30 of 60" in caplog.text
    for seed in ("seed0", "seed1"):
        for name in ("sae.safetensors", "firing.npy", "loss_curve.parquet"):
            assert (target / seed / name).read_bytes() == (out / seed / name).read_bytes(), (seed, name)


def test_sequences_need_contexts_and_whole_context_batches(seq_store, tmp_path):
    rows = np.random.default_rng(1).standard_normal((1200, 8)).astype(np.float32)
    flat = write_store(tmp_path / "flat.zarr", rows, n_heldout=200, attrs={})  # synthetic rows: no contexts
    with pytest.raises(TrainConfigError, match="batch_order='sequences'.*no context_length"):
        train_sae(flat.path, tmp_path / "x", SAE, TrainConfig(batch_size=200, max_tokens=1000, warmup_steps=1, batch_order="sequences"), seed=0, data_seed=1)
    with pytest.raises(TrainConfigError, match="batch_size=220"):
        train_sae(seq_store, tmp_path / "y", SAE, TrainConfig(batch_size=220, max_tokens=2200, warmup_steps=1, batch_order="sequences"), seed=0, data_seed=1)
    with pytest.raises(TrainConfigError, match="batch_order='shuffled'"):
        TrainConfig(batch_order="shuffled")


def test_study_config_refuses_sequences_that_cannot_be_whole_contexts():
    from pathlib import Path

    import yaml

    from saeseeds.config import study
    root = Path(__file__).resolve().parents[2]
    config = yaml.safe_load((root / "config" / "smoke.yaml").read_text())
    config["saes"]["topk-128"]["batch_order"] = "sequences"
    validate_config(config)  # 512 = 8 contexts of 64
    config["saes"]["topk-128"]["batch_size"] = 500
    with pytest.raises(study.ConfigError, match=r"'saes.topk-128.batch_order'.*batch_size 500 is not a multiple of context_length 64"):
        validate_config(config)
