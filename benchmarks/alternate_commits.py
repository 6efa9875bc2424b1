"""Two commits' sparse matchings alternated process by process, each call beside its own float32 floor.

On a machine whose speed drifts from minute to minute (the 2-core EPYC VM: one pair's float32 floor moved
5.3-9.5 s within an hour), separate runs of `matching.py --worker` at two commits compare two different
machines. This runs the worker of this checkout's `benchmarks/matching.py` with the package of each commit in
turn (old, new, old, new, ...; `PYTHONPATH`), after one unrecorded warm-up each (numba compiles into a fresh
tree's cache), and reports per commit the medians over every call of the wall, of the floor taken just before
it, and of their ratio. The old commit is checked out in a temporary `git worktree`, removed at the end.

    python benchmarks/alternate_commits.py --old a7778ac --runs 3 -- --kind correlated 16384
    python benchmarks/alternate_commits.py --old a7778ac --runs 3 -- --real results/smollm2-135m/kjv-pydoc/layers.6.mlp/*/

Arguments after `--` go to the worker: `--kind`, `--real`, `--repeat` (calls per process, default 2) and the size.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"


def worker_args(rest: list[str]) -> list[str]:
    """Returns the worker's arguments: size (default 16384), --kind / --real as given, --repeat 2 unless given."""
    size = [a for a in rest if a.isdigit()]
    flags = [a for a in rest if not a.isdigit()]
    if "--repeat" not in flags:
        flags += ["--repeat", "2"]
    return ["--worker", "saeseeds", size[0] if size else ("0" if "--real" in flags else "16384"), *flags]


def run_worker(src: Path, args: list[str]) -> dict:
    """Runs one worker process with the package at `src`; returns its JSON line."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "matching.py"), *args], env=env, capture_output=True,
                          text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def summary(results: list[dict]) -> dict:
    """Medians over every call of the label's processes: wall, floor beside it, their ratio; the largest peak RSS."""
    walls = [w for r in results for w in r["walls_s"]]
    floors = [f for r in results for f in r["floors_s"]]
    return {
        "calls": len(walls),
        "wall_s": statistics.median(walls),
        "floor_s": statistics.median(floors),
        "wall_over_floor": statistics.median(w / f for w, f in zip(walls, floors)),
        "peak_rss_gib": max(r["peak_rss_gib"] for r in results),
        "objective_quantised": results[-1]["objective_quantised"],
    }


def main() -> None:
    argv = sys.argv[1:]
    rest = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old", required=True, help="the commit to compare with (checked out in a temporary worktree)")
    parser.add_argument("--runs", type=int, default=3, help="worker processes per commit, alternated")
    parser.add_argument("--out", type=Path, default=None, help="JSON lines of every process (default under benchmarks/out)")
    args = parser.parse_args(argv)
    wargs = worker_args(rest)
    warm_up = [*wargs[: wargs.index("--repeat") + 1], "1", *wargs[wargs.index("--repeat") + 2 :]]
    new_commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                check=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "src"], capture_output=True, text=True).stdout
    labels = {"old": args.old, "new": new_commit + ("+changes" if dirty.strip() else "")}
    out = args.out or OUT / f"alternate_{args.old}_{new_commit}.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "old"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), args.old], check=True,
                       capture_output=True)
        try:
            srcs = {"old": tree / "src", "new": ROOT / "src"}
            for label in ("old", "new"):
                print(f"warm-up {label} ({labels[label]})", flush=True)
                run_worker(srcs[label], warm_up)
            results = {"old": [], "new": []}
            with out.open("a") as f:
                for i in range(args.runs):
                    for label in ("old", "new"):
                        r = run_worker(srcs[label], wargs) | {"label": label, "commit": labels[label], "run": i}
                        results[label].append(r)
                        f.write(json.dumps(r) + "\n")
                        ratios = ", ".join(f"{w / fl:.2f}x" for w, fl in zip(r["walls_s"], r["floors_s"]))
                        print(f"run {i} {label}: walls {r['walls_s']} floors {r['floors_s']} -> {ratios}", flush=True)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], capture_output=True)
    table = {label: summary(results[label]) | {"commit": labels[label]} for label in ("old", "new")}
    print(json.dumps(table, indent=1))
    print(f"every process: {out}")


if __name__ == "__main__":
    main()
