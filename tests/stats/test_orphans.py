"""Orphan statistics equal a brute-force reference; masks built from matches files are consistent."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from saeseeds.matching.match import match_dictionaries

from saeseeds.matching.matches_file import read_matches, write_matches
from saeseeds.stats.orphans import OrphansError, latent_table, pair_masks, pair_masks_from_files, subset_table
from saeseeds.stats.stability import stability_from_files, stability_from_tables


def random_masks(rng, seeds, n, p=0.4):
    return {(a, b): rng.random(n) < p for a, b in itertools.permutations(seeds, 2)}


def test_subset_table_equals_brute_force():
    rng = np.random.default_rng(0)
    seeds = [2, 5, 7, 11]
    masks = random_masks(rng, seeds, 57, p=0.5)
    table = subset_table(masks)
    expected = []
    for size in range(2, len(seeds) + 1):
        for members in itertools.combinations(seeds, size):
            for base in members:
                orphan = [all(not masks[(base, o)][lat] for o in members if o != base) for lat in range(57)]
                expected.append((size, base, ",".join(map(str, members)), sum(orphan) / 57))
    assert [tuple(r[:3]) for r in table.itertuples(index=False, name=None)] == [e[:3] for e in expected]
    np.testing.assert_allclose(table["only_in_base"], [e[3] for e in expected])
    assert list(table.columns) == ["size", "base", "members", "only_in_base"]
    assert len(table) == sum(len(list(itertools.combinations(seeds, m))) * m for m in range(2, 5))


def test_latent_table_equals_brute_force():
    rng = np.random.default_rng(1)
    seeds = [0, 1, 2]
    masks = random_masks(rng, seeds, 9)
    firing = {s: rng.random(9) for s in seeds}
    table = latent_table(masks, firing)
    assert list(table.columns) == ["base", "latent", "n_shared", "firing_frequency"]
    for row in table.itertuples(index=False):
        others = [s for s in seeds if s != row.base]
        assert row.n_shared == sum(bool(masks[(row.base, o)][row.latent]) for o in others)
        assert row.firing_frequency == firing[row.base][row.latent]
    assert len(table) == 27


def test_missing_pair_or_firing_fails_naming_it():
    rng = np.random.default_rng(2)
    masks = random_masks(rng, [0, 1, 2], 5)
    del masks[(2, 0)]
    with pytest.raises(OrphansError, match=r"\(2, 0\)"):
        subset_table(masks)
    masks = random_masks(rng, [0, 1], 5)
    with pytest.raises(OrphansError, match="seed 1"):
        latent_table(masks, {0: np.zeros(5)})


def test_masks_from_matches_files_read_each_pair_from_both_sides(tmp_path):
    rng = np.random.default_rng(3)
    n, d = 80, 16
    base = rng.standard_normal((n, d)).astype(np.float32)
    saes = {}
    for seed in range(3):
        w = rng.standard_normal((n, d)).astype(np.float32)
        keep = rng.random(n) < 0.5
        w[keep] = base[keep] + 0.2 * rng.standard_normal((keep.sum(), d)).astype(np.float32)
        perm = rng.permutation(n)
        saes[seed] = (w[perm], w[perm] + 0.05 * rng.standard_normal((n, d)).astype(np.float32))
    files = {}
    for a, b in itertools.combinations(range(3), 2):
        df, meta = match_dictionaries(*saes[a], *saes[b])
        files[(a, b)] = tmp_path / f"seed{a}-seed{b}.parquet"
        write_matches(df, meta, files[(a, b)])
    masks = pair_masks_from_files(files)
    assert set(masks) == set(itertools.permutations(range(3), 2))
    for a, b in itertools.combinations(range(3), 2):
        # Matching b against a directly gives the same shared latents of b.
        df_ba, _ = match_dictionaries(*saes[b], *saes[a])
        np.testing.assert_array_equal(masks[(b, a)], df_ba["shared"])
        assert masks[(a, b)].sum() == masks[(b, a)].sum() > 0
    assert isinstance(subset_table(masks), pd.DataFrame)
    # The orphans job reads each file once and hands the tables to both of its outputs: same masks, same stability table.
    tables = {pair: read_matches(path) for pair, path in files.items()}
    again = pair_masks(tables, names=files)
    assert again.keys() == masks.keys() and all(np.array_equal(again[k], masks[k]) for k in masks)
    firing = {s: rng.random(n) for s in range(3)}
    for s, f in firing.items():
        np.save(tmp_path / f"firing{s}.npy", f)
    folders = [str(tmp_path / f"seed{s}") for s in range(3)]
    from_files = stability_from_files(folders, [0, 1, 2], files, {s: tmp_path / f"firing{s}.npy" for s in range(3)})
    from_tables = stability_from_tables(folders, [0, 1, 2], tables, firing)
    pd.testing.assert_frame_equal(from_files[0], from_tables[0])
    assert from_files[1] == from_tables[1]
