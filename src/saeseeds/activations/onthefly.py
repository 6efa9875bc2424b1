"""Activations computed inside the job that reads them (as sparsify trains), instead of read from a cache.

`OnTheFlyStore` has the reading side of `ActivationStore` (rows by range or by index, the held-out rows,
token ids, attrs), so the trainer and the latent-example search take either. Reading rows runs the model
over the caching job's forward batches that hold them and rounds to the storage dtype, so the rows are
the bytes a cache of the same settings holds and training on the fly ends with the checkpoint training
on the cache ends with (on CPU; tested). The price: one model load per job and a forward pass over every
row read, again in every epoch; the gain: no disk and no caching job. `saeseeds plan` weighs the two.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from saeseeds.activations.caching import ActivationConfig, SiteSource, check_contexts, load_site, row_layout, token_ids_sha256
from saeseeds.activations.forward import batch_rows
from saeseeds.activations.models import resolve_hook
from saeseeds.activations.store import StoreRows

MODES = ("cache", "on_the_fly")
"""activations.mode: `cache` (a caching job writes a store that training jobs read) or `on_the_fly`."""


class ForwardRows:
    """Rows [n_tokens, d] of one hook, computed on demand: the part of a zarr array's interface readers use.

    Row r is token r % L of context r // L. Contexts are forwarded in the caching job's batches (contexts
    [b * batch_size, (b + 1) * batch_size)), so every row comes out of the same computation as in a cache;
    the last few batches are kept, since consecutive reads often share one.
    """

    def __init__(self, model: torch.nn.Module, hook: str, input_ids: torch.Tensor, cfg: ActivationConfig, *, keep_batches: int = 4):
        self.model, self.hook, self.input_ids, self.cfg = model, hook, input_ids, cfg
        self.module = resolve_hook(model, hook)
        self.n_ctx, self.context_length = input_ids.shape
        self.dtype = np.dtype(cfg.dtype)
        self._kept: OrderedDict[int, np.ndarray] = OrderedDict()
        self._keep = max(1, keep_batches)
        self._lock = threading.Lock()  # the trainer's reader thread and the main thread may both read
        self.forward_batches = 0
        d = self._batch(0).shape[1]
        n_tokens = self.n_ctx * self.context_length
        self.shape = (n_tokens, d)
        self.chunks = (min(cfg.chunk_rows, n_tokens), d)  # as the StoreWriter of this cache would chunk it

    @property
    def ndim(self) -> int:
        return 2

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key) -> np.ndarray:
        """Returns rows `key` (a slice with step 1, optionally with `:` for the columns) in the storage dtype."""
        key = self._rows_of(key)
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError(f"{self.hook}: on-the-fly rows are read by a slice with step 1, got {key!r}")
        lo, hi, _ = key.indices(self.shape[0])
        if hi <= lo:
            return np.empty((0, self.shape[1]), dtype=self.dtype)
        L, B = self.context_length, self.cfg.batch_size
        first, last = lo // L // B, (hi - 1) // L // B
        rows = np.concatenate([self._batch(b) for b in range(first, last + 1)])
        offset = first * B * L
        return rows[lo - offset : hi - offset]

    def get_orthogonal_selection(self, selection) -> np.ndarray:
        """Returns rows at the given indices (zarr's orthogonal selection with all columns)."""
        rows = np.asarray(self._rows_of(selection), dtype=np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= self.shape[0]):
            raise IndexError(f"{self.hook}: rows outside [0, {self.shape[0]})")
        out = np.empty((len(rows), self.shape[1]), dtype=self.dtype)
        per_batch = self.context_length * self.cfg.batch_size
        for b in np.unique(rows // per_batch):
            where = np.nonzero(rows // per_batch == b)[0]
            out[where] = self._batch(int(b))[rows[where] - b * per_batch]
        return out

    def _rows_of(self, selection):
        """Returns the row part of a selection `rows` or `(rows, :)`; TypeError when it selects columns."""
        rows, *cols = selection if isinstance(selection, tuple) else (selection,)
        if any(c != slice(None) for c in cols):
            raise TypeError(f"{self.hook}: on-the-fly rows are read whole, got columns {cols}")
        return rows

    def _batch(self, b: int) -> np.ndarray:
        """Returns the rows of forward batch b, computing it unless it is one of the last few read."""
        with self._lock:
            if b in self._kept:
                self._kept.move_to_end(b)
                return self._kept[b]
            B = self.cfg.batch_size
            ids = self.input_ids[b * B : (b + 1) * B]
            # batch b is the caching job's batch b: a NaN or overflow is reported as the cache reports it
            rows = batch_rows(self.model, [self.module], [self.hook], ids, self.dtype, b)[self.hook]
            self.forward_batches += 1
            self._kept[b] = rows
            if len(self._kept) > self._keep:
                self._kept.popitem(last=False)
            return rows


class OnTheFlyStore(StoreRows):
    """A site's activations, computed when read: the interface of `ActivationStore` that readers use."""

    def __init__(self, path: str | Path, model: torch.nn.Module, input_ids: torch.Tensor, *, hook: str, cfg: ActivationConfig, attrs: Mapping[str, Any]):
        """`path` names the site in messages (no file is written); `attrs` name the model and data (`load_site`)."""
        n_ctx = check_contexts(input_ids, cfg)
        self.path = Path(path)
        self.array = ForwardRows(model, hook, input_ids, cfg)
        self.attrs = {
            **attrs,
            "hook": hook,
            "mode": "on_the_fly",
            "n_tokens": self.array.shape[0],
            "d_in": self.array.shape[1],
            **row_layout(cfg, n_ctx, token_ids_sha256(input_ids)),
        }

    def token_ids(self) -> np.ndarray:
        """Returns the token ids [contexts, context_length] behind the rows."""
        return self.array.input_ids.numpy()


def open_on_the_fly(path: str | Path, *, model: Mapping[str, Any], dataset: Mapping[str, Any], hook: str, activations: Mapping[str, Any], log: logging.Logger | None = None) -> OnTheFlyStore:
    """Returns the on-the-fly store of a site from its config entries (`models.NAME`, `datasets.NAME`, the
    site's `activations` settings less `mode`, `threads` and `shards`): loads the model and tokenises."""
    cfg = ActivationConfig(**activations)
    loaded_model, input_ids, attrs = load_site(SiteSource.from_config(model, dataset), hooks=[hook], cfg=cfg, log=log)
    store = OnTheFlyStore(path, loaded_model, input_ids, hook=hook, cfg=cfg, attrs=attrs)
    (log or logging.getLogger("saeseeds.activations.onthefly")).info(
        "activations of %s computed on the fly: %d training and %d held-out tokens, d = %d", hook, store.n_train, store.n_heldout, store.d_in
    )
    return store
