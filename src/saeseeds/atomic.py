"""Atomic file outputs: write beside the target, then rename, so a killed job never leaves half a file."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

METADATA_KEY = b"saeseeds"
"""Parquet schema-metadata key under which saeseeds keeps a table's provenance, as JSON."""


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Returns `path` after `write(tmp)` filled a temporary sibling that is then renamed onto it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_parquet(table: pd.DataFrame, path: str | Path) -> Path:
    """Returns `path` after writing `table` to it atomically, without the pandas index."""
    return atomic_write(path, lambda tmp: table.to_parquet(tmp, index=False))


def write_parquet_with_metadata(table: pd.DataFrame, metadata: dict, path: str | Path) -> Path:
    """Returns `path` after writing `table` atomically with `metadata` as JSON under METADATA_KEY."""
    arrow = pa.Table.from_pandas(table, preserve_index=False)
    arrow = arrow.replace_schema_metadata({**(arrow.schema.metadata or {}), METADATA_KEY: json.dumps(metadata, sort_keys=True).encode()})
    return atomic_write(path, lambda tmp: pq.write_table(arrow, tmp))


def read_parquet_with_metadata(path: str | Path) -> tuple[pd.DataFrame, dict | None]:
    """Returns (table, metadata) of a parquet file; metadata is None when the file has none of ours."""
    arrow = pq.read_table(path)
    raw = (arrow.schema.metadata or {}).get(METADATA_KEY)
    return arrow.to_pandas(), None if raw is None else json.loads(raw)
