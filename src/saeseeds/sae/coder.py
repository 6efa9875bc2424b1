"""Sparse autoencoders in the checkpoint layout of EleutherAI sparsify.

The reference model, written for reading: encode = top-k of relu(W_enc (x - b_dec) + b_enc), decode by
summing k decoder rows plus b_dec. `train.py` trains a faster, seed-stacked copy of the same maths and
writes the result back through `SparseCoder.save_to_disk`.

A TopK checkpoint is exactly what sparsify 1.3.3 writes (`cfg.json` with its keys and `d_in`,
`sae.safetensors` with `encoder.weight`, `encoder.bias`, `W_dec`, `b_dec`), so sparsify's
`SparseCoder.load_from_disk` reads it. Other architectures keep those four tensors and add their own by
name: `threshold` [n] (jumprelu: per latent; batchtopk: a scalar used at inference), `r_mag` and `b_mag`
[n] (gated; `encoder` is the gate path and W_mag = exp(r_mag) * W_gate). Their cfg.json has sparsify's
keys with `activation` set to the arch, plus `arch` and every SaeConfig field; sparsify refuses them.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, fields
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from saeseeds.common.atomic import atomic_write
from saeseeds.sae.configs import SaeConfig  # noqa: F401 (defined there, without torch; importable from here too)
from saeseeds.errors import SaeConfigError  # noqa: F401 (raised here; importable from here too)

class ForwardOutput(NamedTuple):
    """What `SparseCoder.forward` returns; the first five fields mirror sparsify's ForwardOutput."""

    sae_out: Tensor
    latent_acts: Tensor
    """Activations of the selected latents [B, k] (topk) or of all latents [B, n] (other archs)."""
    latent_indices: Tensor | None
    """Indices of the selected latents [B, k]; None for archs with dense activations."""
    fvu: Tensor
    """Fraction of variance unexplained on this batch."""
    auxk_loss: Tensor
    """AuxK loss on dead latents (0 when no dead mask is given)."""


