"""A dequantised copy of an embedded GGUF model on disk, so that loading it takes about a second.

transformers parses and dequantises the GGUF file on every load: about 5 s for the tokenizer and 17 s for the
weights on 2 cores, paid by every job that reads text or runs the model (caching, functional tests, autointerp,
the browser) and by every test process. The first load writes what it produced (config, float32 safetensors,
tokenizer files; ~540 MB for SmolLM2-135M) to `<cache>/embedded/<distribution>-<version>/<file stem>/`, with the
sha256 of every file; later loads check those digests (~0.4 s) and read the copy (~0.7 s). The weights are the
same tensors bit for bit (`tests/activations/test_embedded_copy.py`), so results do not depend on which path
loaded them. A copy whose digests do not match is moved aside and rebuilt, never used.

`<cache>` is `$SAESEEDS_CACHE`, else `$XDG_CACHE_HOME/saeseeds`, else `~/.cache/saeseeds`. Where it cannot be
written (a read-only home), the model is loaded from the GGUF file as before, with a warning.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Callable

from saeseeds.common.cache import cache_root

COPY_FORMAT = 1
"""Bumped whenever what is written changes, so older copies are rebuilt rather than misread."""
MANIFEST = "saeseeds-copy.json"


def copy_folder(dist: str, version: str, filename: str) -> Path:
    """Returns where the copy of embedded file `filename` shipped by `dist`==`version` lives."""
    return cache_root() / "embedded" / f"{dist}-{version}" / Path(filename).stem


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def is_valid(folder: Path) -> bool:
    """Returns whether `folder` holds a complete copy whose files all match their recorded digests."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        files = manifest["sha256"]
        return manifest.get("format") == COPY_FORMAT and bool(files) and all(
            _sha256(folder / name) == digest for name, digest in files.items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def write_copy(folder: Path, model, tokenizer, *, origin: str) -> None:
    """Writes model (float32) and tokenizer to `folder` atomically: into a scratch folder next to it, renamed
    into place when complete, so a killed job or a second job writing at the same time never leaves half a copy."""
    from safetensors.torch import save_model

    folder.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        config = model.config.to_dict()
        config.pop("quantization_config", None)  # the copy holds plain float32 tensors
        config["torch_dtype"] = config["dtype"] = "float32"
        (scratch / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
        save_model(model, str(scratch / "model.safetensors"))  # loaded in float32 by the caller
        tokenizer.save_pretrained(scratch)
        files = {p.name: _sha256(p) for p in sorted(scratch.iterdir()) if p.is_file()}
        (scratch / MANIFEST).write_text(json.dumps({"format": COPY_FORMAT, "origin": origin, "sha256": files}, indent=2))
        try:
            os.rename(scratch, folder)
        except OSError:  # another job finished first: its copy is as good as ours
            shutil.rmtree(scratch, ignore_errors=True)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise


def ensure_copy(folder: Path, build: Callable[[], tuple], *, origin: str) -> Path | None:
    """Returns `folder` once it holds a valid copy, building it with `build()` -> (model, tokenizer) if needed;
    None where the copy cannot be written (the caller then loads the original)."""
    if is_valid(folder):
        return folder
    try:
        if folder.exists():  # damaged or from an older format: keep it for inspection, never read it
            aside = folder.with_name(f".{folder.name}.damaged-{os.getpid()}")
            os.rename(folder, aside)
            print(f"saeseeds: the copy of {origin} at {folder} failed its checksum; moved to {aside}, rebuilding",
                  file=sys.stderr)
        folder.parent.mkdir(parents=True, exist_ok=True)  # fails here, before the ~11 s build, if it cannot
        model, tokenizer = build()
        write_copy(folder, model, tokenizer, origin=origin)
    except OSError as err:
        print(f"saeseeds: cannot keep a copy of {origin} under {folder.parent} ({err}); loading it from the GGUF file, "
              "~11 s per load (set SAESEEDS_CACHE to a writable folder)", file=sys.stderr)
        return None
    return folder if is_valid(folder) else None
