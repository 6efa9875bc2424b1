"""The incremental assignment solver against scipy's LAPJVsp, on graphs that grow and whose profits change."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import min_weight_full_bipartite_matching

from saeseeds.matching.augmenting import AugmentingSolver, csr


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


@pytest.mark.parametrize(("scale", "sizes"), [(1, (2, 50)), (10**9, (2, 50)), (1, (200, 400)), (10**9, (200, 400))])
def test_solves_growing_graphs_with_falling_and_rising_profits_like_scipy(scale, sizes):
    rng = np.random.default_rng(scale + sizes[0])
    for _ in range(60 if sizes[0] < 100 else 8):
        n = int(rng.integers(*sizes))
        key, q = random_graph(rng, n, int(rng.integers(1, 7)), scale)
        solver = AugmentingSolver(n)
        solver.solve(key // n, key % n, q, np.arange(n))  # the first solve: bids, then shortest paths
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
