"""Ground-truth recovery: planted features are found, planted noise latents are rejected; easy settings agree."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from saeseeds.matching.checkpoints import load_dictionaries
from saeseeds.matching.match import match_dictionaries
from saeseeds.synthetic.recovery import (
    RecoveryError,
    cross_table,
    feature_table,
    latent_table,
    match_truth,
    read_truth_matches,
    summarize,
    union_table,
    write_truth_matches,
)
from saeseeds.sae.coder import SaeConfig
from saeseeds.synthetic.generator import SyntheticConfig, load_ground_truth, write_synthetic_store
from saeseeds.sae.train import TrainConfig, train_saes


def unit(w):
    return w / np.linalg.norm(w, axis=1, keepdims=True)


@pytest.mark.parametrize("n_noise", [10, 50])  # fewer and more latents than true features
def test_planted_features_are_found_and_noise_latents_rejected(n_noise, tmp_path):
    rng = np.random.default_rng(0)
    d, n_true, n_planted = 32, 64, 30
    truth = unit(rng.standard_normal((n_true, d))).astype(np.float32)
    planted = rng.choice(n_true, n_planted, replace=False)
    # Planted latents: a true feature, rescaled and nudged (cosine ~0.95); noise latents: random directions.
    copies = truth[planted] * rng.uniform(0.5, 3, (n_planted, 1)) + 0.02 * rng.standard_normal((n_planted, d))
    decoder = np.vstack([copies, rng.standard_normal((n_noise, d))]).astype(np.float32)
    order = rng.permutation(len(decoder))
    table, meta = match_truth(decoder[order], truth, threshold=0.7)
    is_planted = order < n_planted
    found = table["feature"].to_numpy()
    np.testing.assert_array_equal(found[is_planted], planted[order[is_planted]])
    assert (table.loc[is_planted, "cos"] > 0.9).all()
    assert not table.loc[~is_planted, "recovered"].any()
    assert (found[~is_planted] == -1).all()
    assert meta["recovered_latents"] == n_planted and meta["certificate"]["certified"]
    if n_noise + n_planted > n_true:  # some latents were paired with padding
        assert (table["partner"] == -1).sum() == n_noise + n_planted - n_true
    write_truth_matches(table, meta, tmp_path / "t.parquet")
    back, back_meta = read_truth_matches(tmp_path / "t.parquet")
    pd.testing.assert_frame_equal(back, table)
    assert back_meta == meta


def test_mismatched_dimensions_fail():
    with pytest.raises(RecoveryError, match="one d"):
        match_truth(np.ones((4, 3)), np.ones((4, 5)), threshold=0.7)


def tables():
    """Three seeds, four latents each, five true features, hand-made so every number is known."""
    truth = {
        0: dict(partner=[0, 1, 2, 3], cos=[0.9, 0.95, 0.2, 0.8]),
        1: dict(partner=[1, 0, 4, 3], cos=[0.9, 0.9, 0.9, 0.1]),
        2: dict(partner=[0, 2, -1, 3], cos=[0.99, 0.3, 0.0, 0.3]),
    }
    frames = {}
    for seed, t in truth.items():
        partner, cos = np.array(t["partner"]), np.array(t["cos"], np.float32)
        rec = (partner >= 0) & (cos >= 0.7)
        frames[seed] = pd.DataFrame({"latent": np.arange(4), "partner": partner, "cos": cos, "maxcos": cos,
                                     "feature": np.where(rec, partner, -1), "recovered": rec})
    orphans = pd.DataFrame({"base": np.repeat([0, 1, 2], 4), "latent": np.tile(np.arange(4), 3),
                            "n_shared": [2, 2, 0, 1, 2, 2, 0, 0, 2, 0, 0, 1], "firing_frequency": np.full(12, 0.1)})
    return frames, orphans


def test_tables_count_recovery_union_and_orphans():
    frames, orphans = tables()
    latents = latent_table(frames, orphans)
    features = feature_table(latents, np.array([0.5, 0.3, 0.1, 0.05, 0.05]), np.zeros(5), np.full(5, -1))
    assert features["n_seeds"].tolist() == [3, 2, 0, 1, 1]
    assert features["recovered_by"].tolist() == ["0,1,2", "0,1", "", "0", "1"]
    union = union_table(features, [0, 1, 2])
    assert len(union) == 7
    assert union.set_index("members").loc["0", "recovered_fraction"] == pytest.approx(3 / 5)
    assert union.set_index("members").loc["2", "recovered_fraction"] == pytest.approx(1 / 5)
    assert union.set_index("members").loc["0,1,2", "recovered_fraction"] == pytest.approx(4 / 5)
    cross = cross_table(latents).set_index("n_shared")
    assert cross.loc[0, "latents"] == 5 and cross.loc[0, "true_feature"] == 1  # orphans: only seed 1's latent 2
    assert cross.loc[2, "true_fraction"] == 1.0 and cross.loc[1, "latents"] == 2
    s = summarize(latents, features, union)
    assert s["recovered_per_seed_mean"] == pytest.approx(np.mean([3 / 5, 3 / 5, 1 / 5]))
    assert s["recovered_union_all"] == pytest.approx(4 / 5)
    assert s["orphan_true_fraction"] == pytest.approx(1 / 5)
    assert s["orphan_true_unique_fraction"] == pytest.approx(1.0)  # feature 4: only seed 1 has it


def test_latent_table_rejects_other_seeds():
    frames, orphans = tables()
    with pytest.raises(RecoveryError, match="cover seeds"):
        latent_table({0: frames[0], 1: frames[1]}, orphans)


def test_easy_setting_every_seed_recovers_almost_all_and_seeds_agree(tmp_path):
    """Orthogonal features, n_true = latents, uniform firing, low noise: the answer is known."""
    torch.set_num_threads(1)
    cfg = SyntheticConfig(d=32, n_true=32, mean_active=2.0, zipf_exponent=0.0, noise_std=0.01, orthogonal=True, seed=3)
    write_synthetic_store(tmp_path / "acts.zarr", tmp_path / "truth.npz", cfg, n_tokens=36_864, n_heldout=4_096)
    seeds = [0, 1, 2]
    dirs = [tmp_path / f"seed{s}" for s in seeds]
    train_saes(tmp_path / "acts.zarr", dirs, SaeConfig(arch="topk", num_latents=32, k=3),
               TrainConfig(batch_size=256, max_tokens=8 * 32_768, lr=5e-3, warmup_steps=20), seeds=seeds, data_seed=3)
    truth, _ = load_ground_truth(tmp_path / "truth.npz")
    weights = [load_dictionaries(d) for d in dirs]
    recovered = []
    for enc, dec in weights:
        table, _ = match_truth(dec, truth.dictionary, threshold=0.9)
        assert table["recovered"].mean() >= 0.9
        recovered.append(set(table.loc[table["recovered"], "feature"]))
    assert len(set.union(*recovered)) == 32
    for i in range(3):
        for j in range(i + 1, 3):
            _, meta = match_dictionaries(*weights[i], *weights[j], threshold=0.7)
            assert meta["shared_fraction_paper"] >= 0.85


def test_fig4_draws_the_union_curve_the_frequency_bins_and_the_orphan_split(tmp_path):
    from pathlib import Path

    from saeseeds.figures.style import load_style, save_chart
    from saeseeds.figures.recovery import figX1_recovery, frequency_bins, union_curve

    frames, orphans = tables()
    latents = latent_table(frames, orphans)
    features = feature_table(latents, np.array([0.5, 0.3, 0.1, 0.05, 0.05]), np.zeros(5), np.full(5, -1))
    union = union_table(features, [0, 1, 2])
    label = lambda t: t.assign(label="synthetic/x/sae")[["label", *t.columns]]  # noqa: E731
    curve = union_curve(label(union))
    assert curve["mean"].tolist() == pytest.approx([(3 + 3 + 1) / 15, (4 + 3 + 3) / 15, 4 / 5])
    bins = frequency_bins(label(features), bins=2)
    union_rows = bins[bins["recovered by"] == "union of all seeds"]
    assert union_rows["features"].sum() == 5 and union_rows["fraction"].tolist() == pytest.approx([2 / 3, 1.0])
    style = load_style(Path(__file__).resolve().parents[2] / "workflow" / "report" / "figure_style.json")
    chart = figX1_recovery(label(latents), label(features), label(union), style=style)
    spec = json.dumps(chart.to_dict())
    assert "20.0% are true features" in spec and "one seed 46.7%, all 3 seeds 80.0%" in spec
    save_chart(chart, tmp_path / "f.html", tmp_path / "f.png", ppi=72)
    assert (tmp_path / "f.png").read_bytes().startswith(b"\x89PNG")
