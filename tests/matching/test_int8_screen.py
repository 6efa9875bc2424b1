"""The int8 screen: exact integer products checked at start, exact rounding errors, and a fallback when either fails."""

from __future__ import annotations

import warnings
from fractions import Fraction

import numpy as np
import pytest
import torch

from saeseeds.matching import int8_screen
from saeseeds.matching.cosine_sources import ScreenedCosines
from saeseeds.matching.int8_screen import (
    LEFT_LEVELS, RIGHT_LEVELS, WIDE_RIGHT_LEVELS, ZERO_POINT, Int8Cosines, int8_products_exact, products_exact_at, quantized,
    right_levels,
)
from saeseeds.matching.screen_choice import INT8_MAX_SHARE, int8_error_share, neighbours_compete, screen_source
from saeseeds.matching.stored_screen import coarse_screen
from saeseeds.matching.similarity import unit_rows

needs_int8 = pytest.mark.skipif(not int8_products_exact(), reason="this build of torch has no exact int8 products here")


@needs_int8
def test_products_are_the_exact_integer_sums_times_the_column_scale():
    # Beyond 2**24 (d = 3,000 at full range) and at the largest pair sums of this machine's right range (255 against
    # +-63 on AVX2, +-127 with VNNI or AMX), in column tiles.
    rng = np.random.default_rng(3)
    d = 3000
    levels = right_levels()
    left = rng.integers(1, 256, (40, d)).astype(np.uint8)
    left[:3] = 255
    right = rng.integers(-levels, levels + 1, (70, d)).astype(np.int8)
    right[:3] = levels
    scale = rng.uniform(0.25, 4, 70).astype(np.float32)
    got = int8_screen._product(torch.from_numpy(left), int8_screen._pack(torch.from_numpy(right)), torch.from_numpy(scale))
    acc = (left.astype(np.int64) - ZERO_POINT) @ right.astype(np.int64).T
    assert np.abs(acc).max() > 2**24
    np.testing.assert_allclose(got.numpy(), acc * scale.astype(np.float64), rtol=2 * 2.0**-24, atol=0)


def test_the_start_check_rejects_products_that_saturate_or_round(monkeypatch):
    # What it guards against: AVX2's u8 x s8 pair sums clamped to int16 (as a right side of +-127 would make them),
    # and sums accumulated in float32. Either answer turns the int8 screen off.
    def avx2_pairs(left, right, scale):
        l, r = left.numpy().astype(np.int64), right.numpy().astype(np.int64)
        pairs = l[:, None, 0::2] * r[None, :, 0::2] + l[:, None, 1::2] * r[None, :, 1::2]
        sums = np.clip(pairs, -(2**15), 2**15 - 1).sum(axis=2) - ZERO_POINT * r.sum(axis=1)[None, :]
        return torch.from_numpy((sums * scale.numpy().astype(np.float64)).astype(np.float32))

    def float_sums(left, right, scale):
        x = torch.from_numpy(left.numpy().astype(np.float32) - ZERO_POINT)
        return (x @ right.float().T) * scale

    def int32_sums(left, right, scale):  # VNNI or AMX: every product summed in int32
        sums = (left.numpy().astype(np.int64) - ZERO_POINT) @ right.numpy().astype(np.int64).T
        return torch.from_numpy((sums * scale.numpy().astype(np.float64)).astype(np.float32))

    monkeypatch.setattr(int8_screen, "_pack", lambda right: right)
    monkeypatch.setattr(int8_screen, "_product", avx2_pairs)
    assert products_exact_at(RIGHT_LEVELS) is True  # the simulation is exact at +-63 ...
    assert products_exact_at(WIDE_RIGHT_LEVELS) is False  # ... and saturates at +-127
    assert right_levels.__wrapped__() == RIGHT_LEVELS  # so an AVX2 CPU screens its right rows at +-63
    monkeypatch.setattr(int8_screen, "_product", int32_sums)
    monkeypatch.setattr(int8_screen, "_may_sum_in_int32", lambda: True)
    assert right_levels.__wrapped__() == WIDE_RIGHT_LEVELS  # and one that sums in int32 at +-127
    monkeypatch.setattr(int8_screen, "_may_sum_in_int32", lambda: False)  # no VNNI or AMX among its flags: not tried
    assert right_levels.__wrapped__() == RIGHT_LEVELS
    monkeypatch.setattr(int8_screen, "_product", float_sums)
    assert not products_exact_at(RIGHT_LEVELS) and right_levels.__wrapped__() is None
    monkeypatch.setattr(int8_screen, "_product", lambda *a: (_ for _ in ()).throw(RuntimeError("no such operator")))
    assert right_levels.__wrapped__() is None


