"""Caching one site's activations: tokenise a corpus, run the model up to the hook, stream rows to a store.

Every seed of a site reads the store this writes, so they all see exactly the same activations.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers
from tqdm.auto import tqdm

from saeseeds.corpus import load_texts, tokenize_contexts
from saeseeds.models import hooked_activations, load_model, resolve_hook, weights_pin
from saeseeds.store import ActivationStore, StoreError, StoreWriter

STORE_DTYPES = ("float16", "float32")


@dataclass(kw_only=True)
class ActivationConfig:
    """How many tokens to cache and how; the model, dataset and hook are the site, given separately."""

    max_tokens: int
    """Tokens to cache in all, training plus held-out; rounded down to whole contexts."""

    heldout_tokens: int
    """Tokens at the end of the token stream kept out of training, to measure FVU and firing
    frequencies on; rounded up to whole contexts."""

    context_length: int = 256
    """Tokens per context. 256 as in sparsify's default; longer contexts cost quadratic attention."""

    batch_size: int = 16
    """Contexts per forward pass: memory against speed. On CPU the activations came out bit-identical
    for batch sizes 1 to 8; other backends may round batched matmuls differently."""

    dtype: str = "float16"
    """Storage dtype of the activations: float16 halves disk and read time at ~1e-3 relative error,
    far below what an SAE reconstructs; float32 where values overflow float16 (max 65504)."""

    device: str = "cpu"
    """Torch device for the forward passes."""

    def __post_init__(self) -> None:
        for name in ("max_tokens", "heldout_tokens", "context_length", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ActivationConfig.{name} must be a positive integer, got {value!r}")
        if self.dtype not in STORE_DTYPES:
            raise ValueError(f"ActivationConfig.dtype {self.dtype!r} not one of {STORE_DTYPES}")
        n_ctx = self.max_tokens // self.context_length
        if self.heldout_contexts >= n_ctx:
            raise ValueError(
                f"ActivationConfig: heldout_tokens={self.heldout_tokens} leaves no training context out of "
                f"max_tokens={self.max_tokens} ({n_ctx} contexts of {self.context_length})"
            )

    @property
    def heldout_contexts(self) -> int:
        return math.ceil(self.heldout_tokens / self.context_length)


def cache_activations(
    store_path: str | Path,
    *,
    model_source: str,
    dataset_source: str,
    hook: str,
    cfg: ActivationConfig,
    revision: str = "main",
    model_dtype: str = "float32",
    split: str = "train",
    text_field: str = "text",
    log: logging.Logger | None = None,
) -> ActivationStore:
    """Returns the opened store of `hook`'s activations on the first `cfg.max_tokens` tokens of the dataset.

    Loads the model in `model_dtype` (see `load_model` for why float32), checks the hook name
    before reading any text, tokenises, then hands over to `write_activations`. Progress bars go
    to stderr, messages to `log`.
    """
    log = log or logging.getLogger("saeseeds.activations")
    start = time.perf_counter()
    model, tokenizer = load_model(model_source, revision=revision, dtype=model_dtype, device=cfg.device)
    log.info("loaded %s (%s) in %.1f s", model_source, type(model).__name__, time.perf_counter() - start)
    resolve_hook(model, hook)
    texts = load_texts(dataset_source, split=split, text_field=text_field)
    input_ids = tokenize_contexts(texts, tokenizer, context_length=cfg.context_length, max_tokens=cfg.max_tokens)
    attrs = {
        "model": model_source,
        "revision": revision,
        "model_dtype": model_dtype,
        "weights": weights_pin(model_source, model),
        "dataset": dataset_source,
        "split": split,
        "text_field": text_field,
    }
    return write_activations(store_path, model, input_ids, hook=hook, cfg=cfg, attrs=attrs, log=log)


def write_activations(
    store_path: str | Path,
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    *,
    hook: str,
    cfg: ActivationConfig,
    attrs: dict[str, Any],
    log: logging.Logger | None = None,
) -> ActivationStore:
    """Returns the opened store of `hook`'s activations on `input_ids` [n_ctx, L], one row per token.

    The last `cfg.heldout_contexts` contexts become the held-out rows. Rows go to the store in
    token order, batch by batch, so memory stays at one batch. The first position of every context
    is kept, as in sparsify, although it is atypical: in SmolLM2's residual stream after layer 6 its
    mean norm is ~7x that of the other positions (the "attention sink"); at the layer-6 MLP output
    it is ~6x smaller. The attrs record both mean norms.

    On one torch build the array bytes depend only on the model, the tokens, the hook and the
    storage dtype (on CPU: bit-identical for batch sizes 1 to 8 and 1 or 2 threads); of the attrs
    only `tokens_per_second` differs between two runs.
    """
    log = log or logging.getLogger("saeseeds.activations")
    hook_module = resolve_hook(model, hook)
    if input_ids.ndim != 2 or input_ids.shape[1] != cfg.context_length:
        raise ValueError(f"input_ids of shape {tuple(input_ids.shape)}, expected [n_ctx, {cfg.context_length}]")
    n_ctx, length = input_ids.shape
    n_heldout_ctx = cfg.heldout_contexts
    if n_heldout_ctx >= n_ctx:
        raise ValueError(f"heldout_tokens={cfg.heldout_tokens} leaves none of {n_ctx} contexts for training")
    store_dtype = np.dtype(cfg.dtype)
    writer: StoreWriter | None = None
    forward_seconds = 0.0
    norm_first, norm_rest = 0.0, 0.0
    starts = range(0, n_ctx, cfg.batch_size)
    bar = tqdm(total=n_ctx * length, unit="tok", desc=f"activations {hook}", mininterval=5)
    with bar:
        for batch_index, first in enumerate(starts):
            tick = time.perf_counter()
            acts = hooked_activations(model, hook_module, input_ids[first : first + cfg.batch_size])
            forward_seconds += time.perf_counter() - tick
            acts = acts.detach().to("cpu", torch.float32)
            rows = _store_rows(acts, store_dtype, hook=hook, batch_index=batch_index)
            norms = acts.norm(dim=-1, dtype=torch.float64)
            norm_first += norms[:, 0].sum().item()
            norm_rest += norms[:, 1:].sum().item()
            if writer is None:
                writer = StoreWriter(store_path, n_ctx * length, rows.shape[1], dtype=cfg.dtype)
            writer.append(rows)
            bar.update(rows.shape[0])
    n_tokens = n_ctx * length
    stats = {
        "hook": hook,
        "n_train": (n_ctx - n_heldout_ctx) * length,
        "n_heldout": n_heldout_ctx * length,
        "context_length": length,
        "dtype": cfg.dtype,
        "config": asdict(cfg),
        "tokens_sha256": hashlib.sha256(input_ids.to(torch.int64).numpy().tobytes()).hexdigest(),
        "mean_norm_first_position": norm_first / n_ctx,
        "mean_norm_other_positions": norm_rest / (n_ctx * (length - 1)) if length > 1 else None,
        "tokens_per_second": n_tokens / forward_seconds,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "torch_threads": torch.get_num_threads(),
    }
    log.info(
        "%d tokens of %s at %.0f tok/s; mean activation norm: first position of a context %.4g, others %.4g",
        n_tokens, hook, stats["tokens_per_second"], stats["mean_norm_first_position"],
        stats["mean_norm_other_positions"] or float("nan"),
    )
    writer.add_token_ids(input_ids.numpy())
    return writer.finish({**attrs, **stats})


def _store_rows(acts: torch.Tensor, store_dtype: np.dtype, *, hook: str, batch_index: int) -> np.ndarray:
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
