"""Resource estimates for each rule: memory, runtime and disk, from the config alone.

Schedulers (SLURM) need them before a job starts, and `saeseeds plan` sums them into GPU-hours,
CPU-hours and disk before anything is spent. They come from simple cost models (bytes stored,
floating point operations) with throughputs measured on the machines named below; they are
deliberately generous (a job killed for running over its time is worse than one queued a bit longer).
"""

from __future__ import annotations

import math
from typing import Any

from saeseeds.activations.layouts import KNOWN_MODELS
from saeseeds.config.study import NO_SITE
from saeseeds.matching.screen_settings import stored_screen_bytes

# Sustained fp32/tf32 throughputs. CPU: the 2-core dev machine reaches ~100 GFLOP/s in matmuls, about
# half of it in training; its truncated SmolLM2 forward (1889 tok/s to layer 6) is ~100 GFLOP/s.
# GPU: a conservative fraction of an A100/H100.
TRAIN_FLOPS = {"cpu": 50e9, "cuda": 40e12}
FORWARD_FLOPS = {"cpu": 100e9, "cuda": 100e12}
SAFETY = 2.0
MODEL_LOAD_S = 60
"""Loading a model (and tokenising the corpus) before a forward pass: ~18 s for the embedded SmolLM2 here."""


def d_model(config: dict[str, Any], model: str) -> int:
    """Returns the hidden size of a config model: `d_model` if given, else from saeseeds.activations.layouts.KNOWN_MODELS."""
    if model not in config["models"] and model == NO_SITE.model:
        return EXTERNAL_D_MODEL  # an external set with no site: its width is known only once its checkpoints are read
    entry = config["models"][model]
    if "d_model" in entry:
        return int(entry["d_model"])
    if entry["source"] == "synthetic":  # generated activations (saeseeds.synthetic.generator) have width synthetic.d
        return int(entry["synthetic"]["d"])
    if entry["source"] in KNOWN_MODELS:
        return KNOWN_MODELS[entry["source"]].d_model
    raise KeyError(
        f"config key 'models.{model}.d_model': hidden size of '{entry['source']}' is unknown; "
        "set it so resources can be planned"
    )


def device_kind(device: str) -> str:
    """Returns "cuda" for any CUDA device (cuda, cuda:1), else "cpu": the rows of the throughput tables."""
    return "cuda" if device.startswith("cuda") else "cpu"


def throughput_key(config: dict[str, Any], device: str) -> str:
    """Returns the row of the throughput table for a device: `cluster.gpu_model` for cuda when set, else cpu/cuda."""
    kind = device_kind(device)
    if kind == "cuda" and (config.get("cluster") or {}).get("gpu_model"):
        return config["cluster"]["gpu_model"]
    return kind


def _throughput(config: dict[str, Any], device: str, column: str, defaults: dict[str, float]) -> float:
    table = (config.get("cluster") or {}).get("throughput") or {}
    kind = device_kind(device)
    for key in (throughput_key(config, device), kind):  # the GPU model's row, else the device kind's
        if column in table.get(key, {}):
            return float(table[key][column])
    return defaults[kind]


def forward_flops(config: dict[str, Any], device: str) -> float:
    """Returns the effective FLOP/s of a caching forward pass on `device` (config `cluster.throughput`, else FORWARD_FLOPS)."""
    return _throughput(config, device, "forward_flops", FORWARD_FLOPS)


def train_flops(config: dict[str, Any], device: str) -> float:
    """Returns the effective FLOP/s of SAE training (and matching) on `device` (config `cluster.throughput`, else TRAIN_FLOPS)."""
    return _throughput(config, device, "train_flops", TRAIN_FLOPS)


def _minutes(seconds: float) -> int:
    return max(1, math.ceil(SAFETY * seconds / 60))


def hook_layer(hook: str) -> int:
    """Returns the layer index in a hook name (`layers.6.mlp` -> 6); 0 when it names none."""
    numbers = [int(part) for part in hook.split(".") if part.isdigit()]
    return numbers[0] if numbers else 0


def activations_disk_mb(acts: dict[str, Any], d: int) -> int:
    """Returns the store's size: tokens x d x bytes per value."""
    itemsize = 2 if acts.get("dtype", "float16") == "float16" else 4
    return max(1, math.ceil(acts["max_tokens"] * d * itemsize / 2**20))


def forward_flops_per_token(d: int, hooks: str | list[str]) -> float:
    """Returns the FLOPs of one token's forward pass up to the deepest of `hooks`.

    A transformer layer costs ~24 d^2 FLOPs per token (attention and MLP weights, MLP 4x wide).
    """
    hooks = [hooks] if isinstance(hooks, str) else hooks
    return 24 * d * d * (max(hook_layer(h) for h in hooks) + 1)


def activations_seconds(acts: dict[str, Any], d: int, hooks: str | list[str], flops: float | None = None) -> float:
    """Returns the expected caching time (no margin): model load plus one forward to the deepest hook."""
    flops = flops or FORWARD_FLOPS[device_kind(acts.get("device", "cpu"))]
    return MODEL_LOAD_S + acts["max_tokens"] * forward_flops_per_token(d, hooks) / flops


def activations_minutes(acts: dict[str, Any], d: int, hooks: str | list[str], flops: float | None = None) -> int:
    """Returns the time a caching job reserves: `activations_seconds` with the safety margin."""
    return _minutes(activations_seconds(acts, d, hooks, flops))


