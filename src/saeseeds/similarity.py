"""Cosine similarity between two dictionaries, dense for small n and blockwise for large n.

All cosines are float32 (torch matmul of unit rows). The assignment works on integer profits
`round(cos * 2**QUANTUM_BITS)`, so optimality and its certificate are exact integer statements;
the quantum 2**-32 is far below float32's own rounding of a cosine (~1e-7), so quantising never
changes which pairs are matched except between cosines that float32 cannot tell apart anyway.
"""

from __future__ import annotations

from collections.abc import Callable
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


BlockFn = Callable[[np.ndarray], torch.Tensor]
"""Maps an array of row indices of a to their float32 cosines against every row of b, [rows, n]."""


def matmul_blocks(a: torch.Tensor, b: torch.Tensor, block_rows: int) -> BlockFn:
    """Returns a BlockFn computing cosine rows as `a[rows] @ b.T`, always with `block_rows` rows.

    Every call multiplies a [block_rows, d] matrix (short requests are padded with zero rows), so
    the same (row, column) pair gets the same float32 value whenever it is computed: the
    certificate re-computes rows and must see exactly the values the candidate pass saw.
    """
    bt = b.T.contiguous()

    def block(rows: np.ndarray) -> torch.Tensor:
        rows_t = torch.as_tensor(np.asarray(rows, dtype=np.int64), device=a.device)
        if len(rows_t) > block_rows:
            raise ValueError(f"asked for {len(rows_t)} rows, block size is {block_rows}")
        x = a.new_zeros((block_rows, a.shape[1]))
        x[: len(rows_t)] = a[rows_t]
        return (x @ bt)[: len(rows_t)]

    return block


def dense_blocks(sim: np.ndarray | torch.Tensor) -> BlockFn:
    """Returns a BlockFn reading rows of a given [n, n] similarity matrix (tests, small n)."""
    s = torch.as_tensor(np.asarray(sim, dtype=np.float32))

    def block(rows: np.ndarray) -> torch.Tensor:
        return s[torch.as_tensor(np.asarray(rows, dtype=np.int64))]

    return block


@dataclass
class Candidates:
    """What one blockwise pass over all n x n cosines keeps: enough to solve and to bound the rest."""

    row_idx: np.ndarray
    """[n, k] int64: columns of the k largest cosines of each row."""
    row_val: np.ndarray
    """[n, k] float32: those cosines, descending."""
    col_idx: np.ndarray
    """[k, n] int64: rows of the k largest cosines of each column."""
    col_val: np.ndarray
    """[k, n] float32: those cosines, descending down axis 0."""
    diag: np.ndarray
    """[n] float32: cos(i, i), the fallback edges that guarantee a perfect matching exists."""
    row_max: np.ndarray
    """[n] float32: max cosine of each row (max-cos of each latent of a)."""


def candidate_pass(block: BlockFn, n: int, k: int, block_rows: int) -> Candidates:
    """Returns the row and column top-k candidates, the diagonal and row maxima from one pass.

    Column top-k is kept with a running threshold: after the first block only entries above the
    current k-th best of their column are gathered, which costs one comparison per entry instead
    of a top-k along the slow axis. An entry dropped this way is <= the column's final k-th value.
    """
    if not 1 <= k <= n:
        raise ValueError(f"candidate count k={k} must be in [1, n={n}]")
    row_idx = np.empty((n, k), dtype=np.int64)
    row_val = np.empty((n, k), dtype=np.float32)
    diag = np.empty(n, dtype=np.float32)
    col_val = col_idx = None
    pend_val: list[torch.Tensor] = []
    pend_row: list[torch.Tensor] = []
    pend_col: list[torch.Tensor] = []
    pending = 0
    thresh = None

    def reduce_columns() -> None:
        nonlocal col_val, col_idx, thresh, pending
        vals = torch.cat([col_val.reshape(-1)] + pend_val)
        rows = torch.cat([col_idx.reshape(-1)] + pend_row)
        cols = torch.cat([torch.arange(n, device=vals.device).repeat(k)] + pend_col)
        # Sort by (column, -value, row): the row tie-break keeps the result deterministic.
        order = torch.as_tensor(np.lexsort((rows.cpu().numpy(), -vals.cpu().numpy(), cols.cpu().numpy())))
        cols_s = cols.cpu()[order]
        start = torch.searchsorted(cols_s, torch.arange(n))
        take = (start[None, :] + torch.arange(k)[:, None]).reshape(-1)
        col_val = vals.cpu()[order][take].reshape(k, n).to(vals.device)
        col_idx = rows.cpu()[order][take].reshape(k, n).to(vals.device)
        thresh = col_val[k - 1]
        pend_val.clear(), pend_row.clear(), pend_col.clear()
        pending = 0

    for r0 in range(0, n, block_rows):
        rows = np.arange(r0, min(r0 + block_rows, n))
        s = block(rows)
        v, i = torch.topk(s, k, dim=1)
        row_val[rows], row_idx[rows] = v.cpu().numpy(), i.cpu().numpy()
        diag[rows] = s[torch.arange(len(rows)), torch.as_tensor(rows, device=s.device)].cpu().numpy()
        rows_t = torch.as_tensor(rows, device=s.device)
        if col_val is None:
            if len(rows) < k:
                raise ValueError(f"block_rows={block_rows} must be >= k={k}")
            v, i = torch.topk(s, k, dim=0)
            col_val, col_idx, thresh = v, rows_t[i], v[k - 1]
            continue
        hit = (s > thresh[None, :]).nonzero()
        if len(hit):
            pend_val.append(s[hit[:, 0], hit[:, 1]])
            pend_row.append(rows_t[hit[:, 0]])
            pend_col.append(hit[:, 1])
            pending += len(hit)
        if pending > 4 * k * n:
            reduce_columns()
    if pending:
        reduce_columns()
    return Candidates(
        row_idx=row_idx,
        row_val=row_val,
        col_idx=col_idx.cpu().numpy().astype(np.int64),
        col_val=col_val.cpu().numpy(),
        diag=diag,
        row_max=row_val[:, 0].copy(),
    )
