"""The bf16-screened top-k keeps a float32 top-k over all latents, whatever the screen's rounding.

Checked against float64 ground truth: every latent left out is no larger than the smallest kept one
(up to the float32 rounding any float32 trainer has), and kept values are float32 dot products. Both
selections after the screen's matmul are checked: the compiled one CPU training takes and torch's ops,
which other devices take.
"""

import numpy as np
import pytest
import torch

import saeseeds.sae.screen_select as screen_select
import saeseeds.sae.screened_topk as screened_module
from saeseeds.common.selection import kth_largest_int16
from saeseeds.sae.fp32_topk import topk_with_bias
from saeseeds.sae.screened_topk import GROUP, screened_topk, usable


@pytest.fixture(params=["compiled", "torch ops"])
def selection(request, monkeypatch):
    """Runs a test through each selection after the screen's matmul."""
    if request.param == "torch ops":
        monkeypatch.setattr(screened_module, "_compiled_selection_applies", lambda *t: False)
    return request.param


def _check_top_k(x, w, b, k, values, indices):
    exact = x.double() @ w.double().T + b.double()  # [B, n]
    # float32 rounding of a dot product of d terms plus the bias: the slack any float32 top-k has
    slack = (x.shape[1] + 2) * 2.0**-24 * (x.double().norm(dim=1)[:, None] * w.double().norm(dim=1)[None, :] + b.double().abs())
    kept = torch.zeros_like(exact, dtype=torch.bool).scatter_(1, indices, True)
    assert (kept.sum(1) == k).all(), "indices must be k distinct latents per row"
    # a left-out latent's float32 value (>= exact - slack) never beats a kept one's (<= exact + slack)
    min_kept = torch.where(kept, exact + slack, torch.inf).amin(1)
    max_left = torch.where(kept, -torch.inf, exact - slack).amax(1)
    assert (max_left <= min_kept).all(), "a left-out latent beats a kept one"
    got = exact.gather(1, indices)
    assert ((values.double() - got).abs() <= slack.gather(1, indices)).all(), "kept values are not the float32 dot products"


def _heavy_tailed(B, d, generator):
    """Activations like a transformer's: a few outlier coordinates, a shared mean, varied norms."""
    x = torch.randn(B, d, generator=generator) * torch.rand(B, 1, generator=generator) * 3
    x[:, :4] *= 40
    return x + torch.randn(d, generator=generator)


def _no_float32_path(*args, **kwargs):
    raise AssertionError("finite inputs must be screened, not computed by the float32 path")


@pytest.mark.parametrize("seed", range(6))
def test_screened_topk_is_a_float32_top_k(seed, selection, monkeypatch):
    g = torch.Generator().manual_seed(seed)
    B, d, n, k = 700, 96, 64 * GROUP // 8, 8  # 700 rows: a whole block and a partial one
    x = _heavy_tailed(B, d, g)
    w = torch.randn(n, d, generator=g) / d**0.5
    b = torch.randn(n, generator=g) * 0.5
    with monkeypatch.context() as m:
        m.setattr(torch, "addmm", _no_float32_path)
        values, indices = screened_topk(x, w, b, k)
    _check_top_k(x, w, b, k, values, indices)
    ref_v, ref_i = torch.addmm(b, x, w.T).topk(k, dim=-1, sorted=False)
    # same latents as the float32 path on all but near-tied rows
    same = (indices.sort(1).values == ref_i.sort(1).values).all(1).float().mean()
    assert same > 0.99


def test_near_duplicate_latents_still_exact(selection):
    """Blocks of latents within the screen's error of each other: the candidates widen, the answer stays exact."""
    g = torch.Generator().manual_seed(7)
    B, d, k = 300, 64, 16
    base = torch.randn(128, d, generator=g)
    w = (base.repeat_interleave(4, 0) + 1e-4 * torch.randn(512, d, generator=g))
    b = torch.zeros(512)
    x = torch.randn(B, d, generator=g)
    values, indices = screened_topk(x, w, b, k)
    _check_top_k(x, w, b, k, values, indices)


