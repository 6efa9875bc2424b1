"""Where the certificate looks for pairs that violate the duals: the reserve, and rows screened again.

A pair outside the candidate graph violates the duals A, B when its exact profit exceeds A_i + B_j. Every
pair has an upper bound (screen plus proven error); these functions clear what the bounds clear and compute
exact cosines only for the rest, returning the true violators for `assignment.assign_sparse` to add.
"""

from __future__ import annotations

import numpy as np

from saeseeds.matching.cosine_sources import ceil_quantize
from saeseeds.matching.pair_sets import EdgeSet, ExactPairs, Reserve, Watch
from saeseeds.matching.similarity import QUANTUM_BITS, quantize


PREEMPT = 10
"""Per violating reserve pair, how many of the nearest-to-violating reserve pairs join the graph too."""


def reserve_violators(reserve: Reserve, a, b, exact: ExactPairs, violation: np.ndarray):
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
    bad = _violating(reserve.rows[maybe], reserve.cols[maybe], quantize(cos), a, b, violation)
    if not bad.any():
        return reserve.rows[maybe[bad]], reserve.cols[maybe[bad]], cos[bad]
    extra = min(len(bound_slack) - 1, (1 + PREEMPT) * int(bad.sum()))
    near = np.flatnonzero(bound_slack < min(np.partition(bound_slack, extra)[extra], np.iinfo(np.int64).max))
    near = np.setdiff1d(near, maybe, assume_unique=True)
    take_r = np.concatenate([reserve.rows[maybe[bad]], reserve.rows[near]])
    take_c = np.concatenate([reserve.cols[maybe[bad]], reserve.cols[near]])
    return take_r, take_c, np.concatenate([cos[bad], exact(reserve.rows[near], reserve.cols[near])])


def watch_violators(watch: Watch, a, b, edges: EdgeSet, exact: ExactPairs, violation: np.ndarray):
    """Returns the watched pairs, not yet edges, that violate A_i + B_j >= q_ij (exact cosines)."""
    maybe = np.flatnonzero(watch.q > a[watch.rows] + b[watch.cols])
    r, c = watch.rows[maybe], watch.cols[maybe]
    fresh = ~edges.contains(r, c)
    r, c = r[fresh], c[fresh]
    cos = exact(r, c)
    bad = _violating(r, c, quantize(cos), a, b, violation)
    return r[bad], c[bad], cos[bad]


def _violating(rows: np.ndarray, cols: np.ndarray, q: np.ndarray, a, b, violation: np.ndarray) -> np.ndarray:
    """Returns which pairs violate A_i + B_j >= q_ij, and raises each row's `violation` to its largest excess."""
    slack = a[rows] + b[cols] - q
    bad = slack < 0
    np.maximum.at(violation, rows[bad], -slack[bad])
    return bad


RESCREEN_REACH = 2.0**-8
"""How far below the duals a rescreen looks (in cosine): rows stay cleared while their potential falls less."""


RESCREEN_MARGIN = 1e-5
"""A rescreen's row thresholds are lowered by this much (plus 1e-6 of the potentials' size) before `prefilter`
rounds them to float32 and the screen's dtype; float32 rounds values below 8 by < 1e-6, so the prefilter drops
no pair the exact bound would fail."""


def screen_over_targets(source, rows, cols, row_target, col_target, row_size, col_size):
    """Returns `source.screen_over`'s (p, q, screened value) for every pair of rows x cols whose bound may exceed
    row_target[p] + col_target[q] (a superset): the bound inverted (`ErrorModel.screen_thresholds`), then lowered by
    `RESCREEN_MARGIN` and 1e-6 of the sizes the targets come from (`row_size`, `col_size`), so that the prefilter's
    rounding to the screen's dtype drops no pair the bound would keep."""
    row_thr, col_thr = source.error.screen_thresholds(rows, row_target, cols, col_target)
    row_thr -= RESCREEN_MARGIN + 1e-6 * np.abs(row_size)
    col_thr -= 1e-6 * np.abs(col_size)
    return source.screen_over(rows, cols, row_thr, col_thr)


def rescreen_violators(source, r, sus_cols, a, b, reach: int, edges, exact: ExactPairs, violation, watch: Watch):
    """Screens the pairs of rows r with the suspect columns again and returns those that violate the duals.

    Only rows x suspect columns can hold a violator or a pair within `reach` of one (`suspects` with the
    row potentials lowered by `reach`), so that block is the second look: a scan of the pass's stored
    screen where it kept one, else one matmul (`CosineSource.screen_over`). It keeps the pairs whose bound
    may exceed A_i - reach + B_j (screen > R_i + C_j, with R and C lowered so that this holds whenever the
    bound does); those get the bound in exact integer profits. Pairs whose bound
    exceeds A_i + B_j get exact cosines and join the graph if they violate; the rest of the kept pairs are
    watched (`Watch`), and the rows are cleared while A_i >= (its value now) - reach.
    """
    err = source.error
    scale = 2.0**-QUANTUM_BITS
    bi, bj, vals = screen_over_targets(
        source, r, sus_cols, (a[r] - reach) * scale, b[sus_cols] * scale, a[r] * scale, b[sus_cols] * scale
    )
    gi, gj = r[bi], sus_cols[bj]
    sure = ceil_quantize(err.pair_upper(gi, gj, vals), QUANTUM_BITS)
    near = (sure > a[gi] - reach + b[gj]) & ~edges.contains(gi, gj)
    gi, gj, sure = gi[near], gj[near], sure[near]
    over = sure > a[gi] + b[gj]
    cos = exact(gi[over], gj[over])
    q = sure.copy()
    q[over] = quantize(cos)
    bad = _violating(gi, gj, q, a, b, violation)
    watch.extend(gi[~bad], gj[~bad], q[~bad])
    watch.cleared_until[r] = a[r] - reach
    return gi[bad], gj[bad], cos[bad[over]]  # only pairs over A_i + B_j can violate


__all__ = ["RESCREEN_REACH", "reserve_violators", "rescreen_violators", "screen_over_targets", "watch_violators"]
