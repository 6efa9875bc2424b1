"""Training SAEs on a site's activations (a cached store, or computed on the fly), one checkpoint directory per init seed.

The default recipe is the one the paper used (EleutherAI `sae`, Dec 2024): Adam with
lr = 2e-4 / sqrt(num_latents / 2^14), 1000 steps of linear warmup then linear decay to zero, gradient
clipping at 1.0, decoder rows renormalised every step with the gradient component parallel to each row
removed, k = 32, AuxK off. b_dec starts at the geometric median of the first batch by default
(`b_dec_init`; `sae` did so until 2024-11-22) or at its mean (`b_dec_init: mean`: `sae` from 2024-11-22 on,
including the Dec 2024 multi-seed version, and sparsify 1.3.3). `batch_order: sequences` feeds batches of
whole contexts as that trainer does (its batches are sequences of a dataset shuffled once by a seed); the
default shuffles tokens.

The data order depends on `data_seed` only; a seed only draws the initialisation. Several seeds can
train in one job (`train_saes`): stacked weights, one read of each batch, per-seed results equal to
training each seed alone (on CPU the difference measured is exactly zero; see tests).

Training state (weights, optimiser, step, dead-latent counters, loss curve) is saved periodically to
`<out_dir>.state/`, outside the declared outputs; a killed job restarted with the same arguments
resumes there and ends with the same bytes as an uninterrupted run on CPU, given the same number of
torch threads. CUDA runs are not bitwise reproducible (atomics in embedding_bag's backward, TF32 if
enabled).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from saeseeds.sae.stacked import StackedSae
from saeseeds.common.atomic import as_output_error, remove_stale_temps
from saeseeds.sae.batches import BatchPlan, BatchReader, NonFiniteBatch
from saeseeds.common.progress import ProgressBar
from saeseeds.common.hardware import use_bf16
from saeseeds.sae.coder import SaeConfig, SparseCoder
from saeseeds.sae.screened_topk import AUTO_MIN_LATENTS, screen_depth
from saeseeds.sae.signum import ScheduleFreeSignum
from saeseeds.sae import snapshots as snap
from saeseeds.activations.store import ActivationStore, open_store
from saeseeds.errors import TrainConfigError, TrainingDiverged  # noqa: F401 (raised here; importable from here too)
from saeseeds.sae.configs import SPARSE_ARCHS, TrainConfig  # noqa: F401 (TrainConfig defined there, without torch; importable from here too)

if TYPE_CHECKING:
    from saeseeds.activations.onthefly import OnTheFlyStore

STATE_VERSION = 1


def default_lr(num_latents: int, optimizer: str = "adam") -> float:
    """Returns the default peak lr: 2e-4 (adam) or 5e-3 (signum) times 1 / sqrt(num_latents / 2^14)."""
    base = {"adam": 2e-4, "signum": 5e-3}[optimizer]
    return base / math.sqrt(num_latents / 2**14)


def lr_factor(step: int, warmup_steps: int, num_steps: int) -> float:
    """Returns the schedule multiplier at `step`: linear warmup, then linear decay to 0 (transformers'
    get_linear_schedule_with_warmup, which sparsify uses)."""
    if step < warmup_steps:
        return step / max(1, warmup_steps)
    return max(0.0, (num_steps - step) / max(1, num_steps - warmup_steps))


def train_sae(store_path: str | Path | ActivationStore | OnTheFlyStore, out_dir: str | Path, sae_cfg: SaeConfig, train_cfg: TrainConfig, *, seed: int, data_seed: int, log: logging.Logger | None = None, state_dir: str | Path | None = None, on_step: Callable[[int], None] | None = None) -> dict:
    """Returns the held-out metrics of one SAE trained on `store_path` (see `train_saes`), after writing into `out_dir`
    (atomically) cfg.json + sae.safetensors (sparsify layout), metrics.json, firing.npy and
    loss_curve.parquet."""
    return train_saes(store_path, [out_dir], sae_cfg, train_cfg, seeds=[seed], data_seed=data_seed, log=log, state_dir=state_dir, on_step=on_step)[0]


def train_saes(store_path: str | Path | ActivationStore | OnTheFlyStore, out_dirs: Sequence[str | Path], sae_cfg: SaeConfig, train_cfg: TrainConfig, *, seeds: Sequence[int], data_seed: int, log: logging.Logger | None = None, state_dir: str | Path | None = None, on_step: Callable[[int], None] | None = None) -> list[dict]:
    """Returns held-out metrics per seed after training all `seeds` together (one read of each batch)
    and writing seed i's outputs into `out_dirs[i]` as `train_sae` does.

    `store_path` is a cached store's path (its checksums are verified first) or an opened store: an
    `OnTheFlyStore` computes the activations as batches are read, in the reader thread.

    `state_dir` (default `<out_dirs[0]>.state`) holds the resumable state; it is removed after success.
    `on_step(step)` is called after every optimiser step (progress hooks, tests).
    """
    log = log or logging.getLogger("saeseeds.sae.train")
    sae_cfg = SaeConfig(**sae_cfg) if isinstance(sae_cfg, dict) else sae_cfg
    train_cfg = TrainConfig(**train_cfg) if isinstance(train_cfg, dict) else train_cfg
    seeds = [int(s) for s in seeds]
    out_dirs = [Path(p) for p in out_dirs]
    if len(out_dirs) != len(seeds):
        raise ValueError(f"{len(out_dirs)} out_dirs for {len(seeds)} seeds")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds={seeds}: duplicates")
    if train_cfg.auxk_alpha > 0 and sae_cfg.arch not in SPARSE_ARCHS:
        raise TrainConfigError(f"train auxk_alpha={train_cfg.auxk_alpha}: AuxK applies to topk/batchtopk, not arch={sae_cfg.arch!r}")
    device = torch.device(train_cfg.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise TrainConfigError(f"train device={train_cfg.device!r}: CUDA is not available on this machine")
        torch.backends.cuda.matmul.allow_tf32 = train_cfg.tf32
    if isinstance(store_path, (str, Path)):
        store = open_store(store_path, verify=True)  # a truncated or altered chunk fails here, named
    else:
        store = store_path
    num_steps = total_steps(store.n_train, train_cfg)
    if train_cfg.optimizer == "adam" and train_cfg.warmup_steps >= num_steps:
        raise TrainConfigError(f"train warmup_steps={train_cfg.warmup_steps} must be below the {num_steps} training steps (max_tokens / batch_size)")
    plan = BatchPlan(store.n_train, store.array.chunks[0], train_cfg.batch_size, num_steps, data_seed=data_seed, window_rows=train_cfg.window_rows,
                     context_length=_sequence_length(store, train_cfg))
    lr = train_cfg.lr or default_lr(sae_cfg.num_latents, train_cfg.optimizer)
    state_dir = Path(state_dir) if state_dir is not None else out_dirs[0].with_name(out_dirs[0].name + ".state")
    try:
        snapshot_steps = snap.snapshot_steps(num_steps, train_cfg.snapshots)
    except snap.SnapshotError as err:
        raise TrainConfigError(str(err)) from err

    run = TrainingRun(store, sae_cfg, train_cfg, seeds, data_seed, num_steps, lr, device)
    fingerprint = run.fingerprint()
    start = run.try_resume(state_dir, fingerprint, log)
    if start == 0:  # snapshots left by a run of another config, or by one that saved no state yet
        shutil.rmtree(state_dir / "snapshots", ignore_errors=True)
    S = len(seeds)
    t0 = time.perf_counter()
    wait = 0.0  # time the loop spent waiting for the reader: ~0 when prefetching keeps up
    with BatchReader(store, plan, start_step=start, prefetch=train_cfg.prefetch_batches, device=device) as reader:
        batches = iter(reader)
        bar = ProgressBar(total=num_steps, initial=start, desc=f"train {sae_cfg.arch} seeds {seeds}", unit="step", mininterval=2.0)
        for step in range(start, num_steps):
            tick = time.perf_counter()
            try:
                x = next(batches)
            except NonFiniteBatch as err:
                raise TrainingDiverged(f"{run.site}: non-finite activations in the batch of step {err.step} for seeds "
                                       f"{seeds} (store {store.path}); no checkpoint written") from err
            wait += time.perf_counter() - tick
            run.step(step, x)
            bar.update()
            if on_step is not None:
                on_step(step)
            done = step + 1
            if done in snapshot_steps[:-1]:
                run.check_finite(done)  # a diverged SAE is never saved
                for seed, coder in zip(seeds, run.coders_now()):
                    snap.save_snapshot(coder, snap.state_snapshot_dir(state_dir, seed, done))
            if step % 50 == 0:  # a look every 50 steps: on CUDA each look waits for the device
                run.check_finite(done)
            if train_cfg.state_every_steps and done % train_cfg.state_every_steps == 0 and done < num_steps:
                run.check_finite(done)  # a diverged state is never saved, so a resume cannot restart from it
                run.save_state(state_dir, fingerprint, done, run.elapsed + time.perf_counter() - t0)
        bar.close()
    run.check_finite(num_steps)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    wall = run.elapsed + time.perf_counter() - t0

    saes = run.final_coders()
    heldout = store.heldout()
    order_sha = plan.sha256()
    results = []
    curve = run.curve.cpu().numpy()
    for i, (sae, out_dir, seed) in enumerate(zip(saes, out_dirs, seeds)):
        ev = evaluate(sae.to(device), heldout, batch_size=train_cfg.eval_batch_size)
        metrics = {
            "fvu": ev["fvu"],
            "l0": ev["l0"],
            "dead_fraction": ev["dead_fraction"],
            "tokens_seen": num_steps * train_cfg.batch_size,
            "num_steps": num_steps,
            "seed": seed,
            "data_seed": int(data_seed),
            "wall_time_s": round(wall, 3),
            "tokens_per_s": round(num_steps * train_cfg.batch_size / wall, 1),
            "reader_wait_s": round(wait, 3),
            "seeds_in_job": S,
            "batch_order_sha256": order_sha,
            "heldout_tokens": store.n_heldout,
            "train_fvu_last": float(curve[-1, i, 1]),
            "lr": lr,
            "torch_threads": torch.get_num_threads(),
            "sae": asdict(sae_cfg),
            "train": asdict(train_cfg),
            "store": str(store.path),
            "activations": store.attrs.get("mode", "cache"),
        }
        metrics["warnings"] = _health_warnings(metrics)
        for message in metrics["warnings"]:
            log.warning("%s: unhealthy SAE: %s", out_dir, message)
        along = (lambda tmp, seed=seed: snap.copy_into(tmp, state_dir, seed, snapshot_steps, train_cfg.batch_size)) if snapshot_steps else None
        _write_outputs(out_dir, sae, metrics, ev["firing"], curve[:, i, :], along)
        results.append(metrics)
    shutil.rmtree(state_dir, ignore_errors=True)
    return results


class TrainingRun:
    """The mutable training state of one job: stacked SAEs, optimiser, counters, loss curve. `train_saes`
    drives it; `benchmarks/convergence.py` steps one itself to match seeds at checkpoints along the way."""

    def __init__(self, store: ActivationStore, sae_cfg: SaeConfig, train_cfg: TrainConfig, seeds: list[int], data_seed: int, num_steps: int, lr: float, device: torch.device):
        self.store, self.sae_cfg, self.cfg = store, sae_cfg, train_cfg
        self.seeds, self.data_seed, self.num_steps, self.lr, self.device = seeds, data_seed, num_steps, lr, device
        self.model = StackedSae(store.d_in, sae_cfg, seeds, device=device)
        self.model.screen_topk = use_bf16(train_cfg.encoder_screen, torch.device(device), screen_depth(store.d_in),
                                          "the encoder's top-k", auto=sae_cfg.num_latents >= AUTO_MIN_LATENTS)
        params = list(self.model.parameters())
        if train_cfg.optimizer == "adam":
            # fused: one pass over each tensor instead of a dozen elementwise kernels (~3x faster step)
            self.opt: torch.optim.Optimizer = torch.optim.Adam(params, lr=lr, fused=True)
        else:
            self.opt = ScheduleFreeSignum(params, lr=lr)
        S, n = len(seeds), sae_cfg.num_latents
        self.site = f"site {store.path.parent} (hook {store.attrs.get('hook')})"
        self.checked = 0  # steps whose losses and gradients are known finite
        self.grad_norm = torch.zeros(num_steps, S, dtype=torch.float32, device=device)
        self.since_fired = torch.zeros(S, n, dtype=torch.long, device=device)
        # step, seed -> loss, fvu, l0; kept on the device so CUDA steps never wait on a copy
        self.curve = torch.zeros(num_steps, S, 3, dtype=torch.float64, device=device)
        self.elapsed = 0.0

    def fingerprint(self) -> str:
        """Returns what must match for a saved state to be resumed, as canonical JSON."""
        train = {k: v for k, v in asdict(self.cfg).items() if k not in ("prefetch_batches", "eval_batch_size", "state_every_steps")}
        attrs = self.store.attrs
        return json.dumps(
            {"version": STATE_VERSION, "sae": asdict(self.sae_cfg), "train": train, "seeds": self.seeds, "data_seed": self.data_seed,
             "store": {k: attrs[k] for k in ("model", "revision", "dataset", "hook", "n_tokens", "n_train", "d_in")}},
            sort_keys=True,
        )

    def step(self, step: int, x: torch.Tensor) -> None:
        model, cfg = self.model, self.cfg
        if step == 0:
            model.init_from_first_batch(x, cfg.b_dec_init)
        if cfg.optimizer == "adam":
            for group in self.opt.param_groups:
                group["lr"] = self.lr * lr_factor(step, cfg.warmup_steps, self.num_steps)
        sparsity = cfg.l0_coefficient if self.sae_cfg.arch == "jumprelu" else cfg.l1_coefficient
        if cfg.sparsity_warmup_steps:
            sparsity *= min(1.0, (step + 1) / cfg.sparsity_warmup_steps)
        dead = self.since_fired > cfg.dead_feature_threshold if cfg.auxk_alpha > 0 else None
        out = model.training_losses(x, dead_mask=dead, coef={"sparsity": sparsity, "auxk_alpha": cfg.auxk_alpha})
        loss = out["loss"]
        loss.sum().backward()
        with torch.no_grad():
            self.since_fired += len(x)
            self.since_fired[out["fired"]] = 0
            self.curve[step, :, 0] = loss.detach()
            self.curve[step, :, 1] = out["fvu"].detach()
            self.curve[step, :, 2] = out["l0"]
        if self.sae_cfg.normalize_decoder:
            model.remove_gradient_parallel_to_decoder_directions()
        with torch.no_grad():
            if cfg.grad_clip is not None and cfg.optimizer == "adam":
                self.grad_norm[step] = model.clip_grad_norm_(cfg.grad_clip)
            else:
                grads = [p.grad.reshape(len(self.seeds), -1) for p in model.parameters() if p.grad is not None]
                self.grad_norm[step] = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g, dim=1) for g in grads]), dim=0)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        if self.sae_cfg.normalize_decoder:
            model.set_decoder_norm_to_unit_norm()
        model.project_parameters()
        if self.sae_cfg.arch == "batchtopk":
            model.update_batchtopk_threshold(out["min_act"])

    def check_finite(self, upto: int) -> None:
        """Raises TrainingDiverged naming the first step (and its seeds) with a non-finite loss or gradient."""
        if upto <= self.checked:
            return
        loss_bad = ~torch.isfinite(self.curve[self.checked : upto, :, 0])
        grad_bad = ~torch.isfinite(self.grad_norm[self.checked : upto])
        bad = (loss_bad | grad_bad).any(dim=1)
        if bool(bad.any()):
            row = int(torch.nonzero(bad)[0, 0])
            step = self.checked + row
            what = "loss" if bool(loss_bad[row].any()) else "gradient"
            seeds = [s for s, b in zip(self.seeds, (loss_bad[row] | grad_bad[row]).tolist()) if b]
            raise TrainingDiverged(
                f"{self.site}: training diverged: non-finite {what} at step {step} for seeds {seeds} "
                f"(lr {self.lr:.3g}); no checkpoint written. Lower the SAE's lr or check the activations"
            )
        self.checked = upto

    def coders_now(self) -> list[SparseCoder]:
        """Returns each seed's SAE at this step without changing the training state (schedule-free: the x weights)."""
        if not isinstance(self.opt, ScheduleFreeSignum):
            return self.model.to_coders()
        x = self.opt.eval_params()
        with torch.no_grad():
            y = {p: p.detach().clone() for p in x}
            for p, value in x.items():
                p.copy_(value)
            coders = self.model.to_coders()
            for p, value in y.items():
                p.copy_(value)
        return coders

    def final_coders(self) -> list[SparseCoder]:
        """Returns each seed's trained SAE (schedule-free: the averaged weights x)."""
        if isinstance(self.opt, ScheduleFreeSignum):
            x = self.opt.eval_params()
            with torch.no_grad():
                for p, value in x.items():
                    p.copy_(value)
        self.check_finite(self.num_steps)
        for name, p in self.model.named_parameters():
            if not bool(torch.isfinite(p).all()):
                raise TrainingDiverged(f"{self.site}: non-finite weights in {name!r} after training for seeds {self.seeds}; no checkpoint written")
        return self.model.to_coders()

    def save_state(self, state_dir: Path, fingerprint: str, step: int, elapsed: float) -> None:
        """Writes the state after `step` steps to state_dir/state.pt atomically."""
        state_dir.mkdir(parents=True, exist_ok=True)
        payload = {
            "fingerprint": fingerprint,
            "step": step,
            "elapsed": elapsed,
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "since_fired": self.since_fired,
            "curve": self.curve[:step],
        }
        tmp = state_dir / f".state.pt.tmp-{os.getpid()}"
        try:
            torch.save(payload, tmp)
            os.replace(tmp, state_dir / "state.pt")
        except (OSError, RuntimeError) as err:  # torch reports a failed write as RuntimeError
            tmp.unlink(missing_ok=True)
            reason = err if isinstance(err, OSError) else OSError(None, str(err).splitlines()[0])
            raise as_output_error(state_dir / "state.pt", reason, "resumable training state") from err

    def try_resume(self, state_dir: Path, fingerprint: str, log: logging.Logger) -> int:
        """Returns the step to start from: restored from state_dir/state.pt when it matches, else 0."""
        path = state_dir / "state.pt"
        if not path.exists():
            return 0
        try:
            payload = torch.load(path, map_location=self.device, weights_only=True)
        except Exception as err:  # a corrupt or foreign file: start over, loudly
            log.warning("%s: unreadable training state (%s); starting from step 0", path, err)
            return 0
        if payload.get("fingerprint") != fingerprint:
            log.warning("%s: saved state belongs to another config, seed list or store; starting from step 0", path)
            return 0
        self.model.load_state_dict(payload["model"])
        self.opt.load_state_dict(payload["optimizer"])
        self.since_fired.copy_(payload["since_fired"])
        step = int(payload["step"])
        self.checked = step  # states are saved only after a finiteness check
        self.curve[:step] = payload["curve"]
        self.elapsed = float(payload["elapsed"])
        log.info("%s: resuming at step %d of %d", path, step, self.num_steps)
        return step


