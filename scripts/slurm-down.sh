#!/usr/bin/env bash
# slurm-down.sh - stop the single-node Slurm started by scripts/slurm-up.sh:
# slurmd, slurmctld and munged (by their pid files; SIGTERM, then SIGKILL
# after 10 s).  Leaves packages, config, munge key and job state in place, so
# a later slurm-up.sh is a fast restart.
set -uo pipefail

if [ "$(id -u)" -ne 0 ]; then
    echo "slurm-down: must be run as root" >&2
    exit 3
fi

stop_daemon() {  # stop_daemon <pidfile> <comm>
    local pidfile=$1 comm=$2 pid
    [ -s "$pidfile" ] || { echo "slurm-down: $comm not running"; return 0; }
    pid=$(cat "$pidfile" 2>/dev/null)
    if [ -z "$pid" ] || [ "$(cat /proc/"$pid"/comm 2>/dev/null)" != "$comm" ]; then
        echo "slurm-down: $comm not running (stale $pidfile)"
        rm -f "$pidfile"
        return 0
    fi
    kill "$pid" 2>/dev/null
    for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || { echo "slurm-down: stopped $comm ($pid)"; rm -f "$pidfile"; return 0; }
        sleep 0.2
    done
    kill -9 "$pid" 2>/dev/null
    rm -f "$pidfile"
    echo "slurm-down: killed $comm ($pid) with SIGKILL"
}

stop_daemon /run/slurmd.pid slurmd
stop_daemon /run/slurmctld.pid slurmctld
stop_daemon /run/munge/munged.pid munged
exit 0
