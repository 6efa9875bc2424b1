"""How many latents two seeds share, by three labellings, with uncertainty over seed pairs and latents.

Labellings of one latent of the first seed of a pair (threshold t):
- `paper`: the paper's text. Encoder and decoder matchings pick the same partner, both cosines >= t.
- `notebook`: the authors' released notebook. Matched encoder and decoder cosines both > t, partners
  may differ.
- `maxcos`: no bijection at all. The best encoder and decoder cosines against any latent of the other
  seed both >= t (Fig A1: how much the one-to-one constraint changes the answer).

Uncertainty: the spread (std) of the per-pair fractions over seed pairs, and a percentile bootstrap
over latents (every pair resampled with the same latent indices, since pairs share their latents).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

LABELLINGS = ("paper", "notebook", "maxcos")
BOOTSTRAP_SAMPLES = 1000
BOOTSTRAP_SEED = 0


def shared_flags(matches: pd.DataFrame, threshold: float, labelling: str) -> np.ndarray:
    """Returns one bool per latent of a matches table: shared under `labelling` at `threshold`."""
    if labelling == "paper":
        return ((matches["enc_partner"] == matches["dec_partner"]) & (matches["enc_cos"] >= threshold) & (matches["dec_cos"] >= threshold)).to_numpy()
    if labelling == "notebook":
        return ((matches["enc_cos"] > threshold) & (matches["dec_cos"] > threshold)).to_numpy()
    if labelling == "maxcos":
        return ((matches["enc_maxcos"] >= threshold) & (matches["dec_maxcos"] >= threshold)).to_numpy()
    raise ValueError(f"labelling must be one of {LABELLINGS}, got {labelling!r}")


def bootstrap_interval(flags: np.ndarray, *, samples: int = BOOTSTRAP_SAMPLES, level: float = 0.95, seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """Returns the percentile bootstrap interval of the mean shared fraction over pairs.

    `flags` is [pairs, latents]; each bootstrap sample draws latent indices with replacement, the same
    for every pair. Fixed seed: the same input gives the same interval.
    """
    flags = np.asarray(flags, dtype=bool)
    if flags.ndim != 2 or flags.shape[1] == 0:
        raise ValueError(f"flags must be [pairs, latents] with at least one latent, got shape {flags.shape}")
    per_latent = flags.mean(axis=0)
    n = per_latent.size
    rng = np.random.default_rng(seed)
    stats = np.empty(samples)
    chunk = max(1, 2_000_000 // n)
    for start in range(0, samples, chunk):
        stop = min(samples, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        stats[start:stop] = per_latent[idx].mean(axis=1)
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(stats, [tail, 100 - tail])
    return float(lo), float(hi)


def agreement_stats(tables: Sequence[pd.DataFrame], threshold: float) -> dict[str, float]:
    """Returns, per labelling, the mean and std over pairs and the bootstrap interval of the shared
    fraction, plus mean matched and max cosines, for the match tables of one SAE variant's seed pairs."""
    if not tables:
        raise ValueError("agreement_stats needs at least one matches table")
    same_size = len({len(t) for t in tables}) == 1
    out: dict[str, float] = {"pairs": len(tables)}
    for labelling in LABELLINGS:
        per_pair_flags = [shared_flags(t, threshold, labelling) for t in tables]
        per_pair = np.array([f.mean() for f in per_pair_flags])
        # The bootstrap resamples latents shared by all pairs; seeds of different sizes (external sets) have none.
        lo, hi = bootstrap_interval(np.stack(per_pair_flags)) if same_size else (float("nan"), float("nan"))
        out |= {
            f"shared_{labelling}_mean": float(per_pair.mean()),
            f"shared_{labelling}_std": float(per_pair.std(ddof=0)),
            f"shared_{labelling}_ci_lo": lo,
            f"shared_{labelling}_ci_hi": hi,
        }
    for column in ("enc_cos", "dec_cos", "enc_maxcos", "dec_maxcos"):
        out[f"{column}_mean"] = float(np.mean([t[column].mean() for t in tables]))
    return out


def shared_fractions(tables: Mapping[str, pd.DataFrame], threshold: float) -> dict[str, float]:
    """Returns the mean shared fraction per labelling over `tables` (no bootstrap; for chance levels)."""
    return {
        f"shared_{labelling}": float(np.mean([shared_flags(t, threshold, labelling).mean() for t in tables.values()]))
        for labelling in LABELLINGS
    }
