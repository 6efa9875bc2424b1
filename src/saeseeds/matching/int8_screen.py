"""The screening pass in int8 on CPU: u8 x s8 products summed exactly in int32 (oneDNN), under a proven error bound.

Why: on a CPU without native bfloat16 the float32 product was the pass's floor, and the pass most of a matching. oneDNN's
u8 x s8 matmul with int32 sums (vpmaddubsw on AVX2, VNNI or AMX where present) multiplied both sides of the default
study's stacked set (6,048 x 576) in 0.25 s against 0.49 s in float32, and of a 16K x 768 pass in 2.46 s against 5.04 s
(the 2-core AVX2 EPYC, `benchmarks/int8_products.py`).

Each left row a_i is scaled by s_i = max|a_i| / 127 and rounded to integers q_i in [-127, 127] (stored as u8 q_i + 128,
oneDNN's zero point); each right row b_j by t_j = max|b_j| / L and rounded to p_j in [-L, L] (s8), L = `right_levels()`:
127 where the products sum in int32 directly (VNNI, AMX), else 63: AVX2's u8 x s8 instruction adds two products into
int16 with saturation, and 2 * 255 * 63 < 2**15 keeps every pair sum exact. Which one this machine can take is checked
at start on the products themselves (`products_exact_at`: with oneDNN capped at AVX2 or AVX512_CORE it fails at 127
and passes at 63, with AVX512_CORE_VNNI it passes at 127). 127 halves the right rows' rounding error: on the default
study's stacked set (AVX512-VNNI EPYC) the bound's largest value fell from 0.054 / 0.095 to 0.038 / 0.064 (encoder /
decoder), the exact pairs from 83K / 135K to 68K / 104K, and the matching from 0.90-0.92 s to 0.82-0.83 s (4 calls
each, alternated in one process), and the random 16K pair's bound from 0.05 to 0.025 (`screen_choice`).

With the dequantised rows a~_i = s_i q_i and b~_j = t_j p_j, the screen is float32(float32(sum q_i p_j) t_j) s_i,
within three roundings (2**-24 relative each) of a~_i . b~_j, and by Cauchy-Schwarz
    |a_i . b_j - a~_i . b~_j| <= |a_i - a~_i| |b_j| + |a~_i| |b_j - b~_j|,
taken as a row part (|a_i - a~_i| at the largest |b|) and a column part (|b_j - b~_j| at the largest |a~|). The
rounding errors are computed exactly, per row (`quantize_rows`). On unit rows of d = 576-768 the bound is about
0.01-0.1, against 5e-5 for a float32 screen: more pairs reach the certificate's exact values, and the pass is cheaper.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from numba import njit, prange

from saeseeds.matching.cosine_sources import ABSOLUTE_MARGIN, CosineSource, ErrorModel, consecutive, exact_cosines

LEFT_LEVELS = 127
"""The left rows' integers: q in [-127, 127], stored as u8 q + 128."""
RIGHT_LEVELS = 63
"""The right rows' integers where products are summed in pairs into int16 (AVX2): p in [-63, 63], 2 * 255 * 63 < 2**15."""
WIDE_RIGHT_LEVELS = 127
"""The right rows' integers where products are summed in int32 directly (VNNI, AMX): p in [-127, 127]."""
ZERO_POINT = 128

TILE_COLUMNS = 2048
"""Columns per int8 product: each tile's right rows are packed once, and a [rows, 2,048] float32 output (8 MiB at 1,024
rows) is one that the allocator reuses from block to block, where a whole [1,024, 16,384] output (64 MiB) is mapped
afresh each time and its first writes fault page by page."""


@njit(cache=True, parallel=True, nogil=True)
def quantize_rows(x, levels, offset, q, scale, err, norm, x_norm):  # pragma: no cover - compiled
    """Writes each row's integers (plus `offset`), its float32 scale, and float64 |x - s q|, |s q| and |x| (not yet
    rounded up).

    s q is exact in float64 (a 7-bit integer times a float32), and so is x - s q: when q != 0, |x| >= s / 2 puts both
    on a grid no finer than half of s's last bit, at most 33 bits below their size; when q = 0 it is x itself.
    """
    n, d = x.shape
    for i in prange(n):
        m = np.float32(0.0)
        for t in range(d):
            m = max(m, abs(x[i, t]))
        s = np.float32(m / np.float32(levels))
        if s == 0 or not np.isfinite(s):
            s = np.float32(1.0)  # a zero row (or one whose scale underflows): q = 0, its error is the row itself
        s64 = np.float64(s)
        e2 = 0.0
        n2 = 0.0
        x2 = 0.0
        for t in range(d):
            v = np.float64(x[i, t])
            x2 += v * v
            k = min(max(np.rint(v / s64), -levels), levels)
            q[i, t] = k + offset
            r = v - k * s64
            e2 += r * r
            n2 += (k * s64) * (k * s64)
        scale[i] = s
        err[i] = math.sqrt(e2)
        norm[i] = math.sqrt(n2)
        x_norm[i] = math.sqrt(x2)


