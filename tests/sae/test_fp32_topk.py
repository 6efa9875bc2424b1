"""The compiled float32 top-k keeps exactly what torch's `add_` then `topk` keep, with the same float32 values."""

import pytest
import torch

from saeseeds.sae.fp32_topk import bias_topk, topk_with_bias


def _kernel(pre, bias, k):
    B = len(pre)
    values = torch.full((B, k), torch.nan)
    indices = torch.full((B, k), -1, dtype=torch.long)
    has_nan = torch.zeros(B, dtype=torch.bool)
    bias_topk(pre.numpy(), bias.numpy(), k, values.numpy(), indices.numpy(), has_nan.numpy())
    return values, indices, has_nan


def _reference(pre, bias, k):
    """torch's selection; ties at the k-th value resolved to the lowest columns, as the kernel does."""
    full = pre + bias
    kth = full.topk(k, dim=-1).values[:, -1:]
    above = full > kth
    tied = (full == kth) & ((full == kth).cumsum(1) <= k - above.sum(1, keepdim=True))
    return full, above | tied


@pytest.mark.parametrize("n, k", [(4608, 32), (1152, 4), (64, 2), (96, 3)])
def test_kernel_keeps_the_k_largest_sums_in_column_order(n, k):
    g = torch.Generator().manual_seed(n + k)
    pre = torch.randn(300, n, generator=g) * torch.rand(300, 1, generator=g) * 4
    bias = torch.randn(n, generator=g) * 0.3
    # ties at the k-th value, whole rows of equal values, infinities, and a row where the bias decides
    pre[0] = 1.0
    pre[1, : 2 * k] = 5.0
    pre[2, 7] = torch.inf
    pre[3, ::2] = -torch.inf
    pre[4] = -bias + torch.arange(n) % 2
    pre[5] = 0.0  # the bias alone decides
    pre[6] = -bias  # every sum exactly 0: n candidates, put in column order by argsort
    values, indices, has_nan = _kernel(pre, bias, k)
    full, want = _reference(pre, bias, k)
    assert not has_nan.any()
    assert torch.equal(torch.zeros_like(want).scatter_(1, indices, True), want)
    assert (indices.diff(dim=1) > 0).all(), "kept columns come in column order"
    assert torch.equal(values, full.gather(1, indices)), "values are the float32 sums pre + bias"


def test_rows_with_a_nan_are_left_to_torch():
    pre = torch.randn(5, 256)
    bias = torch.zeros(256)
    pre[1, 200] = torch.nan
    pre[3, 0] = torch.nan  # the first member of a group
    values, indices, has_nan = _kernel(pre, bias, 4)
    assert has_nan.tolist() == [False, True, False, True, False]
    got_v, got_i = topk_with_bias(pre, bias, 4)
    assert 200 in got_i[1].tolist() and torch.isnan(got_v[1]).any(), "a NaN ranks first, as in torch.topk"
    ref_i = pre.topk(4, dim=-1).indices
    assert all(torch.equal(got_i[r].sort().values, ref_i[r].sort().values) for r in range(5))
