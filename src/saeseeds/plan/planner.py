"""Plan a study before spending on it: jobs, GPU-hours, CPU-hours and disk per rule, from a dry run.

The numbers are the resources each rule declares (see `saeseeds.plan.estimates`), summed over the jobs that a
dry run says still have to run, so a half-finished study plans only what is left. Runtimes are what the
jobs reserve from a scheduler, which includes a safety margin over the expected time.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from saeseeds.errors import PlanError  # noqa: F401 (raised here; importable from here too)

if TYPE_CHECKING:
    import pandas as pd

# pandas is imported where the tables are built: `saeseeds plan` starts its dry run (the long part) first.
_RULE = re.compile(r"^(?:local)?rule (\S+):$")
_FIELD = re.compile(r"^\s+(threads|resources|wildcards): (.*)$")


@dataclass
class PlannedJob:
    """One job of the dry run with what it asks for."""

    rule: str
    threads: int = 1
    resources: dict[str, str] = field(default_factory=dict)
    wildcards: str = ""

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
    # The config's checks run here beside the dry run (which runs them too), to name a bad key in one line.
    proc = subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _check_config(workdir, configfile)
    except Exception:
        proc.kill()
        proc.communicate()
        raise
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise PlanError(f"snakemake --dry-run failed ({' '.join(cmd)}):\n{err[-4000:]}{out[-2000:]}")
    return out + err


def _check_config(workdir: str | Path, configfile: str | Path | None) -> None:
    """Raises PlanError naming the key at the first problem of the config (every check, the trainer's included)."""
    from saeseeds.config.validate import validate_config
    from saeseeds.errors import ConfigError

    try:
        import yaml

        config = yaml.safe_load((Path(workdir) / (configfile or "config/config.yaml")).read_text())
        validate_config(config, Path(workdir) / "workflow" / "schemas" / "config.schema.yaml")
    except (ConfigError, OSError) as err:
        raise PlanError(str(err)) from err


def rule_family(name: str) -> str:
    """Returns the family of a generated rule: train_seeds_0_1_2(_snapshots) -> train, activations_3 -> activations,
    activations_3_shard -> activations_shard, match_pairs_4 -> match, functional_loss_0 -> functional_loss."""
    return re.sub(
        r"^(train)_seeds_[0-9_]+(?:_snapshots)?$|^(activations)_[0-9]+(_shard)?$|^(match)_pairs_[0-9]+$|^(functional_loss)_[0-9]+$",
        lambda m: m.group(1) or m.group(4) or m.group(5) or m.group(2) + (m.group(3) or ""),
        name,
    )


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
            elif key == "wildcards":
                jobs[-1].wildcards = value.strip()
            else:
                for item in value.split(", "):
                    name, _, val = item.partition("=")
                    jobs[-1].resources[name.strip()] = val.strip()
    return jobs


def summarize(jobs: list[PlannedJob]) -> pd.DataFrame:
    """Returns one row per rule plus a total: jobs, GPU-hours, CPU-hours, disk (GB), longest job (h).

    A GPU job's hours count as GPU-hours; every job's threads x runtime count as CPU-hours.
    """
    import pandas as pd

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


def largest_job(jobs: list[PlannedJob]) -> PlannedJob | None:
    """Returns the job that reserves the most hours (GPU-hours if it has a GPU, else CPU-hours); None if none."""
    jobs = [job for job in jobs if job.rule != "all"]
    if not jobs:
        return None
    return max(jobs, key=lambda job: job.number("runtime") / 60 * (job.number("gpu") or job.threads))


def caching_tradeoff(config: dict) -> pd.DataFrame:
    """Returns one row per caching job (model, dataset, hooks): caching them once against computing them on the fly.

    Caching costs one model load and one forward pass to the deepest hook over the cached tokens, plus disk;
    then every training job reads the cache (several epochs if its `max_tokens` exceeds it). On the fly (as
    sparsify does), each training job loads the model and runs it over all of its training tokens (again in
    every epoch) and the held-out ones, and needs no disk. Hours are expected
    times (no safety margin) from the throughput table, on the device of `activations.device`; `configured`
    is the way the config chose (`activations.mode`).
    """
    import pandas as pd

    from saeseeds.plan import estimates
    from saeseeds.config import study
    groups: dict[tuple, dict] = {}
    for site in study.sites(config):
        if config["models"][site.model]["source"] == "synthetic":
            continue
        acts = study.site_activations(config, site.model, site.dataset, site.hook)
        mode = "on the fly" if study.on_the_fly(config, site.model, site.dataset, site.hook) else "cache"
        key = (site.model, site.dataset, repr(study.canonical(study.row_settings(acts))), mode)
        group = groups.setdefault(key, {"acts": acts, "hooks": [], "mode": mode})
        if site.hook not in group["hooks"]:
            group["hooks"].append(site.hook)
    per_job = (config.get("train") or {}).get("seeds_per_job", 1)
    rows = []
    for (model, dataset, _, _), group in groups.items():
        acts, hooks = group["acts"], group["hooks"]
        d = estimates.d_model(config, model)
        flops = estimates.forward_flops(config, acts.get("device", "cpu"))
        n_train = acts["max_tokens"] - acts["heldout_tokens"]
        on_the_fly, epochs, train_jobs = 0.0, 0.0, 0
        for site, sae in study.site_saes(config):
            if (site.model, site.dataset) != (model, dataset) or site.hook not in hooks or study.is_external(config, sae):
                continue  # an external set trains nothing
            tokens = config["saes"][sae].get("max_tokens", n_train)
            jobs = len(study.seed_groups(study.sae_seeds(config, sae), per_job))
            train_jobs += jobs
            epochs = max(epochs, tokens / n_train)
            on_the_fly += jobs * estimates.on_the_fly_seconds(config, model, site.hook, sae, acts)
        cache = estimates.activations_seconds(acts, d, hooks, flops)
        rows.append(
            {
                "model": model,
                "dataset": dataset,
                "hooks": len(hooks),
                "cached_tokens": acts["max_tokens"],
                "epochs": round(epochs, 2),
                "disk_gb": len(hooks) * estimates.activations_disk_mb(acts, d) / 1000,
                "cache_hours": cache / 3600,
                "train_jobs": train_jobs,
                "on_the_fly_hours": on_the_fly / 3600,
                "cheaper": "cache" if on_the_fly > cache else "on the fly",
                "configured": group["mode"],
            }
        )
    return pd.DataFrame(rows)


def plan(workdir: str | Path = ".", configfile: str | Path | None = None, cores: int = 2, extra: list[str] | None = None) -> pd.DataFrame:
    """Returns the per-rule plan of what a run of the study would still do."""
    return summarize(parse_jobs(dry_run(workdir, configfile, cores, extra)))


def load_config(workdir: str | Path = ".", configfile: str | Path | None = None) -> dict:
    """Returns the study config a dry run would use (config/config.yaml unless given), schema defaults filled in."""
    import yaml

    from saeseeds.config import study
    path = Path(workdir) / (configfile or "config/config.yaml")
    config = yaml.safe_load(path.read_text())
    return study.validate_schema(config, Path(workdir) / "workflow" / "schemas" / "config.schema.yaml")