def test_negative_pre_activations_compare_as_floats(selection):
    """All pre-activations below zero (a large negative bias): thresholds are negative, the bf16 compare is used."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(200, 48, generator=g)
    w = torch.randn(256, 48, generator=g)
    b = torch.full((256,), -100.0) + torch.randn(256, generator=g)
    values, indices = screened_topk(x, w, b, 8)
    assert (values < 0).all()
    _check_top_k(x, w, b, 8, values, indices)


def test_compiled_selection_keeps_the_lowest_columns_of_ties_as_fp32_topk_does(monkeypatch):
    """Small integers make every dot product exact, so ties are real: the screened selection then equals the
    float32 path's compiled one (`fp32_topk`) bit for bit, ties to the lowest columns, in column order, and rows
    with more candidates than the first pass holds (every latent tied) are screened again with room for all."""
    g = torch.Generator().manual_seed(2)
    n, d, k = 512, 24, 8
    x = torch.randint(-3, 4, (300, d), generator=g).float()
    w = torch.randint(-2, 3, (n // 4, d), generator=g).float().repeat(4, 1)  # every latent four times
    b = torch.randint(-2, 3, (n // 4,), generator=g).float().repeat(4)
    x[0] = 0.0  # all n latents tie at their bias values' maxima
    monkeypatch.setattr(screen_select, "CAP", 16)
    values, indices = screened_topk(x, w, b, k)
    ref_v, ref_i = topk_with_bias(x @ w.T, b, k)
    assert torch.equal(indices, ref_i)
    assert torch.equal(values, ref_v)
    assert (indices.diff(dim=1) > 0).all()


def test_compiled_selection_uses_the_proofs_constants():
    assert screen_select.GROUP == GROUP
    assert screen_select.REL16 == screened_module._REL16


def test_radix_select_of_int16_keys_is_the_kth_largest():
    from numba import njit

    @njit
    def kth(v, k):
        return kth_largest_int16(v, len(v), k, np.empty(256, dtype=np.int64))

    rng = np.random.default_rng(0)
    for trial in range(400):
        size = int(rng.integers(1, 300))
        k = int(rng.integers(1, size + 1))
        low, high = (-32768, 32768) if trial % 2 else (-3, 3)  # spread out, or mostly ties
        v = rng.integers(low, high, size).astype(np.int16)
        assert kth(v, k) == np.sort(v)[::-1][k - 1]


def test_a_block_with_non_finite_inputs_takes_the_float32_path():
    """NaN or inf has no error bound: that block is computed as the float32 path computes it, NaN included."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(40, 32, generator=g)
    x[5, 3] = float("nan")
    x[9, 0] = float("inf")
    w = torch.randn(256, 32, generator=g)
    b = torch.zeros(256)
    values, indices = screened_topk(x, w, b, 4)
    ref_v, ref_i = torch.addmm(b, x, w.T).topk(4, dim=-1, sorted=False)
    torch.testing.assert_close(values, ref_v, equal_nan=True)
    assert torch.equal(indices[:5], ref_i[:5])


def test_usable_needs_whole_groups_and_k_of_them():
    assert usable(4608, 32)
    assert not usable(4608 + 1, 32)
    assert not usable(GROUP * 8, 16)


def test_training_step_with_the_screen_keeps_the_float32_latents():
    """StackedSae's topk loss through the screen: the same latents and, to float32 rounding, the same loss and gradients."""
    from saeseeds.sae.coder import SaeConfig
    from saeseeds.sae.stacked import StackedSae

    g = torch.Generator().manual_seed(11)
    x = _heavy_tailed(512, 64, g)
    results = []
    for screen in (False, True):
        model = StackedSae(64, SaeConfig(num_latents=512, k=16), [0, 1])
        model.init_from_first_batch(x, "mean")
        model.screen_topk = screen
        out = model.training_losses(x, dead_mask=None, coef={"auxk_alpha": 0.0})
        out["loss"].sum().backward()
        results.append((out, {name: p.grad.clone() for name, p in model.named_parameters()}))
    (plain, plain_grads), (screened, screened_grads) = results
    assert torch.equal(plain["fired"], screened["fired"])
    torch.testing.assert_close(screened["loss"], plain["loss"], rtol=1e-5, atol=1e-6)
    for name, grad in plain_grads.items():
        torch.testing.assert_close(screened_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_bf16_is_not_native_when_onednn_is_held_to_avx2(monkeypatch):
    """Emulating an AVX2-only CPU on an AVX-512 one must also emulate its choice of screen (float32)."""
    from saeseeds.common.hardware import native_bf16

    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert not native_bf16(torch.device("cpu"))
