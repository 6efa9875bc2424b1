"""Several seeds of one SAE as stacked tensors, with the losses of every architecture and a sparse
backward for the k-sparse ones.

Parameters carry a leading seed axis S (`W_enc` [S, n, d], `b_enc` [S, n], `W_dec` [S, n, d],
`b_dec` [S, d]); seeds never interact, so one backward of the summed loss gives each seed exactly the
gradient it would get alone. The maths is `sae.SparseCoder`'s; `to_coders` hands each seed back to it
for checkpointing.

Why it is fast on a CPU: for topk/batchtopk the only dense work is the encoder matmul and the top-k.
The backward never forms a dense [B, n] gradient: the encoder weight gradient is a CSR (latent-major)
times dense product over the B*k selected (token, latent) pairs, and the decoder is an embedding_bag,
whose backward is likewise sparse. sparsify's backward instead materialises a [B*k, d] tensor for
`index_add_`, which is bound by memory traffic.

Loss convention for every arch: the reconstruction term is the FVU, and sparsity coefficients are in
the units of a loss on activations rescaled to mean squared norm d (SAELens' `expected_average_only_in`
normalisation, Anthropic's April 2024 convention), i.e. that loss divided by d * Var(x) / E||x||^2.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from saeseeds.sae import SaeConfig, SparseCoder, init_encoder_weight

SPARSE_ARCHS = ("topk", "batchtopk")


class Pattern:
    """Selected (token, latent) pairs of all seeds in flat coordinates, sorted by token.

    `tok` indexes the S*B stacked tokens and `lat` the S*n stacked latents, so the seeds share one
    embedding_bag and one CSR product. The latent-major CSR is built once and shared by every
    backward that needs it.
    """

    def __init__(self, tok: Tensor, lat: Tensor, num_tokens: int, num_latents: int, *, bag_size: int | None = None):
        self.tok, self.lat = tok, lat
        self.num_tokens, self.num_latents = num_tokens, num_latents
        self.bag_size = bag_size
        self._csr: tuple[Tensor, Tensor, Tensor] | None = None

    @classmethod
    def from_topk(cls, idx: Tensor, num_latents_per_seed: int) -> "Pattern":
        """Returns the pattern of a [S, B, k] index tensor (k latents for every token)."""
        S, B, k = idx.shape
        lat = (idx + torch.arange(S, device=idx.device)[:, None, None] * num_latents_per_seed).reshape(-1)
        tok = torch.arange(S * B, device=idx.device).repeat_interleave(k)
        return cls(tok, lat, S * B, S * num_latents_per_seed, bag_size=k)

    def offsets(self) -> Tensor:
        """Returns embedding_bag offsets: where each token's pairs start."""
        counts = torch.bincount(self.tok, minlength=self.num_tokens)
        return torch.cumsum(counts, 0) - counts

    def decode(self, weight: Tensor, values: Tensor) -> Tensor:
        """Returns sum over each token's pairs of value * weight[lat], [S*B, d]."""
        if self.bag_size is not None:
            shape = (self.num_tokens, self.bag_size)
            return F.embedding_bag(self.lat.view(shape), weight, per_sample_weights=values.reshape(shape), mode="sum")
        return F.embedding_bag(self.lat, weight, self.offsets(), per_sample_weights=values, mode="sum")

    def csr(self) -> tuple[Tensor, Tensor, Tensor]:
        """Returns (order, crow, col): pairs sorted by latent (stable), row pointers, their tokens."""
        if self._csr is None:
            order = torch.argsort(self.lat, stable=True)
            crow = torch.zeros(self.num_latents + 1, dtype=torch.long, device=self.lat.device)
            crow[1:] = torch.cumsum(torch.bincount(self.lat, minlength=self.num_latents), 0)
            self._csr = (order, crow, self.tok[order])
        return self._csr

    def transpose_matmul(self, values: Tensor, dense: Tensor) -> Tensor:
        """Returns A^T @ dense, A the sparse [tokens, latents] matrix holding `values` at the pairs."""
        order, crow, col = self.csr()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
            a_t = torch.sparse_csr_tensor(crow, col, values[order].contiguous(), size=(self.num_latents, self.num_tokens), check_invariants=False)
            return (a_t @ dense).to_dense() if dense.is_cuda else a_t @ dense


