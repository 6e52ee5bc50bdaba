"""``git exp queue retry``: start ended experiments over as a new queued attempt of each."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, List, Optional, Sequence, Union

from ..attempts import find_attempt, make_attempt, supersede
from ..errors import BadInput, GitExpError
from ..evidence import ran_here
from ..lifecycle import RETRYABLE_ORDER, Status
from ..notes import Experiment, Store
from ..queue import Queue
from ..repo import Repo
from ..runners import runner_for
from ..status import live_statuses
from ..summary import printable



@dataclass(frozen=True)
class Retried:
    exp: Experiment
    new: Experiment  # the queued attempt


@dataclass(frozen=True)
class Skipped:
    """A lost run ``lost=True`` found that this repository did not execute: not retried here."""

    exp: Experiment
    why: str


@dataclass(frozen=True)
class NotRetried:
    """With ``lost=True`` and no ids: one that could not be queued (the rest go on)."""

    exp: Experiment
    error: GitExpError


RetryOutcome = Union[Retried, Skipped, NotRetried]


def retry(repo: Repo, store: Store, idents: Sequence[str], lost: bool = False,
          priority: Optional[int] = None) -> Iterator[RetryOutcome]:
    """Queue a new attempt of each named experiment, and with ``lost`` of every lost one that
    ran here and on the local queue. Named ones are all checked (retryable, local, run here)
    before anything is queued: :class:`BadInput` then. The outcomes come as they happen."""
    if not idents and not lost:
        raise BadInput("name the experiments to retry, or pass --lost", "e.g. git exp queue retry --lost")
    named = [find_attempt(store, i)[1] for i in idents]  # any attempt names its experiment
    live = live_statuses(repo, named)
    for exp in named:
        _check_retryable(repo, store, exp, live[exp.sha][0])
    return _retrying(repo, store, named, lost, priority)


def _check_retryable(repo: Repo, store: Store, exp: Experiment, status: str) -> None:
    if status not in RETRYABLE_ORDER:
        raise BadInput(f"{exp.name} is {status}; only {', '.join(RETRYABLE_ORDER)} experiments can be retried")
    runner = runner_for(repo, store, exp)
    if not runner.retries_on_local_queue():
        raise BadInput(f"{exp.name} ran on run target {runner.describe_target()}; the local queue does not take it",
                       f"start a new attempt there: git exp resume {exp.name} --on {runner.target.name or '<target>'} "
                       "(add --from-scratch to start over)")
    if not ran_here(repo, exp.sha):
        raise BadInput(elsewhere(exp), f"to run its code here anyway: git exp resume {exp.name} --from-scratch")


def _retrying(repo: Repo, store: Store, named: List[Experiment], lost: bool,
              priority: Optional[int]) -> Iterator[RetryOutcome]:
    targets = list(named)
    if lost:
        for found in _lost_ones(repo, store, named):
            if isinstance(found, Skipped):
                yield found
            else:
                targets.append(found)
    q = Queue(repo, store)
    for exp in targets:
        try:
            new = retry_attempt(repo, store, exp, q, priority)
        except GitExpError as exc:
            if named:
                raise
            yield NotRetried(exp, exc)  # --retry-lost: one that cannot be queued is said, and the rest go on
            continue
        yield Retried(exp, new)


def _lost_ones(repo: Repo, store: Store, named: Sequence[Experiment]) -> Iterator[Union[Experiment, Skipped]]:
    """Every lost experiment not named already that the local queue takes, or why it is skipped."""
    everything = store.experiments()
    statuses = live_statuses(repo, everything)
    for exp in everything:
        if statuses[exp.sha][0] != Status.LOST or any(t.sha == exp.sha for t in named):
            continue
        if not runner_for(repo, store, exp).retries_on_local_queue():
            continue
        if not ran_here(repo, exp.sha):
            yield Skipped(exp, elsewhere(exp))
            continue
        if pending(repo, exp) is not None:  # it ended: a full disk keeps its end, recorded once there is space
            yield Skipped(exp, "its end is kept in its run directory while the disk is full; it is recorded (never "
                               "run again) by the next git exp command once there is space, or git exp fsck --repair")
            continue
        yield exp


def pending(repo: Repo, exp: Experiment) -> object:
    from ..endstate import pending as kept_end

    return kept_end(repo, exp)


def elsewhere(exp: Experiment) -> str:
    """Why a run this repository did not execute is not retried here, and how to go on."""
    host = exp.summary.get("host") or (exp.summary.get("worker") or {}).get("host") or "another machine"
    target = exp.summary.get("target")
    how = f"git exp resume {exp.name} --on {target}" if isinstance(target, str) and target else \
        f"git exp resume {exp.name} --on <a target on {host}>, or in the repository that ran it"
    return printable(f"{exp.name} ran on {host}, not in this repository (it came with a pull): resume it there: {how}")


def retry_attempt(repo: Repo, store: Store, exp: Experiment, q: Queue, priority: Optional[int]) -> Experiment:
    """Queue a new attempt of ``exp`` (start over): its own commit, run directory and notes."""
    superseded = supersede(repo, store, exp, "a retry started over")
    current = Experiment(exp.sha, exp.name, superseded)
    new, _config = make_attempt(repo, store, current, "retry", Status.QUEUED)
    old_priority = (exp.summary.get("queue") or {}).get("priority", 0)
    q.record([new], priority if priority is not None else int(old_priority or 0))
    return new
