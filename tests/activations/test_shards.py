"""Caching in shards: parallel jobs write chunk-aligned context ranges; joining them gives the unsharded bytes."""

import json

import numpy as np
import pytest

from saeseeds.activations.caching import ActivationConfig, SiteSource, cache_activations_multi
from saeseeds.activations.shards import cache_shard, join_shards, shard_ranges
from saeseeds.activations.store import StoreError

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_ranges_tile_the_contexts_on_chunk_boundaries():
    # 300 contexts of 64 tokens; a chunk is 8192 rows = 128 contexts, so 2 whole pieces and a tail
    assert shard_ranges(300, 64, 2) == [(0, 128), (128, 300)]
    assert shard_ranges(300, 64, 1) == [(0, 300)]
    # context 3000 does not divide 8192: pieces of lcm(8192, 3000) rows = 1024 contexts
    assert shard_ranges(4096, 3000, 4) == [(0, 1024), (1024, 2048), (2048, 3072), (3072, 4096)]
    with pytest.raises(ValueError, match="activations.shards=3.*at most 2"):
        shard_ranges(300, 64, 3)


def test_joined_shards_hold_the_bytes_of_one_job(tiny_model, tmp_path):
    hooks = ["layers.1", "layers.0.mlp"]
    cfg = ActivationConfig(max_tokens=20_000, heldout_tokens=2_000, context_length=64, batch_size=24)
    site = {"source": SiteSource(tiny_model, "embedded:kjv-pydoc"), "cfg": cfg}
    whole = cache_activations_multi({h: tmp_path / "whole" / h / "activations.zarr" for h in hooks}, **site)
    dirs = [tmp_path / "shards" / f"shard{k}" for k in range(2)]
    for k in (1, 0):  # any order: the shards are independent jobs
        cache_shard(dirs[k], hooks, shard=k, shards=2, **site)
    joined = join_shards({h: tmp_path / "joined" / h / "activations.zarr" for h in hooks}, dirs, cfg)
    for hook in hooks:
        a, b = whole[hook], joined[hook]
        np.testing.assert_array_equal(a.array[:], b.array[:])
        files = sorted(p.relative_to(a.path) for p in (a.path / "activations").rglob("*") if p.is_file())
        assert files == sorted(p.relative_to(b.path) for p in (b.path / "activations").rglob("*") if p.is_file())
        assert len(files) == 4  # zarr.json and 3 chunks of 8192 rows (19,968 tokens)
        for rel in files:
            assert (a.path / rel).read_bytes() == (b.path / rel).read_bytes(), rel
        mine, theirs = dict(a.attrs), dict(b.attrs)
        assert theirs.pop("shards") == 2
        for attrs in (mine, theirs):
            attrs.pop("tokens_per_second")
        for key in ("mean_norm_first_position", "mean_norm_other_positions"):  # sums in another order
            assert theirs.pop(key) == pytest.approx(mine.pop(key), rel=1e-12)
        assert theirs == mine
    chunk = next((dirs[0] / "layers.1.zarr" / "activations" / "c").rglob("*0"))
    assert chunk.stat().st_nlink == 2  # linked into the joined store, not copied
    assert json.loads((dirs[1] / "shard.json").read_text())["contexts"] == [128, 312]
    # A hook dropped from the config: the shards still join the rest. A hook they lack is named, not a KeyError.
    narrow = join_shards({"layers.1": tmp_path / "narrow" / "activations.zarr"}, dirs, cfg)
    np.testing.assert_array_equal(narrow["layers.1"].array[:], whole["layers.1"].array[:])
    with pytest.raises(StoreError, match=r"shard0: has no rows of \['layers.0'\]"):
        join_shards({"layers.0": tmp_path / "wider" / "activations.zarr"}, dirs, cfg)
