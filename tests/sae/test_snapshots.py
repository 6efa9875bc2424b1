"""Tests of checkpoints along training: where they are taken, that they are the run's own weights at
that step, that they change nothing else, and that a killed run resumes to the same bytes."""

import json
import logging
import re
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

from saeseeds.sae.stacked import StackedSae
from saeseeds.sae.coder import SaeConfig, SparseCoder
from saeseeds.sae.snapshots import SnapshotError, list_checkpoints, snapshot_steps
from saeseeds.activations.store import write_store
from saeseeds.sae.train import TrainConfig, TrainConfigError, train_sae, train_saes

D = 16
SAE = SaeConfig(num_latents=48, k=4)
STEPS = 80
TRAIN = TrainConfig(batch_size=128, max_tokens=128 * STEPS, warmup_steps=5, lr=3e-3)
SNAP = TrainConfig(**{**TRAIN.__dict__, "snapshots": 4})  # steps 10, 20, 40 and the final 80

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _rows(n, seed=0):
    rng = np.random.default_rng(seed)
    dirs = rng.standard_normal((32, D))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    codes = rng.exponential(1.0, (n, 32)) * (rng.random((n, 32)) < 0.08)
    return (codes @ dirs + 0.01 * rng.standard_normal((n, D))).astype(np.float32)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("store") / "activations.zarr"
    write_store(path, _rows(3000), n_heldout=500, attrs={})
    return path


@pytest.fixture(scope="module")
def with_snapshots(store, tmp_path_factory):
    """Two seeds trained stacked with 4 snapshots; returns their folders."""
    root = tmp_path_factory.mktemp("snap")
    dirs = [root / "seed0", root / "seed1"]
    train_saes(store, dirs, SAE, SNAP, seeds=[0, 1], data_seed=3)
    return dirs


def test_steps_halve_from_the_end_and_include_the_final_step():
    assert snapshot_steps(1344, 6) == [42, 84, 168, 336, 672, 1344]
    assert snapshot_steps(80, 4) == [10, 20, 40, 80]
    assert snapshot_steps(80, 1) == [80]
    assert snapshot_steps(80, 0) == []
    steps = snapshot_steps(1000, 5)
    ratios = np.diff(np.log2(steps))
    assert steps[-1] == 1000 and np.allclose(ratios, 1.0, atol=0.02)
    with pytest.raises(SnapshotError, match=r"snapshots=9: 80 training steps hold at most 7"):
        snapshot_steps(80, 9)
    for num_steps in range(1, 300):  # never two snapshots at one step, whatever the rounding
        for n in range(1, 12):
            try:
                steps = snapshot_steps(num_steps, n)
            except SnapshotError as err:
                most = int(re.search(r"at most (\d+)", str(err)).group(1))
                assert most < n and len(snapshot_steps(num_steps, most)) == most
                continue
            assert len(steps) == n and steps[0] >= 1 and steps[-1] == num_steps and all(np.diff(steps) > 0)
    with pytest.raises(SnapshotError, match=r"snapshots=4: 5 training steps hold at most 3"):
        snapshot_steps(5, 4)  # 5/8 and 5/4 both round to step 1
    with pytest.raises(SnapshotError, match="snapshots=-1"):
        snapshot_steps(80, -1)


def test_too_many_snapshots_fail_before_training_naming_the_key(store, tmp_path):
    with pytest.raises(TrainConfigError, match="snapshots=12"):
        train_sae(store, tmp_path / "o", SAE, TrainConfig(**{**TRAIN.__dict__, "snapshots": 12}), seed=0, data_seed=3)
    with pytest.raises(TrainConfigError, match="snapshots"):
        TrainConfig(snapshots=-2)
    assert not (tmp_path / "o").exists()


def test_snapshot_folders_are_listed_with_their_tokens(with_snapshots):
    for seed, folder in enumerate(with_snapshots):
        listed = list_checkpoints(folder)
        assert [c["step"] for c in listed] == [10, 20, 40, 80]
        assert [c["tokens"] for c in listed] == [1280, 2560, 5120, 10240]
        assert [c["final"] for c in listed] == [False, False, False, True]
        assert listed[-1]["path"] == folder  # the final step is the checkpoint itself, not a copy
        assert sorted(p.name for p in (folder / "snapshots").iterdir()) == ["step10", "step20", "step40", "steps.json"]
        for c in listed[:-1]:
            assert sorted(p.name for p in c["path"].iterdir()) == ["cfg.json", "sae.safetensors"]
            assert SparseCoder.load_from_disk(c["path"]).cfg == SAE
        assert json.loads((folder / "snapshots" / "steps.json").read_text())["seed"] == seed


def test_snapshots_leave_the_final_checkpoint_unchanged(store, with_snapshots, tmp_path):
    train_sae(store, tmp_path / "plain", SAE, TRAIN, seed=1, data_seed=3)
    for name in ("sae.safetensors", "firing.npy", "loss_curve.parquet"):
        assert (tmp_path / "plain" / name).read_bytes() == (with_snapshots[1] / name).read_bytes(), name
    assert not (tmp_path / "plain" / "snapshots").exists()


def _stop_after(step_to_stop):
    def hook(step):
        if step == step_to_stop:
            raise RuntimeError("stop")

    return hook


