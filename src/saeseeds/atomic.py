"""Atomic file outputs: write beside the target, then rename, so a killed job never leaves half a file."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pandas as pd


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
