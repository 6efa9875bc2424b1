"""The screening pass's cosines kept at 16 bits per pair, so that a second look at a row is a read, not a matmul.

The certificate looks at some rows twice: rows whose potential falls below their reserve's bound are
screened again against the columns that may hold a violator (`violators.rescreen_violators`). On
dictionaries whose nearest neighbours compete (correlated or real SAEs) that is most rows, and on a CPU
whose screen is float32 those second matmuls cost half the pass again (3.3 s beside a 7.8 s pass for
both matchings of the correlated 16K benchmark, AVX2 EPYC). Keeping every screened value as
round(screen * 2**14) in int16 during the pass costs 2 bytes per pair (512 MiB at 16K latents, hence
`screen_settings.KEEP_MAX_LATENTS`), and the second look becomes a threshold scan of stored rows (`screen_kernels`).

The stored value is within 2**-15 of the screen, so its error model is the screen's widened by that:
|exact - stored| <= rel * (|stored| + 2**-15) + row_err + 2**-15 + col_err.
"""

from __future__ import annotations

from math import sqrt
from statistics import NormalDist

import numpy as np
import torch

from saeseeds.matching.cosine_sources import CosineSource, ErrorModel
from saeseeds.matching.screen_kernels import STORE_BITS, over_thresholds
from saeseeds.matching.screen_memory import int16_square


class StoredScreen(CosineSource):
    """The screen of `inner`, filled row block by row block during the pass (`similarity.candidate_pass`)."""

    def __init__(self, inner: CosineSource):
        self.inner, self.n, self.precision = inner, inner.n, inner.precision
        self.dim = inner.dim
        self._values: np.ndarray | None = None
        self._give_back, self._released = (lambda: None), False
        half = 2.0 ** -(STORE_BITS + 1)
        e = inner.error
        self.error = ErrorModel(e.rel, e.row_err + (1 + e.rel) * half, e.col_err)

    def block(self, r0: int, r1: int) -> np.ndarray:
        """Returns rows r0:r1 of the copy for the pass to write (the n x n array is mapped, all pages at once, on the first call)."""
        return self.values[r0:r1]

    @property
    def values(self) -> np.ndarray:
        """[n, n] round(screen * 2**STORE_BITS), written block by block (`block`)."""
        if self._values is None:
            if self._released:
                raise RuntimeError("a stored screen was read after its memory was given back; this is a bug")
            self._values, self._give_back = int16_square(self.n)
        return self._values

    def release(self) -> None:
        """Gives the copy's memory back (to the job's pool, `screen_memory`) once its matching is done with it."""
        self._values, self._released = None, True
        give_back, self._give_back = self._give_back, lambda: None
        give_back()

    def screen(self, rows: np.ndarray) -> torch.Tensor:
        return self._as_float(self.values[np.asarray(rows, dtype=np.int64)])

    def screen_block(self, rows: np.ndarray, cols: np.ndarray) -> torch.Tensor:
        return self._as_float(self.values[np.ix_(np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64))])

    def screen_over(self, rows, cols, row_thr, col_thr) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return over_thresholds(self.values, rows, cols, row_thr, col_thr)

    @staticmethod
    def _as_float(stored: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(stored.astype(np.float32) * np.float32(2.0**-STORE_BITS))

    def exact(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return self.inner.exact(rows, cols)


STRUCTURE_MIN = 1.3
"""A pass keeps its screen when its first rows' median reserve tail exceeds this many times `unrelated_tail`."""


def unrelated_tail(n: int, d: int, depth: int) -> float:
    """Returns the depth-th largest cosine of one direction with n unrelated random ones in d dimensions (~N(0, 1/d))."""
    return NormalDist().inv_cdf(1 - depth / n) / sqrt(d) if depth < n else -1.0


def worth_keeping(tails: np.ndarray, n: int, d: int | None, depth: int) -> bool:
    """Whether a pass should keep its screen, judged on its first rows' reserve tails (each row's depth-th value).

    Rows are screened a second time when their potential falls below their reserve's tail. Where the tails
    are what unrelated directions give (random 16K at d = 768: 0.096 for the 64th value, 0.099 for the 48th), few
    rows are (4% and 1% of the encoder's and decoder's there, with 64), a matmul does them cheaply, and the copy's
    512 MiB and writes would cost more (0.5 s of a 7.3 s matching); where neighbours compete the tails sit well
    above it (real stacked SAEs 0.16-0.18 against 0.096 with 64, correlated 0.36) and most rows are (rescreens with the copy: 0.37 -> 0.14 s on the
    stacked set, 3.3 -> 0.5-0.7 s at correlated 16K). The same test decides whether the pass keeps the
    columns' best rows (`similarity.BlockReducer`). `d` None (a given matrix): keep.
    """
    if d is None or len(tails) == 0:
        return True
    return float(np.median(tails)) > STRUCTURE_MIN * unrelated_tail(n, d, depth)


__all__ = ["STRUCTURE_MIN", "StoredScreen", "unrelated_tail", "worth_keeping"]
