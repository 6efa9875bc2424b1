"""Dictionaries of different sizes: rectangular assignment, exact on the dense and the padded sparse path."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from saeseeds.matching.assignment import PAD_COSINE, assign_dense, assign_sparse, unpad
from saeseeds.matching.cosine_sources import DenseCosines, PaddedCosines
from saeseeds.matching.match import match_dictionaries, match_rows
from saeseeds.stats.orphans import masks_from_matches
from saeseeds.matching.similarity import dense_cosines, quantize, unit_rows

import torch


def cosines(a, b):
    ua = a / np.linalg.norm(a, axis=1, keepdims=True)
    ub = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (ua @ ub.T).astype(np.float32)


def scipy_value(sim):
    q = quantize(sim).astype(np.float64)
    r, c = linear_sum_assignment(q, maximize=True)
    return int(q[r, c].sum()), r, c


def value(sim, partner):
    rows = np.flatnonzero(partner >= 0)
    return int(quantize(sim)[rows, partner[rows]].sum())


@pytest.mark.parametrize("shape", [(30, 50), (50, 30), (1, 7), (7, 1), (40, 41)])
def test_dense_rectangular_matches_scipy_and_gives_every_latent_of_the_smaller_side_a_partner(shape):
    rng = np.random.default_rng(sum(shape))
    sim = cosines(rng.standard_normal((shape[0], 6)), rng.standard_normal((shape[1], 6)))
    got = assign_dense(sim)
    best, _, _ = scipy_value(sim)
    assert value(sim, got.partner) == best
    matched = got.partner[got.partner >= 0]
    assert len(matched) == min(shape) and len(set(matched.tolist())) == min(shape)
    assert np.isnan(got.cos[got.partner < 0]).all()
    np.testing.assert_array_equal(got.row_max, sim.max(axis=1))


@pytest.mark.parametrize("n_a,n_b,seed", [(60, 90, 0), (90, 60, 1), (33, 64, 2), (64, 33, 3), (5, 40, 4)])
def test_padded_sparse_path_is_certified_and_equals_scipys_rectangular_optimum(n_a, n_b, seed):
    """Padding with a constant dummy cosine keeps the optimum exact; small k/depth force the repair loop."""
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((n_a, 8)).astype(np.float32), rng.standard_normal((n_b, 8)).astype(np.float32)
    sim = cosines(a, b)
    n = max(n_a, n_b)
    square = np.full((n, n), PAD_COSINE, dtype=np.float32)
    square[:n_a, :n_b] = sim
    padded = PaddedCosines(DenseCosines(square), n_a, n_b, PAD_COSINE)
    result = unpad(assign_sparse(padded, k=2, k_col=2, depth=3, block_rows=16), n_a, n_b)
    assert result.certificate["certified"] and result.certificate["padded_to"] == n
    best, rows, cols = scipy_value(sim)
    assert value(sim, result.partner) == best
    matched = result.partner[result.partner >= 0]
    assert len(matched) == min(n_a, n_b) and len(set(matched.tolist())) == len(matched)
    np.testing.assert_array_equal(result.row_max, sim.max(axis=1))
    # Through match_rows (screened matmul blocks padded with zero rows, both screens): the same value as
    # scipy on the exact cosines, which is what the dense path matches.
    exact = dense_cosines(unit_rows(a, torch.device("cpu")), unit_rows(b, torch.device("cpu")))
    for screen in ("bf16", "fp32", "int8"):
        via_rows = match_rows(a, b, device=torch.device("cpu"), method="sparse", k=2, depth=3, block_rows=16, screen=screen)
        assert via_rows.certificate["certified"]
        assert value(exact, via_rows.partner) == value(exact, assign_dense(exact).partner)
        np.testing.assert_array_equal(via_rows.row_max, exact.max(axis=1))


def test_smaller_permuted_subset_is_fully_shared_from_its_side_and_maps_back():
    rng = np.random.default_rng(7)
    n, d, keep = 80, 24, 50
    enc, dec = rng.standard_normal((n, d)).astype(np.float32), rng.standard_normal((n, d)).astype(np.float32)
    ids = rng.permutation(n)[:keep]  # b holds 50 of a's 80 latents, in shuffled order
    for method in ("dense", "sparse"):
        df, meta = match_dictionaries(enc, dec, enc[ids], dec[ids], method=method, k=4, block_rows=32, device="cpu")
        assert meta["certified"] and meta["n"] == n and meta["n_b"] == keep
        assert meta["shared_fraction_paper_b"] == 1.0 and meta["shared_fraction_paper"] == keep / n
        shared = df[df["shared"]]
        np.testing.assert_array_equal(np.sort(shared["latent"].to_numpy()), np.sort(ids))
        np.testing.assert_array_equal(ids[shared["enc_partner"].to_numpy()], shared["latent"].to_numpy())
        # Seen from b: every latent shared, and the matching read backwards gives the same pairs.
        a_side, b_side = masks_from_matches(df, 0.7, "paper", n_b=keep)
        assert a_side.sum() == keep and b_side.all() and len(b_side) == keep
        back, meta_back = match_dictionaries(enc[ids], dec[ids], enc, dec, method=method, k=4, block_rows=32, device="cpu")
        np.testing.assert_array_equal(ids, back["enc_partner"].to_numpy())
        assert meta_back["shared_fraction_paper"] == 1.0
