"""Local runner: the executor on this machine, in this process or detached in the background."""
from __future__ import annotations

import json
import os
import signal
import socket
from typing import List, Sequence

import psutil

from ..executor import Executor
from ..experiments import process_alive, read_exec_info
from ..notes import Experiment, Store
from ..paths import run_paths
from ..repo import Repo
from .base import Handle, Runner, exec_argv


class LocalRunner(Runner):
    def __init__(self, repo: Repo, store: Store) -> None:
        super().__init__(name="local")
        self.repo = repo
        self.store = store

    def run_foreground(self, exp: Experiment) -> int:
        return Executor(self.repo, self.store, exp.sha, echo=True).execute()

    def submit(self, exps: Sequence[Experiment]) -> List[Handle]:
        handles = []
        for exp in exps:
            paths = run_paths(self.repo, exp.sha)
            os.makedirs(paths.root, exist_ok=True)
            pid = self.transport.spawn(exec_argv(exp.sha), cwd=self.repo.root,
                                       log_path=os.path.join(paths.root, "executor.log"))
            _note_spawned(paths.exec_info, pid)
            # The log exists from now on, so `git exp logs -f` run right after this command
            # follows it instead of finding nothing yet.
            open(paths.log, "ab").close()
            handles.append(Handle("local", exp.sha, str(pid), socket.gethostname()))
        return handles

    def cancel(self, exp: Experiment) -> bool:
        """SIGTERM to the executor, which stops the program and records ``killed``."""
        summary = exp.summary
        if summary.get("host") != socket.gethostname():
            return False
        pid = summary.get("pid")
        if not process_alive(pid, summary.get("pid_started")):
            return False
        os.kill(int(pid), signal.SIGTERM)
        return True


def _note_spawned(exec_info: str, pid: int) -> None:
    """Name the spawned executor in exec.json before this command returns.

    The executor writes exec.json as its first act, but an interpreter takes a moment to
    start: if it is killed before then, the pid written here is what shows the ``created``
    run as lost rather than about to start.
    """
    if read_exec_info(exec_info).get("pid") == pid:
        return  # the executor was quicker
    try:
        started = psutil.Process(pid).create_time()
    except psutil.Error:
        started = None
    info = {"pid": pid, "pid_started": started, "host": socket.gethostname(), "started": None,
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
