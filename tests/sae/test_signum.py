"""Schedule-free sign descent: the fused CPU step is the written-out arithmetic, bit for bit, at any split."""

from __future__ import annotations

import numpy as np
import torch

from saeseeds.sae.signum import ScheduleFreeSignum
from saeseeds.sae.signum_kernels import fused_step


def reference_steps(y, grads, lr, momentum=0.95):
    """sparsify's ScheduleFreeWrapper(SignSGD) in numpy float32, one rounded operation at a time (no FMA)."""
    f = np.float32
    y, z, weight_sum = y.copy(), y.copy(), 0.0

    def lerp(a, b, w):
        w = f(w)
        return a + w * (b - a) if abs(w) < 0.5 else b - (b - a) * (f(1) - w)

    for g in grads:
        weight_sum += lr**2
        x = lerp(y, z, 1 - 1 / momentum)
        z = z - f(lr) * np.sign(np.nan_to_num(g, nan=0.0)).astype(np.float32)
        y = lerp(lerp(x, z, lr**2 / weight_sum), z, 1 - momentum)
    return y, z


def test_fused_step_is_the_reference_arithmetic_bit_for_bit_and_foreach_within_an_ulp():
    rng = np.random.default_rng(0)
    shapes = [(300, 257), (257,)]  # one tensor updated in parallel, one serially
    init = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [[rng.standard_normal(s).astype(np.float32) for _ in range(4)] for s in shapes]
    grads[0][1][3, :5] = [0.0, -0.0, np.nan, np.inf, -np.inf]
    lr = 3e-2

    def train(layout):
        params = [torch.nn.Parameter(torch.from_numpy(x.copy())) for x in init]
        opt = ScheduleFreeSignum(params, lr=lr)
        for step in range(4):
            for p, g in zip(params, grads):
                grad = torch.from_numpy(g[step].copy())
                p.grad = grad if layout == "contiguous" else grad.t().contiguous().t()  # strided: the foreach path
            opt.step()
        return [p.detach().numpy() for p in params], [opt.state[p]["z"].numpy() for p in params]

    fused, fused_z = train("contiguous")
    foreach, _ = train("strided")
    for x, g, y, z, other in zip(init, grads, fused, fused_z, foreach):
        want_y, want_z = reference_steps(x, g, lr)
        np.testing.assert_array_equal(y, want_y)
        np.testing.assert_array_equal(z, want_z)
        # torch's vector lerp uses fused multiply-adds: a rounding apart, at the scale of the weights
        np.testing.assert_allclose(y, other, rtol=0, atol=4 * np.finfo(np.float32).eps * np.abs(y).max())
    assert not np.array_equal(fused[0], init[0])


def test_fused_step_gives_the_same_bytes_serial_or_parallel():
    rng = np.random.default_rng(1)
    p, z, g = (torch.from_numpy(rng.standard_normal(1 << 17).astype(np.float32)) for _ in range(3))
    out = []
    for parallel in (False, True):
        pp, zz, gg = p.clone(), z.clone(), g.clone()
        fused_step(pp, zz, gg, -0.05, 1e-3, 0.7, 0.05, parallel=parallel)
        out.append((pp, zz, gg))
    for a, b in zip(*out):
        assert torch.equal(a, b)
    assert torch.equal(out[0][2], torch.sign(g))
