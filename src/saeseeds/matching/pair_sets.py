"""The sets of pairs the sparse assignment keeps: the candidate graph, the reserve, the watched pairs, exact values.

Each holds pairs (row, col) of the n x n cosine matrix with a proven integer bound or an exact profit;
`assignment.assign_sparse` grows and checks them round by round.
"""

from __future__ import annotations

import numpy as np

from saeseeds.matching.cosine_sources import CosineSource, ceil_quantize
from saeseeds.matching.similarity import QUANTUM_BITS, quantize, stable_argsort, timed


class EdgeSet:
    """The candidate graph: unique (row, col) pairs, kept sorted by row * n + col, with an integer profit each.

    An edge's profit is its quantised exact cosine once that is known (`cos` holds it), and until
    then a proven upper bound on it (`cos` is NaN): edges enter the graph on their screened bound,
    and only the ones a matching uses are ever computed exactly (`settle`).
    """

    def __init__(self, n: int):
        self.n = n
        self.key = np.empty(0, dtype=np.int64)
        self.cos = np.empty(0, dtype=np.float32)
        self.profit = np.empty(0, dtype=np.int64)
        self._rows_cols: tuple[np.ndarray, np.ndarray] | None = None

    def add(self, rows: np.ndarray, cols: np.ndarray, cos: np.ndarray) -> int:
        """Adds pairs with their exact cosines (pairs already present are left as they are); returns how many were new."""
        cos = np.asarray(cos, dtype=np.float32)
        return self._add(rows, cols, cos, quantize(cos))

    def add_bounded(self, rows: np.ndarray, cols: np.ndarray, upper: np.ndarray) -> int:
        """Adds pairs whose exact cosine is not known yet, at integer profit bounds `upper` (>= their quantised cosine)."""
        return self._add(rows, cols, np.full(len(rows), np.nan, dtype=np.float32), np.asarray(upper, dtype=np.int64))

    def _add(self, rows, cols, cos, profit) -> int:
        # First occurrence wins: an edge keeps its value (bound or exact) until `settle` replaces it. Only the
        # new pairs are sorted; they are merged into the sorted edges by position (np.insert keeps the order).
        key, first = unique_first(rows.astype(np.int64) * self.n + cols.astype(np.int64))
        if len(self.key) == 0:  # the first graph: nothing to merge into
            self.key, self.cos, self.profit = key, cos[first], profit[first]
            self._rows_cols = None
            return len(key)
        present = self._lookup(key // self.n, key % self.n)[1]
        new = ~present
        at = np.searchsorted(self.key, key[new])
        self.key = np.insert(self.key, at, key[new])
        self.cos = np.insert(self.cos, at, cos[first[new]])
        self.profit = np.insert(self.profit, at, profit[first[new]])
        self._rows_cols = None
        return int(new.sum())

    def find(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Returns the positions of pairs that are edges (every one must be)."""
        return np.searchsorted(self.key, rows.astype(np.int64) * self.n + cols.astype(np.int64))

    def settle(self, pos: np.ndarray, cos: np.ndarray) -> np.ndarray:
        """Replaces the bounds of the edges at `pos` by their exact cosines; returns how far each profit fell (>= 0)."""
        cos = np.asarray(cos, dtype=np.float32)
        q = quantize(cos)
        drop = self.profit[pos] - q
        self.cos[pos], self.profit[pos] = cos, q
        return drop

    @property
    def known(self) -> np.ndarray:
        return ~np.isnan(self.cos)

    @property
    def rows(self) -> np.ndarray:
        return self._split()[0]

    @property
    def cols(self) -> np.ndarray:
        return self._split()[1]

    def _split(self) -> tuple[np.ndarray, np.ndarray]:
        # Kept until the next `_add`: every solve and check reads them (two int64 divisions of the graph each).
        if self._rows_cols is None:
            rows = self.key // self.n
            self._rows_cols = (rows, self.key - rows * self.n)
        return self._rows_cols

    def contains(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Returns a bool array: which of the given pairs are edges."""
        return self._lookup(rows, cols)[1]

    def known_at(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Returns a bool array: which of the given pairs are edges with an exact cosine."""
        pos, hit = self._lookup(rows, cols)
        return hit & self.known[pos] if len(self.key) else hit

    def _lookup(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Returns (a valid position for each pair, whether the pair is the edge at that position)."""
        key = rows.astype(np.int64) * self.n + cols.astype(np.int64)
        if len(self.key) == 0:
            return np.zeros(len(key), dtype=np.int64), np.zeros(len(key), dtype=bool)
        pos = np.minimum(np.searchsorted(self.key, key), len(self.key) - 1)
        return pos, self.key[pos] == key


def unique_first(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Returns (sorted distinct keys, index of each one's first occurrence): np.unique(return_index=True), faster."""
    order = stable_argsort(key)
    ordered = key[order]
    first = np.ones(len(key), dtype=bool)
    first[1:] = ordered[1:] != ordered[:-1]
    return ordered[first], order[first]


class Reserve:
    """Per row, the best screened pairs with an upper bound on each exact cosine, and a bound on every other pair.

    The pass's top-`depth` of every row. `on_edge` says which reserve pairs are edges of the graph,
    kept up to date by `mark` (a lookup per new edge, instead of one per reserve pair every round).
    """

    def __init__(self, idx: np.ndarray, val: np.ndarray, source: CosineSource):
        n, depth = idx.shape
        self.n, self.depth = n, depth
        self.error = source.error
        self.rows = np.repeat(np.arange(n), depth)
        self.cols = idx.reshape(-1).astype(np.int64)
        self.upper = self.error.pair_upper(self.rows, self.cols, val.reshape(-1))
        """Upper bound on each reserve pair's exact cosine (float64)."""
        self.q = ceil_quantize(self.upper, QUANTUM_BITS)
        self.row_upper = self.error.row_upper(np.arange(n), val[:, -1])
        """[n] float64: every pair of row i outside the reserve has exact cosine <= row_upper[i]."""
        self.bound = ceil_quantize(self.row_upper, QUANTUM_BITS)
        """[n] int64: the same as a profit."""
        self.on_edge = np.zeros(len(self.rows), dtype=bool)
        # Each row's reserve columns in ascending order, with their positions: a lookup is a search in one row.
        self._order = np.argsort(idx, axis=1, kind="stable").astype(np.int64)
        self._sorted_cols = np.take_along_axis(idx, self._order, axis=1).astype(np.int64)

    def mark(self, rows: np.ndarray, cols: np.ndarray) -> None:
        """Records that these pairs are now edges (pairs outside the reserve are ignored)."""
        from saeseeds.matching.row_search import mark_in_rows

        mark_in_rows(self._sorted_cols, self._order, np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64), self.on_edge)


class ExactPairs:
    """Asks the source for exact cosines and counts them (each costs a d-long float64 dot product)."""

    def __init__(self, source: CosineSource, timings: dict[str, float] | None):
        self.source, self.timings, self.count = source, timings, 0

    def __call__(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        self.count += len(rows)
        with timed(self.timings, "exact"):
            return self.source.exact(rows, cols)


class Watch:
    """Pairs a rescreen found near violating, each with an upper bound or exact profit (`violators.watch_violators`).

    A rescreened row's other pairs were shown to sit at least `RESCREEN_REACH` below the duals of that
    round; while its row potential stays within that reach (column prices only rise), they cannot violate,
    so the row is not screened again (`cleared_until`), and only its watched pairs need a look.
    """

    def __init__(self, n: int):
        self.rows = np.empty(0, dtype=np.int64)
        self.cols = np.empty(0, dtype=np.int64)
        self.q = np.empty(0, dtype=np.int64)
        self.cleared_until = np.full(n, np.iinfo(np.int64).max)
        """[n]: row i needs no rescreen while A_i >= cleared_until[i]."""

    def extend(self, rows: np.ndarray, cols: np.ndarray, q: np.ndarray) -> None:
        self.rows = np.concatenate([self.rows, rows])
        self.cols = np.concatenate([self.cols, cols])
        self.q = np.concatenate([self.q, q])


__all__ = ["EdgeSet", "ExactPairs", "Reserve", "Watch", "unique_first"]
