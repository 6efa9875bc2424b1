"""Several seeds of one SAE as stacked tensors, with the losses of every architecture and a sparse
backward for the k-sparse ones.

Parameters carry a leading seed axis S (`W_enc` [S, n, d], `b_enc` [S, n], `W_dec` [S, n, d],
`b_dec` [S, d]); seeds never share a sum (per-seed matmuls, embedding bags and CSR rows), so on CPU
every seed's result is bitwise what training it alone gives. The maths is `sae.SparseCoder`'s;
`to_coders` hands each seed back to it for checkpointing.

Why it is fast on a CPU: for topk/batchtopk the only dense work is the encoder matmul and the top-k,
done one seed at a time so a single [B, n] matrix is alive. The backward never forms a dense [B, n]
gradient or a [B*k, d] temporary: both weight gradients are one latent-major CSR (sorted once per
step) times a dense [B, d] matrix, the decoder is an embedding_bag, and b_dec's encoder-side gradient
is -(grad b_enc) @ W_enc. sparsify's backward instead materialises [B*k, d] for `index_add_`, which is
bound by memory traffic.

Loss convention for every arch: the reconstruction term is the FVU, and sparsity coefficients are in
the units of a loss on activations rescaled to mean squared norm d (SAELens' `expected_average_only_in`
normalisation, Anthropic's April 2024 convention), i.e. that loss divided by d * Var(x) / E||x||^2.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from saeseeds.sae.geometric_median import geometric_median
from saeseeds.sae import sparse_kernels
from saeseeds.sae.fp32_topk import topk_with_bias
from saeseeds.sae.pair_dots import pair_dots
from saeseeds.sae.screened_topk import screened_topk, usable
from saeseeds.sae.coder import SaeConfig, SparseCoder, init_encoder_weight
from saeseeds.sae.configs import B_DEC_INITS, SPARSE_ARCHS


class Pattern:
    """Selected (token, latent) pairs of every seed: `tok[s]`, `lat[s]` are seed s's pairs in local
    coordinates (token in [0, B), latent in [0, n)), sorted by token.

    Values that live on the pairs are one flat tensor, seed after seed. Every sparse op runs one seed
    at a time, so its random row accesses stay within that seed's [n, d] weights and [B, d] batch (a
    few MB, cache-resident) whatever the number of seeds. The latent-major CSR of each seed is built
    once and shared by every backward that needs it.
    """

    def __init__(self, tok: list[Tensor], lat: list[Tensor], num_tokens: int, *, bag_size: int | None = None):
        self.tok, self.lat = tok, lat
        self.num_tokens = num_tokens
        self.bag_size = bag_size
        sizes = [len(t) for t in lat]
        self.bounds = [0]
        for size in sizes:
            self.bounds.append(self.bounds[-1] + size)
        self._csr: dict[int, tuple[Tensor, Tensor, Tensor]] = {}
        self._offsets: dict[int, Tensor] = {}

    @classmethod
    def from_topk(cls, idx: Tensor) -> "Pattern":
        """Returns the pattern of a [S, B, k] index tensor (k latents for every token)."""
        S, B, k = idx.shape
        tok = torch.arange(B, device=idx.device).repeat_interleave(k)
        return cls([tok] * S, [idx[s].reshape(-1) for s in range(S)], B, bag_size=k)

    @property
    def num_seeds(self) -> int:
        return len(self.lat)

    def seg(self, s: int) -> slice:
        """Returns the slice of the flat pair values that belongs to seed s."""
        return slice(self.bounds[s], self.bounds[s + 1])

    def decode(self, weight: Tensor, values: Tensor) -> Tensor:
        """Returns, for weight [S, n, d], sum over each token's pairs of value * weight[s, lat] as
        [S, B, d]; differentiable in both, with a backward that reuses the pattern's CSR."""
        return _SparseDecode.apply(values, weight, self)

    def offsets(self, s: int) -> Tensor:
        """Returns where each of seed s's tokens' pairs start (embedding_bag offsets), cached."""
        if s not in self._offsets:
            tok = self.tok[s]
            if self.bag_size is not None:
                self._offsets[s] = torch.arange(0, self.num_tokens * self.bag_size, self.bag_size, device=tok.device)
            else:
                counts = torch.bincount(tok, minlength=self.num_tokens)
                self._offsets[s] = torch.cumsum(counts, 0) - counts
        return self._offsets[s]

    def csr(self, s: int, num_latents: int) -> tuple[Tensor, Tensor, Tensor]:
        """Returns seed s's (order, crow, col): pairs sorted by latent (stable), row pointers, tokens."""
        if s not in self._csr:
            lat = self.lat[s]
            order = torch.argsort(lat, stable=True)
            crow = torch.zeros(num_latents + 1, dtype=torch.long, device=lat.device)
            crow[1:] = torch.cumsum(torch.bincount(lat, minlength=num_latents), 0)
            self._csr[s] = (order, crow, self.tok[s][order])
        return self._csr[s]

    def transpose_matmul(self, s: int, values: Tensor, dense: Tensor, num_latents: int, out: Tensor) -> Tensor:
        """Writes A_s^T @ dense [n, d] into `out`, A_s seed s's sparse [B, n] matrix holding `values` (its segment).

        Written in place (addmm with beta 0, which ignores what `out` held): a fresh result copied into the
        gradient buffer cost a zero fill and a copy of [n, d], 1.5 of 5.7 ms at 4608 x 576."""
        order, crow, col = self.csr(s, num_latents)
        if sparse_kernels.supported(values, dense, out):
            return sparse_kernels.csr_transpose_matmul(crow, col, order, values, dense, out)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
            a_t = torch.sparse_csr_tensor(crow, col, values[order].contiguous(), size=(num_latents, self.num_tokens), check_invariants=False)
            return torch.addmm(out, a_t, dense, beta=0, out=out)


