"""The incremental assignment solver against scipy's LAPJVsp, on graphs that grow and whose profits change, and its
first solve's auction (`scaled_auction`) with its potentials against a brute-force reference."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import min_weight_full_bipartite_matching

from saeseeds.matching.augmenting import AugmentingSolver, _best_first, csr
from saeseeds.matching.scaled_auction import first_assignment


def scipy_objective(n: int, key: np.ndarray, q: np.ndarray) -> int:
    rows, cols = key // n, key % n
    cost = (q.max() + 1 - q).astype(np.float64)
    r, c = min_weight_full_bipartite_matching(csr_matrix((cost, (rows, cols)), shape=(n, n)))
    return int(q[np.searchsorted(key, r * n + c)].sum())


def random_graph(rng: np.random.Generator, n: int, degree: int, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted pair keys (the diagonal always, so a perfect matching exists) and integer profits with many ties."""
    rows = np.concatenate([np.repeat(np.arange(n), degree), np.arange(n)])
    cols = np.concatenate([rng.integers(0, n, n * degree), np.arange(n)])
    key = np.unique(rows * n + cols)
    return key, rng.integers(-50, 50, len(key)) * scale


def check_optimal(solver: AugmentingSolver, n: int, key: np.ndarray, q: np.ndarray) -> None:
    rows, cols = key // n, key % n
    partner = solver.partner
    assert sorted(partner.tolist()) == list(range(n))
    matched = np.searchsorted(key, np.arange(n) * n + partner)
    assert (key[matched] == np.arange(n) * n + partner).all(), "matched a pair that is not an edge"
    # Dual feasible on every edge, tight on the matching: optimal by LP duality, whatever scipy says.
    assert (solver.a[rows] + solver.b[cols] >= q).all()
    assert (solver.a + solver.b[partner] == q[matched]).all()
    assert int(q[matched].sum()) == scipy_objective(n, key, q)


