"""Memory for stored screens (`stored_screen`), reused across the matchings of a job: fresh pages cost their first touch.

Kept apart from `stored_screen` so that `match` can open the block without importing numba.
"""

from __future__ import annotations

import mmap
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


def int16_square(n: int) -> np.ndarray:
    """Returns an [n, n] int16 array whose pages are touched already (the shared buffer's, or fresh ones).

    Fresh memory is mapped with MAP_POPULATE where the OS has it: the kernel fills the pages in one call
    (0.19-0.20 s for 512 MiB on the 2-core EPYC VM), where touching them from Python took 0.27-0.62 s, the
    slow end when numpy's huge-page advice sent the kernel compacting memory for pages it then did not get.
    """
    buffer = getattr(_shared, "buffer", None)
    if buffer is not None and len(buffer) >= n * n:
        return buffer[: n * n].reshape(n, n)
    values = _populated_int16(n * n)
    if buffer is not None:
        _shared.buffer = values
    return values.reshape(n, n)


def _populated_int16(count: int) -> np.ndarray:
    flags = getattr(mmap, "MAP_POPULATE", 0)
    if count == 0 or not flags:
        values = np.empty(count, dtype=np.int16)
        values.fill(0)
        return values
    region = mmap.mmap(-1, 2 * count, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | flags)
    return np.frombuffer(region, dtype=np.int16)  # the array holds the mapping; it is unmapped with the array


__all__ = ["int16_square", "reuse_screen_memory"]
