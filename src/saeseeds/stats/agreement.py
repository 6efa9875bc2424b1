"""How many latents two seeds share, by three labellings, with uncertainty over seed pairs and latents.

Labellings of one latent of the first seed of a pair (threshold t):
- `paper`: the paper's text. Encoder and decoder matchings pick the same partner, both cosines >= t.
- `notebook`: the authors' released notebook. Matched encoder and decoder cosines both > t, partners
  may differ.
- `maxcos`: no bijection at all. The best encoder and decoder cosines against any latent of the other
  seed both >= t (Fig A1: how much the one-to-one constraint changes the answer).

Spread: the std of the per-pair fractions over seed pairs. Intervals are not computed here: the unit that
repeats is the seed, not the latent, so `saeseeds.stats.jackknife` resamples seeds (a bootstrap over latents,
used before, measured only how precisely one pair's fraction is known, not how much it varies by seed).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from saeseeds.matching.matches_file import shared_flags

LABELLINGS = ("paper", "notebook", "maxcos")


def labelled_shared(matches: pd.DataFrame, threshold: float, labelling: str) -> np.ndarray:
    """Returns one bool per latent of a matches table: shared under `labelling` at `threshold` (paper and
    notebook: `matches_file.shared_flags`, the one definition the match rule writes; maxcos: best cosines only)."""
    if labelling == "maxcos":
        return ((matches["enc_maxcos"] >= threshold) & (matches["dec_maxcos"] >= threshold)).to_numpy()
    if labelling not in LABELLINGS:
        raise ValueError(f"labelling must be one of {LABELLINGS}, got {labelling!r}")
    return np.asarray(shared_flags(matches["enc_partner"].to_numpy(), matches["enc_cos"].to_numpy(),
                                   matches["dec_partner"].to_numpy(), matches["dec_cos"].to_numpy(), threshold, labelling))


def agreement_stats(tables: Sequence[pd.DataFrame], threshold: float) -> dict[str, float]:
    """Returns, per labelling, the mean and std over pairs of the shared fraction, plus mean matched and
    max cosines, for the match tables of one SAE variant's seed pairs (intervals: `saeseeds.stats.jackknife`)."""
    if not tables:
        raise ValueError("agreement_stats needs at least one matches table")
    out: dict[str, float] = {"pairs": len(tables)}
    for labelling in LABELLINGS:
        per_pair = np.array([labelled_shared(t, threshold, labelling).mean() for t in tables])
        out |= {
            f"shared_{labelling}_mean": float(per_pair.mean()),
            f"shared_{labelling}_std": float(per_pair.std(ddof=0)),
        }
    for column in ("enc_cos", "dec_cos", "enc_maxcos", "dec_maxcos"):
        out[f"{column}_mean"] = float(np.mean([t[column].mean() for t in tables]))
    return out


def shared_fractions(tables: Mapping[str, pd.DataFrame], threshold: float) -> dict[str, float]:
    """Returns the mean shared fraction per labelling over `tables` (no interval; for chance levels)."""
    return {
        f"shared_{labelling}": float(np.mean([labelled_shared(t, threshold, labelling).mean() for t in tables.values()]))
        for labelling in LABELLINGS
    }
