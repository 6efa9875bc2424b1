"""Cosine similarity between two dictionaries, dense for small n and blockwise for large n.

Cosines are float64 dot products of float32 unit rows, rounded to float32. The assignment works on integer profits
`round(cos * 2**QUANTUM_BITS)`, so optimality and its certificate are exact integer statements.
The quantum 2**-32 is exact for every float32 cosine of magnitude >= 2**-9 and rounds smaller ones
by at most 2**-33, so the matching is optimal for the float32 matrix within n * 2**-33 in summed
cosine, far below float32's own error in computing a cosine (~1e-7 each).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from saeseeds.matching.cosine_sources import CosineSource

QUANTUM_BITS = 32
"""Cosines are matched as integers round(cos * 2**QUANTUM_BITS): exact in int64 and in float64."""


def quantize(cos: np.ndarray | torch.Tensor) -> np.ndarray:
    """Returns int64 profits round(cos * 2**QUANTUM_BITS) for float32 cosines."""
    if isinstance(cos, torch.Tensor):
        cos = cos.detach().cpu().numpy()
    # float64 holds every float32 exactly and the scaling by a power of two is exact too.
    return np.rint(np.asarray(cos, dtype=np.float64) * float(2**QUANTUM_BITS)).astype(np.int64)


@contextmanager
def timed(timings: dict[str, float] | None, key: str) -> Iterator[None]:
    """Adds the seconds spent in the block to timings[key] (benchmarks); does nothing when timings is None."""
    if timings is None:
        yield
        return
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[key] = timings.get(key, 0.0) + time.perf_counter() - start


def resolve_device(device: str | torch.device | None) -> torch.device:
    """Returns the torch device to compute on: the one asked for, else CUDA when present, else CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def unit_rows(w: np.ndarray, device: torch.device) -> torch.Tensor:
    """Returns the rows of `w` scaled to unit norm as a float32 tensor; zero rows stay zero.

    A dead latent (all-zero row) has no direction, so it gets cosine 0 with every latent rather
    than NaN; the matching then pairs it with whatever is left over.
    """
    t = torch.as_tensor(np.ascontiguousarray(w, dtype=np.float32), device=device)
    norm = torch.linalg.vector_norm(t, dim=1, keepdim=True)
    return torch.where(norm > 0, t / torch.where(norm > 0, norm, 1.0), torch.zeros_like(t))


def dense_cosines(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """Returns the full [n_a, n_b] cosine matrix of unit-row tensors a and b: float64 products rounded to float32.

    The same definition as the sparse path's exact cosines (`cosine_sources.exact_cosines`): each
    within half a float32 ulp of the cosine of the float32 rows, whatever the summation order.
    """
    return (a.double() @ b.double().T).float().cpu().numpy()


@dataclass
class Candidates:
    """What one screening pass over all n x n cosines keeps: enough to solve and to bound the rest.

    Values are the screen's (see `cosine_sources`), within the source's error model of the exact ones.
    """

    row_idx: np.ndarray
    """[n, depth] int64: columns of the `depth` largest screened cosines of each row, best first."""
    row_val: np.ndarray
    """[n, depth] float32: those screened cosines, descending. Every other pair of row i screens <= row_val[i, -1]."""
    col_max: np.ndarray
    """[n] float32: the largest screened cosine of each column."""


def candidate_pass(
    source: CosineSource, *, depth: int, block_rows: int, timings: dict[str, float] | None = None
) -> Candidates:
    """Returns the top-`depth` of every row and the maximum of every column of the screen, in one pass.

    Per block of rows: one matmul, one top-k along the contiguous axis, one running column max.
    A column top-k would need a top-k along the slow axis or a scan-and-sort per block, which
    costs as much again as the row top-k; the column maxima give the certificate a bound for
    every pair at a fifth of that, and column candidates are read off the row reserves instead.
    """
    n = source.n
    if not 1 <= depth <= n:
        raise ValueError(f"need 1 <= depth={depth} <= n={n}")
    row_idx = np.empty((n, depth), dtype=np.int64)
    row_val = np.empty((n, depth), dtype=np.float32)
    col_max = None
    for r0 in range(0, n, block_rows):
        rows = np.arange(r0, min(r0 + block_rows, n))
        with timed(timings, "similarity"):
            s = source.screen(rows)
            if s.is_cuda:
                torch.cuda.synchronize()
        v, i = torch.topk(s, depth, dim=1)
        row_val[rows], row_idx[rows] = v.float().cpu().numpy(), i.cpu().numpy()
        block_max = column_max(s)
        col_max = block_max if col_max is None else torch.maximum(col_max, block_max)
    return Candidates(row_idx=row_idx, row_val=row_val, col_max=col_max.float().cpu().numpy())


def column_max(block: torch.Tensor) -> torch.Tensor:
    """Returns the largest value of each column of a [rows, n] block (NaN if any is), by halving elementwise maxima.

    torch's `amax` along the slow axis took as long as the row top-k (1024 x 16,384 bfloat16, 2 cores: 40 ms);
    halving with `maximum` reads the block once and then half of it, contiguous rows at a time.
    """
    x = block
    while len(x) > 1:
        h = len(x) // 2
        odd = x[2 * h :]
        x = torch.maximum(x[:h], x[h : 2 * h]) if x is block else torch.maximum(x[:h], x[h : 2 * h], out=x[:h])
        if len(odd):
            torch.maximum(x[:1], odd, out=x[:1])
    return x[0].clone() if x is block else x[0]


def column_candidates(cand: Candidates, k_col: int) -> np.ndarray:
    """Returns positions in the flattened reserve: for every column, its k_col best rows among the row reserves.

    Columns that sit in no row's reserve get none here; the diagonal still covers them.
    """
    n, depth = cand.row_idx.shape
    cols = cand.row_idx.reshape(-1)
    # Sort by (column, value descending, row): one int64 key sort, ties broken by position.
    key = cols * 2**32 + _descending_key(torch.from_numpy(cand.row_val.reshape(-1))).numpy()
    order = stable_argsort(key)
    cols_sorted = cols[order]
    start = np.searchsorted(cols_sorted, np.arange(n))
    rank = np.arange(len(order)) - start[cols_sorted]
    return order[rank < k_col]


def stable_argsort(key: np.ndarray) -> np.ndarray:
    """np.argsort(key, kind="stable") for int64 keys, in torch's parallel sort (3-5x faster on 2M keys)."""
    return torch.sort(torch.from_numpy(np.ascontiguousarray(key, dtype=np.int64)), stable=True).indices.numpy()


def _descending_key(vals: torch.Tensor) -> torch.Tensor:
    """Returns int64 keys in [0, 2**32) that sort ascending exactly as the float32 `vals` sort descending."""
    bits = vals.contiguous().view(torch.int32).to(torch.int64)
    # IEEE floats order like sign-magnitude integers; map them onto unsigned order, then flip.
    ascending = torch.where(bits >= 0, bits + 2**31, -1 - bits)
    return (2**32 - 1) - ascending
