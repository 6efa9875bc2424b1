"""Screening precisions side by side: the same matching with each `--screen`, process by process, alternated.

Each call is one `matching.py --worker saeseeds` process (`--repeat` matchings, each beside a float32 floor measured
just before it), so every precision sees the same minutes of the machine. Prints one JSON line per call and, at the
end, per precision: the median wall, the median of wall / floor, the same optimum on every call, and the screen's
largest error and exact pairs.

    python benchmarks/screens.py --rounds 2 -- --kind correlated 16384
    python benchmarks/screens.py --rounds 2 -- --real /tmp/real16k/topk-16384-k32/
    python benchmarks/screens.py --rounds 2 --out benchmarks/results_screens.jsonl -- --real <the 10 stacked sets>
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

MATCHING = Path(__file__).resolve().parent / "matching.py"


def call(screen: str, repeat: int, rest: list[str]) -> dict:
    """One worker process: `repeat` matchings with this screen, each beside its floor."""
    n = "0" if "--real" in rest else rest[-1]
    args = [a for a in rest if a != n] if n != "0" else rest
    cmd = [sys.executable, str(MATCHING), "--worker", "saeseeds", n, "--screen", screen, "--repeat", str(repeat), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1]) | {"asked": screen}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--screens", nargs="+", default=["fp32", "int8"])
    parser.add_argument("--rounds", type=int, default=2, help="calls per precision, alternated")
    parser.add_argument("--repeat", type=int, default=2, help="matchings per call")
    parser.add_argument("--out", type=Path, default=None, help="append each call's JSON line here")
    parser.add_argument("rest", nargs=argparse.REMAINDER, help="after --: matching.py's data arguments and N")
    args = parser.parse_args()
    rest = [a for a in args.rest if a != "--"]
    results: dict[str, list[dict]] = {s: [] for s in args.screens}
    for _ in range(args.rounds):
        for screen in args.screens:
            r = call(screen, args.repeat, rest)
            results[screen].append(r)
            line = json.dumps(r)
            print(line, flush=True)
            if args.out:
                with args.out.open("a") as f:
                    f.write(line + "\n")
    optima = {json.dumps(r["objective_quantised"]) for rs in results.values() for r in rs}
    print(f"same optimum on every call: {len(optima) == 1}; certified: {all(r['certified'] for rs in results.values() for r in rs)}")
    for screen, rs in results.items():
        walls = [w for r in rs for w in r["walls_s"]]
        ratios = [w / f for r in rs for w, f in zip(r["walls_s"], r["floors_s"])]
        print(
            f"{screen:>5} ({rs[0]['screen']}): wall median {statistics.median(walls):.2f} s (best {min(walls):.2f}), "
            f"wall / floor median {statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}x), "
            f"floors {min(f for r in rs for f in r['floors_s']):.2f}-{max(f for r in rs for f in r['floors_s']):.2f} s, "
            f"exact pairs {rs[0]['pairs_exact']}, rounds {rs[0]['rounds']}, rows rescreened {rs[0]['rows_rescreened']}"
        )


if __name__ == "__main__":
    main()
