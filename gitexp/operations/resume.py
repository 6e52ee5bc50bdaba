"""``git exp resume``: continue an experiment from a checkpoint (or from scratch) as a new attempt.

The new attempt is a commit on the experiment's branch whose parent is the current run (see
:mod:`gitexp.attempts`). :func:`resume` records it and, for a run target, hands it to the
target's runner; a run here is left ``created`` for the caller to start (in the foreground
or detached), a queued one waits for a worker.
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from .. import attempts
from ..config import parse_override
from ..errors import BadInput
from ..lifecycle import FINAL, Status, record
from ..notes import Experiment, Store
from ..repo import Repo
from ..runners.base import Made, Runner
from ..targets import Target
from .submit import Submitted, submit_made

Chain = List[Tuple[str, Dict[str, Any]]]


@dataclass(frozen=True)
class ResumeOptions:
    from_step: Optional[int] = None  # the checkpoint at this step (default: the latest)
    checkpoint: Optional[str] = None  # a checkpoint file on this machine no run recorded
    from_scratch: bool = False  # no checkpoint: start over
    params: Tuple[str, ...] = ()  # KEY=VALUE changes, parsed against the stored config
    on: Optional[str] = None  # a run target's name
    detach: bool = False  # will be started in the background (only checked here)
    queue: bool = False  # queue it for a worker

    def check(self) -> None:
        """BadInput for options that exclude each other (before anything is read or written)."""
        if self.from_scratch and self.from_step is not None:
            raise BadInput("--from and --from-scratch exclude each other", "give one of them")
        if self.from_scratch and self.checkpoint is not None:
            raise BadInput("--checkpoint and --from-scratch exclude each other", "give one of them")
        if self.checkpoint is not None and self.on:
            raise BadInput("--checkpoint names a file on this machine: leave out --on")
        if self.queue and (self.on or self.detach):
            raise BadInput("--queue runs it through the local queue: leave out --on and --detach")


@dataclass(frozen=True)
class Resumed:
    new: Experiment  # the new attempt, as recorded
    point: Optional[Dict[str, Any]]  # the checkpoint it continues from ({checkpoint, step}); None: from scratch
    submitted: Optional[Submitted] = None  # handed to a run target's runner
    queued: bool = False  # on the local queue; neither: recorded here, ``created``, to be started by the caller


def resume(repo: Repo, store: Store, ident: str, options: ResumeOptions) -> Resumed:
    """Make and record the new attempt of experiment ``ident`` (a name or any attempt's id)."""
    from ..storedconfig import load_experiment_config
    from ..targets import get_target

    options.check()
    chosen, current = attempts.find_attempt(store, ident)
    target = get_target(repo, options.on) if options.on else None
    config = load_experiment_config(repo, current.sha)
    values: Dict[str, Any] = dict(parse_override(text, config) for text in options.params)
    attempts.ensure_ended(repo, current, reach=True)
    chain = attempts.chain_of(store, current)
    found = None
    if current.status not in FINAL:
        found = attempts.recovered(repo, current)  # what a dead executor had not written
        chain[-1] = (current.sha, {**current.summary, **found[0]})
    upto = chain[:[sha for sha, _ in chain].index(chosen.sha) + 1]  # the chain up to the attempt named
    remote = _runner(repo, store, target)
    point = None if options.from_scratch else _resume_point(repo, store, upto, options, target, remote)
    superseded = attempts.supersede(repo, store, current, "a resume continues it", found)
    current = Experiment(current.sha, current.name, superseded)
    status = Status(remote.INITIAL_STATUS) if remote else Status.QUEUED if options.queue else Status.CREATED
    new, new_config = attempts.make_attempt(repo, store, current, "resume" if point else "retry", status,
                                            values, point)
    return _record(repo, store, new, new_config, point, remote, options.queue)


def _runner(repo: Repo, store: Store, target: Optional[Target]) -> Optional[Runner]:
    from ..runners import runner_for_target

    return runner_for_target(repo, store, target) if target is not None else None


def _resume_point(repo: Repo, store: Store, upto: Chain, options: ResumeOptions, target: Optional[Target],
                  remote: Optional[Runner]) -> Dict[str, Any]:
    over_ssh = target is not None and bool(target.host)
    point: Dict[str, Any] = attempts.resume_point(repo, store, upto, options.from_step, here=not over_ssh,
                                                  given=options.checkpoint)
    if over_ssh:
        assert remote is not None and target is not None
        check_there(remote, target, point)
    return point


def _record(repo: Repo, store: Store, new: Experiment, new_config: Any, point: Optional[Dict[str, Any]],
            remote: Optional[Runner], queue: bool) -> Resumed:
    if remote is not None:
        new.summary.pop("target", None)  # the runner records where it went
        new.summary.pop("runner", None)
        return Resumed(new, point, submitted=submit_made(remote, Made([new], [new_config], {})))
    if queue:
        from ..queue import Queue

        Queue(repo, store).record([new])
        return Resumed(new, point, queued=True)
    record(store, [new])
    return Resumed(new, point)


def check_there(runner: Runner, target: Target, point: Dict[str, Any]) -> None:
    """The checkpoint must exist on the target's host (one ``test -f`` over its ssh connection)."""
    proc = runner.transport.run(["test", "-f", point["checkpoint"]], timeout=60)
    if getattr(proc, "returncode", 1) != 0:
        raise BadInput(f"the checkpoint {point['checkpoint']} (step {point['step']}) does not exist on "
                       f"{target.name} ({target.host}); nothing was started",
                       f"copy it there (e.g. scp {shlex.quote(point['checkpoint'])} "
                       f"{target.host}:{shlex.quote(point['checkpoint'])}), or resume where it is")
