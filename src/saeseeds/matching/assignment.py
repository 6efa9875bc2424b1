"""Exact maximum-cosine assignment: dense scipy for small n, sparse with an optimality certificate for large n.

The sparse path never holds the n x n matrix. One blockwise screening pass (`cosine_sources`: a
bf16 or fp32 matmul whose distance from the exact cosines is bounded by a proven error model) keeps,
per row, its top-`depth` screened cosines (the reserve) and, per column, its screened maximum. The
candidate graph E is the top-k of every row, the best few rows of every column among the reserves,
and the diagonal (so a perfect matching always exists). Its edges enter on their screened upper
bounds; the assignment is solved on E, the pairs it matches get exact cosines, and it is solved
again until the matching stands on exact values only (`_solve_settled`: a few hundred thousand
float64 dot products saved per 16K matching). Then it is proved optimal over all n^2 pairs of
exact cosines:

1. Duals. On integer profits q (see `similarity.quantize`), a matching M is optimal over all n^2
   pairs iff there are row and column potentials A, B with A_i + B_j >= q_ij for every pair and
   equality on M (LP duality for the assignment polytope); feasibility against an upper bound of
   q_ij implies it for q_ij, so only M's own profits must be exact. We get A, B from the sparse optimum by
   longest paths in its residual graph (`column_prices`) and check both conditions on E in
   exact int64 arithmetic, so the proof does not rely on the solver being right.
2. Reserve pairs have an upper bound (screen plus error, rounded up); a pair whose bound exceeds
   A_i + B_j gets its exact cosine and is checked with it.
3. Every other pair is <= its row's bound beyond the reserve (t_i) and <= its column's bound
   (s_j), so it is feasible whenever min(t_i, s_j) <= A_i + B_j. That is checked for all n^2 pairs
   at once in O(n log n) (`suspects`). Rows where it may fail are screened again and their pairs
   bounded one by one; pairs the bound cannot clear get exact cosines. A rescreen looks a little
   below the duals (`RESCREEN_REACH`) and watches the pairs it finds there, so the row needs no
   second rescreen in later rounds unless its potential falls further than that (`Watch`).
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

    def add(self, rows: np.ndarray, cols: np.ndarray, cos: np.ndarray) -> int:
        """Adds pairs with their exact cosines (pairs already present are left as they are); returns how many were new."""
        cos = np.asarray(cos, dtype=np.float32)
        return self._add(rows, cols, cos, quantize(cos))

    def add_bounded(self, rows: np.ndarray, cols: np.ndarray, upper: np.ndarray) -> int:
        """Adds pairs whose exact cosine is not known yet, at integer profit bounds `upper` (>= their quantised cosine)."""
        return self._add(rows, cols, np.full(len(rows), np.nan, dtype=np.float32), np.asarray(upper, dtype=np.int64))

    def _add(self, rows, cols, cos, profit) -> int:
        key = np.concatenate([self.key, rows.astype(np.int64) * self.n + cols.astype(np.int64)])
        before = len(self.key)
        # First occurrence wins: an edge keeps its value (bound or exact) until `settle` replaces it.
        self.key, first = unique_first(key)
        self.cos = np.concatenate([self.cos, cos])[first]
        self.profit = np.concatenate([self.profit, profit])[first]
        return len(self.key) - before

    def find(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Returns the positions of pairs that are edges (every one must be)."""
        return np.searchsorted(self.key, rows.astype(np.int64) * self.n + cols.astype(np.int64))

    def settle(self, pos: np.ndarray, cos: np.ndarray) -> int:
        """Replaces the bounds of the edges at `pos` by their exact cosines; returns how many profits fell."""
        cos = np.asarray(cos, dtype=np.float32)
        q = quantize(cos)
        fell = int((q < self.profit[pos]).sum())
        self.cos[pos], self.profit[pos] = cos, q
        return fell

    @property
    def known(self) -> np.ndarray:
        return ~np.isnan(self.cos)

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
    if len(rows) > 1 and (np.diff(rows) < 0).any():
        order = stable_argsort(rows)
        rows, cols, q = rows[order], cols[order], q[order]
    # The arcs out of column partner_i are row i's edges: with edges grouped by row, no sort is needed.
    gain = q - _profit_of(n, rows, cols, q, partner)[rows]
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


