"""Compiled passes over screened cosines on CPU: the screening pass's reductions, and threshold scans of a stored screen.

The screening pass multiplies a block of rows against every column, then needs three things from the
[rows, n] float32 block: each row's `depth` largest values, each column's maximum, and (when the
matching keeps one, `stored_screen`) each row's values over a floor deeper down, at 16 bits. torch did these as a `topk` and a
column maximum, two more passes over a block that no longer sits in cache (25 + 19 ms beside a 192 ms
matmul at 1024 x 16,384, d = 768, on a 2-core AVX2 EPYC). `reduce_block` reads each row once from
memory and the rest from cache:

1. per row, the maxima of its strided groups (columns j, j + n/32, ...), the running column maxima and
   a byte per value that exceeds its column's m-th best (the column tops' pretest): elementwise operations
   that vectorise, the maxima read from one array and written to another;
2. L, the depth-th largest group maximum, is at most the row's depth-th largest value, so only groups
   reaching L are read again, and their entries >= L hold the row's top `depth`;
3. with a stored screen, the row's values over a floor that leaves cap / 2 to cap - 1 of them (`_keep_deep`:
   the last row's floor where it fits), compressed branch-free from cache, and the floor at 16 bits.

The kept values are the block's own float32 values, best first, ties at the depth-th value to the lowest
columns. `over_deep_rows` scans kept rows against per-row plus per-column thresholds: the second look at a
row (`violators.rescreen_violators`) as a read of its kept values instead of a d-long product per pair.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from saeseeds.common.selection import kth_largest, kth_largest_int16
from saeseeds.matching.screen_settings import DEEP_CAPACITY

GROUP = 32
"""Columns per strided group whose maximum bounds the depth-th largest value of a row from below."""

STORE_BITS = 14
"""A stored value is round(screen * 2**STORE_BITS) in int16: [-2, 2) in steps of 2**-14, the pad cosine -2 included."""
STORE_SCALE = np.float32(2.0**STORE_BITS)
STORE_STEP = 2.0**-STORE_BITS
"""The two as constants: a power of a global inside the parallel kernel made numba type `math.pow` while lowering the
parfor, which failed ("Unknown attribute 'pow' of type Module(math)") in test processes whose earlier compilations
left numba's math typing unregistered (a fresh clone's CI, 2026-12-03)."""

DEEP_SAMPLES = 1024
"""A row's floor is re-estimated from every (n // DEEP_SAMPLES)-th value when the last row's does not fit it."""

FLOOR_ALL = np.int32(np.iinfo(np.int32).min)
"""The floor of a row that kept every value (n <= DEEP_CAPACITY): every threshold reaches it."""

NAN_ROW, OUT_OF_RANGE = 1, 2
"""`reduce_block` flags: a row holds a NaN (no order to keep), a value falls outside the int16 store's range."""

# Which helpers numba inlines into `reduce_block`'s parallel loop (inline="always") and which it calls: the parfor
# passes take time that grows faster than the loop's body, and with every helper inlined the first compilation took
# 61-82 s (a fresh install's first matching, or each test worker of a fresh clone); calling the helpers that run
# once a row took it to 27-36 s. The helpers run per value (`_insert_descending`, `_offer_column_top`,
# `_raise_maxima`, `_larger_or_nan`) or read or write the row's arrays in loops (`_offer_tiled`, `_keep_deep` and
# its compress) stay inlined: as calls, their arrays lose the parallel loop's no-alias guarantee, and the column
# tops' reductions took 0.17-0.21 s a stacked-set side instead of 0.08-0.10, the kept rows' 0.36-0.39 s a
# correlated 16K side instead of 0.31 (benchmarks/pass_parts.py, alternated).


@njit(inline="always")
def _insert_descending(vals, cols, count, v, c):  # pragma: no cover - compiled
    """Inserts (v, c) into vals[:count], cols[:count] kept by value descending, then column ascending."""
    q = count - 1
    while q >= 0 and (vals[q] < v or (vals[q] == v and cols[q] > c)):
        vals[q + 1], cols[q + 1] = vals[q], cols[q]
        q -= 1
    vals[q + 1], cols[q + 1] = v, c


