"""Seconds numba spends compiling the matching's kernels the first time, as a fresh install or a fresh clone's CI pays.

Each run is a new process with an empty `NUMBA_CACHE_DIR`: it times the first and second sparse matching of two
300 x 32 dictionaries (the first compiles every kernel on the path, the second reads none from disk) and, through
numba's compile events, the seconds spent in each function compiled (a kernel's time includes what it compiles on
the way: its callees, numba's own overloads). Until the cache is written, every process that matches pays this:
each xdist worker of the test suite, and each of the first match jobs a study runs side by side.

    python benchmarks/first_compile.py                              # this checkout, 2 runs
    git worktree add /tmp/old <commit>
    python benchmarks/first_compile.py --src src /tmp/old/src --runs 2   # alternated: src, old, src, old
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def measure() -> dict:
    """In this process (fresh cache set by the caller): first and second matching seconds, compile seconds per function."""
    import numpy as np
    from numba.core import event

    from saeseeds.matching.match import match_dictionaries

    compiles: dict[str, float] = {}

    class Recorder(event.Listener):
        def _name(self, ev) -> str:
            fn = ev.data["dispatcher"].py_func
            return f"{fn.__module__.rsplit('.', 1)[-1]}.{fn.__qualname__}"

        def on_start(self, ev):
            compiles[self._name(ev)] = compiles.get(self._name(ev), 0.0) - time.perf_counter()

        def on_end(self, ev):
            compiles[self._name(ev)] += time.perf_counter()

    event.register("numba:compile", Recorder())
    rng = np.random.default_rng(0)
    a = rng.standard_normal((300, 32)).astype(np.float32)
    b = a + 0.1 * rng.standard_normal((300, 32)).astype(np.float32)
    seconds = []
    for _ in range(2):
        start = time.perf_counter()
        match_dictionaries(a, a, b, b, method="sparse", device="cpu")
        seconds.append(time.perf_counter() - start)
    top = dict(sorted(compiles.items(), key=lambda kv: -kv[1])[:8])
    return {"first_s": seconds[0], "second_s": seconds[1], "compile_s": top}


def run(src: Path) -> dict:
    """One fresh process with the package at `src` and an empty numba cache; returns its measurement."""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "PYTHONPATH": str(src.resolve()), "NUMBA_CACHE_DIR": cache}
        done = subprocess.run([sys.executable, __file__, "--worker"], env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1]) | {"src": str(src)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", type=Path, nargs="+", default=[ROOT / "src"], help="package folders, alternated")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure()))
        return
    for i in range(args.runs):
        for src in args.src:
            r = run(src)
            kernels = ", ".join(f"{name} {s:.1f} s" for name, s in r["compile_s"].items())
            print(f"run {i} {src}: first matching {r['first_s']:.1f} s, second {r['second_s']:.3f} s; compiled: {kernels}",
                  flush=True)


if __name__ == "__main__":
    main()
