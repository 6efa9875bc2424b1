"""Columns' best rows read from the pass's reserves and stored screen: a total order's top m, bounds on the screen."""

import numpy as np
import torch

from saeseeds.matching.column_tops import tops_from_kept_rows
from saeseeds.matching.cosine_sources import ScreenedCosines
from saeseeds.matching.screen_kernels import STORE_STEP
from saeseeds.matching.similarity import candidate_pass, unit_rows


def brute_force_tops(cand, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Each column's m best (value descending, then row ascending) over every pair the pass kept: a reserve pair at its
    screened value, any other kept pair at its stored value plus half a step."""
    deep_v, deep_c, deep_n, _ = cand.stored.deep
    n, depth = cand.row_idx.shape
    value = {}
    for i in range(n):
        for e in range(deep_n[i]):
            value[(i, int(deep_c[i, e]))] = np.float32(deep_v[i, e] * np.float32(STORE_STEP) + np.float32(STORE_STEP / 2))
        for p in range(depth):
            value[(i, int(cand.row_idx[i, p]))] = cand.row_val[i, p]
    rows = np.full((n, m), -1, np.int64)
    vals = np.full((n, m), -np.inf, np.float32)
    per_col = {}
    for (i, c), v in value.items():
        per_col.setdefault(c, []).append((-float(v), i))
    for c, entries in per_col.items():
        best = sorted(entries)[:m]
        rows[c, : len(best)] = [i for _, i in best]
        vals[c, : len(best)] = [-v for v, _ in best]
    return rows, vals


def test_tops_from_kept_rows_are_a_total_orders_best_whatever_the_chunks(monkeypatch):
    # Rows keep 24-47 of their 300 values (a small store) and values tie (a coarse screen): the tops are the best of
    # the kept pairs under (value descending, row ascending), the same for 1, 2 and 3 chunks of rows, and every value
    # bounds the pair's screened value from above.
    monkeypatch.setattr("saeseeds.matching.stored_screen.deep_capacity", lambda n: 48)
    rng = np.random.default_rng(11)
    basis = rng.standard_normal((8, 32))
    a, b = (
        unit_rows(np.round((rng.uniform(0, 1, (300, 8)) ** 3 @ basis) * 4).astype(np.float32), torch.device("cpu"))
        for _ in range(2)
    )
    source = ScreenedCosines(a, b, precision="fp32")
    cand = candidate_pass(source, depth=12, block_rows=64, keep_screen=True, col_depth=0)
    want_rows, want_vals = brute_force_tops(cand, 6)
    screen = (a @ b.T).numpy()
    for chunks in (1, 2, 3):
        rows, vals = tops_from_kept_rows(cand.stored.deep, cand.row_idx, cand.row_val, 6, chunks)
        np.testing.assert_array_equal(rows, want_rows)
        np.testing.assert_array_equal(vals, want_vals)
    found = rows >= 0
    cols = np.repeat(np.arange(300)[:, None], 6, axis=1)
    assert found.mean() > 0.9 and (vals[~found] == -np.inf).all()  # a column kept by fewer than 6 rows names fewer
    assert (vals[found] >= screen[rows[found], cols[found]]).all()
    assert (vals[found] <= screen[rows[found], cols[found]] + STORE_STEP).all()


def test_the_pass_reads_its_column_tops_from_the_stored_screen_where_it_keeps_one():
    # The pass's own tops (no stored screen) and those read from the store name nearly the same rows.
    rng = np.random.default_rng(12)
    basis = rng.standard_normal((16, 64))
    a, b = (unit_rows((rng.uniform(0, 1, (1500, 16)) ** 4 @ basis).astype(np.float32), torch.device("cpu")) for _ in range(2))
    source = ScreenedCosines(a, b, precision="fp32")
    stored = candidate_pass(source, depth=32, block_rows=256, keep_screen=True, col_depth=8)
    own = candidate_pass(source, depth=32, block_rows=256, keep_screen=False, col_depth=8)
    assert stored.stored is not None and own.stored is None
    same = np.mean([len(np.intersect1d(x, y)) / 8 for x, y in zip(stored.col_rows, own.col_rows)])
    assert same > 0.97


def test_a_store_dropped_during_the_pass_leaves_the_column_tops_to_the_reserves_and_the_matching_exact():
    # A value the 16-bit store cannot hold (|v| >= 2, in the second block) drops the stored screen: the column tops it
    # would have given are then read off the row reserves by the solve, and the matching is still the optimum.
    from scipy.optimize import linear_sum_assignment

    from saeseeds.matching.assignment import assign_sparse
    from saeseeds.matching.cosine_sources import DenseCosines

    rng = np.random.default_rng(13)
    sim = np.round(rng.uniform(-1, 1, (400, 400)) * 512).astype(np.float32) / 512
    sim[300, 7] = 2.5
    cand = candidate_pass(DenseCosines(sim), depth=16, block_rows=128, keep_screen=True, col_depth=4)
    assert cand.stored is None and cand.col_rows is None
    result = assign_sparse(DenseCosines(sim), k=8, depth=16, block_rows=128, keep_screen=True)
    rows, cols = linear_sum_assignment(sim.astype(np.float64), maximize=True)
    assert result.certificate["certified"]
    assert np.isclose(sim[np.arange(400), result.partner].astype(np.float64).sum(), sim[rows, cols].astype(np.float64).sum())
