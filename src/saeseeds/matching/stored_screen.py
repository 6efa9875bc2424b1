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

import numpy as np
import torch

from saeseeds.matching.cosine_sources import CosineSource, ErrorModel
from saeseeds.matching.screen_kernels import STORE_BITS, over_thresholds
from saeseeds.matching.screen_memory import int16_square


class StoredScreen(CosineSource):
    """The screen of `inner`, filled row block by row block during the pass (`similarity.candidate_pass`)."""

    def __init__(self, inner: CosineSource):
        self.inner, self.n, self.precision = inner, inner.n, inner.precision
        self.values = int16_square(inner.n)
        """[n, n] round(screen * 2**STORE_BITS)."""
        half = 2.0 ** -(STORE_BITS + 1)
        e = inner.error
        self.error = ErrorModel(e.rel, e.row_err + (1 + e.rel) * half, e.col_err)

    def screen(self, rows: np.ndarray) -> torch.Tensor:
        return self._values(self.values[np.asarray(rows, dtype=np.int64)])

    def screen_block(self, rows: np.ndarray, cols: np.ndarray) -> torch.Tensor:
        return self._values(self.values[np.ix_(np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64))])

    def screen_over(self, rows, cols, row_thr, col_thr) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return over_thresholds(self.values, rows, cols, row_thr, col_thr)

    @staticmethod
    def _values(stored: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(stored.astype(np.float32) * np.float32(2.0**-STORE_BITS))

    def exact(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return self.inner.exact(rows, cols)


__all__ = ["StoredScreen"]