def on_the_fly_seconds(config: dict[str, Any], model: str, hook: str, sae: str, acts: dict[str, Any]) -> float:
    """Returns what computing its own activations adds to a training job (no margin): a model load and a
    forward pass to `hook` over its training tokens (again in every epoch) and the held-out ones."""
    tokens = config["saes"][sae].get("max_tokens", acts["max_tokens"] - acts["heldout_tokens"])
    flops = forward_flops(config, acts.get("device", "cpu"))
    return MODEL_LOAD_S + (tokens + acts["heldout_tokens"]) * forward_flops_per_token(d_model(config, model), hook) / flops


def on_the_fly_minutes(config: dict[str, Any], model: str, hook: str, sae: str, acts: dict[str, Any]) -> int:
    """Returns the time a training job on the fly reserves on top of training: `on_the_fly_seconds` with the margin."""
    return _minutes(on_the_fly_seconds(config, model, hook, sae, acts))


def activations_mem_mb(d: int) -> int:
    """Returns memory for a model of width d in fp32 (~30 layers of 12 d^2 plus embeddings) and a batch."""
    params = 30 * 12 * d * d + 130_000 * d
    return 2000 + math.ceil(4 * params * 1.5 / 2**20)


EXTERNAL_LATENTS = 16384
EXTERNAL_D_MODEL = 4096
"""Sizes assumed for an external set's jobs when its config gives no `num_latents` (or, without a site, no model
to take the width from): generous, as every estimate here."""


def _sae(config: dict[str, Any], sae: str) -> tuple[int, int, int]:
    entry = config["saes"][sae]
    acts = config["activations"]
    tokens = entry.get("max_tokens", acts["max_tokens"] - acts["heldout_tokens"])
    return entry.get("num_latents", EXTERNAL_LATENTS), entry.get("batch_size", 4096), tokens


def train_minutes(config: dict[str, Any], model: str, sae: str, seeds: int = 1) -> int:
    """Returns training time for `seeds` stacked SAEs: ~6 d n FLOPs per token and seed (the dense
    encoder forward and its two backward matmuls)."""
    n, _, tokens = _sae(config, sae)
    flops = train_flops_per_token(d_model(config, model), n) * tokens * seeds
    device = (config.get("train") or {}).get("device", "cpu")
    return _minutes(30 + flops / train_flops(config, device))


def train_flops_per_token(d: int, n: int) -> float:
    """Returns one seed's training FLOPs per token: ~6 d n (the dense encoder forward and its two backward matmuls)."""
    return 6 * d * n


def train_mem_mb(config: dict[str, Any], model: str, sae: str, seeds: int = 1) -> int:
    """Returns memory for `seeds` SAEs' weights, Adam state and pre-activations [batch, n]."""
    n, batch, _ = _sae(config, sae)
    d = d_model(config, model)
    weights = seeds * 2 * n * d * 4 * 4  # encoder + decoder, with gradients and two Adam moments
    activations = seeds * 3 * batch * n * 4
    return 1500 + math.ceil((weights + activations) / 2**20)


def checkpoint_disk_mb(config: dict[str, Any], model: str, sae: str) -> int:
    """Returns the checkpoint's size (two fp32 matrices) plus training state kept for resuming (x3)."""
    n, _, _ = _sae(config, sae)
    return max(1, math.ceil(4 * 2 * n * d_model(config, model) * 4 / 2**20))


def match_minutes(config: dict[str, Any], model: str, sae: str) -> int:
    """Returns matching time: two n x n x d similarity products plus the assignments."""
    n, _, _ = _sae(config, sae)
    flops = 2 * 2 * n * n * d_model(config, model)
    assignment_s = 2 * 1e-8 * n**2.2 / 10  # sparse exact solver; dense scipy is ~10x this
    return _minutes(10 + flops / train_flops(config, config["match"].get("device", "cpu")) + assignment_s)


def match_mem_mb(config: dict[str, Any], model: str, sae: str) -> int:
    """Returns memory: the dense path holds n x n float64 below 4096 latents; the sparse path, blocks
    and, on CPU up to `screen_settings.KEEP_MAX_LATENTS`, each row's largest screened values (`stored_screen_bytes`;
    a GPU pass keeps none), and on CPU the int8 screen's copies of both sides (3 bytes a coordinate: the integers and
    oneDNN's packed right side); a one-thread job holds one matching's at a time."""
    n, _, _ = _sae(config, sae)
    dense = 3 * 8 * min(n, 4096) ** 2
    on_cpu = config["match"].get("device", "cpu") == "cpu"
    int8_copies = 3 * n * d_model(config, model) if n > 4096 else 0
    sparse = 64 * 8 * n * 4 + ((stored_screen_bytes(n) + int8_copies) if on_cpu else 0)
    return 1500 + math.ceil((dense + sparse) / 2**20)


def match_disk_mb(config: dict[str, Any], sae: str) -> int:
    """Returns the parquet's size: ~30 bytes per latent."""
    n, _, _ = _sae(config, sae)
    return max(1, math.ceil(30 * n / 2**20))


def orphans_mem_mb(config: dict[str, Any], sae: str) -> int:
    """Returns memory for every pair's shared mask plus the tables."""
    n, _, _ = _sae(config, sae)
    seeds = len(config["seeds"])
    return 1000 + math.ceil(seeds * seeds * n * 16 / 2**20)


def orphans_disk_mb(config: dict[str, Any], sae: str) -> int:
    """Returns the two parquet files' size."""
    n, _, _ = _sae(config, sae)
    return max(1, math.ceil(len(config["seeds"]) * n * 24 / 2**20))
