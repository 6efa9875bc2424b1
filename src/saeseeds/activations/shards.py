"""Caching one store in shards: parallel jobs each write a range of contexts, then one job joins them.

At paper scale a store is terabytes (8B tokens x 768 x 2 bytes = 12 TB) and one job would run for days.
Shard k forwards only its contexts and writes the zarr chunks of its rows into an array of the full shape;
the ranges are cut on chunk boundaries, so no chunk has two writers. Joining hard-links every shard's chunk
files into the final store (no copy) and combines the attrs, so the result has the bytes an unsharded job
writes (tests/activations/test_shards.py). The store format itself is `saeseeds.activations.store`'s; nothing here changes it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import transformers
import zarr

from saeseeds.activations import checksums
from saeseeds.activations.caching import ActivationConfig, SiteSource, load_site, mean_norms, row_layout, token_ids_sha256
from saeseeds.activations.forward import add_norms, forward_batches
from saeseeds.activations.models import resolve_hook
from saeseeds.activations.store import ARRAY, ActivationStore, StoreError, chunk_names, create_rows_array, move_into_place, write_token_ids


def shard_ranges(n_ctx: int, context_length: int, shards: int, chunk_rows: int = 8192) -> list[tuple[int, int]]:
    """Returns [start, end) context ranges of `shards` shards, as even as whole chunks allow.

    A boundary must fall on a chunk boundary (rows = contexts x context_length), so ranges are counted in
    units of lcm(chunk rows, context length) rows; the last shard also takes the ragged tail.
    """
    chunk_rows = min(chunk_rows, n_ctx * context_length)
    unit_ctx = math.lcm(chunk_rows, context_length) // context_length
    units = n_ctx // unit_ctx
    if shards < 1 or shards > max(units, 1):
        raise ValueError(
            f"activations.shards={shards}: {n_ctx} contexts of {context_length} tokens make {units} pieces of "
            f"{unit_ctx} contexts (whole zarr chunks of {chunk_rows} rows); use at most {max(units, 1)} shards"
        )
    bounds = [round(i * units / shards) * unit_ctx for i in range(shards)] + [n_ctx]
    return list(zip(bounds[:-1], bounds[1:]))


def _empty_array(path: Path, n_tokens: int, d: int, dtype: str, chunk_rows: int) -> zarr.Array:
    """Returns a new array of the full store's shape and chunking, made as StoreWriter makes it."""
    return create_rows_array(zarr.open_group(str(path), mode="w", zarr_format=3), n_tokens, d, dtype=dtype, chunk_rows=chunk_rows)


def cache_shard(
    shard_dir: str | Path,
    hooks: list[str],
    *,
    shard: int,
    shards: int,
    source: SiteSource,
    cfg: ActivationConfig,
    log: logging.Logger | None = None,
) -> dict[str, Any]:
    """Returns the stats of shard `shard` of `shards` after writing, under `shard_dir`, one array per hook
    holding this shard's rows, `tokens.npy` (its token ids) and `shard.json` (stats for joining)."""
    log = log or logging.getLogger("saeseeds.activations.shards")
    shard_dir = Path(shard_dir)
    n_ctx = cfg.max_tokens // cfg.context_length
    start, end = shard_ranges(n_ctx, cfg.context_length, shards, cfg.chunk_rows)[shard]
    # tokens up to this shard's end suffice
    model, ids, attrs = load_site(source, hooks=hooks, cfg=cfg, max_tokens=end * cfg.context_length, log=log)
    ids = ids[start:end]
    log.info("shard %d of %d: contexts [%d, %d)", shard, shards, start, end)
    modules = [resolve_hook(model, hook) for hook in hooks]
    if shard_dir.exists():
        shutil.rmtree(shard_dir)
    shard_dir.mkdir(parents=True)
    np.save(shard_dir / "tokens.npy", ids.numpy())
    L, dtype = cfg.context_length, np.dtype(cfg.dtype)
    arrays: dict[str, zarr.Array] = {}
    norm_first, norm_rest = dict.fromkeys(hooks, 0.0), dict.fromkeys(hooks, 0.0)
    forward_seconds = 0.0
    for _, first, rows, seconds in forward_batches(model, modules, hooks, ids, batch_size=cfg.batch_size, store_dtype=dtype):
        forward_seconds += seconds
        for hook in hooks:
            norm_first[hook], norm_rest[hook] = add_norms(rows[hook], L, norm_first[hook], norm_rest[hook])
            if hook not in arrays:
                arrays[hook] = _empty_array(shard_dir / f"{hook}.zarr", n_ctx * L, rows[hook].shape[1], cfg.dtype, cfg.chunk_rows)
            row0 = (start + first) * L
            arrays[hook][row0 : row0 + len(rows[hook])] = rows[hook]  # whole chunks except at a shard's ends, which are chunk ends
    stats = {
        "shard": shard, "shards": shards, "contexts": [start, end], "forward_seconds": forward_seconds,
        "norm_first": norm_first, "norm_rest": norm_rest, "hooks": hooks,
        "d_in": {hook: int(arrays[hook].shape[1]) for hook in hooks},
        "attrs": {**attrs, "torch": torch.__version__, "transformers": transformers.__version__, "torch_threads": torch.get_num_threads()},
    }
    (shard_dir / "shard.json").write_text(json.dumps(stats, indent=1))
    log.info("shard %d: %d tokens at %.0f tok/s for %d hooks", shard, ids.numel(), ids.numel() / forward_seconds, len(hooks))
    return stats


