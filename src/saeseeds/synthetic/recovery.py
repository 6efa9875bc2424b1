"""Ground-truth recovery on a synthetic site: which true feature each SAE latent recovers, and what orphans are.

Each seed's decoder rows are matched to the true dictionary with the same exact assignment code as
seed-to-seed matching (`saeseeds.matching.match.match_rows`); a latent recovers its partner feature when their
cosine is >= the threshold. Dictionaries of different sizes are made square with zero rows, which
have cosine 0 with everything (`similarity.unit_rows`), so a latent paired with padding recovers
nothing. Joined with the orphan statistics this answers the question the paper could not: are the
latents that only one seed learns real features or noise?
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from saeseeds.common.atomic import read_parquet_with_metadata, write_parquet_with_metadata
from saeseeds.stats.orphans import members_label
from saeseeds.errors import RecoveryError  # noqa: F401 (raised here; importable from here too)

TRUTH_COLUMNS = ("latent", "partner", "cos", "maxcos", "feature", "recovered")


def match_truth(
    decoder: np.ndarray, dictionary: np.ndarray, *, threshold: float, device: str | None = None
) -> tuple[pd.DataFrame, dict]:
    """Returns (one row per latent, metadata): its exact-matching partner among the true features.

    Columns: `latent`; `partner`, the matched true feature (-1 when the latent was paired with
    padding because there are more latents than features); `cos`, the matched cosine; `maxcos`,
    the best cosine with any true feature; `feature`, the partner if `cos >= threshold` else -1;
    `recovered` = feature >= 0.
    """
    decoder, dictionary = np.asarray(decoder, np.float32), np.asarray(dictionary, np.float32)
    if decoder.ndim != 2 or dictionary.ndim != 2 or decoder.shape[1] != dictionary.shape[1]:
        raise RecoveryError(f"decoder {decoder.shape} and true dictionary {dictionary.shape} must be [*, d] with one d")
    if 0 in decoder.shape or 0 in dictionary.shape:
        raise RecoveryError(f"empty decoder {decoder.shape} or dictionary {dictionary.shape}")
    for name, w in (("decoder", decoder), ("dictionary", dictionary)):
        if not np.isfinite(w).all():
            raise RecoveryError(f"{name}: has non-finite values")
    if not -1 <= threshold <= 1:
        raise RecoveryError(f"threshold={threshold!r}: must be a cosine in [-1, 1]")
    n, n_true = len(decoder), len(dictionary)
    size = max(n, n_true)
    pad = lambda w: np.vstack([w, np.zeros((size - len(w), w.shape[1]), np.float32)])  # noqa: E731
    # Imported here: the matching needs torch, the tables and summaries below (recovery, figures) do not.
    from saeseeds.matching.match import match_rows
    from saeseeds.matching.similarity import resolve_device

    result = match_rows(pad(decoder), pad(dictionary), device=resolve_device(device))
    partner = result.partner[:n].astype(np.int64)
    partner[partner >= n_true] = -1
    cos = result.cos[:n].astype(np.float32)
    recovered = (partner >= 0) & (cos >= threshold)
    table = pd.DataFrame(
        {
            "latent": np.arange(n, dtype=np.int64),
            "partner": partner,
            "cos": cos,
            "maxcos": result.row_max[:n].astype(np.float32),
            "feature": np.where(recovered, partner, -1).astype(np.int64),
            "recovered": recovered,
        }
    )
    meta = {
        "n_latents": n,
        "n_true": n_true,
        "threshold": float(threshold),
        "recovered_latents": int(recovered.sum()),
        "recovered_features_fraction": float(recovered.sum() / n_true),
        "certificate": result.certificate,
    }
    return table, meta


def write_truth_matches(table: pd.DataFrame, meta: dict, path: str | Path) -> None:
    """Writes one seed's truth matching as parquet with `meta` as JSON under key b"saeseeds", atomically."""
    if tuple(table.columns) != TRUTH_COLUMNS:
        raise RecoveryError(f"{path}: columns {list(table.columns)}, expected {list(TRUTH_COLUMNS)}")
    write_parquet_with_metadata(table, meta, path)


def read_truth_matches(path: str | Path) -> tuple[pd.DataFrame, dict]:
    """Returns (table, metadata) of a truth-matching parquet file, checking its columns."""
    path = Path(path)
    if not path.is_file():
        raise RecoveryError(f"{path}: no such truth-matching file")
    table, meta = read_parquet_with_metadata(path)
    if meta is None or tuple(table.columns) != TRUTH_COLUMNS:
        raise RecoveryError(f"{path}: not a truth-matching file (columns {list(table.columns)})")
    return table, meta


