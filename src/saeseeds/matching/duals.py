"""LP duality for the sparse assignment: solve on a candidate graph, price its columns, find where the duals may fail.

On integer profits, a matching is optimal over all pairs iff row and column potentials A, B exist with
A_i + B_j >= q_ij everywhere and equality on the matching. These are the pieces `assignment.assign_sparse`
proves that with: an exact solve on the graph's edges (scipy's LAPJVsp), the least column prices that make
its matching dual-feasible on the graph, and a test of all n^2 pairs against per-row and per-column bounds.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import min_weight_full_bipartite_matching

from saeseeds.matching.similarity import stable_argsort


def solve_edges(
    n: int, rows: np.ndarray, cols: np.ndarray, q: np.ndarray, duals: tuple[np.ndarray, np.ndarray] | None = None
) -> np.ndarray:
    """Returns partner[i] of the maximum-profit perfect matching on the given edges (scipy LAPJVsp).

    With `duals` (A, B) of an earlier solve, the solver gets the reduced costs A_i + B_j - q_ij: the same
    optimum (every perfect matching pays the same sum of A and B), but most edges of the old optimum
    cost 0, which LAPJVsp's initialisation picks up at once.
    """
    if duals is not None:
        q = q - duals[0][rows] - duals[1][cols]
    # Costs must be non-zero (scipy drops zero entries) and float64-exact: shift into [1, 2**34).
    cost = (q.max() + 1 - q).astype(np.float64)
    graph = csr_matrix((cost, (rows, cols)), shape=(n, n))
    r, c = min_weight_full_bipartite_matching(graph)
    partner = np.empty(n, dtype=np.int64)
    partner[r] = c
    return partner


def column_prices(
    n: int, rows: np.ndarray, cols: np.ndarray, q: np.ndarray, partner: np.ndarray, start: np.ndarray | None = None
) -> np.ndarray:
    """Returns the least column prices B >= start (0 by default, int64) that make `partner` dual-feasible on the edges.

    With row profits A_i = q[i, partner_i] - B[partner_i], the condition A_i + B_j >= q_ij on an
    edge (i, j) reads B_j >= B[partner_i] + q_ij - q[i, partner_i]: a longest-path condition on
    the graph of columns with an arc partner_i -> j per edge. Bellman-Ford from B = start (relaxing
    only arcs out of columns whose price just rose) converges because an optimal matching has no
    positive alternating cycle; a cycle would show as non-convergence after n rounds. Starting from
    the previous round's prices, only what the new edges change has to propagate.
    """
    if len(rows) > 1 and (np.diff(rows) < 0).any():
        order = stable_argsort(rows)
        rows, cols, q = rows[order], cols[order], q[order]
    # The arcs out of column partner_i are row i's edges: with edges grouped by row, no sort is needed.
    gain = q - profit_of(n, rows, cols, q, partner)[rows]
    row_ptr = np.searchsorted(rows, np.arange(n + 1))
    row_of = np.empty(n, dtype=np.int64)
    row_of[partner] = np.arange(n)
    price = np.zeros(n, dtype=np.int64) if start is None else start.astype(np.int64)
    active = np.arange(n)
    cols_t = torch.from_numpy(np.ascontiguousarray(cols))
    for _ in range(n + 1):
        if len(active) == 0:
            return price
        r = row_of[active]
        counts = row_ptr[r + 1] - row_ptr[r]
        arcs = np.repeat(row_ptr[r] - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
        reach = torch.from_numpy(np.repeat(price[active], counts) + gain[arcs])
        new = torch.from_numpy(price.copy()).scatter_reduce_(0, cols_t[arcs], reach, reduce="amax").numpy()
        active = np.flatnonzero(new > price)
        price = new
    raise RuntimeError("column prices did not converge: the sparse matching is not optimal (positive cycle)")


def profit_of(n: int, rows: np.ndarray, cols: np.ndarray, q: np.ndarray, partner: np.ndarray) -> np.ndarray:
    """Returns q[i, partner_i] for every row i, read off the edge list (every matched pair is an edge)."""
    out = np.full(n, np.iinfo(np.int64).min, dtype=np.int64)
    on_m = partner[rows] == cols
    out[rows[on_m]] = q[on_m]
    if (out == np.iinfo(np.int64).min).any():
        raise RuntimeError("a matched pair is not an edge of the candidate graph")
    return out


def suspects(row_bound: np.ndarray, col_bound: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Returns (rows, cols) that may hold a pair with min(row_bound_i, col_bound_j) > a_i + b_j.

    Every pair outside those rows x cols satisfies the bound, checked for all n^2 pairs in
    O(n log n): for row i the pairs that fail the row bound are the columns with
    b_j < row_bound_i - a_i, a prefix in b-order; among them the column bound fails iff
    max(col_bound_j - b_j) over that prefix exceeds a_i. Symmetrically for columns.
    """

    def side(bound_x, x, bound_y, y):
        order = np.argsort(y, kind="stable")
        slack = (bound_y - y)[order]
        prefix = np.concatenate([[np.iinfo(np.int64).min], np.maximum.accumulate(slack)])
        p = np.searchsorted(y[order], bound_x - x, side="left")
        return np.flatnonzero(prefix[p] > x)

    return side(row_bound, a, col_bound, b), side(col_bound, b, row_bound, a)


__all__ = ["column_prices", "profit_of", "solve_edges", "suspects"]