class _SparseDecode(torch.autograd.Function):
    """y[s, t] = sum over (s, t)'s pairs of value * weight[s, lat]: embedding bags whose weight
    gradient is the pattern's CSR product (no sort or [P, d] temporary of its own)."""

    @staticmethod
    def forward(ctx, values: Tensor, weight: Tensor, pattern: Pattern) -> Tensor:
        ctx.save_for_backward(values, weight)
        ctx.pattern = pattern
        S, n, d = weight.shape
        out = weight.new_empty(S, pattern.num_tokens, d)
        for s in range(S):
            out[s] = F.embedding_bag(pattern.lat[s], weight[s], pattern.offsets(s), per_sample_weights=values[pattern.seg(s)], mode="sum")
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        values, weight = ctx.saved_tensors
        p: Pattern = ctx.pattern
        S, n, d = weight.shape
        grad = grad.contiguous()
        grad_values = torch.empty_like(values) if ctx.needs_input_grad[0] else None
        grad_weight = torch.empty_like(weight) if ctx.needs_input_grad[1] else None
        for s in range(S):
            seg = p.seg(s)
            if grad_values is not None:
                grad_values[seg] = pair_dots(grad[s], weight[s], p.tok[s], p.lat[s], p.offsets(s))
            if grad_weight is not None:
                p.transpose_matmul(s, values[seg], grad[s], n, out=grad_weight[s])
        return grad_values, grad_weight, None


