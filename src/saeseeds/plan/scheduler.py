"""What a rule asks a scheduler (SLURM, or a local run's resource limits) for besides its estimates.

The config's `cluster` section decides whether GPU stages ask for a GPU and of which model; retries ask
for more memory and time. Partitions, accounts and QOS are not here: they belong to the Snakemake profile
(profiles/slurm/), since they name things of one cluster, not of the study.
"""

from __future__ import annotations

from typing import Any

GPU_REQUESTS = ("auto", "always", "never")
"""auto: a stage asks for a GPU when its device is cuda; always: GPU stages ask even on cpu (a test node
with a fake `gpu` GRES, so the GPU request path runs); never: nothing asks (a CPU-only cluster)."""


def _cluster(config: dict[str, Any]) -> dict[str, Any]:
    return config.get("cluster") or {}


def gpus(config: dict[str, Any], device: str) -> int:
    """Returns the GPUs a GPU-capable stage running on `device` asks for (0 or 1)."""
    mode = _cluster(config).get("gpu_requests", "auto")
    if mode not in GPU_REQUESTS:
        raise ValueError(f"config key 'cluster.gpu_requests': {mode!r} is not one of {GPU_REQUESTS}")
    if mode == "never":
        return 0
    return 1 if mode == "always" or device.startswith("cuda") else 0


def gpu_model_resources(config: dict[str, Any]) -> dict[str, str]:
    """Returns {"gpu_model": name} when the config names a GPU model (SLURM: --gpus=<model>:1), else {}.

    Declared only when set: an empty resource would override the profile's own default.
    """
    model = _cluster(config).get("gpu_model")
    return {"gpu_model": model} if model else {}


def scaled(value: int, attempt: int) -> int:
    """Returns a memory or time request for retry number `attempt` (1, 2, ...): the estimate times attempt.

    A job killed for memory or time is retried (profile `retries`) with twice, then three times, as much.
    """
    return int(value) * max(1, int(attempt))
