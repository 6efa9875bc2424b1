"""Cosine similarity between two dictionaries, dense for small n and blockwise for large n.

All cosines are float32 (torch matmul of unit rows). The assignment works on integer profits
`round(cos * 2**QUANTUM_BITS)`, so optimality and its certificate are exact integer statements.
The quantum 2**-32 is exact for every float32 cosine of magnitude >= 2**-9 and rounds smaller ones
by at most 2**-33, so the matching is optimal for the float32 matrix within n * 2**-33 in summed
cosine, far below float32's own error in computing a cosine (~1e-7 each).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

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
    """Returns the full [n_a, n_b] float32 cosine matrix of unit-row tensors a and b."""
    return (a @ b.T).cpu().numpy()


BlockFn = Callable[..., torch.Tensor]
"""`block(rows, full=False)`: float32 cosines of those rows of a against every row of b, [rows, n].

With `full=True` the rows are computed exactly as the candidate pass computes them (same matmul
shape); without it a small request may take a cheaper shape, whose values the caller checks.
"""

SMALL_ROWS = 64
"""Re-computing a few rows pads them to this many rows instead of a whole block."""


def matmul_blocks(a: torch.Tensor, b: torch.Tensor, block_rows: int) -> BlockFn:
    """Returns a BlockFn computing cosine rows as `a[rows] @ b.T`, padded to a fixed number of rows.

    Requests are padded with zero rows to `block_rows` (or to SMALL_ROWS when they fit and
    `full` is false), so a pair gets the same float32 value whenever it is computed with the
    same shape: the certificate re-computes rows and must see exactly the pass's values. GEMM
    kernels usually give the same bits for any row count >= 16 too, which makes the small shape
    safe in practice; `assign_sparse` verifies that on every re-computed row and falls back to
    the full shape if not. The returned tensor is a view of a buffer the next call overwrites.
    """
    bt = b.T.contiguous()
    buffers = {}

    def block(rows: np.ndarray, full: bool = False) -> torch.Tensor:
        rows_t = torch.as_tensor(np.asarray(rows, dtype=np.int64), device=a.device)
        if len(rows_t) > block_rows:
            raise ValueError(f"asked for {len(rows_t)} rows, block size is {block_rows}")
        size = block_rows if full or len(rows_t) > SMALL_ROWS else min(SMALL_ROWS, block_rows)
        if size not in buffers:
            # Reused buffers: a fresh 0.5 GB output per call costs page faults every time.
            buffers[size] = (a.new_zeros((size, a.shape[1])), a.new_empty((size, b.shape[0])))
        x, out = buffers[size]
        x.zero_()
        x[: len(rows_t)] = a[rows_t]
        torch.mm(x, bt, out=out)
        return out[: len(rows_t)]

    return block


def dense_blocks(sim: np.ndarray | torch.Tensor) -> BlockFn:
    """Returns a BlockFn reading rows of a given [n, n] similarity matrix (tests, small n)."""
    s = torch.as_tensor(np.asarray(sim, dtype=np.float32))

    def block(rows: np.ndarray, full: bool = False) -> torch.Tensor:
        return s[torch.as_tensor(np.asarray(rows, dtype=np.int64))]

    return block


@dataclass
class Candidates:
    """What one blockwise pass over all n x n cosines keeps: enough to solve and to bound the rest."""

    row_idx: np.ndarray
    """[n, depth] int64: columns of the `depth` largest cosines of each row, best first."""
    row_val: np.ndarray
    """[n, depth] float32: those cosines, descending. Every other pair of row i is <= row_val[i, -1]."""
    col_max: np.ndarray
    """[n] float32: the largest cosine of each column. Every pair of column j is <= col_max[j]."""
    diag: np.ndarray
    """[n] float32: cos(i, i), the fallback edges that guarantee a perfect matching exists."""

    @property
    def row_max(self) -> np.ndarray:
        """[n] float32: max cosine of each row (max-cos of each latent of a)."""
        return self.row_val[:, 0]


def candidate_pass(
    block: BlockFn, n: int, *, depth: int, block_rows: int, timings: dict[str, float] | None = None
) -> Candidates:
    """Returns the top-`depth` of every row, the maximum of every column and the diagonal, in one pass.

    Per block of rows: one matmul, one top-k along the contiguous axis, one running column max.
    A column top-k would need a top-k along the slow axis or a scan-and-sort per block, which
    costs as much again as the row top-k; the column maxima give the certificate a bound for
    every pair at a fifth of that, and column candidates are read off the row reserves instead.
    """
    if not 1 <= depth <= n:
        raise ValueError(f"need 1 <= depth={depth} <= n={n}")
    row_idx = np.empty((n, depth), dtype=np.int64)
    row_val = np.empty((n, depth), dtype=np.float32)
    diag = np.empty(n, dtype=np.float32)
    col_max = None
    for r0 in range(0, n, block_rows):
        rows = np.arange(r0, min(r0 + block_rows, n))
        with timed(timings, "similarity"):
            s = block(rows, full=True)
            if s.is_cuda:
                torch.cuda.synchronize()
        v, i = torch.topk(s, depth, dim=1)
        row_val[rows], row_idx[rows] = v.cpu().numpy(), i.cpu().numpy()
        rows_t = torch.as_tensor(rows, device=s.device)
        diag[rows] = s[torch.arange(len(rows), device=s.device), rows_t].cpu().numpy()
        block_max = s.amax(dim=0)
        col_max = block_max if col_max is None else torch.maximum(col_max, block_max)
    return Candidates(row_idx=row_idx, row_val=row_val, col_max=col_max.cpu().numpy(), diag=diag)


def column_candidates(cand: Candidates, k_col: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns (rows, cols, cosines): for every column, its k_col best rows among the row reserves.

    Columns that sit in no row's reserve get none here; the diagonal still covers them.
    """
    n, depth = cand.row_idx.shape
    rows = np.repeat(np.arange(n), depth)
    cols = cand.row_idx.reshape(-1)
    vals = cand.row_val.reshape(-1)
    # Sort by (column, value descending, row): one int64 key sort, ties broken by position.
    key = cols * 2**32 + _descending_key(torch.from_numpy(vals)).numpy()
    order = np.argsort(key, kind="stable")
    cols_sorted = cols[order]
    start = np.searchsorted(cols_sorted, np.arange(n))
    rank = np.arange(len(order)) - start[cols_sorted]
    take = order[rank < k_col]
    return rows[take], cols[take], vals[take]


def _descending_key(vals: torch.Tensor) -> torch.Tensor:
    """Returns int64 keys in [0, 2**32) that sort ascending exactly as the float32 `vals` sort descending."""
    bits = vals.contiguous().view(torch.int32).to(torch.int64)
    # IEEE floats order like sign-magnitude integers; map them onto unsigned order, then flip.
    ascending = torch.where(bits >= 0, bits + 2**31, -1 - bits)
    return (2**32 - 1) - ascending