@njit(inline="always")
def _offer_column_top(kth, vals, tags, c, v, tag):  # pragma: no cover - compiled
    """Offers (v, tag) to column c's m best (vals[c], tags[c], descending; kth[c] the m-th value).

    Strictly better only: offered in increasing tag order, an equal value never displaces an earlier tag.
    """
    if v > kth[c]:
        m = vals.shape[1]
        q = m - 1
        while q > 0 and vals[c, q - 1] < v:
            vals[c, q], tags[c, q] = vals[c, q - 1], tags[c, q - 1]
            q -= 1
        vals[c, q], tags[c, q] = v, tag
        kth[c] = vals[c, m - 1]


@njit(inline="always")
def _raise_maxima(v, col_max, c, group_max, j):  # pragma: no cover - compiled
    """Raises column c's and group j's maxima to v; returns 1 if v is NaN (which raises neither)."""
    m = col_max[c]
    col_max[c] = v if v > m else m
    g = group_max[j]
    group_max[j] = v if v > g else g
    return v != v


@njit
def _count_above(row, thr):  # pragma: no cover - compiled
    """How many values of the row exceed thr (a loop that vectorises)."""
    above = 0
    for c in range(len(row)):
        above += row[c] > thr
    return above


@njit
def _deep_floor(row, cap, work, keys, hist):  # pragma: no cover - compiled
    """Returns a value with cap / 2 to cap - 1 of the row's values above it (n > cap; fewer only where the row has
    fewer distinct values): the one a strided sample places 3/4 cap deep, to a store step, else (rarely) the exact
    (3/4 cap + 1)-th largest value. No NaN in the row.

    The sample's values are taken as int16 store steps (floor(v * 2**STORE_BITS), clamped), whose k-th largest a radix
    select finds in two counting passes (`kth_largest_int16`): a quickselect over the float32 sample took 12 of the
    14 us this took per 6,048-value row, and the default study's stacked SAEs, whose rows differ from one to the next,
    come here for 37% of their rows (the last row's floor does not fit them).
    """
    n = len(row)
    stride = max(1, n // DEEP_SAMPLES)
    m = 0
    for c in range(0, n, stride):
        x = np.floor(row[c] * STORE_SCALE)
        keys[m] = np.int16(min(max(x, np.float32(-32768.0)), np.float32(32767.0)))
        m += 1
    step = kth_largest_int16(keys, m, max(1, (3 * cap * m) // (4 * n)), hist)
    thr = np.float32(step) / STORE_SCALE
    above = _count_above(row, thr)
    if cap // 2 <= above < cap:
        return thr
    return kth_largest(row, n, (3 * cap) // 4 + 1, work)  # 3/4 cap values above it (fewer with ties)


@njit(inline="always")
def _columns_over(row, thr, over, group_max, groups, hits):  # pragma: no cover - compiled
    """Writes the columns of the row's values above thr to `over` (int32), in column order; returns how many.

    Only the strided groups whose maximum exceeds thr can hold one: where fewer than half do (a 131K row keeps
    under 1% of its values, so about a sixth of its groups hold one), only their members are read; else (a 16K
    row: about four fifths) the whole row. Two loops of their own: written as one function with a shared tail,
    the whole-row compress took 33-38 us a 16K row inside `reduce_block` against 14-20.
    """
    nh = 0
    for j in range(groups):
        hits[nh] = j
        nh += group_max[j] > thr
    if 2 * nh < groups:
        return _columns_over_in_groups(row, thr, over, groups, hits, nh)
    return _columns_over_all(row, thr, over)


@njit(inline="always")
def _columns_over_all(row, thr, over):  # pragma: no cover - compiled
    """The whole row, branch-free: every column is written, the position advanced only for those over (a branch per
    value mispredicts on the few percent kept)."""
    e = 0
    for c in range(len(row)):
        over[e] = c
        e += row[c] > thr
    return e


@njit(inline="always")
def _columns_over_in_groups(row, thr, over, groups, hits, nh):  # pragma: no cover - compiled
    """The members of the first nh groups listed in `hits`, group row by group row (columns stay in order), then the
    row's last n % GROUP columns, which belong to no group."""
    e = 0
    for r in range(GROUP):
        base = r * groups
        for h in range(nh):
            c = base + hits[h]
            over[e] = c
            e += row[c] > thr
    for c in range(groups * GROUP, len(row)):
        over[e] = c
        e += row[c] > thr
    return e


@njit(inline="always")
def _keep_deep(row, guess, cap, scale, over, work, keys, hist, kept_v, kept_c, group_max, groups, hits):  # pragma: no cover - compiled
    """Keeps the row's values over a floor that leaves cap / 2 to cap - 1 of them (all of them where n <= cap):
    round(v * scale) in int16 and their columns. Returns (count, floor, clamped); floor -inf where all are kept.

    The floor is `guess`, the last row's, when it fits (rows of a block are alike: 98.6% of a correlated 16K
    block's rows), counted by the compress itself, else `_deep_floor`'s. Only columns are compressed (4 bytes a
    value) and the kept values read back from the row in cache: compressing each value with its int64 column after
    a count took 25-31 us per 16K row of a correlated block in `reduce_block` on one AVX2 core, this 14-19.
    """
    if len(row) <= cap:
        thr = -np.inf
        e = _columns_over(row, thr, over, group_max, groups, hits)
    else:
        thr = guess
        e = _columns_over(row, thr, over, group_max, groups, hits) if thr > -np.inf else -1  # -inf: no last row
        if not cap // 2 <= e < cap:
            thr = _deep_floor(row, cap, work, keys, hist)
            e = _columns_over(row, thr, over, group_max, groups, hits)
    wide = 0
    for p in range(e):
        c = over[p]
        x = np.rint(row[c] * scale)
        wide |= (x < np.float32(-32768.0)) | (x > np.float32(32767.0))
        kept_v[p] = np.int16(min(max(x, np.float32(-32768.0)), np.float32(32767.0)))
        kept_c[p] = c
    return e, thr, wide


@njit(inline="always")
def _larger_or_nan(v, g, first):  # pragma: no cover - compiled
    """v if first, larger than g or NaN, else g: once a NaN is taken it stays (no comparison with it is true)."""
    return v if first or (v > g) or (v != v) else g


DENSE_SHARE = 64
"""A block's column tops are offered tile by tile when more than 1/DENSE_SHARE of its chunk's first row enters them."""

OFFER_TILE = 1024
"""Columns per tile when column tops are offered tile by tile: their tops (1024 x 16 values and rows) stay in cache."""


@njit(inline="always")
def _offer_tiled(block, row0, first_row, last_row, flags, kth, vals, tags):  # pragma: no cover - compiled
    """Offers rows first_row..last_row - 1 of the block to the column tops, OFFER_TILE columns at a time.

    Each column still sees the rows in increasing order (the same tops as row by row), but the tops of a tile
    stay in cache while the rows pass: row by row, every row walked all n columns' tops (3 MiB per chunk at
    16K), and the first block of a correlated 16K matching spent 60 ms there.
    """
    n = block.shape[1]
    for c0 in range(0, n, OFFER_TILE):
        c1 = min(n, c0 + OFFER_TILE)
        for t in range(first_row, last_row):
            if flags[t] & NAN_ROW:
                continue
            row = block[t]
            for c in range(c0, c1):
                _offer_column_top(kth, vals, tags, c, row[c], row0 + t)


@njit
def _kth_near_guess(vals, count, k, guess, work):  # pragma: no cover - compiled
    """Returns (the k-th largest of vals[:count], a guess for the next row's); k < count, no NaN.

    Rows of a block are alike, so the last row's 2k-th largest usually has between k and 4k values at or
    above it in this row: only those are selected from (a count that vectorises, then two small selections),
    where a quickselect over all `count` values spent 3 of the 9 ms of a 1024 x 16,384 block.
    """
    above = 0
    for i in range(count):
        above += vals[i] >= guess
    if above < k or above > 4 * k:
        kth = kth_largest(vals, count, k, work)
        return kth, (kth_largest(vals, count, 2 * k, work) if count >= 2 * k else -np.inf)
    w = 0
    for i in range(count):
        if vals[i] >= guess:
            work[w] = vals[i]
            w += 1
    kth = kth_largest(work, w, k, work)  # the k-th largest of all: at least k values reach the guess
    return kth, (kth_largest(work, w, 2 * k, work) if w >= 2 * k else guess)


@njit(cache=True, parallel=True, nogil=True)
def reduce_block(block, row0, depth, row_val, row_idx, col_max_parts, col_top, deep, flags):  # pragma: no cover - compiled
    """Writes each row's `depth` largest values (descending) and columns, raises each column's maximum, fills `deep`.

    `col_max_parts` is [chunks, n]: one running maximum per chunk of rows, kept across blocks (the caller
    takes the maximum over chunks at the end). `col_top` = (kth [chunks, n], values and rows [chunks, n, m]):
    per chunk and column its m best rows so far (block row t is row row0 + t), descending, the m-th value
    in `kth` for a contiguous test (m = 0: none kept; `merge_column_tops` merges the chunks). `deep` =
    (values [rows, cap] int16, columns [rows, cap] int32, counts [rows] int32, floors [rows] int32): each row's
    deep entries (`deep_rows`), or `no_deep_rows()` to keep none. `flags[t]` gets NAN_ROW or OUT_OF_RANGE bits; a flagged row's
    selection is not to be used.

    The running maxima are read from one array and written to another, swapped row by row (`col_pp`,
    `group_pp`): numba's LLVM leaves a loop that reads and writes one array beside another
    scalar (2.1 against 6.8 G values/s in cache), and the pass's reductions took 14 ms per 1024 x 16,384 block
    where they now take 9.
    """
    rows, n = block.shape
    groups = n // GROUP
    tail0 = groups * GROUP
    n_groups = groups + (n - tail0)
    deep_v, deep_c, deep_n, deep_floor = deep
    cap = deep_v.shape[1]
    storing = cap > 0
    scale = STORE_SCALE
    col_kth, top_v, top_r = col_top
    m_top = top_v.shape[2]
    chunks = col_max_parts.shape[0]
    per = (rows + chunks - 1) // chunks
    for chunk in prange(chunks):
        col_max = col_max_parts[chunk]
        kth_c = col_kth[chunk]
        col_pp = np.empty((2, n), dtype=np.float32)
        for c in range(n):  # element by element: a slice assignment compiles numba's shape-mismatch message
            col_pp[0, c] = col_max[c]
        group_pp = np.empty((2, n_groups), dtype=np.float32)
        over_w = np.zeros(max(1, tail0 // 8), dtype=np.uint64)  # the column tops' pretest, 8 columns a word
        over_b = over_w.view(np.uint8)  # 1 where a value exceeds its column's m-th best
        work = np.empty(n, dtype=np.float32)
        cand_v = np.empty(n, dtype=np.float32)
        cand_i = np.empty(n, dtype=np.int64)
        hits = np.empty(groups, dtype=np.int64)
        over = np.empty(n if storing else 0, dtype=np.int32)
        keys = np.empty(n if storing else 0, dtype=np.int16)  # a row's sample as store steps (`_deep_floor`)
        hist = np.empty(256, dtype=np.int64)
        out_v = np.empty(depth, dtype=np.float32)
        out_i = np.empty(depth, dtype=np.int64)
        guess = -np.inf
        deep_guess = -np.inf
        first_row = chunk * per
        last_row = min(rows, first_row + per)
        # While the column tops fill (the first rows a chunk sees), most values enter them: then they are
        # offered tile by tile after the rows (`_offer_tiled`) instead of row by row.
        tiled = False
        if m_top and last_row > first_row:
            entering = 0
            for c in range(n):
                entering += block[first_row, c] > kth_c[c]
            tiled = entering * DENSE_SHARE > n
        pretest = m_top and not tiled
        for t in range(first_row, last_row):
            row = block[t]
            col_src, col_dst = col_pp[(t - first_row) & 1], col_pp[1 - ((t - first_row) & 1)]
            # One read of the row from memory: column maxima, group maxima, column-top hits, group row
            # by group row (each loop vectorises).
            for r in range(GROUP):
                base = r * groups
                g_src, g_dst = group_pp[r & 1], group_pp[1 - (r & 1)]
                first = r == 0
                if pretest:
                    for j in range(groups):
                        v = row[base + j]
                        m = col_src[base + j]
                        col_dst[base + j] = v if v > m else m
                        g_dst[j] = _larger_or_nan(v, g_src[j], first)
                        over_b[base + j] = v > kth_c[base + j]
                else:
                    for j in range(groups):
                        v = row[base + j]
                        m = col_src[base + j]
                        col_dst[base + j] = v if v > m else m
                        g_dst[j] = _larger_or_nan(v, g_src[j], first)
            group_max = group_pp[GROUP & 1]
            bad = 0
            for c in range(tail0, n):
                col_dst[c] = col_src[c]
                group_max[groups + c - tail0] = -np.inf
                bad += _raise_maxima(row[c], col_dst, c, group_max, groups + c - tail0)
            for j in range(groups):
                bad += group_max[j] != group_max[j]
            if bad:
                flags[t] |= NAN_ROW
                continue
            if pretest:
                # Rows come in increasing order within a chunk, so a tie never displaces an earlier row. Only the
                # values the pretest marked are offered, found 8 columns a word (the strided groups that hold one
                # read 32 values from as many cache lines: a correlated 16K matrix's tops took 0.39-0.49 s on one
                # core, now 0.33-0.38); the entries (about m (1 + ln(rows / m)) per column and chunk) miss cache,
                # and save more in the solves and rescreens than they cost.
                vals_c, rows_c = top_v[chunk], top_r[chunk]
                for w in range(tail0 // 8):
                    if over_w[w]:
                        for c in range(8 * w, 8 * w + 8):
                            if over_b[c]:
                                _offer_column_top(kth_c, vals_c, rows_c, c, row[c], row0 + t)
                for c in range(tail0, n):
                    _offer_column_top(kth_c, vals_c, rows_c, c, row[c], row0 + t)
            low = -np.inf
            if n_groups > depth:
                low, guess = _kth_near_guess(group_max, n_groups, depth, guess, work)
            count = 0
            for j in range(n_groups):
                if group_max[j] >= low:  # only groups that reach L hold candidates
                    if j >= groups:
                        cand_v[count] = group_max[j]
                        cand_i[count] = tail0 + j - groups
                        count += 1
                        continue
                    for r in range(GROUP):
                        c = r * groups + j
                        v = row[c]
                        if v >= low:
                            cand_v[count] = v
                            cand_i[count] = c
                            count += 1
            kth = kth_largest(cand_v, count, depth, work)
            kept = 0
            ties = 0
            for p in range(count):
                v = cand_v[p]
                if v > kth:
                    _insert_descending(out_v, out_i, kept, v, cand_i[p])
                    kept += 1
                elif v == kth:
                    ties += 1
            if ties <= depth - kept:
                for p in range(count):
                    if cand_v[p] == kth:
                        _insert_descending(out_v, out_i, kept, kth, cand_i[p])
                        kept += 1
            else:  # more ties than places: the lowest columns, read in column order
                for c in range(n):
                    if kept == depth:
                        break
                    if row[c] == kth:
                        out_v[kept], out_i[kept] = kth, c
                        kept += 1
            for p in range(depth):
                row_val[t, p] = out_v[p]
                row_idx[t, p] = out_i[p]
            if storing:
                deep_n[t], deep_guess, wide = _keep_deep(
                    row, deep_guess, cap, scale, over, work, keys, hist, deep_v[t], deep_c[t], group_max, groups, hits
                )
                x = np.rint(deep_guess * scale)
                deep_floor[t] = FLOOR_ALL if deep_guess == -np.inf else np.int32(max(x, np.float32(-32768.0)))
                if wide or x > np.float32(32767.0):
                    flags[t] |= OUT_OF_RANGE
        if last_row > first_row:
            last = (last_row - first_row) & 1
            for c in range(n):
                col_max[c] = col_pp[last, c]
        if tiled:
            _offer_tiled(block, row0, first_row, last_row, flags, kth_c, top_v[chunk], top_r[chunk])


@njit(cache=True, parallel=True, nogil=True)
def _scan_deep(deep_v, deep_c, deep_n, deep_floor, rows, pos, row_thr, col_thr, low_col, counts, start, out_q, out_v):  # pragma: no cover - compiled
    """Counts (empty `start`), then writes from start[p] on (else), row p's kept entries over row_thr[p] + col_thr[q].

    A row whose lowest threshold, row_thr[p] + low_col, falls below its floor may hold pairs over it that were not
    kept: its count is -1 (the caller multiplies it again), and the filling pass skips it. `pos` maps a column to its
    q, and a column not scanned to the last entry of `col_thr`, +inf, which no value exceeds: both passes test every
    entry without a branch (the tests' outcomes follow no pattern; with branches the two passes took 11% of the
    stacked set's decoder solve, and its rescreens 37-40 ms where they now take 32-33).
    """
    inv = STORE_STEP
    fill = len(start) > 0
    chunks = min(len(rows), SCAN_CHUNKS)
    per = (len(rows) + chunks - 1) // max(chunks, 1)
    for chunk in prange(chunks):
        # Every entry of a row is written to the chunk's buffer and the position advances past those over threshold;
        # then the kept ones go to the output (written there directly, entries after a row's last kept one would land
        # in the next row's part, which another thread may have filled).
        buf_q = np.empty(deep_v.shape[1] if fill else 0, dtype=np.int64)
        buf_v = np.empty(deep_v.shape[1] if fill else 0, dtype=np.float32)
        for p in range(chunk * per, min(len(rows), (chunk + 1) * per)):
            i = rows[p]
            t = row_thr[p]
            if fill:
                if counts[p] <= 0:
                    continue
            elif t + low_col < deep_floor[i] * inv:
                counts[p] = -1
                continue
            if fill:
                o = 0
                for e in range(deep_n[i]):
                    q = pos[deep_c[i, e]]
                    v = deep_v[i, e] * inv
                    buf_q[o], buf_v[o] = q, v
                    o += v > t + col_thr[q]
                for k in range(o):
                    out_q[start[p] + k], out_v[start[p] + k] = buf_q[k], buf_v[k]
            else:
                c = 0
                for e in range(deep_n[i]):
                    c += deep_v[i, e] * inv > t + col_thr[pos[deep_c[i, e]]]
                counts[p] = c


SCAN_CHUNKS = 64
"""Chunks of rows `_scan_deep` shares among its threads (each with its own buffer of one row's kept entries)."""


def over_deep_rows(deep, rows, cols, row_thr, col_thr) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Returns (p, q, value, short): the kept pairs of rows x cols whose value exceeds row_thr[p] + col_thr[q], and short.

    p and q index `rows` and `cols`; values are the stored ones as float32 (k * 2**-14, exact), in row-major
    order. The comparison is in float64, so no kept pair over its threshold is dropped. `short`: positions p of
    the rows whose thresholds reach below what was kept of them (their floor); their pairs are not in the result
    and must be screened another way. `deep` = (values, columns, counts, floors) as `reduce_block` fills them.
    """
    deep_v, deep_c, deep_n, deep_floor = deep
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    cols = np.ascontiguousarray(cols, dtype=np.int64)
    row_thr = np.ascontiguousarray(row_thr, dtype=np.float64)
    col_thr = np.ascontiguousarray(col_thr, dtype=np.float64)
    pos = np.full(len(deep_n), len(cols), dtype=np.int64)
    pos[cols] = np.arange(len(cols))
    low_col = float(col_thr.min()) if len(cols) else np.inf
    col_thr = np.append(col_thr, np.inf)  # the threshold of every column not scanned
    counts = np.empty(len(rows), dtype=np.int64)
    none_i, none_v = np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
    _scan_deep(deep_v, deep_c, deep_n, deep_floor, rows, pos, row_thr, col_thr, low_col, counts, none_i, none_i, none_v)
    short = np.flatnonzero(counts < 0)
    counts[short] = 0
    total = int(counts.sum())
    start = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    out_q, out_v = np.empty(total, dtype=np.int64), np.empty(total, dtype=np.float32)
    if total:
        _scan_deep(deep_v, deep_c, deep_n, deep_floor, rows, pos, row_thr, col_thr, low_col, counts, start, out_q, out_v)
    out_p = np.repeat(np.arange(len(rows), dtype=np.int64), counts)
    if total and (np.diff(cols) < 0).any():  # kept entries are in column order: positions follow it only for sorted cols
        order = np.lexsort((out_q, out_p))
        out_p, out_q, out_v = out_p[order], out_q[order], out_v[order]
    return out_p, out_q, out_v, short


def deep_rows(n: int, cap: int, memory: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Returns empty deep entries for n rows of at most `cap` each: (values, columns, counts, floors), in `memory` if given.

    `memory`: a flat uint8 buffer of at least `deep_rows_bytes(n, cap)` bytes (reused from a pool, `screen_memory`).
    """
    memory = np.empty(deep_rows_bytes(n, cap), dtype=np.uint8) if memory is None else memory
    cols_end = 4 * n * cap
    counts_end = cols_end + 4 * n
    floors_end = counts_end + 4 * n
    columns = memory[:cols_end].view(np.int32).reshape(n, cap)
    counts = memory[cols_end:counts_end].view(np.int32)
    floors = memory[counts_end:floors_end].view(np.int32)
    values = memory[floors_end : floors_end + 2 * n * cap].view(np.int16).reshape(n, cap)
    counts[:] = 0
    floors[:] = np.iinfo(np.int32).max  # nothing kept yet: no threshold reaches a row not filled
    return values, columns, counts, floors


def deep_rows_bytes(n: int, cap: int) -> int:
    """Returns the bytes of deep entries for n rows of at most `cap` each (6 per entry, 8 per row)."""
    return 6 * n * cap + 8 * n


def no_deep_rows() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The `deep` argument of `reduce_block` that keeps none."""
    return deep_rows(1, 0)


@njit(cache=True, nogil=True)
def reserve_column_tops(row_idx, row_val, m):  # pragma: no cover - compiled
    """Returns positions in the flattened reserve [n, depth]: for every column, its m best entries (ties: lower row).

    One pass over the reserve in row order, each column keeping its m best so far (as `reduce_block` keeps its
    column tops), where a sort of all n * depth entries by (column, value) cost 0.05 s per 16K matching.
    """
    n, depth = row_idx.shape
    kth = np.full(n, -np.inf, dtype=np.float32)
    vals = np.full((n, m), -np.inf, dtype=np.float32)
    pos = np.full((n, m), -1, dtype=np.int64)
    for i in range(n):
        for p in range(depth):
            _offer_column_top(kth, vals, pos, row_idx[i, p], row_val[i, p], i * depth + p)
    flat = pos.reshape(-1)
    return flat[flat >= 0]


def new_column_tops(chunks: int, n: int, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns empty per-chunk column tops for `reduce_block` (m = 0: none kept)."""
    return (
        np.full((chunks, n), -np.inf, dtype=np.float32),
        np.full((chunks, n, m), -np.inf, dtype=np.float32),
        np.full((chunks, n, m), -1, dtype=np.int64),
    )


@njit(cache=True, nogil=True)
def _merge_sorted_tops(vals, rows, out_v, out_r):  # pragma: no cover - compiled
    """Writes each column's m best over the chunks' lists, each sorted by value descending, then row ascending."""
    chunks, n, m = vals.shape
    head = np.zeros(chunks, dtype=np.int64)
    for c in range(n):
        head[:] = 0
        for q in range(m):
            best = -1
            for ch in range(chunks):
                h = head[ch]
                if h < m and rows[ch, c, h] >= 0 and (
                    best < 0
                    or vals[ch, c, h] > vals[best, c, head[best]]
                    or (vals[ch, c, h] == vals[best, c, head[best]] and rows[ch, c, h] < rows[best, c, head[best]])
                ):
                    best = ch
            if best < 0:
                out_v[c, q], out_r[c, q] = -np.inf, -1
            else:
                out_v[c, q], out_r[c, q] = vals[best, c, head[best]], rows[best, c, head[best]]
                head[best] += 1


def merge_column_tops(col_top) -> tuple[np.ndarray, np.ndarray]:
    """Returns (rows, values) [n, m]: each column's m best rows over all chunks, by value descending, then row.

    Each chunk's list is already in that order (`reduce_block` offers rows in increasing order; `column_tops` keeps a
    total order), so a merge of the heads: 1 ms a stacked-set side, where a lexsort of all chunks' entries took 6.5.
    A column named by fewer than m rows gets row -1 and value -inf after them."""
    _, vals, rows = col_top
    chunks, n, m = vals.shape
    out_v = np.empty((n, m), dtype=np.float32)
    out_r = np.empty((n, m), dtype=np.int64)
    _merge_sorted_tops(vals, rows, out_v, out_r)
    return out_r, out_v


def over_thresholds(store, rows, cols, row_thr, col_thr) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns (p, q, value): every position of rows x cols whose stored value exceeds row_thr[p] + col_thr[q].

    p and q index `rows` and `cols`; values are the stored ones as float32 (k * 2**-14, exact), in
    row-major order. The comparison is in float64, so no pair over its threshold is dropped. Few pairs pass
    (36K of 96M scanned in a correlated 16K matching's rescreens), so one pass keeps each row's first
    `OVER_CAP` and only rows with more are read again, where a counting pass and a filling pass read every row twice.
    """
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    cols = np.ascontiguousarray(cols, dtype=np.int64)
    row_thr = np.ascontiguousarray(row_thr, dtype=np.float64)
    col_thr = np.ascontiguousarray(col_thr, dtype=np.float64)
    counts = np.empty(len(rows), dtype=np.int64)
    first_q = np.empty((len(rows), OVER_CAP), dtype=np.int64)
    first_v = np.empty((len(rows), OVER_CAP), dtype=np.float32)
    none_i, none_v = np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
    _scan_over(store, rows, cols, row_thr, col_thr, counts, first_q, first_v, none_i, none_i, none_v)
    total = int(counts.sum())
    # Row p's pairs fill out_*[start[p]:start[p] + counts[p]]: copied from first_* where they fit, else the second pass.
    out_p = np.repeat(np.arange(len(rows), dtype=np.int64), counts)
    out_q, out_v = np.empty(total, dtype=np.int64), np.empty(total, dtype=np.float32)
    fits = counts <= OVER_CAP
    taken = (np.arange(OVER_CAP) < counts[:, None]) & fits[:, None]
    in_first = np.repeat(fits, counts)
    out_q[in_first], out_v[in_first] = first_q[taken], first_v[taken]
    if not fits.all():
        start = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        _scan_over(store, rows, cols, row_thr, col_thr, counts, first_q, first_v, start, out_q, out_v)
    return out_p, out_q, out_v


__all__ = [
    "DEEP_CAPACITY", "DEEP_SAMPLES", "FLOOR_ALL", "GROUP", "NAN_ROW", "OUT_OF_RANGE", "STORE_BITS", "STORE_SCALE", "STORE_STEP", "deep_rows", "deep_rows_bytes", "merge_column_tops",
    "new_column_tops", "no_deep_rows", "over_deep_rows", "reduce_block",
    "reserve_column_tops",
]
