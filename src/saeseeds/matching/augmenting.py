"""An assignment solver that keeps its state between rounds: shortest augmenting paths on the candidate graph.

`assignment.assign_sparse` grows its candidate graph round by round and settles bounded profits to exact
ones; each change touches a few rows. Solving the whole graph again (scipy's LAPJVsp) redoes the work
of every earlier round, and on dictionaries with competing neighbours (correlated directions, the
near-duplicates of SAEs stacked across sizes and seeds) that was the largest phase of the matching.

This solver keeps a matching M and integer potentials A (rows), B (columns) with A_i + B_j >= q_ij on
every edge and equality on M. A change to row i's edges re-prices the row, A_i = max_j (q_ij - B_j),
which keeps every edge feasible, and frees the row if its matched edge is no longer tight. The free rows
bid for columns first (`_bid`, below), and each row still free takes one shortest augmenting path on the
reduced costs A_i + B_j - q_ij >= 0 (Dijkstra with a binary heap; the Hungarian method's step, as in
LAPJV's augmentation). After a path of length d to a
free column, the columns Dijkstra settled at distance d_j <= d gain d - d_j on B and their rows lose
it on A: the path becomes tight, M stays tight, every edge stays feasible, and column prices only
rise (which `pair_sets.Watch` relies on). Work per round is the few paths that changed, not the graph.

The first solve starts from nothing and is an auction's (`scaled_auction.first_assignment`: its
docstring says why). Where that gives up (a graph without a perfect matching, profits too large to
scale), or with `start_by_auction` off, every row takes its best column if free, and the rest (a third to
a half of the rows on the benchmark's dictionaries) bid for columns first (LAPJV's augmenting row
reduction, `_bid`), which leaves a few dozen rows for the shortest paths. On the first graphs of
the 16K benchmark matchings that took 0.07 / 0.21 s (random / correlated) against 0.43 / 0.71 s
with shortest paths alone, and 0.11 s against 0.16 s on the default study's stacked set. Later solves
bid too, for the rows a round freed: replayed on the same graphs, a correlated 16K matching's solves
took 0.53 s against 0.77 s with shortest paths alone, the real 16K pair's 0.30 s against 0.36 s.

The kernels are compiled by numba (cached next to this file after the first call). Optimality is not
taken on trust: `assign_sparse` checks feasibility on every edge and tightness on M in int64 itself.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from saeseeds.matching.binary_heap import heap_pop, heap_push
from saeseeds.matching.scaled_auction import first_assignment, take_column

UNMATCHED = -1
BIDS_PER_FREE_ROW = 64
"""The first solve's free rows bid first (at most this many bids each, in all), then take shortest paths."""
_FAR = np.int64(2**62)


class AugmentingSolver:
    """The matching and potentials of one growing graph (square, n rows and n columns).

    `solve(rows, cols, q, touched)` after the edges of the `touched` rows changed (added, or profits
    moved): it re-prices those rows and matches every free row again. Its two steps, `reprice` and
    `augment`, take `graph` = (row_ptr, cols, q): CSR with a row's columns in any order, int64 profits.
    """

    def __init__(self, n: int):
        self.n = n
        self.partner = np.full(n, UNMATCHED, dtype=np.int64)
        self.owner = np.full(n, UNMATCHED, dtype=np.int64)
        self.a = np.zeros(n, dtype=np.int64)
        self.b = np.zeros(n, dtype=np.int64)
        self.paths = 0
        """How many augmenting paths were found so far."""
        self.start_by_auction = True
        """Solve the first graph by `scaled_auction.first_assignment` (False: bids, then shortest paths, as later solves)."""

    def solve(self, rows: np.ndarray, cols: np.ndarray, q: np.ndarray, touched: np.ndarray) -> np.ndarray:
        """Returns the optimal perfect matching of the edges (grouped by row) after the edges of `touched` rows changed."""
        graph = csr(self.n, rows, cols, q)
        first = bool((self.partner == UNMATCHED).all())  # only before the first solve: a perfect matching stays perfect
        if first and self.start_by_auction:
            row_ptr, c, profit = graph
            order = _best_first(row_ptr, profit)
            found = first_assignment(row_ptr, c[order], profit[order])
            if found is not None:
                self.partner, self.owner, self.a, self.b = found
                return self.partner
        self.reprice(graph, touched)
        return self.augment(graph, bids=BIDS_PER_FREE_ROW, ordered=first)

    def reprice(self, graph: tuple[np.ndarray, np.ndarray, np.ndarray], rows: np.ndarray) -> None:
        """Makes rows feasible again after their edges changed (A_i = max over the row of q_ij - B_j).

        A row whose matched edge is no longer tight is freed; a free row whose best column is free is
        matched to it on the spot (a greedy start: on the first call every row is free).
        """
        row_ptr, cols, q = graph
        rows = np.unique(np.asarray(rows, dtype=np.int64))
        _reprice(row_ptr, cols, q, self.partner, self.owner, self.a, self.b, rows)

    def augment(self, graph: tuple[np.ndarray, np.ndarray, np.ndarray], bids: int = 0, ordered: bool = True) -> np.ndarray:
        """Matches every free row, first by up to `bids` bids per free row, then along shortest augmenting paths.

        `ordered`: sort every row's edges by profit first, so that a bid reads only its first few (pays on the
        first solve, where a third to a half of the rows bid; later solves free a few thousand rows at most, and
        ordering all rows' edges again would cost more than their bids save). Returns partner (a perfect matching).
        """
        row_ptr, cols, q = graph
        free = np.flatnonzero(self.partner == UNMATCHED)
        if bids and len(free):
            order = _best_first(row_ptr, q) if ordered else slice(None)
            free = _bid(row_ptr, cols[order], q[order], self.partner, self.owner, self.a, self.b, free, bids * len(free), ordered)
        if len(free):
            found = _augment(row_ptr, cols, q, self.partner, self.owner, self.a, self.b, free)
            if found < len(free):
                raise RuntimeError(f"row {free[found]} has no augmenting path: the candidate graph has no perfect matching")
            self.paths += found
        return self.partner


