"""The geometric median of a set of rows, by Weiszfeld's iteration: one way to start `b_dec`.

EleutherAI's `sae` set the decoder bias to the geometric median of the first batch's activations (its
`geometric_median`: Weiszfeld from the mean, 100 iterations at most, absolute tolerance 1e-5 in float32)
from 2024-06-07 (commit 95ae554) to 2024-11-22 (da0e080), as Bricken et al. (2023) and SAELens do; from then
on, including the 2024-12-18 version that added training several init seeds at once (e0cc99e, the feature
the paper's seed comparison uses) and sparsify 1.3.3, it uses the batch mean. The median is the point
minimising the sum of Euclidean distances to the rows, so a few outlying rows (a first-token activation
hundreds of times larger than the rest, common in language models) move it much less than the mean.

This is our own iteration, in float64 with a relative tolerance, so the result does not depend on the
scale of the activations and is the same whatever the device's float32 rounding.
"""

from __future__ import annotations

import torch
from torch import Tensor

DEFAULT_TOL = 1e-7
"""Stop when an iteration moves the estimate by less than this times the rows' mean distance to their mean."""

DEFAULT_MAX_ITER = 1000


def geometric_median(points: Tensor, *, tol: float = DEFAULT_TOL, max_iter: int = DEFAULT_MAX_ITER) -> Tensor:
    """Returns the geometric median [d] of `points` [n, d] (argmin_m sum_i ||points_i - m||), in points' dtype.

    Weiszfeld's iteration m <- sum_i w_i points_i / sum_i w_i with w_i = 1 / ||points_i - m||, started at
    the mean and run in float64 until a step is shorter than `tol` times the rows' mean distance to their
    mean (or `max_iter` steps). A row that coincides with the estimate gets its distance clamped to a tiny
    floor instead of an infinite weight, so the iteration stays defined (it then sits at that row, which is
    the median whenever the iteration would stop there).
    """
    if points.dim() != 2 or len(points) == 0:
        raise ValueError(f"geometric_median: expected a non-empty [n, d] tensor, got shape {tuple(points.shape)}")
    if not bool(torch.isfinite(points).all()):
        raise ValueError("geometric_median: non-finite rows")
    x = points.detach().to(torch.float64)
    guess = x.mean(0)
    scale = float(torch.linalg.vector_norm(x - guess, dim=1).mean())
    if scale == 0.0:  # every row is the same point
        return guess.to(points.dtype)
    floor = scale * 1e-12
    for _ in range(max_iter):
        dist = torch.linalg.vector_norm(x - guess, dim=1).clamp_min(floor)
        weights = 1.0 / dist
        new = (weights[:, None] * x).sum(0) / weights.sum()
        moved = float(torch.linalg.vector_norm(new - guess))
        guess = new
        if moved < tol * scale:
            break
    return guess.to(points.dtype)


def sum_of_distances(points: Tensor, m: Tensor) -> float:
    """Returns sum_i ||points_i - m||, in float64: the objective the geometric median minimises."""
    return float(torch.linalg.vector_norm(points.double() - m.double(), dim=1).sum())
