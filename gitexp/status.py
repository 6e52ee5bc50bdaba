"""Live status of many experiments at once: recorded status merged with what runners know.

Local runs: a run whose executor died silently is ``lost``. Slurm runs: one ``squeue``
call for all of them; a job that left the queue without a result is ``lost``/``failed``
with Slurm's reason.
"""
from __future__ import annotations

import os
import socket
from typing import Any, Dict, Optional, Sequence, Tuple

import psutil

from .errors import GitExpError
from .experiments import effective_status, process_alive
from .notes import Experiment
from .repo import Repo

OPEN = ("pending", "starting", "running")


def live_statuses(repo: Repo, exps: Sequence[Experiment]) -> Dict[str, Tuple[str, Optional[str]]]:
    """sha -> (status, reason or None)."""
    host = socket.gethostname()
    on_slurm = [e for e in exps if e.summary.get("runner") == "slurm" and e.status in OPEN]
    table = None
    error = None
    if on_slurm:
        from .runners.slurm import squeue_table

        try:
            table = squeue_table()
        except GitExpError as exc:
            error = str(exc)
    out: Dict[str, Tuple[str, Optional[str]]] = {}
    slurm_shas = {e.sha for e in on_slurm}
    for exp in exps:
        if exp.sha in slurm_shas:
            from .runners.slurm import job_of, slurm_status

            if table is None:
                out[exp.sha] = (exp.status, f"cannot ask Slurm: {error}")
                continue
            ref = job_of(exp.summary)
            state = table.get((ref.job, ref.task)) if ref else None
            out[exp.sha] = slurm_status(exp.status, state)
        else:
            out[exp.sha] = (effective_status(repo, exp, host), None)
    return out


def live_status(repo: Repo, exp: Experiment) -> Tuple[str, Optional[str]]:
    return live_statuses(repo, [exp])[exp.sha]


def is_gitexp_process(pid: Any, started: Any) -> bool:
    """Whether ``pid`` (started at ``started``) is a live gitexp process of this user.

    The pid comes from a note, and notes come from anyone: before gitexp signals a process
    it checks that it is one of its own (an executor, a worker, a foreground ``run``), not
    whatever process a note names.
    """
    if started is None or not process_alive(pid, started):
        return False
    try:
        proc = psutil.Process(int(pid))
        if hasattr(os, "getuid") and proc.uids().real != os.getuid():
            return False
        argv = proc.cmdline()
    except (psutil.Error, ValueError, OverflowError):
        return False
    # python -m gitexp ..., or the git-exp script (git exp ...); a worker's forked executors
    # keep the worker's command line
    return any(os.path.basename(part) in ("gitexp", "git-exp") for part in argv[:3])
