"""Plan a study before spending on it: jobs, GPU-hours, CPU-hours and disk per rule, from a dry run.

The numbers are the resources each rule declares (see `saeseeds.estimates`), summed over the jobs that a
dry run says still have to run, so a half-finished study plans only what is left. Runtimes are what the
jobs reserve from a scheduler, which includes a safety margin over the expected time.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

_RULE = re.compile(r"^(?:local)?rule (\S+):$")
_FIELD = re.compile(r"^\s+(threads|resources): (.*)$")


class PlanError(RuntimeError):
    """The dry run failed; the message carries Snakemake's own error."""


@dataclass
class PlannedJob:
    """One job of the dry run with what it asks for."""

    rule: str
    threads: int = 1
    resources: dict[str, str] = field(default_factory=dict)

    def number(self, key: str) -> float:
        value = self.resources.get(key, "0")
        try:
            return float(value)
        except ValueError:
            return 0.0


def dry_run(workdir: str | Path = ".", configfile: str | Path | None = None, cores: int = 2, extra: list[str] | None = None) -> str:
    """Returns the text of `snakemake --dry-run` for the study; raises PlanError if Snakemake fails."""
    cmd = [sys.executable, "-m", "snakemake", "--dry-run", "--cores", str(cores)]
    if configfile:
        cmd += ["--configfile", str(configfile)]
    cmd += extra or []
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)
    if proc.returncode != 0:
        raise PlanError(f"snakemake --dry-run failed ({' '.join(cmd)}):\n{proc.stderr[-4000:]}{proc.stdout[-2000:]}")
    return proc.stdout + proc.stderr


def rule_family(name: str) -> str:
    """Returns the family of a generated rule: train_seeds_0_1_2 -> train, activations_3 -> activations."""
    return re.sub(r"^(train)_seeds_[0-9_]+$|^(activations)_[0-9]+$", lambda m: m.group(1) or m.group(2), name)


def parse_jobs(text: str) -> list[PlannedJob]:
    """Returns the jobs listed in a dry run's output, in order."""
    jobs: list[PlannedJob] = []
    for line in text.splitlines():
        rule = _RULE.match(line)
        if rule:
            jobs.append(PlannedJob(rule_family(rule.group(1))))
            continue
        found = _FIELD.match(line)
        if found and jobs:
            key, value = found.groups()
            if key == "threads":
                jobs[-1].threads = int(value)
            else:
                for item in value.split(", "):
                    name, _, val = item.partition("=")
                    jobs[-1].resources[name.strip()] = val.strip()
    return jobs


def summarize(jobs: list[PlannedJob]) -> pd.DataFrame:
    """Returns one row per rule plus a total: jobs, GPU-hours, CPU-hours, disk (GB), longest job (h).

    A GPU job's hours count as GPU-hours; every job's threads x runtime count as CPU-hours.
    """
    rows = []
    jobs = [job for job in jobs if job.rule != "all"]  # the target rule runs nothing
    for rule in dict.fromkeys(job.rule for job in jobs):
        mine = [job for job in jobs if job.rule == rule]
        hours = [job.number("runtime") / 60 for job in mine]
        rows.append(
            {
                "rule": rule,
                "jobs": len(mine),
                "gpu_hours": sum(h * job.number("gpu") for h, job in zip(hours, mine)),
                "cpu_hours": sum(h * job.threads for h, job in zip(hours, mine)),
                "disk_gb": sum(job.number("disk_mb") for job in mine) / 1000,
                "max_job_hours": max(hours),
                "max_mem_gb": max(job.number("mem_mb") for job in mine) / 1000,
            }
        )
    table = pd.DataFrame(rows, columns=["rule", "jobs", "gpu_hours", "cpu_hours", "disk_gb", "max_job_hours", "max_mem_gb"])
    if len(table):
        total = {"rule": "total", **{c: table[c].sum() for c in ("jobs", "gpu_hours", "cpu_hours", "disk_gb")}}
        total.update(max_job_hours=table["max_job_hours"].max(), max_mem_gb=table["max_mem_gb"].max())
        table = pd.concat([table, pd.DataFrame([total])], ignore_index=True)
    return table


def plan(workdir: str | Path = ".", configfile: str | Path | None = None, cores: int = 2, extra: list[str] | None = None) -> pd.DataFrame:
    """Returns the per-rule plan of what a run of the study would still do."""
    return summarize(parse_jobs(dry_run(workdir, configfile, cores, extra)))
