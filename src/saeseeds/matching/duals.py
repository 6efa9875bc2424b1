"""LP duality for the sparse assignment: read a matching's profits, find where the duals may fail.

On integer profits, a matching is optimal over all pairs iff row and column potentials A, B exist with
A_i + B_j >= q_ij everywhere and equality on the matching. `augmenting` gives the matching and its
potentials on the candidate graph; these are the pieces `assignment.assign_sparse` checks them with:
the matching's own profits, and a test of all n^2 pairs against per-row and per-column bounds.
"""

from __future__ import annotations

import numpy as np


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


__all__ = ["profit_of", "suspects"]