class Watch:
    """Pairs a rescreen found near violating, with an upper bound (or exact profit) each, checked every round.

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

    def violators(self, a, b, edges: "EdgeSet", exact: ExactPairs, violation: np.ndarray):
        """Returns the watched pairs, not yet edges, that violate A_i + B_j >= q_ij (exact cosines)."""
        maybe = np.flatnonzero(self.q > a[self.rows] + b[self.cols])
        r, c = self.rows[maybe], self.cols[maybe]
        fresh = ~edges.contains(r, c)
        r, c = r[fresh], c[fresh]
        cos = exact(r, c)
        slack = a[r] + b[c] - quantize(cos)
        bad = slack < 0
        np.maximum.at(violation, r[bad], -slack[bad])
        return r[bad], c[bad], cos[bad]


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
        # Reserve edges enter on their screened bound; only the diagonal's pairs outside the reserve (few) need exact values.
        edges = EdgeSet(n)
        first_rows, first_cols = reserve.rows[in_reserve], reserve.cols[in_reserve]
        edges.add_bounded(first_rows, first_cols, reserve.q[in_reserve] + _tie_breaker(first_rows, first_cols))
        edges.add(diag, diag, exact(diag, diag))
    # Every pair is <= its column's bound (and, outside the reserve, <= reserve.bound of its row).
    s = ceil_quantize(source.error.col_upper(ar, cand.col_max), QUANTUM_BITS)
    first_edges = len(edges.key)
    stats = {"edges_from_reserve": 0, "edges_from_rescreen": 0, "rows_rescreened": 0, "pairs_rescreened": 0, "rows_kept_clear": 0, "solves": 0}
    duals = None
    watch = Watch(n)
    for rounds in range(1, max_rounds + 1):
        # Per row, the largest amount by which a pair exceeds A_i + B_j: raising A_i by it makes the duals
        # feasible everywhere, so its sum bounds how far this matching can be from the optimum.
        violation = np.zeros(n, dtype=np.int64)
        partner, (a, b) = _solve_settled(edges, duals, exact, timings, stats)
        duals = (a, b)
        rows, cols, q = edges.rows, edges.cols, edges.profit
        if (a[rows] + b[cols] < q).any():
            raise RuntimeError("dual potentials infeasible on the candidate graph; this is a bug")
        with timed(timings, "check"):
            new = [_reserve_violators(reserve, a, b, exact, violation), watch.violators(a, b, edges, exact, violation)]
            stats["edges_from_reserve"] += len(new[0][0])
            sus_rows, _ = suspects(reserve.bound, s, a, b)
            kept_clear = a[sus_rows] >= watch.cleared_until[sus_rows]
            stats["rows_kept_clear"] += int(kept_clear.sum())
            sus_rows = sus_rows[~kept_clear]
            reach = int(RESCREEN_REACH * 2**QUANTUM_BITS)
            if len(sus_rows):
                # Columns where these rows may come within `reach` of violating: after the rescreen, each
                # row is cleared for every column until its potential falls by more than that.
                lowered = np.full(n, np.iinfo(np.int64).max // 4)
                lowered[sus_rows] = a[sus_rows] - reach
                sus_rows, sus_cols = suspects(reserve.bound, s, lowered, b)
        if len(sus_rows) and len(sus_cols):
            sus_cols = sus_cols[stable_argsort(b[sus_cols])]  # by price: `_prefilter`'s groups
            for c0 in range(0, len(sus_rows), block_rows):
                r = sus_rows[c0 : c0 + block_rows]
                with timed(timings, "rescreen"):
                    found = _rescreen_violators(source, r, sus_cols, a, b, reach, edges, exact, violation, watch)
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
    matched = edges.find(ar, partner)
    objective = int(edges.profit[matched].sum())
    dual = int(a.sum() + b.sum())
    with timed(timings, "row_max"):
        row_max, rows_completed = _exact_row_max(source, reserve, edges, exact)
    return Assignment(
        partner=partner,
        cos=edges.cos[matched],
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


TIE_BITS = 20
"""Bounded profits get a deterministic offset below 2**TIE_BITS quanta (2.4e-4 of a cosine at 32 bits)."""


def _tie_breaker(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Returns a fixed pseudo-random offset in [0, 2**TIE_BITS) per pair, to add to upper bounds (still bounds).

    Screened values are coarse (bfloat16 keeps 8 bits), so the bounds of near-duplicate latents tie in
    blocks, and LAPJVsp crawled through them: 5.6 s for a first solve that takes 0.27 s with the offsets
    (the 6,048-latent stacked set of the default study).
    """
    h = (rows.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) ^ (cols.astype(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F))
    h ^= h >> np.uint64(29)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    return (h >> np.uint64(64 - TIE_BITS)).astype(np.int64)