def _checkpoint_from_state(state_dir, d_in, seeds, out):
    """Writes seed 0's SAE from a saved training state as a checkpoint folder (what the run held at that step)."""
    payload = torch.load(state_dir / "state.pt", weights_only=True)
    model = StackedSae(d_in, SAE, seeds)
    model.load_state_dict(payload["model"])
    model.to_coders()[0].save_to_disk(out)
    return int(payload["step"])


def test_snapshot_equals_the_same_run_stopped_at_that_step(store, with_snapshots, tmp_path):
    # the same max_tokens (same schedule), stopped once its state after step 20 is saved
    cfg = TrainConfig(**{**TRAIN.__dict__, "state_every_steps": 20})
    with pytest.raises(RuntimeError, match="stop"):
        train_sae(store, tmp_path / "x", SAE, cfg, seed=0, data_seed=3, state_dir=tmp_path / "st", on_step=_stop_after(20))
    assert _checkpoint_from_state(tmp_path / "st", D, [0], tmp_path / "stopped") == 20
    snapshot = with_snapshots[0] / "snapshots" / "step20"
    assert (tmp_path / "stopped" / "sae.safetensors").read_bytes() == (snapshot / "sae.safetensors").read_bytes()
    assert (tmp_path / "stopped" / "cfg.json").read_bytes() == (snapshot / "cfg.json").read_bytes()


def test_snapshot_differs_from_a_separate_run_with_that_budget(store, with_snapshots, tmp_path):
    # 20 steps as a whole run: its lr decays to zero by step 20, so it is another SAE than the snapshot
    short = TrainConfig(**{**TRAIN.__dict__, "max_tokens": 128 * 20})
    train_sae(store, tmp_path / "short", SAE, short, seed=0, data_seed=3)
    a = SparseCoder.load_from_disk(tmp_path / "short")
    b = SparseCoder.load_from_disk(with_snapshots[0] / "snapshots" / "step20")
    assert not torch.equal(a.W_dec, b.W_dec)


def test_signum_snapshot_holds_the_averaged_weights_and_changes_nothing(store, tmp_path):
    cfg = TrainConfig(batch_size=128, max_tokens=128 * 40, optimizer="signum", lr=1e-3)
    train_sae(store, tmp_path / "plain", SAE, cfg, seed=0, data_seed=3)
    train_sae(store, tmp_path / "snap", SAE, TrainConfig(**{**cfg.__dict__, "snapshots": 2}), seed=0, data_seed=3)
    assert (tmp_path / "plain" / "sae.safetensors").read_bytes() == (tmp_path / "snap" / "sae.safetensors").read_bytes()
    # taking the snapshot swaps the averaged weights in and back out: the final bytes above prove "back out"
    mid = SparseCoder.load_from_disk(tmp_path / "snap" / "snapshots" / "step20")
    assert torch.isfinite(mid.W_dec).all() and not torch.equal(mid.W_dec, SparseCoder.load_from_disk(tmp_path / "snap").W_dec)


KILL_SCRIPT = """
import os, signal, sys, torch
from saeseeds.sae.coder import SaeConfig
from saeseeds.sae.train import TrainConfig, train_saes
torch.set_num_threads(1)

def die(step):
    if step == 45:  # after the snapshots at 10, 20 and 40 and the state saved at 30, before the end
        os.kill(os.getpid(), signal.SIGKILL)

train_saes(sys.argv[1], [sys.argv[2], sys.argv[3]], SaeConfig(num_latents=48, k=4),
           TrainConfig(batch_size=128, max_tokens=128 * 80, warmup_steps=5, lr=3e-3, state_every_steps=30, snapshots=4),
           seeds=[0, 1], data_seed=3, on_step=die)
"""


def test_sigkill_then_restart_resumes_to_identical_bytes_snapshots_included(store, with_snapshots, tmp_path, caplog):
    script = tmp_path / "kill.py"
    script.write_text(KILL_SCRIPT)
    targets = [tmp_path / "seed0", tmp_path / "seed1"]
    proc = subprocess.run([sys.executable, str(script), str(store), *map(str, targets)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert not targets[0].exists()
    assert (tmp_path / "seed0.state" / "snapshots" / "seed1" / "step40" / "sae.safetensors").exists()
    with caplog.at_level(logging.INFO, logger="saeseeds.sae.train"):
        train_saes(store, targets, SAE, SNAP, seeds=[0, 1], data_seed=3)  # state_every_steps is not part of the state's identity
    assert "resuming at step 30 of 80" in caplog.text
    for got, want in zip(targets, with_snapshots):
        names = ["sae.safetensors", "snapshots/steps.json"] + [f"snapshots/step{t}/{f}" for t in (10, 20, 40) for f in ("cfg.json", "sae.safetensors")]
        for name in names:
            assert (got / name).read_bytes() == (want / name).read_bytes(), name
    assert not (tmp_path / "seed0.state").exists()


def test_plan_counts_snapshot_training_rules_as_train():
    from saeseeds.plan.planner import rule_family

    assert rule_family("train_seeds_0_1_2_snapshots") == rule_family("train_seeds_0_1_2") == "train"
    assert rule_family("trajectory") == "trajectory"
    assert rule_family("match_pairs_12") == "match" and rule_family("functional_loss_0") == "functional_loss"
