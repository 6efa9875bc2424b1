"""Memory for stored screens (`stored_screen`), reused across the matchings of a job: fresh pages cost their first touch.

Kept apart from `stored_screen` so that `match` can open the block without importing numba.
"""

from __future__ import annotations

import mmap
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np

_shared = threading.local()


class ScreenMemory:
    """Buffers that a job's stored screens borrow in turn: a screen takes one for its matching and gives it back after.

    A job's encoder and decoder matchings solve side by side (`match.match_dictionaries`), so each holds its own
    buffer until its solve ends; the next pair's matchings take the same two again, touched already.
    """

    def __init__(self):
        self._free: list[np.ndarray] = []
        self._lock = threading.Lock()

    def take(self, nbytes: int) -> np.ndarray:
        """Returns a flat uint8 buffer of at least `nbytes` bytes, touched already (a free one, else fresh)."""
        with self._lock:
            fitting = [i for i, b in enumerate(self._free) if len(b) >= nbytes]
            if fitting:
                return self._free.pop(min(fitting, key=lambda i: len(self._free[i])))
        return _populated(nbytes)

    def give_back(self, buffer: np.ndarray) -> None:
        with self._lock:
            self._free.append(buffer)


@contextmanager
def reuse_screen_memory() -> Iterator[None]:
    """Within this block, the stored screens made on this thread borrow their memory from one pool (`ScreenMemory`).

    Fresh memory costs its first touch: filling 512 MiB (a 16K screen at 2 bytes a pair, as screens were kept then)
    took 0.27 s per 16K matching (2-core EPYC VM), as much as the pass's compiled reductions. `match.match_dictionaries` wraps its two matchings in this, and a job
    that matches many pairs wraps them all; the buffers are let go when the outermost block ends.
    """
    outermost = not hasattr(_shared, "pool")
    if outermost:
        _shared.pool = ScreenMemory()
    try:
        yield
    finally:
        if outermost:
            del _shared.pool


def current_pool() -> ScreenMemory | None:
    """Returns the pool this thread's stored screens borrow from (None outside `reuse_screen_memory`)."""
    return getattr(_shared, "pool", None)


@contextmanager
def screen_memory_of(pool: ScreenMemory | None) -> Iterator[None]:
    """Within this block, this thread's stored screens borrow from `pool`: another thread's (`current_pool`), so that
    the worker threads of one matching (`match.match_dictionaries`) reuse the job's buffers as its own thread would."""
    if pool is None or hasattr(_shared, "pool"):
        yield
        return
    _shared.pool = pool
    try:
        yield
    finally:
        del _shared.pool


def borrow(nbytes: int) -> tuple[np.ndarray, Callable[[], None]]:
    """Returns a flat uint8 buffer of `nbytes` bytes whose pages are touched already, and the call that gives it back.

    Within `reuse_screen_memory` the memory is a pooled buffer, given back to the pool by that call (the array must
    not be used after it); outside, the call does nothing and the memory goes with the array.

    Fresh memory is mapped with MAP_POPULATE where the OS has it: the kernel fills the pages in one call
    (0.19-0.20 s for 512 MiB on the 2-core EPYC VM), where touching them from Python took 0.27-0.62 s, the
    slow end when numpy's huge-page advice sent the kernel compacting memory for pages it then did not get.
    """
    pool = getattr(_shared, "pool", None)
    if pool is None:
        return _populated(nbytes), lambda: None
    buffer = pool.take(nbytes)
    return buffer[:nbytes], lambda: pool.give_back(buffer)


def _populated(nbytes: int) -> np.ndarray:
    flags = getattr(mmap, "MAP_POPULATE", 0)
    if nbytes == 0 or not flags:
        values = np.empty(nbytes, dtype=np.uint8)
        values.fill(0)
        return values
    region = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | flags)
    return np.frombuffer(region, dtype=np.uint8)  # the array holds the mapping; it is unmapped with the array


__all__ = ["ScreenMemory", "borrow", "current_pool", "reuse_screen_memory", "screen_memory_of"]