@needs_int8
def test_the_screen_rounds_right_rows_to_the_range_this_machine_sums_exactly(monkeypatch):
    # The integers the products see are in the range chosen at start, and the finer range's bound is the smaller.
    rng = np.random.default_rng(4)
    a, b = (unit_rows(rng.standard_normal((300, 96)).astype(np.float32), torch.device("cpu")) for _ in range(2))
    bounds = {}
    for levels in (RIGHT_LEVELS, WIDE_RIGHT_LEVELS):
        monkeypatch.setattr(int8_screen, "right_levels", lambda levels=levels: levels)
        source = Int8Cosines(a, b)
        bounds[levels] = float(np.median(source.error.col_err))
        screened = source.screen(np.arange(300)).numpy().astype(np.float64)
        exact = a.double().numpy() @ b.double().numpy().T
        upper = source.error.pair_upper(np.repeat(np.arange(300), 300), np.tile(np.arange(300), 300), screened.reshape(-1))
        assert (upper.reshape(300, 300) >= exact).all()
    assert bounds[WIDE_RIGHT_LEVELS] < 0.6 * bounds[RIGHT_LEVELS]


def test_rounding_errors_are_exact_and_integers_in_range():
    # |x - s q| and |s q| against rational arithmetic; rows of every scale, a zero row, a subnormal one.
    rng = np.random.default_rng(5)
    x = rng.standard_normal((6, 37)).astype(np.float32) * np.float32([1, 1e-3, 1e3, 1, 0, 1e-40])[:, None]
    x[3, 5] = 40.0  # one large coordinate: a coarse step for the rest of the row
    for levels, offset, dtype in ((LEFT_LEVELS, ZERO_POINT, np.uint8), (RIGHT_LEVELS, 0, np.int8)):
        q, scale, err, norm, x_norm = quantized(torch.from_numpy(x), levels, offset, dtype)
        k = q.numpy().astype(np.int64) - offset
        assert np.abs(k).max() <= levels and (np.abs(k).max(axis=1)[[0, 1, 2, 3]] == levels).all()
        for i in range(len(x)):
            s = Fraction(float(scale[i]))
            e2 = sum((Fraction(float(v)) - s * int(kk)) ** 2 for v, kk in zip(x[i], k[i]))
            n2 = sum((s * int(kk)) ** 2 for kk in k[i])
            assert float(e2) ** 0.5 <= err[i] <= float(e2) ** 0.5 * (1 + 1e-12) + 1e-300
            assert float(n2) ** 0.5 <= norm[i] <= float(n2) ** 0.5 * (1 + 1e-12) + 1e-300
            x2 = sum(Fraction(float(v)) ** 2 for v in x[i])
            assert float(x2) ** 0.5 <= x_norm[i] <= float(x2) ** 0.5 * (1 + 1e-12) + 1e-300
            # Rounding to nearest: no integer is more than half a step from x / s.
            assert all(abs(Fraction(float(v)) / s - int(kk)) <= Fraction(1, 2) for v, kk in zip(x[i], k[i]))
        assert err[4] == 0 and norm[4] == 0 and x_norm[4] == 0
    x[2, 3] = np.nan
    with pytest.raises(ValueError, match="row 2 of a dictionary"):
        quantized(torch.from_numpy(x), LEFT_LEVELS, ZERO_POINT, np.uint8)


