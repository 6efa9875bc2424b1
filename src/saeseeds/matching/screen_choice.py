"""Which screen a sparse matching multiplies with: int8 on a CPU where neighbours compete, else bf16 where native, else float32.

The int8 screen (`int8_screen`) halves the pass's product on a CPU without native bf16, but its bound is coarse
(0.013-0.095 against float32's 5e-5), and a row whose potential falls below its reserve's tail plus that bound is
screened again. Where nearest neighbours compete (correlated or stacked real SAEs) most rows are screened again
whatever the screen and the pass keeps its values for it, so int8 pays: correlated 16K x 768 6.3 s against 9.6 s in
float32 (medians of 4, benchmarks/README.md "An int8 screen"). Where rows look like unrelated directions, few rows come back in
float32 and most in int8: the random 16K pair took 20-22 s in int8 against 8 s. What decides is how the bound compares
with the gap between an unrelated row's largest value and its reserve's tail: 0.58 of it on the random pair (d = 768),
0.29-0.30 on the real 16K pair (d = 576), which took 5.1 s in int8 against 6.3 s. So "auto" screens in int8 where
neighbours compete (the pass's own test, `stored_screen.worth_keeping`: the first rows' reserve tails against
unrelated directions', on a float32 product of those rows, 0.03 s at 16K x 768) or where int8's typical error is
under `INT8_MAX_SHARE` of that gap (the rounding errors of the first rows, `int8_screen.quantized`), else in float32
(bf16 where native).

The same holds where bf16 is native (AVX512-BF16, 2-core AMD EPYC, 2026-12-04, `benchmarks/matching.py --screen`,
best of 2 or 3, `benchmarks/results_screens_avx512_stop44/`): its int8 products (VNNI) are faster still, and the bf16
pass keeps no values for a second look, so int8 took the correlated 16K pair 3.10 s against 5.01 s in bf16, the real
16K pair 2.54 against 3.39 s and the stacked set 1.02 against 1.17 s; the random 16K pair 3.72 s against 3.91 s.
There, with VNNI, the right rows round to +-127 (`int8_screen.right_levels`), which halves their part of the bound:
int8's typical error is then 0.39 of the unrelated gap on the random 16K pair (half of it at +-63), so "auto"
takes int8 for it too, 2.6-3.1 s against bf16's 3.9-4.2 s (`benchmarks/matching.py --screen`, 2 calls each); at 131K its
share is 0.44, and it stays bf16.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from saeseeds.matching.cosine_sources import CosineSource, ScreenedCosines
from saeseeds.matching.stored_screen import unrelated_gap, worth_keeping

PROBE_ROWS = 128
"""Rows whose reserve tails decide between int8 and float32 ("auto" on a CPU), as the pass's own decision."""

INT8_MAX_SHARE = 0.4
"""Where nothing competes, "auto" takes int8 when its typical error is under this share of the unrelated gap."""

ERROR_ROWS = 1024
"""Rows of each side whose int8 rounding errors give the typical error (`int8_error_share`)."""


def neighbours_compete(ua: torch.Tensor, ub: torch.Tensor, depth: int) -> bool:
    """True where the first rows' depth-th largest cosines sit above unrelated directions' (`worth_keeping`)."""
    n, d = ub.shape
    depth = min(depth, n)
    probe = ua[: min(PROBE_ROWS, len(ua))] @ ub.T
    tails = torch.topk(probe, depth, dim=1).values[:, -1].numpy()
    return bool(np.isfinite(tails).all()) and worth_keeping(tails, n, d, depth)


def int8_error_share(ua: torch.Tensor, ub: torch.Tensor, depth: int) -> float:
    """Returns an int8 screen's typical error (a typical row's and column's part, from the first rows' exact rounding
    errors) over the gap between an unrelated row's largest cosine and its depth-th (`stored_screen.coarse_screen`)."""
    from saeseeds.matching.int8_screen import LEFT_LEVELS, RIGHT_LEVELS, ZERO_POINT, quantized, right_levels

    n, d = ub.shape
    err_a = quantized(ua[:ERROR_ROWS], LEFT_LEVELS, ZERO_POINT, np.uint8)[2]
    err_b = quantized(ub[:ERROR_ROWS], right_levels() or RIGHT_LEVELS, 0, np.int8)[2]
    gap = unrelated_gap(n, d, depth)
    return float(np.median(err_a) + np.median(err_b)) / gap if gap > 0 else float("inf")


def screen_source(ua: torch.Tensor, ub: torch.Tensor, screen: str, depth: int) -> CosineSource:
    """Returns the screening pass's source for unit rows: "int8" asked for or chosen (auto: a CPU whose int8 products
    check out, where neighbours compete or its bound is fine enough), else bf16 where native or float32
    (`ScreenedCosines`). An int8 screen asked for where its products are not exact integer sums falls back to float32,
    with a warning."""
    cpu = ua.device.type == "cpu"
    if screen == "int8" or (screen == "auto" and cpu):
        from saeseeds.matching.int8_screen import Int8Cosines, int8_native, int8_products_exact

        if screen == "int8" and cpu and int8_products_exact():
            return Int8Cosines(ua, ub)
        # The error share first: the rounding of 1,024 rows (2 ms on the stacked set) often decides alone, where the
        # probe's float32 product and top-k took 8 ms a side.
        if screen == "auto" and int8_native(ua.device) and (
            int8_error_share(ua, ub, depth) < INT8_MAX_SHARE or neighbours_compete(ua, ub, depth)
        ):
            return Int8Cosines(ua, ub)
        if screen == "int8":
            warnings.warn("int8 products on this device are not exact integer sums; screening in float32 instead", stacklevel=3)
            screen = "fp32"
    return ScreenedCosines(ua, ub, precision=screen)


__all__ = ["ERROR_ROWS", "INT8_MAX_SHARE", "PROBE_ROWS", "int8_error_share", "neighbours_compete", "screen_source"]
