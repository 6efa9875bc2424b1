"""The compiled A^T @ dense of the sparse backward: each latent's pairs summed in CSR order, float32, no FMA."""

import numpy as np
import torch

from saeseeds.sae import sparse_kernels
from saeseeds.sae.stacked import Pattern


def _sequential_reference(order, crow, col, values, dense, n):
    """Row by row, pair by pair: float32 product, then float32 sum (numpy's ufuncs fuse nothing)."""
    out = np.zeros((n, dense.shape[1]), dtype=np.float32)
    v, x = values.numpy(), dense.numpy()
    for i in range(n):
        for p in range(int(crow[i]), int(crow[i + 1])):
            out[i] = out[i] + v[int(order[p])] * x[int(col[p])]
    return out


def test_csr_transpose_matmul_is_the_sequential_float32_sum():
    g = torch.Generator().manual_seed(0)
    B, n, d, k = 64, 40, 19, 5
    # skewed firing: latent 0 in every token, some latents in none
    scores = torch.rand(1, B, n, generator=g) * torch.linspace(0.1, 1, n) ** 4
    scores[..., 0] = 2.0
    idx = scores.topk(k, dim=-1).indices
    p = Pattern.from_topk(idx)
    values = torch.randn(B * k, generator=g) * 3
    dense = torch.randn(B, d, generator=g)
    order, crow, col = p.csr(0, n)
    out = torch.full((n, d), torch.nan)  # whatever `out` held is overwritten
    sparse_kernels.csr_transpose_matmul(crow, col, order, values, dense, out)
    assert torch.equal(out, torch.from_numpy(_sequential_reference(order, crow, col, values, dense, n)))
    assert (crow.diff() == 0).any(), "the case of latents without pairs is exercised"
    exact = torch.zeros(n, d, dtype=torch.float64).index_add_(0, p.lat[0], values.double()[:, None] * dense.double()[p.tok[0]])
    assert torch.allclose(out.double(), exact, rtol=1e-5, atol=1e-5)


def test_the_pattern_uses_the_kernel_on_cpu_float32_and_torch_elsewhere():
    g = torch.Generator().manual_seed(1)
    B, n, d, k = 32, 24, 7, 3
    p = Pattern.from_topk(torch.rand(1, B, n, generator=g).topk(k, dim=-1).indices)
    values, dense = torch.randn(B * k, generator=g), torch.randn(B, d, generator=g)
    got = p.transpose_matmul(0, values, dense, n, out=torch.empty(n, d))
    order, crow, col = p.csr(0, n)
    assert torch.equal(got, torch.from_numpy(_sequential_reference(order, crow, col, values, dense, n)))
    # float64 is not the kernel's: torch's sparse addmm answers, to float64 rounding
    got64 = p.transpose_matmul(0, values.double(), dense.double(), n, out=torch.empty(n, d, dtype=torch.float64))
    assert not sparse_kernels.supported(values.double())
    assert torch.allclose(got64, got.double(), rtol=1e-6, atol=1e-6)
