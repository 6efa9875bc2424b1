"""Exact maximum-cosine assignment: dense scipy for small n, sparse with an optimality certificate for large n.

The sparse path never holds the n x n float matrix (at most each row's largest screened values at 16 bits,
`stored_screen`, up to 131K latents on CPU). One blockwise screening pass (`cosine_sources`, `int8_screen`: a bf16, int8 or fp32
matmul whose distance from the exact cosines is bounded by a proven error model) keeps, per row, its top-`depth`
screened cosines (the reserve) and, per column, its screened maximum. The candidate graph E is the
top-k of every row, the best few rows of every column (found by the pass on CPU, else read off the
reserves), and the diagonal (so a perfect matching always exists). Its edges enter on their screened upper
bounds; the assignment is solved on E, the pairs it matches get exact cosines, and it is solved
again until the matching stands on exact values only (`_solve_settled`: a few hundred thousand
float64 dot products saved per 16K matching). The solver (`augmenting`) keeps its matching and
potentials from one solve to the next, so a solve costs what changed, not the graph. Then the
matching is proved optimal over all n^2 pairs of exact cosines:

1. Duals. On integer profits q (see `similarity.quantize`), a matching M is optimal over all n^2
   pairs iff there are row and column potentials A, B with A_i + B_j >= q_ij for every pair and
   equality on M (LP duality for the assignment polytope); feasibility against an upper bound of
   q_ij implies it for q_ij, so only M's own profits must be exact. The solver's potentials are
   such A, B (column prices start at zero and only rise, which `Watch` relies on); both conditions
   are checked on E in exact int64 arithmetic, so the proof does not rely on the solver being right.
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
from scipy.optimize import linear_sum_assignment

from saeseeds.matching.cosine_sources import CosineSource, ceil_quantize
from saeseeds.matching.duals import profit_of, suspects
from saeseeds.matching.pair_sets import EdgeSet, ExactPairs, Reserve, Watch
from saeseeds.matching.screen_settings import KEEP_MAX_LATENTS
from saeseeds.matching.similarity import QUANTUM_BITS, Candidates, candidate_pass, column_candidates, quantize, stable_argsort, timed
from saeseeds.matching.violators import RESCREEN_REACH, reserve_violators, rescreen_violators, screen_over_targets, watch_violators

QUANTUM = 2.0**-QUANTUM_BITS
RESERVE_DEPTH = 48
"""Screened pairs kept per row by the pass. 48 against 64: real 16K 4.86 -> 4.72 s, correlated 16K 7.42 -> 7.36 s, the
stacked set 1.33 -> 1.29 s, random 16K 6.16 -> 6.02 s (2-core AVX2 EPYC, float32 screen); at 32 the real 16K pair's
rows screened again rose from 220 to 3,450 (4.92 s)."""
COLUMN_DEPTH = 24
"""Each column's best rows in the first candidate graph (at most k). 24 against 16 on the default study's stacked set
(int8 screen, AVX512 EPYC, medians of 6 alternated calls): rows screened again 5,272 / 8,540 -> 3,654 / 5,460 (enc /
dec), the matching 0.774 -> 0.744 s; at 32, 0.765 s (more edges to solve). The 16K pairs alike or a little faster (real
1.955 -> 1.919 s, correlated 2.692 -> 2.683 s, medians of 4); random pairs keep none (`similarity.BlockReducer`)."""
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


def assign_sparse(
    source: CosineSource,
    *,
    k: int = 32,
    k_col: int = COLUMN_DEPTH,
    depth: int = RESERVE_DEPTH,
    block_rows: int = 1024,
    max_rounds: int = 100,
    timings: dict[str, float] | None = None,
    keep_screen: bool | None = None,
) -> Assignment:
    """Returns the exact maximum-cosine matching of a square problem, with a certificate of optimality.

    `source` screens whole rows and gives exact cosines of chosen pairs (`cosine_sources`). The
    candidate graph starts as the top-k of every row, for every column its k_col (at most k) best rows,
    and the diagonal. The column's best rows come from the compiled pass (CPU float32) or, after torch's
    pass, from the row reserves (the top-`depth` of every row). The reserve is also what the
    certificate reads first, so most omitted pairs that need a closer look cost no second screen.
    Columns' own best rows matter where neighbours compete: columns that few rows rank high end up
    cheap, and their best rows are the pairs the certificate would otherwise find round by round
    (k_col 4 -> 16: solves 0.54 -> 0.41 s and rescreens 0.10 -> 0.04 s on the default study's stacked set).
    `keep_screen`: keep each row's largest screened values at 16 bits for the rows screened again
    (`stored_screen`); None keeps it up to `KEEP_MAX_LATENTS` where neighbours compete (`worth_keeping`). `timings`, when given, collects seconds per phase.
    """
    problem = screen_problem(source, k=k, k_col=k_col, depth=depth, block_rows=block_rows, timings=timings, keep_screen=keep_screen)
    return solve_screened(problem, max_rounds=max_rounds, timings=timings)


@dataclass
class ScreenedProblem:
    """A square problem after its screening pass (`screen_problem`): all that `solve_screened` starts from.

    Split so that a job's two matchings can run their passes (matmuls on every core) one after the other
    and then their solves (mostly one core each) side by side (`match.match_dictionaries`).
    """

    source: CosineSource
    cand: Candidates
    k: int
    k_col: int
    depth: int
    block_rows: int


def screen_problem(
    source: CosineSource,
    *,
    k: int = 32,
    k_col: int = COLUMN_DEPTH,
    depth: int = RESERVE_DEPTH,
    block_rows: int = 1024,
    timings: dict[str, float] | None = None,
    keep_screen: bool | None = None,
) -> ScreenedProblem:
    """Runs the screening pass of `assign_sparse` (its arguments mean the same) and returns what the solve needs."""
    n = source.n
    block_rows = min(block_rows, n)
    k = min(k, n)
    k_col = min(k_col, k)  # a graph asked to be thin (k small) stays thin on the column side too
    depth = min(max(depth, k), n)
    with timed(timings, "pass"):
        keep = (None if n <= KEEP_MAX_LATENTS else False) if keep_screen is None else keep_screen
        cand = candidate_pass(source, depth=depth, block_rows=block_rows, timings=timings, keep_screen=keep, col_depth=k_col)
    return ScreenedProblem(source, cand, k, k_col, depth, block_rows)


def solve_screened(problem: ScreenedProblem, *, max_rounds: int = 100, timings: dict[str, float] | None = None) -> Assignment:
    """Returns the certified exact matching of a screened problem (steps 1-4 of the module docstring).

    Thread-safe across problems: its compiled kernels release the GIL, so two run side by side on two cores.
    The pass's stored screen, if any, is given back when the solve ends (`StoredScreen.release`).
    """
    try:
        return _solve_screened(problem, max_rounds, timings)
    finally:
        if problem.cand.stored is not None:
            problem.cand.stored.release()


def _solve_screened(problem: ScreenedProblem, max_rounds: int, timings: dict[str, float] | None) -> Assignment:
    source, cand, k, k_col, depth, block_rows = (
        problem.source, problem.cand, problem.k, problem.k_col, problem.depth, problem.block_rows,
    )
    n = source.n
    exact = ExactPairs(source, timings)
    # Rows screened again are read from the pass's stored screen where it kept one, else multiplied again.
    second_look = cand.stored or source
    ar = np.arange(n)
    with timed(timings, "graph"):
        reserve = Reserve(cand.row_idx, cand.row_val, source)
        # Edges: each row's top k, each column's best k_col rows, and the diagonal. A compiled pass found the
        # columns' best rows among all rows; torch's pass (GPU, bf16) reads them off the row reserves, where
        # a column that few rows rank high gets few (then its cheap partners are found round by round).
        reserve.on_edge.reshape(n, depth)[:, :k] = True
        if cand.col_rows is None:
            reserve.on_edge[column_candidates(cand, k_col)] = True
        reserve.mark(ar, ar)
        in_reserve = np.flatnonzero(reserve.on_edge)
        on_diagonal = reserve.rows[in_reserve] == reserve.cols[in_reserve]
        diag = np.setdiff1d(ar, reserve.rows[in_reserve[on_diagonal]])
        # Reserve pairs and the columns' best rows enter on their screened bounds, in one sorted insert (the reserve's
        # first: the first occurrence of a pair wins); only the diagonal's pairs outside the reserve need exact values.
        # Added in two inserts, the stacked set's took 13 ms a side, in one, 9. (On their rows' bounds beyond the
        # reserve, the diagonal's pairs drew 2.7 times the exact values as the matching settled.)
        parts = [(reserve.rows[in_reserve], reserve.cols[in_reserve], reserve.q[in_reserve])]
        if cand.col_rows is not None:
            found = cand.col_val.reshape(-1) > -np.inf
            col_rows, col_cols = cand.col_rows.reshape(-1)[found], np.repeat(ar, cand.col_rows.shape[1])[found]
            upper = ceil_quantize(source.error.pair_upper(col_rows, col_cols, cand.col_val.reshape(-1)[found]), QUANTUM_BITS)
            parts.append((col_rows, col_cols, upper))
            reserve.mark(col_rows, col_cols)
        first_rows, first_cols, first_q = (np.concatenate(x) for x in zip(*parts))
        edges = EdgeSet(n)
        edges.add_bounded(first_rows, first_cols, first_q + _tie_breaker(first_rows, first_cols))
        edges.add(diag, diag, exact(diag, diag))
    # Every pair is <= its column's bound (and, outside the reserve, <= reserve.bound of its row).
    s = ceil_quantize(source.error.col_upper(ar, cand.col_max), QUANTUM_BITS)
    first_edges = len(edges.key)
    stats = {"edges_from_reserve": 0, "edges_from_rescreen": 0, "rows_rescreened": 0, "pairs_rescreened": 0, "rows_kept_clear": 0, "solves": 0}
    duals = None
    # Imported here: numba's start-up (about half a second) is paid only by matchings that take this path.
    from saeseeds.matching.augmenting import AugmentingSolver

    solver = AugmentingSolver(n)
    touched = ar
    watch = Watch(n)
    reach = int(RESCREEN_REACH * 2**QUANTUM_BITS)
    for rounds in range(1, max_rounds + 1):
        # Per row, the largest amount by which a pair exceeds A_i + B_j: raising A_i by it makes the duals
        # feasible everywhere, so its sum bounds how far this matching can be from the optimum.
        violation = np.zeros(n, dtype=np.int64)
        partner, (a, b) = _solve_settled(edges, solver, touched, exact, timings, stats)
        if duals is not None and (b < duals[1]).any():
            # The watch's cleared rows rest on column prices that never fall (prices start from the last ones).
            raise RuntimeError("column prices fell between rounds; this is a bug")
        duals = (a, b)
        rows, cols, q = edges.rows, edges.cols, edges.profit
        if (a[rows] + b[cols] < q).any() or (a + b[partner] != profit_of(n, rows, cols, q, partner)).any():
            raise RuntimeError("dual potentials infeasible on the candidate graph or loose on the matching; this is a bug")
        with timed(timings, "check"):
            new = [reserve_violators(reserve, a, b, exact, violation), watch_violators(watch, a, b, edges, exact, violation)]
            stats["edges_from_reserve"] += len(new[0][0])
            sus_rows, _ = suspects(reserve.bound, s, a, b)
            kept_clear = a[sus_rows] >= watch.cleared_until[sus_rows]
            stats["rows_kept_clear"] += int(kept_clear.sum())
            sus_rows = sus_rows[~kept_clear]
            if len(sus_rows):
                # Columns where these rows may come within `reach` of violating: after the rescreen, each
                # row is cleared for every column until its potential falls by more than that.
                lowered = np.full(n, np.iinfo(np.int64).max // 4)
                lowered[sus_rows] = a[sus_rows] - reach
                sus_rows, sus_cols = suspects(reserve.bound, s, lowered, b)
        if len(sus_rows) and len(sus_cols):
            sus_cols = sus_cols[stable_argsort(b[sus_cols])]  # by price: `prefilter`'s groups
            for c0 in range(0, len(sus_rows), block_rows):
                r = sus_rows[c0 : c0 + block_rows]
                with timed(timings, "rescreen"):
                    found = rescreen_violators(second_look, r, sus_cols, a, b, reach, edges, exact, violation, watch)
                new.append(found)
                stats["rows_rescreened"] += len(r)
                stats["pairs_rescreened"] += len(r) * len(sus_cols)
                stats["edges_from_rescreen"] += len(found[0])
        n_new = sum(len(x[0]) for x in new)
        if n_new == 0:
            break
        new_rows, new_cols, new_cos = (np.concatenate(x) for x in zip(*new))
        edges.add(new_rows, new_cols, new_cos)
        touched = new_rows
        reserve.mark(new_rows, new_cols)
    certified = n_new == 0
    matched = edges.find(ar, partner)
    objective = int(edges.profit[matched].sum())
    dual = int(a.sum() + b.sum())
    with timed(timings, "row_max"):
        row_max, rows_completed = _exact_row_max(source, reserve, edges, exact, block_rows)
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
            "screen_stored": cand.stored is not None,
            "rows_short_of_store": cand.stored.rows_short if cand.stored is not None else 0,
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
    blocks, and scipy's LAPJVsp (the solver then) crawled through them: 5.6 s for a first solve that
    takes 0.27 s with the offsets (the 6,048-latent stacked set of the default study).
    """
    h = (rows.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) ^ (cols.astype(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F))
    h ^= h >> np.uint64(29)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    return (h >> np.uint64(64 - TIE_BITS)).astype(np.int64)


def _solve_settled(edges: EdgeSet, solver, touched: np.ndarray, exact: ExactPairs, timings, stats: dict):
    """Returns the optimal matching of the graph whose own edges all have exact profits, and its duals (A, B).

    Bounded edges are optimistic, so the solver tends to pick them; each pick gets its exact cosine and,
    if that is lower, its row is priced again and matched again (`_settle_matching`). `touched`: the rows
    whose edges changed since the last call.
    """
    while True:
        stats["solves"] += 1
        with timed(timings, "solve"):
            partner = solver.solve(edges.rows, edges.cols, edges.profit, touched)
        touched = _settle_matching(edges, partner, (solver.a, solver.b), exact)
        if len(touched) == 0:
            return partner.copy(), (solver.a.copy(), solver.b.copy())


SETTLE_REACH = 2
"""When matched profits fall by up to f, bounded edges within SETTLE_REACH * f of tight get exact values too: a
displaced row's replacement may displace another, and reach 2 ended the chain in one re-solve where 1 took 2-4."""


def _settle_matching(edges: EdgeSet, partner: np.ndarray, duals, exact: ExactPairs) -> np.ndarray:
    """Gives the matched edges that still stand on a bound their exact cosines; returns the rows whose profits moved.

    When matched profits fall by up to f, the bounded edges within f of tight under the current
    `duals` (A_i + B_j - q_ij < f) are the ones that may take their places, so they are settled now too
    (within `SETTLE_REACH` * f) instead of one more search each.
    """
    n = len(partner)
    pos = edges.find(np.arange(n), partner)
    pos = pos[~edges.known[pos]]
    if len(pos) == 0:
        return pos
    drop = edges.settle(pos, exact(edges.key[pos] // n, edges.key[pos] % n))
    # A true bound never rises on settling; rows are priced again on any change, so a screen whose
    # stated error is too small misleads the certificate (tests show it) but never the solver.
    fell = pos[drop != 0]
    if (drop > 0).any():
        e_rows, e_cols = edges.rows, edges.cols
        a, b = duals
        near = np.flatnonzero(~edges.known & (a[e_rows] + b[e_cols] - edges.profit < SETTLE_REACH * drop.max()))
        near_drop = edges.settle(near, exact(e_rows[near], e_cols[near]))
        fell = np.concatenate([fell, near[near_drop != 0]])
    return np.unique(edges.key[fell] // n)


def _exact_row_max(
    source: CosineSource, reserve: Reserve, edges: EdgeSet, exact: ExactPairs, block_rows: int
) -> tuple[np.ndarray, int]:
    """Returns each row's largest exact cosine (max-cos) and how many rows needed every column screened again.

    The best edge of a row is its max-cos once no other pair's upper bound exceeds it; reserve pairs
    that might still beat it get exact cosines, and a row whose bound beyond the reserve does too
    (near-ties at the screen's error; 9 and 15 of the stacked set's 6,048 rows with the int8 screen) is
    screened again whole, and its pairs that may beat its best get exact values.
    """
    n = source.n
    best = np.full(n, -np.inf, dtype=np.float64)
    known = edges.known
    np.maximum.at(best, edges.rows[known], edges.cos[known].astype(np.float64))
    # Each row's top screened pair first: its exact value usually clears the rest of the reserve.
    top = np.arange(n) * reserve.depth
    top = top[reserve.upper[top] > best]
    np.maximum.at(best, reserve.rows[top], exact(reserve.rows[top], reserve.cols[top]).astype(np.float64))
    open_ = reserve.upper > best[reserve.rows]
    open_[top] = False
    r, c = reserve.rows[open_], reserve.cols[open_]
    todo = ~edges.known_at(r, c)
    r, c = r[todo], c[todo]
    if len(r):
        np.maximum.at(best, r, exact(r, c).astype(np.float64))
    full = np.flatnonzero(reserve.row_upper > best)
    every = np.arange(n)
    for r0 in range(0, len(full), block_rows):
        # Screened again first, a block of rows at a time (no larger than a block of the pass), so that only the
        # pairs whose bound may beat the best exact cosine so far get exact values: whole rows took 54K and 90K of
        # the stacked set's 138K and 225K exact pairs with the int8 screen, whose bound keeps more rows open.
        rows = full[r0 : r0 + block_rows]
        p, q, _ = screen_over_targets(source, rows, every, best[rows], np.zeros(n), best[rows], np.zeros(n))
        np.maximum.at(best, rows[p], exact(rows[p], q).astype(np.float64))
    return best.astype(np.float32), int(len(full))


__all__ = [
    "COLUMN_DEPTH", "PAD_COSINE", "RESERVE_DEPTH", "Assignment", "ScreenedProblem", "assign_dense", "assign_sparse", "screen_problem",
    "solve_screened", "unpad",
]