def quantized(x: torch.Tensor, levels: int, offset: int, dtype) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, ...]:
    """Returns (integers [n, d] as `dtype`, scales [n] float32, and upper bounds on |x - s q|, |s q| and |x|, float64 [n])."""
    arr = np.ascontiguousarray(x.numpy(), dtype=np.float32)
    n, d = arr.shape
    q = np.empty((n, d), dtype=dtype)
    scale, err, norm, x_norm = np.empty(n, dtype=np.float32), np.empty(n), np.empty(n), np.empty(n)
    quantize_rows(arr, levels, offset, q, scale, err, norm, x_norm)
    bad = np.flatnonzero(~(np.isfinite(err) & np.isfinite(x_norm)))
    if len(bad):  # the matching refuses non-finite dictionaries before; a row whose squares overflow gets here
        raise ValueError(f"row {int(bad[0])} of a dictionary has no finite int8 rounding error; screen it in float32")
    # A float64 sum of d squares and its root are within (d / 2 + 2) 2**-53 of the true norm, relative.
    up = 1 + (d + 8) * 2.0**-52
    return torch.from_numpy(q), torch.from_numpy(scale), err * up, norm * up, x_norm * up


@functools.lru_cache(maxsize=None)
def right_levels() -> int | None:
    """The right rows' integer range whose products this machine sums exactly: `WIDE_RIGHT_LEVELS` where no pair sum
    saturates, else `RIGHT_LEVELS`, else None (no int8 screen here). About 0.03 s per range tried, once per process."""
    for levels in (WIDE_RIGHT_LEVELS, RIGHT_LEVELS) if _may_sum_in_int32() else (RIGHT_LEVELS,):
        if products_exact_at(levels):
            return levels
    return None


INT32_SUM_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
"""CPU flags (Linux's /proc/cpuinfo) of the instructions that sum u8 x s8 products in int32 without saturation."""


def _may_sum_in_int32() -> bool:
    """False where /proc/cpuinfo lists none of `INT32_SUM_FLAGS` (the wide range's check, 0.03 s, is then skipped: it
    would fail); True where it lists one, or cannot be read (the check decides)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), None)
    except OSError:
        return True
    return flags is None or any(flag in flags for flag in INT32_SUM_FLAGS)


def int8_products_exact() -> bool:
    """True where oneDNN's u8 x s8 products are exact integer sums at some right range (`right_levels`)."""
    return right_levels() is not None


def products_exact_at(levels: int) -> bool:
    """True where oneDNN's u8 x s8 matmul with float32 output gives float32(exact int32 sum) times the column scale,
    for right integers in [-levels, levels].

    Checks the cases the error model rests on: pair sums at their largest (all 255 against all +-levels: beyond int16
    at 127, where AVX2's instruction saturates), random integers over the whole range, and sums that cancel after
    partial sums far beyond 2**24 (d = 65,536: float32 sums, even split over 16 lanes, would round there). Any other
    answer, or no such operator in this build of torch: False.
    """
    rng = np.random.default_rng(0)
    left = rng.integers(1, 256, (24, 4096)).astype(np.uint8)
    left[:4], left[4:8] = 255, 1
    right = rng.integers(-levels, levels + 1, (40, 4096)).astype(np.int8)
    right[:4], right[4:8] = levels, -levels
    right[8:12, ::2], right[8:12, 1::2] = levels, -levels
    long_left = np.full((8, 65536), 255, dtype=np.uint8)
    long_right = rng.integers(1, levels + 1, (16, 65536)).astype(np.int8)
    long_right[:, 32768:] = -long_right[:, :32768]  # sums that cancel to 127 * (1 + p) after partial sums near 2**27
    long_right[np.arange(16), 65536 - 1 - np.arange(16)] = 1
    try:
        for lhs, rhs in ((left, right), (long_left, long_right)):
            col_scale = torch.from_numpy(rng.uniform(0.5, 2.0, len(rhs)).astype(np.float32))
            got = _product(torch.from_numpy(lhs), _pack(torch.from_numpy(rhs)), col_scale).numpy().astype(np.float64)
            acc = (lhs.astype(np.int64) - ZERO_POINT) @ rhs.astype(np.int64).T
            want = acc.astype(np.float64) * col_scale.numpy().astype(np.float64)
            if not (np.abs(got - want) <= 2 * 2.0**-24 * np.abs(want)).all():
                return False
        return True
    except Exception:  # noqa: BLE001 - no operator, another build: float32 it is
        return False


