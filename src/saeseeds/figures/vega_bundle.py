"""vega-embed's JavaScript bundle, built once per machine instead of once per figure job.

Every figure's HTML inlines vega, vega-lite and vega-embed, so that it opens offline (cluster nodes, laptops on a
train). vl-convert builds that 0.9 MB bundle the first time a process asks for it: 2.7 s on a 2-core AVX2 VM,
against about 1.5 s for the rest of a figure job's own work, and the same bytes every time for one vl-convert and
vega-lite version. The first figure job writes it to `<cache>/vega/vl-convert-<version>-<vega-lite>.js` (`<cache>` as
in `saeseeds.common.cache`) behind a line holding its sha256; later jobs check the digest (2 ms) and read it. A
file whose digest does not match is built again, never used; where the cache cannot be written, every process
builds its own, as before. The HTML is altair's own inline page, byte for byte (`tests/figures/test_figures.py`).
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

from saeseeds.common.atomic import atomic_write
from saeseeds.common.cache import cache_root

DIGEST_PREFIX = "// sha256:"


def bundle_path() -> Path:
    """Returns where the bundle of the installed vl-convert and altair's vega-lite version is kept."""
    import vl_convert
    from altair.utils._importers import vl_version_for_vl_convert

    return cache_root() / "vega" / f"vl-convert-{vl_convert.__version__}-{vl_version_for_vl_convert()}.js"


@functools.cache
def javascript_bundle() -> str:
    """Returns vega-embed's bundle for altair's vega-lite version: from the cache when it holds an intact copy."""
    import vl_convert
    from altair.utils._importers import vl_version_for_vl_convert

    path = bundle_path()
    kept = _read_intact(path)
    if kept is not None:
        return kept
    script = vl_convert.javascript_bundle(vl_version=vl_version_for_vl_convert())
    _write(path, script)
    return script


def _digest(script: str) -> str:
    return hashlib.sha256(script.encode("utf-8")).hexdigest()


def _read_intact(path: Path) -> str | None:
    try:
        head, script = path.read_text(encoding="utf-8").split("\n", 1)
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return script if head == DIGEST_PREFIX + _digest(script) else None


def _write(path: Path, script: str) -> None:
    """Writes the bundle behind its digest, atomically (a rename); a cache that cannot be written is left alone."""

    def fill(tmp: Path) -> None:
        tmp.write_text(f"{DIGEST_PREFIX}{_digest(script)}\n{script}", encoding="utf-8")
        os.chmod(tmp, 0o644)  # readable by every user of a shared cache, whatever the umask

    try:
        atomic_write(path, fill)
    except OSError:  # OutputError included: the figure is still made, with a bundle of its own
        return


class InlineTemplate:
    """altair's inline HTML template with the cached bundle filled in (altair calls `render` with the rest)."""

    def render(self, **fields) -> str:
        from altair.utils.html import INLINE_HTML_TEMPLATE

        return INLINE_HTML_TEMPLATE.render(vegaembed_script=javascript_bundle(), **fields)
