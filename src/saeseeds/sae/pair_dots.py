"""Dot products of chosen (row, latent) pairs without a [pairs, d] temporary: the screened top-k's exact values and
the sparse decoder's gradient with respect to its kept activations both need them."""

from __future__ import annotations

import torch
from torch import Tensor


def pair_dots(x: Tensor, weight: Tensor, rows: Tensor, cols: Tensor, offsets: Tensor) -> Tensor:
    """x[rows[p]] . weight[cols[p]] for every pair, without a [P, d] temporary where torch allows: the embedding-bag
    backward kernel, which wants the pairs grouped by row (`offsets`: where each row's pairs start)."""
    try:
        return torch.ops.aten._embedding_bag_per_sample_weights_backward(x, weight, cols, offsets, rows, 0, -1)
    except (AttributeError, RuntimeError, NotImplementedError):  # private op: a gather per chunk instead
        out = torch.empty(len(rows), dtype=x.dtype, device=x.device)
        step = 1 << 16
        for p0 in range(0, len(rows), step):
            sl = slice(p0, p0 + step)
            out[sl] = (x[rows[sl]] * weight[cols[sl]]).sum(-1)
        return out


__all__ = ["pair_dots"]
