"""The runner interface, and transports: *where* a command runs, apart from *how* it is scheduled."""
from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence

from ..notes import Experiment


@dataclass(frozen=True)
class Handle:
    """Plain data that finds a submitted experiment again: rebuilt from its summary note."""

    runner: str
    sha: str
    job_id: Optional[str] = None
    host: Optional[str] = None


@dataclass
class Transport:
    """Runs an argv on this machine. The SSH transport (a later runner) runs it on another host."""

    name: str = "local"

    def run(self, argv: Sequence[str], cwd: Optional[str] = None, input: Optional[bytes] = None,
            env: Optional[Mapping[str, str]] = None) -> subprocess.CompletedProcess:
        return subprocess.run(list(argv), cwd=cwd, input=input, capture_output=True,
                              env=dict(env) if env is not None else None)

    def spawn(self, argv: Sequence[str], cwd: str, log_path: str,
              env: Optional[Mapping[str, str]] = None) -> int:
        """Start argv detached from this terminal and session; returns its pid."""
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(list(argv), cwd=cwd, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    env=dict(env) if env is not None else None)
        return proc.pid


def gitexp_argv(*args: str) -> List[str]:
    """A gitexp command line, with this interpreter (the one gitexp is installed in)."""
    return [sys.executable, "-m", "gitexp", *args]


def exec_argv(sha: str, extra: Sequence[str] = ()) -> List[str]:
    """The executor's command line."""
    return gitexp_argv("_exec", sha, *extra)


@dataclass
class Runner:
    """Submit experiments, ask their state, cancel them. Subclasses per scheduling backend."""

    name: str
    transport: Transport = field(default_factory=Transport)

    def submit(self, exps: Sequence[Experiment]) -> List[Handle]:
        raise NotImplementedError

    def cancel(self, exp: Experiment) -> bool:
        raise NotImplementedError

    def states(self, exps: Sequence[Experiment]) -> Dict[str, str]:
        """sha -> scheduler state, for many experiments in one call where the backend allows."""
        return {}