def _solve_settled(edges: EdgeSet, duals, exact: ExactPairs, timings, stats: dict) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Returns the optimal matching of the graph whose own edges all have exact profits, and tight duals.

    Bounded edges are optimistic, so the solver tends to pick them; each pick gets its exact cosine and,
    if that is lower, the problem is solved again. The duals of the first solve say which other bounded
    edges compete (`_settle_matching`); later solves keep them as a warm start (settling only lowers
    profits, so they stay feasible), and fresh duals are computed once, for the final matching.
    """
    n = edges.n
    first = True
    while True:
        rows, cols, q = edges.rows, edges.cols, edges.profit
        with timed(timings, "solve"):
            if duals is None:
                # Row maxima and zero column prices are feasible duals of any graph: a warm start too.
                row_best = np.full(n, np.iinfo(np.int64).min)
                np.maximum.at(row_best, rows, q)
                duals = (row_best, np.zeros(n, dtype=np.int64))
            partner = solve_edges(n, rows, cols, q, duals=duals)
        stats["solves"] += 1
        tight = first
        if first:
            duals = _tight_duals(n, rows, cols, q, partner, duals[1], timings)
            first = False
        with timed(timings, "settle"):
            fell = _settle_matching(edges, partner, duals, exact)
        if not fell:
            break
    if not tight:
        duals = _tight_duals(n, rows, cols, q, partner, duals[1], timings)
    return partner, duals


def _tight_duals(n, rows, cols, q, partner, start, timings) -> tuple[np.ndarray, np.ndarray]:
    """Returns duals (A, B) of an optimal `partner` on the graph: least column prices >= start, A tight on the matching."""
    with timed(timings, "duals"):
        b = column_prices(n, rows, cols, q, partner, start=start)
    return _profit_of(n, rows, cols, q, partner) - b[partner], b


SETTLE_REACH = 2
"""When matched profits fall by up to f, bounded edges within SETTLE_REACH * f of tight get exact values too: a
displaced row's replacement may displace another, and reach 2 ended the chain in one re-solve where 1 took 2-4."""


