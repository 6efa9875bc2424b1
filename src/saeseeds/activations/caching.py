"""Caching one site's activations: tokenise a corpus, run the model up to the hook, stream rows to a store.

Every seed of a site reads the store this writes, so they all see exactly the same activations.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import transformers

from saeseeds.activations.corpus import load_texts, tokenize_contexts
from saeseeds.activations.forward import add_norms, forward_batches
from saeseeds.activations.models import load_model, resolve_hook, weights_pin
from saeseeds.common.progress import ProgressBar
from saeseeds.activations.store import ActivationStore, StoreWriter

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

    chunk_rows: int = 8192
    """Rows per zarr chunk: the unit of reads in training, of checksums, and of resuming a killed
    cache (a restarted job keeps every whole chunk written before the kill)."""

    def __post_init__(self) -> None:
        for name in ("max_tokens", "heldout_tokens", "context_length", "batch_size", "chunk_rows"):
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


@dataclass(frozen=True)
class SiteSource:
    """Where a site's activations come from: a model and a text corpus (config `models.NAME`, `datasets.NAME`)."""

    model: str
    """A hub id, a local folder, or `embedded:smollm2-135m`."""

    dataset: str
    """A hub id (`name` or `name:config`) or `embedded:kjv-pydoc`."""

    revision: str = "main"
    model_dtype: str = "float32"
    split: str = "train"
    text_field: str = "text"

    @classmethod
    def from_config(cls, model: Mapping[str, Any], dataset: Mapping[str, Any]) -> "SiteSource":
        """Returns the source named by a site's config entries, with their defaults."""
        return cls(
            model=model["source"], dataset=dataset["source"], revision=model.get("revision", "main"),
            model_dtype=model.get("dtype", "float32"), split=dataset.get("split", "train"), text_field=dataset.get("text_field", "text"),
        )


def cache_activations(store_path: str | Path, *, hook: str, **kwargs: Any) -> ActivationStore:
    """Returns the opened store of `hook`'s activations; `cache_activations_multi` with one hook."""
    return cache_activations_multi({hook: store_path}, **kwargs)[hook]


def cache_activations_multi(
    store_paths: Mapping[str, str | Path], *, source: SiteSource, cfg: ActivationConfig, log: logging.Logger | None = None
) -> dict[str, ActivationStore]:
    """Returns {hook: opened store} of each hook's activations on the first `cfg.max_tokens` tokens of the dataset.

    `store_paths` maps hook names to store paths; one forward pass per batch serves them all.
    Loads the model and tokenises (`load_site`), then hands over to `write_activations_multi`.
    Progress bars go to stderr, messages to `log`.
    """
    log = log or logging.getLogger("saeseeds.activations.caching")
    model, input_ids, attrs = load_site(source, hooks=list(store_paths), cfg=cfg, log=log)
    return write_activations_multi(store_paths, model, input_ids, cfg=cfg, attrs=attrs, log=log)


def load_site(
    source: SiteSource, *, hooks: list[str], cfg: ActivationConfig, max_tokens: int | None = None, log: logging.Logger | None = None
) -> tuple[torch.nn.Module, torch.Tensor, dict[str, Any]]:
    """Returns (model, token ids [contexts, context_length], the attrs naming model and data) of a site.

    Loads the model in `source.model_dtype` (see `load_model` for why float32) on `cfg.device` and checks
    every hook name before reading any text, so a typo fails in seconds. Tokenises the first `max_tokens`
    tokens (default `cfg.max_tokens`); the token stream is cut the same way for every budget.
    """
    log = log or logging.getLogger("saeseeds.activations.caching")
    start = time.perf_counter()
    model, tokenizer = load_model(source.model, revision=source.revision, dtype=source.model_dtype, device=cfg.device)
    log.info("loaded %s (%s) in %.1f s", source.model, type(model).__name__, time.perf_counter() - start)
    for hook in hooks:
        resolve_hook(model, hook)
    texts = load_texts(source.dataset, split=source.split, text_field=source.text_field)
    input_ids = tokenize_contexts(texts, tokenizer, context_length=cfg.context_length, max_tokens=max_tokens or cfg.max_tokens)
    attrs = {
        "model": source.model,
        "revision": source.revision,
        "model_dtype": source.model_dtype,
        "weights": weights_pin(source.model, model),
        "dataset": source.dataset,
        "split": source.split,
        "text_field": source.text_field,
    }
    return model, input_ids, attrs


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
    """Returns the opened store of `hook`'s activations on `input_ids`; `write_activations_multi` with one hook."""
    return write_activations_multi({hook: store_path}, model, input_ids, cfg=cfg, attrs=attrs, log=log)[hook]


