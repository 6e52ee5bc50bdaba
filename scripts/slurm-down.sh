#!/usr/bin/env bash
# slurm-down.sh - stop the daemons scripts/slurm-up.sh started, and nothing else:
# slurmd, slurmctld and munged as recorded in /run/gitexp-slurm/started (name, pid and start
# time, so a reused pid is never signalled); SIGTERM, then SIGKILL after 10 s. A Slurm that
# slurm-up.sh found running and used is left running. Packages, config, munge key and job
# state stay in place, so a later slurm-up.sh is a fast restart.
set -uo pipefail

STARTED=/run/gitexp-slurm/started

if [ "$(id -u)" -ne 0 ]; then
    echo "slurm-down: must be run as root" >&2
    exit 3
fi

start_time() {  # start_time <pid>: field 22 of /proc/<pid>/stat (after the "(comm)")
    local stat
    stat=$(cat /proc/"$1"/stat 2>/dev/null) || return 1
    stat=${stat##*) }
    # shellcheck disable=SC2086
    set -- $stat
    echo "${20}"
}

stop_daemon() {  # stop_daemon <comm> <pid> <start time>
    local comm=$1 pid=$2 since=$3
    if [ "$(cat /proc/"$pid"/comm 2>/dev/null)" != "$comm" ] || [ "$(start_time "$pid")" != "$since" ]; then
        echo "slurm-down: $comm ($pid) is no longer running"
        return 0
    fi
    kill "$pid" 2>/dev/null
    for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || { echo "slurm-down: stopped $comm ($pid)"; return 0; }
        sleep 0.2
    done
    kill -9 "$pid" 2>/dev/null
    echo "slurm-down: killed $comm ($pid) with SIGKILL"
}

if [ ! -s "$STARTED" ]; then
    echo "slurm-down: nothing to stop (no daemon started by slurm-up.sh is recorded in $STARTED)"
    exit 0
fi
for comm in slurmd slurmctld munged; do  # the order matters: slurmd before its controller
    while read -r name pid since; do
        [ "$name" = "$comm" ] && stop_daemon "$name" "$pid" "$since"
    done < "$STARTED"
done
rm -f "$STARTED"
exit 0