def _sequence_length(store, cfg: TrainConfig) -> int | None:
    """Returns the rows per context that `batch_order: sequences` batches by (None for tokens); a store
    without contexts (synthetic rows) or a batch that is not whole contexts fails naming the key."""
    if cfg.batch_order != "sequences":
        return None
    length = store.attrs.get("context_length")
    if not length:
        raise TrainConfigError(f"train batch_order='sequences': store {store.path} has no context_length (rows are not sequences); use batch_order: tokens")
    length = int(length)
    if cfg.batch_size % length:
        raise TrainConfigError(f"train batch_size={cfg.batch_size}: batch_order 'sequences' needs a multiple of the context length {length}")
    if store.array.chunks[0] % length or store.n_train % length:
        raise TrainConfigError(f"train batch_order='sequences': store {store.path} chunks ({store.array.chunks[0]} rows) or training rows "
                               f"({store.n_train}) are not whole contexts of {length}")
    return length


def total_steps(n_train: int, cfg: TrainConfig) -> int:
    """Returns the optimiser steps of a run: max_tokens (else one pass over the store's training rows) in whole batches."""
    tokens = cfg.max_tokens if cfg.max_tokens is not None else n_train
    steps = tokens // cfg.batch_size
    if steps < 1:
        raise TrainConfigError(f"train max_tokens={tokens} (store has {n_train} training rows) gives no full batch of batch_size={cfg.batch_size}")
    return steps


