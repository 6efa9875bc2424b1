"""One set's consistency files from real checkpoint folders, with and without a ground truth."""

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from saeseeds.stats.consistency import folders_by_seed, seed_of, set_consistency
from saeseeds.matching.match import match_dictionaries
from saeseeds.stats.pwmcc import recovery_correlation
from saeseeds.synthetic.recovery import match_truth, read_truth_matches, write_truth_matches


def write_checkpoint(folder, enc, dec):
    folder.mkdir(parents=True)
    n, d = enc.shape
    (folder / "cfg.json").write_text(json.dumps({"num_latents": n, "d_in": d, "arch": "topk", "k": 2}))
    save_file({"encoder.weight": torch.tensor(enc), "encoder.bias": torch.zeros(n), "W_dec": torch.tensor(dec),
               "b_dec": torch.zeros(d)}, folder / "sae.safetensors")


def test_set_consistency_with_ground_truth(tmp_path):
    rng = np.random.default_rng(0)
    truth = rng.normal(size=(16, 8)).astype(np.float32)
    truth /= np.linalg.norm(truth, axis=1, keepdims=True)
    folders, truth_files, decoders = {}, {}, {}
    for seed, noise in enumerate([0.05, 0.2, 0.6]):
        dec = (truth[rng.permutation(16)] + rng.normal(scale=noise, size=truth.shape)).astype(np.float32)
        enc = dec + rng.normal(scale=0.05, size=dec.shape).astype(np.float32)
        folders[seed] = tmp_path / f"seed{seed}"
        write_checkpoint(folders[seed], enc, dec)
        decoders[seed] = (enc, dec)
        table, meta = match_truth(dec, truth, threshold=0.7, device="cpu")
        truth_files[seed] = tmp_path / "truth" / f"seed{seed}.parquet"
        write_truth_matches(table, meta, truth_files[seed])
    matches, _ = match_dictionaries(*decoders[0], *decoders[1], threshold=0.7, device="cpu")
    matches.to_parquet(tmp_path / "m.parquet")
    pairs, table = set_consistency(folders, (0, 1), tmp_path / "m.parquet", 0.7, device="cpu",
                                   truth_dictionary=truth,
                                   recovered={s: read_truth_matches(f)[1]["recovered_features_fraction"] for s, f in truth_files.items()})
    assert list(zip(pairs.a, pairs.b)) == list(itertools.combinations(range(3), 2))
    # The least noisy pair is the most consistent, and the seed closest to the truth recovers the most.
    assert pairs.set_index(["a", "b"])["pwmcc"].idxmax() == (0, 1)
    assert pairs["truth_mcc_a"].iloc[0] > pairs["truth_mcc_b"].iloc[-1]
    assert recovery_correlation(pairs)["pwmcc_truth_mcc_pearson"] > 0
    assert set(table["method"]) == {"hungarian", "greedy", "maxcos", "sinkhorn"}
    assert (table[["seed_a", "seed_b"]].drop_duplicates().to_numpy() == [[0, 1]]).all()
    with pytest.raises(ValueError, match="recovered fractions for seeds"):
        set_consistency(folders, (0, 1), tmp_path / "m.parquet", 0.7, truth_dictionary=truth, recovered={0: 0.5})


def test_seed_of_reads_checkpoint_and_truth_paths():
    assert seed_of("results/m/d/h/sae/seed12/cfg.json") == 12
    assert seed_of("results/m/d/h/sae/truth/seed3.parquet") == 3
    files = ["x/seed1/cfg.json", "x/seed1/sae.safetensors", "x/seed0/cfg.json"]
    assert folders_by_seed(files) == {1: Path("x/seed1"), 0: Path("x/seed0")}
    with pytest.raises(ValueError, match="no seed"):
        seed_of("results/other/cfg.json")
