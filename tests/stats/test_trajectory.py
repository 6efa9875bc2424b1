"""Consistency over training: the trajectory table from checkpoint folders, and Fig X2 with the token ablation."""

import json
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from saeseeds.figures.style import load_style, save_chart
from saeseeds.figures.trajectory import SEPARATE, fig_x2_trajectory, separate_runs
from saeseeds.matching.match import match_dictionaries
from saeseeds.matching.matches_file import write_matches
from saeseeds.sae.coder import SaeConfig, SparseCoder
from saeseeds.sae.snapshots import SnapshotError, copy_into, save_snapshot, state_snapshot_dir
from saeseeds.stats.trajectory import COLUMNS, trajectory_table

STYLE_PATH = Path(__file__).resolve().parents[2] / "workflow" / "report" / "figure_style.json"
CFG = SaeConfig(num_latents=24, k=4)
D, THRESHOLD, STEPS = 12, 0.7, [3, 6, 12]


def _coder(seed, perm=None, of=None):
    sae = SparseCoder(D, CFG, seed=seed)
    if of is not None:  # a copy of `of` with its latents permuted: the same dictionary
        with torch.no_grad():
            sae.encoder.weight.copy_(of.encoder.weight[perm])
            sae.encoder.bias.copy_(of.encoder.bias[perm])
            sae.W_dec.copy_(of.W_dec[perm])
    return sae


@pytest.fixture
def sae_set(tmp_path):
    """Seeds 0, 1, 2 at steps 3, 6 and the final 12: seed 1 is seed 0 permuted at every step, seed 2 unrelated.
    Written with the trainer's own snapshot functions; the final step's matches files as the match rule writes them."""
    d, state = tmp_path / "site" / "sae", tmp_path / "state"
    perm = np.random.default_rng(0).permutation(CFG.num_latents)
    coders = {}
    for i, step in enumerate(STEPS):
        zero = _coder(100 + i)
        coders[step] = {0: zero, 1: _coder(1, perm, zero), 2: _coder(200 + i)}
    for seed in (0, 1, 2):
        for step in STEPS[:-1]:
            state_snapshot_dir(state, seed, step).parent.mkdir(parents=True, exist_ok=True)
            save_snapshot(coders[step][seed], state_snapshot_dir(state, seed, step))
        coders[STEPS[-1]][seed].save_to_disk(d / f"seed{seed}")
        copy_into(d / f"seed{seed}", state, seed, STEPS, batch_size=10)
    for a, b in combinations((0, 1, 2), 2):
        ca, cb = coders[STEPS[-1]][a], coders[STEPS[-1]][b]
        table, meta = match_dictionaries(*(x.detach().numpy() for x in (ca.encoder.weight, ca.W_dec, cb.encoder.weight, cb.W_dec)), threshold=THRESHOLD)
        write_matches(table, meta, d / "matches" / f"seed{a}-seed{b}.parquet")
    return d, coders


def _brute(ca, cb):
    """(shared fraction, mean |matched decoder cos|) by scipy's Hungarian on the full cosine matrices."""
    def matched(wa, wb):
        wa, wb = (w.detach().double().numpy() for w in (wa, wb))
        cos = (wa / np.linalg.norm(wa, axis=1, keepdims=True)) @ (wb / np.linalg.norm(wb, axis=1, keepdims=True)).T
        rows, cols = linear_sum_assignment(cos, maximize=True)
        return cols, cos[rows, cols]

    (ep, ec), (dp, dc) = matched(ca.encoder.weight, cb.encoder.weight), matched(ca.W_dec, cb.W_dec)
    return np.mean((ep == dp) & (ec >= THRESHOLD) & (dc >= THRESHOLD)), np.abs(dc).mean()


