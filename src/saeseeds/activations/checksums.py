"""Per-chunk checksums of an activation store: corruption is found, and a killed cache resumes.

Every zarr chunk file of a store is listed with its sha256 in `SHA256SUMS` inside the store, in the
format of coreutils (`cd activations.zarr && sha256sum -c SHA256SUMS` checks it by hand). While a
store is being written, each chunk's line is appended (and fsynced) as soon as the chunk is on disk,
and `RESUME.json` holds a fingerprint of what is being cached; a restarted job with the same
fingerprint keeps the chunks whose bytes still match and computes only the rest.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from saeseeds.errors import ChecksumError  # noqa: F401 (raised here; importable from here too)

MANIFEST = "SHA256SUMS"
RESUME = "RESUME.json"


def file_sha256(path: Path) -> str:
    """Returns the sha256 hex digest of a file, read in 16 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 24):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(store: Path) -> list[tuple[str, str]]:
    """Returns [(sha256, chunk file relative to the store)] in chunk order; [] when there is none."""
    path = store / MANIFEST
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64:
            break  # a torn last line after a kill: everything before it stands
        out.append((digest, name))
    return out


def append_manifest(store: Path, digest: str, name: str) -> None:
    """Appends one chunk's line and fsyncs, so a listed chunk survives a crash of the machine too."""
    with open(store / MANIFEST, "a") as handle:
        handle.write(f"{digest}  {name}\n")
        handle.flush()
        os.fsync(handle.fileno())


def rewrite_manifest(store: Path, entries: list[tuple[str, str]]) -> None:
    """Replaces the manifest with `entries` (temp file + rename)."""
    tmp = store / f".{MANIFEST}.tmp-{os.getpid()}"
    tmp.write_text("".join(f"{digest}  {name}\n" for digest, name in entries))
    os.replace(tmp, store / MANIFEST)


def verified_prefix(store: Path, chunk_names: list[str]) -> int:
    """Returns how many leading chunks of `chunk_names` are listed in the manifest with matching bytes."""
    listed = read_manifest(store)
    count = 0
    for (digest, name), expected in zip(listed, chunk_names):
        path = store / name
        if name != expected or not path.is_file() or file_sha256(path) != digest:
            break
        count += 1
    return count


def verify(store: Path, chunk_names: list[str], chunk_rows: int, n_rows: int) -> None:
    """Raises ChecksumError naming the first chunk that is missing, unlisted or altered."""
    listed = read_manifest(store)
    if not listed:
        raise ChecksumError(
            f"{store}: no {MANIFEST} (written by an older saeseeds, or damaged); rebuild the store: "
            f"snakemake --forcerun {store}"
        )
    if [name for _, name in listed] != chunk_names:
        raise ChecksumError(
            f"{store}: {MANIFEST} lists {len(listed)} chunk files, the array has {len(chunk_names)}; "
            f"rebuild the store: snakemake --forcerun {store}"
        )
    def digest_of(name: str) -> str | None:
        path = store / name
        return file_sha256(path) if path.is_file() else None

    # hashlib releases the GIL on large buffers: threads hash chunks on every core (~0.3-2 GB/s each)
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        actual = pool.map(digest_of, [name for _, name in listed])
        for index, ((digest, name), got) in enumerate(zip(listed, actual)):
            if got == digest:
                continue
            path = store / name
            rows = f"rows {index * chunk_rows}-{min((index + 1) * chunk_rows, n_rows) - 1}"
            problem = "is missing" if got is None else f"does not match its checksum ({path.stat().st_size} bytes; truncated or altered)"
            raise ChecksumError(f"{store}: chunk {index} ({rows}, file {name}) {problem}; rebuild the store: snakemake --forcerun {store}")


def write_fingerprint(store: Path, fingerprint: str) -> None:
    """Records what a store being written holds, so only the same job resumes it."""
    (store / RESUME).write_text(json.dumps({"fingerprint": fingerprint}))


def read_fingerprint(store: Path) -> str | None:
    """Returns the fingerprint of a store being written, or None when it has none or it is unreadable."""
    try:
        return json.loads((store / RESUME).read_text())["fingerprint"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
