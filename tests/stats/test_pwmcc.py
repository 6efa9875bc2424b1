"""PW-MCC: exact |cos| Hungarian of decoder rows, against brute force over permutations."""

import itertools

import numpy as np
import pytest

from saeseeds.stats.pwmcc import add_truth, match_abs, pair_mcc, pair_table, recovery_correlation, truth_mcc


def brute_force_mcc(wa, wb):
    """The definition: max over every permutation of the mean |cos| of matched rows."""
    ua = wa / np.linalg.norm(wa, axis=1, keepdims=True)
    ub = wb / np.linalg.norm(wb, axis=1, keepdims=True)
    c = np.abs(ua @ ub.T)
    n = len(wa)
    return max(c[np.arange(n), list(p)].mean() for p in itertools.permutations(range(n)))


@pytest.mark.parametrize("seed", range(6))
def test_pair_mcc_equals_brute_force_on_small_dictionaries(seed):
    rng = np.random.default_rng(seed)
    n, d = rng.integers(2, 7), 5
    wa, wb = rng.normal(size=(n, d)), rng.normal(size=(n, d))
    mcc, certified = pair_mcc(wa, wb, device="cpu")
    assert certified
    assert mcc == pytest.approx(brute_force_mcc(wa, wb), abs=1e-6)


def test_a_permuted_copy_with_flipped_signs_has_mcc_one():
    rng = np.random.default_rng(1)
    wa = rng.normal(size=(6, 4))
    perm = rng.permutation(6)
    signs = np.array([1, -1, 1, -1, -1, 1])[:, None]
    wb = wa[perm] * signs * 3.0  # scale does not matter either
    mcc, _ = pair_mcc(wa, wb, device="cpu")
    assert mcc == pytest.approx(1.0, abs=1e-6)
    # partner of row i of a is where i went in b
    assert match_abs(wa, wb, device="cpu").partner.tolist() == np.argsort(perm).tolist()


def test_abs_differs_from_signed_matching_where_a_row_is_negated():
    # Row 0 of b is -row 0 of a: |cos| pairs them (1.0); signed cosine would call them opposite (-1).
    wa = np.eye(3)
    wb = np.array([[-1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    assert pair_mcc(wa, wb, device="cpu")[0] == pytest.approx(1.0)


def test_sparse_certified_path_gives_the_dense_value():
    rng = np.random.default_rng(3)
    wa = rng.normal(size=(40, 8))
    wb = np.vstack([wa[:20] * -1, rng.normal(size=(20, 8))])
    dense = match_abs(wa, wb, device="cpu")
    sparse = match_abs(wa, wb, device="cpu", dense_max_n=10, block_rows=16)
    assert sparse.certificate["certified"] and sparse.certificate["method"] == "sparse"
    assert float(sparse.cos.sum()) == pytest.approx(float(dense.cos.sum()), abs=1e-5)


def test_pair_table_has_every_pair_and_truth_columns_correlate():
    rng = np.random.default_rng(4)
    truth = rng.normal(size=(5, 6))
    # Seeds closer to the truth (smaller noise) should be more consistent with each other.
    decoders = {s: truth + rng.normal(scale=0.05 + 0.3 * s, size=truth.shape) for s in range(4)}
    table = pair_table(decoders, device="cpu")
    assert list(zip(table.a, table.b)) == list(itertools.combinations(range(4), 2))
    assert table["pwmcc"].between(0, 1).all() and table["certified"].all()
    mcc = {s: truth_mcc(w, truth, device="cpu") for s, w in decoders.items()}
    assert mcc[0] > mcc[3]
    full = add_truth(table, {s: 1.0 - 0.2 * s for s in range(4)}, mcc)
    corr = recovery_correlation(full)
    assert corr["pwmcc_recovered_pearson"] > 0.5 and corr["pwmcc_truth_mcc_spearman"] > 0.5
    assert recovery_correlation(table) == {}


def test_truth_mcc_pads_a_smaller_decoder_with_zero_rows():
    truth = np.eye(4)
    assert truth_mcc(np.eye(4)[:2] * -2, truth, device="cpu") == pytest.approx(0.5)


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match="one d"):
        pair_mcc(np.ones((3, 2)), np.ones((3, 4)))
    with pytest.raises(ValueError, match="non-empty"):
        pair_mcc(np.ones((0, 2)), np.ones((3, 2)))
    with pytest.raises(ValueError, match="at least 2 seeds"):
        pair_table({0: np.eye(2)})


def test_pwmcc_of_decoders_of_different_sizes_matches_scipy_on_the_rectangle_dense_and_sparse():
    """External sets compare 48 with 64 latents: every latent of the smaller side gets a partner, both paths agree."""
    from scipy.optimize import linear_sum_assignment

    rng = np.random.default_rng(3)
    big = rng.normal(size=(64, 16)).astype(np.float32)
    small = np.vstack([-big[rng.permutation(64)[:40]], rng.normal(size=(8, 16))]).astype(np.float32)
    unit = lambda w: w / np.linalg.norm(w, axis=1, keepdims=True)  # noqa: E731
    sim = np.abs(unit(small) @ unit(big).T)
    rows, cols = linear_sum_assignment(sim, maximize=True)
    expected = float(sim[rows, cols].mean())
    for dense_max_n in (4096, 8):  # dense scipy, then the sparse certified path with padding
        for a, b in ((small, big), (big, small)):
            mcc, certified = pair_mcc(a, b, dense_max_n=dense_max_n, block_rows=16)
            assert certified and mcc == pytest.approx(expected, abs=1e-5)
