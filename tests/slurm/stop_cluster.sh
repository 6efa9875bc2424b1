#!/usr/bin/env bash
# Stop the cluster tests/slurm/start_cluster.sh started in DIR (by the pids it recorded), cancelling its jobs.
set -uo pipefail
dir=$1
if [ -f "$dir/slurm.conf" ]; then
    SLURM_CONF=$dir/slurm.conf scancel --quiet --user "$(id -un)" 2>/dev/null
fi
for pidfile in "$dir/slurmd.pid" "$dir/slurmctld.pid" "$dir/munge/munged.pid"; do
    [ -f "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null
    for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -9 "$pid" 2>/dev/null
done
exit 0
