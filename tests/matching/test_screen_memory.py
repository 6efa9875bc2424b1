"""Fresh memory for stored screens: filled pages, zeroed and writable, whichever way the kernel fills them."""

import mmap

import numpy as np
import pytest

from saeseeds.matching import screen_memory


@pytest.mark.parametrize("way", ["huge pages, filled by advice", "advice refused, touched", "4 KiB pages, MAP_POPULATE"])
def test_fresh_screen_memory_is_zeroed_writable_and_of_the_size_asked(way, monkeypatch):
    if way == "advice refused, touched":
        monkeypatch.setattr(screen_memory, "POPULATE_WRITE", 10_000)  # no such advice: EINVAL
    if way == "4 KiB pages, MAP_POPULATE":
        monkeypatch.setattr(screen_memory, "HUGE_PAGES", None)
    nbytes = 5 * mmap.PAGESIZE + 123
    values = screen_memory._populated(nbytes)
    assert values.dtype == np.uint8 and len(values) == nbytes and not values.any()
    values[:] = 7
    assert (values == 7).all()
