"""``git exp rm``: delete experiments (ref, notes, queue entry, run directory); with ``force``
a running one is removed too and its run stopped, so it writes no more results."""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from typing import Iterator, List, Optional, Sequence, Set, Tuple

from ..errors import BadInput
from ..evidence import local_executor, process_alive, verified_chain
from ..lifecycle import ACTIVE
from ..notes import Experiment, Store
from ..paths import run_paths
from ..repo import Repo
from ..runners.base import Stopped
from ..status import live_statuses


@dataclass(frozen=True)
class Removed:
    exp: Experiment
    stopped: Optional[Stopped]  # what stopping its run did; None when it was not running


def remove(repo: Repo, store: Store, idents: Sequence[str], force: bool = False,
           keep_files: bool = False) -> Iterator[Removed]:
    """Check everything first (settings, ids, running experiments without ``force``) and
    raise :class:`BadInput` before anything is removed; then remove one experiment at a
    time, yielding a :class:`Removed` for each."""
    from ..executor import settings_problems

    problems = settings_problems()  # GITEXP_KILL_GRACE is read when stopping: refuse before removing
    if problems:
        raise BadInput("; ".join(problems))
    exps = [store.find(ident) for ident in idents]  # all resolved before anything is removed
    live = {sha: state[0] for sha, state in live_statuses(repo, exps).items()}
    for exp in exps:
        if live[exp.sha] in ACTIVE and not force:
            raise BadInput(f"{exp.name} is {live[exp.sha]}",
                           f"stop it first (git exp cancel {exp.name}), or pass --force")
    return _removing(repo, store, [(exp, live[exp.sha] in ACTIVE) for exp in exps], keep_files)


def _removing(repo: Repo, store: Store, exps: Sequence[Tuple[Experiment, bool]],
              keep_files: bool) -> Iterator[Removed]:
    for exp, running in exps:
        store.remove(exp, own_attempts(repo, store, exp))
        stopped = stop_run(repo, store, exp) if running else None
        if not keep_files:
            shutil.rmtree(run_paths(repo, exp.sha).root, ignore_errors=True)
        yield Removed(exp, stopped)


def own_attempts(repo: Repo, store: Store, exp: Experiment) -> List[str]:
    """The earlier attempts of ``exp`` whose notes go with it.

    Only commits on its own first-parent line (the note's chain is a claim), and none that
    another experiment names or continues: a commit someone built on one of ours and pushed
    under another name can never take our notes with it.
    """
    earlier = verified_chain(repo, exp.sha, exp.summary)
    if not earlier:
        return []
    keep: Set[str] = set()
    for other in store.experiments():
        if other.name == exp.name:
            continue
        keep.add(other.sha)
        if other.summary.get("chain"):
            keep.update(verified_chain(repo, other.sha, other.summary))
    return [sha for sha in earlier if sha not in keep]


def stop_run(repo: Repo, store: Store, exp: Experiment) -> Stopped:
    """Stop a removed experiment's run through its runner, writing no note; wait (briefly) for
    an executor it signalled here to exit, so the run directory is not removed under it."""
    from ..executor import kill_grace
    from ..runners import runner_for

    executor = local_executor(repo, exp.sha)  # before it is signalled: this run's own executor, if any
    stopped = runner_for(repo, store, exp).stop_removed(exp)
    if stopped.signalled_here and executor:
        deadline = time.time() + kill_grace() + 5
        while process_alive(*executor) and time.time() < deadline:
            time.sleep(0.1)
    return stopped
