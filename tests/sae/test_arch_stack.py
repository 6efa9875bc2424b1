"""Tests of the seed-stacked training model: its sparse backward equals dense autograd, seeds stay
independent, and each architecture's activation behaves as its paper says."""

import pytest
import torch
import torch.nn.functional as F

from saeseeds.sae.stacked import StackedSae
from saeseeds.sae.coder import SaeConfig

D, N, K, B = 12, 40, 3, 50


pytestmark = pytest.mark.usefixtures("torch_one_thread")  # conftest: small forwards run faster on one thread


def make(arch="topk", seeds=(0, 1), **kw):
    m = StackedSae(D, SaeConfig(num_latents=N, k=K, arch=arch, **kw), list(seeds))
    g = torch.Generator().manual_seed(9)
    with torch.no_grad():  # move off the symmetric init so every term of the gradient is exercised
        m.b_enc.uniform_(-0.2, 0.2, generator=g)
        m.b_dec.uniform_(-0.5, 0.5, generator=g)
    return m


def batch(seed=1):
    return torch.randn(B, D, generator=torch.Generator().manual_seed(seed)) + 0.3


def dense_reference(m, x, s, select):
    """Autograd through dense ops for seed s: acts = select(relu(pre)) as a dense mask; returns grads."""
    W_enc, b_enc, W_dec, b_dec = (t[s].detach().clone().requires_grad_() for t in (m.W_enc, m.b_enc, m.W_dec, m.b_dec))
    pre = (x - b_dec) @ W_enc.T + b_enc
    mask = select(pre.detach())
    acts = F.relu(pre) * mask
    x_hat = acts @ W_dec + b_dec
    fvu = (x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum()
    fvu.backward()
    return fvu.detach(), [W_enc.grad, b_enc.grad, W_dec.grad, b_dec.grad]


def topk_mask(pre):
    return torch.zeros_like(pre).scatter(1, pre.topk(K, dim=-1).indices, 1.0)


def batchtopk_mask(pre):
    flat = F.relu(pre).flatten()
    return torch.zeros_like(flat).scatter(0, flat.topk(K * len(pre)).indices, 1.0).view_as(pre)


@pytest.mark.parametrize("arch, select", [("topk", topk_mask), ("batchtopk", batchtopk_mask)])
def test_sparse_backward_equals_dense_autograd_for_each_seed(arch, select):
    m, x = make(arch), batch()
    out = m.training_losses(x, dead_mask=None, coef={})
    out["loss"].sum().backward()
    for s in range(2):
        fvu, grads = dense_reference(m, x, s, select)
        assert float(out["fvu"][s].detach()) == pytest.approx(float(fvu), rel=1e-5)
        for got, want in zip((m.W_enc.grad[s], m.b_enc.grad[s], m.W_dec.grad[s], m.b_dec.grad[s]), grads):
            assert torch.allclose(got, want, atol=1e-5, rtol=1e-4)


def test_auxk_gradient_equals_dense_autograd_and_reaches_the_encoder():
    m, x = make("topk", seeds=(0,)), batch()
    dead = torch.zeros(1, N, dtype=torch.bool)
    dead[0, :20] = True
    with torch.no_grad():
        pre = (x - m.b_dec[0]) @ m.W_enc[0].T + m.b_enc[0]
    live_mask = topk_mask(pre)
    dead[0] &= ~live_mask.bool().any(0)  # dead latents do not fire on this batch
    out = m.training_losses(x, dead_mask=dead, coef={"auxk_alpha": 1.0})
    out["aux"].sum().backward()

    W_enc, b_enc, W_dec, b_dec = (t[0].detach().clone().requires_grad_() for t in (m.W_enc, m.b_enc, m.W_dec, m.b_dec))
    pre = (x - b_dec) @ W_enc.T + b_enc
    with torch.no_grad():
        e = x - ((F.relu(pre) * live_mask) @ W_dec + b_dec)
        num_dead, k_aux = int(dead.sum()), D // 2
        masked = torch.where(dead[0], F.relu(pre), -torch.inf)
        aux_mask = torch.zeros_like(pre).scatter(1, masked.topk(min(k_aux, num_dead), dim=-1).indices, 1.0)
    e_hat = (F.relu(pre) * aux_mask) @ W_dec
    aux = min(num_dead / k_aux, 1.0) * (e_hat - e).pow(2).sum() / (x - x.mean(0)).pow(2).sum()
    aux.backward()
    assert float(out["aux"][0].detach()) == pytest.approx(float(aux.detach()), rel=1e-5)
    assert torch.allclose(m.W_enc.grad[0], W_enc.grad, atol=1e-5)
    assert torch.allclose(m.W_dec.grad[0], W_dec.grad, atol=1e-5)
    assert W_enc.grad[dead[0]].abs().sum() > 0  # unlike sparsify's fused encoder, the encoder learns too


def test_seeds_are_independent_and_initialised_from_their_own_seed():
    pair, alone = make(seeds=(3, 4)), make(seeds=(4,))
    assert torch.equal(pair.W_enc[1], alone.W_enc[0])
    with torch.no_grad():
        alone.b_enc.copy_(pair.b_enc[1:])
        alone.b_dec.copy_(pair.b_dec[1:])
    x = batch()
    pair.training_losses(x, dead_mask=None, coef={})["loss"].sum().backward()
    alone.training_losses(x, dead_mask=None, coef={})["loss"].sum().backward()
    assert torch.allclose(pair.W_enc.grad[1], alone.W_enc.grad[0], atol=1e-6)
    assert torch.allclose(pair.W_dec.grad[1], alone.W_dec.grad[0], atol=1e-6)


def test_per_seed_clipping_matches_torch_clip_on_each_seed_alone():
    m = make()
    m.training_losses(batch(), dead_mask=None, coef={})["loss"].sum().backward()
    want = []
    for s in range(2):
        grads = [p.grad[s].clone() for p in m.parameters()]
        norm = torch.sqrt(sum(g.pow(2).sum() for g in grads))
        want.append([g * min(1.0, 0.01 / (float(norm) + 1e-6)) for g in grads])
    m.clip_grad_norm_(0.01)
    for s in range(2):
        for p, w in zip(m.parameters(), want[s]):
            assert torch.allclose(p.grad[s], w, atol=1e-8)


def test_jumprelu_zeroes_below_threshold_and_l0_penalty_raises_thresholds():
    m = make("jumprelu", seeds=(0,))
    x = batch()
    m.init_from_first_batch(x)
    with torch.no_grad():
        m.threshold.fill_(0.2)
    acts, _ = m.encode(x)
    pre = m.pre_acts(m.centred(x))
    assert torch.equal(acts, torch.where(pre > 0.2, pre, torch.zeros_like(pre)))
    # the L0 term alone pushes every threshold with pre-activations in its window upwards
    out = m.training_losses(x, dead_mask=None, coef={"sparsity": 1.0})
    m.zero_grad()
    out["penalty"].sum().backward()
    assert (m.threshold.grad <= 0).all() and (m.threshold.grad < 0).any()
    assert m.W_enc.grad is None or m.W_enc.grad.abs().sum() == 0  # L0 gradient reaches thresholds only


def test_gated_acts_are_gate_times_magnitude():
    m = make("gated", seeds=(0,))
    with torch.no_grad():
        m.r_mag.fill_(0.5)
        m.b_mag.fill_(0.1)
    x = batch()
    acts, _ = m.encode(x)
    xc = x - m.b_dec[0]
    gate = (xc @ m.W_enc[0].T + m.b_enc[0]) > 0
    mag = F.relu(xc @ (m.W_enc[0] * torch.exp(torch.tensor(0.5))).T + 0.1)
    assert torch.allclose(acts[0], mag * gate, atol=1e-6)
    assert (acts[0][~gate] == 0).all()


def test_batchtopk_keeps_k_per_token_on_average_and_learns_a_threshold():
    m, x = make("batchtopk", seeds=(0,)), batch()
    out = m.training_losses(x, dead_mask=None, coef={})
    assert float(out["l0"][0]) <= K + 1e-6
    assert float(m.batchtopk_threshold()[0]) == 0
    m.update_batchtopk_threshold(out["min_act"])
    assert float(m.batchtopk_threshold()[0]) == pytest.approx(float(out["min_act"][0]))  # bias-corrected EMA
    acts, _ = m.encode(x)
    assert ((acts == 0) | (acts >= out["min_act"][0])).all()


def test_auxk_revives_latents_that_never_win_the_top_k():
    """Half the latents get tiny encoder rows, so they are never selected and get no gradient from
    the main loss; only AuxK can bring them back."""
    g = torch.Generator().manual_seed(5)
    dirs = F.normalize(torch.randn(64, 32, generator=g), dim=1)
    codes = torch.zeros(3840, 64).scatter(1, torch.rand(3840, 64, generator=g).topk(3, dim=1).indices, 1.0)
    X = (codes * torch.rand(3840, 64, generator=g) * 2) @ dirs
    alive = {}
    for alpha in (0.0, 1 / 32):
        m = StackedSae(32, SaeConfig(num_latents=128, k=4), [0])
        m.init_from_first_batch(X[:256])
        with torch.no_grad():
            m.W_enc[:, 64:] *= 0.01
        opt = torch.optim.Adam(m.parameters(), lr=3e-3)
        since = torch.zeros(1, 128, dtype=torch.long)
        for step in range(150):
            x = X[(step * 256) % 3840 :][:256]
            out = m.training_losses(x, dead_mask=since > 512, coef={"auxk_alpha": alpha})
            out["loss"].sum().backward()
            m.remove_gradient_parallel_to_decoder_directions()
            opt.step()
            opt.zero_grad()
            m.set_decoder_norm_to_unit_norm()
            since += len(x)
            since[out["fired"]] = 0
        with torch.no_grad():
            acts, pattern = m.encode(X)
        fired = torch.zeros(128, dtype=torch.bool)
        fired[pattern.lat[0][acts > 0]] = True
        alive[alpha] = int(fired[64:].sum())
    assert alive[0.0] == 0
    assert alive[1 / 32] >= 5
