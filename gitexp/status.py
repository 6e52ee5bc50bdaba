"""Live status of many experiments at once: recorded status merged with what runners know.

Experiments are grouped by the runner that answers for them (``gitexp.runners.group``) and
each group is asked once: local runs by pid checks (a run whose executor died silently is
``lost``), Slurm runs by one ``squeue``, runs on an ssh target by one round trip there.
Runners that need another machine (``Runner.asks_another_host()``) are asked only with ``reach=True``
(``queue --on``, ``cancel``, ``logs -f``); otherwise their runs show their recorded status,
which ``git exp pull <target>`` brings up to date.
"""
from __future__ import annotations

import os
from typing import Any, Dict, Optional, Sequence, Tuple

from .evidence import process_alive
from .lifecycle import ACTIVE, FINAL, Status
from .notes import QUEUE_PREFIX, Experiment, Store
from .repo import Repo
from .runners import group

# The reason given with a status that a note claims for a run this repository does not hold
# (queued in another repository's queue, running in another repository on this host).
ELSEWHERE = "elsewhere"


def live_statuses(repo: Repo, exps: Sequence[Experiment], reach: bool = False) -> Dict[str, Tuple[str, Optional[str]]]:
    """sha -> (status, reason or None)."""
    out: Dict[str, Tuple[str, Optional[str]]] = {exp.sha: (exp.status, None) for exp in exps}
    queued = [e for e in exps if e.status == Status.QUEUED and not e.summary.get("target")]
    if queued:  # a note says queued, but this repository's queue does not hold it: a claim from elsewhere
        held = repo.refs(QUEUE_PREFIX)
        for exp in queued:
            if QUEUE_PREFIX + exp.sha not in held:
                out[exp.sha] = (Status.QUEUED, ELSEWHERE + ": not in this repository's queue (queued where it came from)")
    asked = [e for e in exps if e.status in ACTIVE or e.status == Status.CREATED]
    if not asked:
        return out
    store = Store(repo)
    for runner, members in group(repo, store, asked):
        if runner.asks_another_host() and not reach:
            continue
        out.update(runner.states(members))
    _read_again_when_lost(store, asked, out)
    from .endstate import settle_pending

    settle_pending(repo, asked, out)  # a lost run whose end is kept on disk (a full disk) is recorded now
    return out


def _read_again_when_lost(store: Store, exps: Sequence[Experiment], out: Dict[str, Tuple[str, Optional[str]]]) -> None:
    """A run found lost may have ended well a moment ago: its executor records the end, then
    exits, and that can fall between this command's read of the notes and its look at the
    process. Its note, read again now that the process is gone, says so: an end recorded there is
    taken (the experiment's summary too), so the run is not shown lost for an instant."""
    for exp in exps:
        if out[exp.sha][0] != Status.LOST or exp.status == Status.LOST:
            continue
        fresh = store.summary(exp.sha)
        if fresh and fresh.get("status") in FINAL:
            exp.summary.clear()
            exp.summary.update(fresh)
            out[exp.sha] = (exp.status, None)


def live_status(repo: Repo, exp: Experiment, reach: bool = False) -> Tuple[str, Optional[str]]:
    return live_statuses(repo, [exp], reach=reach)[exp.sha]


def is_gitexp_process(pid: Any, started: Any) -> bool:
    """Whether ``pid`` (started at ``started``) is a live gitexp process of this user.

    The pid comes from a note, and notes come from anyone: before gitexp signals a process
    it checks that it is one of its own (an executor, a worker, a foreground ``run``), not
    whatever process a note names.
    """
    if started is None or not process_alive(pid, started):
        return False
    import psutil  # here: a listing of ended runs does without it

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
