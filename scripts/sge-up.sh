#!/usr/bin/env bash
# sge-up.sh - make sure a Grid Engine answers on this machine for gitexp's Grid Engine runner
# tests; if none does, bring up a single-node one from Debian's packages (Son of Grid Engine).
#
# 1. If a Grid Engine already answers here (qstat -f lists a queue instance that takes jobs),
#    it is used as it is: nothing is installed, written, started or stopped.
# 2. Otherwise (root only) it preseeds debconf and installs gridengine-master, -exec and
#    -client if missing, aliases this host's name to localhost where it resolves to 127.0.0.1
#    (commlib refuses "client IP resolved to host name localhost" otherwise), starts
#    sge_qmaster, makes this host an admin, submit and exec host, allows root jobs
#    (min_uid/min_gid 0, before sge_execd starts), starts sge_execd, and defines what the
#    tests use: the host group @allhosts, a parallel environment "smp" (8 slots, $pe_slots)
#    and the queue all.q (4 slots, pe_list smp, bash, notify 10 s), then runs a smoke job.
#
# What it starts is recorded in $RUN_DIR/started (name, pid); scripts/sge-down.sh is not
# needed by the tests: the daemons are left running, as the Slurm ones are.
#
# Exit codes: 0 Grid Engine answers (last stdout line "sge-up: ready (<seconds>s)");
#             1 something failed (see stderr, /var/spool/gridengine/*/messages);
#             3 not root and no Grid Engine is running (callers treat it as "skip").
# Callers use SGE_ROOT=/var/lib/gridengine SGE_CELL=default (the Debian layout; also found
# by the commands without them).
set -euo pipefail

START=$(date +%s)
export SGE_ROOT=${SGE_ROOT:-/var/lib/gridengine} SGE_CELL=${SGE_CELL:-default}
HOST=$(hostname)
RUN_DIR=/run/gitexp-sge
TIMEOUT=${SGE_UP_TIMEOUT:-60}

log() { echo "sge-up: $*" >&2; }
die() { echo "sge-up: ERROR: $*" >&2; exit 1; }
ready() { echo "sge-up: ready ($(( $(date +%s) - START ))s)"; exit 0; }

usable_queue() {  # a queue instance without an alarm, error, disabled or unknown state
    command -v qstat >/dev/null 2>&1 || return 1
    timeout 10 qstat -f 2>/dev/null | awk '$1 ~ /@/ && (NF < 6 || $6 !~ /[uEdDsSCa]/) {ok=1} END {exit !ok}'
}

execd_alive() {  # the local execution daemon, where this machine has one installed
    [ ! -x /usr/sbin/sge_execd ] || pgrep -x sge_execd >/dev/null 2>&1
}

usable_queue && execd_alive && ready
[ "$(id -u)" = 0 ] || { log "no Grid Engine answers here and installing one needs root"; exit 3; }

# --- packages ------------------------------------------------------------------
if ! command -v qsub >/dev/null 2>&1 || [ ! -x /usr/sbin/sge_qmaster ] || [ ! -x /usr/sbin/sge_execd ]; then
    log "installing gridengine-master, gridengine-exec, gridengine-client"
    for pkg in gridengine-common gridengine-master gridengine-client; do
        printf '%s\n' "$pkg shared/gridenginemaster string $HOST" "$pkg shared/gridenginecell string default" \
            "$pkg shared/gridengineconfig boolean true" | debconf-set-selections
    done
    { apt-get install -y -q --no-install-recommends gridengine-master gridengine-exec gridengine-client \
        || { apt-get update -q && apt-get install -y -q --no-install-recommends \
                 gridengine-master gridengine-exec gridengine-client; }; } >&2 \
        || die "apt-get could not install Grid Engine"
fi
export DEBIAN_FRONTEND=noninteractive
COMMON=$SGE_ROOT/$SGE_CELL/common
[ -f "$COMMON/act_qmaster" ] || die "$COMMON/act_qmaster is missing: the package did not create the cell"
echo "$HOST" > "$COMMON/act_qmaster"
if [ "$(getent hosts "$HOST" | awk '{print $1; exit}')" = 127.0.0.1 ] && ! grep -qw "$HOST" "$COMMON/host_aliases" 2>/dev/null; then
    echo "$HOST localhost" >> "$COMMON/host_aliases"
fi
mkdir -p "$RUN_DIR"

running() { pgrep -x "$1" >/dev/null 2>&1; }

# --- master --------------------------------------------------------------------
if ! running sge_qmaster; then
    log "starting sge_qmaster"
    /usr/sbin/sge_qmaster
    echo "sge_qmaster $(pgrep -x sge_qmaster | head -n1)" >> "$RUN_DIR/started"
