#!/usr/bin/env bash
# sshd-down.sh - stop the test sshd that scripts/sshd-up.sh started (by its pid file, and only
# if that pid is still an sshd): SIGTERM, then SIGKILL after 5 s. Keeps the state directory
# (keys, configs), so the next sshd-up.sh is a fast restart. Sessions already open keep
# running: sshd's per-connection children are not ours to kill.
set -uo pipefail

STATE=${GITEXP_SSHD_DIR:-/tmp/gitexp-sshd-$(id -u)}
PIDFILE=$STATE/sshd.pid

[ -s "$PIDFILE" ] || { echo "sshd-down: not running (no $PIDFILE)"; exit 0; }
pid=$(cat "$PIDFILE" 2>/dev/null)
# Only an sshd running our config: never another one that got a recycled pid.
if [ -z "$pid" ] || [ "$(cat /proc/"$pid"/comm 2>/dev/null)" != sshd ] \
   || ! tr '\0' ' ' < /proc/"$pid"/cmdline 2>/dev/null | grep -qF -- "-f $STATE/sshd_config"; then
    echo "sshd-down: not running (stale $PIDFILE)"
    rm -f "$PIDFILE" "$STATE/env"
    exit 0
fi
kill "$pid" 2>/dev/null
for _ in $(seq 1 50); do
    if ! kill -0 "$pid" 2>/dev/null; then
        rm -f "$PIDFILE" "$STATE/env"
        echo "sshd-down: stopped sshd ($pid)"
        exit 0
    fi
    sleep 0.1
done
kill -9 "$pid" 2>/dev/null
rm -f "$PIDFILE" "$STATE/env"
echo "sshd-down: killed sshd ($pid) with SIGKILL"
