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

from saeseeds.common.hardware import compiled_kernels_apply
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
    # One new tensor (the quotient), zeroed in place where the norm is 0: 29 ms against 68 for a where of
    # two full-size tensors at 16K x 768; the same values.
    return (t / torch.where(norm > 0, norm, 1.0)).masked_fill_(norm == 0, 0.0)


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
    stored: CosineSource | None = None
    """The screen kept at 16 bits per pair (`stored_screen.StoredScreen`), when the pass kept one."""
    col_rows: np.ndarray | None = None
    """[n, col_depth] int64: each column's best rows by screened value (ties to the lower row), when the pass kept them."""
    col_val: np.ndarray | None = None
    """[n, col_depth] float32: their screened values (upper bounds on them where read from a stored screen), descending."""


def candidate_pass(
    source: CosineSource,
    *,
    depth: int,
    block_rows: int,
    timings: dict[str, float] | None = None,
    keep_screen: bool | None = False,
    col_depth: int = 0,
) -> Candidates:
    """Returns the top-`depth` of every row and the maximum of every column of the screen, in one pass.

    Per block of rows: one matmul, then each row's top-`depth` and the running column maxima. On CPU
    float32 blocks one compiled pass does both (`screen_kernels.reduce_block`) and, with `keep_screen`,
    keeps each row's largest values at 16 bits (`Candidates.stored`; None: if the first rows show it will pay) and
    each column's best `col_depth` rows (`Candidates.col_rows`), entries the kernel makes as it reads each
    row; elsewhere (GPU, bf16) torch's `topk` and `column_max`, where a column top-k would be a top-k along
    the slow axis, as costly again as the row top-k, so column candidates are read off the row reserves.
    """
    n = source.n
    if not 1 <= depth <= n:
        raise ValueError(f"need 1 <= depth={depth} <= n={n}")
    row_idx = np.empty((n, depth), dtype=np.int64)
    row_val = np.empty((n, depth), dtype=np.float32)
    col_max = None
    reducer = None
    for r0 in range(0, n, block_rows):
        rows = np.arange(r0, min(r0 + block_rows, n))
        with timed(timings, "similarity"):
            s = source.screen(rows)
            if s.is_cuda:
                torch.cuda.synchronize()
        if reducer is None and BlockReducer.usable(s):
            reducer = BlockReducer(source, keep_screen, min(col_depth, n), timings)
        if reducer is not None:
            with timed(timings, "reduce"):
                reducer(rows, s, row_val, row_idx)
            continue
        v, i = torch.topk(s, depth, dim=1)
        row_val[rows], row_idx[rows] = v.float().cpu().numpy(), i.cpu().numpy()
        block_max = column_max(s)
        col_max = block_max if col_max is None else torch.maximum(col_max, block_max)
    if reducer is not None:
        col_rows, col_val = reducer.column_tops(row_idx, row_val)
        return Candidates(
            row_idx=row_idx, row_val=row_val, col_max=reducer.col_max(), stored=reducer.stored(),
            col_rows=col_rows, col_val=col_val,
        )
    return Candidates(row_idx=row_idx, row_val=row_val, col_max=col_max.float().cpu().numpy())


DECIDE_ROWS = 128
"""How many of the first block's rows decide whether the pass keeps its stored screen and column tops (`worth_keeping`)."""