def _settle_matching(edges: EdgeSet, partner: np.ndarray, duals, exact: ExactPairs) -> int:
    """Gives the matched edges that still stand on a bound their exact cosines; returns how many profits fell.

    When matched profits fall by up to f, the bounded edges within f of tight under the last feasible
    `duals` (A_i + B_j - q_ij < f) are the ones that may take their places, so they are settled now too
    (within `SETTLE_REACH` * f) instead of one re-solve each.
    """
    n = len(partner)
    pos = edges.find(np.arange(n), partner)
    pos = pos[~edges.known[pos]]
    if len(pos) == 0:
        return 0
    before = edges.profit[pos].copy()
    fell = edges.settle(pos, exact(edges.key[pos] // n, edges.key[pos] % n))
    if fell:
        drop = before - edges.profit[pos]
        e_rows, e_cols = edges.rows, edges.cols
        a, b = duals
        near = np.flatnonzero(~edges.known & (a[e_rows] + b[e_cols] - edges.profit < SETTLE_REACH * drop.max()))
        edges.settle(near, exact(e_rows[near], e_cols[near]))
    return fell


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


RESCREEN_REACH = 2.0**-8
"""How far below the duals a rescreen looks (in cosine): rows stay cleared while their potential falls less."""

RESCREEN_MARGIN = 1e-5
"""The float32 prefilter of a rescreen keeps every pair within this much of failing (plus 1e-6 of the
potentials' size); float32 rounds values below 8 by < 1e-6, so it drops no pair the exact bound would fail."""


def _rescreen_violators(source, r, sus_cols, a, b, reach: int, edges, exact: ExactPairs, violation, watch: Watch):
    """Screens the pairs of rows r with the suspect columns again and returns those that violate the duals.

    Only rows x suspect columns can hold a violator or a pair within `reach` of one (`suspects` with the
    row potentials lowered by `reach`), so one matmul of that block is the second look. A prefilter keeps
    the pairs whose bound may exceed A_i - reach + B_j (screen > R_i + C_j, with R and C lowered so that
    this holds whenever the bound does); those get the bound in exact integer profits. Pairs whose bound
    exceeds A_i + B_j get exact cosines and join the graph if they violate; the rest of the kept pairs are
    watched (`Watch`), and the rows are cleared while A_i >= (its value now) - reach.
    """
    screened = source.screen_block(r, sus_cols)
    err = source.error
    scale = 2.0**-QUANTUM_BITS
    row_thr, col_thr = err.screen_thresholds(r, (a[r] - reach) * scale, sus_cols, b[sus_cols] * scale)
    row_thr -= RESCREEN_MARGIN + 1e-6 * np.abs(a[r] * scale)
    col_thr -= 1e-6 * np.abs(b[sus_cols] * scale)
    bi, bj = _prefilter(screened, row_thr, col_thr)
    gi, gj = r[bi], sus_cols[bj]
    dev = screened.device
    vals = screened[torch.as_tensor(bi, device=dev), torch.as_tensor(bj, device=dev)].float().cpu().numpy()
    sure = ceil_quantize(err.pair_upper(gi, gj, vals), QUANTUM_BITS)
    near = (sure > a[gi] - reach + b[gj]) & ~edges.contains(gi, gj)
    gi, gj, sure = gi[near], gj[near], sure[near]
    over = sure > a[gi] + b[gj]
    cos = exact(gi[over], gj[over])
    q = sure.copy()
    q[over] = quantize(cos)
    slack = a[gi] + b[gj] - q
    bad = slack < 0
    np.maximum.at(violation, gi[bad], -slack[bad])
    watch.extend(gi[~bad], gj[~bad], q[~bad])
    watch.cleared_until[r] = a[r] - reach
    return gi[bad], gj[bad], cos[bad[over]]  # only pairs over A_i + B_j can violate


PREFILTER_GROUPS = 16
"""Column groups of a rescreen's prefilter: one threshold per row and group, so no [rows, cols] threshold matrix."""


def _prefilter(screened: torch.Tensor, row_thr: np.ndarray, col_thr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Returns the (row, col) positions where screened may exceed row_thr[i] + col_thr[j], and a few more.

    The columns come sorted by threshold, so each of `PREFILTER_GROUPS` contiguous groups is compared
    against its smallest column threshold, lowered to the screen's own dtype (rounded down by more than
    its half ulp): a compare in the screen's dtype per group instead of a float32 sum of two matrices
    and a compare against it. Whatever passes is checked pair by pair with the exact bound afterwards.
    """
    m = screened.shape[1]
    bounds = np.linspace(0, m, min(PREFILTER_GROUPS, m) + 1).astype(np.int64)
    over = torch.empty(screened.shape, dtype=torch.bool, device=screened.device)
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        if lo == hi:
            continue
        t = row_thr + col_thr[lo:hi].min()
        t = t - np.abs(t) * 2.0**-7 - 1e-6
        t_low = torch.as_tensor(t.astype(np.float32), device=screened.device).to(screened.dtype)[:, None]
        torch.gt(screened[:, lo:hi], t_low, out=over[:, lo:hi])
    bi, bj = torch.nonzero(over, as_tuple=True)
    return bi.cpu().numpy(), bj.cpu().numpy()


def _exact_row_max(source: CosineSource, reserve: Reserve, edges: EdgeSet, exact: ExactPairs) -> tuple[np.ndarray, int]:
    """Returns each row's largest exact cosine (max-cos) and how many rows needed every column computed.

    The best edge of a row is its max-cos once no other pair's upper bound exceeds it; reserve pairs
    that might still beat it get exact cosines, and a row whose bound beyond the reserve does too
    (near-ties at the screen's error, rare) is computed exactly in full.
    """
    n = source.n
    best = np.full(n, -np.inf, dtype=np.float64)
    known = edges.known
    np.maximum.at(best, edges.rows[known], edges.cos[known].astype(np.float64))
    # Each row's top screened pair first: its exact value usually clears the rest of the reserve.
    top = np.arange(n) * (len(reserve.rows) // n)
    top = top[reserve.upper[top] > best]
    np.maximum.at(best, reserve.rows[top], exact(reserve.rows[top], reserve.cols[top]).astype(np.float64))
    open_ = reserve.upper > best[reserve.rows]
    open_[top] = False
    r, c = reserve.rows[open_], reserve.cols[open_]
    pos = np.minimum(edges.find(r, c), len(edges.key) - 1)
    todo = ~((edges.key[pos] == r * n + c) & known[pos])
    r, c = r[todo], c[todo]
    if len(r):
        np.maximum.at(best, r, exact(r, c).astype(np.float64))
    full = np.flatnonzero(reserve.row_upper > best)
    for i in full:
        best[i] = exact(np.full(n, i), np.arange(n)).max()
    return best.astype(np.float32), int(len(full))


__all__ = [
    "Assignment", "ExactPairs", "assign_dense", "assign_sparse", "column_prices", "solve_edges", "suspects", "unpad",
]