class _SparseRows(torch.autograd.Function):
    """Attaches to precomputed pre-activation values at `pattern`'s pairs the gradient of
    pre[s, t, i] = (x[t] - b_dec[s]) . W[s, i] + b[s, i], computed sparsely, seed by seed.

    `xc` = x - b_dec [S, B, d] is passed as data; b_dec's gradient through the encoder is
    -sum_t sum_i g[t, i] W[i] = -(grad_b @ W) per seed, which needs no per-token work.
    """

    @staticmethod
    def forward(ctx, values: Tensor, xc: Tensor, weight: Tensor, bias: Tensor, b_dec: Tensor, pattern: Pattern) -> Tensor:
        ctx.save_for_backward(xc, weight)
        ctx.pattern = pattern
        return values.clone()

    @staticmethod
    def backward(ctx, grad: Tensor):
        xc, weight = ctx.saved_tensors
        p: Pattern = ctx.pattern
        S, n, d = weight.shape
        grad = grad.contiguous()
        grad_w = torch.empty_like(weight) if ctx.needs_input_grad[2] else None
        need_b = ctx.needs_input_grad[3] or ctx.needs_input_grad[4]
        grad_b = weight.new_zeros(S, n) if need_b else None
        for s in range(S):
            g = grad[p.seg(s)]
            if grad_w is not None:
                p.transpose_matmul(s, g, xc[s], n, out=grad_w[s])
            if need_b:
                grad_b[s].index_add_(0, p.lat[s], g)
        grad_b_dec = -torch.bmm(grad_b[:, None, :], weight)[:, 0, :] if ctx.needs_input_grad[4] else None
        return None, None, grad_w, grad_b if ctx.needs_input_grad[3] else None, grad_b_dec, None


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
        self.screen_topk = False
        """Train topk's encoder through `screened_topk` (set by the trainer from `TrainConfig.encoder_screen`)."""
        self._pre_buffer: torch.Tensor | None = None
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

    def _selection_pre_acts(self, xc: Tensor, s: int, *, with_bias: bool = True) -> Tensor:
        """Seed s's pre-activations [B, n] for choosing latents (no autograd), written into one reused buffer on CPU.

        A fresh [B, n] result per step cost page faults on every step, and `addmm`'s broadcast bias a copy
        of it (75 MB at 4096 x 4608): `mm` into the kept buffer, then the bias in place, took 100-220 ms
        where addmm took 126-245 ms (2 threads, emulated AVX2 and native). The buffer lives with the
        model (CUDA's caching allocator needs no such help) and is overwritten by the next seed.
        `with_bias=False` leaves the bias out (CPU only), for `fp32_topk`, which adds it as it selects.
        """
        if xc.device.type != "cpu":
            return torch.addmm(self.b_enc[s], xc, self.W_enc[s].T)
        shape = (xc.shape[0], self.W_enc.shape[1])
        buf = self._pre_buffer
        if buf is None or buf.shape != shape or buf.dtype != xc.dtype:
            buf = self._pre_buffer = xc.new_empty(shape)
        pre = torch.mm(xc, self.W_enc[s].T, out=buf)
        return pre.add_(self.b_enc[s]) if with_bias else pre

    @torch.no_grad()
    def init_from_first_batch(self, x: Tensor, b_dec_init: str = "geometric_median") -> None:
        """Sets b_dec from the first batch (`b_dec_init`: "geometric_median" or "mean"; see
        `TrainConfig.b_dec_init`), the input scale, and JumpReLU thresholds.

        b_dec is computed once from the batch and copied to every seed, so it is the same for every seed
        and whether seeds are stacked or trained alone; seeds differ only in their weight draws."""
        if b_dec_init == "geometric_median":
            centre = geometric_median(x)
        elif b_dec_init == "mean":
            centre = x.mean(0)
        else:
            raise ValueError(f"b_dec_init={b_dec_init!r}: expected one of {B_DEC_INITS}")
        self.b_dec.copy_(centre.expand_as(self.b_dec))
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
            return F.relu(vals).reshape(-1), Pattern.from_topk(idx)
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

    def decode(self, acts: Tensor, pattern: Pattern | None) -> Tensor:
        """Returns reconstructions [S, B, d] from `encode`'s output."""
        S, n, d = self.W_dec.shape
        if pattern is None:
            return torch.baddbmm(self.b_dec[:, None, :], acts, self.W_dec)
        return pattern.decode(self.W_dec, acts) + self.b_dec[:, None, :]

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
            use_aux = dead_mask is not None and coef.get("auxk_alpha", 0.0) > 0 and bool(dead_mask.any())
            k_aux = min(d // 2, int(dead_mask.sum(1).max())) if use_aux else 0
            toks, lats, vals_l, aux_sel = [], [], [], []
            # topk without AuxK needs only the top k, which a bf16 screen finds exactly (screened_topk)
            plain_topk = arch == "topk" and not use_aux and usable(n, self.cfg.k)
            screen = self.screen_topk and plain_topk
            # elsewhere on CPU, the float32 matmul and a compiled selection that adds the bias as it goes
            fused = plain_topk and x.device.type == "cpu" and x.dtype == torch.float32
            with torch.no_grad():
                # One seed at a time: only one [B, n] pre-activation matrix is alive at once
                for s in range(S):
                    if screen or fused:
                        if screen:
                            v, i = screened_topk(xc[s], self.W_enc[s], self.b_enc[s], self.cfg.k)
                        else:
                            v, i = topk_with_bias(self._selection_pre_acts(xc[s], s, with_bias=False), self.b_enc[s], self.cfg.k)
                        lats.append(i.reshape(-1))
                        vals_l.append(v.reshape(-1))
                        continue
                    pre = self._selection_pre_acts(xc[s], s)
                    if arch == "topk":
                        v, i = pre.topk(self.cfg.k, dim=-1, sorted=False)
                        lats.append(i.reshape(-1))
                    else:
                        t, i, v = _batch_topk(pre, self.cfg.k * B)
                        toks.append(t)
                        lats.append(i)
                    vals_l.append(v.reshape(-1))
                    if use_aux:
                        masked = torch.where(dead_mask[s][None, :], F.relu(pre), -torch.inf)
                        aux_sel.append(masked.topk(k_aux, dim=-1, sorted=False))
                    del pre
            vals = torch.cat(vals_l)
            if arch == "topk":
                tok = torch.arange(B, device=x.device).repeat_interleave(self.cfg.k)
                pattern = Pattern([tok] * S, lats, B, bag_size=self.cfg.k)
            else:
                pattern = Pattern(toks, lats, B)
            acts = F.relu(_SparseRows.apply(vals, xc.detach(), self.W_enc, self.b_enc, self.b_dec, pattern))
            x_hat = pattern.decode(self.W_dec, acts) + self.b_dec[:, None, :]
            on = acts.detach() > 0
            seed_of = torch.repeat_interleave(torch.arange(S, device=x.device), torch.tensor([len(t) for t in lats], device=x.device))
            flat_lat = torch.cat(lats) + seed_of * n
            fired = torch.bincount(flat_lat[on], minlength=S * n).view(S, n) > 0
            out["l0"] = torch.bincount(seed_of[on], minlength=S).to(x.dtype) / B
            if arch == "batchtopk":
                big = torch.finfo(acts.dtype).max
                out["min_act"] = torch.full((S,), big, device=x.device).scatter_reduce(0, seed_of[on], acts.detach()[on], "amin")
            e = x[None] - x_hat
            if use_aux:
                aux_vals = torch.stack([v for v, _ in aux_sel])
                aux_idx = torch.stack([i for _, i in aux_sel])
                aux = _auxk(aux_vals, aux_idx, xc, e.detach(), self, dead_mask, total_var)
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
                aux = _sq_norms(x[None] - x_gate) / total_var
            else:
                raise ValueError(f"arch {arch!r}")
            x_hat = torch.baddbmm(self.b_dec[:, None, :], acts, self.W_dec)
            e = x[None] - x_hat
            with torch.no_grad():
                on = acts > 0
                fired = on.any(1)
                out["l0"] = on.sum((1, 2)).to(x.dtype) / B
            loss_pen = coef["sparsity"] * penalty
        fvu = _sq_norms(e) / total_var
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
        self.W_dec.div_(torch.linalg.vector_norm(self.W_dec, dim=-1, keepdim=True) + eps)

    @torch.no_grad()
    def remove_gradient_parallel_to_decoder_directions(self) -> None:
        """Projects the component along each decoder row out of W_dec.grad."""
        parallel = torch.linalg.vecdot(self.W_dec.grad, self.W_dec).unsqueeze(-1)
        self.W_dec.grad.addcmul_(parallel, self.W_dec, value=-1.0)

    @torch.no_grad()
    def clip_grad_norm_(self, max_norm: float) -> Tensor:
        """Clips each seed's gradient to global norm `max_norm` as torch.nn.utils.clip_grad_norm_
        would for that seed alone; returns the per-seed norms before clipping [S]."""
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        norms = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.reshape(self.num_seeds, -1), dim=1) for g in grads]), dim=0)
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


