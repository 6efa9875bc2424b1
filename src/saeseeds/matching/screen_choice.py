"""Which screen a sparse matching multiplies with: bf16 where native, int8 on a CPU where neighbours compete, else float32.

The int8 screen (`int8_screen`) halves the pass's product on a CPU without native bf16, but its bound is coarse
(0.016-0.04 against float32's 5e-5), and a row whose potential falls below its reserve's tail plus that bound is
screened again. Where nearest neighbours compete (correlated or stacked real SAEs) most rows are screened again
whatever the screen and the pass keeps its values for it, so int8 pays: correlated 16K x 768 6.2 s against 7.9 s in
float32 (medians of 4, benchmarks/README.md). Where rows look like unrelated directions, few rows come back in
float32 and most in int8: the random 16K pair took 21-22 s in int8 against 8-10 s, so "auto" screens those in
float32. The test is the pass's own (`stored_screen.worth_keeping`: the first rows' reserve tails against
unrelated directions'), on a float32 product of those rows (0.03 s at 16K x 768).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from saeseeds.common.hardware import native_bf16
from saeseeds.matching.cosine_sources import CosineSource, ScreenedCosines
from saeseeds.matching.stored_screen import worth_keeping

PROBE_ROWS = 128
"""Rows whose reserve tails decide between int8 and float32 ("auto" on a CPU), as the pass's own decision."""


def neighbours_compete(ua: torch.Tensor, ub: torch.Tensor, depth: int) -> bool:
    """True where the first rows' depth-th largest cosines sit above unrelated directions' (`worth_keeping`)."""
    n, d = ub.shape
    depth = min(depth, n)
    probe = ua[: min(PROBE_ROWS, len(ua))] @ ub.T
    tails = torch.topk(probe, depth, dim=1).values[:, -1].numpy()
    return bool(np.isfinite(tails).all()) and worth_keeping(tails, n, d, depth)


def screen_source(ua: torch.Tensor, ub: torch.Tensor, screen: str, depth: int) -> CosineSource:
    """Returns the screening pass's source for unit rows: "int8" asked for or chosen (auto: a CPU without native bf16
    whose int8 products check out, where neighbours compete), else bf16 or float32 (`ScreenedCosines`). An int8 screen
    asked for where its products are not exact integer sums falls back to float32, with a warning."""
    cpu = ua.device.type == "cpu"
    if screen == "int8" or (screen == "auto" and cpu and not native_bf16(ua.device)):
        from saeseeds.matching.int8_screen import Int8Cosines, int8_native, int8_products_exact

        if screen == "int8" and cpu and int8_products_exact():
            return Int8Cosines(ua, ub)
        if screen == "auto" and int8_native(ua.device) and neighbours_compete(ua, ub, depth):
            return Int8Cosines(ua, ub)
        if screen == "int8":
            warnings.warn("int8 products on this device are not exact integer sums; screening in float32 instead", stacklevel=3)
        screen = "fp32"
    return ScreenedCosines(ua, ub, precision=screen)


__all__ = ["PROBE_ROWS", "neighbours_compete", "screen_source"]