class _SparseRows(torch.autograd.Function):
    """Attaches to precomputed pre-activation values at `pattern`'s pairs the gradient of
    pre[t, i] = xc[t] . W[i] + b[i], computed sparsely."""

    @staticmethod
    def forward(ctx, values: Tensor, xc: Tensor, weight: Tensor, bias: Tensor, pattern: Pattern) -> Tensor:
        ctx.save_for_backward(xc, weight)
        ctx.pattern = pattern
        return values.clone()

    @staticmethod
    def backward(ctx, grad: Tensor):
        xc, weight = ctx.saved_tensors
        p: Pattern = ctx.pattern
        grad = grad.contiguous()
        grad_xc = grad_w = grad_b = None
        if ctx.needs_input_grad[1]:
            grad_xc = p.decode(weight, grad)
        if ctx.needs_input_grad[2]:
            grad_w = p.transpose_matmul(grad, xc)
        if ctx.needs_input_grad[3]:
            grad_b = torch.zeros(p.num_latents, dtype=grad.dtype, device=grad.device).index_add_(0, p.lat, grad)
        return None, grad_xc, grad_w, grad_b, None


class _Step(torch.autograd.Function):
    """Heaviside H(pre - threshold) whose gradient reaches only the threshold, through a rectangle
    kernel of width `bandwidth` (DeepMind's JumpReLU L0 estimator; SAELens' default)."""

    @staticmethod
    def forward(ctx, pre: Tensor, threshold: Tensor, bandwidth: float) -> Tensor:
        ctx.save_for_backward(pre, threshold)
        ctx.bandwidth = bandwidth
        return (pre > threshold).to(pre.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):
        pre, threshold = ctx.saved_tensors
        bw = ctx.bandwidth
        window = ((pre - threshold).abs() < bw / 2).to(pre.dtype)
        return None, (-(window / bw) * grad).sum_to_size(threshold.shape), None


class _JumpReLU(torch.autograd.Function):
    """pre * H(pre - threshold); the threshold's gradient is the kernel estimate -threshold/bw * K."""

    @staticmethod
    def forward(ctx, pre: Tensor, threshold: Tensor, bandwidth: float) -> Tensor:
        ctx.save_for_backward(pre, threshold)
        ctx.bandwidth = bandwidth
        return pre * (pre > threshold)

    @staticmethod
    def backward(ctx, grad: Tensor):
        pre, threshold = ctx.saved_tensors
        bw = ctx.bandwidth
        window = ((pre - threshold).abs() < bw / 2).to(pre.dtype)
        return grad * (pre > threshold), (-(threshold / bw) * window * grad).sum_to_size(threshold.shape), None


