"""Greedy, max-cos and Sinkhorn matchings next to the exact Hungarian one."""

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import linear_sum_assignment

from saeseeds.matching.alternatives import (
    COLUMNS,
    LOG_DOMAIN_EXPONENT,
    SINKHORN_REG,
    compare_matchings,
    compare_similarities,
    greedy_partners,
    maxcos_partners,
    sinkhorn_partners,
    sinkhorn_plan,
)


def unit(w):
    return w / np.linalg.norm(w, axis=1, keepdims=True)


def test_sinkhorn_recovers_a_permutation_of_a_copy():
    rng = np.random.default_rng(0)
    a = unit(rng.normal(size=(50, 16)))
    perm = rng.permutation(50)
    b = a[perm]
    sim = a @ b.T
    expected = np.argsort(perm)  # row i of a sits at position argsort(perm)[i] in b
    assert sinkhorn_partners(sim).tolist() == expected.tolist()
    plan = sinkhorn_plan(sim)
    assert plan.sum(axis=1) == pytest.approx(np.full(50, 1 / 50), abs=1e-6)  # uniform marginals


def test_plain_sinkhorn_gives_the_log_domain_plan_and_falls_back_where_the_kernel_underflows():
    import ot

    rng = np.random.default_rng(3)
    a = unit(rng.normal(size=(80, 8)))
    b = unit(a[rng.permutation(80)] + 0.4 * rng.normal(size=(80, 8)))
    sim = a @ b.T
    uniform = np.full(80, 1 / 80)
    log_plan = ot.sinkhorn(uniform, uniform, 1 - sim, SINKHORN_REG, method="sinkhorn_log", numItermax=2000,
                           stopThr=1e-9, warn=False)
    assert np.abs(sinkhorn_plan(sim) - log_plan).max() < 1e-12
    # cost / reg up to 2 / 1e-3 = 2000 > LOG_DOMAIN_EXPONENT: the log-domain solver, still a finite plan
    tiny = sinkhorn_plan(sim, reg=1e-3, iterations=200)
    assert np.isfinite(tiny).all() and tiny.sum() == pytest.approx(1.0, abs=1e-6)
    assert 2 / 1e-3 > LOG_DOMAIN_EXPONENT


def test_greedy_equals_hungarian_when_the_matrix_is_diagonal_dominant():
    rng = np.random.default_rng(1)
    sim = rng.uniform(-0.3, 0.3, size=(30, 30)) + np.diag(rng.uniform(0.7, 1.0, 30))
    perm = rng.permutation(30)
    sim = sim[:, perm]
    _, exact = linear_sum_assignment(sim, maximize=True)
    assert greedy_partners(sim).tolist() == exact.tolist()


def test_greedy_is_a_bijection_and_can_lose_to_hungarian():
    # Greedy takes (0, 0) = 0.9 first and is left with (1, 1) = 0.0; Hungarian takes 0.8 + 0.8.
    sim = np.array([[0.9, 0.8], [0.8, 0.0]])
    assert greedy_partners(sim).tolist() == [0, 1]
    assert linear_sum_assignment(sim, maximize=True)[1].tolist() == [1, 0]
    rng = np.random.default_rng(2)
    assert sorted(greedy_partners(rng.normal(size=(40, 40))).tolist()) == list(range(40))


def test_maxcos_is_not_exclusive():
    sim = np.array([[0.9, 0.1], [0.8, 0.2]])
    assert maxcos_partners(sim).tolist() == [0, 0]


def hand_case():
    """Three latents. Encoder: latent 0 is the same in both seeds; latents 1 and 2 form the block
    [[0.9, 0.8], [0.8, 0.0]], where greedy takes 0.9 first and is left with 0.0, Hungarian takes 0.8 + 0.8,
    and max-cos sends both to latent 1. Decoder: the identity, on which every method agrees."""
    enc = np.array([[1.0, 0.0, 0.0], [0.0, 0.9, 0.8], [0.0, 0.8, 0.0]])
    dec = np.eye(3)
    matches = pd.DataFrame({"latent": np.arange(3), "enc_partner": [0, 2, 1], "enc_cos": [1.0, 0.8, 0.8],
                            "dec_partner": [0, 1, 2], "dec_cos": [1.0, 1.0, 1.0]})
    return {"encoder": enc, "decoder": dec}, matches


def test_agreement_fractions_on_a_hand_case():
    sims, matches = hand_case()
    table = compare_similarities(sims, matches, 0.7)
    assert list(table.columns) == list(COLUMNS)
    got = table.set_index(["method", "side"])
    expected = {
        # (method, side): (above_threshold, agrees_with_hungarian, agrees_above_threshold, injective)
        ("hungarian", "encoder"): (1.0, 1.0, 1.0, 1.0),
        ("hungarian", "both"): (1 / 3, 1.0, 1.0, 1.0),  # partners differ on both sides for latents 1, 2
        ("greedy", "encoder"): (2 / 3, 1 / 3, 1 / 3, 1.0),  # [0, 1, 2] with cosines 1, 0.9, 0.0
        ("greedy", "decoder"): (1.0, 1.0, 1.0, 1.0),
        ("greedy", "both"): (2 / 3, 1 / 3, 1 / 2, 1.0),  # same partner on both sides for all; latent 2 below
        ("maxcos", "encoder"): (1.0, 2 / 3, 2 / 3, 2 / 3),  # [0, 1, 1] with cosines 1, 0.9, 0.8
        ("maxcos", "both"): (2 / 3, 2 / 3, 1 / 2, 2 / 3),
        ("sinkhorn", "encoder"): (1.0, 1.0, 1.0, 1.0),  # the plan concentrates on Hungarian's pairs
        ("sinkhorn", "both"): (1 / 3, 1.0, 1.0, 1.0),
    }
    for key, values in expected.items():
        row = got.loc[key]
        actual = (row.above_threshold, row.agrees_with_hungarian, row.agrees_above_threshold, row.injective)
        assert actual == pytest.approx(values), key


def test_compare_matchings_reads_the_checkpoint_rows():
    rng = np.random.default_rng(5)
    enc_a, dec_a = rng.normal(size=(12, 6)), rng.normal(size=(12, 6))
    perm = rng.permutation(12)
    enc_b, dec_b = enc_a[perm] * 2, dec_a[perm]
    inv = np.argsort(perm)
    matches = pd.DataFrame({"latent": np.arange(12), "enc_partner": inv, "enc_cos": np.ones(12),
                            "dec_partner": inv, "dec_cos": np.ones(12)})
    table = compare_matchings(enc_a, dec_a, enc_b, dec_b, matches, 0.7, device="cpu")
    assert (table["agrees_with_hungarian"] == 1.0).all() and (table["above_threshold"] == 1.0).all()


def test_large_sets_keep_only_the_exact_rows():
    _, matches = hand_case()
    w = np.eye(3)
    table = compare_matchings(w, w, w, w, matches, 0.7, device="cpu", max_latents=2)
    assert set(table["method"]) == {"hungarian"}
