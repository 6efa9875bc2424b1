"""Training SAEs on a cached activation store, one checkpoint directory per init seed.

The default recipe is the one the paper used (EleutherAI `sae`, Dec 2024): Adam with
lr = 2e-4 / sqrt(num_latents / 2^14), linear warmup then linear decay to zero, gradient clipping at
1.0, b_dec set to the mean of the first batch (sparsify's choice since 2025; the Dec 2024 code used
the geometric median, which for a centred init gives nearly the same point), decoder rows renormalised
every step with the gradient component parallel to each row removed, k = 32, AuxK off.

The data order depends on `data_seed` only; `seed` only draws the initialisation.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from saeseeds.batches import BatchPlan, BatchReader
from saeseeds.sae import SaeConfig, SparseCoder
from saeseeds.store import open_store

OPTIMIZERS = ("adam",)


class TrainConfigError(ValueError):
    """A training config value that cannot work, named by its key."""


@dataclass
class TrainConfig:
    """How to train: plain JSON values so a workflow builds it from YAML."""

    batch_size: int = 4096
    """Tokens (activation rows) per optimiser step; sparsify's CLI default is 32 sequences x 2048."""

    max_tokens: int | None = None
    """Training tokens; None means one pass over the store's training rows. More than the store holds
    means several passes, each with a fresh shuffle drawn from the data seed."""

    lr: float | None = None
    """Peak learning rate; None gives the paper's 2e-4 / sqrt(num_latents / 2^14) for adam."""

    warmup_steps: int = 1000
    """Steps of linear learning-rate warmup (then linear decay to 0 at the last step), as in sparsify."""

    auxk_alpha: float = 0.0
    """Weight of the AuxK loss that revives dead latents (topk only); 0 as in the paper's recipe."""

    dead_feature_threshold: int = 10_000_000
    """Tokens without firing after which a latent counts as dead for AuxK (sparsify's default)."""

    grad_clip: float | None = 1.0
    """Max global gradient norm per SAE; None disables clipping."""

    optimizer: str = "adam"
    """"adam" (the paper's recipe)."""

    device: str = "cpu"
    """Torch device. CPU runs are bitwise reproducible; CUDA runs are not (atomics, TF32)."""

    window_rows: int = 65536
    """Rows shuffled together: whole store chunks are read in a shuffled order and rows are shuffled
    within windows of about this many rows, so reads stay contiguous."""

    eval_batch_size: int = 8192
    """Held-out rows per evaluation batch (memory only; the result does not depend on it)."""

    def __post_init__(self) -> None:
        def positive_int(key: str, allow_none: bool = False) -> None:
            value = getattr(self, key)
            if value is None and allow_none:
                return
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise TrainConfigError(f"train {key}={value!r}: expected a positive integer")

        for key in ("batch_size", "window_rows", "eval_batch_size", "dead_feature_threshold"):
            positive_int(key)
        positive_int("max_tokens", allow_none=True)
        if isinstance(self.warmup_steps, bool) or not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise TrainConfigError(f"train warmup_steps={self.warmup_steps!r}: expected a non-negative integer")
        for key, allow_none in (("lr", True), ("grad_clip", True)):
            value = getattr(self, key)
            if value is None and allow_none:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise TrainConfigError(f"train {key}={value!r}: expected a positive number")
        if isinstance(self.auxk_alpha, bool) or not isinstance(self.auxk_alpha, (int, float)) or not math.isfinite(self.auxk_alpha) or self.auxk_alpha < 0:
            raise TrainConfigError(f"train auxk_alpha={self.auxk_alpha!r}: expected a non-negative number")
        if self.optimizer not in OPTIMIZERS:
            raise TrainConfigError(f"train optimizer={self.optimizer!r}: expected one of {OPTIMIZERS}")
        try:
            torch.device(self.device)
        except RuntimeError as err:
            raise TrainConfigError(f"train device={self.device!r}: {err}") from err


