#!/bin/bash
# The test suite at several commits, one after another in one clone, each from a cold start as on a new machine.
#
#   benchmarks/suite_ab.sh <clone> <commit> [<commit> ...]
#
# <clone> is a clone of this repository whose `.venv` `./run.sh test` has installed (the editable install keeps
# pointing at its src/, so every commit checked out there runs with the same packages; the commits must share
# requirements.lock and pyproject.toml). Before each run the embedded model's copy and the vega bundle (a fresh
# SAESEEDS_CACHE) and numba's cache (a fresh NUMBA_CACHE_DIR) are empty, and a probe times the training step's
# float32 matmul ([4096, 576] x [576, 4608], 2 threads; 130-138 ms median on the 2-core EPYC in a steady hour) before
# and after, to tell a slow hour of a shared VM from a slower commit. Prints pytest's summary line and `time`.
set -euo pipefail
clone=$1
shift
cd "$clone"
start=$(git rev-parse --abbrev-ref HEAD)
probe() {
    .venv/bin/python -c "
import time, torch
torch.set_num_threads(2)
x, w = torch.randn(4096, 576), torch.randn(576, 4608)
for _ in range(3):
    x @ w
times = []
for _ in range(15):
    t = time.perf_counter(); x @ w; times.append(time.perf_counter() - t)
print(f'matmul probe median {1000 * sorted(times)[7]:.1f} ms')
"
}
for commit in "$@"; do
    git checkout -q "$commit"
    cold=$(mktemp -d)
    echo "== $commit $(date +%T)"
    probe
    ( time SAESEEDS_CACHE="$cold/saeseeds" NUMBA_CACHE_DIR="$cold/numba" .venv/bin/python -m pytest -q -p no:cacheprovider ) 2>&1 | tail -5
    probe
    rm -rf "$cold"
done
git checkout -q "$start"
