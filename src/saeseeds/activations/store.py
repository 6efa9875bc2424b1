"""The cached activation store: one zarr v3 group per site, array `activations` [tokens, d].

Rows `[0, n_train)` are for training, rows `[n_train, n_tokens)` are the held-out slice used for
evaluation. The attr `complete=true` is written last, so a store without it was interrupted and is
never read. Each chunk file's sha256 is listed in the store's `SHA256SUMS` (saeseeds.activations.checksums):
`open_store(path, verify=True)` checks them, and a writer given a fingerprint resumes a killed write. Stores of language-model sites also hold array `tokens` [contexts, context_length], the
token id behind every row (row r is token r % L of context r // L), so latents can be shown on text.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from saeseeds.activations import checksums
from saeseeds.common.atomic import output_error
from saeseeds.errors import StoreError  # noqa: F401 (raised here; importable from here too)

ARRAY = "activations"
TOKENS = "tokens"
REQUIRED_ATTRS = ("model", "revision", "dataset", "hook", "n_tokens", "n_train", "n_heldout", "d_in", "complete")


class StoreRows:
    """What readers use of a site's activations, from `array` (rows) and `attrs`: shared by a cached store
    and one computed on the fly (saeseeds.activations.onthefly)."""

    array: Any
    attrs: dict[str, Any]

    @property
    def n_train(self) -> int:
        return int(self.attrs["n_train"])

    @property
    def n_heldout(self) -> int:
        return int(self.attrs["n_heldout"])

    @property
    def d_in(self) -> int:
        return int(self.attrs["d_in"])

    def heldout(self) -> np.ndarray:
        """Returns the held-out rows as float32."""
        return np.asarray(self.array[self.n_train :], dtype=np.float32)


@dataclass(frozen=True)
class ActivationStore(StoreRows):
    """An opened, validated store: the zarr array plus its attrs."""

    path: Path
    array: zarr.Array
    attrs: dict[str, Any]

    def token_ids(self) -> np.ndarray:
        """Returns the token ids [contexts, context_length] behind the rows; StoreError if the store has none."""
        return read_token_ids(self)


class StoreWriter:
    """Writes rows in order into a new store at `tmp_path`, then moves it into place on `finish`.

    Writing to a temporary sibling and renaming keeps the output atomic: a killed job leaves no
    half-written store under the declared output path.
    """

    def __init__(self, path: str | Path, n_tokens: int, d_in: int, *, dtype: str = "float16", chunk_rows: int = 8192, fingerprint: str | None = None):
        """With a `fingerprint`, an interrupted write of the same fingerprint is resumed after its last
        chunk whose bytes match the manifest; `resumed_rows` says how many rows were kept."""
        self.path = Path(path)
        self.tmp_path = self.path.with_name(self.path.name + ".tmp")
        self.n_tokens, self.d_in = int(n_tokens), int(d_in)
        self._chunk_rows = min(int(chunk_rows), self.n_tokens)
        self.n_chunks = -(-self.n_tokens // self._chunk_rows)
        try:
            self.resumed_rows = self._reopen(dtype, fingerprint) if fingerprint is not None else 0
            self._check_space(dtype)
            if not self.resumed_rows:
                if self.tmp_path.exists():
                    shutil.rmtree(self.tmp_path)
                self.group = zarr.open_group(str(self.tmp_path), mode="w", zarr_format=3)
                self.array = create_rows_array(self.group, self.n_tokens, self.d_in, dtype=dtype, chunk_rows=self._chunk_rows)
                if fingerprint is not None:
                    checksums.write_fingerprint(self.tmp_path, fingerprint)
        except OSError as err:
            raise StoreError(output_error(self.tmp_path, err)) from err
        self.cursor = self.resumed_rows
        self._hashed = self.resumed_rows // self._chunk_rows if self.resumed_rows < self.n_tokens else self.n_chunks
        self._pending: list[np.ndarray] = []
        self._pending_rows = 0

    def _reopen(self, dtype: str, fingerprint: str) -> int:
        """Returns the rows of a matching interrupted write kept for resuming (0: start afresh)."""
        if not self.tmp_path.exists() or checksums.read_fingerprint(self.tmp_path) != fingerprint:
            return 0
        try:
            group = zarr.open_group(str(self.tmp_path), mode="r+", zarr_format=3)
            array = group[ARRAY]
        except Exception:  # a damaged interrupted write is simply started over
            return 0
        if tuple(array.shape) != (self.n_tokens, self.d_in) or array.chunks[0] != self._chunk_rows or array.dtype != np.dtype(dtype):
            return 0
        self.group, self.array = group, array
        for partial in (self.tmp_path / ARRAY).rglob("*.partial"):  # zarr's own temp files of a killed write
            partial.unlink(missing_ok=True)
        names = self.chunk_names()
        kept = checksums.verified_prefix(self.tmp_path, names)
        checksums.rewrite_manifest(self.tmp_path, [(checksums.file_sha256(self.tmp_path / n), n) for n in names[:kept]])
        return min(kept * self._chunk_rows, self.n_tokens)

    def _check_space(self, dtype: str) -> None:
        """Fails before any forward pass when the disk cannot hold the rows still to write (uncompressed)."""
        needed = (self.n_tokens - self.resumed_rows) * self.d_in * np.dtype(dtype).itemsize
        folder = self.path.parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        free = shutil.disk_usage(folder).free
        if needed > free:
            raise StoreError(
                f"cannot write {self.path}: needs up to {_size(needed)} ({self.n_tokens - self.resumed_rows} rows "
                f"x {self.d_in} x {dtype}), only {_size(free)} free on the disk holding {folder}; "
                "free space, point results/ at a larger disk, or lower activations.max_tokens"
            )

    @property
    def pending_rows(self) -> int:
        """Rows appended but not yet written (they wait for a whole chunk)."""
        return self._pending_rows

    def chunk_names(self) -> list[str]:
        """Returns every chunk file of the array, relative to the store, in row order."""
        return chunk_names(self.array, self.n_chunks)

    def append(self, rows: np.ndarray) -> None:
        """Buffers rows and writes whole chunks, so each zarr chunk is written exactly once."""
        rows = np.asarray(rows)
        if rows.ndim != 2 or rows.shape[1] != self.d_in:
            raise StoreError(f"{self.path}: rows of shape {rows.shape}, expected [*, {self.d_in}]")
        if not np.isfinite(rows).all():
            raise StoreError(f"{self.path}: non-finite activations at rows {self.cursor + self._pending_rows}+")
        self._pending.append(rows)
        self._pending_rows += len(rows)
        if self._pending_rows >= self._chunk_rows:
            self._flush(whole_chunks_only=True)

    def _flush(self, whole_chunks_only: bool) -> None:
        if not self._pending:
            return
        block = np.concatenate(self._pending)
        n = len(block) - len(block) % self._chunk_rows if whole_chunks_only else len(block)
        end = self.cursor + n
        if end > self.n_tokens:
            raise StoreError(f"{self.path}: {end} rows written, store holds {self.n_tokens}")
        try:
            if n:
                self.array[self.cursor : end] = block[:n]
            self.cursor = end
            self._record_checksums()
        except OSError as err:
            raise StoreError(output_error(self.tmp_path, err, f"chunk {self.cursor // self._chunk_rows}")) from err
        rest = block[n:]
        self._pending = [rest] if len(rest) else []
        self._pending_rows = len(rest)

    def _record_checksums(self) -> None:
        """Lists every chunk that is now whole on disk (the last, short one once all rows are in)."""
        done = self.n_chunks if self.cursor >= self.n_tokens else self.cursor // self._chunk_rows
        for index in range(self._hashed, done):
            name = chunk_name(self.array, index)
            checksums.append_manifest(self.tmp_path, checksums.file_sha256(self.tmp_path / name), name)
            self._hashed = index + 1

    def add_token_ids(self, input_ids: np.ndarray) -> None:
        """Stores the token ids [contexts, context_length] behind the rows, as int32 array `tokens`."""
        write_token_ids(self.group, input_ids, self.n_tokens, where=self.path)

    def finish(self, attrs: dict[str, Any]) -> ActivationStore:
        """Flushes, checks the row count, writes attrs with complete=true and renames into place."""
        self._flush(whole_chunks_only=False)
        if self.cursor != self.n_tokens:
            raise StoreError(f"{self.path}: {self.cursor} rows written, expected {self.n_tokens}")
        try:
            self.group.attrs.update({**attrs, "n_tokens": self.n_tokens, "d_in": self.d_in, "checksums": checksums.MANIFEST, "complete": True})
            (self.tmp_path / checksums.RESUME).unlink(missing_ok=True)
        except OSError as err:
            raise StoreError(output_error(self.path, err)) from err
        return move_into_place(self.tmp_path, self.path)


def move_into_place(tmp_path: Path, path: Path) -> ActivationStore:
    """Returns the opened store at `path` after renaming the complete store `tmp_path` onto it (an older one
    there is removed first), so readers never see half a store."""
    try:
        if path.exists():
            shutil.rmtree(path)
        tmp_path.rename(path)
    except OSError as err:
        raise StoreError(output_error(path, err)) from err
    return open_store(path)


def create_rows_array(group: zarr.Group, n_tokens: int, d_in: int, *, dtype: str, chunk_rows: int) -> zarr.Array:
    """Returns the store's new activations array [n_tokens, d_in], chunked by whole rows; every chunk is
    written as a file even when all zero, so each one has a checksum. Sharded caching makes the same call,
    so its joined stores hold the bytes of an unsharded one."""
    return group.create_array(ARRAY, shape=(n_tokens, d_in), chunks=(min(chunk_rows, n_tokens), d_in), dtype=dtype,
                              config={"write_empty_chunks": True})


def _size(n_bytes: float) -> str:
    """Returns a byte count in the largest unit that keeps it >= 1 (KiB .. TiB)."""
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        n_bytes /= 1024
        if n_bytes < 1024 or unit == "TiB":
            return f"{n_bytes:,.1f} {unit}"


def chunk_name(array: zarr.Array, index: int) -> str:
    """Returns the file of row chunk `index` of a row-chunked 2-D array, relative to the store."""
    return f"{ARRAY}/{array.metadata.encode_chunk_key((index, 0))}"


def chunk_names(array: zarr.Array, n_chunks: int) -> list[str]:
    """Returns the chunk files of a row-chunked 2-D array, relative to the store, in row order."""
    return [chunk_name(array, i) for i in range(n_chunks)]


def open_store(path: str | Path, *, verify: bool = False) -> ActivationStore:
    """Returns the validated store at `path`; raises StoreError naming what is wrong.

    `verify` also checks every chunk file against `SHA256SUMS` (one read of the whole store), so a
    truncated or altered store fails here, with the chunk named, instead of training on garbage.
    """
    path = Path(path)
    if not path.exists():
        raise StoreError(f"{path}: no activation store here")
    try:
        group = zarr.open_group(str(path), mode="r", zarr_format=3)
        array = group[ARRAY]
    except Exception as err:  # zarr raises several types for corrupt metadata
        raise StoreError(f"{path}: not a readable zarr v3 store with array '{ARRAY}' ({err})") from err
    attrs = dict(group.attrs)
    missing = [key for key in REQUIRED_ATTRS if key not in attrs]
    if missing:
        raise StoreError(f"{path}: attrs missing {missing}")
    if attrs["complete"] is not True:
        raise StoreError(f"{path}: incomplete store (attr complete={attrs['complete']!r}); delete it and rerun")
    if tuple(array.shape) != (attrs["n_tokens"], attrs["d_in"]):
        raise StoreError(f"{path}: array shape {array.shape} disagrees with attrs n_tokens/d_in")
    if attrs["n_train"] + attrs["n_heldout"] != attrs["n_tokens"]:
        raise StoreError(f"{path}: n_train + n_heldout != n_tokens")
    if verify:
        n_chunks = -(-int(attrs["n_tokens"]) // array.chunks[0])
        try:
            checksums.verify(path, chunk_names(array, n_chunks), array.chunks[0], int(attrs["n_tokens"]))
        except checksums.ChecksumError as err:
            raise StoreError(str(err)) from err
    return ActivationStore(path=path, array=array, attrs=attrs)


def write_store(path: str | Path, rows: np.ndarray, *, n_heldout: int, attrs: dict[str, Any], dtype: str = "float16") -> ActivationStore:
    """Writes a whole in-memory array as a store (tests, synthetic data); returns it opened."""
    rows = np.asarray(rows)
    writer = StoreWriter(path, len(rows), rows.shape[1], dtype=dtype)
    writer.append(rows)
    base = {"model": "synthetic", "revision": "none", "dataset": "synthetic", "hook": "none"}
    return writer.finish({**base, **attrs, "n_train": len(rows) - n_heldout, "n_heldout": n_heldout})


def write_token_ids(group: zarr.Group, input_ids: np.ndarray, n_tokens: int, *, where: str | Path) -> None:
    """Writes token ids [contexts, L] as array `tokens` of `group`; they must cover exactly `n_tokens` rows."""
    ids = np.asarray(input_ids)
    if ids.ndim != 2 or ids.size != n_tokens:
        raise StoreError(f"{where}: token ids of shape {ids.shape} do not cover the store's {n_tokens} rows")
    if ids.size and (ids.min() < 0 or ids.max() > np.iinfo(np.int32).max):
        raise StoreError(f"{where}: token ids outside int32 range ({ids.min()}..{ids.max()})")
    array = group.create_array(TOKENS, shape=ids.shape, chunks=(min(1024, ids.shape[0]), ids.shape[1]), dtype="int32", overwrite=True)
    array[:] = ids.astype(np.int32)


def read_token_ids(store: ActivationStore) -> np.ndarray:
    """Returns the token ids [contexts, L] of `store`; StoreError naming the store when it has none."""
    group = zarr.open_group(str(store.path), mode="r", zarr_format=3)
    if TOKENS not in group:
        raise StoreError(
            f"{store.path}: no token ids (array '{TOKENS}'); the store was cached before saeseeds kept them "
            "or is synthetic. Delete it and rerun rule activations"
        )
    ids = np.asarray(group[TOKENS][:], dtype=np.int64)
    if ids.size != store.array.shape[0]:
        raise StoreError(f"{store.path}: {ids.size} token ids for {store.array.shape[0]} activation rows")
    return ids
