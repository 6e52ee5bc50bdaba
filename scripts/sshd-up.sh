#!/usr/bin/env bash
# sshd-up.sh - start a private OpenSSH server on 127.0.0.1 for gitexp's SSH transport tests.
#
# Everything lives in one state directory (default /tmp/gitexp-sshd-<uid>, override with
# GITEXP_SSHD_DIR): a generated host key and user key (ed25519), authorized_keys, sshd_config,
# a client config with the Host alias "gitexp-test", a known_hosts pinning the host key, the
# sshd pid file and log, and an env file the tests read:
#
#   GITEXP_SSHD_DIR GITEXP_SSHD_PORT GITEXP_SSHD_HOST GITEXP_SSHD_CONFIG GITEXP_SSHD_KEY
#   GITEXP_SSHD_USER GITEXP_SSHD_PID
#
# Clients then run:  ssh -F "$GITEXP_SSHD_CONFIG" gitexp-test true
#
# Idempotent: if our sshd is already running and answers, it only prints "ready".
# As root it installs openssh-server with apt-get when sshd is missing; as another user it
# works if sshd is installed (an unprivileged sshd can log in only as that same user).
#
# Exit codes:
#   0  ready; the last stdout line is "sshd-up: ready <alias> port <port> (<seconds>s)"
#   1  something failed (see stderr and <state dir>/sshd.log)
#   3  sshd is not installed and we are not root (callers treat it as "skip")
#
# Environment: GITEXP_SSHD_DIR (state dir), GITEXP_SSHD_PORT (a fixed port; else the first
# free one from 22222 on), GITEXP_SSHD_TIMEOUT (seconds to wait for it to answer, default 10).
# Stop it with scripts/sshd-down.sh.
set -euo pipefail

START=$(date +%s)
STATE=${GITEXP_SSHD_DIR:-/tmp/gitexp-sshd-$(id -u)}
ALIAS=gitexp-test
TIMEOUT=${GITEXP_SSHD_TIMEOUT:-10}
ME=$(id -un)
SSHD=/usr/sbin/sshd   # sshd must be started by its absolute path (it re-executes itself)

log() { echo "sshd-up: $*" >&2; }
die() { echo "sshd-up: ERROR: $*" >&2; exit 1; }
ready() { echo "sshd-up: ready $ALIAS port $(cat "$STATE/port") ($(( $(date +%s) - START ))s)"; exit 0; }

