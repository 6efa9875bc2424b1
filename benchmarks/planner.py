"""Wall time of `saeseeds plan` on a config, for this checkout and others, interleaved in the same minutes.

    python benchmarks/planner.py --config config/paper.yaml --other /tmp/old-checkout --repeat 3

Each run is `python -m saeseeds.cli plan --configfile CONFIG` in a fresh process, with the checkout's `src/` first
on PYTHONPATH (so one environment serves every checkout) and its folder as the workflow root; runs alternate
between checkouts so a change in machine load hits both. Prints every time, the median per checkout, its ratio to
this checkout's and whether the per-rule tables agree (rows sorted: Snakemake lists jobs in no fixed order).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def plan_once(checkout: Path, config: str) -> tuple[float, str]:
    """Returns (seconds, the printed per-rule table with its rows sorted) of one `saeseeds plan` in `checkout`."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(checkout / "src"), os.environ.get("PYTHONPATH", "")])}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "saeseeds.cli", "plan", "--configfile", config], cwd=checkout,
                          capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"saeseeds plan failed in {checkout}:\n{proc.stderr[-3000:]}")
    table = proc.stdout.split("\n\n")[0].splitlines()
    return seconds, "\n".join([" ".join(table[0].split())] + sorted(" ".join(line.split()) for line in table[1:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="config/paper.yaml")
    parser.add_argument("--other", nargs="*", default=[], help="other checkouts to time beside this one")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    checkouts = [ROOT] + [Path(p).resolve() for p in args.other]
    times: dict[Path, list[float]] = {c: [] for c in checkouts}
    tables: dict[Path, str] = {}
    for _ in range(args.repeat):
        for checkout in checkouts:
            seconds, tables[checkout] = plan_once(checkout, args.config)
            times[checkout].append(seconds)
    mine = statistics.median(times[ROOT])
    print(f"saeseeds plan --configfile {args.config}, {args.repeat} runs each, interleaved")
    print("| checkout | runs (s) | median (s) | vs this checkout | same per-rule table |")
    print("|---|---|---|---|---|")
    for checkout in checkouts:
        median = statistics.median(times[checkout])
        runs = ", ".join(f"{t:.2f}" for t in times[checkout])
        print(f"| {checkout} | {runs} | {median:.2f} | {median / mine:.2f}x | {tables[checkout] == tables[ROOT]} |")


if __name__ == "__main__":
    main()
