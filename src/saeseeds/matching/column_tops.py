"""Each column's best rows, read after the screening pass from what it kept of every row (the reserve and the stored screen).

The candidate graph takes, besides each row's top k, each column's best rows: where neighbours compete, a column that
few rows rank high would otherwise find its cheap partners round by round. The pass used to find them as it read each
row (`screen_kernels.reduce_block`'s column tops): a test per value and an insertion per hit, 0.035 s of a 0.18 s pass
per side of the default study's stacked set (6,048 x 576, int8 screen, AVX512 EPYC, `benchmarks/pass_parts.py`).
Where the pass keeps a stored screen, every row's 512-1,023 largest values are there already: read from them, the
columns' 16 best rows are 99.996% the rows the pass found (from the rows' top 48 alone, 96%: too few, the matching
took 0.90 s against 0.83 s). Reading them costs 11-12 ms a side: the reserves first (each row's top 48, screened
values), which set every column's m-th best high, then the rest of the kept values (their stored 16 bits, plus half a
step: an upper bound on the screened value), of which few pass that test. The stacked set's matching: 0.81-0.86 ->
0.78-0.80 s (`benchmarks/README.md` "Stop 46").

They are candidates only: which rows they name changes the matching's speed, never its result. Ties are broken by row
(value descending, then row ascending), a total order, so the tops do not depend on the order of offers or on how many
threads share the rows.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from saeseeds.matching.screen_kernels import STORE_STEP, merge_column_tops, new_column_tops


@njit(inline="always")
def _offer(kth, kth_row, vals, rows, c, v, row):  # pragma: no cover - compiled
    """Offers (v, row) to column c's m best (vals[c], rows[c]: value descending, then row ascending)."""
    if v > kth[c] or (v == kth[c] and row < kth_row[c]):
        m = vals.shape[1]
        q = m - 1
        while q > 0 and (vals[c, q - 1] < v or (vals[c, q - 1] == v and rows[c, q - 1] > row)):
            vals[c, q], rows[c, q] = vals[c, q - 1], rows[c, q - 1]
            q -= 1
        vals[c, q], rows[c, q] = v, row
        kth[c], kth_row[c] = vals[c, m - 1], rows[c, m - 1]


@njit(cache=True, parallel=True, nogil=True)
def _chunk_tops(deep_v, deep_c, deep_n, row_idx, row_val, vals, rows):  # pragma: no cover - compiled
    """Fills vals[chunk], rows[chunk] ([chunks, n, m]) with each column's m best among the chunk's rows."""
    chunks, n, m = vals.shape
    per = (n + chunks - 1) // chunks
    depth = row_idx.shape[1]
    half = np.float32(STORE_STEP / 2)
    step = np.float32(STORE_STEP)
    for ch in prange(chunks):
        v_c, r_c = vals[ch], rows[ch]
        kth = np.full(n, -np.inf, dtype=np.float32)
        kth_row = np.full(n, n, dtype=np.int64)
        in_reserve = np.zeros(n, dtype=np.bool_)
        first, last = ch * per, min(n, (ch + 1) * per)
        for i in range(first, last):
            for p in range(depth):
                _offer(kth, kth_row, v_c, r_c, row_idx[i, p], row_val[i, p], i)
        for i in range(first, last):
            for p in range(depth):
                in_reserve[row_idx[i, p]] = True
            for e in range(deep_n[i]):
                c = deep_c[i, e]
                v = deep_v[i, e] * step + half  # the stored value rounds the screened one to the nearest step
                if v >= kth[c] and not in_reserve[c]:
                    _offer(kth, kth_row, v_c, r_c, c, v, i)
            for p in range(depth):
                in_reserve[row_idx[i, p]] = False


def tops_from_kept_rows(deep, row_idx: np.ndarray, row_val: np.ndarray, m: int, chunks: int) -> tuple[np.ndarray, np.ndarray]:
    """Returns (rows, values) [n, m]: each column's m best rows among the reserves (`row_idx`, `row_val`: screened
    values) and the stored screen's kept values (`deep` = (values, columns, counts, floors), `screen_kernels.deep_rows`;
    upper bounds on their screened values). A column named by fewer than m rows gets row -1 and value -inf after them.
    """
    deep_v, deep_c, deep_n, _ = deep
    _, vals, rows = new_column_tops(chunks, len(deep_n), m)
    _chunk_tops(deep_v, deep_c, deep_n, np.ascontiguousarray(row_idx), np.ascontiguousarray(row_val), vals, rows)
    return merge_column_tops((None, vals, rows))


__all__ = ["tops_from_kept_rows"]
