"""Exact maximum-cosine assignment: dense scipy for small n, sparse with an optimality certificate for large n.

The sparse path never holds the n x n matrix. One blockwise screening pass (`cosine_sources`: a
bf16 or fp32 matmul whose distance from the exact cosines is bounded by a proven error model) keeps,
per row, its top-`depth` screened cosines (the reserve) and, per column, its screened maximum. The
candidate graph E is the top-k of every row, the best few rows of every column among the reserves,
and the diagonal (so a perfect matching always exists); its edges get exact cosines. The assignment
is solved exactly on E, and then proved optimal over all n^2 pairs of exact cosines:

1. Duals. On integer profits q (see `similarity.quantize`), a matching M is optimal over all n^2
   pairs iff there are row and column potentials A, B with A_i + B_j >= q_ij for every pair and
   equality on M (LP duality for the assignment polytope). We get A, B from the sparse optimum by
   longest paths in its residual graph (`column_prices`) and check both conditions on E in
   exact int64 arithmetic, so the proof does not rely on the solver being right.
2. Reserve pairs have an upper bound (screen plus error, rounded up); a pair whose bound exceeds
   A_i + B_j gets its exact cosine and is checked with it.
3. Every other pair is <= its row's bound beyond the reserve (t_i) and <= its column's bound
   (s_j), so it is feasible whenever min(t_i, s_j) <= A_i + B_j. That is checked for all n^2 pairs
   at once in O(n log n) (`suspects`). Rows where it may fail are screened again and their pairs
   bounded one by one; pairs the bound cannot clear get exact cosines.
4. Any pair that violates A_i + B_j >= q_ij joins E (with the reserve pairs closest to violating)
   and the problem is solved again, until no violation is left: then M is optimal for the full
   quantised matrix of exact cosines, with duality gap 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import min_weight_full_bipartite_matching

from saeseeds.matching.cosine_sources import CosineSource, ceil_quantize
from saeseeds.matching.similarity import QUANTUM_BITS, candidate_pass, column_candidates, quantize, stable_argsort, timed

QUANTUM = 2.0**-QUANTUM_BITS
TOLERANCE_NOTE = (
    f"optimal exactly for cosines quantised to 2^-{QUANTUM_BITS} (integer arithmetic); "
    f"hence within n*2^-{QUANTUM_BITS + 1} summed cosine of the optimum of the float32 cosine matrix"
)


@dataclass
class Assignment:
    """One exact matching of the rows of a to the rows of b."""

    partner: np.ndarray
    """[n] int64: the latent of b matched to each latent of a."""
    cos: np.ndarray
    """[n] float32: cosine of each matched pair."""
    row_max: np.ndarray
    """[n] float32: best cosine of each latent of a against any latent of b (max-cos)."""
    certificate: dict = field(default_factory=dict)
    """How optimality was established; JSON-serialisable (goes into the parquet metadata)."""


def assign_dense(sim: np.ndarray) -> Assignment:
    """Returns the exact maximum-cosine matching of a full [n_a, n_b] float32 cosine matrix (scipy).

    Rectangular matrices are matched as scipy does: every latent of the smaller side gets a partner;
    when a has more latents than b, the rows left over get partner -1 and cosine NaN.
    """
    sim = np.asarray(sim, dtype=np.float32)
    n_a, n_b = _check_shape(sim.shape)
    # Integers below 2**53 keep every sum inside scipy's float64 arithmetic exact.
    q = quantize(sim).astype(np.float64)
    rows, cols = linear_sum_assignment(q, maximize=True)
    partner = np.full(n_a, -1, dtype=np.int64)
    partner[rows] = cols
    cos = np.full(n_a, np.nan, dtype=np.float32)
    cos[rows] = sim[rows, cols]
    return Assignment(
        partner=partner,
        cos=cos,
        row_max=sim.max(axis=1),
        certificate={
            "method": "dense",
            "certified": True,
            "basis": "scipy.optimize.linear_sum_assignment over all n_a x n_b pairs",
            "objective_quantised": int(q[rows, cols].sum()),
            "tolerance": TOLERANCE_NOTE,
        },
    )


def _check_shape(shape: tuple[int, ...]) -> tuple[int, int]:
    if len(shape) != 2 or shape[0] == 0 or shape[1] == 0:
        raise ValueError(f"similarity matrix must be 2-D and non-empty, got shape {shape}")
    return int(shape[0]), int(shape[1])


PAD_COSINE = -2.0
"""Cosine of every pair with a dummy latent when a rectangle is padded to a square: one constant, below
every real cosine, so the padded optimum is the rectangular optimum plus a constant (exact), and no
dummy ever enters a real row's top-k or max-cos."""


