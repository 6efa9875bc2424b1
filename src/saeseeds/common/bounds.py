"""Upper bounds on row norms, for the proven error models of the bf16 screens (matching's cosines, training's top-k)."""

from __future__ import annotations

import torch


def row_norm_upper(x: torch.Tensor, *, zero_rows_exact: bool = False) -> torch.Tensor:
    """Returns float64 upper bounds on the Euclidean norms of the rows of x, from one float32 pass.

    A float32 norm of d terms is within (d / 2 + 2) 2^-24 of the true one, relative (rounding of the
    squares, any order of their sum, and the root); it is scaled up by twice that, and at least by
    2^-10. Coordinates whose squares underflow (below 2^-63) add at most sqrt(d) 2^-63, covered by an
    absolute term. With `zero_rows_exact`, a row of zeros does without it (bound 0, so a dead latent's
    cosines stay exact), at the cost of a second pass over x; the training step, which bounds every batch,
    does not ask for it. A float64 pass gave bounds tighter by under 0.1%, at the cost of a float64 copy of x.
    """
    d = x.shape[1]
    rel = max(2.0**-10, (d + 4) * 2.0**-24)
    underflow = d**0.5 * 2.0**-60
    if zero_rows_exact:
        underflow = (x != 0).any(dim=1).double() * underflow
    return torch.linalg.vector_norm(x, dim=1, dtype=torch.float32).double() * (1 + rel) + underflow
