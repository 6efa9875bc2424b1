"""The per-latent stability table of a set of checkpoints, by each latent's original id.

One row per (checkpoint, latent): `checkpoint` (as given), `label`, `latent` (the id the checkpoint's
own library gives it), `n_shared` (how many of the other checkpoints share it), `firing_frequency`
(NaN when unknown), then for every checkpoint L of the set the columns `partner_L`, `enc_cos_L`,
`dec_partner_L`, `dec_cos_L`, `shared_L`: its encoder partner's id in L and the cosine, its decoder
partner and cosine, and whether it is shared with L. A checkpoint's columns about itself are empty
(-1, NaN, False). A user filters their features to the reproducible ones with `n_shared`, and finds
a feature's twin in another seed with `partner_L`.

Each unordered pair is matched once; the other direction is the same matching read backwards
(`saeseeds.stats.orphans.b_view`), so the table is symmetric by construction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd

from saeseeds.common.atomic import atomic_write, write_parquet_with_metadata
from saeseeds.matching.matches_file import MatchesError, UncertifiedMatching, certificate_problem
from saeseeds.stats.orphans import b_view

PAIR_COLUMNS = ("partner", "enc_cos", "dec_partner", "dec_cos", "shared")


def _forward(df: pd.DataFrame) -> dict[str, np.ndarray]:
    return {c: df[c].to_numpy() for c in ("enc_partner", "enc_cos", "dec_partner", "dec_cos", "shared")}


def stability_table(
    checkpoints: Sequence[str],
    labels: Sequence[str],
    n_latents: Sequence[int],
    pairs: Mapping[tuple[int, int], tuple[pd.DataFrame, dict]],
    firing: Mapping[int, np.ndarray | None] | None = None,
) -> pd.DataFrame:
    """Returns the stability table from the matches of every pair i < j of the checkpoints (by position).

    `pairs[(i, j)]` is (matches table, metadata) of checkpoint i against j, as `match_dictionaries`
    gives it; all must agree on threshold and definition and be certified (never a statistic from
    an unproven matching). `firing[i]`, when given and not None, is checkpoint i's firing frequency.
    """
    k = len(checkpoints)
    if k < 2 or len(labels) != k or len(n_latents) != k or len(set(labels)) != k:
        raise MatchesError(f"need at least 2 checkpoints with distinct labels; got {list(labels)} for {list(checkpoints)}")
    settings = None
    views: dict[tuple[int, int], dict[str, np.ndarray]] = {}
    for i, j in combinations(range(k), 2):
        if (i, j) not in pairs:
            raise MatchesError(f"matches of {checkpoints[i]} against {checkpoints[j]} missing")
        df, meta = pairs[(i, j)]
        problem = certificate_problem(meta)
        if problem:
            raise MatchesError(f"{checkpoints[i]} vs {checkpoints[j]}: {problem}")
        these = (meta["threshold"], meta["definition"])
        if settings is not None and these != settings:
            raise MatchesError(f"{checkpoints[i]} vs {checkpoints[j]}: threshold/definition {these} differ from {settings}")
        settings = these
        if len(df) != n_latents[i] or meta.get("n_b", meta["n"]) != n_latents[j]:
            raise MatchesError(f"{checkpoints[i]} vs {checkpoints[j]}: matches of {len(df)} x {meta.get('n_b', meta['n'])} latents, checkpoints have {n_latents[i]} x {n_latents[j]}")
        views[(i, j)] = _forward(df)
        views[(j, i)] = b_view(df, n_latents[j], *these)
    frames = []
    for i in range(k):
        n = n_latents[i]
        freq = None if firing is None else firing.get(i)
        cols: dict[str, object] = {
            "checkpoint": pd.Series([str(checkpoints[i])] * n, dtype=object),
            "label": pd.Series([str(labels[i])] * n, dtype=object),
            "latent": np.arange(n, dtype=np.int64),
            "n_shared": sum(views[(i, j)]["shared"].astype(np.int64) for j in range(k) if j != i),
            "firing_frequency": np.full(n, np.nan) if freq is None else np.asarray(freq, dtype=np.float64),
        }
        for j, label in enumerate(labels):
            v = views.get((i, j))
            cols[f"partner_{label}"] = v["enc_partner"].astype(np.int64) if v else np.full(n, -1, dtype=np.int64)
            cols[f"enc_cos_{label}"] = v["enc_cos"].astype(np.float32) if v else np.full(n, np.nan, dtype=np.float32)
            cols[f"dec_partner_{label}"] = v["dec_partner"].astype(np.int64) if v else np.full(n, -1, dtype=np.int64)
            cols[f"dec_cos_{label}"] = v["dec_cos"].astype(np.float32) if v else np.full(n, np.nan, dtype=np.float32)
            cols[f"shared_{label}"] = v["shared"].astype(bool) if v else np.zeros(n, dtype=bool)
        frames.append(pd.DataFrame(cols))
    return pd.concat(frames, ignore_index=True)


def write_stability(table: pd.DataFrame, metadata: dict, parquet: str | Path | None = None, csv: str | Path | None = None) -> None:
    """Writes the table as parquet (with `metadata` under b"saeseeds") and/or CSV, each atomically."""
    if parquet is not None:
        write_parquet_with_metadata(table, metadata, parquet)
    if csv is not None:
        atomic_write(csv, lambda tmp: table.to_csv(tmp, index=False, float_format="%.7g"))


def output_paths(out: str | Path) -> tuple[Path | None, Path | None]:
    """Returns (parquet, csv) paths for the CLI's -o: the format follows the suffix (.parquet or .csv)."""
    out = Path(out)
    if out.suffix == ".parquet":
        return out, None
    if out.suffix == ".csv":
        return None, out
    raise MatchesError(f"{out}: the output must end in .parquet or .csv")