def test_table_has_one_row_per_checkpoint_equal_to_a_brute_force_matching(sae_set):
    d, coders = sae_set
    table = trajectory_table(d, [2, 0, 1], threshold=THRESHOLD)
    assert list(table.columns) == COLUMNS
    assert list(table.step) == STEPS and list(table.tokens) == [30, 60, 120] and list(table.final) == [False, False, True]
    assert (table.pairs == 3).all()
    for row, step in zip(table.itertuples(), STEPS):
        per_pair = np.array([_brute(coders[step][a], coders[step][b]) for a, b in combinations((0, 1, 2), 2)])
        assert per_pair[0, 0] == 1.0 and per_pair[0, 1] == pytest.approx(1.0)  # the permuted copy is fully shared
        assert row.shared_paper_mean == pytest.approx(per_pair[:, 0].mean())
        assert row.shared_paper_std == pytest.approx(per_pair[:, 0].std())
        assert row.mean_matched_dec_cos == pytest.approx(per_pair[:, 1].mean(), abs=1e-6)
        assert row.mean_matched_dec_cos_std == pytest.approx(per_pair[:, 1].std(), abs=1e-6)


def test_seeds_with_other_steps_or_no_snapshots_fail_naming_the_file(sae_set):
    d, _ = sae_set
    index = d / "seed2" / "snapshots" / "steps.json"
    raw = json.loads(index.read_text())
    raw["checkpoints"] = raw["checkpoints"][1:]
    index.write_text(json.dumps(raw))
    with pytest.raises(SnapshotError, match=r"seed2/snapshots/steps.json: steps differ from seed0's"):
        trajectory_table(d, [0, 1, 2], threshold=THRESHOLD)
    index.unlink()
    with pytest.raises(SnapshotError, match=r"seed2/snapshots/steps.json: missing; the SAE was trained without `snapshots`"):
        trajectory_table(d, [0, 1, 2], threshold=THRESHOLD)
    with pytest.raises(SnapshotError, match="two or more seeds"):
        trajectory_table(d, [0], threshold=THRESHOLD)


def _summary_row(sae, tokens, shared, n=576):
    return {"site": "m/d/layers.6.mlp", "model": "m", "dataset": "d", "hook": "layers.6.mlp", "layer": 6, "stream": "mlp", "sae": sae,
            "arch": "topk", "num_latents": n, "k": 8, "train_tokens": tokens, "shared_paper_mean": shared,
            "shared_paper_ci_lo": shared - 0.02, "shared_paper_ci_hi": shared + 0.02, "chance_init_shared_paper": 0.0,
            "chance_random_shared_paper": 0.001}


def test_separate_runs_are_the_token_ablation_of_the_baseline():
    summary = pd.DataFrame([_summary_row("base", 1_376_256, 0.2), _summary_row("2pass", 458_752, 0.08),
                            _summary_row("4pass", 917_504, 0.15), _summary_row("big", 1_376_256, 0.1, n=1152)])
    runs = separate_runs(summary, "base")
    assert list(runs.sae) == ["2pass", "4pass", "base"] and list(runs.tokens) == [458_752, 917_504, 1_376_256]
    assert list(runs.y) == [0.08, 0.15, 0.2] and set(runs.label) == {f"m/d/layers.6.mlp/base: {SEPARATE}"}
    assert separate_runs(summary[~summary.sae.isin(["2pass", "4pass"])], "base").empty  # no token ablation
    assert separate_runs(summary, "absent").empty


def test_figure_renders_with_and_without_separate_runs(sae_set, tmp_path):
    d, _ = sae_set
    style = load_style(STYLE_PATH)
    trajectories = trajectory_table(d, [0, 1, 2], threshold=THRESHOLD).assign(label="m/d/h/sae: checkpoints of one run")
    summary = pd.DataFrame([_summary_row("base", 120, 0.3), _summary_row("short", 40, 0.1)])
    for name, separate in (("with", separate_runs(summary, "base")), ("without", separate_runs(summary.iloc[:0], "base"))):
        save_chart(fig_x2_trajectory(trajectories, separate, style=style), tmp_path / f"{name}.html", tmp_path / f"{name}.png", ppi=72)
        assert (tmp_path / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert SEPARATE in (tmp_path / "with.html").read_text() and SEPARATE not in (tmp_path / "without.html").read_text()