def int8_native(device: torch.device) -> bool:
    """True where the int8 screen is expected to beat float32: a CPU that torch runs at AVX2 or above, exact products."""
    if device.type != "cpu":
        return False
    capability = torch.backends.cpu.get_cpu_capability()
    return capability.startswith(("AVX2", "AVX512")) and int8_products_exact()


def _pack(right: torch.Tensor):
    return torch.ops.onednn.qlinear_prepack(right, None)


def _product(left: torch.Tensor, packed, col_scale: torch.Tensor) -> torch.Tensor:
    """float32(sum (left - 128) * right) * col_scale[j] for every pair: [len(left), columns of `packed`]."""
    zero = torch.zeros(len(col_scale), dtype=torch.long)
    return torch.ops.onednn.qlinear_pointwise(
        left, 1.0, ZERO_POINT, packed, col_scale, zero, None, 1.0, 0, torch.float32, "none", [], ""
    )


class Int8Cosines(CosineSource):
    """Cosines of unit rows a [n, d] and b [n, d]: an int8 screen (this module's docstring) and float64 exact values."""

    def __init__(self, a: torch.Tensor, b: torch.Tensor):
        self.a, self.b = a, b
        self.n, d = a.shape
        self.dim = d
        self.precision = "int8"
        self.qa, self.row_scale, err_a, norm_qa, na = quantized(a, LEFT_LEVELS, ZERO_POINT, np.uint8)
        qb, self.col_scale, err_b, _, nb = quantized(b, right_levels() or RIGHT_LEVELS, 0, np.int8)
        u = 2.0**-24
        nb_max = nb.max(initial=0.0)
        gamma = d * u / (1 - d * u)
        # Rows multiplied again in float32 (`screen_block`) keep to the same model: their error, gamma_d |a| |b|, is
        # added to the row part; so is the float32 rounding of the exact value itself.
        row_err = err_a * nb_max + (gamma + u + ABSOLUTE_MARGIN) * na * nb_max
        col_err = norm_qa.max(initial=0.0) * err_b
        self.error = ErrorModel(4 * u / (1 - 4 * u), row_err, col_err)
        self.tiles = [(c0, min(c0 + TILE_COLUMNS, self.n)) for c0 in range(0, self.n, TILE_COLUMNS)]
        self.packed = [_pack(qb[c0:c1]) for c0, c1 in self.tiles]
        self._buffer: torch.Tensor | None = None

    def screen(self, rows: np.ndarray) -> torch.Tensor:
        """The returned tensor is a view of a buffer that the next call overwrites."""
        rows = np.asarray(rows, dtype=np.int64)
        block = consecutive(rows)
        if block is not None:
            x, s = self.qa[block], self.row_scale[block]
        else:
            picked = torch.as_tensor(rows)
            x, s = self.qa[picked], self.row_scale[picked]
        if self._buffer is None or len(self._buffer) < len(rows):
            self._buffer = torch.empty((len(rows), self.n), dtype=torch.float32)
        out = self._buffer[: len(rows)]
        s = s[:, None]
        for (c0, c1), packed in zip(self.tiles, self.packed):
            torch.mul(_product(x, packed, self.col_scale[c0:c1]), s, out=out[:, c0:c1])
        return out

    def screen_block(self, rows: np.ndarray, cols: np.ndarray) -> torch.Tensor:
        """A float32 product of the given rows and columns (within this model: see `__init__`)."""
        x = self.a[torch.as_tensor(np.asarray(rows, dtype=np.int64))]
        y = self.b[torch.as_tensor(np.asarray(cols, dtype=np.int64))]
        return x @ y.T

    def exact(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return exact_cosines(self.a, self.b, rows, cols)


__all__ = [
    "RIGHT_LEVELS", "WIDE_RIGHT_LEVELS", "Int8Cosines", "int8_native", "int8_products_exact", "products_exact_at", "quantize_rows",
    "right_levels",
]
