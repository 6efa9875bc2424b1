"""Chance levels: untrained SAEs are initialised exactly as training does; a random matching is random."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from saeseeds.sae.stacked import StackedSae
from saeseeds.stats.chance import RANDOM_MATCHING_SEED, chance_levels, init_dictionaries, random_matching
from saeseeds.sae.coder import SaeConfig


def write_checkpoint(folder, enc, dec, cfg):
    folder.mkdir(parents=True)
    (folder / "cfg.json").write_text(json.dumps({**cfg, "d_in": enc.shape[1]}))
    n, d = enc.shape
    save_file({"encoder.weight": torch.tensor(enc), "encoder.bias": torch.zeros(n), "W_dec": torch.tensor(dec),
               "b_dec": torch.zeros(d)}, folder / "sae.safetensors")


def test_init_dictionaries_are_the_training_initialisation(tmp_path):
    cfg = {"num_latents": 64, "arch": "topk", "k": 4, "normalize_decoder": True}
    (tmp_path / "cfg.json").write_text(json.dumps({**cfg, "d_in": 32}))
    stacked = StackedSae(32, SaeConfig(**cfg), [3, 5])  # what train_saes starts from for seeds 3 and 5
    for i, seed in enumerate([3, 5]):
        enc, dec = init_dictionaries(tmp_path / "cfg.json", seed)
        assert np.array_equal(enc, stacked.W_enc[i].detach().numpy())
        assert np.array_equal(dec, stacked.W_dec[i].detach().numpy())


def test_random_matching_of_identical_saes_shares_only_fixed_points():
    rng = np.random.default_rng(0)
    enc, dec = rng.normal(size=(200, 16)).astype(np.float32), rng.normal(size=(200, 16)).astype(np.float32)
    t = random_matching(enc, dec, enc, dec, seed=RANDOM_MATCHING_SEED)
    perm = np.random.default_rng(RANDOM_MATCHING_SEED).permutation(200)
    fixed = perm == np.arange(200)
    assert np.allclose(t["enc_cos"][fixed], 1.0, atol=1e-5)
    # unit random vectors in 16 dims: cos >= 0.7 is rare between different rows
    shared = (t["enc_cos"] >= 0.7) & (t["dec_cos"] >= 0.7)
    assert shared.sum() >= fixed.sum() and shared.mean() < 0.05


def test_chance_levels_of_trained_copies(tmp_path):
    """Two 'trained' SAEs that are the same dictionary: the optimal matching would share all latents,
    untrained SAEs share none, and a random matching almost none."""
    cfg = {"num_latents": 128, "arch": "topk", "k": 4, "normalize_decoder": True}
    rng = np.random.default_rng(1)
    enc = rng.normal(size=(128, 64)).astype(np.float32)
    folders = []
    for seed in (0, 1, 2, 3):
        write_checkpoint(tmp_path / f"seed{seed}", enc, enc, cfg)
        folders.append(tmp_path / f"seed{seed}")
    levels = chance_levels(folders[:3], [0, 1, 2], threshold=0.7)
    assert levels["pairs"] == ["seed0-seed1", "seed0-seed2", "seed1-seed2"]  # every pair of the seeds given
    assert levels["init"] == {"shared_paper": 0.0, "shared_notebook": 0.0, "shared_maxcos": 0.0}
    fixed = (np.random.default_rng(RANDOM_MATCHING_SEED).permutation(128) == np.arange(128)).mean()
    assert levels["random"]["shared_paper"] == pytest.approx(fixed, abs=0.02)
    with pytest.raises(ValueError, match="at least 2 seeds"):
        chance_levels(folders[:1], [0], threshold=0.7)
