"""Orphan statistics over N seeds: only-in-base fractions for every subset and base, per-latent sharing.

A latent of base seed a is an orphan w.r.t. seed b when it is not shared in the (a, b) matching.
Each latent of a base gets a bit code with one bit per other seed (bit set = shared with that
seed). A subset S containing a sees the latent as only-in-base iff its code has no bit of S \\ {a};
so the only-in-base count of every subset comes from one histogram of the codes and a subset-sum
(zeta) transform over 2^(N-1) masks: O(N n + N 2^N) per base instead of O(2^N n).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from saeseeds.matching.matches_file import read_matches, shared_flags
from saeseeds.errors import OrphansError  # noqa: F401 (raised here; importable from here too)

MAX_SEEDS = 20
"""Codes and the subset table grow as 2^N; beyond this many seeds the table itself is the problem."""

PairMasks = Mapping[tuple[int, int], np.ndarray]
"""(a, b) -> bool [n] over the latents of a: shared with some latent of b. Every ordered pair a != b."""


def _seeds(shared_masks: PairMasks) -> list[int]:
    """Returns the sorted seed ids after checking every ordered pair is present with consistent lengths."""
    seeds = sorted({s for pair in shared_masks for s in pair})
    if len(seeds) < 2:
        raise OrphansError(f"need at least 2 seeds, got {seeds}")
    if len(seeds) > MAX_SEEDS:
        raise OrphansError(f"{len(seeds)} seeds: at most {MAX_SEEDS} supported (tables grow as 2^N)")
    lengths: dict[int, int] = {}
    for a, b in itertools.permutations(seeds, 2):
        if (a, b) not in shared_masks:
            raise OrphansError(f"shared mask for ordered pair ({a}, {b}) missing")
        m = np.asarray(shared_masks[(a, b)])
        if m.dtype != np.bool_ or m.ndim != 1:
            raise OrphansError(f"shared mask ({a}, {b}): expected 1-D bool, got {m.dtype} {m.shape}")
        if lengths.setdefault(a, len(m)) != len(m):
            raise OrphansError(f"shared mask ({a}, {b}) has length {len(m)}, other masks of base {a} have {lengths[a]}")
    for pair in shared_masks:
        if pair[0] == pair[1]:
            raise OrphansError(f"shared mask for {pair}: a seed is not matched with itself")
    return seeds


def _codes(shared_masks: PairMasks, base: int, others: list[int]) -> np.ndarray:
    """Returns the int64 code of each latent of `base`: bit i set iff shared with others[i]."""
    code = np.zeros(len(shared_masks[(base, others[0])]), dtype=np.int64)
    for bit, other in enumerate(others):
        code |= np.asarray(shared_masks[(base, other)], dtype=np.int64) << bit
    return code


def _orphan_counts(code: np.ndarray, n_bits: int) -> np.ndarray:
    """Returns counts[T] = number of latents whose code shares no bit with mask T, for all 2^n_bits T."""
    full = (1 << n_bits) - 1
    # g[U] = number of codes that are subsets of U (sum over subsets, one pass per bit).
    g = np.bincount(code, minlength=1 << n_bits).astype(np.int64)
    masks = np.arange(1 << n_bits)
    for bit in range(n_bits):
        has = (masks >> bit) & 1 == 1
        g[has] += g[masks[has] ^ (1 << bit)]
    return g[full ^ masks]


def members_label(members: tuple[int, ...] | list[int]) -> str:
    """Returns the `members` column value: sorted seed ids joined by commas, e.g. "0,3,7"."""
    return ",".join(str(s) for s in sorted(members))


def subset_table(shared_masks: PairMasks) -> pd.DataFrame:
    """Returns one row per (subset of size 2..N, base in it): size, base, members, only_in_base.

    only_in_base is the fraction of the base's latents that are orphans w.r.t. every other member.
    Rows are ordered by size, then members (lexicographic), then base.
    """
    seeds = _seeds(shared_masks)
    per_base = {}
    for base in seeds:
        others = [s for s in seeds if s != base]
        code = _codes(shared_masks, base, others)
        per_base[base] = (others, _orphan_counts(code, len(others)) / len(code))
    out = {"size": [], "base": [], "members": [], "only_in_base": []}
    for size in range(2, len(seeds) + 1):
        for members in itertools.combinations(seeds, size):
            label = members_label(members)
            for base in members:
                others, frac = per_base[base]
                mask = sum(1 << others.index(s) for s in members if s != base)
                out["size"].append(size)
                out["base"].append(base)
                out["members"].append(label)
                out["only_in_base"].append(frac[mask])
    return pd.DataFrame(
        {
            "size": np.asarray(out["size"], dtype=np.int64),
            "base": np.asarray(out["base"], dtype=np.int64),
            "members": pd.Series(out["members"], dtype=object),
            "only_in_base": np.asarray(out["only_in_base"], dtype=np.float64),
        }
    )


def latent_table(shared_masks: PairMasks, firing: Mapping[int, np.ndarray]) -> pd.DataFrame:
    """Returns one row per (base, latent): base, latent, n_shared (other seeds sharing it), firing_frequency."""
    seeds = _seeds(shared_masks)
    frames = []
    for base in seeds:
        if base not in firing:
            raise OrphansError(f"firing frequencies for seed {base} missing")
        others = [s for s in seeds if s != base]
        n_shared = sum(np.asarray(shared_masks[(base, o)], dtype=np.int64) for o in others)
        freq = np.asarray(firing[base], dtype=np.float64)
        if freq.shape != n_shared.shape:
            raise OrphansError(f"firing frequencies of seed {base} have shape {freq.shape}, latents are {n_shared.shape}")
        frames.append(
            pd.DataFrame(
                {
                    "base": np.full(len(n_shared), base, dtype=np.int64),
                    "latent": np.arange(len(n_shared), dtype=np.int64),
                    "n_shared": n_shared.astype(np.int64),
                    "firing_frequency": freq,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def partners_of_b(perm: np.ndarray, n_b: int, where: str) -> np.ndarray:
    """Returns, for each of the n_b latents of b, its partner in a (-1 when it has none)."""
    matched = perm[perm >= 0]
    if (
        len(np.unique(matched)) != len(matched) or (len(matched) and matched.max() >= n_b)
        or len(matched) != min(len(perm), n_b)
    ):
        raise OrphansError(f"{where}: partners are not a matching of 0..{len(perm) - 1} onto 0..{n_b - 1}")
    inv = np.full(n_b, -1, dtype=np.int64)
    inv[matched] = np.flatnonzero(perm >= 0)
    return inv


def b_view(df: pd.DataFrame, n_b: int, threshold: float, definition: str, where: str = "matches") -> dict[str, np.ndarray]:
    """Returns seed b's view of one pair's matches: per latent of b its encoder and decoder partner in a and
    their cosines (-1 and NaN where it has none), and whether it is shared (`definition` at `threshold`).

    Both matchings are bijections (injections from the smaller side when the SAEs differ in size, `n_b`
    latents in b), so b's view is the same matching read backwards: b's latent k has encoder partner
    enc_partner^-1[k] with the same cosine, or none.
    """
    enc_inv = partners_of_b(df["enc_partner"].to_numpy(), n_b, f"{where} enc_partner")
    dec_inv = partners_of_b(df["dec_partner"].to_numpy(), n_b, f"{where} dec_partner")
    enc_cos, dec_cos = df["enc_cos"].to_numpy(), df["dec_cos"].to_numpy()
    nan = np.float32(np.nan)
    view = {
        "enc_partner": enc_inv, "enc_cos": np.where(enc_inv >= 0, enc_cos[np.maximum(enc_inv, 0)], nan),
        "dec_partner": dec_inv, "dec_cos": np.where(dec_inv >= 0, dec_cos[np.maximum(dec_inv, 0)], nan),
    }
    view["shared"] = shared_flags(view["enc_partner"], view["enc_cos"], view["dec_partner"], view["dec_cos"], threshold, definition)
    return view


def masks_from_matches(
    df: pd.DataFrame, threshold: float, definition: str, where: str = "matches", n_b: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Returns (shared over a's latents, shared over b's latents) from one pair's matches table (b's side
    from `b_view`, the matching read backwards)."""
    b_side = b_view(df, len(df) if n_b is None else n_b, threshold, definition, where)["shared"]
    return df["shared"].to_numpy().astype(bool), b_side


