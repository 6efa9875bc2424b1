"""Throughputs measured by finished runs: the effective FLOP/s of caching and of training, per device.

`saeseeds plan --calibrate` reads every activation store's attrs and every checkpoint's metrics.json
under results/, turns their tokens/s into FLOP/s with the cost model of `saeseeds.plan.estimates`, and prints
the rows for config `cluster.throughput`, so job runtimes and plans follow the machines that ran the study.
It also sums the Snakemake `benchmark:` files every rule writes (`logs/benchmarks/<stage>/...tsv`): wall time
and peak memory per stage, what the jobs really took next to what the estimates reserve.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from saeseeds.plan.estimates import device_kind, forward_flops_per_token, train_flops_per_token
from saeseeds.errors import CalibrationError  # noqa: F401 (raised here; importable from here too)


@dataclass(frozen=True)
class Measurement:
    """One finished job: what it ran (forward or train), on which device, its tokens and seconds."""

    kind: str
    device: str
    tokens: float
    seconds: float
    flops_per_token: float
    source: str


def store_measurement(zarr_json: Path, attrs: dict) -> Measurement | None:
    """Returns the caching pass of one store from the attrs in its `zarr_json` (None for stores nobody
    timed, e.g. synthetic ones)."""
    if "tokens_per_second" not in attrs:
        return None
    try:
        hooks = attrs.get("hooks_in_pass") or [attrs["hook"]]
        tokens = float(attrs["n_tokens"])
        return Measurement(
            "forward", device_kind(attrs["config"]["device"]), tokens, tokens / attrs["tokens_per_second"],
            forward_flops_per_token(int(attrs["d_in"]), hooks), str(zarr_json.parent),
        )
    except KeyError as err:
        raise CalibrationError(f"{zarr_json}: attrs lack {err}") from err


def train_measurement(metrics_json: Path, metrics: dict) -> Measurement:
    """Returns the training job behind one seed's `metrics_json` (all its stacked seeds' tokens), read as `metrics`."""
    cfg_json = metrics_json.with_name("cfg.json")
    try:
        d = int(json.loads(cfg_json.read_text())["d_in"])
        n = int(metrics["sae"]["num_latents"])
        seeds = int(metrics.get("seeds_in_job", 1))
        return Measurement(
            "train", device_kind(metrics["train"]["device"]), float(metrics["tokens_seen"]) * seeds,
            float(metrics["wall_time_s"]), train_flops_per_token(d, n), str(metrics_json.parent),
        )
    except (KeyError, FileNotFoundError) as err:
        raise CalibrationError(f"{metrics_json}: cannot read {err} (needs cfg.json d_in and metrics sae, train, tokens_seen, wall_time_s)") from err


def measurements(results: str | Path) -> list[Measurement]:
    """Returns every timed caching pass and training job under `results`; a pass that cached several hooks
    and a job that trained several seeds count once each (their stores and seeds share one wall time). Jobs
    that computed their activations on the fly are left out."""
    results = Path(results)
    out, seen = [], set()
    for path in sorted(results.glob("**/activations.zarr/zarr.json")):
        # the group's zarr.json read directly: a plan over thousands of stores should not open zarr arrays
        attrs = json.loads(path.read_text()).get("attributes", {})
        m = store_measurement(path, attrs)
        job = (json.dumps(attrs.get("hooks_in_pass")), attrs.get("tokens_sha256"), attrs.get("tokens_per_second"))
        if m and (job not in seen or not attrs.get("hooks_in_pass")):  # one pass wrote every store of its hooks
            seen.add(job)
            out.append(m)
    for path in sorted(results.glob("**/seed*/metrics.json")):
        metrics = json.loads(path.read_text())
        if metrics.get("activations") == "on_the_fly":
            continue  # its wall time holds the model's forward passes too, so it would understate training's speed
        m = train_measurement(path, metrics)
        job = (metrics.get("store"), json.dumps(metrics.get("sae"), sort_keys=True), metrics["wall_time_s"])
        if job not in seen:
            seen.add(job)
            out.append(m)
    if not out:
        raise CalibrationError(f"{results}: no finished activation store or training metrics to calibrate from")
    return out


def throughput_table(found: list[Measurement], gpu_model: str | None = None) -> dict[str, dict[str, float]]:
    """Returns {device: {"forward_flops": F, "train_flops": T}}: all FLOPs over all seconds per kind, so long
    jobs weigh more than short ones (whose start-up dominates). cuda rows are named `gpu_model` when given."""
    table: dict[str, dict[str, float]] = {}
    for device in sorted({m.device for m in found}):
        row = {}
        for kind in ("forward", "train"):
            mine = [m for m in found if m.device == device and m.kind == kind]
            if mine:
                row[f"{kind}_flops"] = float(f"{sum(m.tokens * m.flops_per_token for m in mine) / sum(m.seconds for m in mine):.3g}")
        table[gpu_model if device == "cuda" and gpu_model else device] = row
    return table


def tokens_per_second(found: list[Measurement], kind: str, device: str) -> float:
    """Returns the tokens/s of all `kind` jobs on `device` together (tokens over seconds)."""
    mine = [m for m in found if m.kind == kind and m.device == device]
    return sum(m.tokens for m in mine) / sum(m.seconds for m in mine) if mine else 0.0


@dataclass(frozen=True)
class StageTime:
    """What the jobs of one stage (the first folder under logs/benchmarks) took, from their benchmark files."""

    stage: str
    jobs: int
    seconds: float
    """Summed wall time of the jobs (job-seconds: jobs that ran side by side each count their own)."""
    longest: float
    max_rss_mb: float | None
    """Largest peak resident memory of one job, where the platform reports it."""


def stage_times(benchmarks: str | Path = "logs/benchmarks") -> list[StageTime]:
    """Returns one StageTime per stage found under `benchmarks`, longest total first ([] when there is none)."""
    root = Path(benchmarks)
    rows: dict[str, list[dict]] = {}
    for path in sorted(root.rglob("*.tsv")) if root.is_dir() else []:
        with path.open() as handle:
            rel = path.relative_to(root)  # logs/benchmarks/<stage>/...tsv, or <stage>.tsv for a rule without wildcards
            rows.setdefault(rel.parts[0] if len(rel.parts) > 1 else rel.stem, []).extend(csv.DictReader(handle, delimiter="\t"))
    out = []
    for stage, found in rows.items():
        seconds = [float(r["s"]) for r in found]
        rss = [float(r["max_rss"]) for r in found if r.get("max_rss") not in (None, "", "NA", "-")]
        out.append(StageTime(stage, len(found), sum(seconds), max(seconds), max(rss) if rss else None))
    return sorted(out, key=lambda t: -t.seconds)

