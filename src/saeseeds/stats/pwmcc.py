"""PW-MCC (Song et al. 2025): the mean matched |cosine| of two decoders, averaged over pairs of runs.

Song et al. ("Mechanistic Interpretability Should Prioritize Feature Consistency in SAEs", code
xiangchensong/sae-feature-consistency) define the pairwise dictionary mean correlation coefficient of two
SAEs as the mean absolute cosine of their decoder directions under the one-to-one matching that
maximises the total absolute cosine (Hungarian), and PW-MCC of a set of runs as its mean over every pair.
Absolute cosine makes it sign-invariant: a direction and its negative count as the same feature.

Two differences from saeseeds' own matching, both on purpose:
- |cos| instead of signed cosine. The paper's shared fraction (`saeseeds.matching.match`) matches signed cosines.
  Song et al.'s released `MCC` function (`examples/dictionary_learning/utils.py`) solves the assignment on
  1 - cos, i.e. signed; that signed variant is exactly the mean `dec_cos` of saeseeds' decoder matching
  (same objective), so the summary reports it too (`pwmcc_signed`) at no extra cost.
- Decoder rows only (no encoder), no threshold: PW-MCC is a continuous score, not a labelling.

The |cos| matching reuses saeseeds' exact assignment (`saeseeds.matching.assignment`): dense scipy up to
`match.DENSE_MAX_N` latents, the certified sparse solver above it, fed |cos| instead of cos. A dead
latent (zero decoder row) has |cos| 0 with everything, as in Song et al.'s code (they divide by a norm of 1).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch

from saeseeds.matching.assignment import Assignment
from saeseeds.matching.match import DENSE_MAX_N, match_rows
from saeseeds.stats.pwmcc_stats import recovery_correlation  # noqa: F401 (re-exported; torch-free for the summary)
from saeseeds.matching.similarity import resolve_device

PAIR_COLUMNS = ("a", "b", "pwmcc", "certified")
"""Columns of the per-pair table; synthetic sites add `recovered_a`, `recovered_b`, `truth_mcc_a`, `truth_mcc_b`."""


def match_abs(
    wa: np.ndarray,
    wb: np.ndarray,
    *,
    device: str | torch.device | None = None,
    dense_max_n: int = DENSE_MAX_N,
    block_rows: int = 1024,
) -> Assignment:
    """Returns the exact matching of the rows of wa to the rows of wb that maximises the summed |cosine|.

    `cos` and `row_max` of the result are absolute cosines. Same solver as seed-to-seed matching, so
    the optimum is exact (certified above `dense_max_n` latents) for the float32 |cos| matrix. Decoders
    of different sizes (external sets) are matched as seeds are (`saeseeds.matching.match.match_rows`): every latent of the
    smaller side gets a partner; rows of a left over get partner -1 and cosine NaN.
    """
    wa, wb = np.asarray(wa, np.float32), np.asarray(wb, np.float32)
    if wa.ndim != 2 or wb.ndim != 2 or wa.shape[1] != wb.shape[1] or 0 in wa.shape or 0 in wb.shape:
        raise ValueError(f"decoders must be non-empty [n, d] with one d, got {wa.shape} and {wb.shape}")
    if not (np.isfinite(wa).all() and np.isfinite(wb).all()):
        raise ValueError("decoders have non-finite values")
    return match_rows(wa, wb, device=resolve_device(device), dense_max_n=dense_max_n, block_rows=block_rows, absolute=True)


def pair_mcc(dec_a: np.ndarray, dec_b: np.ndarray, **kwargs) -> tuple[float, bool]:
    """Returns (MCC of two decoders, whether the matching is certified optimal): mean matched |cos|, over the
    min(n_a, n_b) matched pairs when the sizes differ."""
    result = match_abs(dec_a, dec_b, **kwargs)
    return float(np.nanmean(result.cos.astype(np.float64))), bool(result.certificate["certified"])


def truth_mcc(decoder: np.ndarray, dictionary: np.ndarray, **kwargs) -> float:
    """Returns the MCC of a decoder against a true dictionary: mean over true features of the matched |cos|.

    Song et al.'s ground-truth check. When the sizes differ the smaller side is padded with zero rows
    (|cos| 0, as in `saeseeds.synthetic.recovery`), and the mean runs over the true features, so a true feature
    left to padding counts 0.
    """
    decoder, dictionary = np.asarray(decoder, np.float32), np.asarray(dictionary, np.float32)
    if decoder.ndim != 2 or dictionary.ndim != 2 or decoder.shape[1] != dictionary.shape[1]:
        raise ValueError(f"decoder {decoder.shape} and true dictionary {dictionary.shape} must be [*, d] with one d")
    size = max(len(decoder), len(dictionary))
    pad = lambda w: np.vstack([w, np.zeros((size - len(w), w.shape[1]), np.float32)])  # noqa: E731
    result = match_abs(pad(dictionary), pad(decoder), **kwargs)
    return float(np.mean(result.cos[: len(dictionary)], dtype=np.float64))


def pair_table(decoders: Mapping[int, np.ndarray], **kwargs) -> pd.DataFrame:
    """Returns one row per seed pair a < b: `a, b, pwmcc, certified` (the MCC of their decoders)."""
    seeds = sorted(decoders)
    if len(seeds) < 2:
        raise ValueError(f"PW-MCC needs at least 2 seeds, got {seeds}")
    rows = []
    for a, b in itertools.combinations(seeds, 2):
        mcc, certified = pair_mcc(decoders[a], decoders[b], **kwargs)
        rows.append({"a": a, "b": b, "pwmcc": mcc, "certified": certified})
    table = pd.DataFrame(rows, columns=list(PAIR_COLUMNS))
    return table.astype({"a": "int64", "b": "int64", "pwmcc": "float64", "certified": "bool"})


def add_truth(table: pd.DataFrame, recovered: Mapping[int, float], mcc: Mapping[int, float]) -> pd.DataFrame:
    """Returns the pair table with each seed's ground-truth recovery (fraction of true features) and truth MCC."""
    out = table.copy()
    for side in ("a", "b"):
        out[f"recovered_{side}"] = out[side].map(lambda s: float(recovered[s])).astype("float64")
        out[f"truth_mcc_{side}"] = out[side].map(lambda s: float(mcc[s])).astype("float64")
    return out
