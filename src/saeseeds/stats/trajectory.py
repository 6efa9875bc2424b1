"""Consistency over training: the seeds of one SAE set matched at each of their checkpoints along training.

One table per SAE set, one row per checkpoint step: tokens seen, the shared fraction (paper definition,
mean and std over seed pairs) and `mean_matched_dec_cos`, the mean over pairs of the mean |cosine| of
decoder rows matched by saeseeds' exact matching (a PW-MCC-like number: Song et al. 2025 match decoder
rows by |cosine| and average the matched |cosine| over pairs; the matching here maximises the signed
cosine, so the two differ only where a matched cosine is negative). The final step is read from the
set's existing matches files, not matched again.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd

from saeseeds.common.atomic import atomic_write, write_parquet
from saeseeds.matching.checkpoints import load_dictionaries
from saeseeds.matching.matches_file import read_matches, shared_flags
from saeseeds.sae.snapshots import SnapshotError, list_checkpoints

COLUMNS = ["step", "tokens", "final", "pairs", "shared_paper_mean", "shared_paper_std", "mean_matched_dec_cos", "mean_matched_dec_cos_std"]


def pair_numbers(table: pd.DataFrame, threshold: float) -> tuple[float, float]:
    """Returns (shared fraction under the paper's definition, mean matched decoder |cos|) of one matches table."""
    shared = shared_flags(table["enc_partner"].to_numpy(), table["enc_cos"].to_numpy(), table["dec_partner"].to_numpy(),
                          table["dec_cos"].to_numpy(), threshold, "paper")
    return float(shared.mean()), float(np.abs(table["dec_cos"].to_numpy(dtype=np.float64)).mean())


def trajectory_table(sae_dir: str | Path, seeds: Sequence[int], *, threshold: float, device: str = "cpu", log=None) -> pd.DataFrame:
    """Returns one row per checkpoint step of the SAE set in `sae_dir` ({site}/{sae}) with its seeds' agreement there.

    Every seed must list the same steps (they share the data order and schedule); a seed trained with
    another `snapshots` setting is an error naming it.
    """
    sae_dir = Path(sae_dir)
    seeds = sorted(int(s) for s in seeds)
    if len(seeds) < 2:
        raise SnapshotError(f"{sae_dir}: consistency over training needs two or more seeds, got {seeds}")
    listed = {s: list_checkpoints(sae_dir / f"seed{s}") for s in seeds}
    steps = [(c["step"], c["tokens"]) for c in listed[seeds[0]]]
    for s, checkpoints in listed.items():
        if [(c["step"], c["tokens"]) for c in checkpoints] != steps:
            raise SnapshotError(f"{sae_dir}/seed{s}/snapshots/steps.json: steps differ from seed{seeds[0]}'s; retrain the set with one `snapshots` setting")
    from saeseeds.matching.match import match_dictionaries  # torch: imported here so that Fig X2's rule reads COLUMNS without it

    rows = []
    for i, (step, tokens) in enumerate(steps):
        final = listed[seeds[0]][i]["final"]
        numbers = []
        dicts = {} if final else {s: load_dictionaries(listed[s][i]["path"]) for s in seeds}
        for a, b in combinations(seeds, 2):
            if final:
                table, _ = read_matches(sae_dir / "matches" / f"seed{a}-seed{b}.parquet")
            else:
                (enc_a, dec_a), (enc_b, dec_b) = dicts[a], dicts[b]
                table, _ = match_dictionaries(enc_a, dec_a, enc_b, dec_b, threshold=threshold, definition="paper", device=device)
            numbers.append(pair_numbers(table, threshold))
        shared, dec = np.array(numbers).T
        rows.append({"step": step, "tokens": tokens, "final": final, "pairs": len(numbers),
                     "shared_paper_mean": shared.mean(), "shared_paper_std": shared.std(ddof=0),
                     "mean_matched_dec_cos": dec.mean(), "mean_matched_dec_cos_std": dec.std(ddof=0)})
        if log is not None:
            log.info("step %d (%d tokens): shared %.4f, mean matched decoder |cos| %.4f over %d pairs", step, tokens, shared.mean(), dec.mean(), len(numbers))
    return pd.DataFrame(rows, columns=COLUMNS)


def write_trajectory(table: pd.DataFrame, *, parquet: str | Path, csv: str | Path) -> None:
    """Writes the trajectory table as parquet and CSV, each atomically."""
    write_parquet(table, parquet)
    atomic_write(csv, lambda tmp: table.to_csv(tmp, index=False, float_format="%.4f"))
