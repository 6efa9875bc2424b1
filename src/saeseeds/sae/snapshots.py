"""Checkpoints along training (config `snapshots`): when to take them, where they live, how to list them.

A run with `snapshots: n` saves its SAEs after n - 1 intermediate steps, log-spaced by halving (the
steps num_steps / 2, / 4, ... / 2^(n-1), rounded), plus the final step, which is the run's own
checkpoint, so no weights are written twice and no training is added. A snapshot at step T holds the
weights after T steps of the run's own schedule: the same bytes as the run's state at T (the learning
rate still has num_steps - T steps of decay ahead), not a run trained to T tokens with its learning
rate decayed to zero there.

While training, snapshots go to `<state dir>/snapshots/seed{S}/step{T}/` (each written atomically), so
a killed job that resumes finds the ones it already wrote and rewrites later ones with the same bytes.
The count is part of the state's identity: changing it restarts a killed job from step 0.
At the end each seed's are copied into its checkpoint folder before that folder is renamed into place:

    seed{S}/snapshots/step{T}/cfg.json + sae.safetensors     (sparsify layout, like the checkpoint)
    seed{S}/snapshots/steps.json                               every checkpoint along training, final included
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from saeseeds.errors import SnapshotError  # noqa: F401 (raised here; importable from here too)

STEPS_FILE = "steps.json"


def snapshot_steps(num_steps: int, snapshots: int) -> list[int]:
    """Returns the steps (1-based counts of optimiser steps) at which a run of `num_steps` is saved, final included.

    Halving from the end keeps the points evenly spaced on the log-scaled token axis that the
    consistency curves are read on, and puts them where the SAE has already left its initialisation.
    """
    if isinstance(snapshots, bool) or not isinstance(snapshots, int) or snapshots < 0:
        raise SnapshotError(f"train snapshots={snapshots!r}: expected an integer >= 0")
    if snapshots == 0:
        return []
    steps = _halvings(num_steps, snapshots)
    if steps is None:
        most = max(n for n in range(1, num_steps.bit_length() + 1) if _halvings(num_steps, n) is not None)
        raise SnapshotError(f"train snapshots={snapshots}: {num_steps} training steps hold at most {most} log-spaced snapshots (halving from the end)")
    return steps


def _halvings(num_steps: int, n: int) -> list[int] | None:
    """Returns num_steps / 2^(n-1), ..., num_steps / 2, num_steps rounded, or None when two round to one step or below 1."""
    steps = [round(num_steps / 2**j) for j in range(n - 1, -1, -1)]
    return steps if steps[0] >= 1 and len(set(steps)) == n else None


def state_snapshot_dir(state_dir: str | Path, seed: int, step: int) -> Path:
    """Returns where a running job keeps seed `seed`'s snapshot at `step` (inside its resumable state)."""
    return Path(state_dir) / "snapshots" / f"seed{seed}" / f"step{step}"


def save_snapshot(coder, path: Path) -> None:
    """Writes one snapshot folder beside its place, then renames it there (a resumed job may overwrite it)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    coder.save_to_disk(tmp)
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)


def copy_into(seed_tmp: Path, state_dir: Path, seed: int, steps: Sequence[int], batch_size: int) -> None:
    """Copies seed `seed`'s intermediate snapshots from the state into `seed_tmp/snapshots/` and writes its steps.json.

    Copied, not moved: if the job dies between two seeds' renames, the state still holds every
    snapshot for the resumed run.
    """
    out = seed_tmp / "snapshots"
    out.mkdir(parents=True)
    records = []
    for step in steps:
        final = step == steps[-1]
        if not final:
            src = state_snapshot_dir(state_dir, seed, step)
            if not (src / "sae.safetensors").is_file():
                raise SnapshotError(f"{src}: snapshot missing from the training state")
            shutil.copytree(src, out / f"step{step}")
        records.append({"step": step, "tokens": step * batch_size, "dir": ".." if final else f"step{step}", "final": final})
    (out / STEPS_FILE).write_text(json.dumps({"seed": seed, "batch_size": batch_size, "checkpoints": records}, indent=2) + "\n")


def list_checkpoints(seed_dir: str | Path) -> list[dict]:
    """Returns a seed's checkpoints along training from its snapshots/steps.json: dicts with step, tokens, final
    and path (the folder holding cfg.json + sae.safetensors; the seed folder itself for the final step)."""
    index = Path(seed_dir) / "snapshots" / STEPS_FILE
    if not index.is_file():
        raise SnapshotError(f"{index}: missing; the SAE was trained without `snapshots` (set it in the config and retrain)")
    records = json.loads(index.read_text())["checkpoints"]
    return [r | {"path": Path(seed_dir) if r["final"] else index.parent / r["dir"]} for r in records]
