"""A binary min-heap of (int64 key, int64 value) pairs in two preallocated arrays, for compiled searches (numba).

Ties between equal keys go to the lower value, so a search that pops from it is deterministic.
"""

from __future__ import annotations

from numba import njit


@njit(cache=True, nogil=True)
def heap_push(keys, vals, size, key, val):  # pragma: no cover - compiled
    """Pushes (key, val) onto the binary min-heap held in keys[:size], vals[:size]; returns the new size."""
    pos = size
    while pos > 0:
        parent = (pos - 1) >> 1
        if keys[parent] < key or (keys[parent] == key and vals[parent] <= val):
            break
        keys[pos], vals[pos] = keys[parent], vals[parent]
        pos = parent
    keys[pos], vals[pos] = key, val
    return size + 1


@njit(cache=True, nogil=True)
def heap_pop(keys, vals, size):  # pragma: no cover - compiled
    """Removes the least (key, val); returns it and the new size (ties go to the lower val: deterministic)."""
    top_key, top_val = keys[0], vals[0]
    size -= 1
    key, val = keys[size], vals[size]
    pos = 0
    while True:
        child = 2 * pos + 1
        if child >= size:
            break
        right = child + 1
        if right < size and (keys[right] < keys[child] or (keys[right] == keys[child] and vals[right] < vals[child])):
            child = right
        if key < keys[child] or (key == keys[child] and val <= vals[child]):
            break
        keys[pos], vals[pos] = keys[child], vals[child]
        pos = child
    keys[pos], vals[pos] = key, val
    return top_key, top_val, size


__all__ = ["heap_pop", "heap_push"]
