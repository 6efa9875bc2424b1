"""Wall time and peak memory per stage of a study, from the Snakemake `benchmark:` files its rules write.

    python benchmarks/stage_times.py [logs/benchmarks]

Every rule writes `logs/benchmarks/<stage>/...tsv`; a stage is the first folder under `logs/benchmarks` (activations,
train, match, chance, figures, ...). Prints per stage the jobs, their summed wall time (job-seconds: jobs that ran
side by side each count their own), its share of the total, the longest job and the largest peak RSS
(`saeseeds.plan.calibrate.stage_times`, which `saeseeds plan --calibrate` prints too).
"""

import sys

from saeseeds.plan.calibrate import stage_times

stages = stage_times(sys.argv[1] if len(sys.argv) > 1 else "logs/benchmarks")
if not stages:
    sys.exit("no benchmark files: run the study first")
total = sum(t.seconds for t in stages)
print(f"{'stage':28s} {'jobs':>5s} {'job-s':>8s} {'share':>6s} {'longest s':>10s} {'peak RSS MB':>12s}")
for t in stages:
    rss = f"{t.max_rss_mb:12.0f}" if t.max_rss_mb is not None else f"{'-':>12s}"
    print(f"{t.stage:28s} {t.jobs:5d} {t.seconds:8.0f} {100 * t.seconds / total:5.1f}% {t.longest:10.1f} {rss}")
print(f"{'total':28s} {sum(t.jobs for t in stages):5d} {total:8.0f}")
