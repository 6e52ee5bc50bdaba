"""The cost of a command over ssh: the first (handshake, a new master connection) and the next
ones (over the shared master), against the test sshd of scripts/sshd-up.sh (or any host).

Usage: python bench/bench_transport.py [repeats] [host [ssh_config]]
Without a host it starts/uses the test sshd (scripts/sshd-up.sh). Prints
RESULT first_s=... next_s=... nomux_s=... local_s=... (medians of `repeats` runs of `true`).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time

from common import ROOT, median_of

sys.path.insert(0, str(ROOT))
from gitexp.ssh_transport import SshTransport
from gitexp.transport import LocalTransport


def test_sshd() -> tuple:
    subprocess.run([str(ROOT / "scripts" / "sshd-up.sh")], check=True, stdout=subprocess.DEVNULL)
    state = os.environ.get("GITEXP_SSHD_DIR") or f"/tmp/gitexp-sshd-{os.getuid()}"
    with open(os.path.join(state, "env"), encoding="utf-8") as handle:
        env = dict(line.rstrip("\n").split("=", 1) for line in handle)
    return env["GITEXP_SSHD_HOST"], env["GITEXP_SSHD_CONFIG"]


def first_command(host: str, config: str) -> float:
    """A fresh control dir each time: no master, so this pays for TCP, key exchange, auth."""
    folder = tempfile.mkdtemp(prefix="gxb-", dir="/tmp")
    transport = SshTransport(host, ssh_config=config, control_dir=folder)
    start = time.perf_counter()
    transport.run(["true"])
    elapsed = time.perf_counter() - start
    transport.close()
    shutil.rmtree(folder)
    return elapsed


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    host, config = (sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None) if len(sys.argv) > 2 else test_sshd()
    firsts = sorted(first_command(host, config) for _ in range(repeats))
    first = firsts[len(firsts) // 2]
    folder = tempfile.mkdtemp(prefix="gxb-", dir="/tmp")
    shared = SshTransport(host, ssh_config=config, control_dir=folder)
    shared.run(["true"])
    nxt = median_of(repeats, lambda: shared.run(["true"]))
    shared.close()
    shutil.rmtree(folder)
    plain = ["ssh", *(["-F", config] if config else []), "-o", "BatchMode=yes", "-o", "ControlMaster=no",
             "-o", "ControlPath=none", host, "true"]
    nomux = median_of(repeats, lambda: subprocess.run(plain, check=True, stdin=subprocess.DEVNULL))
    local = median_of(repeats, lambda: LocalTransport().run(["true"]))
    print(f"RESULT first_s={first:.3f} next_s={nxt:.3f} nomux_s={nomux:.3f} local_s={local:.4f} "
          f"(median of {repeats}, host {host})")


if __name__ == "__main__":
    main()