def stability_of_checkpoints(
    references: Sequence[str],
    *,
    threshold: float = 0.7,
    definition: str = "paper",
    device: str | None = None,
    method: str = "auto",
    max_rounds: int = 100,
    allow_zero_rows: bool = False,
    cache_dir: str | Path | None = None,
    log=None,
) -> tuple[pd.DataFrame, dict]:
    """Returns (stability table, metadata) of checkpoints given as folders, files or hub references, in any layout.

    Every checkpoint is read and checked before any matching starts (a bad last folder should not cost
    the matching of the first ones); all must share d_in. The metadata records each checkpoint's
    layout, folder read and hub commit, and each pair's shared fractions per side and certificate.
    """
    from saeseeds.matching.checkpoint_refs import resolve
    from saeseeds.matching.checkpoints import CheckpointError, read_checkpoint
    from saeseeds.matching.match import match_dictionaries

    if len(references) < 2:
        raise MatchesError(f"need at least 2 checkpoints, got {list(references)}")
    if len(set(map(str, references))) != len(references):
        raise MatchesError(f"a checkpoint is given twice: {list(references)}")
    resolved = [resolve(ref, cache_dir=cache_dir) for ref in references]
    found = [read_checkpoint(r.path, allow_zero_rows=allow_zero_rows) for r in resolved]
    d0 = found[0].enc.shape[1]
    for ref, ck in zip(references, found):
        if ck.enc.shape[1] != d0:
            raise CheckpointError(
                f"{ref} has d_in={ck.enc.shape[1]} but {references[0]} has d_in={d0}: SAEs of different sites cannot be matched"
            )
    pairs, summary = {}, []
    for i, j in combinations(range(len(found)), 2):
        df, meta = match_dictionaries(
            found[i].enc, found[i].dec, found[j].enc, found[j].dec,
            threshold=threshold, definition=definition, device=device, method=method, max_rounds=max_rounds,
        )
        meta["label"] = f"{references[i]} vs {references[j]}"
        problem = certificate_problem(meta)
        if problem:
            raise UncertifiedMatching(problem)
        pairs[(i, j)] = (df, meta)
        summary.append({"a": i, "b": j, "shared_fraction_a": meta[f"shared_fraction_{definition}"],
                        "shared_fraction_b": meta.get(f"shared_fraction_{definition}_b", meta[f"shared_fraction_{definition}"]),
                        "methods": [meta["certificate"]["enc"]["method"], meta["certificate"]["dec"]["method"]]})
        if log is not None:
            log(f"{references[i]} vs {references[j]}: shared {summary[-1]['shared_fraction_a']:.2%} of "
                f"{len(df)} | {summary[-1]['shared_fraction_b']:.2%} of {meta.get('n_b', meta['n'])} latents")
    labels = [str(i) for i in range(len(found))]
    table = stability_table(
        [str(r) for r in references], labels, [ck.enc.shape[0] for ck in found], pairs,
        firing={i: ck.firing for i, ck in enumerate(found)},
    )
    metadata = {
        "threshold": float(threshold),
        "definition": definition,
        "checkpoints": [
            {**r.provenance(), "label": label, "layout": ck.layout, "folder": str(ck.folder),
             "n": int(ck.enc.shape[0]), "d": int(d0), "firing_known": ck.firing is not None}
            for r, ck, label in zip(resolved, found, labels)
        ],
        "pairs": summary,
    }
    return table, metadata


def stability_from_files(
    folders: Sequence[str], seeds: Sequence[int], matches: Mapping[tuple[int, int], str | Path],
    firing: Mapping[int, str | Path] | None = None,
) -> tuple[pd.DataFrame, dict]:
    """Returns (stability table, metadata) of one (site, sae) from its matches files and firing.npy files.

    `folders[i]` is seed `seeds[i]`'s checkpoint folder (the `checkpoint` column), `matches[(a, b)]` the
    matches parquet of seeds a < b. Columns per other seed are named after it: `partner_seed3`, ...
    """
    from saeseeds.matching.matches_file import read_matches

    tables = {pair: read_matches(path) for pair, path in matches.items()}  # refuses an uncertified matching
    return stability_from_tables(folders, seeds, tables, {s: np.load(p) for s, p in (firing or {}).items()})


def stability_from_tables(
    folders: Sequence[str], seeds: Sequence[int], tables: Mapping[tuple[int, int], tuple[pd.DataFrame, dict]],
    firing: Mapping[int, np.ndarray] | None = None,
) -> tuple[pd.DataFrame, dict]:
    """`stability_from_files` from already-read (matches table, metadata) per pair and firing arrays per seed (the
    orphans job reads each matches file once for both of its tables)."""
    index = {s: i for i, s in enumerate(seeds)}
    pairs, n_latents = {}, [None] * len(seeds)
    threshold = definition = None
    for (a, b), (df, meta) in tables.items():
        pairs[(index[a], index[b])] = (df, meta)
        n_latents[index[a]], n_latents[index[b]] = len(df), meta.get("n_b", meta["n"])
        threshold, definition = meta["threshold"], meta["definition"]
    freq = {index[s]: f for s, f in (firing or {}).items()}
    table = stability_table(list(map(str, folders)), [f"seed{s}" for s in seeds], n_latents, pairs, freq)
    return table, {"threshold": threshold, "definition": definition, "seeds": [int(s) for s in seeds],
                   "checkpoints": list(map(str, folders))}
