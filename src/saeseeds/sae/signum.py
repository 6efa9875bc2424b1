"""Schedule-free sign descent (sparsify's default optimiser), with its update fused into one pass on CPU.

Written out, one step is three lerps of the weights towards the sign-descent iterate, a sign and an add:
five passes over the weights (about 10% of a training step at 4,608 latents). On CPU the same arithmetic
runs as one pass per tensor in numba (`signum_kernels`), each element computed exactly as torch's scalar
`lerp` and `sign` compute it, without fused multiply-adds, so the result does not depend on the vector
width of the CPU, on the thread count or on how the tensors are split. Other devices keep the foreach ops.
"""

from __future__ import annotations

import torch

from saeseeds.common.hardware import compiled_kernels_apply

PARALLEL_MIN = 1 << 16
"""Tensors with fewer elements are updated on one thread: a parallel region costs more than they do."""


class ScheduleFreeSignum(torch.optim.Optimizer):
    """Sign descent inside a schedule-free wrapper: sparsify's `ScheduleFreeWrapper(SignSGD(...),
    momentum=0.95)` (Defazio et al. 2024), written out.

    The parameters hold y (where gradients are taken); the state holds z (the sign-descent iterate).
    The weights to evaluate and save are x, returned by `eval_params`. A step consumes the gradients
    (they hold their signs afterwards).
    """

    def __init__(self, params, lr: float, momentum: float = 0.95, weight_lr_power: float = 2.0):
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_lr_power": weight_lr_power, "weight_sum": 0.0, "lr_max": 0.0, "k": 0})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            lr, beta = group["lr"], group["momentum"]
            group["lr_max"] = max(lr, group["lr_max"])
            weight = group["lr_max"] ** group["weight_lr_power"]
            group["weight_sum"] += weight
            ckp1 = weight / group["weight_sum"]
            params = [p for p in group["params"] if p.grad is not None]
            for p in params:
                if "z" not in self.state[p]:
                    self.state[p]["z"] = p.detach().clone()
            zs = [self.state[p]["z"] for p in params]
            grads = [p.grad for p in params]
            # p goes y -> x -> averaged x -> new y; z takes one signed step.
            w_in, w_avg, w_out = 1 - 1 / beta, ckp1, 1 - beta
            if compiled_kernels_apply(*params, *zs, *grads):
                # Imported here: numba's start-up is paid only by runs that take this path.
                from saeseeds.sae.signum_kernels import fused_step

                for p, z, g in zip(params, zs, grads):
                    fused_step(p, z, g, w_in, lr, w_avg, w_out, parallel=p.numel() >= PARALLEL_MIN)
            else:
                torch._foreach_lerp_(params, zs, w_in)
                torch._foreach_sign_(grads)
                torch._foreach_add_(zs, grads, alpha=-lr)
                torch._foreach_lerp_(params, zs, w_avg)
                torch._foreach_lerp_(params, zs, w_out)
            group["k"] += 1

    @torch.no_grad()
    def eval_params(self) -> dict[torch.Tensor, torch.Tensor]:
        """Returns {param: x}, the averaged weights the schedule-free method evaluates."""
        out = {}
        for group in self.param_groups:
            for p in group["params"]:
                z = self.state[p].get("z")
                out[p] = p.detach().clone() if z is None else torch.lerp(p, z, 1 - 1 / group["momentum"])
        return out