def write_activations_multi(
    store_paths: Mapping[str, str | Path],
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    *,
    cfg: ActivationConfig,
    attrs: dict[str, Any],
    log: logging.Logger | None = None,
) -> dict[str, ActivationStore]:
    """Returns {hook: opened store} of each hook's activations on `input_ids` [n_ctx, L], one row per token.

    One forward pass per batch, stopped after the deepest hook, feeds every store. The last
    `cfg.heldout_contexts` contexts become the held-out rows. Rows go to the stores in token order,
    batch by batch, so memory stays at one batch. The first position of every context is kept, as in
    sparsify, although it is atypical: in SmolLM2's residual stream after layer 6 its mean norm is ~7x
    that of the other positions (the "attention sink"); at the layer-6 MLP output it is ~6x smaller.
    The attrs record both mean norms (of the stored, dtype-rounded rows).

    A job killed part-way leaves `<store>.tmp` with its whole chunks checksummed; rerun with the same
    model, tokens, hooks and settings, it keeps those chunks and restarts the forward passes at the
    batch holding the first row missing from any of the stores, so each store ends with the same bytes
    as an uninterrupted run.

    On one torch build a store's array bytes depend only on the model, the tokens, its hook and the
    storage dtype, not on the other hooks of the pass (on CPU: bit-identical for batch sizes 1 to 8
    and 1 or 2 threads); of the attrs only `tokens_per_second` and `hooks_in_pass` differ between runs.
    """
    log = log or logging.getLogger("saeseeds.activations.caching")
    hooks = list(store_paths)
    if not hooks:
        raise ValueError("store_paths is empty: name at least one hook")
    modules = [resolve_hook(model, hook) for hook in hooks]
    n_ctx = check_contexts(input_ids, cfg)
    length = cfg.context_length
    store_dtype = np.dtype(cfg.dtype)
    tokens_sha256 = token_ids_sha256(input_ids)
    norm_first = dict.fromkeys(hooks, 0.0)
    norm_rest = dict.fromkeys(hooks, 0.0)
    n_batches = math.ceil(n_ctx / cfg.batch_size)
    batches = forward_batches(model, modules, hooks, input_ids, batch_size=cfg.batch_size, store_dtype=store_dtype)
    first_batch = next(batches)  # its rows fix each store's width
    forward_seconds, computed = first_batch[3], len(first_batch[2][hooks[0]])
    writers: dict[str, StoreWriter] = {}
    for hook in hooks:
        fingerprint = json.dumps({"attrs": attrs, "hook": hook, "config": asdict(cfg), "tokens_sha256": tokens_sha256,
                                  "torch": torch.__version__, "transformers": transformers.__version__},
                                 sort_keys=True, default=str)
        writers[hook] = StoreWriter(store_paths[hook], n_ctx * length, first_batch[2][hook].shape[1], dtype=cfg.dtype,
                                    chunk_rows=cfg.chunk_rows, fingerprint=fingerprint)
    bar = ProgressBar(total=n_ctx * length, unit="tok", desc=f"activations {'+'.join(hooks)}", mininterval=5)
    with bar:
        resume_batch = min(w.resumed_rows for w in writers.values()) // (cfg.batch_size * length)
        if resume_batch:
            kept = ", ".join(f"{hook}: {w.resumed_rows} of {n_ctx * length} rows kept" for hook, w in writers.items())
            log.info("resuming an interrupted cache (%s; whole chunks with matching checksums); "
                     "forward passes restart at batch %d of %d", kept, resume_batch, n_batches)
            for done in range(resume_batch):  # their norms, from the rows already stored
                lo, hi = done * cfg.batch_size * length, min((done + 1) * cfg.batch_size, n_ctx) * length
                for hook, writer in writers.items():
                    norm_first[hook], norm_rest[hook] = add_norms(writer.array[lo:hi], length, norm_first[hook], norm_rest[hook])
            bar.update(resume_batch * cfg.batch_size * length)
            batches = forward_batches(model, modules, hooks, input_ids, batch_size=cfg.batch_size, store_dtype=store_dtype,
                                      start=resume_batch)
        else:
            batches = itertools.chain([first_batch], batches)
        for batch_index, first, rows, seconds in batches:
            if batch_index > 0:  # batch 0 was counted when it opened the stores
                forward_seconds += seconds
                computed += len(rows[hooks[0]])
            for hook, writer in writers.items():
                norm_first[hook], norm_rest[hook] = add_norms(rows[hook], length, norm_first[hook], norm_rest[hook])
                stored = writer.cursor + writer.pending_rows - first * length  # rows of this batch already in the store
                writer.append(rows[hook][max(0, stored):])
            bar.update(len(rows[hooks[0]]))
    n_tokens = n_ctx * length
    shared = {
        **row_layout(cfg, n_ctx, tokens_sha256),
        "tokens_per_second": computed / forward_seconds,
        "hooks_in_pass": hooks,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "torch_threads": torch.get_num_threads(),
    }
    stores = {}
    for hook in hooks:
        stats = {**shared, "hook": hook, **mean_norms(norm_first[hook], norm_rest[hook], n_ctx, length)}
        log.info(
            "%d tokens of %s at %.0f tok/s (one pass for %d hooks); mean activation norm: first position of a context %.4g, others %.4g",
            n_tokens, hook, stats["tokens_per_second"], len(hooks), stats["mean_norm_first_position"],
            stats["mean_norm_other_positions"] or float("nan"),
        )
        writers[hook].add_token_ids(input_ids.numpy())
        stores[hook] = writers[hook].finish({**attrs, **stats})
    return stores


