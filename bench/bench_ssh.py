"""The cost of running on an ssh run target, against the test sshd of scripts/sshd-up.sh.

1. ``git exp run c.yaml --on <ssh target>`` of a trivial command (the check there, the git push,
   the far side's gitexp recording and queueing it, and starting its worker) against a local
   ``git exp run c.yaml --detach``; the target is at most 1 s more with connection sharing.
   The first ``--on`` opens the ssh master connection; the next ones reuse it.
2. ``git exp queue --on <target>`` with 500 experiments queued there: the ssh processes it starts
   (counted with a PATH wrapper around ssh; the master is already up) and its time.

Usage: python bench/bench_ssh.py [repeats]
Prints RESULT lines (medians of `repeats` runs).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List

from common import ROOT, gitexp_argv, scratch_repo

sys.path.insert(0, str(ROOT))
from gitexp.ssh_transport import SshTransport  # noqa: E402


def test_sshd() -> tuple:
    subprocess.run([str(ROOT / "scripts" / "sshd-up.sh")], check=True, stdout=subprocess.DEVNULL)
    state = os.environ.get("GITEXP_SSHD_DIR") or f"/tmp/gitexp-sshd-{os.getuid()}"
    with open(os.path.join(state, "env"), encoding="utf-8") as handle:
        env = dict(line.rstrip("\n").split("=", 1) for line in handle)
    return env["GITEXP_SSHD_HOST"], env["GITEXP_SSHD_CONFIG"]


def run(cwd: Path, *args: str, env: dict = None) -> float:
    start = time.perf_counter()
    subprocess.run(gitexp_argv(*args), cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env={**os.environ, **(env or {})})
    return time.perf_counter() - start


def settle() -> None:
    """Wait until no gitexp worker/executor or git gc of ours runs (they would share the CPUs)."""
    import psutil

    def busy() -> bool:
        for proc in psutil.process_iter(["cmdline"]):
            argv = proc.info["cmdline"] or []
            if any(word in argv for word in ("_exec", "worker", "gc")) and proc.pid != os.getpid():
                return True
        return False

    deadline = time.time() + 30
    while busy() and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(0.3)


def median(values: List[float]) -> float:
    values = sorted(values)
    return values[len(values) // 2]


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    host, config = test_sshd()
    os.environ["PYTHONPATH"] = str(ROOT)
    runtime = tempfile.mkdtemp(prefix="gxb-", dir="/tmp")
    os.environ["XDG_RUNTIME_DIR"] = runtime  # a private ssh master for this benchmark
    far = Path(tempfile.mkdtemp(prefix="gitexp-bench-far-"))
    python = far.parent / f"{far.name}-python"
    python.write_text(f"#!/bin/sh\nPYTHONPATH={ROOT} exec {sys.executable} \"$@\"\n")
    python.chmod(0o755)
    repo = scratch_repo({"c.yaml": "name: t\ncommand: echo hi\n"})
    run(repo, "remote", "add", "bench", "--host", host, "--ssh-config", config, "--path", str(far / "repo"),
        "--python", str(python))
    run(repo, "remote", "setup", "bench")
    try:
        cold = run(repo, "run", "c.yaml", "--on", "bench")  # opens the master
        on, detach = [], []
        for _ in range(repeats):
            settle()  # the last run, the far side's worker and git gc --auto finish first
            detach.append(run(repo, "run", "c.yaml", "--detach"))
            settle()
            on.append(run(repo, "run", "c.yaml", "--on", "bench"))
        print(f"RESULT run_on_ssh_s={median(on):.3f} run_detach_s={median(detach):.3f} "
              f"extra_s={median(on) - median(detach):.3f} first_on_ssh_s={cold:.3f} "
              f"(median of {repeats}; load {os.getloadavg()[0]:.2f})")

        sweep = "steps=" + ",".join(str(i) for i in range(500))
        (far / "repo" / "q.yaml").write_text("name: q\ncommand: echo {steps}\nparams: {steps: 1}\n")
        subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", "base"], cwd=far / "repo", check=True)
        run(far / "repo", "run", "q.yaml", "--queue", "--sweep", sweep)
        bindir = Path(tempfile.mkdtemp(prefix="gxb-bin-"))
        calls = bindir / "calls"
        (bindir / "ssh").write_text(f"#!/bin/sh\necho ssh >> {calls}\nexec {shutil.which('ssh')} \"$@\"\n")
        (bindir / "ssh").chmod(0o755)
        env = {"PATH": f"{bindir}:{os.environ['PATH']}"}
        run(repo, "queue", "--on", "bench", env=env)  # the master may need opening again
        calls.unlink(missing_ok=True)
        times = [run(repo, "queue", "--on", "bench", env=env) for _ in range(repeats)]
        per_call = len(calls.read_text().splitlines()) / repeats
        print(f"RESULT queue_on_500_s={median(times):.3f} ssh_invocations_per_queue_on={per_call:g} "
              f"(median of {repeats}; 500 queued there)")
    finally:
        SshTransport(host, ssh_config=config, control_dir=os.path.join(runtime, "gitexp-ssh")).close()
        time.sleep(1)
        for path in (repo, far, runtime):
            shutil.rmtree(path, ignore_errors=True)
        python.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
