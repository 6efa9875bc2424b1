"""The exact top-k of an encoder's pre-activations through a bfloat16 screen with a proven error bound.

A TopK SAE's forward needs, per token, the k largest of n pre-activations x . w_i + b_i; a float32
matmul computes all n of them and is most of a CPU training step. Where bfloat16 matmuls are native
(AMX, AVX512-BF16, CUDA) they run 4-5x faster, but their values are off by up to ~1% of |x| |w|, so
taking their top-k would train a different model. This module takes the same top-k as float32:

1. screen: S = bf16([x, 1]) @ bf16([w_i, b_i])^T, float32 accumulation, bfloat16 output. Every screened
   value is within `rel |S| + E_t` of the true pre-activation, with E_t from the norms of the hi/lo
   split of the inputs (as `saeseeds.matching.cosine_sources.ScreenedCosines` proves for cosines).
2. a lower bound L_t on the k-th largest float32 value of row t: the k-th largest of the row's group
   maxima is at most its k-th largest screened value, and each of those k entries is worth at least its
   screen minus the bound.
3. candidates: the entries whose screen plus the bound reaches L_t (about 1.5k of n, k = 32 of 4608);
   every other entry is provably below L_t, so below the k-th largest candidate.
4. float32 dot products of the candidates only, and their top k.

On CPU, steps 2-4 run compiled (`saeseeds.sae.screen_select`, ties at the k-th value to the lowest columns);
elsewhere in torch ops.

The kept latents are therefore a top-k of float32 dot products over all n latents (the float32
path's selection, up to float32 rounding), and their values are float32. A block of rows with inputs
that are not finite, or so large that the bound cannot be formed, takes the float32 path. The error
model needs a matmul that sums in float32 and rounds to nearest: the trainer checks that once
(`saeseeds.common.hardware.bf16_sums_in_float32`), and cuBLAS is kept from reducing in bf16.
"""

from __future__ import annotations

import torch
from torch import Tensor

from saeseeds.common.bounds import row_norm_upper
from saeseeds.common.hardware import compiled_kernels_apply, full_precision_reductions
from saeseeds.sae.pair_dots import pair_dots

BLOCK_ROWS = 1024
"""Tokens screened at a time: a [1024, n] bf16 block (9.4 MB at n = 4608) stays in cache for the passes after the matmul."""

GROUP = 32
"""Columns per group whose maximum bounds the k-th largest screen from below (n must be a multiple; else no screen)."""

AUTO_MIN_LATENTS = 1024
"""`encoder_screen: auto` screens dictionaries at least this large: the screen's fixed work per token (group maxima,
candidates, their dot products) outweighs the matmul it saves below (one 4096-token batch, 1-2 threads, Xeon with AMX:
4608 latents 1.6x faster, 2304 1.4x, 1152 1.16x, 576 0.75-0.90x; `benchmarks/screened_topk.py`)."""

_U32 = 2.0**-24
_REL16 = 2.0**-8 / (1 - 2.0**-8)
"""Relative error of rounding the float32 accumulator to the bfloat16 output."""


def usable(n: int, k: int) -> bool:
    """True when the screen applies: whole groups, and at least k groups to take the k-th maximum from."""
    return n % GROUP == 0 and n // GROUP >= k


def screen_depth(d: int) -> int:
    """The screen's matmul depth for inputs of d coordinates: d, the bias, zeros up to a multiple of 32."""
    return (d + 1 + 31) // 32 * 32


def _split(x: Tensor, extra: Tensor, width: int) -> tuple[Tensor, Tensor, Tensor]:
    """Returns (hi, |hi|, |lo|): hi = bf16([x, extra, 0...]) of `width` columns (the bias rides in the matmul
    as one more coordinate), and upper bounds on the row norms of hi and of lo = [x, extra] - hi (exact in
    float32), computed without a float32 copy of the augmented rows."""
    d = x.shape[1]
    hi = x.new_empty((len(x), width), dtype=torch.bfloat16)
    hi[:, :d] = x
    hi[:, d] = extra
    hi[:, d + 1 :] = 0
    lo_norm = row_norm_upper(x - hi[:, :d]) + (extra - hi[:, d].float()).abs().double()
    return hi, row_norm_upper(hi), lo_norm


