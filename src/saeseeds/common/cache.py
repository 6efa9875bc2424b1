"""Where saeseeds keeps derived files that any study on the machine may reuse (the embedded model's copy, vega's bundle)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """Returns `$SAESEEDS_CACHE`, else `$XDG_CACHE_HOME/saeseeds`, else `~/.cache/saeseeds`."""
    if os.environ.get("SAESEEDS_CACHE"):
        return Path(os.environ["SAESEEDS_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "saeseeds"
