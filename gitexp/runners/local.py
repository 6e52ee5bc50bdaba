"""Local runner: the executor on this machine, in this process, detached, or by a queue worker.

``submit`` (``git exp run --on <local target>``, and what the far side of an ssh target does)
queues the experiments in one transaction and makes sure a detached worker runs them: a
worker started with ``--lock`` holds that lock file while it works, so starting one when one
is already running costs an interpreter start and nothing more (see ``Worker``).
"""
from __future__ import annotations

import json
import os
import signal
import socket
import time
from typing import Any, ClassVar, Dict, List, Optional, Sequence

import psutil

from ..lifecycle import Status
from ..errors import BadInput, GitExpError
from ..evidence import local_executor, local_program, ran_here
from ..experiments import effective_status, process_alive, read_exec_info
from ..notes import Experiment
from ..paths import run_paths, runs_root
from ..rundirs import lost_reason
from ..summary import printable
from .base import Made, Option, Runner, State, Stopped, exec_argv, gitexp_argv

STOP_WAIT = 10.0  # seconds cancel waits for the executor to record the end


class LocalRunner(Runner):
    name = "local"
    OPTIONS: ClassVar[Dict[str, Option]] = {
        "gpus": Option("gpus", "GPU indices the target's worker hands out, one per running experiment, e.g. 0,1"),
        "jobs": Option("count", "how many experiments the target's worker runs at once"),
        "setup": Option("list", "shell lines the target's worker runs first (e.g. 'source venv/bin/activate')"),
        "env": Option("env", "KEY=VALUE environment of the target's worker and its programs "
                             "(the config's env: still wins)"),
    }

    @classmethod
    def retries_on_local_queue(cls) -> bool:
        return True

    INITIAL_STATUS = Status.QUEUED

    @classmethod
    def executor_claims(cls) -> bool:
        return True

    # -- starting ---------------------------------------------------------------------------------
    def run_foreground(self, exp: Experiment, echo: bool = True) -> int:
        """Run it in this process; its output to the terminal too unless ``echo`` is False
        (``bisect``: the output goes to the run's log only)."""
        from ..executor import Executor

        return Executor(self.repo, self.store, exp.sha, echo=echo).execute()

    def start_detached(self, exp: Experiment) -> int:
        """The executor of a recorded experiment, in a new session; returns its pid."""
        paths = run_paths(self.repo, exp.sha)
        os.makedirs(paths.root, exist_ok=True)
        pid = self.transport.spawn(exec_argv(exp.sha), cwd=self.repo.root,
                                   log_path=os.path.join(paths.root, "executor.log"))
        _note_spawned(paths.exec_info, pid)
        # The log exists from now on, so `git exp logs -f` run right after this command
        # follows it instead of finding nothing yet.
        open(paths.log, "ab").close()
        return pid

    def submit(self, made: Made) -> List[Experiment]:
        """Queue the experiments (one transaction) and make sure a worker runs them."""
        from ..queue import Queue

        Queue(self.repo, self.store).record(made.exps, extra_notes=made.detail_notes())
        self.ensure_worker()
        return made.exps

    def submitted(self, exps: Sequence[Experiment]) -> str:
        return (f"queued {len(exps)} experiment(s) for {self.target.name or 'this machine'}; a detached worker "
                f"runs them; see git exp queue --on {self.target.name}")

    def ensure_worker(self) -> int:
        """Start a detached worker with this target's settings; it exits at once if another
        worker holds the target's lock, which then sees the new experiments (see Worker)."""
        label = self.target.name or "default"
        root = runs_root(self.repo)
        os.makedirs(root, exist_ok=True)
        args = ["worker", "--until-empty", "--jobs", str(int(self.target.get("jobs") or 1)),
                "--lock", os.path.join(root, f"worker-{label}.lock")]
        if self.target.get("gpus") is not None:
            args += ["--gpus", str(self.target.get("gpus"))]
        argv = gitexp_argv(*args)
        setup = self.target.list("setup")
        if setup:  # the target's own setup, then the worker in that shell (its programs inherit it)
            argv = ["bash", "--norc", "-c", "\n".join([*setup, 'exec "$@"']), "gitexp-worker", *argv]
        env = dict(item.split("=", 1) for item in self.target.list("env"))
        return self.transport.spawn(argv, cwd=self.repo.root, log_path=os.path.join(root, f"worker-{label}.log"),
                                    env=env or None)

    # -- state --------------------------------------------------------------------------------------
    def states(self, exps: Sequence[Experiment]) -> Dict[str, State]:
        from ..status import ELSEWHERE

        host = socket.gethostname()
        out: Dict[str, State] = {}
        for exp in exps:
            status = effective_status(self.repo, exp, host)
            claim = status == Status.RUNNING and exp.summary.get("host") == host and not ran_here(self.repo, exp.sha)
            why = lost_reason(run_paths(self.repo, exp.sha).root) if status == Status.LOST and exp.status != Status.LOST \
                and ran_here(self.repo, exp.sha) else None  # the run directory says why (gitexp.rundirs)
            out[exp.sha] = (status, f"{ELSEWHERE}: another repository's run on this host (no run directory here)"
                            if claim else why)
        return out

    # -- stopping -----------------------------------------------------------------------------------
    def _orphaned_program(self, exp: Experiment) -> Optional[int]:
        """The pid of a program whose executor died (SIGKILL, OOM) while it runs on, else None.

        Both pids come from this repository's run directory, never from the note.
        """
        if local_executor(self.repo, exp.sha):
            return None
        return local_program(self.repo, exp.sha)

    def _stop_orphan(self, exp: Experiment, pid: int) -> str:
        """Stop the program's process group (SIGTERM, SIGKILL after STOP_WAIT); record it killed
        with what its run directory holds."""
        from ..attempts import recovered
        from ..lifecycle import Status, transition

        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                self.transport.signal(pid, sig, group=True)
            except (ProcessLookupError, PermissionError):
                break
            deadline = time.time() + STOP_WAIT
            while time.time() < deadline and process_alive(pid, None):
                time.sleep(0.1)
            if not process_alive(pid, None):
                break
        fields, notes = recovered(self.repo, exp)
        fields.update(ended=time.time(), reason="cancelled; its executor had died and its program was stopped")
        transition(self.store, exp.sha, Status.KILLED, fields, extra=notes, message=f"gitexp: cancel {exp.name}")
        return f"stopped {exp.name}: its executor had died; its program (pid {pid}) was stopped (killed)"

    def cancel(self, exp: Experiment) -> str:
        """Queued: dropped (``cancelled``). Running here: SIGTERM to its executor (``killed``)."""
        from ..queue import CLAIMED, QUEUED, Queue

        queue = Queue(self.repo, self.store)
        status = self.states([exp])[exp.sha][0]
        if status == QUEUED and queue.cancel_queued(exp):
            return f"cancelled {exp.name} (was queued)"
        deadline = time.time() + 10
        while status in (QUEUED, CLAIMED) and time.time() < deadline:  # a worker is just starting it
            time.sleep(0.2)
            exp.summary = self.store.summary(exp.sha)
            status = self.states([exp])[exp.sha][0]
        if status != Status.RUNNING:
            raise BadInput(f"{exp.name} is {status}, not queued or running: nothing to cancel")
        if exp.summary.get("host") != socket.gethostname():
            raise GitExpError(f"{exp.name} runs on {printable(str(exp.summary.get('host')))}, not here; "
                              "cancel it there")
        if not ran_here(self.repo, exp.sha):
            raise GitExpError(f"{exp.name} was not started by this repository (its note says it runs on this host, "
                              "but there is no run directory of it here); nothing was signalled",
                              "cancel it in the repository that started it")
        orphan = self._orphaned_program(exp)
        if orphan:
            return self._stop_orphan(exp, orphan)
        if not self.signal_executor(exp):
            raise GitExpError(f"{exp.name}: pid {printable(str(exp.summary.get('pid')))} is not its gitexp "
                              "executor; nothing was signalled")
        for _ in range(int(STOP_WAIT * 10)):
            if self.store.summary(exp.sha).get("status") != Status.RUNNING:
                break
            time.sleep(0.1)
        return f"stopped {exp.name} ({self.store.summary(exp.sha).get('status')})"

    def stop_removed(self, exp: Experiment) -> Stopped:
        s = exp.summary
        if s.get("host") and s.get("host") != socket.gethostname():
            return Stopped(f"it runs on {printable(str(s.get('host')))}: stop its executor there")
        if not ran_here(self.repo, exp.sha):
            return Stopped("it was not started by this repository (no run directory here); nothing to stop")
        found = local_executor(self.repo, exp.sha)
        if found is None or not self.signal_executor(exp):
            return Stopped("its executor is not running here; nothing to stop")
        return Stopped(f"stopped its executor (pid {found[0]})", signalled_here=True)

    def signal_executor(self, exp: Experiment) -> bool:
        """SIGTERM to the run's executor, which stops the program and records ``killed``.

        The pid comes from this repository's run directory (``exec.json``), never from the
        note, and the process must prove it is that run's executor (``gitexp.evidence``).
        """
        found = local_executor(self.repo, exp.sha)
        if found is None:
            return False
        self.transport.signal(found[0], signal.SIGTERM)
        return True


def _note_spawned(exec_info: str, pid: int) -> None:
    """Name the spawned executor in exec.json before this command returns.

    The executor writes exec.json as its first act, but an interpreter takes a moment to
    start: if it is killed before then, the pid written here is what shows the ``created``
    run as lost rather than about to start.
    """
    if read_exec_info(exec_info).get("pid") == pid:
        return  # the executor was quicker
    started: Optional[float]
    try:
        started = psutil.Process(pid).create_time()
    except psutil.Error:
        started = None
    info: Dict[str, Any] = {"pid": pid, "pid_started": started, "host": socket.gethostname(), "started": None,
                            "child": None, "child_started": None}
    tmp = f"{exec_info}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(info, handle)
        if read_exec_info(exec_info).get("pid") != pid:
            os.replace(tmp, exec_info)
        else:
            os.unlink(tmp)
    except OSError:
        pass  # the executor's own exec.json will do
