"""The fused CPU step of `signum.ScheduleFreeSignum`: one numba pass per tensor instead of five foreach passes.

Each element is computed in float32 exactly as torch's scalar `lerp` and `sign` compute it, with no fused
multiply-add (numba contracts nothing without fastmath), so a step gives the same bytes on any CPU, at any
thread count: the work is elementwise, with no reduction whose order could change.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit, prange

from saeseeds.common.hardware import numba_threads_as_torch


@njit(inline="always")
def _lerp(a, b, w):
    """torch's scalar lerp: a + w (b - a) for |w| < 1/2, else b - (b - a)(1 - w) (exact at w = 1)."""
    if -0.5 < w < 0.5:  # not abs(w): numba once failed to lower fabs(float32) in the parallel kernel
        return a + w * (b - a)
    return b - (b - a) * (np.float32(1.0) - w)


@njit(inline="always")
def _update(p, z, g, i, w_in, step, w_avg, w_out):
    """Element i: x = lerp(y, z, w_in); z -= step sign(g); y = lerp(lerp(x, z, w_avg), z, w_out); g = sign(g)."""
    gi = g[i]
    sign = np.float32(1.0) if gi > 0 else (np.float32(-1.0) if gi < 0 else np.float32(0.0))  # sign(NaN) = 0, as torch
    z_new = z[i] - step * sign
    x = _lerp(p[i], z[i], w_in)
    p[i] = _lerp(_lerp(x, z_new, w_avg), z_new, w_out)
    z[i] = z_new
    g[i] = sign


@njit(cache=True)
def _serial(p, z, g, w_in, step, w_avg, w_out):
    for i in range(p.size):
        _update(p, z, g, i, w_in, step, w_avg, w_out)


@njit(cache=True, parallel=True)
def _parallel(p, z, g, w_in, step, w_avg, w_out):
    for i in prange(p.size):
        _update(p, z, g, i, w_in, step, w_avg, w_out)


def fused_step(p: torch.Tensor, z: torch.Tensor, g: torch.Tensor, w_in: float, lr: float, w_avg: float, w_out: float, *, parallel: bool) -> None:
    """Updates contiguous float32 CPU tensors in place: weights p, iterate z; g is left holding sign(g)."""
    kernel = _parallel if parallel else _serial
    if parallel:
        numba_threads_as_torch()
    # float32 weights and step, as torch's foreach ops round their scalars for float32 tensors
    kernel(p.view(-1).numpy(), z.view(-1).numpy(), g.view(-1).numpy(), np.float32(w_in), np.float32(lr), np.float32(w_avg), np.float32(w_out))