def test_auto_screens_in_int8_where_neighbours_compete_and_its_products_check_out(monkeypatch):
    # Three kinds: neighbours that compete; unrelated directions in d = 64, where int8's bound is a tenth of the gap
    # between a row's largest value and its tail; unrelated in d = 768, where it is half with right rows at +-63 (as
    # the random 16K pair's on an AVX2 CPU) and under INT8_MAX_SHARE at +-127 (VNNI, AMX: int8 took that pair 2.7-3.1 s against
    # bf16's 3.9-4.2 s on an AVX512-BF16 EPYC).
    rng = np.random.default_rng(2)
    n, d = 2000, 64
    unrelated = unit_rows(rng.standard_normal((n, d)).astype(np.float32), torch.device("cpu"))
    wide = unit_rows(rng.standard_normal((n, 768)).astype(np.float32), torch.device("cpu"))
    basis = rng.standard_normal((16, d))
    mixed = unit_rows((rng.uniform(0, 1, (n, 16)) ** 4 @ basis).astype(np.float32), torch.device("cpu"))
    assert neighbours_compete(mixed, mixed, 48) and not neighbours_compete(unrelated, unrelated, 48)
    assert not neighbours_compete(wide, wide, 48)
    monkeypatch.setattr(int8_screen, "right_levels", lambda: WIDE_RIGHT_LEVELS)
    assert int8_error_share(wide, wide, 48) < INT8_MAX_SHARE
    monkeypatch.setattr(int8_screen, "right_levels", lambda: RIGHT_LEVELS)
    assert int8_error_share(unrelated, unrelated, 48) < INT8_MAX_SHARE < int8_error_share(wide, wide, 48)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert isinstance(screen_source(mixed, mixed, "auto", 48), Int8Cosines) == int8_products_exact()
        assert isinstance(screen_source(unrelated, unrelated, "auto", 48), Int8Cosines) == int8_products_exact()
        assert isinstance(screen_source(wide, wide, "auto", 48), ScreenedCosines)
        assert isinstance(screen_source(wide, wide, "int8", 48), Int8Cosines) == int8_products_exact()
    monkeypatch.setattr(int8_screen, "int8_products_exact", lambda: False)
    assert isinstance(screen_source(mixed, mixed, "auto", 48), ScreenedCosines)  # silently float32 (bf16 where native)
    with pytest.warns(UserWarning, match="int8 products"):
        fallback = screen_source(mixed, mixed, "int8", 48)
    assert isinstance(fallback, ScreenedCosines) and fallback.precision == "fp32"
    with pytest.raises(ValueError, match="precision='int8'"):
        ScreenedCosines(mixed, mixed, precision="int8")


def test_a_coarse_screen_keeps_its_values_where_nothing_competes():
    # The real 16K pair (d = 576, reserve 48): int8's 0.016 is a third of the gap between an unrelated row's largest
    # value and its tail (0.045), so rows come back and are read from the kept values; float32's and bf16's errors not.
    assert coarse_screen(0.016, 16384, 576, 48)
    assert not coarse_screen(5e-5, 16384, 576, 48) and not coarse_screen(4e-3, 16384, 576, 48)
    assert not coarse_screen(1.0, 16384, None, 48)  # a given matrix decides on its tails alone


def test_the_wide_range_is_tried_only_where_the_cpu_flags_allow_int32_sums(monkeypatch):
    import io

    def cpuinfo(text):
        return lambda *args, **kwargs: io.StringIO(text)

    monkeypatch.setattr(int8_screen, "open", cpuinfo("processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\n"), raising=False)
    assert not int8_screen._may_sum_in_int32()  # an AVX2-only CPU: its pair sums saturate at +-127
    monkeypatch.setattr(int8_screen, "open", cpuinfo("flags\t\t: fpu avx2 avx512f avx512_vnni\n"), raising=False)
    assert int8_screen._may_sum_in_int32()
    monkeypatch.setattr(int8_screen, "open", cpuinfo("processor\t: 0\n"), raising=False)  # no flags line: the check decides
    assert int8_screen._may_sum_in_int32()

    def unreadable(*args, **kwargs):
        raise OSError("no /proc here")

    monkeypatch.setattr(int8_screen, "open", unreadable, raising=False)
    assert int8_screen._may_sum_in_int32()