class BlockReducer:
    """The compiled reductions of the screening pass's blocks (CPU float32), and the stored screen when one is kept.

    `keep_screen` None: keep the stored screen if the first rows show competing neighbours (`stored_screen.worth_keeping`).
    Unless `keep_screen` is True, the columns' best rows are kept only where neighbours compete too: among
    unrelated directions every column is in many rows' reserves already, and the entries cost 0.2 s a matching
    at 16K for nothing. Where the screen is stored, they are read from it after the pass (`column_tops`); else the
    kernel finds them as it reads each row.
    """

    def __init__(self, source: CosineSource, keep_screen: bool | None, col_depth: int, timings: dict | None = None):
        from saeseeds.common.hardware import numba_threads_as_torch
        from saeseeds.matching.screen_kernels import new_column_tops, no_deep_rows
        from saeseeds.matching.stored_screen import StoredScreen

        numba_threads_as_torch()
        self.source, self.timings = source, timings
        self.parts = np.full((torch.get_num_threads(), source.n), -np.inf, dtype=np.float32)
        self.store = StoredScreen(source) if keep_screen is not False else None
        self.col_depth = col_depth
        """The columns' best rows wanted; 0 once the first rows show that nothing competes."""
        self.col_top = new_column_tops(torch.get_num_threads(), source.n, 0 if self.store is not None else col_depth)
        self.decide = keep_screen is not True
        self.no_store = no_deep_rows()

    @staticmethod
    def usable(block: torch.Tensor) -> bool:
        return compiled_kernels_apply(block)

    def __call__(self, rows: np.ndarray, block: torch.Tensor, row_val: np.ndarray, row_idx: np.ndarray) -> None:
        from saeseeds.matching.screen_kernels import NAN_ROW, OUT_OF_RANGE, new_column_tops, reduce_block
        from saeseeds.matching.stored_screen import coarse_screen, worth_keeping

        r0, r1 = int(rows[0]), int(rows[-1]) + 1
        values = block.numpy()
        if self.decide:
            self.decide = False
            # Decided on the first rows before the block's column tops and stored rows are made: made and then dropped
            # (random and real 16K dictionaries keep neither), they cost 0.05 s per 16K matching.
            r_s = min(r1, r0 + DECIDE_ROWS)
            no_tops = new_column_tops(len(self.parts), self.source.n, 0)
            reduce_block(values[: r_s - r0], r0, row_val.shape[1], row_val[r0:r_s], row_idx[r0:r_s], self.parts, no_tops,
                         self.no_store, np.zeros(r_s - r0, dtype=np.int8))
            tails = row_val[r0:r_s, -1]
            n, dim, depth = self.source.n, self.source.dim, row_val.shape[1]
            if np.isfinite(tails).all() and not worth_keeping(tails, n, dim, depth):
                self.col_top, self.col_depth = no_tops, 0  # nothing competes: the columns' best rows come off the reserves
                error = self.source.error
                typical = float(np.median(error.row_err) + np.median(error.col_err) + error.rel * np.median(np.abs(tails)))
                if not coarse_screen(typical, n, dim, depth):  # a coarse screen (int8) still sends many rows back
                    self._drop_store()
        with timed(self.timings, "touch"):  # first touches of a new stored screen's pages (part of "reduce")
            store = self.store.block(r0, r1) if self.store is not None else self.no_store
        flags = np.zeros(len(rows), dtype=np.int8)
        reduce_block(values, r0, row_val.shape[1], row_val[r0:r1], row_idx[r0:r1], self.parts, self.col_top, store, flags)
        if (flags & NAN_ROW).any():
            raise ValueError(f"screened cosines of row {r0 + int(np.argmax(flags & NAN_ROW))} hold a NaN")
        if (flags & OUT_OF_RANGE).any():
            self._drop_store()  # a value outside [-2, 2): rescreens multiply again

    def _drop_store(self) -> None:
        """Keeps no stored screen from here on, and gives back the memory of one already begun."""
        if self.store is not None:
            self.store.release()
        self.store = None

    def col_max(self) -> np.ndarray:
        return self.parts.max(axis=0)

    def column_tops(self, row_idx: np.ndarray, row_val: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Returns (rows, values) [n, col_depth]: each column's best rows, from the pass's own entries or, where the screen
        is stored, from the reserves and the stored rows (`column_tops.tops_from_kept_rows`); (None, None) where none are
        kept (the solve reads them off the reserves), as after a stored screen was dropped during the pass."""
        from saeseeds.matching.column_tops import tops_from_kept_rows
        from saeseeds.matching.screen_kernels import merge_column_tops

        if self.col_top[1].shape[2]:
            return merge_column_tops(self.col_top)
        if self.store is not None and self.col_depth:
            with timed(self.timings, "column_tops"):
                return tops_from_kept_rows(self.store.deep, row_idx, row_val, self.col_depth, len(self.parts))
        return None, None

    def stored(self):
        return self.store


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

    Ties go to the lower row. Columns that sit in no row's reserve get none here; the diagonal still covers them.
    """
    from saeseeds.matching.screen_kernels import reserve_column_tops

    if k_col <= 0:
        return np.empty(0, dtype=np.int64)
    return reserve_column_tops(np.ascontiguousarray(cand.row_idx), np.ascontiguousarray(cand.row_val), k_col)


def stable_argsort(key: np.ndarray) -> np.ndarray:
    """np.argsort(key, kind="stable") for int64 keys, in torch's parallel sort (3-5x faster on 2M keys)."""
    return torch.sort(torch.from_numpy(np.ascontiguousarray(key, dtype=np.int64)), stable=True).indices.numpy()
