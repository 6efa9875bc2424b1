"""The k-sparse backward's two products on CPU, compiled (numba), in a fixed order on every CPU.

A TopK step's weight gradients are A^T @ dense, with A the [B, n] pattern of kept (token, latent) pairs:
each latent's gradient row sums its few dozen pairs' dense rows. torch hands that to MKL's sparse
routines (`addmm` of a CSR tensor): 10.3 ms per product at 4608 x 576 with 131K pairs (75 M multiply-adds)
on an AMD EPYC without AVX-512, 48-68 ms in an unsteady hour of that VM, 5.7 ms on a Xeon. Here each
latent's row is summed in the CSR order (tokens ascending), float32 products then float32 sums, no
FMA (numba contracts nothing without fast-math), so the bytes do not depend on the CPU or thread count.
"""

from __future__ import annotations

import torch
from numba import njit, prange

from saeseeds.common.hardware import compiled_kernels_apply, numba_threads_as_torch


@njit(cache=True, parallel=True)
def _csr_rows_times_dense(crow, col, order, values, dense, out):  # pragma: no cover - compiled
    """out[i] = sum over i's pairs p (crow[i]..crow[i+1], in order) of values[order[p]] * dense[col[p]]."""
    n, d = out.shape
    for i in prange(n):
        acc = out[i]
        acc[:] = 0
        for p in range(crow[i], crow[i + 1]):
            v = values[order[p]]
            row = dense[col[p]]
            for t in range(d):
                acc[t] += v * row[t]


def csr_transpose_matmul(crow: torch.Tensor, col: torch.Tensor, order: torch.Tensor, values: torch.Tensor, dense: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Writes A^T @ dense into out [n, d]: A's pairs sorted by latent (`order` into `values`), CSR `crow`, tokens `col`.

    CPU float32 tensors, `dense` [B, d] and `out` contiguous.
    """
    numba_threads_as_torch()
    _csr_rows_times_dense(crow.numpy(), col.numpy(), order.numpy(), values.detach().numpy(), dense.detach().numpy(), out.numpy())
    return out


supported = compiled_kernels_apply
"""True where the compiled products apply (`common.hardware.compiled_kernels_apply`)."""


__all__ = ["csr_transpose_matmul", "supported"]
