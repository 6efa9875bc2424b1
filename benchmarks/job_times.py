"""Wall time per rule of a Snakemake run, from its log: `python benchmarks/job_times.py .snakemake/log/<run>.log`.

Sums each job's time from its start ("[date]" then "rule X:" / "localrule X:" and "jobid: N") to "Finished jobid: N
(Rule: X)"; jobs that ran side by side each count their own wall time (job-seconds, not elapsed time)."""
import re, sys, collections, datetime
text = open(sys.argv[1]).read().splitlines()
start = {}; cur_time = None; dur = collections.defaultdict(float); count = collections.Counter()
pending = None
for i, line in enumerate(text):
    m = re.match(r"\[(\w{3} \w{3}\s+\d+ \d\d:\d\d:\d\d \d{4})\]", line)
    if m:
        cur_time = datetime.datetime.strptime(m.group(1).replace("  ", " "), "%a %b %d %H:%M:%S %Y"); continue
    m = re.match(r"(?:local)?rule (\S+):", line)
    if m: pending = m.group(1); continue
    m = re.match(r"\s+jobid: (\d+)", line)
    if m and pending: start[m.group(1)] = (pending, cur_time); pending = None; continue
    m = re.match(r"Finished jobid: (\d+) \(Rule: (\S+)\)", line)
    if m and m.group(1) in start:
        rule, t0 = start.pop(m.group(1)); dur[rule] += (cur_time - t0).total_seconds(); count[rule] += 1
tot = sum(dur.values())
for rule, s in sorted(dur.items(), key=lambda x: -x[1]):
    print(f"{rule:45s} {count[rule]:4d} jobs {s:8.0f} job-s  {100*s/tot:5.1f}%")
print(f"{'total':45s} {sum(count.values()):4d} jobs {tot:8.0f} job-s")