def csr(n: int, rows: np.ndarray, cols: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns (row_ptr, cols, q) of edges already grouped by row (as `pair_sets.EdgeSet` keeps them)."""
    if len(rows) > 1 and (np.diff(rows) < 0).any():
        raise ValueError("edges must be grouped by row")
    row_ptr = np.searchsorted(rows, np.arange(n + 1)).astype(np.int64)
    return row_ptr, np.ascontiguousarray(cols, dtype=np.int64), np.ascontiguousarray(q, dtype=np.int64)


@njit(cache=True, nogil=True)
def _reprice(row_ptr, cols, q, partner, owner, a, b, rows):  # pragma: no cover - compiled
    for i in rows:
        best = -_FAR
        best_col = UNMATCHED
        mine = -_FAR
        p = partner[i]
        for e in range(row_ptr[i], row_ptr[i + 1]):
            j = cols[e]
            v = q[e] - b[j]
            if v > best or (v == best and j < best_col):
                best, best_col = v, j
            if j == p:
                mine = v
        a[i] = best
        if p != UNMATCHED and mine < best:
            partner[i] = UNMATCHED
            owner[p] = UNMATCHED
            p = UNMATCHED
        if p == UNMATCHED and best_col != UNMATCHED and owner[best_col] == UNMATCHED:
            partner[i] = best_col
            owner[best_col] = i


@njit(cache=True, nogil=True)
def _best_first(row_ptr, q):  # pragma: no cover - compiled
    """Returns the edge order that lists each row's edges by profit, largest first (ties: the earlier edge first)."""
    order = np.arange(len(q))
    for i in range(len(row_ptr) - 1):
        for e in range(row_ptr[i] + 1, row_ptr[i + 1]):
            x = order[e]
            f = e - 1
            while f >= row_ptr[i] and q[order[f]] < q[x]:
                order[f + 1] = order[f]
                f -= 1
            order[f + 1] = x
    return order


@njit(cache=True, nogil=True)
def _bid(row_ptr, cols, q, partner, owner, a, b, free, budget, ordered):  # pragma: no cover - compiled
    """Matches free rows by bidding (LAPJV's augmenting row reduction); returns the rows still free after `budget` bids.

    A free row i takes its best column j1 and raises B_j1 until its second best is as good (A_i = the
    second best value): the new edge is tight, every edge stays feasible, and the row that held j1 is
    free again and bids next. Cheap where most rows want different columns; competition that bids
    would settle only in tiny steps is left to the shortest paths. `ordered`: each row's edges come largest
    profit first (`_best_first`): prices are never negative, so q_ij - B_j <= q_ij, and the scan stops at the
    first edge whose profit is below the second best value found (a bid read all 33-39 edges of its row
    before: 180 ns a bid, 64 bids per free row on the benchmark's dictionaries); else every edge is read.
    """
    queue = np.empty(len(free) + budget, dtype=np.int64)
    queue[: len(free)] = free
    head, tail = 0, len(free)
    left = np.empty(len(free) + budget, dtype=np.int64)
    n_left = 0
    while head < tail:
        i = queue[head]
        head += 1
        if budget == 0:
            left[n_left] = i
            n_left += 1
            continue
        budget -= 1
        v1 = -_FAR
        v2 = -_FAR
        j1 = UNMATCHED
        j2 = UNMATCHED
        for e in range(row_ptr[i], row_ptr[i + 1]):
            if ordered and q[e] < v2:
                break  # every edge left has q_ij - B_j <= q_ij < v2: it changes neither the best nor the second best
            j = cols[e]
            v = q[e] - b[j]
            if v > v1 or (v == v1 and j < j1):
                v2, j2 = v1, j1
                v1, j1 = v, j
            elif v > v2 or (v == v2 and j < j2):
                v2, j2 = v, j
        if j2 == UNMATCHED or (v1 == v2 and owner[j1] != UNMATCHED and owner[j2] != UNMATCHED):
            # One edge, or a tie between two held columns: a bid would raise no price.
            a[i] = v1
            left[n_left] = i
            n_left += 1
            continue
        if owner[j1] == UNMATCHED:
            a[i] = v1  # a free best column: no price to raise
        elif v1 == v2 and owner[j2] == UNMATCHED:
            a[i], j1 = v1, j2
        else:
            b[j1] += v1 - v2
            a[i] = v2
        k = take_column(partner, owner, i, j1)
        if k != UNMATCHED:
            # k's potential stays feasible (prices only rose); it is free and bids next.
            queue[tail] = k
            tail += 1
    return left[:n_left].copy()


@njit(cache=True, nogil=True)
def _augment(row_ptr, cols, q, partner, owner, a, b, free):  # pragma: no cover - compiled
    """One Dijkstra per free row; returns how many paths it found (it stops at the first row without one).

    Columns reached at the distance of the column settled last (`base`, the least any column can have) wait on a
    stack, not in the heap: Dijkstra may settle any column of least distance next. After bids most of a search is
    such a plateau: on the default study's stacked SAEs a first solve's search settled about 1,700 columns before it
    reached a free one, 94% of them at the distance of the column before, each through a binary heap that took about
    12,000 pushes a search; with the stack its 69 / 199 searches took 57 / 109 ms against 71 / 168 ms. A column
    reached farther than a free column already reached is not recorded: it cannot be settled before the sink, so the
    path, the potentials and the matching are the same (checked on the recorded searches of the stacked set's solves,
    which took 4-8% less: the decoder's first 204, 69.8 -> 67 ms).
    """
    n = len(owner)
    dist = np.full(n, _FAR, dtype=np.int64)
    via = np.empty(n, dtype=np.int64)  # the row a column was reached from
    settled_at = np.full(n, -1, dtype=np.int64)  # which search settled the column
    touched = np.empty(n, dtype=np.int64)
    settled = np.empty(n, dtype=np.int64)
    heap_keys = np.empty(len(cols) + n, dtype=np.int64)
    heap_vals = np.empty(len(cols) + n, dtype=np.int64)
    level = np.empty(n, dtype=np.int64)  # columns at distance `base`, not yet settled
    for search in range(len(free)):
        f = free[search]
        n_touched = 0
        n_settled = 0
        size = 0
        n_level = 0
        sink = UNMATCHED
        length = _FAR
        # Row f's edges open the search; rows reached later arrive through their tight matched edge.
        i = f
        base = np.int64(0)
        best_free = _FAR  # the least distance at which a free column was reached so far: the path is no longer than it
        while True:
            # A settled column has dist <= base <= d (reduced costs are >= 0): the test below skips it.
            base_i = base + a[i]
            for e in range(row_ptr[i], row_ptr[i + 1]):
                j = cols[e]
                d = base_i + b[j] - q[e]
                # Farther than a free column already reached: never settled before the sink, so never recorded (the
                # first solve's searches pushed 8,000 columns each and settled 1,263).
                if d < dist[j] and d <= best_free:
                    if owner[j] == UNMATCHED:
                        best_free = d
                    if dist[j] == _FAR:
                        touched[n_touched] = j
                        n_touched += 1
                    dist[j] = d
                    via[j] = i
                    if d == base:  # as near as any column can be: no column's distance can fall below it
                        level[n_level] = j
                        n_level += 1
                    else:
                        size = heap_push(heap_keys, heap_vals, size, d, j)
            j = UNMATCHED
            while n_level > 0:
                n_level -= 1
                if settled_at[level[n_level]] != search:
                    j = level[n_level]
                    break
            while j == UNMATCHED and size > 0:
                d, c, size = heap_pop(heap_keys, heap_vals, size)
                if settled_at[c] != search and d == dist[c]:
                    j = c
            if j == UNMATCHED:
                break
            settled_at[j] = search
            settled[n_settled] = j
            n_settled += 1
            if owner[j] == UNMATCHED:
                sink, length = j, dist[j]
                break
            i = owner[j]
            base = dist[j]
        if sink == UNMATCHED:
            return search
        # Potentials: the settled columns rise by length - d_j, their rows fall by as much (M stays tight).
        for s in range(n_settled):
            j = settled[s]
            lift = length - dist[j]
            b[j] += lift
            if j != sink:
                a[owner[j]] -= lift
        a[f] -= length
        # Flip the path.
        j = sink
        while True:
            i = via[j]
            previous = partner[i]
            partner[i] = j
            owner[j] = i
            if i == f:
                break
            j = previous
        for t in range(n_touched):
            dist[touched[t]] = _FAR
    return len(free)


__all__ = ["AugmentingSolver", "csr"]