def default_lr(num_latents: int) -> float:
    """Returns the paper's Adam learning rate 2e-4 / sqrt(num_latents / 2^14)."""
    return 2e-4 / math.sqrt(num_latents / 2**14)


def lr_factor(step: int, warmup_steps: int, num_steps: int) -> float:
    """Returns the schedule multiplier at `step`: linear warmup, then linear decay to 0 (transformers'
    get_linear_schedule_with_warmup, which sparsify uses)."""
    if step < warmup_steps:
        return step / max(1, warmup_steps)
    return max(0.0, (num_steps - step) / max(1, num_steps - warmup_steps))


def train_sae(store_path: str | Path, out_dir: str | Path, sae_cfg: SaeConfig, train_cfg: TrainConfig, *, seed: int, data_seed: int, log: logging.Logger | None = None) -> dict:
    """Returns the held-out metrics of one SAE trained on `store_path`, after writing its checkpoint,
    metrics.json and firing.npy into `out_dir` (atomically: a temp sibling renamed into place)."""
    log = log or logging.getLogger("saeseeds.train")
    if isinstance(sae_cfg, dict):
        sae_cfg = SaeConfig(**sae_cfg)
    if isinstance(train_cfg, dict):
        train_cfg = TrainConfig(**train_cfg)
    if sae_cfg.arch != "topk":
        raise TrainConfigError(f"sae arch={sae_cfg.arch!r}: not trainable yet (only 'topk')")
    out_dir = Path(out_dir)
    store = open_store(store_path)
    num_steps = _num_steps(store.n_train, train_cfg)
    if train_cfg.warmup_steps >= num_steps:
        raise TrainConfigError(f"train warmup_steps={train_cfg.warmup_steps} must be below the {num_steps} training steps (max_tokens / batch_size)")
    device = torch.device(train_cfg.device)
    plan = BatchPlan(store.n_train, store.array.chunks[0], train_cfg.batch_size, num_steps, data_seed=data_seed, window_rows=train_cfg.window_rows)
    lr = train_cfg.lr or default_lr(sae_cfg.num_latents)

    sae = SparseCoder(store.d_in, sae_cfg, seed=seed, device=device)
    opt = torch.optim.Adam(sae.parameters(), lr=lr, foreach=False)
    since_fired = torch.zeros(sae_cfg.num_latents, dtype=torch.long, device=device)
    curve: list[tuple[int, float, float, float]] = []

    t0 = time.perf_counter()
    with BatchReader(store, plan, device=device) as reader:
        for step, x in enumerate(tqdm(reader, total=num_steps, desc=f"train seed {seed}", unit="step", mininterval=2.0)):
            if step == 0:
                with torch.no_grad():
                    sae.b_dec.copy_(x.mean(0))
            for group in opt.param_groups:
                group["lr"] = lr * lr_factor(step, train_cfg.warmup_steps, num_steps)
            dead = since_fired > train_cfg.dead_feature_threshold if train_cfg.auxk_alpha > 0 else None
            out = sae(x, dead_mask=dead)
            loss = out.fvu + train_cfg.auxk_alpha * out.auxk_loss
            loss.backward()
            if not torch.isfinite(loss):
                raise FloatingPointError(f"seed {seed}: non-finite loss at step {step}")
            with torch.no_grad():
                fired = torch.zeros_like(since_fired, dtype=torch.bool)
                fired[out.latent_indices[out.latent_acts > 0]] = True
                since_fired += len(x)
                since_fired[fired] = 0
                l0 = float((out.latent_acts > 0).sum()) / len(x)
            if sae_cfg.normalize_decoder:
                sae.remove_gradient_parallel_to_decoder_directions()
            if train_cfg.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(sae.parameters(), train_cfg.grad_clip, foreach=False)
            opt.step()
            opt.zero_grad(set_to_none=True)
            if sae_cfg.normalize_decoder:
                sae.set_decoder_norm_to_unit_norm()
            curve.append((step, float(loss.detach()), float(out.fvu.detach()), l0))
    wall = time.perf_counter() - t0

    evaluation = evaluate(sae, store.heldout(), batch_size=train_cfg.eval_batch_size)
    metrics = {
        "fvu": evaluation["fvu"],
        "l0": evaluation["l0"],
        "dead_fraction": evaluation["dead_fraction"],
        "tokens_seen": num_steps * train_cfg.batch_size,
        "num_steps": num_steps,
        "seed": int(seed),
        "data_seed": int(data_seed),
        "wall_time_s": round(wall, 3),
        "tokens_per_s": round(num_steps * train_cfg.batch_size / wall, 1),
        "batch_order_sha256": plan.sha256(),
        "heldout_tokens": store.n_heldout,
        "train_fvu_last": curve[-1][2],
        "lr": lr,
        "sae": asdict(sae_cfg),
        "train": asdict(train_cfg),
        "store": str(store_path),
    }
    _warn_if_unhealthy(metrics, log, out_dir)
    _write_outputs(out_dir, sae, metrics, evaluation["firing"])
    return metrics