def unpad(result: Assignment, n_a: int, n_b: int) -> Assignment:
    """Returns the rectangular assignment of the first n_a rows from an assignment of the padded square."""
    partner = result.partner[:n_a].copy()
    cos = result.cos[:n_a].copy()
    dummy = partner >= n_b
    partner[dummy] = -1
    cos[dummy] = np.nan
    certificate = dict(result.certificate, padded_to=len(result.partner), pad_cosine=PAD_COSINE)
    return Assignment(partner=partner, cos=cos, row_max=result.row_max[:n_a].copy(), certificate=certificate)


PREEMPT = 10
"""Per violating reserve pair, how many of the nearest-to-violating reserve pairs join the graph too."""



class EdgeSet:
    """The candidate graph: unique (row, col) pairs, kept sorted by row * n + col, with their exact cosine."""

    def __init__(self, n: int):
        self.n = n
        self.key = np.empty(0, dtype=np.int64)
        self.cos = np.empty(0, dtype=np.float32)

    def add(self, rows: np.ndarray, cols: np.ndarray, cos: np.ndarray) -> int:
        """Adds pairs not yet present; returns how many were new."""
        key = np.concatenate([self.key, rows.astype(np.int64) * self.n + cols.astype(np.int64)])
        cos = np.concatenate([self.cos, np.asarray(cos, dtype=np.float32)])
        before = len(self.key)
        # First occurrence wins; every occurrence of a pair has the same exact cosine.
        self.key, first = unique_first(key)
        self.cos = cos[first]
        return len(self.key) - before

    def new_pairs(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Returns the distinct pairs among (rows, cols) that are not edges yet."""
        key, _ = unique_first(rows.astype(np.int64) * self.n + cols.astype(np.int64))
        key = key[~self._has(key)]
        return key // self.n, key % self.n

    @property
    def rows(self) -> np.ndarray:
        return self.key // self.n

    @property
    def cols(self) -> np.ndarray:
        return self.key % self.n

    def contains(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Returns a bool array: which of the given pairs are edges."""
        return self._has(rows.astype(np.int64) * self.n + cols.astype(np.int64))

    def _has(self, key: np.ndarray) -> np.ndarray:
        if len(self.key) == 0:
            return np.zeros(len(key), dtype=bool)
        pos = np.minimum(np.searchsorted(self.key, key), len(self.key) - 1)
        return self.key[pos] == key


def unique_first(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Returns (sorted distinct keys, index of each one's first occurrence): np.unique(return_index=True), faster."""
    order = stable_argsort(key)
    ordered = key[order]
    first = np.ones(len(key), dtype=bool)
    first[1:] = ordered[1:] != ordered[:-1]
    return ordered[first], order[first]


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
    matched_q = _profit_of(n, rows, cols, q, partner)
    src = partner[rows]
    keep = cols != src
    src, dst, gain = src[keep], cols[keep], q[keep] - matched_q[rows[keep]]
    order = stable_argsort(src)
    src, dst, gain = src[order], dst[order], gain[order]
    indptr = np.searchsorted(src, np.arange(n + 1))
    price = np.zeros(n, dtype=np.int64) if start is None else start.astype(np.int64)
    active = np.arange(n)
    dst_t = torch.from_numpy(dst)
    for _ in range(n + 1):
        if len(active) == 0:
            return price
        counts = indptr[active + 1] - indptr[active]
        arcs = np.repeat(indptr[active] - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
        reach = torch.from_numpy(price[src[arcs]] + gain[arcs])
        new = torch.from_numpy(price.copy()).scatter_reduce_(0, dst_t[arcs], reach, reduce="amax").numpy()
        active = np.flatnonzero(new > price)
        price = new
    raise RuntimeError("column prices did not converge: the sparse matching is not optimal (positive cycle)")


def _profit_of(n: int, rows: np.ndarray, cols: np.ndarray, q: np.ndarray, partner: np.ndarray) -> np.ndarray:
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


class Reserve:
    """Per row, the best screened pairs with an upper bound on each exact cosine, and a bound on every other pair.

    The pass's top-`depth` of every row. `on_edge` says which reserve pairs are edges of the graph,
    kept up to date by `mark` (a lookup per new edge, instead of one per reserve pair every round).
    """

    def __init__(self, idx: np.ndarray, val: np.ndarray, source: CosineSource):
        n, depth = idx.shape
        self.n = n
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
        self._index()

    def _index(self) -> None:
        self._order = stable_argsort(self.rows * self.n + self.cols)
        self._sorted = (self.rows * self.n + self.cols)[self._order]

    def mark(self, rows: np.ndarray, cols: np.ndarray) -> None:
        """Records that these pairs are now edges (pairs outside the reserve are ignored)."""
        key = rows.astype(np.int64) * self.n + cols.astype(np.int64)
        pos = np.minimum(np.searchsorted(self._sorted, key), len(self._sorted) - 1)
        hit = self._sorted[pos] == key
        self.on_edge[self._order[pos[hit]]] = True


class ExactPairs:
    """Asks the source for exact cosines and counts them (each costs a d-long float64 dot product)."""

    def __init__(self, source: CosineSource, timings: dict[str, float] | None):
        self.source, self.timings, self.count = source, timings, 0

    def __call__(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        self.count += len(rows)
        with timed(self.timings, "exact"):
            return self.source.exact(rows, cols)


def assign_sparse(
    source: CosineSource,
    *,
    k: int = 32,
    k_col: int = 4,
    depth: int = 64,
    block_rows: int = 1024,
    max_rounds: int = 100,
    timings: dict[str, float] | None = None,
) -> Assignment:
    """Returns the exact maximum-cosine matching of a square problem, with a certificate of optimality.

    `source` screens whole rows and gives exact cosines of chosen pairs (`cosine_sources`). The
    candidate graph starts as the top-k of every row, for every column its k_col best rows among
    the row reserves (the top-`depth` of every row), and the diagonal. The reserve is also what the
    certificate reads first, so most omitted pairs that need a closer look cost no second screen.
    `timings`, when given, collects seconds per phase.
    """
    n = source.n
    block_rows = min(block_rows, n)
    k = min(k, n)
    depth = min(max(depth, k), n)
    exact = ExactPairs(source, timings)
    with timed(timings, "pass"):
        cand = candidate_pass(source, depth=depth, block_rows=block_rows, timings=timings)
    ar = np.arange(n)
    with timed(timings, "graph"):
        reserve = Reserve(cand.row_idx, cand.row_val, source)
        # Edges: each row's top k and each column's best k_col rows (both reserve positions), and the diagonal.
        reserve.on_edge.reshape(n, depth)[:, :k] = True
        reserve.on_edge[column_candidates(cand, k_col)] = True
        reserve.mark(ar, ar)
        in_reserve = np.flatnonzero(reserve.on_edge)
        on_diagonal = reserve.rows[in_reserve] == reserve.cols[in_reserve]
        diag = np.setdiff1d(ar, reserve.rows[in_reserve[on_diagonal]])
        first_rows = np.concatenate([reserve.rows[in_reserve], diag])
        first_cols = np.concatenate([reserve.cols[in_reserve], diag])
        edges = EdgeSet(n)
        edges.add(first_rows, first_cols, exact(first_rows, first_cols))
    # Every pair is <= its column's bound (and, outside the reserve, <= reserve.bound of its row).
    s = ceil_quantize(source.error.col_upper(ar, cand.col_max), QUANTUM_BITS)
    first_edges = len(edges.key)
    stats = {"edges_from_reserve": 0, "edges_from_rescreen": 0, "rows_rescreened": 0, "pairs_rescreened": 0}
    for rounds in range(1, max_rounds + 1):
        # Per row, the largest amount by which a pair exceeds A_i + B_j: raising A_i by it makes the duals
        # feasible everywhere, so its sum bounds how far this matching can be from the optimum.
        violation = np.zeros(n, dtype=np.int64)
        rows, cols, q = edges.rows, edges.cols, quantize(edges.cos)
        with timed(timings, "solve"):
            if rounds == 1:
                # Row maxima and zero column prices are feasible duals of any graph: a warm start too.
                row_best = np.full(n, np.iinfo(np.int64).min)
                np.maximum.at(row_best, rows, q)
                partner = solve_edges(n, rows, cols, q, duals=(row_best, np.zeros(n, dtype=np.int64)))
            else:
                partner = solve_edges(n, rows, cols, q, duals=(a, b))
        with timed(timings, "duals"):
            b = column_prices(n, rows, cols, q, partner, start=None if rounds == 1 else b)
        a = _profit_of(n, rows, cols, q, partner) - b[partner]
        if (a[rows] + b[cols] < q).any():
            raise RuntimeError("dual potentials infeasible on the candidate graph; this is a bug")
        with timed(timings, "check"):
            new = [_reserve_violators(reserve, a, b, exact, violation)]
            stats["edges_from_reserve"] += len(new[0][0])
            sus_rows, sus_cols = suspects(reserve.bound, s, a, b)
        if len(sus_rows) and len(sus_cols):
            for c0 in range(0, len(sus_rows), block_rows):
                r = sus_rows[c0 : c0 + block_rows]
                with timed(timings, "rescreen"):
                    found = _rescreen_violators(source, r, sus_cols, a, b, edges, exact, violation)
                new.append(found)
                stats["rows_rescreened"] += len(r)
                stats["pairs_rescreened"] += len(r) * len(sus_cols)
                stats["edges_from_rescreen"] += len(found[0])
        n_new = sum(len(x[0]) for x in new)
        if n_new == 0:
            break
        new_rows, new_cols, new_cos = (np.concatenate(x) for x in zip(*new))
        edges.add(new_rows, new_cols, new_cos)
        reserve.mark(new_rows, new_cols)
    certified = n_new == 0
    objective = int(_profit_of(n, rows, cols, q, partner).sum())
    dual = int(a.sum() + b.sum())
    with timed(timings, "row_max"):
        row_max, rows_completed = _exact_row_max(source, reserve, edges, exact)
    return Assignment(
        partner=partner,
        cos=edges.cos[np.searchsorted(edges.key, ar * n + partner)],
        row_max=row_max,
        certificate={
            "method": "sparse",
            "certified": bool(certified),
            "basis": "LP duality: integer potentials feasible for all n^2 pairs, tight on the matching",
            "screen": source.precision,
            "screen_error_max": source.error.largest,
            "rounds": rounds,
            "duality_gap": (objective - dual) * QUANTUM if certified else None,
            "gap_bound": float(violation.sum() * QUANTUM),
            "objective_quantised": objective,
            "candidates_per_row": k,
            "candidates_per_column": k_col,
            "reserve_per_row": depth,
            "edges_first": first_edges,
            "edges_final": int(len(edges.key)),
            **stats,
            "pairs_exact": exact.count,
            "rows_max_completed": rows_completed,
            "tolerance": TOLERANCE_NOTE,
        },
    )


def _reserve_violators(reserve: Reserve, a, b, exact: ExactPairs, violation: np.ndarray):
    """Returns the reserve pairs that join the graph: violators of A_i + B_j >= q_ij and the nearest to violating.

    A pair whose upper bound already satisfies the duals is cleared without an exact cosine. The
    next duals will move a little, so the nearly tight pairs are the likely next violators: adding
    the closest few now saves whole re-solves.
    """
    bound_slack = a[reserve.rows] + b[reserve.cols] - reserve.q
    bound_slack[reserve.on_edge] = np.iinfo(np.int64).max
    maybe = np.flatnonzero(bound_slack < 0)
    if len(maybe) == 0:
        return reserve.rows[maybe], reserve.cols[maybe], np.empty(0, dtype=np.float32)
    cos = exact(reserve.rows[maybe], reserve.cols[maybe])
    slack = a[reserve.rows[maybe]] + b[reserve.cols[maybe]] - quantize(cos)
    bad = slack < 0
    np.maximum.at(violation, reserve.rows[maybe[bad]], -slack[bad])
    if not bad.any():
        return reserve.rows[maybe[bad]], reserve.cols[maybe[bad]], cos[bad]
    extra = min(len(bound_slack) - 1, (1 + PREEMPT) * int(bad.sum()))
    near = np.flatnonzero(bound_slack < min(np.partition(bound_slack, extra)[extra], np.iinfo(np.int64).max))
    near = np.setdiff1d(near, maybe, assume_unique=True)
    take_r = np.concatenate([reserve.rows[maybe[bad]], reserve.rows[near]])
    take_c = np.concatenate([reserve.cols[maybe[bad]], reserve.cols[near]])
    return take_r, take_c, np.concatenate([cos[bad], exact(reserve.rows[near], reserve.cols[near])])


RESCREEN_MARGIN = 1e-5
"""The float32 prefilter of a rescreen keeps every pair within this much of failing (plus 1e-6 of the
potentials' size); float32 rounds values below 8 by < 1e-6, so it drops no pair the exact bound would fail."""


def _rescreen_violators(source, r, sus_cols, a, b, edges, exact: ExactPairs, violation):
    """Screens the pairs of rows r with the suspect columns again and returns those that violate the duals.

    Only rows x suspect columns can hold a violator (`suspects`), so one matmul of that block is the
    second look. A float32 prefilter keeps the pairs whose bound may exceed A_i + B_j (screen > R_i + C_j,
    with R and C lowered so that this holds whenever the bound does); those get the bound in exact
    integer profits, and the ones it cannot clear get exact cosines.
    """
    screened = source.screen_block(r, sus_cols)
    err = source.error
    scale = 2.0**-QUANTUM_BITS
    # upper(v) = v + rel |v| + row_err + col_err > A + B implies v > t - rel |t| / (1 - rel), t = A + B - errors.
    shrink = err.rel / (1 - err.rel) if err.rel else 0.0
    row_t = a[r] * scale - err.row_err[r]
    col_t = b[sus_cols] * scale - err.col_err[sus_cols]
    row_thr = row_t - shrink * np.abs(row_t) - RESCREEN_MARGIN - 1e-6 * np.abs(a[r] * scale)
    col_thr = col_t - shrink * np.abs(col_t) - 1e-6 * np.abs(b[sus_cols] * scale)
    dev = screened.device
    thr = torch.as_tensor(row_thr.astype(np.float32), device=dev)[:, None] + torch.as_tensor(
        col_thr.astype(np.float32), device=dev
    )[None, :]
    bi, bj = (x.cpu().numpy() for x in torch.nonzero(screened > thr, as_tuple=True))
    gi, gj = r[bi], sus_cols[bj]
    vals = screened[torch.as_tensor(bi, device=dev), torch.as_tensor(bj, device=dev)].float().cpu().numpy()
    sure = ceil_quantize(err.pair_upper(gi, gj, vals), QUANTUM_BITS)
    keep = (sure > a[gi] + b[gj]) & ~edges.contains(gi, gj)
    gi, gj = gi[keep], gj[keep]
    cos = exact(gi, gj)
    slack = a[gi] + b[gj] - quantize(cos)
    bad = slack < 0
    np.maximum.at(violation, gi[bad], -slack[bad])
    return gi[bad], gj[bad], cos[bad]


def _exact_row_max(source: CosineSource, reserve: Reserve, edges: EdgeSet, exact: ExactPairs) -> tuple[np.ndarray, int]:
    """Returns each row's largest exact cosine (max-cos) and how many rows needed every column computed.

    The best edge of a row is its max-cos once no other pair's upper bound exceeds it; reserve pairs
    that might still beat it get exact cosines, and a row whose bound beyond the reserve does too
    (near-ties at the screen's error, rare) is computed exactly in full.
    """
    n = source.n
    best = np.full(n, -np.inf, dtype=np.float64)
    np.maximum.at(best, edges.rows, edges.cos.astype(np.float64))
    open_ = (reserve.upper > best[reserve.rows]) & ~reserve.on_edge
    if open_.any():
        r, c = reserve.rows[open_], reserve.cols[open_]
        np.maximum.at(best, r, exact(r, c).astype(np.float64))
    full = np.flatnonzero(reserve.row_upper > best)
    for i in full:
        best[i] = exact(np.full(n, i), np.arange(n)).max()
    return best.astype(np.float32), int(len(full))


__all__ = [
    "Assignment", "ExactPairs", "assign_dense", "assign_sparse", "column_prices", "solve_edges", "suspects", "unpad",
]
