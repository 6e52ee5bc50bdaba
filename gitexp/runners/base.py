"""The runner interface: *how* experiments are scheduled, apart from *where* (a transport).

A runner is built for one run target (``gitexp.targets.Target``) and reaches it through one
transport (``gitexp.transport``): every command it runs and every file it writes goes
through ``self.transport``, never ``subprocess`` or ``open`` directly, so the same runner code
drives this machine and, over ssh, another one.

What each runner provides (see ``docs/runners.md``):

* ``submit(exps)``: record made experiments (commits exist, nothing recorded yet) and start
  them, all or nothing: if the scheduler refuses, nothing is recorded; if recording fails,
  nothing is left with the scheduler. Returns the experiments as recorded.
* ``cancel(exp)``: stop one run; a line for the user. ``stop_removed(exp)`` (``rm --force``):
  stop one run, writing no note; a :class:`Stopped` (the line, and whether an executor on
  this machine was signalled, so ``rm`` waits for it before removing its run directory).
* ``states(exps)``: live statuses of many experiments with one call to the target (one
  ``squeue``, one ssh round trip), whatever their number.
* ``stop_reason(...)`` (a class method, run on the node by the executor): why a run that was
  stopped by a signal stopped (``killed``, ``timeout``), or None.
* ``OPTIONS``: the settings of a run target that belong to this runner, with their kinds, so
  ``git exp remote add`` validates them with one line naming the key.

The handle of a submitted experiment is plain data in its summary note (``runner``,
``target``, and what the runner adds: ``slurm: {job, task}``, the executor's ``host``/``pid``),
so a runner rebuilt in another process finds it again from the note alone.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Dict, List, Optional, Sequence, Tuple

from ..config import ExperimentConfig
from ..notes import DETAILS_REF, Experiment, Store, dump_json
from ..lifecycle import Status
from ..repo import Repo
from ..transport import LocalTransport, Transport
from .options import Option as Option, check_option as check_option, parse_gpu_list as parse_gpu_list  # noqa: F401 - the runners' names for them

if TYPE_CHECKING:
    from ..targets import Target

__all__ = ["LocalTransport", "Transport", "Option", "Runner", "Made", "Stopped", "exec_argv", "gitexp_argv", "make"]

State = Tuple[str, Optional[str]]  # (status, reason or None)


@dataclass(frozen=True)
class Stopped:
    """What ``stop_removed`` did: a line for the user, and whether it signalled an executor on
    this machine (which then still has to exit before its run directory may go)."""

    line: str
    signalled_here: bool = False


@dataclass
class Made:
    """Experiments made from configs (commits written, nothing recorded) and what they share."""

    exps: List[Experiment]
    configs: List[ExperimentConfig]
    details: Dict[str, Any]  # the details note every experiment starts with (snapshot facts)
    max_parallel: Optional[int] = None
    per_exp: Dict[str, Dict[str, Any]] = field(default_factory=dict)  # sha -> more details

    def detail_notes(self, extra: Optional[Dict[str, Dict[str, Any]]] = None) -> Dict[Tuple[str, str], bytes]:
        """The first details note of each experiment (empty ones left out)."""
        notes = {}
        for exp in self.exps:
            data = {**self.details, **self.per_exp.get(exp.sha, {}), **((extra or {}).get(exp.sha) or {})}
            if data:
                notes[(DETAILS_REF, exp.sha)] = dump_json(data)
        return notes


def make(repo: Repo, store: Store, configs: List[ExperimentConfig], status: str,
         max_parallel: Optional[int] = None) -> Made:
    """Snapshot the working tree and write one commit per config, each with a free name."""
    from ..experiments import make_experiments, take_snapshot

    snap = take_snapshot(repo, configs[0].snapshot)
    exps = make_experiments(repo, store, snap, configs, status)
    return Made(exps, configs, snap.details(), max_parallel)


class Runner:
    """Submit experiments to one run target, ask their states, stop them.

    ``repo``/``store`` are this repository's; ``target`` the run target (its settings);
    ``transport`` where the runner's commands and files go (default: the target's).
    """

    name: ClassVar[str] = "?"
    OPTIONS: ClassVar[Dict[str, Option]] = {}
    # The summary key of a scheduler's job handle ("slurm", "sge"); "" when the runner has none.
    HANDLE: ClassVar[str] = ""
    # The status a submitted experiment is recorded with.
    INITIAL_STATUS: ClassVar[str] = Status.PENDING

    @classmethod
    def retries_on_local_queue(cls) -> bool:
        """Whether ``git exp queue retry`` may put this runner's experiments on the local queue
        (and so whether the local worker, not the executor on a node, runs ``auto_resume``)."""
        return False

    @classmethod
    def executor_claims(cls) -> bool:
        """Whether the executor's first note marks the run ``starting`` and names itself (a local
        run), or leaves the status to the scheduler (a Slurm job stays ``pending``)."""
        return False

    @classmethod
    def asks_another_host(cls) -> bool:
        """Whether :meth:`states` needs a round trip to another machine (log and show do without it)."""
        return False

    def __init__(self, repo: Repo, store: Store, target: "Optional[Target]" = None,
                 transport: Optional[Transport] = None) -> None:
        from ..targets import Target

        self.repo = repo
        self.store = store
        self.target = target or Target("", self.name)
        self.transport = transport or self.target.transport()
        self.warnings: List[str] = []  # said to the user after a submit

    @property
    def root(self) -> str:
        """The repository as the target sees it: this one, or the target's path on its host."""
        return self.target.path if self.target.host and self.target.path else self.repo.root

    def runs_dir(self) -> str:
        """The run root as the target sees it (there: the default under its git directory)."""
        if self.target.host and self.target.path:
            return self.target.path.rstrip("/") + "/.git/gitexp/runs"
        from ..paths import runs_root

        return runs_root(self.repo)

    # -- the interface ---------------------------------------------------------------------------
    def submit(self, made: Made) -> List[Experiment]:
        raise NotImplementedError

    def cancel(self, exp: Experiment) -> str:
        raise NotImplementedError

    def stop_removed(self, exp: Experiment) -> Stopped:
        """Stop the run of an experiment just removed (``rm --force``), writing no note."""
        raise NotImplementedError

    def states(self, exps: Sequence[Experiment]) -> Dict[str, State]:
        """sha -> (status, reason) for experiments of this target, in one call to it."""
        return {exp.sha: (exp.status, None) for exp in exps}

    @classmethod
    def stop_reason(cls, summary: Dict[str, Any], saw_warning: bool, signalled: bool) -> Optional[str]:
        """On the node, for the executor: why a run stopped by a signal stopped.

        ``signalled``: the executor itself got SIGTERM/SIGINT/SIGHUP. None: no evidence of a
        stop from outside (the program died of a signal of its own).
        """
        return Status.KILLED if signalled else None

    def follow_log(self, exp: Experiment, follow: bool) -> Optional[int]:
        """Print the run's output from where it runs; None when it is in this machine's run
        directory (the ``logs`` command reads it there)."""
        return None

    def submitted(self, exps: Sequence[Experiment]) -> str:
        """The line ``git exp run --on`` ends with."""
        return f"submitted {len(exps)} experiment(s) to {self.describe_target()}; see git exp queue --on {self.target.name}"

    def batch_key(self) -> Tuple[str, ...]:
        """Experiments whose runners share this key are asked in one ``states`` call."""
        return (self.name, self.transport.name)

    def describe_target(self) -> str:
        return self.target.name or self.name


def gitexp_argv(*args: str, python: Optional[str] = None) -> List[str]:
    """A gitexp command line, with ``python`` (default: this interpreter, which has gitexp)."""
    return [python or sys.executable, "-m", "gitexp", *args]


def exec_argv(sha: str, extra: Sequence[str] = (), python: Optional[str] = None) -> List[str]:
    """The executor's command line."""
    return gitexp_argv("_exec", sha, *extra, python=python)
