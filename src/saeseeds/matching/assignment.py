"""Exact maximum-cosine assignment: dense scipy for small n, sparse with an optimality certificate for large n.

The sparse path never holds the n x n matrix. One blockwise pass keeps, per row, its top-`depth`
cosines (the reserve) and, per column, its maximum. The candidate graph E is the top-k of every
row, the best few rows of every column among the reserves, and the diagonal (so a perfect
matching always exists). The assignment is solved exactly on E, and then proved optimal over
all n^2 pairs:

1. Duals. On integer profits q (see `similarity.quantize`), a matching M is optimal over all n^2
   pairs iff there are row and column potentials A, B with A_i + B_j >= q_ij for every pair and
   equality on M (LP duality for the assignment polytope). We get A, B from the sparse optimum by
   longest paths in its residual graph (`column_prices`) and check both conditions on E in
   exact int64 arithmetic, so the proof does not rely on the solver being right.
2. Reserve pairs are known exactly and checked one by one.
3. Every other pair is <= its row's depth-th best (t_i) and <= its column's maximum (s_j), so it
   is feasible whenever min(t_i, s_j) <= A_i + B_j. That bound is checked for all n^2 pairs at
   once in O(n log n) (`suspects`). Rows where it may fail are re-computed and compared pair by
   pair; the reserve doubles as a check that re-computed cosines equal the pass's bit for bit.
4. Any pair that violates A_i + B_j >= q_ij joins E (with the reserve pairs closest to violating)
   and the problem is solved again, until no violation is left: then M is optimal for the full
   quantised matrix, with duality gap 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import min_weight_full_bipartite_matching

from saeseeds.matching.similarity import (
    QUANTUM_BITS,
    SMALL_ROWS,
    BlockFn,
    candidate_pass,
    column_candidates,
    quantize,
    timed,
)

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


def pad_to_square(block: BlockFn, n_a: int, n_b: int) -> BlockFn:
    """Returns a BlockFn over the max(n_a, n_b) square: real cosines, PAD_COSINE wherever a dummy is involved.

    `block` must already give rows of the square's width (b padded with zero rows) for real rows and
    accept dummy row ids (a padded with zero rows); this only overwrites the dummy cells, the same
    way on every call, so re-computed rows equal the pass's bit for bit as the certificate requires.
    """

    def padded(rows: np.ndarray, full: bool = False) -> torch.Tensor:
        out = block(rows, full=full)
        if n_b < out.shape[1]:
            out[:, n_b:] = PAD_COSINE
        dummy = np.flatnonzero(np.asarray(rows) >= n_a)
        if len(dummy):
            out[torch.as_tensor(dummy, device=out.device)] = PAD_COSINE
        return out

    return padded


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

DEEPEN = 4
"""A re-computed row's reserve grows to this many times `depth`."""