def screened_topk(x: Tensor, weight: Tensor, bias: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Returns (values, indices) [B, k] of the k largest x . weight_i + bias_i per row, unsorted.

    Values are float32 dot products of the kept pairs plus the bias; indices are a top-k of those over
    all n latents (proof in the module docstring). Same shapes and meaning as `torch.addmm(bias, x,
    weight.T).topk(k, sorted=False)`.
    """
    B, d = x.shape
    n = weight.shape[0]
    width = screen_depth(d)
    xh, alpha, eps = _split(x, torch.ones((), dtype=x.dtype, device=x.device), width)
    wh, beta, eta = _split(weight, bias, width)
    beta, eta = beta.max(), eta.max()
    # The error bound of the screen (ScreenedCosines' derivation with the bias as a coordinate; the
    # column side at its largest norm), plus gamma for the float32 dot product of the kept pairs.
    gamma = width * _U32 / (1 - width * _U32)
    err = eps * (beta + eta) + alpha * eta + 2 * gamma * (alpha + eps) * (beta + eta) + 2.0**-40
    whT = wh.T
    values = x.new_empty(B, k)
    indices = torch.empty(B, k, dtype=torch.long, device=x.device)
    compiled = _compiled_selection_applies(x, weight, bias)
    if compiled:  # imported here: numba's start-up is paid only where this path runs
        from saeseeds.sae.screen_select import select_on_cpu
    for r0 in range(0, B, BLOCK_ROWS):
        rows = slice(r0, min(r0 + BLOCK_ROWS, B))
        e = err[rows]
        ok = torch.isfinite(e) & (alpha[rows] * beta < 1e30)
        if not bool(ok.all()) or not bool(torch.isfinite(beta)):
            pre = torch.addmm(bias, x[rows], weight.T)
            values[rows], indices[rows] = pre.topk(k, dim=-1, sorted=False)
            continue
        with full_precision_reductions():
            s = xh[rows] @ whT  # [R, n] bf16
        if compiled:
            select_on_cpu(s, x[rows], weight, bias, e, k, values[rows], indices[rows])
            continue
        # groups are strided (columns j, j + n/GROUP, ...), so the max runs along contiguous memory
        group_max = s.view(len(s), GROUP, n // GROUP).amax(1)
        g = group_max.topk(k, dim=-1, sorted=False).values.amin(-1).double()
        # L: every one of the k group-maximum entries has a float32 value >= L (screen minus bound)
        low = g - _REL16 * g.abs() - e
        # an entry j can be dropped when S_j + rel |S_j| + e < low, i.e. S_j below tau
        m = low - e
        tau = torch.where(m >= 0, m / (1 + _REL16), m / (1 - _REL16))
        # onto the bf16 grid without rising: nearest rounding (even through float32) moves a value by
        # less than 2^-8 (1 + 2^-8) of itself, and the shift below is 2^-7 of tau (plus the float64
        # rounding of the lines above: a few ulps of |g| + 2e)
        tau_b = (tau - 2.0**-7 * tau.abs() - 2.0**-40 * (g.abs() + 2 * e) - 2.0**-100).to(torch.bfloat16)
        if bool((tau_b > 0).all()):
            # positive thresholds: a bf16's bits read as int16 order like the value (negatives fall below), and
            # integers compare ~1.7x faster than bf16 here
            keep = s.view(torch.int16) >= tau_b.view(torch.int16)[:, None]
        else:
            keep = s >= tau_b[:, None]
        cand_rows, cand_cols = keep.nonzero(as_tuple=True)
        counts = torch.bincount(cand_rows, minlength=len(s))
        starts = torch.zeros(len(s) + 1, dtype=torch.long, device=x.device)
        starts[1:] = counts.cumsum(0)
        # float32 dot products of the candidates (no [P, d] temporary), then the bias
        exact = pair_dots(x[rows], weight, cand_rows, cand_cols, starts[:-1]) + bias[cand_cols]
        width_c = int(counts.max())
        pos = torch.arange(len(cand_rows), device=x.device) - starts[cand_rows]
        padded = x.new_full((len(s), width_c), -torch.inf)
        padded[cand_rows, pos] = exact
        padded_idx = torch.zeros((len(s), width_c), dtype=torch.long, device=x.device)
        padded_idx[cand_rows, pos] = cand_cols
        v, p = padded.topk(k, dim=-1, sorted=False)
        values[rows], indices[rows] = v, padded_idx.gather(1, p)
    return values, indices


_compiled_selection_applies = compiled_kernels_apply
"""Where `screen_select` takes the steps after the matmul (a name of its own, for tests to turn it off)."""


__all__ = ["AUTO_MIN_LATENTS", "BLOCK_ROWS", "GROUP", "screen_depth", "screened_topk", "usable"]
