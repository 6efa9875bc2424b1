"""Where the sparse matching gets its cosines: a cheap screening pass with a proven error bound, and exact values.

The sparse path never holds the n x n float cosine matrix. It looks at every pair once through a *screen*
(a matmul in bfloat16 or float32 here, in int8 in `int8_screen`), keeps per row the best few, and asks for *exact* cosines only of
the pairs it actually uses: the candidate graph's edges and the pairs the certificate cannot clear
with the screen's bound. The exact cosine of a pair is the float64 dot product of the two float32
unit rows, rounded to float32: within half a float32 ulp of their true cosine, the same however the
pairs are batched, and on every machine except for a pair whose float64 sum falls within ~1e-13 of a
float32 rounding midpoint.

Every source states how far its screen can be from the exact value, as an `ErrorModel`; the
certificate adds that error to every screened value it uses as a bound, so the proof of optimality
holds for the exact cosines whatever the screen's rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from saeseeds.common.bounds import row_norm_upper
from saeseeds.common.hardware import (
    compiled_kernels_apply, full_precision_reductions, native_bf16, numba_threads_as_torch, use_bf16,
)
from saeseeds.matching.screen_settings import PRECISIONS

PAIR_CHUNK = 1024
"""Exact cosines are computed this many pairs at a time: two [chunk, d] float64 gathers that stay in cache
(12 MB at d = 768; 65,536-pair chunks ran 7x slower, measured at 16K latents)."""

ABSOLUTE_MARGIN = 2.0**-40
"""Covers float64 rounding in the norms, in the bound arithmetic and in the exact dot products (< 1e-13)."""


@dataclass
class ErrorModel:
    """|exact_ij - screen_ij| <= rel * |screen_ij| + row_err[i] + col_err[j], for every pair.

    The bound is increasing in the screened value, so the largest screened value of a set of pairs
    gives a bound for all of them (`row_upper`, `col_upper`).
    """

    rel: float
    row_err: np.ndarray
    """[n] float64."""
    col_err: np.ndarray
    """[n] float64."""

    @classmethod
    def exact(cls, n: int) -> "ErrorModel":
        """A screen that is the exact value (given matrices, tests)."""
        return cls(0.0, np.zeros(n), np.zeros(n))

    def pair_upper(self, rows: np.ndarray, cols: np.ndarray, screen: np.ndarray) -> np.ndarray:
        """Upper bounds on the exact cosines of pairs (rows[p], cols[p]) screened at `screen[p]` (float64)."""
        v = np.asarray(screen, dtype=np.float64)
        return v + self.rel * np.abs(v) + self.row_err[rows] + self.col_err[cols]

    def row_upper(self, rows: np.ndarray, screen: np.ndarray) -> np.ndarray:
        """Per row, an upper bound on every pair of that row screened at most `screen[row]`."""
        v = np.asarray(screen, dtype=np.float64)
        return v + self.rel * np.abs(v) + self.row_err[rows] + self.col_err.max(initial=0.0)

    def col_upper(self, cols: np.ndarray, screen: np.ndarray) -> np.ndarray:
        """Per column, an upper bound on every pair of that column screened at most `screen[col]`."""
        v = np.asarray(screen, dtype=np.float64)
        return v + self.rel * np.abs(v) + self.row_err.max(initial=0.0) + self.col_err[cols]

    def screen_thresholds(self, rows, row_target, cols, col_target) -> tuple[np.ndarray, np.ndarray]:
        """Returns (R, C) with: pair_upper(i, j, v) > row_target[i] + col_target[j] implies v > R[i] + C[j].

        The inverse of the bound, split into a row and a column part (each side's relative term taken
        on its own part, which only lowers the sum), for screening a block against per-pair targets.
        """
        shrink = self.rel / (1 - self.rel) if self.rel else 0.0
        row_t = np.asarray(row_target, dtype=np.float64) - self.row_err[rows]
        col_t = np.asarray(col_target, dtype=np.float64) - self.col_err[cols]
        return row_t - shrink * np.abs(row_t), col_t - shrink * np.abs(col_t)

    @property
    def largest(self) -> float:
        """The largest absolute error at |cosine| <= 1 (for the certificate's record)."""
        return float(self.rel + self.row_err.max(initial=0.0) + self.col_err.max(initial=0.0))


class CosineSource:
    """The cosines of an n x n (square) problem: a screen of whole rows and exact values of chosen pairs."""

    n: int
    error: ErrorModel
    precision: str
    """What the screen is: "bf16", "fp32" or "exact"."""
    dim: int | None = None
    """The dimension of the dictionaries' rows (None for a given matrix): the scale of unrelated directions' cosines."""

    def screen(self, rows: np.ndarray) -> torch.Tensor:
        """Screened cosines of those rows against every column, [len(rows), n] (bfloat16 or float32)."""
        raise NotImplementedError

    def screen_block(self, rows: np.ndarray, cols: np.ndarray) -> torch.Tensor:
        """Screened cosines of those rows against those columns, [len(rows), len(cols)]."""
        return self.screen(rows)[:, torch.as_tensor(np.asarray(cols, dtype=np.int64))]

    def screen_over(self, rows, cols, row_thr, col_thr) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Returns (p, q, screened value) for the positions of rows x cols that may exceed row_thr[p] + col_thr[q].

        A superset: each position is checked with the exact bound afterwards. Here one product of the
        block and `prefilter`; a stored screen scans its copy instead (`stored_screen`).
        """
        screened = self.screen_block(rows, cols)
        bi, bj = prefilter(screened, row_thr, col_thr)
        dev = screened.device
        vals = screened[torch.as_tensor(bi, device=dev), torch.as_tensor(bj, device=dev)].float().cpu().numpy()
        return bi, bj, vals

    def exact(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Exact float32 cosines of the pairs (rows[p], cols[p])."""
        raise NotImplementedError


class DenseCosines(CosineSource):
    """A given [n, n] float32 matrix: the screen is the exact value (tests, small problems)."""

    def __init__(self, sim: np.ndarray | torch.Tensor):
        self.sim = torch.as_tensor(np.asarray(sim, dtype=np.float32))
        self.n = self.sim.shape[0]
        self.error = ErrorModel.exact(self.n)
        self.precision = "exact"

    def screen(self, rows: np.ndarray) -> torch.Tensor:
        return self.sim[torch.as_tensor(np.asarray(rows, dtype=np.int64))]

    def exact(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return self.sim.numpy()[np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)]


def exact_cosines(a: torch.Tensor, b: torch.Tensor, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Returns float32(float64 dot(a[rows[p]], b[cols[p]])) for every pair p.

    The products of two float32 numbers are exact in float64 and the sum of d of them is off by
    less than d * 2**-53, so rounding to float32 gives the cosine of the float32 rows to half an ulp.
    Each pair is one reduction over a contiguous row, so its value does not depend on the batch. On CPU
    a compiled kernel computes each pair in one pass (`exact_dots`); elsewhere torch, `PAIR_CHUNK` pairs at a time.
    """
    if compiled_kernels_apply(a, b):
        # Imported here: numba's start-up is paid only by the sparse path, which asks for exact pairs.
        from saeseeds.matching.exact_dots import exact_dots

        numba_threads_as_torch()
        return exact_dots(a.numpy(), b.numpy(), np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64))
    rows_t = torch.as_tensor(np.asarray(rows, dtype=np.int64), device=a.device)
    cols_t = torch.as_tensor(np.asarray(cols, dtype=np.int64), device=a.device)
    out = torch.empty(len(rows_t), dtype=torch.float32, device=a.device)
    for p0 in range(0, len(rows_t), PAIR_CHUNK):
        x = torch.index_select(a, 0, rows_t[p0 : p0 + PAIR_CHUNK]).double()
        y = torch.index_select(b, 0, cols_t[p0 : p0 + PAIR_CHUNK]).double()
        out[p0 : p0 + PAIR_CHUNK] = x.mul_(y).sum(dim=1).float()
    return out.cpu().numpy()


SCREEN_TILE_COLUMNS = 2048
"""Columns per product in a CPU float32 screening block: the pass over 16K x 16K took 2.35 s instead of 2.53 s
(d = 768; 1.76 against 1.88 s at d = 576) on a 2-core AVX2 EPYC (`benchmarks/matching.py`)."""


class ScreenedCosines(CosineSource):
    """Cosines of unit rows a [n, d] and b [n, d]: a blockwise bf16 or fp32 matmul screen, float64 exact values.

    Error of the screen (rounding to nearest throughout; float32 accumulation of the products, as the
    BLAS libraries torch calls document for bfloat16 inputs, checked at start by `bf16_sums_in_float32`):

    - fp32: |screen - a.b| <= gamma_d |a| |b|, gamma_d = d u / (1 - d u), u = 2**-24.
    - bf16: a = a_hi + a_lo with a_hi = bf16(a) (a_lo exact in float32); the matmul computes a_hi.b_hi
      to gamma_d |a_hi| |b_hi| and rounds it to bfloat16 (relative 2**-8), and
      |a.b - a_hi.b_hi| <= |a_hi| |b_lo| + |a_lo| |b_hi| + |a_lo| |b_lo| (Cauchy-Schwarz), per-row norms,
      the column side taken at its largest norm.

    Plus 2**-24 |a| |b| for the float32 rounding of the exact value itself. With unit rows the bf16
    bound is about 4e-3 * |cos| + 3.5e-3 (the split's norms are ~1.7e-3 on real SAEs), the fp32 one 5e-5.
    """

    def __init__(self, a: torch.Tensor, b: torch.Tensor, *, precision: str = "auto"):
        if precision not in ("auto", "bf16", "fp32"):  # int8: `int8_screen.Int8Cosines` (`screen_choice.screen_source`)
            raise ValueError(f"precision={precision!r}: must be one of auto, bf16, fp32")
        self.a, self.b = a, b
        self.n, d = a.shape[0], a.shape[1]
        self.dim = d
        precision = "bf16" if use_bf16(precision, a.device, d, "screening") else "fp32"
        self.precision = precision
        u32 = 2.0**-24
        gamma = d * u32 / (1 - d * u32)
        # Every term scales with the row's norm, so a dead (zero) row has error 0: its screen is exact.
        if precision == "fp32":
            self.sa, self.sb = a, b
            na, nb_max = _norms(a), _norms(b).max(initial=0.0)
            row_err = (gamma + u32 + ABSOLUTE_MARGIN) * na * nb_max
            rel = 0.0
        else:
            a_hi, b_hi = a.bfloat16(), b.bfloat16()
            self.sa, self.sb = a_hi, b_hi
            alpha, beta_max = _norms(a_hi.float()), _norms(b_hi.float()).max(initial=0.0)
            eps, eta_max = _norms(a - a_hi.float()), _norms(b - b_hi.float()).max(initial=0.0)
            row_err = (
                eps * (beta_max + eta_max) + alpha * eta_max + gamma * alpha * beta_max
                + (u32 + ABSOLUTE_MARGIN) * (alpha + eps) * (beta_max + eta_max)
            )
            u16 = 2.0**-8
            rel = u16 / (1 - u16)
        self.error = ErrorModel(rel, row_err, np.zeros(len(b)))
        # float32: BLAS multiplies by the transposed view as fast as by a copy (196-209 ms a 1024 x 16,384 block
        # either way), and the copy cost 52 ms; a bf16 product gets a contiguous copy as before.
        self.sbt = self.sb.T if precision == "fp32" else self.sb.T.contiguous()
        self._buffer: torch.Tensor | None = None

    def screen(self, rows: np.ndarray) -> torch.Tensor:
        """The returned tensor is a view of a buffer that the next call overwrites."""
        rows = np.asarray(rows, dtype=np.int64)
        block = consecutive(rows)
        if block is not None:
            x = self.sa[block]  # a block of the pass: no gather
        else:
            x = self.sa[torch.as_tensor(rows, device=self.a.device)]
        if self._buffer is None or len(self._buffer) < len(rows):
            # One reused buffer: a fresh 0.3-0.5 GB output per block costs page faults every time.
            self._buffer = x.new_empty((len(rows), self.n))
        out = self._buffer[: len(rows)]
        # On CPU float32, column tiles: a 768 x 2,048 panel of b stays in cache across the block's rows, where
        # the whole b^T (48 MiB at 16K x 768) streamed from memory once per block. BLAS writes each tile into
        # its place in the row block (no copy); the values are the untiled product's.
        tile = SCREEN_TILE_COLUMNS if self.precision == "fp32" and out.device.type == "cpu" else self.n
        with full_precision_reductions():
            for c0 in range(0, self.n, tile):
                torch.mm(x, self.sbt[:, c0 : c0 + tile], out=out[:, c0 : c0 + tile])
        return out

    def screen_block(self, rows: np.ndarray, cols: np.ndarray) -> torch.Tensor:
        """Multiplies only the given columns (a third of them in a typical rescreen), so the cost follows the block."""
        dev = self.a.device
        x = self.sa[torch.as_tensor(np.asarray(rows, dtype=np.int64), device=dev)]
        y = self.sb[torch.as_tensor(np.asarray(cols, dtype=np.int64), device=dev)]
        with full_precision_reductions():
            return x @ y.T

    def exact(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return exact_cosines(self.a, self.b, rows, cols)


def consecutive(rows: np.ndarray) -> slice | None:
    """The slice of `rows` when they are consecutive (a block of the pass, read without a gather), else None."""
    if len(rows) and rows[-1] - rows[0] + 1 == len(rows) and (np.diff(rows) == 1).all():
        return slice(int(rows[0]), int(rows[-1]) + 1)
    return None


def _norms(x: torch.Tensor) -> np.ndarray:
    """Upper bounds on the row norms, as numpy float64 (`common.bounds.row_norm_upper`); 0 for a dead latent."""
    return row_norm_upper(x, zero_rows_exact=True).cpu().numpy()


class AbsoluteCosines(CosineSource):
    """|cos| of another source (PW-MCC's matching); ||x| - |y|| <= |x - y| keeps its error model."""

    def __init__(self, inner: CosineSource):
        self.inner, self.n, self.error, self.precision = inner, inner.n, inner.error, inner.precision
        self.dim = inner.dim

    def screen(self, rows: np.ndarray) -> torch.Tensor:
        return self.inner.screen(rows).abs()

    def screen_block(self, rows: np.ndarray, cols: np.ndarray) -> torch.Tensor:
        return self.inner.screen_block(rows, cols).abs()

    def exact(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return np.abs(self.inner.exact(rows, cols))


class PaddedCosines(CosineSource):
    """A rectangle padded to a square: dummy cells (row >= n_a or column >= n_b) are `pad` in screen and exact.

    The inner source must already be square (a and b padded with zero rows), so only the dummy cells
    change; a dummy cell is exact in both, so the inner error model stays a valid bound.
    """

    def __init__(self, inner: CosineSource, n_a: int, n_b: int, pad: float):
        self.inner, self.n, self.error, self.precision = inner, inner.n, inner.error, inner.precision
        self.dim = inner.dim
        self.n_a, self.n_b, self.pad = n_a, n_b, pad

    def screen(self, rows: np.ndarray) -> torch.Tensor:
        return self._pad(self.inner.screen(rows), rows, slice(self.n_b, None))

    def screen_block(self, rows: np.ndarray, cols: np.ndarray) -> torch.Tensor:
        dummy_cols = np.flatnonzero(np.asarray(cols) >= self.n_b)
        return self._pad(self.inner.screen_block(rows, cols), rows, torch.as_tensor(dummy_cols))

    def _pad(self, out: torch.Tensor, rows: np.ndarray, dummy_cols: slice | torch.Tensor) -> torch.Tensor:
        """Sets the dummy columns and the dummy rows of a screened block to the pad value."""
        out[:, dummy_cols] = self.pad
        dummy = np.flatnonzero(np.asarray(rows) >= self.n_a)
        if len(dummy):
            out[torch.as_tensor(dummy, device=out.device)] = self.pad
        return out

    def exact(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        out = self.inner.exact(rows, cols)
        out[(np.asarray(rows) >= self.n_a) | (np.asarray(cols) >= self.n_b)] = self.pad
        return out


PREFILTER_GROUPS = 16
"""Column groups of a rescreen's prefilter: one threshold per row and group, so no [rows, cols] threshold matrix."""


def prefilter(screened: torch.Tensor, row_thr: np.ndarray, col_thr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Returns the (row, col) positions where screened may exceed row_thr[i] + col_thr[j], and a few more.

    The columns come sorted by threshold, so each of `PREFILTER_GROUPS` contiguous groups is compared
    against its smallest column threshold, lowered to the screen's own dtype (rounded down by more than
    its half ulp): a compare in the screen's dtype per group instead of a float32 sum of two matrices
    and a compare against it. Whatever passes is checked pair by pair with the exact bound afterwards.
    """
    m = screened.shape[1]
    bounds = np.linspace(0, m, min(PREFILTER_GROUPS, m) + 1).astype(np.int64)
    over = torch.empty(screened.shape, dtype=torch.bool, device=screened.device)
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        if lo == hi:
            continue
        t = row_thr + col_thr[lo:hi].min()
        t = t - np.abs(t) * 2.0**-7 - 1e-6
        t_low = torch.as_tensor(t.astype(np.float32), device=screened.device).to(screened.dtype)[:, None]
        torch.gt(screened[:, lo:hi], t_low, out=over[:, lo:hi])
    bi, bj = torch.nonzero(over, as_tuple=True)
    return bi.cpu().numpy(), bj.cpu().numpy()


def ceil_quantize(x: np.ndarray, bits: int) -> np.ndarray:
    """Returns ceil(x * 2**bits) as int64: an integer profit bound that no rounding can leave below x."""
    return np.ceil(np.asarray(x, dtype=np.float64) * float(2**bits)).astype(np.int64)


__all__ = [
    "ABSOLUTE_MARGIN", "AbsoluteCosines", "CosineSource", "DenseCosines", "ErrorModel", "PRECISIONS", "PaddedCosines",
    "ScreenedCosines", "ceil_quantize", "consecutive", "prefilter", "exact_cosines", "native_bf16",
]
