"""Wall time and peak memory per stage of a study, from the Snakemake `benchmark:` files its rules write.

    python benchmarks/stage_times.py [logs/benchmarks]

Every rule writes `logs/benchmarks/<stage>/...tsv` (one row: seconds, max RSS, ...); a stage is the first folder
under `logs/benchmarks` (activations, train, match, chance, figures, ...). Prints per stage the jobs, their summed
wall time (job-seconds: jobs that ran side by side each count their own time), its share of the total, the longest
job and the largest peak RSS. Training's share is the answer to "how much of the study is science".
"""

from __future__ import annotations

import csv
import sys
from collections import defaultdict
from pathlib import Path


def stage_rows(root: Path) -> dict[str, list[dict]]:
    """Returns {stage: [benchmark row per job]} from the .tsv files under `root`."""
    stages: dict[str, list[dict]] = defaultdict(list)
    for path in sorted(root.rglob("*.tsv")):
        with path.open() as f:
            for row in csv.DictReader(f, delimiter="\t"):
                stages[path.relative_to(root).parts[0]].append(row)
    return stages


def main(root: str = "logs/benchmarks") -> None:
    stages = stage_rows(Path(root))
    if not stages:
        sys.exit(f"no benchmark files under {root}: run the study first")
    seconds = {stage: sum(float(r["s"]) for r in rows) for stage, rows in stages.items()}
    total = sum(seconds.values())
    print(f"{'stage':28s} {'jobs':>5s} {'job-s':>8s} {'share':>6s} {'longest s':>10s} {'peak RSS MB':>12s}")
    for stage in sorted(stages, key=lambda s: -seconds[s]):
        rows = stages[stage]
        rss = max((float(r["max_rss"]) for r in rows if r.get("max_rss") not in (None, "", "NA", "-")), default=float("nan"))
        print(f"{stage:28s} {len(rows):5d} {seconds[stage]:8.0f} {100 * seconds[stage] / total:5.1f}% "
              f"{max(float(r['s']) for r in rows):10.1f} {rss:12.0f}")
    print(f"{'total':28s} {sum(len(r) for r in stages.values()):5d} {total:8.0f}")


if __name__ == "__main__":
    main(*sys.argv[1:])