# Paths go unquoted into sshd_config / ssh_config lines: refuse the characters that would
# need quoting there rather than half-support them.
case "$STATE" in
    /*) ;;
    *) die "GITEXP_SSHD_DIR must be an absolute path, got '$STATE'" ;;
esac
case "$STATE" in
    *[[:space:]\"\'\\]*) die "GITEXP_SSHD_DIR must not hold spaces, quotes or backslashes: '$STATE'" ;;
esac

# --- is ours already up? ----------------------------------------------------------------
sshd_alive() {
    local pid
    [ -s "$STATE/sshd.pid" ] || return 1
    pid=$(cat "$STATE/sshd.pid" 2>/dev/null) || return 1
    [ -n "$pid" ] && [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = sshd ] || return 1
    # ours, not another sshd that got a recycled pid
    tr '\0' ' ' < /proc/"$pid"/cmdline 2>/dev/null | grep -qF -- "-f $STATE/sshd_config"
}

answers() {  # one real login over the client config, with a short timeout
    timeout "$TIMEOUT" ssh -F "$STATE/ssh_config" -o ConnectTimeout=5 "$ALIAS" true \
        </dev/null >/dev/null 2>"$STATE/last-ssh-error"
}

if sshd_alive && [ -s "$STATE/port" ] && [ -f "$STATE/ssh_config" ] && answers; then
    ready
fi

# --- install ------------------------------------------------------------------------------
if [ ! -x "$SSHD" ] || ! command -v ssh >/dev/null 2>&1 || ! command -v ssh-keygen >/dev/null 2>&1; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "sshd-up: openssh-server is not installed and we are not root; cannot start sshd" \
             "(install it: apt-get install openssh-server openssh-client)" >&2
        exit 3
    fi
    log "installing openssh-server openssh-client via apt-get"
    export DEBIAN_FRONTEND=noninteractive
    # Keep the package's postinst from starting the system sshd on port 22 (we want only ours).
    POLICY=/usr/sbin/policy-rc.d
    CREATED_POLICY=0
    if [ ! -e "$POLICY" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$POLICY"; chmod 755 "$POLICY"; CREATED_POLICY=1
    fi
    rc=0
    { apt-get update -q && apt-get install -y -q --no-install-recommends \
          -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
          openssh-server openssh-client; } >&2 || rc=$?
    [ "$CREATED_POLICY" = 1 ] && rm -f "$POLICY"
    [ "$rc" -eq 0 ] || die "apt-get install openssh-server failed (rc=$rc)"
    [ -x "$SSHD" ] || die "$SSHD still missing after install"
fi

# --- state directory and keys ---------------------------------------------------------------
# A predictable name under /tmp: it must be ours and private, or someone could plant keys.
if [ -e "$STATE" ] || [ -L "$STATE" ]; then
    [ -d "$STATE" ] && [ ! -L "$STATE" ] || die "$STATE exists and is not a directory"
    [ "$(stat -c %u "$STATE")" = "$(id -u)" ] || die "$STATE belongs to another user; set GITEXP_SSHD_DIR"
else
    mkdir -m 700 "$STATE"
fi
chmod 700 "$STATE"

[ -s "$STATE/host_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C gitexp-test-host -f "$STATE/host_ed25519"
[ -s "$STATE/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C gitexp-test-user -f "$STATE/id_ed25519"
cp "$STATE/id_ed25519.pub" "$STATE/authorized_keys"
chmod 600 "$STATE/authorized_keys"
# Pin the host key under the alias (HostKeyAlias), so the check is real and survives a new port.
echo "$ALIAS $(cut -d' ' -f1,2 "$STATE/host_ed25519.pub")" > "$STATE/known_hosts"

# Root's sshd chroots its pre-auth child there; an unprivileged sshd does not need it.
if [ "$(id -u)" -eq 0 ]; then
    mkdir -p /run/sshd && chmod 755 /run/sshd
fi

render_sshd_config() {  # render_sshd_config <port>
    cat <<EOF
# Generated by gitexp scripts/sshd-up.sh - a test sshd on loopback only.
ListenAddress 127.0.0.1
Port $1
HostKey $STATE/host_ed25519
PidFile $STATE/sshd.pid
# One key, one user: the generated key logs in only as $ME.
AuthorizedKeysFile $STATE/authorized_keys
AllowUsers $ME
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
# Root logs in over loopback with the key only (tests run as root in CI).
PermitRootLogin prohibit-password
# The state dir lives in /tmp; StrictModes would reject keys there.
StrictModes no
# No PAM: no system session setup, and it works without root.
UsePAM no
UseDNS no
PrintMotd no
PrintLastLog no
X11Forwarding no
# Tests multiplex many sessions over one master and open connections in parallel.
MaxSessions 64
MaxStartups 64:30:128
Subsystem sftp internal-sftp
LogLevel INFO
EOF
}

render_ssh_config() {  # render_ssh_config <port>
    cat <<EOF
# Generated by gitexp scripts/sshd-up.sh - use with: ssh -F $STATE/ssh_config $ALIAS
Host $ALIAS
  HostName 127.0.0.1
  Port $1
  User $ME
  IdentityFile $STATE/id_ed25519
  IdentitiesOnly yes
  HostKeyAlias $ALIAS
  UserKnownHostsFile $STATE/known_hosts
  StrictHostKeyChecking yes
  BatchMode yes
  LogLevel ERROR
EOF
}

stop_ours() {
    local pid
    sshd_alive || return 0
    pid=$(cat "$STATE/sshd.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
}

port_busy() {  # something already accepts connections there
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Starts sshd on <port>; returns 0 once it answers, 2 if the port was taken, 1 otherwise.
try_port() {
    local port=$1 pid
    render_sshd_config "$port" > "$STATE/sshd_config"
    render_ssh_config "$port" > "$STATE/ssh_config"
    echo "$port" > "$STATE/port"
    "$SSHD" -t -f "$STATE/sshd_config" || die "sshd rejects $STATE/sshd_config"
    : > "$STATE/sshd.log"
    # -D: stay in the foreground so a failed bind shows as an exit we can see; setsid detaches
    # it from this shell's session so it outlives the script and its terminal.
    setsid "$SSHD" -D -f "$STATE/sshd_config" -E "$STATE/sshd.log" </dev/null >/dev/null 2>&1 &
    pid=$!
    echo "$pid" > "$STATE/sshd.pid"
    local deadline=$(( $(date +%s) + TIMEOUT ))
    while [ "$(date +%s)" -le "$deadline" ]; do
        if ! kill -0 "$pid" 2>/dev/null; then
            grep -qi 'address already in use' "$STATE/sshd.log" && return 2
            return 1
        fi
        if port_busy "$port" && answers; then return 0; fi
        sleep 0.1
    done
    return 1
}

stop_ours
if [ -n "${GITEXP_SSHD_PORT:-}" ]; then
    PORTS=$GITEXP_SSHD_PORT
else
    PORTS=$(seq 22222 22299)
fi
started=0
for port in $PORTS; do
    if [ -z "${GITEXP_SSHD_PORT:-}" ] && port_busy "$port"; then continue; fi
    rc=0; try_port "$port" || rc=$?
    [ "$rc" -eq 0 ] && { started=1; break; }
    stop_ours
    [ "$rc" -eq 2 ] && { log "port $port is taken, trying the next"; continue; }
    die "sshd on port $port did not answer within ${TIMEOUT}s: $(cat "$STATE/last-ssh-error" 2>/dev/null)
$(tail -n 5 "$STATE/sshd.log" 2>/dev/null)"
done
[ "$started" = 1 ] || die "no free port among: $(echo $PORTS | head -c 60)..."

cat > "$STATE/env" <<EOF
GITEXP_SSHD_DIR=$STATE
GITEXP_SSHD_PORT=$(cat "$STATE/port")
GITEXP_SSHD_HOST=$ALIAS
GITEXP_SSHD_CONFIG=$STATE/ssh_config
GITEXP_SSHD_KEY=$STATE/id_ed25519
GITEXP_SSHD_USER=$ME
GITEXP_SSHD_PID=$(cat "$STATE/sshd.pid")
EOF
ready
