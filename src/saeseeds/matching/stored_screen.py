"""The screening pass's largest cosines of every row kept at 16 bits, so that a second look at a row is a read, not a matmul.

The certificate looks at some rows twice: rows whose potential falls below their reserve's bound are
screened again against the columns that may hold a violator (`violators.rescreen_violators`). On
dictionaries whose nearest neighbours compete (correlated or real SAEs) that is most rows, and on a CPU
whose screen is float32 those second matmuls cost half the pass again (3.3 s beside a 7.8 s pass for
both matchings of the correlated 16K benchmark, AVX2 EPYC).

A second look only wants a row's values over a threshold near its reserve's tail: in the correlated 16K
benchmark's matchings at most 563 of a row's 16,384 values ever exceeded one (median 171-189). So the pass keeps
each row's values over a floor that leaves 512 to 1,023 of them (`screen_settings.DEEP_CAPACITY`), as
round(screen * 2**14) in int16 with their columns: 6 bytes an entry, 96 MiB at 16K latents where every value at
2 bytes took 512 MiB, whose first writes cost 0.4-0.9 s a matching on the 2-core EPYC VM. A row whose
thresholds reach below its floor (on the default study's stacked SAEs, rows of orphans with low potentials) is
multiplied again (`rows_short` counts them).

The stored value is within 2**-15 of the screen, so its error model is the screen's widened by that:
|exact - stored| <= rel * (|stored| + 2**-15) + row_err + 2**-15 + col_err.
"""

from __future__ import annotations

from math import sqrt
from statistics import NormalDist

import numpy as np
import torch

from saeseeds.matching.cosine_sources import CosineSource, ErrorModel
from saeseeds.matching.screen_kernels import STORE_STEP, deep_rows, deep_rows_bytes, over_deep_rows
from saeseeds.matching.screen_settings import deep_capacity
from saeseeds.matching.screen_memory import borrow


class StoredScreen(CosineSource):
    """The deep entries of every row of `inner`'s screen, filled row block by row block during the pass (`similarity.candidate_pass`)."""

    def __init__(self, inner: CosineSource):
        self.inner, self.n, self.precision = inner, inner.n, inner.precision
        self.dim = inner.dim
        self.cap = deep_capacity(inner.n)
        self._deep: tuple[np.ndarray, ...] | None = None
        self._give_back, self._released = (lambda: None), False
        self.rows_short = 0
        """How many rows a second look multiplied again: their thresholds reached below their floor."""
        half = STORE_STEP / 2
        e = inner.error
        self.error = ErrorModel(e.rel, e.row_err + (1 + e.rel) * half, e.col_err)

    def block(self, r0: int, r1: int) -> tuple[np.ndarray, ...]:
        """Returns rows r0:r1 of the deep entries for the pass to write (the whole store is mapped on the first call)."""
        return tuple(part[r0:r1] for part in self.deep)

    @property
    def deep(self) -> tuple[np.ndarray, ...]:
        """(values [n, cap] int16, columns [n, cap] int32, counts [n] int32, floors [n] int32) (`screen_kernels.reduce_block`)."""
        if self._deep is None:
            if self._released:
                raise RuntimeError("a stored screen was read after its memory was given back; this is a bug")
            memory, self._give_back = borrow(deep_rows_bytes(self.n, self.cap))
            self._deep = deep_rows(self.n, self.cap, memory)
        return self._deep

    def release(self) -> None:
        """Gives the entries' memory back (to the job's pool, `screen_memory`) once its matching is done with it."""
        self._deep, self._released = None, True
        give_back, self._give_back = self._give_back, lambda: None
        give_back()

    def screen(self, rows: np.ndarray) -> torch.Tensor:
        return self.inner.screen(rows)

    def screen_over(self, rows, cols, row_thr, col_thr) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The kept entries over their thresholds, and for rows whose thresholds reach below their floor, a product.

        A short row's kept entries still serve the columns whose threshold stays above its floor; only the columns
        whose threshold falls below the highest floor of the short rows (the columns of low potential) are multiplied.
        """
        rows = np.asarray(rows, dtype=np.int64)
        cols = np.asarray(cols, dtype=np.int64)
        row_thr = np.asarray(row_thr, dtype=np.float64)
        col_thr = np.asarray(col_thr, dtype=np.float64)
        p, q, v, short = over_deep_rows(self.deep, rows, cols, row_thr, col_thr)
        if len(short) == 0:
            return p, q, v
        self.rows_short += len(short)
        floor = self.deep[3][rows[short]].astype(np.float64) * STORE_STEP
        reach = float((floor - row_thr[short]).max()) + 1e-9  # columns with thresholds below this may hold pairs not kept
        low, high = np.flatnonzero(col_thr < reach), np.flatnonzero(col_thr >= reach)
        parts = [(p, q, v)]
        hp, hq, hv, still = over_deep_rows(self.deep, rows[short], cols[high], row_thr[short], col_thr[high])
        parts.append((short[hp], high[hq], hv))
        if len(still):  # not expected (the margin covers rounding): these rows are multiplied whole
            sp, sq, sv = self.inner.screen_over(rows[short[still]], cols[high], row_thr[short[still]], col_thr[high])
            parts.append((short[still[sp]], high[sq], sv))
        if len(low):
            sp, sq, sv = self.inner.screen_over(rows[short], cols[low], row_thr[short], col_thr[low])
            parts.append((short[sp], low[sq], sv))
        p, q, v = (np.concatenate([np.asarray(part[i]) for part in parts]) for i in range(3))
        order = np.lexsort((q, p))
        return p[order], q[order], v[order].astype(np.float32)

    def exact(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return self.inner.exact(rows, cols)


STRUCTURE_MIN = 1.3
"""A pass keeps its screen when its first rows' median reserve tail exceeds this many times `unrelated_tail`."""


