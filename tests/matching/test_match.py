"""Exact matching: dense and sparse agree with brute force and with each other; certificate; files."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.numpy import save_file

from saeseeds.matching.assignment import assign_dense, assign_sparse
from saeseeds.matching.augmenting import AugmentingSolver
from saeseeds.matching.duals import suspects
from saeseeds.matching.checkpoints import CheckpointError, load_dictionaries
from saeseeds.matching.match import match_dictionaries
from saeseeds.matching.screen_choice import screen_source
from saeseeds.matching.matches_file import COLUMNS, MatchesError, read_matches, write_matches
from saeseeds.matching.cosine_sources import DenseCosines, ErrorModel, exact_cosines
from saeseeds.matching.cosine_sources import prefilter
from saeseeds.matching.similarity import Candidates, candidate_pass, column_candidates, column_max, dense_cosines, quantize, unit_rows



def brute_force_value(sim: np.ndarray) -> int:
    """Returns the best summed quantised profit over all n! permutations."""
    q = quantize(sim)
    n = len(q)
    return max(int(q[np.arange(n), list(p)].sum()) for p in itertools.permutations(range(n)))


def objective(sim: np.ndarray, partner: np.ndarray) -> int:
    q = quantize(sim)
    return int(q[np.arange(len(q)), partner].sum())


def random_dicts(rng, n, d, shared=0.4, noise=0.1):
    """Returns (a, b, perm): b holds noisy copies of a `shared` fraction of a's rows at perm positions."""
    a = rng.standard_normal((n, d)).astype(np.float32)
    b = rng.standard_normal((n, d)).astype(np.float32)
    m = int(shared * n)
    perm = rng.permutation(n)
    b[perm[:m]] = a[:m] + noise * rng.standard_normal((m, d)).astype(np.float32)
    return a, b, perm


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7])
def test_dense_and_sparse_equal_brute_force_on_small_instances(n):
    rng = np.random.default_rng(n)
    for _ in range(6):
        sim = rng.uniform(-1, 1, (n, n)).astype(np.float32)
        best = brute_force_value(sim)
        assert objective(sim, assign_dense(sim).partner) == best
        sparse = assign_sparse(DenseCosines(sim), k=1, k_col=1, depth=1, block_rows=max(1, n // 2))
        assert sparse.certificate["certified"]
        assert objective(sim, sparse.partner) == best
        assert sorted(sparse.partner) == list(range(n))


def trap_instance(rng, n, hubs):
    """Returns a matrix whose rows' and columns' best entries all point at a few hub rows/columns.

    The candidate graph then holds no good perfect matching: the true optimum uses pairs far
    down every row's ranking, which only the certificate can bring in.
    """
    sim = rng.uniform(-0.3, 0.3, (n, n)).astype(np.float32)
    sim[:, :hubs] = rng.uniform(0.8, 0.9, (n, hubs))
    sim[:hubs, :] = rng.uniform(0.8, 0.9, (hubs, n))
    return sim


def chain_instance(rng, n):
    """Returns cosines of correlated dictionaries: b_j mixes a_j and a_{j+1}, so neighbours compete."""
    a = rng.standard_normal((n, 16)).astype(np.float32)
    b = a + 0.9 * np.roll(a, -1, axis=0) + 0.3 * rng.standard_normal((n, 16)).astype(np.float32)
    ua, ub = unit_rows(a, torch.device("cpu")), unit_rows(b, torch.device("cpu"))
    return (ua @ ub.T).numpy()


class NoisyScreen(DenseCosines):
    """Exact cosines from a matrix, screened with uniform noise of up to `err` (its stated error model).

    Stands in for any screen (bf16, fp32, another BLAS) at its worst: the certificate may only rely on
    the bound, never on the screen ranking pairs as the exact values do.
    """

    def __init__(self, sim, err, rng):
        super().__init__(sim)
        noisy = self.sim + torch.as_tensor(rng.uniform(-err, err, sim.shape).astype(np.float32))
        # float32 rounding of the sum may step past err by an ulp; the model allows 2 ulps more.
        self.noisy = noisy
        self.error = ErrorModel(0.0, np.full(self.n, err + 2**-22), np.zeros(self.n))
        self.precision = "noisy"

    def screen(self, rows):
        return self.noisy[torch.as_tensor(np.asarray(rows, dtype=np.int64))]


def test_sparse_equals_scipy_optimum_on_hundreds_of_random_and_adversarial_instances():
    rng = np.random.default_rng(0)
    kinds = {
        "uniform": lambda n: rng.uniform(-1, 1, (n, n)).astype(np.float32),
        "ties": lambda n: (rng.integers(-2, 3, (n, n)) / 2).astype(np.float32),
        "trap": lambda n: trap_instance(rng, n, int(rng.integers(1, 4))),
        "chain": lambda n: chain_instance(rng, n),
        "low_rank": lambda n: (rng.standard_normal((n, 2)) @ rng.standard_normal((2, n)) / 3).astype(np.float32),
    }
    seen = []
    for trial in range(300):
        kind = list(kinds)[trial % len(kinds)]
        n = int(rng.integers(2, 48))
        sim = kinds[kind](n)
        k = int(rng.integers(1, min(n, 4) + 1))
        dense = assign_dense(sim)
        depth = int(rng.integers(k, n + 1))
        # Every other instance screens through noise as large as a bf16 screen's error or larger.
        source = DenseCosines(sim) if trial % 2 else NoisyScreen(sim, float(rng.choice([4e-3, 3e-2])), rng)
        # Rows screened again are read from the pass's 16-bit copy in half the instances, multiplied again in the rest.
        sparse = assign_sparse(
            source, k=k, k_col=int(rng.integers(1, k + 1)), depth=depth, block_rows=int(rng.integers(k, n + 1)),
            keep_screen=trial % 4 < 2,
        )
        cert = sparse.certificate
        assert cert["certified"], (trial, kind, cert)
        assert cert["duality_gap"] == 0
        assert objective(sim, sparse.partner) == objective(sim, dense.partner), (trial, kind)
        assert cert["objective_quantised"] == dense.certificate["objective_quantised"]
        np.testing.assert_array_equal(sparse.cos, sim[np.arange(n), sparse.partner])
        np.testing.assert_array_equal(sparse.row_max, sim.max(axis=1))
        seen.append((trial % 2, cert["rounds"], cert["edges_from_reserve"], cert["rows_rescreened"],
                     cert["solves"] - cert["rounds"], cert["rows_kept_clear"], cert["screen_stored"]))
    # The adversarial kinds must really have exercised the repair loop, both sources of edges, re-solves
    # after matched bounds fell to their exact values, and rows a watch kept from a second rescreen, with
    # exact and with noisy screens.
    for noisy in (0, 1):
        _, rounds, from_reserve, rescreened, resolves, kept_clear, stored = np.array([x for x in seen if x[0] == noisy]).T
        assert rounds.max() >= 2 and from_reserve.max() > 0 and rescreened.max() > 0
        assert resolves.max() > 0 and kept_clear.max() > 0, (resolves.max(), kept_clear.max())
        # Rows screened again were read from the stored copy in some instances and multiplied again in others.
        assert (rescreened[stored == 1] > 0).any() and (rescreened[stored == 0] > 0).any()


def test_a_screen_that_understates_its_error_can_give_a_wrong_matching():
    # The proof rests on the error model: noisy screens with a stated error of 0 mislead the certificate
    # on some instances (8 of these 40), which is why every real screen states a proven bound.
    rng = np.random.default_rng(0)
    wrong = 0
    for _ in range(40):
        n = int(rng.integers(20, 48))
        sim = chain_instance(rng, n)
        liar = NoisyScreen(sim, 0.2, rng)
        liar.error = ErrorModel.exact(n)
        got = assign_sparse(liar, k=1, k_col=1, depth=2, block_rows=16)
        wrong += objective(sim, got.partner) < objective(sim, assign_dense(sim).partner)
    assert wrong > 0


def test_certificate_catches_insufficient_candidate_graph_and_repairs_it():
    rng = np.random.default_rng(5)
    n = 40
    sim = trap_instance(rng, n, hubs=2)
    q = quantize(sim)
    # The optimum on the first candidate graph alone (top-2 of rows and columns + diagonal) is worse.
    ar = np.arange(n)
    top_r = np.argsort(-sim, axis=1)[:, :2]
    top_c = np.argsort(-sim, axis=0)[:2, :]
    rows = np.concatenate([np.repeat(ar, 2), top_c.reshape(-1), ar])
    cols = np.concatenate([top_r.reshape(-1), np.tile(ar, 2), ar])
    key = np.unique(rows * n + cols)
    rows, cols = key // n, key % n
    first = AugmentingSolver(n).solve(rows, cols, q[rows, cols], ar)
    dense = assign_dense(sim)
    assert objective(sim, first) < objective(sim, dense.partner)

    sparse = assign_sparse(DenseCosines(sim), k=2, k_col=2, depth=2, block_rows=8)
    cert = sparse.certificate
    assert cert["certified"] and cert["rounds"] >= 2
    assert cert["edges_final"] > cert["edges_first"]
    assert cert["rows_rescreened"] > 0 and cert["edges_from_rescreen"] > 0
    assert objective(sim, sparse.partner) == objective(sim, dense.partner)


def test_candidate_pass_keeps_exact_row_reserves_and_column_maxima():
    rng = np.random.default_rng(12)
    sim = rng.uniform(-1, 1, (37, 37)).astype(np.float32)
    cand = candidate_pass(DenseCosines(sim), depth=5, block_rows=8)
    np.testing.assert_array_equal(cand.row_val, -np.sort(-sim, axis=1)[:, :5])
    np.testing.assert_array_equal(np.take_along_axis(sim, cand.row_idx, axis=1), cand.row_val)
    np.testing.assert_array_equal(cand.col_max, sim.max(axis=0))
    take = column_candidates(cand, 2)
    rows, cols, vals = take // 5, cand.row_idx.reshape(-1)[take], cand.row_val.reshape(-1)[take]
    np.testing.assert_array_equal(sim[rows, cols], vals)
    for j in range(37):
        in_reserve = sorted((sim[i, j] for i in range(37) if j in cand.row_idx[i]), reverse=True)
        assert sorted(vals[cols == j], reverse=True) == in_reserve[:2]


def test_column_candidates_take_each_columns_best_reserve_entries_ties_to_the_lower_row():
    rng = np.random.default_rng(13)
    n, depth, k_col = 200, 12, 3
    row_idx = np.stack([rng.choice(n, depth, replace=False) for _ in range(n)]).astype(np.int64)
    row_val = rng.integers(0, 6, (n, depth)).astype(np.float32) / 8  # few distinct values: ties everywhere
    cand = Candidates(row_idx=row_idx, row_val=row_val, col_max=np.zeros(n, dtype=np.float32))
    take = column_candidates(cand, k_col)
    # Reference: a stable sort of all entries by (column, value descending); position order breaks ties.
    flat_cols, flat_vals = row_idx.reshape(-1), row_val.reshape(-1)
    order = np.lexsort((np.arange(n * depth), -flat_vals, flat_cols))
    first = np.searchsorted(flat_cols[order], np.arange(n))
    rank = np.arange(n * depth) - first[flat_cols[order]]
    np.testing.assert_array_equal(np.sort(take), np.sort(order[rank < k_col]))
    assert len(column_candidates(cand, 0)) == 0


@pytest.mark.parametrize("rows", [1, 2, 7, 1024, 1023])
def test_column_max_is_amax_for_every_block_height(rows):
    block = torch.randn(rows, 333, generator=torch.Generator().manual_seed(rows)).bfloat16()
    block[rows // 2, 5] = float("nan")
    kept = block.clone()
    np.testing.assert_array_equal(column_max(block).float().numpy(), block.amax(dim=0).float().numpy())
    assert torch.equal(block.nan_to_num(), kept.nan_to_num())  # the block is left as it was


def test_suspects_cover_every_pair_that_breaks_the_bound():
    rng = np.random.default_rng(4)
    for _ in range(50):
        n = int(rng.integers(1, 30))
        t, s = rng.integers(-20, 20, n), rng.integers(-20, 20, n)
        a, b = rng.integers(-20, 20, n), rng.integers(0, 20, n)
        fails = np.minimum(t[:, None], s[None, :]) > a[:, None] + b[None, :]
        sus_r, sus_c = suspects(t, s, a, b)
        np.testing.assert_array_equal(sus_r, np.flatnonzero(fails.any(axis=1)))
        np.testing.assert_array_equal(sus_c, np.flatnonzero(fails.any(axis=0)))


@pytest.mark.parametrize("d", [96, 99])
def test_exact_cosines_are_the_float64_products_rounded_however_the_pairs_are_batched(d):
    # A pair has one exact value whichever call computes it: the certificate may meet a pair twice.
    rng = np.random.default_rng(6)
    a = unit_rows(rng.standard_normal((300, d)), torch.device("cpu"))
    b = unit_rows(rng.standard_normal((300, d)), torch.device("cpu"))
    rows, cols = rng.integers(0, 300, 5000), rng.integers(0, 300, 5000)
    together = exact_cosines(a, b, rows, cols)
    one_by_one = np.concatenate([exact_cosines(a, b, rows[p : p + 1], cols[p : p + 1]) for p in range(0, 5000, 97)])
    np.testing.assert_array_equal(one_by_one, together[::97])
    reference = (a.double().numpy()[rows] * b.double().numpy()[cols]).sum(axis=1)
    np.testing.assert_array_equal(together, reference.astype(np.float32))
    np.testing.assert_array_equal(dense_cosines(a, b)[rows, cols], together)
    # Strided rows take torch's chunked path (as other devices do): the same values.
    strided = exact_cosines(a.t().contiguous().t(), b, rows, cols)
    np.testing.assert_array_equal(strided, together)


@pytest.mark.parametrize("precision", ["bf16", "fp32", "int8"])
def test_screen_stays_within_its_error_model_on_every_pair(precision):
    # Hard inputs for the bound: heavy-tailed rows (a few large coordinates, the coarsest int8 steps), near-duplicates
    # (cosines near 1, where bf16's relative rounding is largest), dead rows, and d = 768 as in the paper.
    rng = np.random.default_rng(9)
    d = 768
    heavy = rng.standard_t(2, (200, d))
    base = rng.standard_normal((200, d))
    a = np.concatenate([heavy, base, np.zeros((8, d))]).astype(np.float32)
    b = np.concatenate([heavy[::-1] + 0.01 * rng.standard_normal((200, d)), base + 0.05 * rng.standard_normal((200, d)),
                        rng.standard_normal((8, d))]).astype(np.float32)
    ua, ub = unit_rows(a, torch.device("cpu")), unit_rows(b, torch.device("cpu"))
    source = screen_source(ua, ub, precision, depth=48)
    assert source.precision == precision
    screened = source.screen(np.arange(source.n)).float().numpy().copy()
    exact = dense_cosines(ua, ub)
    rows, cols = np.divmod(np.arange(exact.size), source.n)
    upper = source.error.pair_upper(rows, cols, screened.reshape(-1)).reshape(exact.shape)
    lower = 2 * screened - upper  # the model is symmetric
    assert (exact <= upper).all() and (exact >= lower).all()
    assert (exact[400:] == 0).all() and (screened[400:] == 0).all()  # dead rows: exact zero
    # No slack on a dead row, except int8's column part (the right row's rounding at the largest left row).
    assert (upper[400:] == (source.error.col_err[None, :] if precision == "int8" else 0)).all()
    worst = np.abs(exact - screened).max()
    # The bound is not absurdly loose (int8's is Cauchy-Schwarz on d = 768 rounding errors: 0.085x here).
    assert worst > {"bf16": 0.1, "fp32": 0, "int8": 0.05}[precision] * source.error.largest
    # The rows a rescreen multiplies again (in float32) keep to the same model.
    some, others = np.arange(0, source.n, 7), np.arange(source.n - 1, -1, -5)
    again = source.screen_block(some, others).float().numpy()
    r, c = np.divmod(np.arange(again.size), len(others))
    upper_again = source.error.pair_upper(some[r], others[c], again.reshape(-1)).reshape(again.shape)
    assert (np.abs(exact[np.ix_(some, others)] - again) <= upper_again - again).all()
    rows_bound = source.error.row_upper(np.arange(source.n), screened.max(axis=1))
    assert (exact.max(axis=1) <= rows_bound).all()


@pytest.mark.parametrize("keep", [True, False])
@pytest.mark.parametrize("screen", ["bf16", "fp32", "int8"])
def test_screened_sparse_path_equals_scipy_on_the_exact_cosines(screen, keep, monkeypatch):
    # Correlated dictionaries (neighbours compete) and a small reserve force rescreens and repair rounds,
    # read from the pass's stored screen or multiplied again.
    monkeypatch.setattr("saeseeds.matching.assignment.KEEP_MAX_LATENTS", 10**6 if keep else 0)
    monkeypatch.setattr("saeseeds.matching.stored_screen.STRUCTURE_MIN", -np.inf)  # keep whatever the first block shows
    rng = np.random.default_rng(11)
    n, d = 400, 64
    basis = rng.standard_normal((24, d))
    a = (rng.uniform(0, 1, (n, 24)) ** 4 @ basis + 0.3 * rng.standard_normal((n, d))).astype(np.float32)
    b = np.concatenate([a[: n // 2] + 0.2 * rng.standard_normal((n // 2, d)),
                        rng.uniform(0, 1, (n // 2, 24)) ** 4 @ basis]).astype(np.float32)
    exact = dense_cosines(unit_rows(a, torch.device("cpu")), unit_rows(b, torch.device("cpu")))
    dense = assign_dense(exact)
    df, meta = match_dictionaries(a, a, b, b, method="sparse", k=2, depth=4, block_rows=64, screen=screen)
    cert = meta["certificate"]["enc"]
    assert meta["certified"] and cert["screen"] == screen and cert["rows_rescreened"] > 0 and cert["rounds"] >= 2
    # The compiled pass keeps float32 blocks on CPU (int8's output included); a bf16 block goes through torch and keeps none.
    assert cert["screen_stored"] == (keep and screen != "bf16")
    assert cert["objective_quantised"] == dense.certificate["objective_quantised"]
    np.testing.assert_array_equal(df["enc_cos"], exact[np.arange(n), df["enc_partner"]])
    np.testing.assert_array_equal(df["enc_maxcos"], exact.max(axis=1))


def test_cosines_beyond_the_screen_error_still_count_with_the_exact_value():
    # A screen off by its full error in the worst direction ranks pairs wrongly; the matching may not.
    rng = np.random.default_rng(14)
    n = 60
    sim = chain_instance(rng, n)
    err = 0.05
    source = DenseCosines(sim)
    source.error = ErrorModel(0.0, np.full(n, err), np.zeros(n))
    # Push every row's true best pair down and the others up, as far as the model allows.
    worst = source.sim - err * (2 * (source.sim == source.sim.max(dim=1, keepdim=True).values) - 1)
    source.screen = lambda rows: worst[torch.as_tensor(np.asarray(rows, dtype=np.int64))]
    got = assign_sparse(source, k=1, k_col=1, depth=2, block_rows=16)
    assert got.certificate["certified"]
    assert objective(sim, got.partner) == objective(sim, assign_dense(sim).partner)
    np.testing.assert_array_equal(got.row_max, sim.max(axis=1))


def test_rows_whose_bound_stays_open_get_their_maximum_from_a_second_screen_block_by_block():
    # A screen this coarse leaves every row's bound beyond its reserve above its best exact cosine, so each row's
    # maximum comes from screening it again, in blocks of rows smaller than the rows to do, then exact values of the
    # pairs that may beat it (not of every pair).
    rng = np.random.default_rng(21)
    n = 80
    sim = chain_instance(rng, n)
    source = NoisyScreen(sim, 0.3, rng)
    got = assign_sparse(source, k=2, k_col=1, depth=3, block_rows=7)
    cert = got.certificate
    assert cert["certified"] and cert["rows_max_completed"] > 7
    assert cert["pairs_exact"] < n * n
    np.testing.assert_array_equal(got.row_max, sim.max(axis=1))


@pytest.mark.parametrize("method", ["dense", "sparse"])
def test_permuted_copy_is_fully_shared_with_the_right_partners(method):
    rng = np.random.default_rng(1)
    n, d = 200, 32
    enc, dec = rng.standard_normal((n, d)).astype(np.float32), rng.standard_normal((n, d)).astype(np.float32)
    perm = rng.permutation(n)
    df, meta = match_dictionaries(enc, dec, enc[perm], 3 * dec[perm], method=method, k=4, block_rows=32)
    inverse = np.argsort(perm)
    np.testing.assert_array_equal(df["enc_partner"], inverse)
    np.testing.assert_array_equal(df["dec_partner"], inverse)
    assert df["shared"].all()
    assert meta["shared_fraction_paper"] == meta["shared_fraction_notebook"] == 1.0
    assert meta["certified"]
    np.testing.assert_allclose(df["enc_cos"], 1.0, atol=1e-6)


def test_dense_and_sparse_match_dictionaries_agree_on_noisy_shared_copies():
    rng = np.random.default_rng(2)
    a, b, _ = random_dicts(rng, 300, 48)
    c, e, _ = random_dicts(rng, 300, 48)
    dense, _ = match_dictionaries(a, c, b, e, method="dense")
    sparse, meta = match_dictionaries(a, c, b, e, method="sparse", k=8, block_rows=64)
    assert meta["certificate"]["enc"]["method"] == "sparse" and meta["certified"]
    for col in ("enc_partner", "dec_partner", "shared"):
        np.testing.assert_array_equal(dense[col], sparse[col])
    for col in ("enc_cos", "dec_cos", "enc_maxcos", "dec_maxcos"):
        np.testing.assert_allclose(dense[col], sparse[col], atol=1e-6)


def test_sparse_path_is_deterministic():
    rng = np.random.default_rng(13)
    a, b, _ = random_dicts(rng, 200, 16)
    first = match_dictionaries(a, a, b, b, method="sparse", k=4, depth=8, block_rows=32)
    second = match_dictionaries(a, a, b, b, method="sparse", k=4, depth=8, block_rows=32)
    pd.testing.assert_frame_equal(first[0], second[0])
    assert first[1] == second[1]


@pytest.mark.parametrize("n_b", [240, 200])
def test_encoder_and_decoder_solves_side_by_side_give_what_one_at_a_time_gives(n_b, monkeypatch):
    import threading

    import saeseeds.matching.match as match

    rng = np.random.default_rng(21)
    a, b, _ = random_dicts(rng, 240, 16)
    c, e, _ = random_dicts(rng, 240, 16)
    threads, pass_threads = [], []
    solve, screen = match.solve_screened, match.screen_problem

    def spy(problem, **kw):
        threads.append(threading.current_thread())
        return solve(problem, **kw)

    def pass_spy(source, **kw):
        pass_threads.append((threading.current_thread(), torch.get_num_threads()))
        return screen(source, **kw)

    monkeypatch.setattr(match, "solve_screened", spy)
    monkeypatch.setattr(match, "screen_problem", pass_spy)
    opts = dict(method="sparse", k=4, depth=8, block_rows=32, screen="fp32")
    cores = torch.get_num_threads()
    side_by_side = match_dictionaries(a, c, b[:n_b], e[:n_b], **opts)
    assert len(set(threads)) == 2 and threading.main_thread() not in threads
    # On CPU each side's pass runs in its solve's thread, on half the cores; the caller's thread count is left alone.
    assert [t for t, _ in pass_threads] == threads or [t for t, _ in pass_threads][::-1] == threads
    assert sorted(count for _, count in pass_threads) == [max(1, cores // 2), max(1, cores - cores // 2)]
    assert torch.get_num_threads() == cores
    threads.clear()
    monkeypatch.setattr(match, "_solves_side_by_side", lambda: False)
    in_turn = match_dictionaries(a, c, b[:n_b], e[:n_b], **opts)
    assert threads == [threading.main_thread()] * 2
    pd.testing.assert_frame_equal(side_by_side[0], in_turn[0])
    assert side_by_side[1] == in_turn[1] and side_by_side[1]["certified"]


def test_a_job_of_three_threads_keeps_three_and_splits_them_one_and_two():
    # In a fresh process: launching numba's OpenMP pool (the first time a matching asks whether two threads may run its
    # kernels) reset the shared runtime's thread count to every core, so the job ran on 2 here (and on 16 on 16 cores).
    import subprocess
    import sys

    code = """
import numpy as np, torch
torch.set_num_threads(3)
import saeseeds.matching.match as match
seen, start = [], match._start_rows
match._start_rows = lambda *a, **k: (seen.append(torch.get_num_threads()), start(*a, **k))[1]
rng = np.random.default_rng(0)
a, b = (rng.standard_normal((240, 16)).astype(np.float32) for _ in range(2))
meta = match.match_dictionaries(a, a, b, b, method="sparse", k=4, depth=8, block_rows=32, screen="fp32")[1]
print(sorted(seen), torch.get_num_threads(), meta["certified"])
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")[-2]
    assert out == "[1, 2] 3 True", out


def test_solves_side_by_side_after_both_passes_as_on_a_gpu_give_what_one_at_a_time_gives():
    # On a GPU both passes run there first, then both solves side by side (`_finish_side_by_side`); the order is the
    # device's, the solves are the CPU's, so CPU passes stand in for the GPU's here.
    import saeseeds.matching.match as match

    rng = np.random.default_rng(22)
    a, b, _ = random_dicts(rng, 240, 16)
    opts = dict(device=torch.device("cpu"), method="sparse", dense_max_n=4096, k=4, depth=8, block_rows=32, screen="fp32",
                timings=None, absolute=False)
    pairs = [(a, b), (b, a)]
    together = match._finish_side_by_side([match._start_rows(*p, **opts) for p in pairs], 100, None)
    for pair, got in zip(pairs, together):
        alone = match._finish(match._start_rows(*pair, **opts), 100, None)
        np.testing.assert_array_equal(got.partner, alone.partner)
        assert got.certificate == alone.certificate and got.certificate["certified"]


def test_frame_has_contract_columns_and_both_definitions_in_metadata():
    rng = np.random.default_rng(7)
    a, b, perm = random_dicts(rng, 100, 16, shared=0.5, noise=0.3)
    df, meta = match_dictionaries(a, a, b, b, threshold=0.7)
    assert tuple(df.columns) == COLUMNS
    assert [str(t) for t in df.dtypes] == ["int64", "int64", "float32", "int64", "float32", "float32", "float32", "bool"]
    paper = (df.enc_partner == df.dec_partner) & (df.enc_cos >= 0.7) & (df.dec_cos >= 0.7)
    notebook = (df.enc_cos > 0.7) & (df.dec_cos > 0.7)
    assert meta["shared_fraction_paper"] == pytest.approx(paper.mean())
    assert meta["shared_fraction_notebook"] == pytest.approx(notebook.mean())
    np.testing.assert_array_equal(df["shared"], paper)
    loose, meta_nb = match_dictionaries(a, a, b, b, threshold=0.7, definition="notebook")
    np.testing.assert_array_equal(loose["shared"], notebook)
    assert meta_nb["definition"] == "notebook" and meta_nb["threshold"] == 0.7
    assert (df["enc_maxcos"] >= df["enc_cos"]).all()


def test_dead_rows_have_cosine_zero_and_are_never_shared():
    rng = np.random.default_rng(8)
    enc = rng.standard_normal((20, 8)).astype(np.float32)
    dead = enc.copy()
    dead[[3, 11]] = 0
    # Cosine 0 is below any positive threshold, so a dead latent is an orphan.
    df, meta = match_dictionaries(dead, dead, enc, enc, threshold=0.1)
    assert meta["dead_latents"]["enc_a"] == 2
    assert (df.loc[[3, 11], ["enc_cos", "dec_cos", "enc_maxcos"]] == 0).all().all()
    assert not df.loc[[3, 11], "shared"].any()
    assert df.drop(index=[3, 11])["shared"].all()


def test_bad_inputs_fail_naming_the_culprit():
    x = np.ones((4, 3), dtype=np.float32)
    with pytest.raises(MatchesError, match="one d and one n per SAE"):
        match_dictionaries(x, x, x[:, :2], x[:, :2])  # different sizes n are fine (tests/matching/test_rectangular.py), d not
    with pytest.raises(MatchesError, match="one d and one n per SAE"):
        match_dictionaries(x, x[:3], x, x)
    with pytest.raises(MatchesError, match="dec_b"):
        match_dictionaries(x, x, x, np.full_like(x, np.nan))
    with pytest.raises(MatchesError, match="threshold"):
        match_dictionaries(x, x, x, x, threshold=1.5)
    with pytest.raises(MatchesError, match="definition"):
        match_dictionaries(x, x, x, x, definition="loose")
    with pytest.raises(MatchesError, match="method"):
        match_dictionaries(x, x, x, x, method="greedy")


def test_write_read_round_trip_is_atomic_and_deterministic(tmp_path):
    rng = np.random.default_rng(9)
    a, b, _ = random_dicts(rng, 64, 8)
    df, meta = match_dictionaries(a, a, b, b)
    path = tmp_path / "m" / "seed0-seed1.parquet"
    write_matches(df, meta, path)
    first = path.read_bytes()
    write_matches(df, meta, path)
    assert path.read_bytes() == first
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    back, meta_back = read_matches(path)
    pd.testing.assert_frame_equal(back, df)
    assert meta_back == json.loads(json.dumps(meta))
    assert json.loads(pq.read_schema(path).metadata[b"saeseeds"])["n"] == 64
    with pytest.raises(MatchesError, match="columns"):
        write_matches(df.drop(columns="shared"), meta, path)


def write_sparsify(path, enc, dec):
    path.mkdir(parents=True)
    (path / "cfg.json").write_text(json.dumps({"num_latents": enc.shape[0], "k": 4}))
    n, d = enc.shape
    save_file(
        {"encoder.weight": enc, "encoder.bias": np.zeros(n, np.float32), "W_dec": dec, "b_dec": np.zeros(d, np.float32)},
        str(path / "sae.safetensors"),
    )


def write_saelens(path, enc, dec):
    path.mkdir(parents=True)
    (path / "cfg.json").write_text(json.dumps({"d_sae": enc.shape[0], "d_in": enc.shape[1]}))
    save_file({"W_enc": np.ascontiguousarray(enc.T), "W_dec": dec}, str(path / "sae_weights.safetensors"))


def test_load_dictionaries_reads_sparsify_and_saelens_layouts(tmp_path):
    rng = np.random.default_rng(10)
    enc, dec = rng.standard_normal((12, 5)).astype(np.float32), rng.standard_normal((12, 5)).astype(np.float32)
    write_sparsify(tmp_path / "sp", enc, dec)
    write_saelens(tmp_path / "sl", enc, dec)
    for layout in ("sp", "sl"):
        e, d = load_dictionaries(tmp_path / layout)
        np.testing.assert_array_equal(e, enc)
        np.testing.assert_array_equal(d, dec)
        assert e.dtype == d.dtype == np.float32 and e.shape == (12, 5)


def test_load_dictionaries_rejects_broken_checkpoints_naming_file_and_tensor(tmp_path):
    enc = np.ones((6, 3), dtype=np.float32)
    write_sparsify(tmp_path / "shape", enc, np.ones((6, 4), dtype=np.float32))
    with pytest.raises(CheckpointError, match=r"sae\.safetensors.*W_dec"):
        load_dictionaries(tmp_path / "shape")
    bad = enc.copy()
    bad[2, 1] = np.inf
    write_sparsify(tmp_path / "inf", bad, enc)
    with pytest.raises(CheckpointError, match=r"encoder\.weight.*non-finite"):
        load_dictionaries(tmp_path / "inf")
    (tmp_path / "none").mkdir()
    (tmp_path / "none" / "cfg.json").write_text("{}")
    with pytest.raises(CheckpointError, match="neither"):
        load_dictionaries(tmp_path / "none")
    (tmp_path / "miss").mkdir()
    (tmp_path / "miss" / "cfg.json").write_text("{}")
    save_file({"W_dec": enc}, str(tmp_path / "miss" / "sae.safetensors"))
    with pytest.raises(CheckpointError, match="'encoder.weight' missing"):
        load_dictionaries(tmp_path / "miss")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_rescreen_prefilter_keeps_every_pair_over_its_threshold(dtype):
    # Grouped column thresholds and the screen's own dtype must only ever add pairs, never drop one.
    rng = np.random.default_rng(3)
    screened = torch.as_tensor(rng.uniform(-1, 1, (70, 500)).astype(np.float32)).to(dtype)
    row_thr = rng.uniform(-0.5, 0.5, 70)
    col_thr = np.sort(rng.uniform(-0.5, 0.5, 500))
    # Thresholds at exactly a screened value (ties) too.
    row_thr[:5] = screened[:5, 0].double().numpy() - col_thr[0]
    bi, bj = prefilter(screened, row_thr, col_thr)
    got = set(zip(bi.tolist(), bj.tolist()))
    want = np.argwhere(screened.double().numpy() > row_thr[:, None] + col_thr[None, :])
    assert len(want) > 1000 and {tuple(x) for x in want.tolist()} <= got
    assert len(got) < 1.5 * len(want)  # a prefilter, not everything


def test_screen_thresholds_invert_the_error_bound():
    # Whenever a screened value's upper bound exceeds a target, the value exceeds the split thresholds.
    rng = np.random.default_rng(4)
    n = 400
    model = ErrorModel(2.0**-8 / (1 - 2.0**-8), rng.uniform(0, 4e-3, n), rng.uniform(0, 1e-3, n))
    rows, cols = rng.integers(0, n, 20000), rng.integers(0, n, 20000)
    v = rng.uniform(-1, 1, 20000)
    row_target, col_target = rng.uniform(-1, 1, n), rng.uniform(-0.5, 0.5, n)
    over = model.pair_upper(rows, cols, v) > row_target[rows] + col_target[cols]
    r_thr, c_thr = model.screen_thresholds(np.arange(n), row_target, np.arange(n), col_target)
    assert over.sum() > 5000 and (v[over] > r_thr[rows[over]] + c_thr[cols[over]]).all()