def pair_masks_from_files(files: Mapping[tuple[int, int], str | Path]) -> dict[tuple[int, int], np.ndarray]:
    """Returns shared masks for every ordered pair from matches parquet files keyed by (a, b), a < b.

    All files must agree on threshold and definition (from their metadata).
    """
    return pair_masks({pair: read_matches(path) for pair, path in files.items()}, names=files)


def pair_masks(
    tables: Mapping[tuple[int, int], tuple[pd.DataFrame, dict]], names: Mapping[tuple[int, int], Any] | None = None
) -> dict[tuple[int, int], np.ndarray]:
    """Returns shared masks for every ordered pair from already-read (matches table, metadata) keyed by (a, b),
    a < b; `names` (the files, for messages) defaults to the pairs."""
    masks: dict[tuple[int, int], np.ndarray] = {}
    settings = None
    for (a, b), (df, meta) in sorted(tables.items(), key=lambda item: item[0]):
        where = str((names or {}).get((a, b), f"matches of seeds {a} and {b}"))
        if a >= b:
            raise OrphansError(f"{where}: key ({a}, {b}) must have a < b")
        these = (meta["threshold"], meta["definition"])
        if settings is None:
            settings = these
        elif these != settings:
            raise OrphansError(f"{where}: threshold/definition {these} differ from the other files' {settings}")
        masks[(a, b)], masks[(b, a)] = masks_from_matches(df, *these, where=where, n_b=meta.get("n_b", meta["n"]))
    return masks
