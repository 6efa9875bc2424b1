"""Top-activating contexts and activation histograms of every latent of an SAE, for the latent browser.

Autointerp's examples (saeseeds.autointerp.examples) cover only the latents it explains; the browser shows
every latent, so it makes one cheap pass of its own: the first `tokens` rows of the cached store are
encoded once per seed, every non-zero activation is kept sparse (row, latent, value), and from those
come each latent's histogram and its few strongest contexts, with the per-token activations of the
shown tokens read back from the same sparse table (no second encoding).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from saeseeds.browser.settings import ContextConfig
from saeseeds.sae.coder import SparseCoder


@dataclass(frozen=True)
class LatentScan:
    """What one seed's pass found, per latent: histogram counts [n, bins] of non-zero activations, their
    largest value [n] (0 for a latent that never fired), active token count [n], and contexts: parallel
    lists (latent, first row, peak activation, per-token activations [window]) sorted by latent then
    activation, strongest first."""

    n_rows: int
    counts: np.ndarray
    max_act: np.ndarray
    n_active: np.ndarray
    ctx_latent: np.ndarray
    ctx_start: np.ndarray
    ctx_peak: np.ndarray
    ctx_acts: np.ndarray


def sparse_activations(sae: SparseCoder, rows: np.ndarray, cfg: ContextConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns (row, latent, value) of every non-zero activation of `sae` on `rows` [r, d], sorted by latent then row.

    TopK codes come back from the encoder already sparse (k values and their latents per row), so at 32K
    latents no dense [rows, latents] matrix is ever built for them."""
    parts = []
    with torch.no_grad():
        for lo in range(0, len(rows), cfg.batch_rows):
            x = torch.from_numpy(np.asarray(rows[lo : lo + cfg.batch_rows], dtype=np.float32)).to(sae.device, sae.dtype)
            acts, indices = sae.encode(x)
            if indices is None:
                r, j = torch.nonzero(acts > 0, as_tuple=True)
                v = acts[r, j]
            else:
                keep = acts > 0
                r = torch.arange(len(x), device=acts.device)[:, None].expand_as(indices)[keep]
                j, v = indices[keep], acts[keep]
            parts.append(((r + lo).cpu().numpy(), j.cpu().numpy(), v.float().cpu().numpy()))
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    row, lat, val = (np.concatenate(p) for p in zip(*parts))
    order = np.lexsort((row, lat))
    return row[order].astype(np.int64), lat[order].astype(np.int64), val[order].astype(np.float32)


def scan_latents(sae: SparseCoder, rows: np.ndarray, context_length: int, cfg: ContextConfig) -> LatentScan:
    """Returns the LatentScan of `sae` on `rows` [r, d], where each run of `context_length` rows is one
    context (the store's layout).

    A latent's contexts are its strongest aligned windows (one per window, so five hits in one sentence
    count once), each shown as `window` tokens around the peak token, moved to stay inside its context.
    """
    n = sae.cfg.num_latents
    row, lat, val = sparse_activations(sae, rows, cfg)
    bounds = np.searchsorted(lat, np.arange(n + 1))
    n_active = np.diff(bounds)
    max_act = np.zeros(n, np.float32)
    has = n_active > 0
    max_act[has] = np.maximum.reduceat(val, bounds[:-1][has]) if len(val) else 0
    counts = np.zeros((n, cfg.bins), np.int64)
    if len(val):
        scaled = val / max_act[lat]
        np.add.at(counts, (lat, np.minimum((scaled * cfg.bins).astype(np.int64), cfg.bins - 1)), 1)
    # The strongest hit of each (latent, aligned window), then each latent's `examples` strongest of those.
    key = lat * (len(rows) // cfg.window + 1) + row // cfg.window
    by_strength = np.lexsort((-val, key))
    _, first = np.unique(key[by_strength], return_index=True)
    best = by_strength[first]
    best = best[np.lexsort((-val[best], lat[best]))]
    starts = np.searchsorted(lat[best], lat[best], side="left")
    chosen = best[np.arange(len(best)) - starts < cfg.examples]
    width = min(cfg.window, context_length)
    peak = row[chosen]
    ctx = peak // context_length * context_length
    start = np.clip(peak - width // 2, ctx, np.minimum(ctx + context_length, len(rows)) - width)
    start = np.maximum(start, 0)
    acts = np.zeros((len(chosen), width), np.float32)
    # Per-token activations of the shown tokens: look each (latent, row) up in the sparse table.
    where = lat * len(rows) + row  # sorted, since the table is sorted by latent then row
    for t in range(width):
        want = lat[chosen] * len(rows) + start + t
        pos = np.minimum(np.searchsorted(where, want), max(len(where) - 1, 0))
        hit = (where[pos] == want) if len(where) else np.zeros(len(want), bool)
        acts[hit, t] = val[pos[hit]]
    return LatentScan(len(rows), counts, max_act, n_active.astype(np.int64), lat[chosen], start, val[chosen], acts)