@pytest.mark.parametrize("auction", [True, False], ids=["auction-first", "paths-first"])
@pytest.mark.parametrize(("scale", "sizes"), [(1, (2, 50)), (10**9, (2, 50)), (1, (200, 400)), (10**9, (200, 400))])
def test_solves_growing_graphs_with_falling_and_rising_profits_like_scipy(scale, sizes, auction):
    rng = np.random.default_rng(scale + sizes[0])
    for _ in range(60 if sizes[0] < 100 else 8):
        n = int(rng.integers(*sizes))
        key, q = random_graph(rng, n, int(rng.integers(1, 7)), scale)
        solver = AugmentingSolver(n)
        solver.start_by_auction = auction
        solver.solve(key // n, key % n, q, np.arange(n))  # the first solve: an auction, or bids then shortest paths
        check_optimal(solver, n, key, q)
        for _ in range(3):
            prices = solver.b.copy()
            new_rows = rng.integers(0, n, n)
            grown = np.unique(np.concatenate([key, new_rows * n + rng.integers(0, n, n)]))
            old = np.searchsorted(key, grown)
            is_old = key[np.minimum(old, len(key) - 1)] == grown
            q2 = rng.integers(-50, 80, len(grown)) * scale
            q2[is_old] = q[old[is_old]]
            moved = rng.random(len(grown)) < 0.1  # profits that fall (settled bounds) or rise
            q2[moved] += rng.integers(-30, 10, moved.sum()) * scale
            key, q = grown, q2
            solver.solve(key // n, key % n, q, np.concatenate([new_rows, (key // n)[moved]]))  # freed rows bid, then paths
            check_optimal(solver, n, key, q)
            assert (solver.b >= prices).all(), "column prices fell"


@pytest.mark.parametrize("bids", [0, 64])
def test_a_graph_without_perfect_matching_is_an_error(bids):
    n = 3
    key = np.array([0 * n + 0, 1 * n + 0, 2 * n + 2])  # rows 0 and 1 both have only column 0
    graph = csr(n, key // n, key % n, np.ones(3, dtype=np.int64))
    solver = AugmentingSolver(n)
    solver.reprice(graph, np.arange(n))
    with pytest.raises(RuntimeError, match="no augmenting path"):
        solver.augment(graph, bids=bids)


def test_bids_alone_can_finish_a_first_solve_with_tight_feasible_duals():
    # Rows 0-2 all like column 0 best; bids raise its price until each settles on its own column.
    n = 3
    q = np.array([[10, 9, 0], [10, 0, 8], [10, 0, 0]])
    rows, cols = np.divmod(np.arange(n * n), n)
    solver = AugmentingSolver(n)
    solver.start_by_auction = False
    solver.solve(rows, cols, q.reshape(-1), np.arange(n))
    assert solver.paths == 0, "the bids should have matched every row"
    check_optimal(solver, n, np.arange(n * n), q.reshape(-1))


def test_edges_not_grouped_by_row_are_refused():
    with pytest.raises(ValueError, match="grouped by row"):
        csr(2, np.array([1, 0]), np.array([0, 1]), np.array([1, 1]))


def reference_bids(row_ptr, cols, q, partner, owner, a, b, free, budget) -> list[int]:
    """`_bid` read as its docstring says, every edge of a row scanned (no order, no early stop)."""
    queue, left = list(free), []
    while queue:
        i = queue.pop(0)
        if budget == 0:
            left.append(i)
            continue
        budget -= 1
        edges = sorted(((q[e] - b[cols[e]], cols[e]) for e in range(row_ptr[i], row_ptr[i + 1])), key=lambda x: (-x[0], x[1]))
        (v1, j1), (v2, j2) = edges[0], edges[1] if len(edges) > 1 else (None, -1)
        if j2 == -1 or (v1 == v2 and owner[j1] != -1 and owner[j2] != -1):
            a[i] = v1
            left.append(i)
            continue
        if owner[j1] == -1:
            a[i] = v1
        elif v1 == v2 and owner[j2] == -1:
            a[i], j1 = v1, j2
        else:
            b[j1] += v1 - v2
            a[i] = v2
        k = owner[j1]
        partner[i], owner[j1] = j1, i
        if k != -1:
            partner[k] = -1
            queue.append(k)
    return left


@pytest.mark.parametrize("ordered", [True, False])
@pytest.mark.parametrize("scale", [1, 10**9])
def test_bids_that_stop_at_a_rows_weaker_edges_bid_as_a_full_scan_would(scale, ordered):
    # ordered: the first solve's bids, edges largest profit first with the early stop; else later solves' full scans.
    from saeseeds.matching.augmenting import _best_first, _bid

    rng = np.random.default_rng(scale % 97)
    n = 300
    key, q = random_graph(rng, n, 6, scale)  # profits in 100 values: ties everywhere
    row_ptr, cols, q = csr(n, key // n, key % n, q)
    solver = AugmentingSolver(n)
    solver.reprice((row_ptr, cols, q), np.arange(n))
    free = np.flatnonzero(solver.partner == -1)
    state = [x.copy() for x in (solver.partner, solver.owner, solver.a, solver.b)]
    want = reference_bids(row_ptr, cols, q, *state, free.tolist(), 8 * len(free))
    order = _best_first(row_ptr, q) if ordered else np.arange(len(q))
    got = _bid(row_ptr, cols[order], q[order], solver.partner, solver.owner, solver.a, solver.b, free, 8 * len(free), ordered)
    assert got.tolist() == want and len(want) < len(free)
    for mine, theirs in zip((solver.partner, solver.owner, solver.a, solver.b), state):
        np.testing.assert_array_equal(mine, theirs)


def ordered_graph(n: int, key: np.ndarray, q: np.ndarray):
    row_ptr, cols, profit = csr(n, key // n, key % n, q)
    order = _best_first(row_ptr, profit)
    return row_ptr, cols[order], profit[order]


def lowest_prices_by_relaxation(row_ptr, cols, q, partner) -> np.ndarray:
    """The least prices B >= 0 with q_ij - B_j <= q_im - B_m on every edge (m row i's partner): Bellman-Ford from 0."""
    n = len(partner)
    b = np.zeros(n, dtype=np.int64)
    for _ in range(n + 1):
        changed = False
        for i in range(n):
            edges = range(row_ptr[i], row_ptr[i + 1])
            mine = next(q[e] for e in edges if cols[e] == partner[i])
            for e in edges:
                need = b[partner[i]] + q[e] - mine
                if b[cols[e]] < need:
                    b[cols[e]], changed = need, True
        if not changed:
            return b
    raise AssertionError("the relaxation did not settle: the matching is not optimal")


@pytest.mark.parametrize("scale", [1, 10**9])
def test_the_auction_finds_the_optimum_with_the_lowest_tight_feasible_prices(scale):
    rng = np.random.default_rng(scale % 101)
    for _ in range(40):
        n = int(rng.integers(1, 60))
        key, q = random_graph(rng, n, int(rng.integers(1, 7)), scale)  # profits in 100 values: ties everywhere
        row_ptr, cols, profit = ordered_graph(n, key, q)
        partner, owner, a, b = first_assignment(row_ptr, cols, profit)
        assert sorted(partner.tolist()) == list(range(n)) and (owner[partner] == np.arange(n)).all()
        rows = np.repeat(np.arange(n), np.diff(row_ptr))
        assert (a[rows] + b[cols] >= profit).all(), "a potential below an edge"
        matched = profit[[np.flatnonzero((rows == i) & (cols == partner[i]))[0] for i in range(n)]]
        assert (a + b[partner] == matched).all(), "a matched edge not tight"
        assert int(matched.sum()) == scipy_objective(n, key, q)
        np.testing.assert_array_equal(b, lowest_prices_by_relaxation(row_ptr, cols, profit, partner))


def test_rows_with_a_single_edge_take_it():
    # Rows 0-3 have only their own column; rows 4-7 may take any of 4-7 and all like column 4 best.
    n = 8
    pairs = [(i, i, 5) for i in range(4)] + [(i, j, 10 - (j - 4) - (i == j)) for i in range(4, 8) for j in range(4, 8)]
    key = np.array([i * n + j for i, j, _ in pairs])
    q = np.array([v for *_, v in pairs], dtype=np.int64)
    order = np.argsort(key)
    key, q = key[order], q[order]
    partner, *_ = first_assignment(*ordered_graph(n, key, q))
    assert partner[:4].tolist() == [0, 1, 2, 3]
    solver = AugmentingSolver(n)
    solver.solve(key // n, key % n, q, np.arange(n))
    check_optimal(solver, n, key, q)


def test_a_graph_without_perfect_matching_is_given_up_and_reported_by_the_paths():
    n = 3
    key = np.array([0 * n + 0, 1 * n + 0, 2 * n + 2])  # rows 0 and 1 both have only column 0
    q = np.ones(3, dtype=np.int64)
    assert first_assignment(*ordered_graph(n, key, q)) is None
    with pytest.raises(RuntimeError, match="no augmenting path"):
        AugmentingSolver(n).solve(key // n, key % n, q, np.arange(n))


def test_profits_too_large_to_scale_are_solved_by_shortest_paths():
    rng = np.random.default_rng(3)
    n = 40
    key, q = random_graph(rng, n, 4, 10**15)  # spread 1e17: times n + 1 it would leave int64's safe range
    assert first_assignment(*ordered_graph(n, key, q)) is None
    solver = AugmentingSolver(n)
    solver.solve(key // n, key % n, q, np.arange(n))
    check_optimal(solver, n, key, q)
