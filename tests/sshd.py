"""The real sshd for tests: started by scripts/sshd-up.sh (idempotent), described by its env file.

In a test module::

    from sshd import ssh_host, ssh_transport  # noqa: F401  (pytest fixtures)

    def test_something(ssh_host, ssh_transport):
        ssh_transport.run(["true"])                 # an SshTransport with a private control dir
        ssh_host.kill_master(ssh_transport)         # drop its connection, as a network would

``ssh_host`` skips the test with the reason when sshd cannot be started (not root and no
openssh-server, ...), except when CI=true: there it fails, so a broken setup is never green.
"""
from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import pytest

from gitexp.ssh_transport import SshTransport

ROOT = Path(__file__).resolve().parents[1]


def state_dir() -> str:
    return os.environ.get("GITEXP_SSHD_DIR") or f"/tmp/gitexp-sshd-{os.getuid()}"


def short_dir(prefix: str = "gxc-") -> str:
    """A private folder with a short path (ssh's control socket path must stay under ~104 bytes,
    which pytest's tmp_path does not)."""
    return tempfile.mkdtemp(prefix=prefix, dir="/tmp")


@dataclass(frozen=True)
class SshHost:
    alias: str
    config: str
    port: int
    user: str
    key: str
    state_dir: str

    def transport(self, control_dir: Optional[str] = None, **options: object) -> SshTransport:
        return SshTransport(self.alias, ssh_config=self.config, control_dir=control_dir or short_dir(),
                            **options)  # type: ignore[arg-type]

    def ssh_argv(self, *args: str) -> List[str]:
        """Plain ssh to the test host, without any master connection."""
        return ["ssh", "-F", self.config, "-o", "ControlMaster=no", "-o", "ControlPath=none", self.alias, *args]

    def kill_master(self, transport: SshTransport, sig: int = signal.SIGKILL) -> int:
        """Kill the transport's master connection process (SIGKILL: the TCP connection drops at
        once, as when a laptop goes to sleep); waits until it is gone and returns its pid."""
        pid = transport.master_pid()
        assert pid is not None, "no master connection to kill"
        os.kill(pid, sig)
        deadline = time.time() + 10
        while time.time() < deadline:
            if not _running(pid):
                return pid
            time.sleep(0.05)
        raise AssertionError(f"master {pid} still alive after signal {sig}")


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphaned master waits for pid 1 to reap it)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def read_env_file(path: str) -> Dict[str, str]:
    values: Dict[str, str] = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            name, sep, value = line.rstrip("\n").partition("=")
            if sep:
                values[name] = value
    return values


@functools.lru_cache(maxsize=None)
def start_sshd() -> Tuple[Optional[SshHost], str]:
    """Runs sshd-up.sh once per test session; (host, "") or (None, why not)."""
    script = ROOT / "scripts" / "sshd-up.sh"
    try:
        proc = subprocess.run([str(script)], check=False, capture_output=True, text=True, timeout=300,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"scripts/sshd-up.sh could not run: {exc}"
    if proc.returncode != 0:
        tail = " ".join(proc.stderr.strip().splitlines()[-3:])
        return None, f"scripts/sshd-up.sh exited {proc.returncode}: {tail}"
    env = read_env_file(os.path.join(state_dir(), "env"))
    return SshHost(alias=env["GITEXP_SSHD_HOST"], config=env["GITEXP_SSHD_CONFIG"],
                   port=int(env["GITEXP_SSHD_PORT"]), user=env["GITEXP_SSHD_USER"],
                   key=env["GITEXP_SSHD_KEY"], state_dir=env["GITEXP_SSHD_DIR"]), ""


@pytest.fixture(scope="session")
def ssh_host() -> SshHost:
    host, reason = start_sshd()
    if host is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but the test sshd is not available: {reason}")
        pytest.skip(f"no test sshd: {reason}")
    return host


@pytest.fixture
def ssh_transport(ssh_host: SshHost) -> Iterator[SshTransport]:
    """An SshTransport to the test sshd with its own control directory, closed afterwards."""
    folder = short_dir()
    transport = ssh_host.transport(control_dir=folder)
    try:
        yield transport
    finally:
        transport.close()
        shutil.rmtree(folder, ignore_errors=True)