def _num_steps(n_train: int, cfg: TrainConfig) -> int:
    tokens = cfg.max_tokens if cfg.max_tokens is not None else n_train
    steps = tokens // cfg.batch_size
    if steps < 1:
        raise TrainConfigError(f"train max_tokens={tokens} (store has {n_train} training rows) gives no full batch of batch_size={cfg.batch_size}")
    return steps


@torch.no_grad()
def evaluate(sae: SparseCoder, heldout: np.ndarray, *, batch_size: int = 8192) -> dict:
    """Returns held-out fvu, l0 (mean active latents per token), dead_fraction (latents that never fire)
    and firing (float32 fraction of tokens on which each latent fires)."""
    if len(heldout) == 0:
        raise ValueError("no held-out rows to evaluate on")
    if not np.isfinite(heldout).all():
        raise ValueError("non-finite held-out activations")
    was_training = sae.training
    sae.eval()
    x_all = torch.from_numpy(heldout)
    mean = x_all.double().mean(0)
    counts = torch.zeros(sae.num_latents, dtype=torch.float64)
    err = total = 0.0
    active = 0
    for start in range(0, len(x_all), batch_size):
        x = x_all[start : start + batch_size].to(sae.device)
        acts, idx = sae.encode(x)
        x_hat = sae.decode(acts, idx)
        err += float((x - x_hat).double().pow(2).sum())
        total += float((x.double().cpu() - mean).pow(2).sum())
        on = acts > 0
        active += int(on.sum())
        if idx is None:
            counts += on.sum(0).double().cpu()
        else:
            counts += torch.bincount(idx[on].cpu(), minlength=sae.num_latents).double()
    sae.train(was_training)
    firing = (counts / len(x_all)).float().numpy()
    return {"fvu": err / total, "l0": active / len(x_all), "dead_fraction": float((counts == 0).double().mean()), "firing": firing}


def _warn_if_unhealthy(metrics: dict, log: logging.Logger, out_dir: Path) -> None:
    if metrics["dead_fraction"] > 0.5:
        log.warning("%s: unhealthy SAE: %.1f%% of latents never fire on held-out tokens", out_dir, 100 * metrics["dead_fraction"])
    if metrics["fvu"] > 0.5:
        log.warning("%s: unhealthy SAE: held-out FVU %.3f > 0.5", out_dir, metrics["fvu"])


def _write_outputs(out_dir: Path, sae: SparseCoder, metrics: dict, firing: np.ndarray) -> None:
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    sae.save_to_disk(tmp)
    (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    np.save(tmp / "firing.npy", firing.astype(np.float32))
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)


def file_sha256(path: str | Path) -> str:
    """Returns the sha256 hex digest of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