def _sq_norms(t: Tensor) -> Tensor:
    """Returns the squared norm of each seed's slice [S]; one fused pass (pow + sum is ~10x slower in
    backward on large CPU tensors)."""
    return torch.linalg.vector_norm(t.flatten(1), dim=1).square()


BATCHTOPK_THRESHOLD_LR = 0.01
"""EMA rate of the batchtopk inference threshold (SAELens' `topk_threshold_lr`; Bussmann et al.)."""


def _batch_topk(pre: Tensor, keep: int) -> tuple[Tensor, Tensor, Tensor]:
    """Returns (token, latent, value) of the `keep` largest relu'd pre-activations of one seed's whole
    batch [B, n] (BatchTopK), sorted by token."""
    n = pre.shape[1]
    flat = F.relu(pre).reshape(-1)
    _, pos = flat.topk(keep, sorted=False)
    pos, _ = pos.sort()
    return pos // n, pos % n, pre.reshape(-1)[pos]


def _auxk(vals: Tensor, idx: Tensor, xc: Tensor, e: Tensor, sae: StackedSae, dead_mask: Tensor, total_var: Tensor) -> Tensor:
    """Returns the per-seed AuxK loss [S]: the top d/2 dead latents (`vals`, `idx` [S, B, k_aux],
    picked from the relu'd pre-activations of dead latents) reconstruct the residual `e`.

    As sparsify 1.3.3 (Gao et al. 2024): no b_dec in the auxiliary decode and a scale
    min(dead / (d/2), 1). Unlike sparsify, whose fused encoder drops the gradient of this loss to
    the encoder, the gradient reaches the encoder too, as in Gao et al., so dead latents can start firing.
    """
    S, n, d = sae.W_dec.shape
    scale = (dead_mask.sum(1).to(xc.dtype) / (d // 2)).clamp(max=1.0)
    valid = torch.isfinite(vals)  # seeds with fewer dead latents than k_aux pick some live ones: drop them
    pattern = Pattern.from_topk(idx)
    raw = _SparseRows.apply(torch.where(valid, vals, 0.0).reshape(-1), xc.detach(), sae.W_enc, sae.b_enc, sae.b_dec, pattern)
    acts = F.relu(raw) * valid.reshape(-1)
    e_hat = pattern.decode(sae.W_dec, acts)
    return scale * _sq_norms(e_hat - e) / total_var


