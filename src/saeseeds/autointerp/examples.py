"""Which latents autointerp explains, and the text examples it shows for each.

Examples are windows of `window` tokens cut from the cached contexts; a window's activation is the
latent's largest activation on any of its tokens (as in Paulo et al. 2024). The explainer sees each
latent's top windows from the training rows; the scorer sees held-out windows only: active ones sampled
evenly from the quantiles of their activations, so weak activations are tested as well as strong ones,
and non-active ones drawn at random.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from saeseeds.sae.coder import SparseCoder
from saeseeds.activations.store import ActivationStore

LATENT_COLUMNS = ["seed", "latent", "counterpart_seed", "counterpart", "enc_cos", "dec_cos", "shared"]


def select_latents(matches: pd.DataFrame, firing: np.ndarray, *, seeds: tuple[int, int], n_latents: int | None, rng_seed: int = 0) -> pd.DataFrame:
    """Returns the latents to explain: a sample of seed a's firing latents and, for each, its decoder
    counterpart in seed b, one row per (seed, latent) with the pair's matched cosines and `shared` flag.

    The sample is stratified by matched decoder cosine (one latent drawn from each of `n_latents`
    equal-count cosine bins), so a small sample still spans orphans and shared latents alike; None takes
    every firing latent of seed a.
    """
    a, b = seeds
    firing = np.asarray(firing)
    if len(firing) != len(matches):
        raise ValueError(f"firing frequencies of seed {a} cover {len(firing)} latents, the matches {len(matches)}")
    alive = matches[firing[matches["latent"].to_numpy()] > 0].sort_values(["dec_cos", "latent"])
    if n_latents is not None and n_latents < len(alive):
        rng = np.random.default_rng(rng_seed)
        bins = np.array_split(np.arange(len(alive)), n_latents)
        alive = alive.iloc[[int(rng.choice(b_)) for b_ in bins]]
    alive = alive.sort_values("latent")
    side_a = pd.DataFrame({"seed": a, "latent": alive["latent"], "counterpart_seed": b, "counterpart": alive["dec_partner"]})
    side_b = pd.DataFrame({"seed": b, "latent": alive["dec_partner"], "counterpart_seed": a, "counterpart": alive["latent"]})
    out = pd.concat([side_a, side_b], ignore_index=True)
    for name in ("enc_cos", "dec_cos", "shared"):
        out[name] = np.concatenate([alive[name].to_numpy()] * 2)
    return out[LATENT_COLUMNS].astype({"seed": "int64", "latent": "int64", "counterpart_seed": "int64", "counterpart": "int64"})


@dataclass(frozen=True)
class ExampleConfig:
    """How many examples of which kind each latent gets."""

    window: int = 32
    """Tokens per example; must divide the store's context length."""
    explain_examples: int = 20
    """Top-activating training windows shown to the explainer."""
    score_active: int = 20
    """Active held-out windows shown to the scorer (the paper: 100), spread over the quantiles."""
    score_inactive: int = 20
    """Non-active held-out windows shown to the scorer (the paper: 100)."""
    n_quantiles: int = 10
    explain_tokens: int | None = None
    """Training tokens searched for top windows, from the start; None searches them all."""
    seed: int = 0
    batch_rows: int = 8192

    def __post_init__(self) -> None:
        for name in ("window", "explain_examples", "n_quantiles", "batch_rows"):
            if getattr(self, name) < 1:
                raise ValueError(f"autointerp.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("score_active", "score_inactive"):
            if getattr(self, name) < 0:
                raise ValueError(f"autointerp.{name} must be >= 0, got {getattr(self, name)}")


def latent_activations(sae: SparseCoder, x: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
    """Returns the activations [rows, m] of the SAE latents `latents` [m] on activation rows `x` [rows, d]."""
    acts, indices = sae.encode(x.to(sae.device, sae.dtype))
    if indices is None:
        return acts[:, latents].float()
    dense = torch.zeros(len(x), sae.cfg.num_latents, device=acts.device, dtype=torch.float32)
    return dense.scatter_(1, indices, acts.float())[:, latents]


def _window_max(sae: SparseCoder, store: ActivationStore, start: int, stop: int, latents: torch.Tensor, cfg: ExampleConfig):
    """Yields (first window index, per-window max activation [windows, m]) over rows [start, stop) in batches."""
    step = max(cfg.window, cfg.batch_rows // cfg.window * cfg.window)
    for lo in range(start, stop, step):
        hi = min(lo + step, stop)
        x = torch.from_numpy(np.asarray(store.array[lo:hi], dtype=np.float32))
        acts = latent_activations(sae, x, latents)
        yield lo // cfg.window, acts.view(-1, cfg.window, len(latents)).amax(dim=1)


def collect_examples(
    store: ActivationStore, sae: SparseCoder, latents: list[int], *, seed: int, cfg: ExampleConfig,
    decode, log: logging.Logger | None = None,
) -> pd.DataFrame:
    """Returns the example windows of `latents` of one SAE: one row per (latent, window) with its role
    (`explain`, `active`, `inactive`), quantile (active only, else -1), window index, window activation,
    token ids, token strings (`decode` maps ids to strings) and per-token activations of the latent."""
    log = log or logging.getLogger("saeseeds.autointerp.examples")
    tokens = store.token_ids()
    if tokens.shape[1] % cfg.window:
        raise ValueError(f"autointerp.window={cfg.window} does not divide the store's context length {tokens.shape[1]} ({store.path})")
    flat = tokens.reshape(-1)
    index = torch.tensor(latents, dtype=torch.long, device=sae.device)
    m = len(latents)
    stop = store.n_train if cfg.explain_tokens is None else min(store.n_train, cfg.explain_tokens // cfg.window * cfg.window)
    # Running top windows per latent over the training rows: values [K, m], window ids [K, m].
    k = cfg.explain_examples
    best_v = torch.full((0, m), -1.0)
    best_w = torch.zeros((0, m), dtype=torch.long)
    with torch.no_grad():
        for first, wmax in _window_max(sae, store, 0, stop, index, cfg):
            wmax = wmax.cpu()
            ids = torch.arange(first, first + len(wmax)).unsqueeze(1).expand(-1, m)
            vals, pos = torch.cat([best_v, wmax]).topk(min(k, len(best_v) + len(wmax)), dim=0)
            best_w = torch.cat([best_w, ids]).gather(0, pos)
            best_v = vals
        # Held-out windows kept sparse (window, latent, activation): at the paper's scale a dense table would be
        # 62,500 windows x 32,768 latents.
        n_held, hits = 0, []
        for first, wmax in _window_max(sae, store, store.n_train, store.array.shape[0], index, cfg):
            w, j = torch.nonzero(wmax > 0, as_tuple=True)
            hits.append((w.cpu().numpy() + first - store.n_train // cfg.window, j.cpu().numpy(), wmax[w, j].cpu().numpy()))
            n_held += len(wmax)
    first_held = store.n_train // cfg.window
    if hits:
        h_win, h_col, h_val = (np.concatenate(parts) for parts in zip(*hits))
    else:
        h_win, h_col, h_val = np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    order = np.argsort(h_col, kind="stable")
    h_win, h_col, h_val = h_win[order].astype(np.int64), h_col[order], h_val[order]
    bounds = np.searchsorted(h_col, np.arange(m + 1))
    rng = np.random.default_rng([cfg.seed, seed])
    picks: list[tuple[int, str, int, int, float]] = []  # (latent column, role, quantile, window, activation)
    for j in range(m):
        for v, w in zip(best_v[:, j].tolist(), best_w[:, j].tolist()):
            if v > 0:
                picks.append((j, "explain", -1, w, v))
        windows, values = h_win[bounds[j] : bounds[j + 1]], h_val[bounds[j] : bounds[j + 1]]
        for q, chosen in quantile_sample(values, cfg.score_active, cfg.n_quantiles, rng):
            picks += [(j, "active", q, first_held + int(windows[c]), float(values[c])) for c in chosen]
        silent = np.setdiff1d(np.arange(n_held), windows, assume_unique=True)
        for c in rng.choice(silent, size=min(cfg.score_inactive, len(silent)), replace=False):
            picks.append((j, "inactive", -1, first_held + int(c), 0.0))
    log.info("%d latents: %d examples (%d windows searched for top examples, %d held out)", m, len(picks), stop // cfg.window, n_held)
    return _example_table(store, sae, picks, latents, flat, seed=seed, cfg=cfg, decode=decode)


def quantile_sample(values: np.ndarray, n: int, n_quantiles: int, rng: np.random.Generator) -> list[tuple[int, np.ndarray]]:
    """Returns (quantile, positions in `values`) for about n values drawn evenly from n_quantiles equal-count
    bins of the sorted values (quantile 0 the weakest); every value when there are at most n."""
    order = np.argsort(values, kind="stable")
    if len(order) <= n:
        bins = np.array_split(order, min(n_quantiles, max(len(order), 1)))
        return [(q, b) for q, b in enumerate(bins) if len(b)]
    per = np.full(n_quantiles, n // n_quantiles)
    per[n_quantiles - n % n_quantiles :] += 1  # the remainder goes to the strongest bins
    out = []
    for q, (bin_, count) in enumerate(zip(np.array_split(order, n_quantiles), per)):
        if count:
            out.append((q, rng.choice(bin_, size=min(count, len(bin_)), replace=False)))
    return out


def _example_table(store, sae, picks, latents, flat, *, seed, cfg, decode) -> pd.DataFrame:
    columns = ["seed", "latent", "role", "quantile", "window", "activation", "tokens", "token_strs", "token_acts"]
    if not picks:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    cols = np.array([p[0] for p in picks])
    windows = np.array([p[3] for p in picks])
    token_ids = flat.reshape(-1, cfg.window)[windows]
    strings = decode(np.unique(token_ids))
    # Per-token activations of each example's own latent, recomputed for the chosen windows only.
    acts = np.zeros((len(picks), cfg.window), dtype=np.float32)
    per_chunk = max(1, cfg.batch_rows // cfg.window)
    with torch.no_grad():
        for lo in range(0, len(picks), per_chunk):
            w = windows[lo : lo + per_chunk]
            rows = (w[:, None] * cfg.window + np.arange(cfg.window)).reshape(-1)
            x = torch.from_numpy(np.asarray(store.array.get_orthogonal_selection((rows, slice(None))), dtype=np.float32))
            a, idx = sae.encode(x.to(sae.device, sae.dtype))
            want = torch.from_numpy(np.repeat(np.asarray(latents)[cols[lo : lo + per_chunk]], cfg.window)).to(a.device)
            got = a.gather(1, want[:, None])[:, 0] if idx is None else (a * (idx == want[:, None])).sum(1)
            acts[lo : lo + len(w)] = got.float().cpu().numpy().reshape(len(w), cfg.window)
    return pd.DataFrame(
        {
            "seed": np.full(len(picks), seed, dtype=np.int64),
            "latent": np.asarray(latents, dtype=np.int64)[cols],
            "role": [p[1] for p in picks],
            "quantile": np.array([p[2] for p in picks], dtype=np.int64),
            "window": windows.astype(np.int64),
            "activation": np.array([p[4] for p in picks], dtype=np.float32),
            "tokens": [row.astype(np.int32) for row in token_ids],
            "token_strs": [[strings[t] for t in row] for row in token_ids],
            "token_acts": list(acts),
        }
    )


def token_decoder(tokenizer):
    """Returns a function mapping an array of token ids to {id: text of that token alone}."""

    def decode(ids: np.ndarray) -> dict[int, str]:
        ids = [int(i) for i in ids]
        return dict(zip(ids, tokenizer.batch_decode([[i] for i in ids])))

    return decode


