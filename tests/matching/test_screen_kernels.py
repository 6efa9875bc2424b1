"""The compiled screening pass and the stored screen: the same selection as a sort, every pair kept over its threshold."""

import numpy as np
import pandas as pd
import pytest
import torch

from saeseeds.matching.cosine_sources import ScreenedCosines, exact_cosines
from saeseeds.matching.screen_kernels import (
    DEEP_CAPACITY, FLOOR_ALL, NAN_ROW, OUT_OF_RANGE, STORE_BITS, deep_rows, merge_column_tops, new_column_tops, no_deep_rows,
    reduce_block,
)
from saeseeds.matching.similarity import candidate_pass, unit_rows
from saeseeds.matching.match import match_dictionaries
from saeseeds.matching.screen_memory import reuse_screen_memory
from saeseeds.matching.stored_screen import StoredScreen, unrelated_tail


def reference_top(block: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's depth largest values, best first, ties to the lowest columns (a stable sort)."""
    order = np.argsort(-block, axis=1, kind="stable")[:, :depth]
    return np.take_along_axis(block, order, axis=1), order


def run(block: np.ndarray, depth: int, chunks: int = 2, store: bool = True, col_depth: int = 3, block_rows: int = 16,
        cap: int = DEEP_CAPACITY):
    """Runs the pass over `block` in blocks of `block_rows` rows, as `candidate_pass` does, keeping up to `cap` values a row."""
    rows, n = block.shape
    val, idx = np.empty((rows, depth), np.float32), np.empty((rows, depth), np.int64)
    parts = np.full((chunks, n), -np.inf, np.float32)
    col_top = new_column_tops(chunks, n, col_depth)
    deep = deep_rows(rows, min(cap, n)) if store else no_deep_rows()
    flags = np.zeros(rows, np.int8)
    for r0 in range(0, rows, block_rows):
        r1 = min(r0 + block_rows, rows)
        reduce_block(np.ascontiguousarray(block[r0:r1]), r0, depth, val[r0:r1], idx[r0:r1], parts, col_top,
                     tuple(x[r0:r1] for x in deep) if store else deep, flags[r0:r1])
    return val, idx, parts.max(axis=0), deep, flags, merge_column_tops(col_top)


def assert_rows_keep_what_is_over_their_floor(block: np.ndarray, deep) -> np.ndarray:
    """Each row kept, in column order and at 16 bits, values whose columns hold every value over its floor; returns the counts."""
    values, columns, counts, floors = deep
    stored = np.rint(block.astype(np.float64) * 2**STORE_BITS)
    for t in range(len(block)):
        kept = columns[t, : counts[t]]
        assert (np.diff(kept) > 0).all()
        np.testing.assert_array_equal(values[t, : counts[t]], stored[t, kept])
        rest = np.setdiff1d(np.arange(block.shape[1]), kept)
        assert len(rest) == 0 if floors[t] == FLOOR_ALL else (stored[t, rest] <= floors[t]).all()
    return counts


@pytest.mark.parametrize("n", [40, 999, 4096])
@pytest.mark.parametrize("kind", ["uniform", "ties", "equal rows", "alternating spread"])
def test_reduce_block_selects_as_a_stable_sort_and_keeps_column_maxima(n, kind):
    rng = np.random.default_rng(n)
    rows, depth = 37, 20 if n == 40 else 64  # n = 40: fewer groups than depth, every entry a candidate
    block = rng.uniform(-1, 1, (rows, n)).astype(np.float32)
    if kind == "ties":
        block = np.round(block * 4) / 4  # nine values: ties at every depth-th value
    if kind == "equal rows":
        block[::3] = -2.0  # a padded rectangle's dummy rows
    if kind == "alternating spread":
        block[::2] *= 0.01  # the last row's floor never fits the next (stacked SAEs' rows): every floor is sampled
    distinct = kind in ("uniform", "alternating spread")
    val, idx, col_max, deep, flags, (col_rows, col_val) = run(block, depth, chunks=3)
    want_val, want_idx = reference_top(block, depth)
    np.testing.assert_array_equal(val, want_val)
    np.testing.assert_array_equal(idx, want_idx)
    np.testing.assert_array_equal(col_max, block.max(axis=0))
    # Each column's best rows, over every chunk and block, ties to the lower row.
    want_val, want_rows = reference_top(block.T, 3)
    np.testing.assert_array_equal(col_val, want_val)
    np.testing.assert_array_equal(col_rows, want_rows)
    assert not flags.any()
    # Rows of up to DEEP_CAPACITY values keep them all; longer ones, half to all of their capacity (fewer where ties
    # leave fewer distinct values): the last row's floor, a sampled one or the exact one.
    counts = assert_rows_keep_what_is_over_their_floor(block, deep)
    if n <= DEEP_CAPACITY:
        assert (counts == n).all() and (deep[3] == FLOOR_ALL).all()
    else:
        assert (counts < DEEP_CAPACITY).all() and (not distinct or (counts >= DEEP_CAPACITY // 2).all())
    *_, deep, _, _ = run(block, depth, chunks=3, cap=24)
    counts = assert_rows_keep_what_is_over_their_floor(block, deep)
    assert (counts < 24).all() and (not distinct or (counts >= 12).all())


def test_reduce_block_flags_nan_rows_and_values_the_store_cannot_hold():
    block = np.zeros((4, 64), np.float32)
    block[1, 7] = np.nan
    block[2, 3] = 2.5
    *_, flags, _ = run(block, 8)
    assert flags[1] & NAN_ROW and flags[2] & OUT_OF_RANGE and not flags[[0, 3]].any()
    *_, flags, _ = run(block, 8, store=False)
    assert flags[1] & NAN_ROW and not flags[2]


def test_candidate_pass_with_the_compiled_kernel_equals_torch_topk_and_amax():
    rng = np.random.default_rng(3)
    a, b = (unit_rows(rng.standard_normal((300, 48)).astype(np.float32), torch.device("cpu")) for _ in range(2))
    source = ScreenedCosines(a, b, precision="fp32")
    full = (a @ b.T).numpy()
    cand = candidate_pass(source, depth=16, block_rows=64, keep_screen=True, col_depth=5)
    want_val, want_idx = reference_top(full, 16)
    np.testing.assert_array_equal(cand.row_val, want_val)
    np.testing.assert_array_equal(cand.row_idx, want_idx)
    np.testing.assert_array_equal(cand.col_max, full.max(axis=0))
    assert isinstance(cand.stored, StoredScreen)
    # Every value is kept (n <= its capacity), so the column tops read from it are the best rows; their values are the
    # screen's for reserve pairs, else the stored value's upper bound (`test_column_tops.py`).
    want_val, want_rows = reference_top(full.T, 5)
    np.testing.assert_array_equal(cand.col_rows, want_rows)
    assert (cand.col_val >= want_val).all() and (cand.col_val <= want_val + 2.0**-STORE_BITS).all()


@pytest.mark.parametrize("block_rows", [100, 256])  # three blocks, one block
def test_stored_screen_bounds_every_exact_cosine_and_scans_like_a_brute_force(block_rows, monkeypatch):
    monkeypatch.setattr("saeseeds.matching.stored_screen.deep_capacity", lambda n: 48)  # each row keeps 24-47 of its 256
    rng = np.random.default_rng(4)
    n, d = 256, 96
    a, b = (unit_rows(rng.standard_normal((n, d)).astype(np.float32), torch.device("cpu")) for _ in range(2))
    source = ScreenedCosines(a, b, precision="fp32")
    stored = candidate_pass(source, depth=8, block_rows=block_rows, keep_screen=True).stored
    values, columns, counts, floors = stored.deep
    assert (counts >= 24).all() and (counts < 48).all()
    rows = np.repeat(np.arange(n), counts)
    cols = np.concatenate([columns[i, : counts[i]] for i in range(n)])
    value = np.concatenate([values[i, : counts[i]] for i in range(n)]) * 2.0**-STORE_BITS
    exact = exact_cosines(a, b, rows, cols).astype(np.float64)
    assert (exact <= stored.error.pair_upper(rows, cols, value)).all()
    assert (exact >= 2 * value - stored.error.pair_upper(rows, cols, value)).all()
    assert np.abs(exact - value).max() > 2.0 ** -(STORE_BITS + 2)  # the quantum shows: the widening is needed
    # Every pair not kept is at or below its row's floor, within the error model.
    full = exact_cosines(a, b, np.repeat(np.arange(n), n), np.tile(np.arange(n), n)).reshape(n, n).astype(np.float64)
    kept = np.zeros((n, n), bool)
    kept[rows, cols] = True
    floor = floors[:, None] * 2.0**-STORE_BITS + stored.error.largest
    assert (full[~kept] <= np.broadcast_to(floor, (n, n))[~kept]).all()
    # The threshold scan: rows whose thresholds stay above their floor answer from the kept values, exactly as a
    # brute force over them; the others ("short") are multiplied, for the columns of low threshold only.
    r, c = rng.choice(n, 60, replace=False), rng.choice(n, 90, replace=False)
    row_thr, col_thr = rng.uniform(-0.1, 0.35, 60), rng.uniform(-0.05, 0.05, 90)
    p, q, v = stored.screen_over(r, c, row_thr, col_thr)
    thr = row_thr[:, None] + col_thr[None, :]
    short = row_thr + col_thr.min() < floors[r] * 2.0**-STORE_BITS
    assert short.any() and not short.all() and stored.rows_short == short.sum()
    order = np.lexsort((q, p))
    np.testing.assert_array_equal(order, np.arange(len(p)))  # row-major
    got = np.zeros((60, 90), bool)
    got[p, q] = True
    kept_rc = kept[np.ix_(r, c)]
    stored_rc = np.rint(source.screen(r).numpy()[:, c].astype(np.float64) * 2**STORE_BITS) * 2.0**-STORE_BITS
    want = kept_rc & (stored_rc > thr)
    np.testing.assert_array_equal(got[~short], want[~short])
    on_kept = ~short[p]
    np.testing.assert_array_equal(v[on_kept], stored_rc[p[on_kept], q[on_kept]].astype(np.float32))
    # No pair whose exact cosine may exceed its threshold is missed, and every value returned bounds its exact cosine.
    e = full[np.ix_(r, c)]
    assert got[e > thr + stored.error.largest].all()
    gr, gc = r[p], c[q]
    assert (full[gr, gc] <= stored.error.pair_upper(gr, gc, v)).all()
    assert (full[gr, gc] >= 2 * v.astype(np.float64) - stored.error.pair_upper(gr, gc, v)).all()
    p0, q0, v0 = stored.screen_over(r[:0], c, row_thr[:0], col_thr)
    assert len(p0) == len(q0) == len(v0) == 0


def test_matchings_in_one_block_reuse_the_stored_screens_memory_and_give_the_same_results():
    rng = np.random.default_rng(6)
    basis = rng.standard_normal((8, 32))
    # Competing neighbours, so that every matching keeps its screen.
    pairs = [(rng.uniform(0, 1, (4, 300, 8)) ** 4 @ basis + 0.3 * rng.standard_normal((4, 300, 32))).astype(np.float32)
             for _ in range(2)]
    alone = [match_dictionaries(*w, method="sparse", depth=8, k=4, screen="fp32") for w in pairs]
    screens = []
    give_back = StoredScreen.release

    def spy(self):
        screens.append(self._deep[0] if self._deep is not None else None)
        give_back(self)

    with pytest.MonkeyPatch.context() as mp, reuse_screen_memory():
        mp.setattr(StoredScreen, "release", spy)
        shared = [match_dictionaries(*w, method="sparse", depth=8, k=4, screen="fp32") for w in pairs]
    # The encoder's and decoder's screens live side by side (each side runs in its own thread, from its pass to its
    # solve), so a pair holds up to two buffers (one, where a side ends before the other's pass begins), and the
    # next pair takes those again: two buffers at most for the four screens, where each fresh would make four.
    assert len(screens) == 4 and all(s is not None for s in screens)
    distinct = []
    for screen in screens:
        if not any(np.shares_memory(screen, seen) for seen in distinct):
            distinct.append(screen)
    assert len(distinct) <= 2
    for (df_a, meta_a), (df_b, meta_b) in zip(alone, shared):
        pd.testing.assert_frame_equal(df_a, df_b)
        assert meta_a == meta_b


def test_the_pass_keeps_its_screen_where_neighbours_compete_and_not_for_unrelated_directions():
    rng = np.random.default_rng(7)
    n, d = 2048, 128
    unrelated = [unit_rows(rng.standard_normal((n, d)).astype(np.float32), torch.device("cpu")) for _ in range(2)]
    # The depth-th largest cosine with unrelated directions is where the normal approximation puts it.
    tails = candidate_pass(ScreenedCosines(*unrelated, precision="fp32"), depth=32, block_rows=256).row_val[:, -1]
    assert abs(np.median(tails) / unrelated_tail(n, d, 32) - 1) < 0.05
    basis = rng.standard_normal((16, d))
    competing = [unit_rows((rng.uniform(0, 1, (n, 16)) ** 4 @ basis + 0.3 * rng.standard_normal((n, d))).astype(np.float32),
                           torch.device("cpu")) for _ in range(2)]
    cand = {
        name: candidate_pass(ScreenedCosines(*pair, precision="fp32"), depth=32, block_rows=256, keep_screen=None, col_depth=4)
        for name, pair in (("unrelated", unrelated), ("competing", competing))
    }
    # Unrelated directions: no copy and no column tops (the reserves serve); competing ones: both.
    assert cand["unrelated"].stored is None and cand["unrelated"].col_rows is None
    assert isinstance(cand["competing"].stored, StoredScreen) and cand["competing"].col_rows.shape == (n, 4)


def test_the_screen_multiplied_in_column_tiles_fills_every_column_within_its_error_model(monkeypatch):
    import saeseeds.matching.cosine_sources as cosine_sources

    monkeypatch.setattr(cosine_sources, "SCREEN_TILE_COLUMNS", 100)  # 256 columns: two whole tiles and a part
    rng = np.random.default_rng(8)
    n, d = 256, 64
    a, b = (unit_rows(rng.standard_normal((n, d)).astype(np.float32), torch.device("cpu")) for _ in range(2))
    source = ScreenedCosines(a, b, precision="fp32")
    source.screen(np.arange(n)).fill_(np.nan)  # the reused buffer: a column no tile writes would stay NaN
    rows = np.arange(30, 130)
    screen = source.screen(rows).numpy().astype(np.float64)
    r, c = np.repeat(rows, n), np.tile(np.arange(n), len(rows))
    exact = exact_cosines(a, b, r, c).astype(np.float64).reshape(len(rows), n)
    upper = source.error.pair_upper(r, c, screen.reshape(-1)).reshape(len(rows), n)
    assert np.isfinite(screen).all()
    assert (exact <= upper).all() and (np.abs(screen - exact) <= upper - screen).all()


def test_the_kth_largest_selected_from_values_at_or_above_a_guess_is_the_kth_largest_of_all():
    from saeseeds.matching.screen_kernels import _kth_near_guess

    rng = np.random.default_rng(7)
    work = np.empty(512, np.float32)
    for trial in range(200):
        vals = np.round(rng.uniform(-1, 1, 512) * (4 if trial % 2 else 1000)).astype(np.float32)  # heavy ties, then few
        k = int(rng.integers(1, 100))
        want = np.sort(vals)[::-1][k - 1]
        # Guesses at a tied value, just above and below the answer, and outside the values: every branch.
        for guess in (want, np.sort(vals)[::-1][min(2 * k, 511)], want + 1, want - 1, -np.inf, np.inf):
            kth, nxt = _kth_near_guess(vals, 512, k, np.float32(guess), work)
            assert kth == want, (trial, k, guess)
            assert (vals >= nxt).sum() >= min(2 * k, 512) or nxt == guess


def test_column_tops_offered_row_by_row_once_they_fill_equal_a_stable_sort():
    # Many rows: the first blocks offer every column tile by tile (most values enter), later ones row by row
    # behind the per-group pretest (few values enter); both must keep each column's best rows, ties to the lower.
    rng = np.random.default_rng(3)
    block = np.round(rng.uniform(-1, 1, (1500, 999)) * 64).astype(np.float32) / 64  # ties too
    val, idx, col_max, kept, flags, (col_rows, col_val) = run(block, 20, chunks=2, store=False, col_depth=3, block_rows=256)
    want_val, want_rows = reference_top(block.T, 3)
    np.testing.assert_array_equal(col_val, want_val)
    np.testing.assert_array_equal(col_rows, want_rows)
    np.testing.assert_array_equal(col_max, block.max(axis=0))