def fraction_of_variance_unexplained(x: Tensor, x_hat: Tensor) -> Tensor:
    """Returns sum ||x - x_hat||^2 / sum ||x - mean(x)||^2 over the batch, as sparsify defines FVU."""
    return (x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum()


def init_encoder_weight(num_latents: int, d_in: int, seed: int) -> Tensor:
    """Returns the encoder weight [n, d] drawn as torch.nn.Linear does (U(+-1/sqrt(d))), from `seed` only.

    Drawn on the CPU from a private generator, so the initialisation is the same on every device and
    never touches (or depends on) the global RNG.
    """
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    bound = 1.0 / math.sqrt(d_in)
    return torch.empty(num_latents, d_in, dtype=torch.float32).uniform_(-bound, bound, generator=gen)


class SparseCoder(nn.Module):
    """One SAE: `encoder` (Linear d -> n), `W_dec` [n, d], `b_dec` [d], plus arch-specific parameters."""

    def __init__(self, d_in: int, cfg: SaeConfig, *, seed: int = 0, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
        super().__init__()
        if isinstance(d_in, bool) or not isinstance(d_in, int) or d_in < 1:
            raise SaeConfigError(f"d_in={d_in!r}: expected a positive integer")
        self.cfg = cfg
        self.d_in = d_in
        self.num_latents = cfg.num_latents
        n = cfg.num_latents

        weight = init_encoder_weight(n, d_in, seed)
        self.encoder = nn.utils.skip_init(nn.Linear, d_in, n, device=device, dtype=dtype)
        with torch.no_grad():
            self.encoder.weight.copy_(weight)
            self.encoder.bias.zero_()
        # sparsify initialises the decoder as the encoder's rows (the transpose of W_enc), unit-normed
        self.W_dec = nn.Parameter(weight.clone().to(device=device, dtype=dtype))
        if cfg.normalize_decoder:
            self.set_decoder_norm_to_unit_norm()
        self.b_dec = nn.Parameter(torch.zeros(d_in, device=device, dtype=dtype))

        if cfg.arch == "jumprelu":
            # In input units; training sets it from jumprelu_init_threshold and the input scale
            self.threshold = nn.Parameter(torch.full((n,), float(cfg.jumprelu_init_threshold), device=device, dtype=dtype))
        elif cfg.arch == "batchtopk":
            # Threshold used at inference instead of the batch-wide top-k (Bussmann et al. 2024)
            self.register_buffer("threshold", torch.zeros((), device=device, dtype=dtype))
        elif cfg.arch == "gated":
            # Gated SAE: the magnitude path reuses encoder.weight scaled by exp(r_mag), with its own bias
            self.r_mag = nn.Parameter(torch.zeros(n, device=device, dtype=dtype))
            self.b_mag = nn.Parameter(torch.zeros(n, device=device, dtype=dtype))

    @property
    def device(self) -> torch.device:
        return self.encoder.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.encoder.weight.dtype

    def pre_acts(self, x: Tensor) -> Tensor:
        """Returns W_enc (x - b_dec) + b_enc, the encoder's pre-activations [B, n]."""
        return self.encoder(x - self.b_dec)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """Returns (acts, indices): the k largest relu'd pre-activations and their latents for topk;
        dense acts [B, n] and None for the other archs."""
        acts, indices, _ = self._encode(x)
        return acts, indices

    def _encode(self, x: Tensor) -> tuple[Tensor, Tensor | None, Tensor]:
        pre = self.pre_acts(x)
        arch = self.cfg.arch
        if arch == "topk":
            # relu is monotone, so topk-then-relu picks the same latents as sparsify's relu-then-topk
            vals, idx = pre.topk(self.cfg.k, dim=-1, sorted=False)
            return F.relu(vals), idx, F.relu(pre)
        if arch == "batchtopk":
            relu = F.relu(pre)
            if self.training:
                flat = relu.flatten()
                vals, pos = flat.topk(self.cfg.k * len(x), sorted=False)
                acts = torch.zeros_like(flat).scatter(0, pos, vals).view_as(relu)
            else:
                acts = relu * (relu > self.threshold)
            return acts, None, relu
        if arch == "relu":
            relu = F.relu(pre)
            return relu, None, relu
        if arch == "jumprelu":
            return pre * (pre > self.threshold), None, pre
        if arch == "gated":
            gate = pre > 0
            mag = F.relu(F.linear(x - self.b_dec, self.encoder.weight * self.r_mag.exp()[:, None], self.b_mag))
            return mag * gate, None, pre
        raise SaeConfigError(f"sae arch={arch!r} has no encoder")

    def decode(self, acts: Tensor, indices: Tensor | None) -> Tensor:
        """Returns b_dec + sum of acts times decoder rows; sparse (gathering k rows) when indices are given."""
        if indices is None:
            return acts.to(self.dtype) @ self.W_dec + self.b_dec
        return F.embedding_bag(indices, self.W_dec, per_sample_weights=acts.to(self.dtype), mode="sum") + self.b_dec

    def forward(self, x: Tensor, dead_mask: Tensor | None = None) -> ForwardOutput:
        """Returns the reconstruction, the latents, FVU and (topk, with a dead mask) the AuxK loss."""
        acts, indices, pre = self._encode(x)
        sae_out = self.decode(acts, indices)
        e = x - sae_out
        total_variance = (x - x.mean(0)).pow(2).sum()
        fvu = e.pow(2).sum() / total_variance
        auxk_loss = sae_out.new_tensor(0.0)
        if dead_mask is not None and (num_dead := int(dead_mask.sum())) > 0:
            auxk_loss = auxk(pre, e, self.W_dec, dead_mask, num_dead, total_variance)
        return ForwardOutput(sae_out, acts, indices, fvu, auxk_loss)

    @torch.no_grad()
    def set_decoder_norm_to_unit_norm(self) -> None:
        """Rescales every decoder row to unit L2 norm (eps as in sparsify)."""
        eps = torch.finfo(self.W_dec.dtype).eps
        self.W_dec.data /= self.W_dec.data.norm(dim=1, keepdim=True) + eps

    @torch.no_grad()
    def remove_gradient_parallel_to_decoder_directions(self) -> None:
        """Projects out of W_dec.grad the component along each (unit) decoder row, so Adam moves rows
        on the sphere instead of fighting the renormalisation."""
        if self.W_dec.grad is None:
            raise RuntimeError("W_dec has no gradient; call backward() first")
        parallel = (self.W_dec.grad * self.W_dec.data).sum(dim=1, keepdim=True)
        self.W_dec.grad -= parallel * self.W_dec.data

    def config_dict(self) -> dict:
        """Returns cfg.json's content: exactly sparsify's keys for topk; for other archs the same keys
        with activation=<arch>, plus every SaeConfig field (extra tensors are listed in the module docstring)."""
        cfg = self.cfg
        n, d = cfg.num_latents, self.d_in
        sparsify_cfg = {
            "activation": "topk",
            # Ignored by sparsify when num_latents is set; written as the true ratio when there is one
            "expansion_factor": n // d if n % d == 0 else 0,
            "normalize_decoder": cfg.normalize_decoder,
            "num_latents": n,
            "k": cfg.k,
            "multi_topk": False,
            "skip_connection": False,
            "transcode": False,
        }
        if cfg.arch == "topk":
            return {**sparsify_cfg, "d_in": d}
        # `activation` names the arch so sparsify refuses the file (unknown activation) instead of
        # running it as a TopK SAE; `arch` and the other SaeConfig fields describe it for saeseeds
        return {**sparsify_cfg, "activation": cfg.arch, "d_in": d, **asdict(cfg)}

    def state_tensors(self) -> dict[str, Tensor]:
        """Returns the checkpoint tensors by name: sparsify's four plus the arch's extras."""
        tensors = {
            "encoder.weight": self.encoder.weight,
            "encoder.bias": self.encoder.bias,
            "W_dec": self.W_dec,
            "b_dec": self.b_dec,
        }
        if self.cfg.arch == "jumprelu":
            tensors["threshold"] = self.threshold
        elif self.cfg.arch == "batchtopk":
            tensors["threshold"] = self.threshold
        elif self.cfg.arch == "gated":
            tensors["r_mag"] = self.r_mag
            tensors["b_mag"] = self.b_mag
        return {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}

    def save_to_disk(self, path: str | Path) -> None:
        """Writes `cfg.json` and `sae.safetensors` into directory `path` (created), each file atomically."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        atomic_write(path / "sae.safetensors", lambda p: save_file(self.state_tensors(), str(p), metadata={"format": "pt"}))
        text = json.dumps(self.config_dict())
        atomic_write(path / "cfg.json", lambda p: Path(p).write_text(text))

    @staticmethod
    def load_from_disk(path: str | Path, device: str | torch.device = "cpu") -> "SparseCoder":
        """Returns the SAE saved in directory `path` (ours or sparsify's TopK layout)."""
        path = Path(path)
        cfg_path, weights_path = path / "cfg.json", path / "sae.safetensors"
        for p in (cfg_path, weights_path):
            if not p.exists():
                raise SaeConfigError(f"{p}: missing (expected a sparsify-layout checkpoint directory)")
        raw = json.loads(cfg_path.read_text())
        cfg, d_in = config_from_dict(raw, source=cfg_path)
        tensors = load_file(str(weights_path))
        sae = SparseCoder(d_in, cfg, seed=0, device="cpu", dtype=tensors["encoder.weight"].dtype if "encoder.weight" in tensors else torch.float32)
        expected = sae.state_tensors()
        if set(tensors) != set(expected):
            raise SaeConfigError(f"{weights_path}: tensors {sorted(tensors)}, expected {sorted(expected)} for arch {cfg.arch}")
        for name, t in tensors.items():
            if t.shape != expected[name].shape:
                raise SaeConfigError(f"{weights_path}: tensor {name} has shape {tuple(t.shape)}, expected {tuple(expected[name].shape)}")
        with torch.no_grad():
            sae.encoder.weight.copy_(tensors["encoder.weight"])
            sae.encoder.bias.copy_(tensors["encoder.bias"])
            sae.W_dec.copy_(tensors["W_dec"])
            sae.b_dec.copy_(tensors["b_dec"])
            if cfg.arch == "jumprelu":
                sae.threshold.copy_(tensors["threshold"])
            elif cfg.arch == "batchtopk":
                sae.threshold.copy_(tensors["threshold"])
            elif cfg.arch == "gated":
                sae.r_mag.copy_(tensors["r_mag"])
                sae.b_mag.copy_(tensors["b_mag"])
        return sae.to(device)


def config_from_dict(raw: dict, *, source: str | Path = "cfg.json") -> tuple[SaeConfig, int]:
    """Returns (SaeConfig, d_in) from a cfg.json dict written by saeseeds or sparsify."""
    if "d_in" not in raw:
        raise SaeConfigError(f"{source}: no 'd_in' key")
    if "arch" in raw:
        names = {f.name for f in fields(SaeConfig)}
        return SaeConfig(**{k: v for k, v in raw.items() if k in names}), int(raw["d_in"])
    # A sparsify TopK checkpoint: refuse the features we do not implement rather than ignore them
    for key, ok in (("activation", "topk"), ("multi_topk", False), ("skip_connection", False), ("transcode", False)):
        if raw.get(key, ok) != ok:
            raise SaeConfigError(f"{source}: {key}={raw[key]!r} is not supported (expected {ok!r})")
    d_in = int(raw["d_in"])
    n = raw.get("num_latents") or d_in * raw.get("expansion_factor", 32)
    return SaeConfig(num_latents=int(n), arch="topk", k=int(raw.get("k", 32)), normalize_decoder=bool(raw.get("normalize_decoder", True))), d_in


def auxk(pre_relu: Tensor, e: Tensor, W_dec: Tensor, dead_mask: Tensor, num_dead: int, total_variance: Tensor) -> Tensor:
    """Returns sparsify's AuxK loss: the top d/2 dead latents' reconstruction of the residual `e`.

    As in sparsify 1.3.3 the auxiliary decode has no b_dec (the residual already excludes it), and the
    loss is scaled down when fewer than d/2 latents are dead.
    """
    k_aux = e.shape[-1] // 2
    scale = min(num_dead / k_aux, 1.0)
    k_aux = min(k_aux, num_dead)
    masked = torch.where(dead_mask[None], pre_relu, -torch.inf)
    acts, idx = masked.topk(k_aux, sorted=False)
    e_hat = F.embedding_bag(idx, W_dec, per_sample_weights=acts, mode="sum")
    return scale * (e_hat - e.detach()).pow(2).sum() / total_variance


def load_sae(checkpoint_dir: str | Path, device: str = "cpu") -> SparseCoder:
    """Returns the SAE checkpoint in eval mode (batchtopk then uses its threshold, as at evaluation)."""
    return SparseCoder.load_from_disk(checkpoint_dir, device=device).eval()
