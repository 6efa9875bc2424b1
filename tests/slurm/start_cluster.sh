#!/usr/bin/env bash
# Start a single-node SLURM cluster on localhost (Debian's slurm-wlm 22.05 + munge), for tests and for
# trying `snakemake --profile` on a workstation. Everything lives under one folder; nothing in /etc changes.
#   tests/slurm/start_cluster.sh DIR [GPUS]   writes DIR/slurm.conf, starts munged, slurmctld, slurmd,
#                                             waits until the node is idle, prints the `export PATH=DIR/bin:...`
#                                             that puts client commands for this cluster first
#   tests/slurm/stop_cluster.sh DIR           stops them again
# GPUS (default 1) fake `gpu` GRES on the node, so jobs that ask for --gpus=1 are scheduled on a CPU-only
# machine. No cgroups or systemd: proctrack/linuxproc and task/none. No slurmdbd, so `sacct` does not work;
# clients must query with squeue (MinJobAge keeps finished jobs visible to it for 300 s).
set -euo pipefail
dir=$(mkdir -p "$1" && cd "$1" && pwd)
gpus=${2:-1}
for tool in munged slurmctld slurmd sinfo; do
    command -v "$tool" >/dev/null || { echo "start_cluster: '$tool' not found; apt-get install slurm-wlm munge" >&2; exit 3; }
done
[ "$(id -u)" = 0 ] || { echo "start_cluster: slurmd must run as root to start jobs as other users' processes; run as root" >&2; exit 3; }

host=$(hostname -s)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
ctld_port=$(free_port)
slurmd_port=$(free_port)
cpus=$(nproc)
# Leave the machine 2 GB; SLURM refuses jobs that ask for more than RealMemory.
mem_mb=$(( $(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo) - 2048 ))
mkdir -p "$dir/state" "$dir/spool" "$dir/munge"

cat > "$dir/slurm.conf" <<CONF
ClusterName=saeseeds-local
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.socket
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
MinJobAge=300
ReturnToService=2
SlurmdTimeout=60
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb Gres=gpu:$gpus State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
# Fake GPUs: device files that exist everywhere; nothing opens them (task/none binds no devices).
files=(/dev/null /dev/zero /dev/full /dev/urandom)
[ "$gpus" -le ${#files[@]} ] || { echo "start_cluster: at most ${#files[@]} fake GPUs" >&2; exit 2; }
echo "NodeName=$host Name=gpu File=$(IFS=,; echo "${files[*]:0:$gpus}")" > "$dir/gres.conf"

munged --force --socket="$dir/munge/munge.socket" --pid-file="$dir/munge/munged.pid" \
    --log-file="$dir/munge/munged.log" --seed-file="$dir/munge/munged.seed" --key-file=/etc/munge/munge.key
export SLURM_CONF=$dir/slurm.conf
slurmctld -i -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"

# Client wrappers that know the config: Snakemake's slurm-jobstep plugin drops SLURM_* variables (SLURM_CONF
# too) before its nested srun, and a real cluster's config sits in /etc/slurm, which this one leaves alone.
mkdir -p "$dir/bin"
for tool in sbatch srun squeue scancel sinfo scontrol sacct; do
    printf '#!/bin/sh\nSLURM_CONF=%s exec %s "$@"\n' "$SLURM_CONF" "$(command -v "$tool")" > "$dir/bin/$tool"
    chmod +x "$dir/bin/$tool"
done

for _ in $(seq 1 60); do
    state=$(sinfo -h -N -o %T 2>/dev/null | head -1)
    if [ "$state" = idle ]; then
        echo "export PATH=$dir/bin:\$PATH SLURM_CONF=$SLURM_CONF"
        exit 0
    fi
    sleep 0.5
done
echo "start_cluster: node not idle after 30 s (state '${state:-none}'); logs in $dir" >&2
tail -n 5 "$dir/slurmctld.log" "$dir/slurmd.log" >&2 || true
exit 1
