"""Each row's k largest of pre + bias on CPU in one compiled pass over the row, for the float32 top-k encoder.

The float32 path of a TopK SAE's step computes all n pre-activations of each token by a matmul (most
of the step on a CPU without native bf16), then added the bias in place and called torch's `topk`: two
more passes over the [B, n] matrix (`topk` alone 33 ms a step beside a 129 ms matmul at 4096 x 4608 on an
AVX2 EPYC; `benchmarks/training_step.py --profile old`). Here one compiled pass per row reads the matmul's
output once, from memory, and the rest from cache:

1. the bias is added on the fly and the maxima of n / 32 strided groups (columns j, j + n/32, ...) kept,
   an elementwise running maximum that vectorizes with exact float semantics (no fast-math);
2. L, the k-th largest group maximum, is at most the row's k-th largest value (k distinct entries reach it);
3. the entries >= L (k plus a few, all in the groups whose maximum reaches L) are the candidates, and
   their k largest are the row's top k.

Every value is the float32 sum pre + bias, as `add_` would round it. Ties at the k-th value keep the
lowest column indices; the kept entries come in column order. A row holding a NaN (which torch's
`topk` ranks above everything) is reported back for torch to select.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit, prange

from saeseeds.common.hardware import numba_threads_as_torch
from saeseeds.common.selection import kth_largest, write_k_largest
from saeseeds.sae.screened_topk import GROUP  # the same rule for the row length: `screened_topk.usable`

SORT_BY_INSERTION = 64
"""Up to this many candidates are put in column order by insertion; more (rows of many equal values) by argsort."""


@njit(inline="always")
def _sort_by_column(vals, cols, count):  # pragma: no cover - compiled
    """Puts the candidates in column order (they arrive group by group): a few dozen by insertion, many by argsort."""
    if count > SORT_BY_INSERTION:
        order = np.argsort(cols[:count])
        sorted_vals, sorted_cols = vals[:count][order], cols[:count][order]
        vals[:count] = sorted_vals
        cols[:count] = sorted_cols
        return
    for p in range(1, count):
        v, c = vals[p], cols[p]
        q = p - 1
        while q >= 0 and cols[q] > c:
            vals[q + 1], cols[q + 1] = vals[q], cols[q]
            q -= 1
        vals[q + 1], cols[q + 1] = v, c


@njit(cache=True, parallel=True)
def bias_topk(pre, bias, k, out_values, out_indices, has_nan):  # pragma: no cover - compiled
    """Writes each row's k largest pre[t] + bias (float32) and their columns; flags rows with a NaN instead."""
    rows, n = pre.shape
    groups = n // GROUP
    chunks = min(rows, 64)
    per = (rows + chunks - 1) // chunks
    for chunk in prange(chunks):
        group_max = np.empty(groups, dtype=np.float32)
        work = np.empty(n, dtype=np.float32)
        cand_v = np.empty(n, dtype=np.float32)
        cand_i = np.empty(n, dtype=np.int64)
        for t in range(chunk * per, min(rows, chunk * per + per)):
            row = pre[t]
            nans = 0
            for j in range(groups):
                v = row[j] + bias[j]
                group_max[j] = v
                nans += v != v
            for r in range(1, GROUP):
                base = r * groups
                for j in range(groups):
                    v = row[base + j] + bias[base + j]
                    nans += v != v
                    group_max[j] = v if v > group_max[j] else group_max[j]
            if nans:
                has_nan[t] = True
                continue
            low = kth_largest(group_max, groups, k, work)
            count = 0
            for j in range(groups):
                if group_max[j] >= low:  # only groups that reach L hold candidates
                    for r in range(GROUP):
                        c = r * groups + j
                        v = row[c] + bias[c]
                        if v >= low:
                            cand_v[count] = v
                            cand_i[count] = c
                            count += 1
            _sort_by_column(cand_v, cand_i, count)
            write_k_largest(cand_v, cand_i, count, k, work, out_values[t], out_indices[t])


def topk_with_bias(pre: torch.Tensor, bias: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (values, indices) [B, k] of the k largest pre + bias per row (float32 CPU tensors, `screened_topk.usable(n, k)`).

    The same selection and float32 values as `(pre + bias).topk(k, sorted=False)`, the k in column order
    and ties at the k-th value to the lowest columns; `pre` itself is left as it is.
    """
    B = len(pre)
    values = pre.new_empty((B, k))
    indices = torch.empty((B, k), dtype=torch.long)
    has_nan = torch.zeros(B, dtype=torch.bool)
    numba_threads_as_torch()
    bias_topk(pre.numpy(), bias.detach().contiguous().numpy(), k, values.numpy(), indices.numpy(), has_nan.numpy())
    if bool(has_nan.any()):  # torch ranks a NaN above every number
        bad = has_nan.nonzero().squeeze(1)
        values[bad], indices[bad] = (pre[bad] + bias).topk(k, dim=-1, sorted=False)
    return values, indices


__all__ = ["bias_topk", "topk_with_bias"]
