"""Chance levels of the shared fraction: what two seeds would share with no learning, or no matching.

- `init`: the same SAE variant at initialisation (untrained, same seeds), matched exactly as trained
  SAEs are. Random directions in d dimensions have cosines near 0, so this shows how much of the
  overlap training creates.
- `random`: the trained SAEs of a pair under a random bijection instead of the optimal one (one random
  permutation used for encoder and decoder, so only the cosine thresholds decide). This shows how much
  of the overlap the matching finds rather than the threshold lets through.

Both use the pairs of the seeds given (the workflow gives at most `config.study.CHANCE_SEEDS` of a set); the random
permutation is drawn from a fixed seed, so the result is reproducible.
"""

from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from saeseeds.stats.agreement import shared_fractions
from saeseeds.matching.checkpoints import load_dictionaries
from saeseeds.matching.match import match_dictionaries
from saeseeds.sae.stacked import StackedSae
from saeseeds.sae.coder import config_from_dict
from saeseeds.matching.similarity import resolve_device, unit_rows

RANDOM_MATCHING_SEED = 0


def init_dictionaries(cfg_path: str | Path, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Returns (W_enc, W_dec) [n, d] of the variant in `cfg_path` as training initialises it from `seed`."""
    cfg, d_in = config_from_dict(json.loads(Path(cfg_path).read_text()), source=cfg_path)
    sae = StackedSae(d_in, cfg, [seed])
    return sae.W_enc[0].detach().numpy().copy(), sae.W_dec[0].detach().numpy().copy()


def random_matching(enc_a: np.ndarray, dec_a: np.ndarray, enc_b: np.ndarray, dec_b: np.ndarray, *, seed: int, device: str | None = None) -> pd.DataFrame:
    """Returns a matches-like table pairing latent i of a with latent perm[i] of b for a random perm.

    Max-cos columns are the matched cosines (a random bijection gives no max-cos information).
    """
    n, n_b = enc_a.shape[0], enc_b.shape[0]
    # Of different sizes: a random one-to-one map of the smaller side into the larger (a's extra latents get -1).
    rng = np.random.default_rng(seed)
    if n <= n_b:
        perm = rng.permutation(n_b)[:n]  # equal sizes: the same permutation as always
    else:
        perm = np.full(n, -1, dtype=np.int64)
        perm[rng.permutation(n)[:n_b]] = np.arange(n_b)
    matched = perm >= 0
    dev = resolve_device(device)

    def cos(wa: np.ndarray, wb: np.ndarray) -> np.ndarray:
        ua, ub = unit_rows(wa[matched], dev), unit_rows(wb[perm[matched]], dev)
        out = np.full(n, np.nan, dtype=np.float32)
        out[matched] = (ua * ub).sum(dim=1).cpu().numpy().astype(np.float32)
        return out

    enc_cos, dec_cos = cos(enc_a, enc_b), cos(dec_a, dec_b)
    return pd.DataFrame({
        "latent": np.arange(n), "enc_partner": perm, "enc_cos": enc_cos, "dec_partner": perm, "dec_cos": dec_cos,
        "enc_maxcos": enc_cos, "dec_maxcos": dec_cos,
    })


INIT_UNKNOWN = "external set: how someone else's SAE was initialised is unknown, so there is no init chance level"


def chance_levels(checkpoints: Sequence[str | Path], seeds: Sequence[int], *, threshold: float, device: str | None = None, init: bool = True) -> dict:
    """Returns the init and random-matching shared fractions over the pairs of the seeds given (the workflow
    passes at most `config.study.CHANCE_SEEDS` of a set's seeds).

    `checkpoints[i]` is the folder (cfg.json, sae.safetensors) of the trained SAE of `seeds[i]`. With
    `init` false (external sets) only the random matching is computed and `init` is None, with a note.
    """
    if len(checkpoints) != len(seeds) or len(seeds) < 2:
        raise ValueError(f"need one checkpoint per seed and at least 2 seeds; got {len(checkpoints)} checkpoints, seeds {list(seeds)}")
    chosen = list(zip(seeds, checkpoints))
    pairs = list(combinations(range(len(chosen)), 2))
    init = {s: init_dictionaries(Path(ck) / "cfg.json", s) for s, ck in chosen} if init else None
    trained = {s: load_dictionaries(ck) for s, ck in chosen}
    init_tables, random_tables = {}, {}
    with torch.inference_mode():
        for i, j in pairs:
            (sa, _), (sb, _) = chosen[i], chosen[j]
            key = f"seed{sa}-seed{sb}"
            if init is not None:
                init_tables[key], _ = match_dictionaries(*init[sa], *init[sb], threshold=threshold, device=device)
            random_tables[key] = random_matching(*trained[sa], *trained[sb], seed=RANDOM_MATCHING_SEED, device=device)
    random = shared_fractions(random_tables, threshold)
    return {
        "threshold": float(threshold),
        "pairs": sorted(random_tables),
        "init": shared_fractions(init_tables, threshold) if init is not None else None,
        **({} if init is not None else {"init_note": INIT_UNKNOWN}),
        # max-cos labelling needs no matching, so a random matching has no level of its own for it
        "random": {k: v for k, v in random.items() if k != "shared_maxcos"},
    }