def join_shards(store_paths: Mapping[str, str | Path], shard_dirs: list[str | Path], cfg: ActivationConfig) -> dict[str, ActivationStore]:
    """Returns {hook: opened store} after joining the shards' arrays into each hook's store.

    Chunk files are hard-linked (copied where the file system cannot link), attrs are those an unsharded
    job writes (norms and speed combined over shards), and each store is renamed into place when complete.
    """
    shard_dirs = [Path(p) for p in shard_dirs]
    stats = [json.loads((p / "shard.json").read_text()) for p in shard_dirs]
    if sorted(s["shard"] for s in stats) != list(range(len(stats))) or any(s["shards"] != len(stats) for s in stats):
        raise StoreError(f"shards {[s['shard'] for s in stats]} of {[s['shards'] for s in stats]}: expected 0..{len(stats) - 1} of one run")
    order = sorted(range(len(stats)), key=lambda i: stats[i]["shard"])
    shard_dirs, stats = [shard_dirs[i] for i in order], [stats[i] for i in order]
    L = cfg.context_length
    n_ctx = cfg.max_tokens // L
    if [tuple(s["contexts"]) for s in stats] != shard_ranges(n_ctx, L, len(stats), cfg.chunk_rows):
        raise StoreError(f"shard ranges {[s['contexts'] for s in stats]} do not tile {n_ctx} contexts; recache the shards")
    for shard_dir, s in zip(shard_dirs, stats):
        missing = [hook for hook in store_paths if hook not in s["hooks"]]
        if missing:  # left by an interrupted run with fewer hooks: the workflow does not rerun a shard for that
            raise StoreError(f"{shard_dir}: has no rows of {missing} (cached for {s['hooks']}); delete it to recache the shards")
    token_ids = np.concatenate([np.load(shard_dir / "tokens.npy") for shard_dir in shard_dirs])
    layout = row_layout(cfg, n_ctx, token_ids_sha256(token_ids))
    n_tokens = n_ctx * L
    forward = sum(s["forward_seconds"] for s in stats)
    stores = {}
    for hook, path in store_paths.items():
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        if tmp.exists():
            shutil.rmtree(tmp)
        array = _empty_array(tmp, n_tokens, stats[0]["d_in"][hook], cfg.dtype, cfg.chunk_rows)
        for shard_dir in shard_dirs:
            source = shard_dir / f"{hook}.zarr" / ARRAY / "c"
            for chunk in source.rglob("*"):
                if chunk.is_file():
                    target = tmp / ARRAY / "c" / chunk.relative_to(source)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    try:
                        os.link(chunk, target)
                    except OSError:
                        shutil.copyfile(chunk, target)
        write_token_ids(zarr.open_group(str(tmp), mode="r+", zarr_format=3), token_ids, n_tokens, where=path)
        names = chunk_names(array, -(-n_tokens // array.chunks[0]))
        checksums.rewrite_manifest(tmp, [(checksums.file_sha256(tmp / name), name) for name in names])
        attrs = {
            **stats[0]["attrs"],
            "hook": hook,
            **layout,
            **mean_norms(sum(s["norm_first"][hook] for s in stats), sum(s["norm_rest"][hook] for s in stats), n_ctx, L),
            "tokens_per_second": n_tokens / forward,
            "hooks_in_pass": stats[0]["hooks"],
            "shards": len(stats),
            "n_tokens": n_tokens,
            "d_in": int(array.shape[1]),
            "checksums": checksums.MANIFEST,
            "complete": True,
        }
        zarr.open_group(str(tmp), mode="r+", zarr_format=3).attrs.update(attrs)
        stores[hook] = move_into_place(tmp, path)
    return stores