fi
for _ in $(seq 1 "$TIMEOUT"); do qconf -sh >/dev/null 2>&1 && break; sleep 1; done
qconf -sh >/dev/null 2>&1 || die "sge_qmaster does not answer (see /var/spool/gridengine/qmaster/messages)"

qconf -sh 2>/dev/null | grep -qx "$HOST" || qconf -ah "$HOST" >&2
qconf -ss 2>/dev/null | grep -qx "$HOST" || qconf -as "$HOST" >&2
if ! qconf -sel 2>/dev/null | grep -qx "$HOST"; then
    printf 'hostname %s\nload_scaling NONE\ncomplex_values NONE\nuser_lists NONE\nxuser_lists NONE\nprojects NONE\nxprojects NONE\nusage_scaling NONE\nreport_variables NONE\n' \
        "$HOST" > "$RUN_DIR/exechost"
    qconf -Ae "$RUN_DIR/exechost" >&2
fi
# Root may run jobs (the tests run as root); a quick scheduler for tests.
config_set() {  # config_set <object flag> <key> <value>: qconf -m<x> through a sed "editor"
    printf '#!/bin/sh\nsed -i -E "s|^%s[[:space:]].*|%s %s|" "$1"\n' "$2" "$2" "$3" > "$RUN_DIR/editor"
    chmod +x "$RUN_DIR/editor"
    EDITOR="$RUN_DIR/editor" qconf "$1" >/dev/null 2>&1 || true
}
qconf -sconf global | grep -Eq '^min_uid[[:space:]]+0$' || config_set -mconf min_uid 0
qconf -sconf global | grep -Eq '^min_gid[[:space:]]+0$' || config_set -mconf min_gid 0
qconf -ssconf | grep -Eq '^schedule_interval[[:space:]]+0:0:1$' || config_set -msconf schedule_interval 0:0:1

# --- execd ---------------------------------------------------------------------
if ! running sge_execd; then
    # Jobs an earlier execd of this test install had taken when it died stay in state "t"
    # holding their slots forever: they are orphans, deleted before a new execd starts.
    stuck=$(qstat -u '*' -s r 2>/dev/null | awk 'NR > 2 && $5 ~ /^t/ {print $1}' | sort -u)
    [ -z "$stuck" ] || { log "deleting jobs stuck in transfer by a dead execd: $stuck"; qdel -f $stuck >&2 || true; }
    log "starting sge_execd"
    /usr/sbin/sge_execd
    echo "sge_execd $(pgrep -x sge_execd | head -n1)" >> "$RUN_DIR/started"
fi

# --- host group, parallel environment, queue ------------------------------------
if ! qconf -shgrpl 2>/dev/null | grep -qx '@allhosts'; then
    printf 'group_name @allhosts\nhostlist %s\n' "$HOST" > "$RUN_DIR/hgrp"
    qconf -Ahgrp "$RUN_DIR/hgrp" >&2
fi
if ! qconf -spl 2>/dev/null | grep -qx smp; then
    printf 'pe_name smp\nslots 8\nuser_lists NONE\nxuser_lists NONE\nstart_proc_args /bin/true\nstop_proc_args /bin/true\nallocation_rule $pe_slots\ncontrol_slaves FALSE\njob_is_first_task TRUE\nurgency_slots min\naccounting_summary FALSE\nqsort_args NONE\n' \
        > "$RUN_DIR/pe"
    qconf -Ap "$RUN_DIR/pe" >&2
fi
if ! qconf -sql 2>/dev/null | grep -qx all.q; then
    qconf -sq | sed -E -e 's/^qname .*/qname all.q/' -e 's/^hostlist .*/hostlist @allhosts/' \
        -e 's/^slots .*/slots 4/' -e 's/^pe_list .*/pe_list smp/' -e 's|^shell .*|shell /bin/bash|' \
        -e 's/^notify .*/notify 00:00:10/' > "$RUN_DIR/queue"
    qconf -Aq "$RUN_DIR/queue" >&2
fi
qmod -cq all.q >/dev/null 2>&1 || true   # clear an error state left by an earlier run

for _ in $(seq 1 "$TIMEOUT"); do usable_queue && break; sleep 1; done
usable_queue || die "no queue instance takes jobs: $(qstat -f 2>&1 | tr '\n' ';')"

# --- smoke job -------------------------------------------------------------------
out=$RUN_DIR/smoke.out
rm -f "$out"
job=$(cd /tmp && echo 'echo smoke-ok' | qsub -terse -cwd -j y -o "$out" -N gitexp-smoke -S /bin/bash) \
    || die "qsub of the smoke job failed"
for _ in $(seq 1 "$TIMEOUT"); do grep -q smoke-ok "$out" 2>/dev/null && ready; sleep 1; done
die "smoke job $job did not run within ${TIMEOUT}s: $(qstat -j "$job" 2>&1 | grep -i -E 'reason|error' | tr '\n' ';')"
