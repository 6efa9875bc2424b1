"""One SAE set's consistency files: PW-MCC of every seed pair and the matchings comparison of its first pair.

What the `consistency` rule writes (`{sae}/consistency/pwmcc.parquet`, `matchings.parquet`); the summary
reads the first for PW-MCC and its seed-level interval (`saeseeds.stats.jackknife`), `matchings_table` the second.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from saeseeds.matching.checkpoints import load_dictionaries
from saeseeds.matching.alternatives import compare_matchings
from saeseeds.stats.pwmcc import add_truth, pair_table, truth_mcc


def set_consistency(
    checkpoints: Mapping[int, str | Path],
    first_pair: tuple[int, int],
    first_pair_matches: str | Path,
    threshold: float,
    *,
    device: str | None = None,
    truth_dictionary=None,
    recovered: Mapping[int, float] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Returns (per-pair PW-MCC table, matchings table of the first pair) of one SAE set.

    `checkpoints` maps each seed to its checkpoint folder. On a synthetic site pass the true dictionary
    and each seed's recovered fraction of it (`synthetic.recovery`'s truth matchings): the pair table then
    gets both and each seed's truth MCC (`pwmcc.add_truth`).
    """
    dictionaries = {int(s): load_dictionaries(folder) for s, folder in checkpoints.items()}
    pairs = pair_table({s: dec for s, (_, dec) in dictionaries.items()}, device=device)
    if truth_dictionary is not None:
        if recovered is None or set(recovered) != set(dictionaries):
            raise ValueError(f"recovered fractions for seeds {sorted(recovered or {})}, checkpoints for {sorted(dictionaries)}")
        mcc = {s: truth_mcc(dec, truth_dictionary, device=device) for s, (_, dec) in dictionaries.items()}
        pairs = add_truth(pairs, recovered, mcc)
    a, b = first_pair
    table = compare_matchings(*dictionaries[a], *dictionaries[b], pd.read_parquet(first_pair_matches), threshold, device=device)
    table.insert(0, "seed_b", int(b))
    table.insert(0, "seed_a", int(a))
    return pairs, table


def seed_of(path: str | Path) -> int:
    """Returns S of a path `.../seed{S}/...` or `.../seed{S}.parquet` (checkpoint file or truth matching)."""
    path = Path(path)
    for part in (path.stem, path.parent.name):
        if part.startswith("seed") and part[4:].isdigit():
            return int(part[4:])
    raise ValueError(f"{path}: no seed{{S}} in its name or folder")


def folders_by_seed(files: Sequence[str | Path]) -> dict[int, Path]:
    """Returns {seed: checkpoint folder} from a list of files in checkpoint folders (sae.safetensors, cfg.json)."""
    return {seed_of(f): Path(f).parent for f in files}
