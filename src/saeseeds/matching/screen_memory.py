"""Memory for stored screens (`stored_screen`), reused across the matchings of a job: fresh pages cost their first touch.

Kept apart from `stored_screen` so that `match` can open the block without importing numba.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

_shared = threading.local()


@contextmanager
def reuse_screen_memory() -> Iterator[None]:
    """Within this block, every stored screen of this thread uses one buffer (the largest asked for so far).

    Fresh memory costs its first touch: filling 512 MiB took 0.27 s per 16K matching (2-core EPYC VM), as much
    as the pass's compiled reductions. `match.match_dictionaries` wraps its two matchings in this, and a job
    that matches many pairs wraps them all; the buffer is let go when the outermost block ends.
    """
    outermost = not hasattr(_shared, "buffer")
    if outermost:
        _shared.buffer = np.empty(0, dtype=np.int16)
    try:
        yield
    finally:
        if outermost:
            del _shared.buffer


def int16_square(n: int) -> tuple[np.ndarray, bool]:
    """Returns an [n, n] int16 array and whether its pages are touched already (the shared buffer's are).

    A new array is left untouched: `StoredScreen.block` touches a block's rows in one thread just before the
    pass writes them (first touches by the pass's parallel writes cost more: 60 ms of faults against 11 ms
    for a fill, 6,048 latents), and a pass that keeps no copy after its first block touches no more.
    """
    buffer = getattr(_shared, "buffer", None)
    if buffer is not None and len(buffer) >= n * n:
        return buffer[: n * n].reshape(n, n), True
    values = np.empty(n * n, dtype=np.int16)
    if buffer is not None:
        _shared.buffer = values
    return values.reshape(n, n), False


__all__ = ["int16_square", "reuse_screen_memory"]
