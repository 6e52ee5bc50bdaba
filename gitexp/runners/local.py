"""Local runner: the executor on this machine, in this process or detached in the background."""
from __future__ import annotations

import os
import signal
import socket
from typing import List, Sequence

from ..executor import Executor
from ..experiments import process_alive
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