def latent_table(truth: Mapping[int, pd.DataFrame], orphans_latents: pd.DataFrame) -> pd.DataFrame:
    """Returns one row per (seed, latent): the truth matching joined with `n_shared` and `firing_frequency`.

    `orphan` is the paper's only-in-base at N seeds: shared with no other seed (n_shared == 0).
    """
    seeds = sorted(truth)
    bases = sorted(orphans_latents["base"].unique().tolist())
    if bases != seeds:
        raise RecoveryError(f"orphan statistics cover seeds {bases}, truth matchings cover {seeds}")
    frames = []
    for seed in seeds:
        t = truth[seed]
        o = orphans_latents[orphans_latents["base"] == seed].sort_values("latent")
        if not np.array_equal(o["latent"].to_numpy(), t["latent"].to_numpy()):
            raise RecoveryError(f"seed {seed}: orphan statistics have {len(o)} latents, truth matching {len(t)}")
        frame = t.copy()
        frame.insert(0, "seed", np.int64(seed))
        frame["n_shared"] = o["n_shared"].to_numpy(np.int64)
        frame["orphan"] = frame["n_shared"].to_numpy() == 0
        frame["firing_frequency"] = o["firing_frequency"].to_numpy(np.float64)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def feature_table(latents: pd.DataFrame, frequency: np.ndarray, empirical: np.ndarray, parent: np.ndarray) -> pd.DataFrame:
    """Returns one row per true feature: its frequency, parent, how many seeds recover it and which."""
    n_true = len(frequency)
    seeds = sorted(latents["seed"].unique().tolist())
    hit = latents[latents["recovered"]]
    top = int(hit["feature"].to_numpy().max(initial=-1))
    if top >= n_true:
        raise RecoveryError(f"a latent recovers feature {top}, but there are {n_true}")
    by = [[] for _ in range(n_true)]
    for seed, feature in zip(hit["seed"].to_numpy(), hit["feature"].to_numpy()):
        by[feature].append(int(seed))
    best = latents[latents["partner"] >= 0].groupby("partner")["cos"].mean().reindex(range(n_true))
    return pd.DataFrame(
        {
            "feature": np.arange(n_true, dtype=np.int64),
            "frequency": np.asarray(frequency, np.float64),
            "empirical_frequency": np.asarray(empirical, np.float64),
            "parent": np.asarray(parent, np.int64),
            "n_seeds": np.array([len(b) for b in by], dtype=np.int64),
            "fraction_of_seeds": np.array([len(b) for b in by], dtype=np.float64) / len(seeds),
            "recovered_by": pd.Series([members_label(b) for b in by], dtype=object),
            "matched_cos_mean": best.to_numpy(np.float64),
        }
    )


def union_table(features: pd.DataFrame, seeds: list[int]) -> pd.DataFrame:
    """Returns one row per subset of 1..N seeds: the fraction of true features at least one member recovers."""
    seeds = sorted(seeds)
    bits = {s: i for i, s in enumerate(seeds)}
    code = np.zeros(len(features), dtype=np.int64)
    for row, label in enumerate(features["recovered_by"]):
        for s in filter(None, label.split(",")):
            code[row] |= 1 << bits[int(s)]
    out = {"size": [], "members": [], "recovered_fraction": []}
    for size in range(1, len(seeds) + 1):
        for members in itertools.combinations(seeds, size):
            mask = sum(1 << bits[s] for s in members)
            out["size"].append(size)
            out["members"].append(members_label(members))
            out["recovered_fraction"].append(float(((code & mask) != 0).mean()))
    return pd.DataFrame(
        {
            "size": np.asarray(out["size"], np.int64),
            "members": pd.Series(out["members"], dtype=object),
            "recovered_fraction": np.asarray(out["recovered_fraction"], np.float64),
        }
    )


def cross_table(latents: pd.DataFrame) -> pd.DataFrame:
    """Returns per number of other seeds sharing a latent (0 = orphan): latents, true features, spurious."""
    grouped = latents.groupby("n_shared")["recovered"]
    table = pd.DataFrame({"latents": grouped.size(), "true_feature": grouped.sum().astype(np.int64)})
    table["spurious"] = table["latents"] - table["true_feature"]
    table["true_fraction"] = table["true_feature"] / table["latents"]
    return table.reset_index()


def summarize(latents: pd.DataFrame, features: pd.DataFrame, union: pd.DataFrame) -> dict:
    """Returns the headline numbers of one synthetic (site, sae): recovery per seed and by the union, orphans' nature."""
    seeds = sorted(latents["seed"].unique().tolist())
    n_true = len(features)
    per_seed = latents.groupby("seed")["recovered"].sum().to_numpy() / n_true
    orphans = latents[latents["orphan"]]
    true_orphans = orphans[orphans["recovered"]]
    # A true orphan is "unique" when no other seed recovers its feature: evidence that seeds split the features.
    n_by_feature = features.set_index("feature")["n_seeds"]
    unique = (n_by_feature.reindex(true_orphans["feature"]).to_numpy() == 1) if len(true_orphans) else np.array([])
    everywhere = latents[latents["n_shared"] == len(seeds) - 1]
    return {
        "n_true": n_true,
        "num_latents": int(latents.groupby("seed").size().iloc[0]),
        "seeds": len(seeds),
        "recovered_per_seed_mean": float(per_seed.mean()),
        "recovered_per_seed_std": float(per_seed.std()),
        "recovered_union_2": float(union.loc[union["size"] == 2, "recovered_fraction"].mean()) if len(seeds) > 1 else float("nan"),
        "recovered_union_all": float(union.loc[union["size"] == len(seeds), "recovered_fraction"].iloc[0]),
        "latents_true_fraction": float(latents["recovered"].mean()),
        "orphan_fraction": float(latents["orphan"].mean()),
        "orphan_true_fraction": float(orphans["recovered"].mean()) if len(orphans) else float("nan"),
        "orphan_true_unique_fraction": float(unique.mean()) if len(unique) else float("nan"),
        "shared_all_true_fraction": float(everywhere["recovered"].mean()) if len(everywhere) else float("nan"),
    }