def unrelated_tail(n: int, d: int, depth: int) -> float:
    """Returns the depth-th largest cosine of one direction with n unrelated random ones in d dimensions (~N(0, 1/d))."""
    return NormalDist().inv_cdf(1 - depth / n) / sqrt(d) if depth < n else -1.0


ERROR_SHARE = 0.25
"""A pass keeps its screen (not the column tops) when the screen's typical error exceeds this share of the gap between
the largest and the depth-th largest cosine of unrelated directions (`coarse_screen`)."""


def worth_keeping(tails: np.ndarray, n: int, d: int | None, depth: int) -> bool:
    """Whether a pass should keep its screen, judged on its first rows' reserve tails (each row's depth-th value).

    Rows are screened a second time when their potential falls below their reserve's tail. Where the tails
    are what unrelated directions give (random 16K at d = 768: 0.096 for the 64th value, 0.099 for the 48th), few
    rows are (4% and 1% of the encoder's and decoder's there, with 64), a matmul does them cheaply, and a copy of
    every value (512 MiB, as it was kept then) cost more (0.5 s of a 7.3 s matching); where neighbours compete the tails sit well
    above it (real stacked SAEs 0.16-0.18 against 0.096 with 64, correlated 0.36) and most rows are (rescreens with the copy: 0.37 -> 0.14 s on the
    stacked set, 3.3 -> 0.5-0.7 s at correlated 16K). The same test decides whether the pass keeps the
    columns' best rows (`similarity.BlockReducer`). `d` None (a given matrix): keep.
    """
    if d is None or len(tails) == 0:
        return True
    return float(np.median(tails)) > STRUCTURE_MIN * unrelated_tail(n, d, depth)


def unrelated_gap(n: int, d: int, depth: int) -> float:
    """Returns the gap between the largest and the depth-th largest cosine of one direction with n unrelated ones."""
    return unrelated_tail(n, d, 1) - unrelated_tail(n, d, min(depth, n))


def coarse_screen(screen_error: float, n: int, d: int | None, depth: int) -> bool:
    """Whether a screen's error alone sends enough rows back to keep the screen where nothing competes.

    A row's reserve bounds the rest of it by its tail plus the screen's error (`screen_error`: a typical row's and
    column's), so a coarse screen sends rows back even where the tails are what unrelated directions give: on the
    real 16K pair (d = 576) the int8 screen's 0.016 took the rows screened again from 52-111 to 5,518-5,785 of 16,384,
    multiplied again in 2.4-3.1 s, read from a kept screen in 0.2 s. True when the error exceeds `ERROR_SHARE` of
    the gap between an unrelated row's largest value and its tail (0.045 there); float32's (5e-5) and bf16's (~4e-3)
    stay below it.
    """
    if d is None:
        return False
    return screen_error > ERROR_SHARE * unrelated_gap(n, d, depth)


__all__ = ["ERROR_SHARE", "STRUCTURE_MIN", "StoredScreen", "coarse_screen", "unrelated_gap", "unrelated_tail", "worth_keeping"]
