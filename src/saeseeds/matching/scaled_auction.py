"""A first solve from nothing: an auction with epsilon-scaling, then exact integer potentials.

Why not shortest paths from the start: on the default study's stacked SAEs (near-duplicate latents across
sizes and seeds) the first solve's free rows each sit in a small basin, one costly edge leads out of it
onto a plateau of thousands of columns at nearly one distance, and each Dijkstra search settles that
plateau again (the decoder's 190 searches after bids settled about 1,700 columns each: 63 ms, with the
bids 80 ms; the encoder's 46 ms). An auction settles it for all rows at once: a free row bids for its best
column, raising its price to the second best value plus epsilon, and the row that held it bids next.
Starting with a coarse epsilon (a 32nd of the profits' spread) and dividing it by `SCALE_STEP` each
phase, the prices of one phase start the next near their final values, so no phase fights a long price
war (started at a 2,000th of the spread, the same decoder graph took 5.5 M bids against 0.2 M).

Profits are scaled by n + 1, and the last phase runs at epsilon = 1: every row's matched edge is then
within 1 of its best, n in all, less than one unscaled unit, so the matching is optimal (Bertsekas'
auction, as in Goldberg & Kennedy's CSA). Potentials follow without trusting that: column prices
B_j = ceil(p_j / (n + 1)) are raised until every row's matched edge is its best (`_raise_to_tight`: at
most a quantum here and there, one pass over the edges on the stacked set), which ends because the
matching is optimal, and A_i = max_j q_ij - B_j. Then the prices are lowered as far as they go
(`_lowest_prices`): the auction's keep what its coarse phases added, its rows' potentials sit that much
lower, and the certificate's bounds then sent more rows to be screened again. `assign_sparse` checks
feasibility and tightness itself.

On the stacked set's first graphs (6,048 rows, 37 edges each): 26 / 22 ms (decoder / encoder) against
89 / 55 ms for bids and shortest paths, the same optimum; the lowest prices take 4 ms more. Later solves
start from these potentials in `augmenting.AugmentingSolver` (rows freed a few at a time, where shortest
paths suit; an auction there, from the last prices, saved little and sent more rows to be screened again).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from saeseeds.matching.binary_heap import heap_pop, heap_push

UNMATCHED = -1
START_SHARE = 32
"""The first phase's epsilon is the profits' spread (scaled) over this."""
SCALE_STEP = 16
"""Epsilon is divided by this from one phase to the next (8-32 took 36-38 ms on the stacked decoder's graph)."""
BIDS_PER_ROW_CAP = 100
"""A phase that takes more bids than this many per row is given up (a graph without a perfect matching bids forever)."""
_FAR = np.int64(2**62)
_LARGEST_SCALED = 2**56
"""Scaled profits and their spread stay below this, so that prices cannot overflow within the bid cap."""


def first_assignment(row_ptr: np.ndarray, cols: np.ndarray, q: np.ndarray):
    """Returns (partner, owner, A, B): an optimal perfect matching and integer potentials tight on it, or None.

    `cols` and `q` list each row's edges largest profit first (`augmenting._best_first`), which lets a bid
    stop reading at the first edge whose profit is below the second best value found (prices are never
    negative). None where the auction cannot run or gave up (profits too large to scale, or a phase over
    its bid cap, as on a graph without a perfect matching): the caller solves by shortest paths instead.
    """
    n = len(row_ptr) - 1
    if n == 0 or len(q) == 0:
        return None
    spread = int(q.max()) - int(q.min()) + 1
    if max(spread, abs(int(q.min())), abs(int(q.max()))) * (n + 1) >= _LARGEST_SCALED:
        return None
    scaled = q * np.int64(n + 1)
    prices = np.zeros(n, dtype=np.int64)
    partner = np.full(n, UNMATCHED, dtype=np.int64)
    owner = np.full(n, UNMATCHED, dtype=np.int64)
    queue = np.empty(n + 1, dtype=np.int64)
    epsilon = max(1, spread * (n + 1) // START_SHARE)
    while True:
        if not _auction_phase(row_ptr, cols, scaled, prices, partner, owner, np.int64(epsilon), np.int64(spread * (n + 1)), queue):
            return None
        if epsilon == 1:
            break
        epsilon = max(1, epsilon // SCALE_STEP)
    b = -((-prices) // (n + 1))  # ceil
    if not _raise_to_tight(row_ptr, cols, q, partner, owner, b, np.int64(BIDS_PER_ROW_CAP * (len(q) + n))):
        return None
    b = _lowest_prices(row_ptr, cols, q, owner, _row_best(row_ptr, cols, q, b), b)
    return partner, owner, _row_best(row_ptr, cols, q, b), b


@njit(cache=True, nogil=True)
def _auction_phase(row_ptr, cols, scaled, prices, partner, owner, epsilon, spread, queue):  # pragma: no cover - compiled
    """One phase at `epsilon`: every row unmatched, then bids until each holds a column; False past the bid cap.

    A row's bid takes its best column j1 (value v1 = scaled profit - price) over the second best v2 and raises
    p_j1 by v1 - v2 + epsilon: the row is then within epsilon of its best (epsilon-complementary slackness), and
    the column's last holder bids next. A row with one edge raises its price by the spread (any amount would do).
    Rows wait in a ring buffer of n + 1 places: at most n rows are ever free at once.
    """
    n = len(partner)
    for i in range(n):
        partner[i] = UNMATCHED
        owner[i] = UNMATCHED
        queue[i] = i
    size = n + 1
    head, tail = 0, n
    budget = BIDS_PER_ROW_CAP * n + 1000
    while head != tail:
        i = queue[head]
        head = head + 1 if head + 1 < size else 0
        budget -= 1
        if budget < 0:
            return False
        v1 = -_FAR
        v2 = -_FAR
        j1 = UNMATCHED
        for e in range(row_ptr[i], row_ptr[i + 1]):
            if scaled[e] < v2:
                break  # every edge left has value <= its profit < v2
            j = cols[e]
            v = scaled[e] - prices[j]
            if v > v1:
                v2, v1, j1 = v1, v, j
            elif v > v2:
                v2 = v
        if j1 == UNMATCHED:
            return False  # a row without edges
        if v2 == -_FAR:
            v2 = v1 - spread
        raise_by = v1 - v2 + epsilon  # < 2**63: values lie within [-2**62 - 2**56, 2**56]
        if raise_by > _FAR - prices[j1]:
            return False  # prices past 2**62: no feasible graph gets there
        prices[j1] += raise_by
        k = take_column(partner, owner, i, j1)
        if k != UNMATCHED:
            queue[tail] = k
            tail = tail + 1 if tail + 1 < size else 0
    return True


@njit(inline="always")
def take_column(partner, owner, i, j):  # pragma: no cover - compiled
    """Matches row i to column j; returns the row that held j, now free (UNMATCHED if none did)."""
    k = owner[j]
    partner[i] = j
    owner[j] = i
    if k != UNMATCHED:
        partner[k] = UNMATCHED
    return k


@njit(cache=True, nogil=True)
def _raise_to_tight(row_ptr, cols, q, partner, owner, b, budget):  # pragma: no cover - compiled
    """Raises column prices until each row's matched edge is its best: q_ij - B_j <= q_im - B_m; False past `budget`.

    A longest-path relaxation (arcs m -> j of weight q_ij - q_im, m row i's column): it ends when the matching is
    optimal (a cycle that gained would be a better matching); a price that rose re-checks the row that holds it.
    """
    n = len(partner)
    queue = np.empty(n + 1, dtype=np.int64)
    waiting = np.ones(n, dtype=np.bool_)
    for i in range(n):
        queue[i] = i
    size = n + 1
    head, tail = 0, n
    while head != tail:
        i = queue[head]
        head = head + 1 if head + 1 < size else 0
        waiting[i] = False
        m = partner[i]
        mine = _FAR
        for e in range(row_ptr[i], row_ptr[i + 1]):
            if cols[e] == m:
                mine = q[e]
                break
        if mine == _FAR:
            return False  # matched to a column that is not its edge: cannot happen
        base = b[m] - mine
        for e in range(row_ptr[i], row_ptr[i + 1]):
            budget -= 1
            j = cols[e]
            need = base + q[e]
            if b[j] < need:
                b[j] = need
                k = owner[j]
                if not waiting[k]:
                    waiting[k] = True
                    queue[tail] = k
                    tail = tail + 1 if tail + 1 < size else 0
        if budget < 0:
            return False
    return True


@njit(cache=True, nogil=True)
def _lowest_prices(row_ptr, cols, q, owner, a, b):  # pragma: no cover - compiled
    """Returns the least non-negative column prices under which the matching stays tight and every edge feasible.

    Lowering column j by D_j <= B_j keeps edge (i, j) feasible while D_j <= D_m + (A_i + B_j - q_ij), m row i's column:
    the largest D is a shortest-path labelling from every column at once (start label B_j), which Dijkstra finds
    because reduced costs are >= 0. The auction's prices carry what its coarse phases added, and the rows' potentials
    sit that much lower; the lowest prices put them back where shortest paths would have (a random 16K pair's rows
    screened again 13,349 / 16,519 -> 9,394 / 9,268, against 8,847 / 8,344 after shortest paths).
    """
    n = len(owner)
    lower = b.copy()
    done = np.zeros(n, dtype=np.bool_)
    keys = np.empty(len(cols) + n, dtype=np.int64)
    vals = np.empty(len(cols) + n, dtype=np.int64)
    size = 0
    for j in range(n):
        size = heap_push(keys, vals, size, lower[j], j)
    while size > 0:
        d, m, size = heap_pop(keys, vals, size)
        if done[m] or d != lower[m]:
            continue
        done[m] = True
        i = owner[m]
        base = d + a[i]
        for e in range(row_ptr[i], row_ptr[i + 1]):
            j = cols[e]
            if not done[j]:
                x = base + b[j] - q[e]
                if x < lower[j]:
                    lower[j] = x
                    size = heap_push(keys, vals, size, x, j)
    return b - lower


@njit(cache=True, nogil=True)
def _row_best(row_ptr, cols, q, b):  # pragma: no cover - compiled
    """Returns A_i = max_j q_ij - B_j for every row."""
    n = len(row_ptr) - 1
    a = np.empty(n, dtype=np.int64)
    for i in range(n):
        best = -_FAR
        for e in range(row_ptr[i], row_ptr[i + 1]):
            v = q[e] - b[cols[e]]
            if v > best:
                best = v
        a[i] = best
    return a


__all__ = ["first_assignment", "take_column"]
