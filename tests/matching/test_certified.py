"""No statistic from an uncertified matching: a sparse matching cut short fails in one line and writes nothing."""

from __future__ import annotations

import numpy as np
import pytest

from saeseeds.matching.match import match_dictionaries

from saeseeds.matching.matches_file import UncertifiedMatching, certificate_problem, read_matches, write_matches
from saeseeds.common.atomic import write_parquet_with_metadata


def _dicts(seed=0, n=64, d=8):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)).astype(np.float32), rng.standard_normal((n, d)).astype(np.float32)


def test_sparse_matching_cut_to_one_round_is_not_certified_and_bounds_its_gap():
    a, b = _dicts()
    # One candidate per row: the first candidate graph misses optimal pairs, so the repair loop needs > 1 round.
    opts = dict(method="sparse", k=1, depth=1, block_rows=16, device="cpu")
    _, full = match_dictionaries(a, a, b, b, **opts)
    assert full["certified"] and full["certificate"]["enc"]["rounds"] > 1
    assert full["certificate"]["enc"]["gap_bound"] == 0.0
    df, cut = match_dictionaries(a, a, b, b, max_rounds=1, **opts)
    enc = cut["certificate"]["enc"]
    assert not cut["certified"] and enc["rounds"] == 1 and enc["duality_gap"] is None
    # The bound is a proof: the true shortfall of the cut matching lies within it.
    sim = (a / np.linalg.norm(a, axis=1, keepdims=True)) @ (b / np.linalg.norm(b, axis=1, keepdims=True)).T
    best, _ = match_dictionaries(a, a, b, b, method="dense", device="cpu")
    shortfall = sim[np.arange(64), best["enc_partner"]].sum() - sim[np.arange(64), df["enc_partner"]].sum()
    assert 0 < shortfall <= enc["gap_bound"] + 1e-3


def test_uncertified_matching_is_refused_in_one_line_naming_seeds_latents_rounds_and_gap(tmp_path):
    a, b = _dicts(1)
    df, meta = match_dictionaries(a, a, b, b, method="sparse", k=1, depth=1, block_rows=16, max_rounds=1, device="cpu")
    meta.update(seed_a=0, seed_b=2)  # what workflow/scripts/match.py adds before writing
    out = tmp_path / "matches" / "seed0-seed2.parquet"
    with pytest.raises(UncertifiedMatching) as err:
        write_matches(df, meta, out)
    line = str(err.value)
    assert "\n" not in line
    for part in ("seed0 vs seed2", "64 latents", "after 1 rounds", "gap <= "):
        assert part in line, (part, line)
    assert not out.exists() and not any(tmp_path.rglob("*.parquet")) and not any(tmp_path.rglob(".*tmp*"))


def test_a_matches_file_claiming_no_certificate_is_refused_on_read(tmp_path):
    """Files written before the check existed (or by hand) cannot feed orphans or the summary either."""
    a, b = _dicts(2)
    df, meta = match_dictionaries(a, a, b, b, method="sparse", k=1, depth=1, block_rows=16, max_rounds=1, device="cpu")
    path = tmp_path / "seed0-seed1.parquet"
    write_parquet_with_metadata(df, meta, path)
    with pytest.raises(UncertifiedMatching, match="not certified"):
        read_matches(path)
    assert certificate_problem({**meta, "certified": True}) is None