@torch.no_grad()
def evaluate(sae: SparseCoder, heldout: np.ndarray, *, batch_size: int = 2048) -> dict:
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
        x = x_all[start : start + batch_size]
        acts, idx = sae.encode(x.to(sae.device))
        x_hat = sae.decode(acts, idx).cpu()
        acts = acts.cpu()
        err += float((x.double() - x_hat.double()).pow(2).sum())
        total += float((x.double() - mean).pow(2).sum())
        on = acts > 0
        active += int(on.sum())
        if idx is None:
            counts += on.sum(0).double()
        else:
            counts += torch.bincount(idx.cpu()[on], minlength=sae.num_latents).double()
    sae.train(was_training)
    firing = (counts / len(x_all)).float().numpy()
    return {"fvu": err / total, "l0": active / len(x_all), "dead_fraction": float((counts == 0).double().mean()), "firing": firing}


def _health_warnings(metrics: dict) -> list[str]:
    out = []
    if metrics["dead_fraction"] > 0.5:
        out.append(f"{100 * metrics['dead_fraction']:.1f}% of latents never fire on held-out tokens")
    if metrics["fvu"] > 0.5:
        out.append(f"held-out FVU {metrics['fvu']:.3f} > 0.5")
    return out


def _write_outputs(out_dir: Path, sae: SparseCoder, metrics: dict, firing: np.ndarray, curve: np.ndarray, along: Callable[[Path], None] | None = None) -> None:
    """Writes one seed's folder beside its place, then renames it there: never half a checkpoint.
    `along(tmp)` adds the snapshots along training to the folder before the rename."""
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    try:
        remove_stale_temps(out_dir)
        tmp.mkdir(parents=True)
        sae.save_to_disk(tmp)
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        np.save(tmp / "firing.npy", firing.astype(np.float32))
        table = pa.table({"step": pa.array(np.arange(len(curve), dtype=np.int64)), "loss": curve[:, 0], "fvu": curve[:, 1], "l0": curve[:, 2]})
        pq.write_table(table, tmp / "loss_curve.parquet")
        if along is not None:
            along(tmp)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if err.errno is None:
            raise
        raise as_output_error(out_dir, err) from err