class EdgeSet:
    """The candidate graph: unique (row, col) pairs, kept sorted by row * n + col, with their float32 cosine."""

    def __init__(self, n: int, rows: np.ndarray, cols: np.ndarray, cos: np.ndarray):
        self.n = n
        self.key = np.empty(0, dtype=np.int64)
        self.cos = np.empty(0, dtype=np.float32)
        self.add(rows, cols, cos)

    def add(self, rows: np.ndarray, cols: np.ndarray, cos: np.ndarray) -> int:
        """Adds pairs not yet present; returns how many were new."""
        key = np.concatenate([self.key, rows.astype(np.int64) * self.n + cols.astype(np.int64)])
        cos = np.concatenate([self.cos, np.asarray(cos, dtype=np.float32)])
        before = len(self.key)
        # First occurrence wins; every occurrence of a pair came from the same block computation.
        self.key, first = np.unique(key, return_index=True)
        self.cos = cos[first]
        return len(self.key) - before

    @property
    def rows(self) -> np.ndarray:
        return self.key // self.n

    @property
    def cols(self) -> np.ndarray:
        return self.key % self.n

    def contains(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Returns a bool array: which of the given pairs are edges."""
        key = rows.astype(np.int64) * self.n + cols.astype(np.int64)
        pos = np.minimum(np.searchsorted(self.key, key), len(self.key) - 1)
        return self.key[pos] == key


def solve_edges(n: int, rows: np.ndarray, cols: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Returns partner[i] of the maximum-profit perfect matching on the given edges (scipy LAPJVsp)."""
    # Costs must be non-zero (scipy drops zero entries) and float64-exact: shift into [1, 2**34).
    cost = (q.max() + 1 - q).astype(np.float64)
    graph = csr_matrix((cost, (rows, cols)), shape=(n, n))
    r, c = min_weight_full_bipartite_matching(graph)
    partner = np.empty(n, dtype=np.int64)
    partner[r] = c
    return partner


def column_prices(n: int, rows: np.ndarray, cols: np.ndarray, q: np.ndarray, partner: np.ndarray) -> np.ndarray:
    """Returns the least column prices B >= 0 (int64) that make `partner` dual-feasible on the edges.

    With row profits A_i = q[i, partner_i] - B[partner_i], the condition A_i + B_j >= q_ij on an
    edge (i, j) reads B_j >= B[partner_i] + q_ij - q[i, partner_i]: a longest-path condition on
    the graph of columns with an arc partner_i -> j per edge. Bellman-Ford from B = 0 (relaxing
    only arcs out of columns whose price just rose) converges because an optimal matching has no
    positive alternating cycle; a cycle would show as non-convergence after n rounds.
    """
    matched_q = _profit_of(n, rows, cols, q, partner)
    src = partner[rows]
    keep = cols != src
    src, dst, gain = src[keep], cols[keep], q[keep] - matched_q[rows[keep]]
    order = np.argsort(src, kind="stable")
    src, dst, gain = src[order], dst[order], gain[order]
    indptr = np.searchsorted(src, np.arange(n + 1))
    price = np.zeros(n, dtype=np.int64)
    active = np.arange(n)
    for _ in range(n + 1):
        if len(active) == 0:
            return price
        counts = indptr[active + 1] - indptr[active]
        arcs = np.repeat(indptr[active] - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
        new = price.copy()
        np.maximum.at(new, dst[arcs], price[src[arcs]] + gain[arcs])
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
    """Pairs whose cosines are known exactly, per row, plus a bound on every other pair of the row.

    Starts as the pass's top-`depth` of every row. A row the certificate had to re-compute in
    full gets a deeper reserve from those exact values, so later rounds need not re-compute it.
    """

    def __init__(self, idx: np.ndarray, val: np.ndarray):
        n, depth = idx.shape
        self.rows = np.repeat(np.arange(n), depth)
        self.cols = idx.reshape(-1).astype(np.int64)
        self.val = val.reshape(-1)
        self.q = quantize(self.val)
        self.bound = quantize(val[:, -1])
        """[n] int64: every pair of row i outside the reserve has profit <= bound[i]."""

    def check(self, rows: np.ndarray, sim: np.ndarray) -> int:
        """Returns how many reserve values of `rows` differ from their re-computed cosines `sim`."""
        where = np.full(len(self.bound), -1)
        where[rows] = np.arange(len(rows))
        sel = where[self.rows] >= 0
        return int((sim[where[self.rows[sel]], self.cols[sel]] != self.val[sel]).sum())

    def deepen(self, rows: np.ndarray, sim: np.ndarray, depth: int) -> None:
        """Replaces the reserve of `rows` by their top-`depth` from exact full rows `sim`."""
        v, i = torch.topk(torch.from_numpy(sim), min(depth, sim.shape[1]), dim=1)
        v, i = v.numpy(), i.numpy()
        drop = np.zeros(len(self.bound), dtype=bool)
        drop[rows] = True
        keep = ~drop[self.rows]
        self.rows = np.concatenate([self.rows[keep], np.repeat(rows, v.shape[1])])
        self.cols = np.concatenate([self.cols[keep], i.reshape(-1).astype(np.int64)])
        self.val = np.concatenate([self.val[keep], v.reshape(-1)])
        self.q = np.concatenate([self.q[keep], quantize(v.reshape(-1))])
        self.bound[rows] = quantize(v[:, -1])


def _recompute(block: BlockFn, rows: np.ndarray, reserve: Reserve) -> tuple[np.ndarray, int]:
    """Returns (cosine rows as numpy, how many reserve values they contradict), retrying in full shape."""
    differ = 0
    for full_shape in (False, True):
        sim = block(rows, full=full_shape).cpu().numpy()
        differ = reserve.check(rows, sim)
        if differ == 0:
            break
    return sim, differ


def assign_sparse(
    block: BlockFn,
    n: int,
    *,
    k: int = 32,
    k_col: int = 4,
    depth: int = 128,
    block_rows: int = 1024,
    max_rounds: int = 100,
    timings: dict[str, float] | None = None,
) -> Assignment:
    """Returns the exact maximum-cosine matching from blockwise cosines, with a certificate of optimality.

    `block(rows)` gives the float32 cosines of those rows of a against all of b and must give the
    same value for a pair every time it is asked (see `similarity.matmul_blocks`). The candidate
    graph starts as the top-k of every row, for every column its k_col best rows among the row
    reserves (the top-`depth` of every row), and the diagonal. The reserve is also what the
    certificate reads first, so most omitted pairs that need an exact look cost no re-computation.
    `timings`, when given, collects seconds per phase.
    """
    block_rows = min(block_rows, n)
    k = min(k, n)
    depth = min(max(depth, k), n)
    with timed(timings, "pass"):
        cand = candidate_pass(block, n, depth=depth, block_rows=block_rows, timings=timings)
    ar = np.arange(n)
    col_rows, col_cols, col_vals = column_candidates(cand, k_col)
    edges = EdgeSet(
        n,
        np.concatenate([np.repeat(ar, k), col_rows, ar]),
        np.concatenate([cand.row_idx[:, :k].reshape(-1), col_cols, ar]),
        np.concatenate([cand.row_val[:, :k].reshape(-1), col_vals, cand.diag]),
    )
    reserve = Reserve(cand.row_idx, cand.row_val)
    # Every pair is <= its column's max (and, outside the reserve, <= reserve.bound of its row).
    s = quantize(cand.col_max)
    first_edges = len(edges.key)
    stats = {"edges_from_reserve": 0, "edges_from_recompute": 0, "rows_recomputed": 0, "pairs_recomputed": 0}
    mismatches = 0
    for rounds in range(1, max_rounds + 1):
        # Per row, the largest amount by which a pair exceeds A_i + B_j: raising A_i by it makes the duals
        # feasible everywhere, so its sum bounds how far this matching can be from the optimum.
        violation = np.zeros(n, dtype=np.int64)
        rows, cols, q = edges.rows, edges.cols, quantize(edges.cos)
        with timed(timings, "solve"):
            partner = solve_edges(n, rows, cols, q)
        with timed(timings, "duals"):
            b = column_prices(n, rows, cols, q, partner)
        a = _profit_of(n, rows, cols, q, partner) - b[partner]
        if (a[rows] + b[cols] < q).any():
            raise RuntimeError("dual potentials infeasible on the candidate graph; this is a bug")
        with timed(timings, "check"):
            # Reserve pairs are known exactly; edges among them are feasible by construction.
            slack = a[reserve.rows] + b[reserve.cols] - reserve.q
            bad = np.flatnonzero(slack < 0)
            np.maximum.at(violation, reserve.rows[bad], -slack[bad])
            if len(bad):
                # The next duals will move a little, so the nearly tight pairs are the likely next
                # violators: adding the closest few now saves whole re-solves (3 rounds -> 2 here).
                slack[edges.contains(reserve.rows, reserve.cols)] = np.iinfo(np.int64).max
                extra = min(len(slack) - 1, (1 + PREEMPT) * len(bad))
                cut = np.partition(slack, extra)[extra]
                bad = np.flatnonzero(slack < min(cut, np.iinfo(np.int64).max))
            new = [(reserve.rows[bad], reserve.cols[bad], reserve.val[bad])]
            stats["edges_from_reserve"] += len(bad)
            sus_rows, sus_cols = suspects(reserve.bound, s, a, b)
        if len(sus_rows) and len(sus_cols):
            col_mask = np.zeros(n, dtype=bool)
            col_mask[sus_cols] = True
            step = block_rows if len(sus_rows) > SMALL_ROWS else min(SMALL_ROWS, block_rows)
            for c0 in range(0, len(sus_rows), step):
                r = sus_rows[c0 : c0 + step]
                with timed(timings, "recompute"):
                    full, differ = _recompute(block, r, reserve)
                    # The proof assumes re-computed cosines equal the pass's; the reserve checks that.
                    mismatches += differ
                    sim = full[:, col_mask]
                    qr = quantize(sim)
                    stats["rows_recomputed"] += len(r)
                    stats["pairs_recomputed"] += qr.size
                    bi, bj = np.nonzero(qr > a[r][:, None] + b[sus_cols][None, :])
                    gi, gj = r[bi], sus_cols[bj]
                    np.maximum.at(violation, gi, qr[bi, bj] - a[gi] - b[gj])
                    known = edges.contains(gi, gj)
                    # A known edge is feasible with its stored value; seeing it violate means the
                    # re-computed cosine differs from the pass, and then no bound is a proof.
                    mismatches += int(known.sum())
                    new.append((gi[~known], gj[~known], sim[bi[~known], bj[~known]]))
                    stats["edges_from_recompute"] += int((~known).sum())
                    if differ == 0:
                        # Keep what was paid for: a deeper reserve spares this row later rounds.
                        reserve.deepen(r, full, DEEPEN * depth)
        n_new = sum(len(x[0]) for x in new)
        if n_new == 0 or mismatches:
            break
        edges.add(*(np.concatenate(x) for x in zip(*new)))
    certified = n_new == 0 and mismatches == 0
    objective = int(_profit_of(n, rows, cols, q, partner).sum())
    dual = int(a.sum() + b.sum())
    return Assignment(
        partner=partner,
        cos=edges.cos[np.searchsorted(edges.key, ar * n + partner)],
        row_max=cand.row_max,
        certificate={
            "method": "sparse",
            "certified": bool(certified),
            "basis": "LP duality: integer potentials feasible for all n^2 pairs, tight on the matching",
            "rounds": rounds,
            "duality_gap": (objective - dual) * QUANTUM if certified else None,
            # Proven only when every re-computed cosine matched the pass (else no bound is a proof).
            "gap_bound": float(violation.sum() * QUANTUM) if mismatches == 0 else None,
            "objective_quantised": objective,
            "candidates_per_row": k,
            "candidates_per_column": k_col,
            "reserve_per_row": depth,
            "edges_first": first_edges,
            "edges_final": int(len(edges.key)),
            **stats,
            "recompute_mismatches": mismatches,
            "tolerance": TOLERANCE_NOTE,
        },
    )


__all__ = ["Assignment", "assign_dense", "assign_sparse", "column_prices", "pad_to_square", "solve_edges", "suspects", "unpad"]
