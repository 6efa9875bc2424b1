"""Live progress in the terminal: a job's progress bars also print one short line now and then to the terminal.

Inside a workflow job, `saeseeds.common.logs.rule_log` sends stderr (and so every tqdm bar) to the rule's log
file, which keeps the full bar. A person watching `./run.sh study` would see nothing but Snakemake's own
lines for minutes (a 4-minute caching job, every training job). So while `rule_log` holds the log, it
points this module at the stderr it replaced (the terminal, under Snakemake's local executor, which lets
job stderr through) and every `ProgressBar` also writes, at most every `every` seconds and once at its end, one
line there: `[job] desc: done/total unit (pct), rate, ETA`. Each line goes out in one write() of well
under PIPE_BUF bytes, so lines of two jobs running at once never interleave mid-line. Under a cluster
executor (SLURM_JOB_ID set) the job's stderr is a per-job file, not a terminal: nothing is echoed there;
SAESEEDS_PROGRESS=0 turns the echo off everywhere.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import IO, Any, Iterator

from tqdm.std import tqdm

EVERY_SECONDS = 10.0
"""Seconds between two terminal lines of one bar: a few lines per minute per job stays readable with two
jobs at once, and a 2-minute training job still shows its rate and ETA several times."""

_terminal: dict[str, Any] = {"stream": None, "job": "", "every": EVERY_SECONDS}


def echo_enabled() -> bool:
    """Returns whether progress lines may go to the terminal: not under SLURM, not turned off by SAESEEDS_PROGRESS=0."""
    return os.environ.get("SAESEEDS_PROGRESS", "1") != "0" and "SLURM_JOB_ID" not in os.environ


@contextlib.contextmanager
def echo_to(stream: IO[str] | None, job: str, every: float = EVERY_SECONDS) -> Iterator[None]:
    """Within the block, every `ProgressBar` also prints its progress lines to `stream`, prefixed by `[job]`."""
    before = dict(_terminal)
    _terminal.update(stream=stream if echo_enabled() else None, job=job, every=every)
    try:
        yield
    finally:
        _terminal.update(before)


def job_label(log_path: str | os.PathLike[str]) -> str:
    """Returns the short name of the job writing `log_path`: the path under logs/ without `.log`
    (logs/train/m/d/h/topk-1k/seeds_0_1.log -> train/m/d/h/topk-1k/seeds_0_1), unique per job."""
    parts = os.path.normpath(os.fspath(log_path)).split(os.sep)
    if "logs" in parts:
        parts = parts[len(parts) - parts[::-1].index("logs") :]
    label = "/".join(parts)
    return label[: -len(".log")] if label.endswith(".log") else label


def progress_line(job: str, desc: str, n: float, total: float | None, unit: str, rate: float, elapsed: float, done: bool = False) -> str:
    """Returns one terminal line: `[job] desc: n/total unit (pct%), rate unit/s, ETA h:mm:ss` (or `done in`, or
    `started` before any work).

    `rate` is this run's work per second (a resumed job counts only what it did itself), so the ETA holds.
    """
    count = f"{n:,.0f}/{total:,.0f} {unit} ({100 * n / total:.0f}%)" if total else f"{n:,.0f} {unit}"
    if not done and rate <= 0:  # the bar's first display: which stage starts, and how much it has to do
        return f"[{job}] {desc}: {count}, started\n"
    text = f"[{job}] {desc}: {count}, {rate:,.1f} {unit}/s"
    if done:
        finished = not total or n >= total
        text += f", {'done in' if finished else 'stopped after'} {tqdm.format_interval(elapsed)}"
    elif total and rate > 0:
        text += f", ETA {tqdm.format_interval((total - n) / rate)}"
    return text + "\n"


def _write_line(stream: IO[str], line: str) -> None:
    """Writes `line` with one write() (atomic on pipes below PIPE_BUF), to the file descriptor where there is one."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        stream.write(line)
        stream.flush()
        return
    os.write(fd, line.encode("utf-8", "replace"))


class ProgressBar(tqdm):
    """A tqdm bar (to stderr, so to the rule log inside a job) that also echoes to the terminal (`echo_to`)."""

    _echoed_at: float | None = None  # tqdm displays from its __init__, before ours would run
    _closed = False

    def display(self, msg: str | None = None, pos: int | None = None) -> Any:
        shown = super().display(msg, pos)
        now = time.monotonic()
        if not self._closed and _terminal["stream"] is not None and (self._echoed_at is None or now - self._echoed_at >= _terminal["every"]):
            self._echo(done=False)
            self._echoed_at = now
        return shown

    def close(self) -> None:
        if not self.disable and not self._closed and _terminal["stream"] is not None:
            self._echo(done=True)
        self._closed = True  # tqdm's own close displays once more: no second line after the last
        super().close()

    def _echo(self, done: bool) -> None:
        d = self.format_dict
        elapsed = d["elapsed"]
        rate = (d["n"] - (d.get("initial") or 0)) / elapsed if elapsed > 0 else 0.0
        line = progress_line(_terminal["job"], d["prefix"] or "progress", d["n"], d["total"], d["unit"], rate, elapsed, done)
        _write_line(_terminal["stream"], line)
