"""Atomic file outputs: write beside the target, then rename, so a killed job never leaves half a file.

A write that fails for want of space or permission raises `OutputError`, one line naming the file
and what to do, instead of a traceback from deep inside pyarrow or zarr.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from saeseeds.errors import OutputError  # noqa: F401 (raised here; importable from here too)

METADATA_KEY = b"saeseeds"
"""Parquet schema-metadata key under which saeseeds keeps a table's provenance, as JSON."""

_ADVICE = {
    errno.ENOSPC: "no space left on the device: free space there, or point results/ at a larger disk",
    errno.EDQUOT: "disk quota exceeded: free space there, or point results/ at a larger disk",
    errno.EACCES: "permission denied: make the folder writable by this user",
    errno.EPERM: "operation not permitted: make the folder writable by this user",
    errno.EROFS: "read-only file system: point results/ at a writable disk",
}


def output_error(path: str | Path, err: OSError, what: str | None = None) -> str:
    """Returns one line saying which output could not be written and why, for an OSError."""
    reason = _ADVICE.get(err.errno, err.strerror or str(err))
    code = errno.errorcode.get(err.errno, "") if err.errno else ""
    detail = f" ({what})" if what else ""
    return f"cannot write {path}{detail}: {reason}{f' [{code}]' if code else ''}"


def as_output_error(path: str | Path, err: OSError, what: str | None = None) -> OutputError:
    """Returns an OutputError (same errno) whose message is `output_error`'s one line."""
    out = OutputError(output_error(path, err, what))
    out.errno = err.errno
    return out


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Returns `path` after `write(tmp)` filled a temporary sibling that is then synced and renamed onto it."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(path)
        write(tmp)
        # The bytes reach the disk before the name does: after a crash of the machine the file is
        # either the old one, absent, or whole.
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as err:
        if isinstance(err, OutputError) or err.errno not in _ADVICE:
            raise
        raise as_output_error(path, err) from err
    finally:
        tmp.unlink(missing_ok=True)
    return path


def remove_stale_temps(path: str | Path) -> None:
    """Removes temporary siblings `.{name}.tmp-*` that writers of `path` killed earlier left behind.

    Only one job ever writes a given output (Snakemake sees to that), so any such sibling is stale.
    """
    path = Path(path)
    if not path.parent.is_dir():
        return
    prefix = f".{path.name}.tmp-"
    for sibling in path.parent.iterdir():
        if sibling.name.startswith(prefix):
            if sibling.is_dir() and not sibling.is_symlink():
                shutil.rmtree(sibling, ignore_errors=True)
            else:
                sibling.unlink(missing_ok=True)


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
