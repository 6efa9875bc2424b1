"""`screened_topk`'s selection after its bf16 matmul, on CPU, in two compiled passes (numba).

Written in torch ops (group maxima, their k-th largest, the threshold, a compare, `nonzero`, the float32
dot products, a padded scatter and `topk`), the work after the screen's matmul took as long as the matmul
itself on the AVX512-BF16 EPYC (4096 tokens x 4608 latents: 58 ms beside 55). Here:

1. `screen_candidates`, per row: the maxima of the row's strided groups of the screen S, with the bf16
   bits read as int16 keys that order like the values (a running maximum that vectorizes); their k-th
   largest by a radix select; the threshold tau of `screened_topk`'s proof, computed from it in float64;
   then the smallest bf16 value at or above tau (a binary search over the keys), so that "S >= tau" becomes
   one integer compare; and the columns that pass it, in column order, taken only from the groups whose
   maximum passes.
2. the candidates' float32 dot products (`sae.pair_dots`, torch's kernel);
3. `keep_k_largest`, per row: the k largest dot products plus bias, in column order, ties at the k-th value
   to the lowest columns (the order `fp32_topk` keeps).

The candidates are exactly the entries whose screen reaches tau (less a margin for the float64 rounding of
tau itself), a superset of what the proof needs, so the kept latents are the float32 path's.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit, prange

from saeseeds.common.hardware import numba_threads_as_torch
from saeseeds.common.selection import kth_largest_int16, write_k_largest
from saeseeds.sae.pair_dots import pair_dots

GROUP = 32
"""Columns per group (the same strided groups as `screened_topk.GROUP`: columns j, j + n/32, ...). A copy, as is
REL16, because the kernel's loops need them as constants (passed in as arguments, the kernel took 3.0 ms a 1024-row
block against 1.4) and `screened_topk` imports this module; `tests/sae/test_screened_topk.py` checks both agree."""

REL16 = 2.0**-8 / (1 - 2.0**-8)
"""Relative error of rounding the float32 accumulator to the bfloat16 output (`screened_topk._REL16`)."""

TAU_SLACK_REL, TAU_SLACK_ABS = 2.0**-40, 2.0**-100
"""tau is lowered by TAU_SLACK_REL (|g| + 2 e) + TAU_SLACK_ABS: far past the float64 rounding of its few operations."""

BF16_VALUES = (np.arange(1 << 16, dtype=np.uint32) << 16).view(np.float32)
"""The float32 value of each bf16 bit pattern, indexed by the pattern as an unsigned 16-bit integer."""

KEY_MINUS_INF, KEY_PLUS_INF = -32641, 32640
"""The keys of -inf and +inf; every finite bf16 lies between them (NaN patterns lie outside)."""


@njit(inline="always")
def _key(bits):  # pragma: no cover - compiled
    """An int16 that orders like the bf16 value of `bits` (negatives' magnitude bits flipped); its own inverse."""
    return np.int16(bits ^ ((bits >> np.int16(15)) & np.int16(0x7FFF)))


@njit(inline="always")
def _magnitude(v):  # pragma: no cover - compiled
    """|v| without `abs`: inside a parallel loop numba lowers a float's abs to `math.fabs`, which failed to lower
    ("No definition for lowering <function fabs>") in test processes whose earlier compilations left numba's math
    lowering unregistered (a fresh clone's CI, 2026-12-04; `screen_kernels.STORE_STEP` tells the same of `pow`)."""
    return v if v >= 0 else -v


@njit(inline="always")
def _value(key, values):  # pragma: no cover - compiled
    return values[np.int64(_key(np.int16(key))) & 0xFFFF]


@njit(inline="always")
def _key_at_or_above(tau, values):  # pragma: no cover - compiled
    """The key of the smallest bf16 value >= tau (tau finite and at most the largest finite bf16)."""
    lo, hi = KEY_MINUS_INF, KEY_PLUS_INF
    while lo < hi:
        mid = (lo + hi) >> 1
        if _value(mid, values) >= tau:
            hi = mid
        else:
            lo = mid + 1
    return np.int16(lo)


@njit(cache=True, parallel=True, nogil=True)
def screen_candidates(screen, values, err, k, cap, cols, counts):  # pragma: no cover - compiled
    """For each row t of `screen` (bf16 bits as int16, finite): counts[t] candidates, the first `cap` of them in cols[t].

    err[t] (float64) bounds |S - x . w - b| for row t's entries, as `screened_topk` derives it.
    """
    rows, n = screen.shape
    groups = n // GROUP
    chunks = min(rows, 64)
    per = (rows + chunks - 1) // chunks
    for chunk in prange(chunks):
        group_max = np.empty(groups, dtype=np.int16)
        hist = np.empty(256, dtype=np.int64)
        hits = np.empty(groups + 1, dtype=np.int64)
        found = np.empty(n + 1, dtype=np.int32)
        for t in range(chunk * per, min(rows, chunk * per + per)):
            row = screen[t]
            for j in range(groups):
                group_max[j] = _key(row[j])
            for r in range(1, GROUP):
                base = r * groups
                for j in range(groups):
                    group_max[j] = max(_key(row[base + j]), group_max[j])
            g = np.float64(_value(kth_largest_int16(group_max, groups, k, hist), values))
            e = err[t]
            # screened_topk's threshold: k entries are worth >= low, and an entry below tau is worth < low
            low = g - REL16 * _magnitude(g) - e
            m = low - e
            tau = m / (1 + REL16) if m >= 0 else m / (1 - REL16)
            # lowered past the float64 rounding of the lines above (a few ulps of |g| + 2e)
            key = _key_at_or_above(tau - TAU_SLACK_REL * (_magnitude(g) + 2 * e) - TAU_SLACK_ABS, values)
            nh = 0
            for j in range(groups):  # only groups whose maximum passes hold candidates
                hits[nh] = j
                nh += group_max[j] >= key
            count = 0
            for r in range(GROUP):  # r outer, groups inner: columns r * groups + j come out ascending
                base = r * groups
                for h in range(nh):
                    c = base + hits[h]
                    found[count] = c
                    count += _key(row[c]) >= key
            counts[t] = count
            for q in range(min(count, cap)):
                cols[t, q] = found[q]


@njit(cache=True, parallel=True, nogil=True)
def keep_k_largest(starts, cand_cols, dots, bias, k, out_values, out_indices):  # pragma: no cover - compiled
    """Row t's k largest of dots[p] + bias[cand_cols[p]] over its candidates starts[t]..starts[t+1] (column order)."""
    rows = len(starts) - 1
    chunks = min(rows, 64)
    per = (rows + chunks - 1) // chunks
    for chunk in prange(chunks):
        vals = np.empty(0, dtype=np.float32)
        work = np.empty(0, dtype=np.float32)
        for t in range(chunk * per, min(rows, chunk * per + per)):
            a, count = starts[t], starts[t + 1] - starts[t]
            if count > len(vals):
                vals = np.empty(max(count, 256), dtype=np.float32)
                work = np.empty(max(count, 256), dtype=np.float32)
            for p in range(count):
                vals[p] = dots[a + p] + bias[cand_cols[a + p]]  # float32, as `pair_dots(...) + bias[cols]` rounds
            write_k_largest(vals, cand_cols[a:], count, k, work, out_values[t], out_indices[t])


CAP = 128
"""Candidate columns a row holds before its count is known (k = 32 of 4608 latents: 45-62 a row); a block with a
row over it is screened again with room for its largest count."""


def select_on_cpu(screen: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, err: torch.Tensor, k: int,
                  out_values: torch.Tensor, out_indices: torch.Tensor) -> None:
    """Writes the k largest x . w_i + b_i of each row into out_values, out_indices ([R, k] row blocks), from the screen.

    `screen` [R, n] bf16 (finite), x [R, d], weight [n, d], bias [n]: contiguous float32 CPU tensors; err [R] float64.
    """
    numba_threads_as_torch()
    keys = screen.view(torch.int16).numpy()
    rows = len(keys)
    err_np = err.contiguous().numpy()
    counts = np.empty(rows, dtype=np.int64)
    cols = np.empty((rows, CAP), dtype=np.int32)
    screen_candidates(keys, BF16_VALUES, err_np, k, CAP, cols, counts)
    most = int(counts.max())
    if most > CAP:
        cols = np.empty((rows, most), dtype=np.int32)
        screen_candidates(keys, BF16_VALUES, err_np, k, most, cols, counts)
    cand_cols = cols[np.arange(cols.shape[1])[None, :] < counts[:, None]].astype(np.int64)
    starts = np.zeros(rows + 1, dtype=np.int64)
    np.cumsum(counts, out=starts[1:])
    cand_rows = torch.from_numpy(np.repeat(np.arange(rows, dtype=np.int64), counts))
    dots = pair_dots(x, weight, cand_rows, torch.from_numpy(cand_cols), torch.from_numpy(starts[:-1]))
    keep_k_largest(starts, cand_cols, dots.numpy(), bias.detach().numpy(), k, out_values.numpy(), out_indices.numpy())


__all__ = ["BF16_VALUES", "CAP", "keep_k_largest", "screen_candidates", "select_on_cpu"]
