#!/usr/bin/env bash
# Preemption check, by hand (~5 min, too slow for the test suite: SLURM holds a requeued job ~2 min):
# a training job is requeued (`scontrol requeue`, what preemption does) after it saved its state; SLURM
# restarts it, training resumes there, and the checkpoints must be the bytes of an uninterrupted local run.
#   tests/slurm/requeue_check.sh [WORKDIR]        (root, slurm-wlm and munge installed; run from the repo root)
set -euo pipefail
repo=$(pwd)
work=${1:-$(mktemp -d)}
py=$repo/.venv/bin/python
sae=results/smollm2-135m/kjv-pydoc/layers.1/topk-256
for side in slurm local; do
    mkdir -p "$work/$side" && cp -r "$repo/workflow" "$repo/config" "$work/$side/"
    # one site, two seeds stacked in one job, 2000 steps, state saved every 100 steps, GPU requests on
    "$py" - "$work/$side/config/requeue.yaml" <<'PY'
import sys, yaml
c = yaml.safe_load(open("config/smoke.yaml"))
c["sites"] = [{"model": "smollm2-135m", "dataset": "kjv-pydoc", "hooks": ["layers.1"], "saes": ["topk-256"]}]
c["saes"] = {"topk-256": {**c["saes"]["topk-256"], "max_tokens": 1024000, "state_every_steps": 100}}
c.update(seeds=[0, 1], cluster={"gpu_requests": "always"})
c["train"]["seeds_per_job"] = 2
yaml.safe_dump(c, open(sys.argv[1], "w"))
PY
done
"$repo/tests/slurm/start_cluster.sh" "$work/cluster" >/dev/null
trap '"$repo/tests/slurm/stop_cluster.sh" "$work/cluster"' EXIT
export PATH=$work/cluster/bin:$PATH
(cd "$work/slurm" && timeout -s KILL 900 "$py" -m snakemake "$sae/seed1/metrics.json" --profile "$repo/tests/slurm/profile" \
    --configfile config/requeue.yaml > run.log 2>&1) &
run=$!
(cd "$work/local" && "$py" -m snakemake "$sae/seed1/metrics.json" --cores 2 --configfile config/requeue.yaml > run.log 2>&1) &
for _ in $(seq 1 200); do
    job=$(squeue -h -o "%i %k %T" | awk '/train/ && /RUNNING/ {print $1}')
    if [ -n "$job" ] && [ -d "$work/slurm/$sae/seed0.state" ]; then
        scontrol requeue "$job" && echo "requeued SLURM job $job at $(date +%T)"
        break
    fi
    sleep 3
done
wait "$run"
wait
scontrol show job "$job" -o | tr ' ' '\n' | grep -E '^(JobState|Restarts)='
grep -h "resuming at step" "$work/slurm/logs/train/"*/*/*/*/*.log
for f in seed0/sae.safetensors seed1/sae.safetensors seed0/firing.npy seed1/loss_curve.parquet; do
    cmp "$work/slurm/$sae/$f" "$work/local/$sae/$f" && echo "$f: same bytes as the uninterrupted run"
done
