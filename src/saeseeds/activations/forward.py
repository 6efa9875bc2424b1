"""The forward loop every activations path shares: caching, cache shards and activations computed on the fly.

Each batch of contexts runs through the model once, up to the deepest hook (`models.hooked_activations_multi`);
its activations become store rows (one per token, in the store's dtype) here, checked for NaN, inf and dtype
overflow, so a row has the same bytes whichever path computed it and a bad batch is reported alike.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from saeseeds.activations.models import hooked_activations_multi
from saeseeds.errors import StoreError


def store_rows(acts: torch.Tensor, store_dtype: np.dtype, *, hook: str, batch_index: int) -> np.ndarray:
    """Returns activations [B, L, d] as store rows [B*L, d]; fails on NaN/inf or float16 overflow."""
    if not torch.isfinite(acts).all():
        raise StoreError(f"hook {hook!r}: NaN or inf activations in batch {batch_index}")
    with np.errstate(over="ignore"):  # overflow is reported below, with the hook and batch
        rows = acts.reshape(-1, acts.shape[-1]).numpy().astype(store_dtype)
    if not np.isfinite(rows).all():
        raise StoreError(
            f"hook {hook!r}: activations up to {acts.abs().max().item():.3g} overflow {store_dtype} in batch "
            f"{batch_index}; cache with dtype float32"
        )
    return rows


def batch_rows(model: torch.nn.Module, modules: Sequence[torch.nn.Module], hooks: Sequence[str], input_ids: torch.Tensor,
               store_dtype: np.dtype, batch_index: int) -> dict[str, np.ndarray]:
    """Returns {hook: store rows} of one batch of contexts `input_ids` [B, L] (forward batch `batch_index`)."""
    outputs = hooked_activations_multi(model, list(modules), input_ids)
    return {hook: store_rows(acts.detach().to("cpu", torch.float32), store_dtype, hook=hook, batch_index=batch_index)
            for hook, acts in zip(hooks, outputs)}


def forward_batches(model: torch.nn.Module, modules: Sequence[torch.nn.Module], hooks: Sequence[str], input_ids: torch.Tensor, *,
                    batch_size: int, store_dtype: np.dtype, start: int = 0) -> Iterator[tuple[int, int, dict[str, np.ndarray], float]]:
    """Yields (batch index, first context, {hook: store rows}, forward seconds) for every batch of `batch_size`
    contexts of `input_ids` from batch `start` on, in order."""
    for batch_index, first in enumerate(range(0, len(input_ids), batch_size)):
        if batch_index < start:
            continue
        tick = time.perf_counter()
        rows = batch_rows(model, modules, hooks, input_ids[first : first + batch_size], store_dtype, batch_index)
        yield batch_index, first, rows, time.perf_counter() - tick


def add_norms(rows: np.ndarray, length: int, norm_first: float, norm_rest: float) -> tuple[float, float]:
    """Returns the running sums of row norms at the first and at the other positions of each context."""
    norms = torch.from_numpy(np.ascontiguousarray(rows)).view(-1, length, rows.shape[-1]).norm(dim=-1, dtype=torch.float64)
    return norm_first + norms[:, 0].sum().item(), norm_rest + norms[:, 1:].sum().item()
