"""Compiled selection helpers shared by the numba kernels that pick a row's largest values (numba).

`sae.fp32_topk` (the TopK encoder's selection) and `matching.screen_kernels` (the matching's screening
pass) both bound a row's k-th largest value by the k-th largest of its group maxima and then need the
exact k-th largest of a short candidate list.
"""

from __future__ import annotations

from numba import njit


@njit(inline="always")
def kth_largest(vals, count, k, work):  # pragma: no cover - compiled
    """The k-th largest of vals[:count] (no NaN), by quickselect on a copy in `work`."""
    for i in range(count):
        work[i] = vals[i]
    lo, hi, want = 0, count - 1, count - k
    while lo < hi:
        pivot = work[(lo + hi) >> 1]
        i, j = lo, hi
        while i <= j:
            while work[i] < pivot:
                i += 1
            while work[j] > pivot:
                j -= 1
            if i <= j:
                work[i], work[j] = work[j], work[i]
                i += 1
                j -= 1
        if want <= j:
            hi = j
        elif want >= i:
            lo = i
        else:
            break
    return work[want]


__all__ = ["kth_largest"]