class StackedSae(nn.Module):
    """S seeds of one SAE config, trained together on the same batches."""

    def __init__(self, d_in: int, cfg: SaeConfig, seeds: list[int], *, device: str | torch.device = "cpu"):
        super().__init__()
        if not seeds:
            raise ValueError("seeds: need at least one")
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds={seeds}: duplicates")
        self.cfg, self.d_in, self.seeds = cfg, d_in, [int(s) for s in seeds]
        S, n = len(seeds), cfg.num_latents
        weight = torch.stack([init_encoder_weight(n, d_in, s) for s in self.seeds])
        self.W_enc = nn.Parameter(weight.to(device))
        self.b_enc = nn.Parameter(torch.zeros(S, n, device=device))
        dec = weight.clone()
        if cfg.normalize_decoder:
            dec /= dec.norm(dim=-1, keepdim=True) + torch.finfo(dec.dtype).eps
        self.W_dec = nn.Parameter(dec.to(device))
        self.b_dec = nn.Parameter(torch.zeros(S, d_in, device=device))
        if cfg.arch == "jumprelu":
            self.threshold = nn.Parameter(torch.full((S, n), float(cfg.jumprelu_init_threshold), device=device))
        elif cfg.arch == "gated":
            self.r_mag = nn.Parameter(torch.zeros(S, n, device=device))
            self.b_mag = nn.Parameter(torch.zeros(S, n, device=device))
        # sqrt(d / E||x||^2) of the first batch: converts JumpReLU's threshold and bandwidth, given for
        # activations rescaled to mean squared norm d, into input units
        self.register_buffer("input_scale", torch.ones((), device=device))
        if cfg.arch == "batchtopk":
            # Bias-corrected EMA of the smallest kept activation; the threshold used at inference
            self.register_buffer("threshold_ema", torch.zeros(S, device=device))
            self.register_buffer("threshold_updates", torch.zeros((), dtype=torch.long, device=device))

    @property
    def num_seeds(self) -> int:
        return len(self.seeds)

    @torch.no_grad()
    def init_from_first_batch(self, x: Tensor) -> None:
        """Sets b_dec to the batch mean (the paper's recipe), the input scale, and JumpReLU thresholds."""
        self.b_dec.copy_(x.mean(0).expand_as(self.b_dec))
        self.input_scale.fill_(torch.sqrt(self.d_in / x.pow(2).sum(1).mean()).item())
        if self.cfg.arch == "jumprelu":
            self.threshold.fill_(self.cfg.jumprelu_init_threshold / float(self.input_scale))

    def jumprelu_bandwidth(self) -> float:
        """Returns the kernel width in input units."""
        return self.cfg.jumprelu_bandwidth / float(self.input_scale)

    def batchtopk_threshold(self) -> Tensor:
        """Returns the per-seed inference threshold of a batchtopk SAE [S]."""
        t = int(self.threshold_updates)
        if t == 0:
            return torch.zeros_like(self.threshold_ema)
        return self.threshold_ema / (1 - (1 - BATCHTOPK_THRESHOLD_LR) ** t)

    # -- forward -----------------------------------------------------------------------------

    def centred(self, x: Tensor) -> Tensor:
        """Returns x - b_dec for every seed, [S, B, d]."""
        return x[None] - self.b_dec[:, None, :]

    def pre_acts(self, xc: Tensor) -> Tensor:
        """Returns W_enc xc + b_enc for every seed, [S, B, n]."""
        return torch.baddbmm(self.b_enc[:, None, :], xc, self.W_enc.transpose(1, 2))

    def encode(self, x: Tensor) -> tuple[Tensor, Pattern | None]:
        """Returns the latents at inference: (values at pattern pairs, pattern) for topk, dense
        [S, B, n] activations and None for the other archs (batchtopk uses its learnt threshold)."""
        arch, xc = self.cfg.arch, self.centred(x)
        pre = self.pre_acts(xc)
        if arch == "topk":
            vals, idx = pre.topk(self.cfg.k, dim=-1, sorted=False)
            return F.relu(vals).reshape(-1), Pattern.from_topk(idx, self.cfg.num_latents)
        if arch == "batchtopk":
            thr = self.batchtopk_threshold()[:, None, None]
            return pre * (pre > thr) * (pre > 0), None
        if arch == "relu":
            return F.relu(pre), None
        if arch == "jumprelu":
            return pre * (pre > self.threshold[:, None, :]), None
        if arch == "gated":
            mag = torch.baddbmm(self.b_mag[:, None, :], xc, (self.W_enc * self.r_mag.exp()[..., None]).transpose(1, 2))
            return F.relu(mag) * (pre > 0), None
        raise ValueError(f"arch {arch!r}")

    def decode(self, acts: Tensor, pattern: Pattern | None, num_tokens: int) -> Tensor:
        """Returns reconstructions [S, B, d] from `encode`'s output."""
        S, n, d = self.W_dec.shape
        if pattern is None:
            return torch.baddbmm(self.b_dec[:, None, :], acts, self.W_dec)
        out = pattern.decode(self.W_dec.reshape(S * n, d), acts).view(S, num_tokens, d)
        return out + self.b_dec[:, None, :]

    def training_losses(self, x: Tensor, *, dead_mask: Tensor | None, coef: dict[str, float]) -> dict[str, Tensor]:
        """Returns per-seed training terms [S]: `loss` (to sum and backpropagate) = `fvu` + `penalty`
        (weighted sparsity term) + weighted `aux` (AuxK, or gated's gate reconstruction), and `l0`; plus
        `fired` [S, n] (latents active on this batch) and, for batchtopk, `min_act` [S]."""
        arch = self.cfg.arch
        S, n, d = self.W_dec.shape
        B = len(x)
        # Scales shared by all seeds (they read the same batch); see the module docstring
        total_var = (x - x.mean(0)).pow(2).sum()
        sq_norm = x.pow(2).sum(1).mean()
        gamma = torch.sqrt(d / sq_norm)
        xc = self.centred(x)
        out: dict[str, Tensor] = {}
        aux = x.new_zeros(S)

        if arch in SPARSE_ARCHS:
            with torch.no_grad():
                pre = self.pre_acts(xc)
            if arch == "topk":
                vals, idx = pre.topk(self.cfg.k, dim=-1, sorted=False)
                pattern = Pattern.from_topk(idx, n)
                vals = vals.reshape(-1)
            else:
                pattern, vals = _batch_topk(pre, self.cfg.k * B)
            acts = F.relu(_SparseRows.apply(vals, xc.reshape(S * B, d), self.W_enc.reshape(S * n, d), self.b_enc.reshape(S * n), pattern))
            x_hat = pattern.decode(self.W_dec.reshape(S * n, d), acts).view(S, B, d) + self.b_dec[:, None, :]
            on = acts.detach() > 0
            fired = torch.bincount(pattern.lat[on], minlength=S * n).view(S, n) > 0
            out["l0"] = torch.bincount(pattern.tok[on] // B, minlength=S).to(x.dtype) / B
            if arch == "batchtopk":
                big = torch.finfo(acts.dtype).max
                seed_of = pattern.tok // B
                out["min_act"] = torch.full((S,), big, device=x.device).scatter_reduce(0, seed_of[on], acts.detach()[on], "amin")
            e = x[None] - x_hat
            if dead_mask is not None and coef.get("auxk_alpha", 0.0) > 0 and bool(dead_mask.any()):
                aux = _auxk(pre, xc, e.detach(), self, dead_mask, total_var)
            loss_pen = x.new_zeros(S)
        else:
            pre = self.pre_acts(xc)
            norms = self.W_dec.norm(dim=-1)  # [S, n]
            if arch == "relu":
                acts = F.relu(pre)
                penalty = (acts * norms[:, None, :]).sum(-1).mean(-1) / (gamma * total_var / B)
            elif arch == "jumprelu":
                bw = self.jumprelu_bandwidth()
                acts = _JumpReLU.apply(pre, self.threshold[:, None, :], bw)
                l0 = _Step.apply(pre, self.threshold[:, None, :], bw).sum(-1).mean(-1)
                penalty = l0 / (gamma**2 * total_var / B)
            elif arch == "gated":
                w_mag = self.W_enc * self.r_mag.exp()[..., None]
                mag = F.relu(torch.baddbmm(self.b_mag[:, None, :], xc, w_mag.transpose(1, 2)))
                acts = mag * (pre > 0)
                gate = F.relu(pre)
                penalty = (gate * norms[:, None, :]).sum(-1).mean(-1) / (gamma * total_var / B)
                # The gate path must reconstruct too, through a frozen copy of the decoder
                x_gate = torch.baddbmm(self.b_dec.detach()[:, None, :], gate, self.W_dec.detach())
                aux = (x[None] - x_gate).pow(2).sum((1, 2)) / total_var
            else:
                raise ValueError(f"arch {arch!r}")
            x_hat = torch.baddbmm(self.b_dec[:, None, :], acts, self.W_dec)
            e = x[None] - x_hat
            with torch.no_grad():
                on = acts > 0
                fired = on.any(1)
                out["l0"] = on.sum((1, 2)).to(x.dtype) / B
            loss_pen = coef["sparsity"] * penalty
        fvu = e.pow(2).sum((1, 2)) / total_var
        aux_weight = coef.get("auxk_alpha", 0.0) if arch in SPARSE_ARCHS else 1.0
        out.update(loss=fvu + loss_pen + aux_weight * aux, fvu=fvu, penalty=loss_pen, aux=aux, fired=fired)
        return out

    @torch.no_grad()
    def update_batchtopk_threshold(self, min_act: Tensor) -> None:
        """Moves the inference threshold towards this batch's smallest kept activation (per seed)."""
        # a seed that kept no positive activation (never in practice) keeps its estimate
        current = self.batchtopk_threshold()
        min_act = torch.where(min_act == torch.finfo(min_act.dtype).max, current, min_act)
        self.threshold_ema.mul_(1 - BATCHTOPK_THRESHOLD_LR).add_(BATCHTOPK_THRESHOLD_LR * min_act)
        self.threshold_updates += 1

    # -- constraints -----------------------------------------------------------------------------

    @torch.no_grad()
    def set_decoder_norm_to_unit_norm(self) -> None:
        """Rescales every decoder row of every seed to unit norm (eps as in sparsify)."""
        eps = torch.finfo(self.W_dec.dtype).eps
        self.W_dec.div_(self.W_dec.norm(dim=-1, keepdim=True) + eps)

    @torch.no_grad()
    def remove_gradient_parallel_to_decoder_directions(self) -> None:
        """Projects the component along each decoder row out of W_dec.grad."""
        parallel = (self.W_dec.grad * self.W_dec).sum(-1, keepdim=True)
        self.W_dec.grad.sub_(parallel * self.W_dec)

    @torch.no_grad()
    def clip_grad_norm_(self, max_norm: float) -> Tensor:
        """Clips each seed's gradient to global norm `max_norm` as torch.nn.utils.clip_grad_norm_
        would for that seed alone; returns the per-seed norms before clipping [S]."""
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        sq = torch.stack([g.reshape(self.num_seeds, -1).pow(2).sum(1) for g in grads]).sum(0)
        norms = sq.sqrt()
        factor = (max_norm / (norms + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(factor.view(-1, *([1] * (g.dim() - 1))))
        return norms

    @torch.no_grad()
    def project_parameters(self) -> None:
        """Keeps parameters in their domain after a step: JumpReLU thresholds stay >= 0 (SAELens)."""
        if self.cfg.arch == "jumprelu":
            self.threshold.clamp_(min=0.0)

    # -- conversion --------------------------------------------------------------------------------

    def to_coders(self) -> list[SparseCoder]:
        """Returns one CPU SparseCoder per seed holding that seed's weights."""
        coders = []
        for s, seed in enumerate(self.seeds):
            sae = SparseCoder(self.d_in, self.cfg, seed=seed)
            with torch.no_grad():
                sae.encoder.weight.copy_(self.W_enc[s])
                sae.encoder.bias.copy_(self.b_enc[s])
                sae.W_dec.copy_(self.W_dec[s])
                sae.b_dec.copy_(self.b_dec[s])
                if self.cfg.arch == "jumprelu":
                    sae.threshold.copy_(self.threshold[s])
                elif self.cfg.arch == "gated":
                    sae.r_mag.copy_(self.r_mag[s])
                    sae.b_mag.copy_(self.b_mag[s])
                elif self.cfg.arch == "batchtopk":
                    sae.threshold.copy_(self.batchtopk_threshold()[s])
            coders.append(sae)
        return coders


BATCHTOPK_THRESHOLD_LR = 0.01
"""EMA rate of the batchtopk inference threshold (SAELens' `topk_threshold_lr`; Bussmann et al.)."""


def _batch_topk(pre: Tensor, keep: int) -> tuple[Pattern, Tensor]:
    """Returns the pattern and values of the `keep` largest relu'd pre-activations of each seed's
    whole batch (BatchTopK), pairs sorted by token."""
    S, B, n = pre.shape
    flat = F.relu(pre).reshape(S, B * n)
    _, pos = flat.topk(keep, dim=-1, sorted=False)
    pos, _ = pos.sort(dim=-1)
    tok = (pos // n + torch.arange(S, device=pre.device)[:, None] * B).reshape(-1)
    lat = (pos % n + torch.arange(S, device=pre.device)[:, None] * n).reshape(-1)
    vals = pre.reshape(S, B * n).gather(1, pos).reshape(-1)
    return Pattern(tok, lat, S * B, S * n), vals


def _auxk(pre: Tensor, xc: Tensor, e: Tensor, sae: StackedSae, dead_mask: Tensor, total_var: Tensor) -> Tensor:
    """Returns the per-seed AuxK loss [S]: the top d/2 dead latents reconstruct the residual `e`.

    As sparsify 1.3.3 (Gao et al. 2024): no b_dec in the auxiliary decode and a scale
    min(dead / (d/2), 1). Unlike sparsify, whose fused encoder drops the gradient of this loss to
    the encoder, the gradient reaches the encoder too, as in Gao et al., so dead latents can start firing.
    """
    S, n, d = sae.W_dec.shape
    B = xc.shape[1]
    k_aux = d // 2
    num_dead = dead_mask.sum(1)  # [S]
    scale = (num_dead.to(xc.dtype) / k_aux).clamp(max=1.0)
    kk = int(min(k_aux, int(num_dead.max())))
    masked = torch.where(dead_mask[:, None, :], F.relu(pre), -torch.inf)
    vals, idx = masked.topk(kk, dim=-1, sorted=False)
    valid = torch.isfinite(vals)  # seeds with fewer dead latents than kk pick some live ones: drop them
    pattern = Pattern.from_topk(idx, n)
    raw = _SparseRows.apply(torch.where(valid, vals, 0.0).reshape(-1), xc.reshape(S * B, d), sae.W_enc.reshape(S * n, d), sae.b_enc.reshape(S * n), pattern)
    acts = F.relu(raw) * valid.reshape(-1)
    e_hat = pattern.decode(sae.W_dec.reshape(S * n, d), acts).view(S, B, d)
    return scale * (e_hat - e).pow(2).sum((1, 2)) / total_var


