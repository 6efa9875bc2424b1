"""Exact cosines of chosen pairs on CPU: one compiled pass per pair, no gathered copies (numba).

Each pair's float32 rows are multiplied in float64, where every product of two float32 numbers is exact,
and summed in four interleaved float64 accumulators in a fixed order, then rounded to float32. The order
depends only on d, so a pair's value is the same whatever pairs come with it and on every CPU (an FMA
could not change it either: the products are exact). Against torch's gather, widen, multiply and sum of
1024-pair chunks it reads each row once and writes nothing in between.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True, parallel=True, nogil=True)
def exact_dots(a: np.ndarray, b: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Returns float32(sum_t float64(a[rows[p], t]) * float64(b[cols[p], t])) for every pair p."""
    d = a.shape[1]
    tail = d - d % 4
    out = np.empty(len(rows), dtype=np.float32)
    for p in prange(len(rows)):
        x, y = a[rows[p]], b[cols[p]]
        s0 = s1 = s2 = s3 = 0.0
        for t in range(0, tail, 4):
            s0 += np.float64(x[t]) * np.float64(y[t])
            s1 += np.float64(x[t + 1]) * np.float64(y[t + 1])
            s2 += np.float64(x[t + 2]) * np.float64(y[t + 2])
            s3 += np.float64(x[t + 3]) * np.float64(y[t + 3])
        for t in range(tail, d):
            s0 += np.float64(x[t]) * np.float64(y[t])
        out[p] = np.float32((s0 + s1) + (s2 + s3))
    return out