def check_contexts(input_ids: torch.Tensor, cfg: ActivationConfig) -> int:
    """Returns the number of contexts in `input_ids` after checking they are [n_ctx, cfg.context_length] and
    leave training contexts besides the held-out ones."""
    if input_ids.ndim != 2 or input_ids.shape[1] != cfg.context_length:
        raise ValueError(f"input_ids of shape {tuple(input_ids.shape)}, expected [n_ctx, {cfg.context_length}]")
    n_ctx = int(input_ids.shape[0])
    if cfg.heldout_contexts >= n_ctx:
        raise ValueError(f"heldout_tokens={cfg.heldout_tokens} leaves none of {n_ctx} contexts for training")
    return n_ctx


def token_ids_sha256(input_ids: torch.Tensor | np.ndarray) -> str:
    """Returns the sha256 of token ids as int64 little-endian bytes in row order: what a store's rows were computed from."""
    return hashlib.sha256(np.ascontiguousarray(np.asarray(input_ids), dtype="<i8").tobytes()).hexdigest()


def row_layout(cfg: ActivationConfig, n_ctx: int, tokens_sha256: str) -> dict[str, Any]:
    """Returns the store attrs that say which rows hold what: training and held-out row counts (the last
    `cfg.heldout_contexts` contexts are held out), context length, dtype, settings and the tokens' hash.
    Written alike by a caching job, joined shards and a store computed on the fly."""
    length = cfg.context_length
    return {
        "n_train": (n_ctx - cfg.heldout_contexts) * length,
        "n_heldout": cfg.heldout_contexts * length,
        "context_length": length,
        "dtype": cfg.dtype,
        "config": asdict(cfg),
        "tokens_sha256": tokens_sha256,
    }


def mean_norms(norm_first: float, norm_rest: float, n_ctx: int, length: int) -> dict[str, float | None]:
    """Returns the store attrs of mean row norm at the first and at the other positions of a context, from sums."""
    return {
        "mean_norm_first_position": norm_first / n_ctx,
        "mean_norm_other_positions": norm_rest / (n_ctx * (length - 1)) if length > 1 else None,
    }
