"""Recording and running ``git exp bisect``'s probes: in the foreground, through the local
queue, or on a run target.

A probe run is an ordinary experiment: GOOD's stored config on the probed commit's tracked
tree (a :class:`~gitexp.experiments.Snapshot` of that commit, never the working tree), made
with the helpers of :mod:`gitexp.experiments` and recorded by :class:`~gitexp.notes.Store`,
so ``log``, ``plot`` and ``compare`` show the search. A run recorded before (same commit,
same config hash, finished) is reused; one of this search still queued or running (an
earlier search stopped by Ctrl-C) is waited for instead of being made again.
"""
from __future__ import annotations

import os
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .bisect import Known, Launcher, Plan, Probe
from .config import ExperimentConfig
from .errors import GitExpError
from .experiments import Snapshot, commit_message, config_tree, initial_summary, make_experiments
from . import lifecycle
from .lifecycle import FINAL, Status
from .notes import Experiment, Store
from .repo import Repo

FINAL_NAMES = frozenset(str(s) for s in FINAL) | {"invalid"}


def snapshot_of(repo: Repo, commit: str) -> Snapshot:
    """The probed commit as a snapshot: its tracked tree only, no uncommitted edits."""
    tree = repo.tree_of(commit)
    return Snapshot(head=commit, tree=tree, dirty=False, submodules=repo.gitlinks(tree))


def record_one(repo: Repo, store: Store, snap: Snapshot, config: ExperimentConfig, plan: Plan) -> Experiment:
    """Commit one probe run on ``snap`` and record it ``created`` under a free name."""
    sha = repo.commit_tree(config_tree(repo, snap.tree, config), [snap.head], commit_message(config))
    summary = initial_summary(config, snap, Status.CREATED)
    summary["bisect"] = _provenance(plan)
    name = lifecycle.record_one(store, config.name, sha, summary)
    return Experiment(sha, name, summary)


def make_many(repo: Repo, store: Store, plan: Plan, wanted: Sequence[Tuple[str, List[ExperimentConfig]]],
              status: str) -> List[Experiment]:
    """Commits and first summaries of probe runs on several commits (not yet recorded)."""
    exps: List[Experiment] = []
    for commit, configs in wanted:
        made = make_experiments(repo, store, snapshot_of(repo, commit), configs, status)
        for exp in made:
            exp.summary["bisect"] = _provenance(plan)
        exps.extend(made)
    return exps


def _provenance(plan: Plan) -> Dict[str, Any]:
    return {"good": plan.good.sha, "bad": plan.bad.sha, "metric": plan.metric}


def wait_for_end(repo: Repo, store: Store, exps: List[Experiment], poll: float = 0.5,
                 refresh: Optional[Callable[[], None]] = None) -> List[Experiment]:
    """Poll the notes (and the runners' word on lost runs) until every run has ended; between
    polls ``refresh`` (a target's pull) brings notes from elsewhere."""
    from .status import live_statuses

    while True:
        notes = store.read_notes_json([e.sha for e in exps])
        current = [Experiment(e.sha, e.name, notes.get(e.sha, e.summary)) for e in exps]
        states = live_statuses(repo, current)
        for exp in current:
            status = states[exp.sha][0]
            if status == Status.LOST and exp.status != Status.LOST:
                exp.summary = {**exp.summary, "status": Status.LOST.value, "reason": states[exp.sha][1] or "lost"}
        if all(e.status in FINAL_NAMES for e in current):
            return current
        time.sleep(poll)
        if refresh is not None:
            refresh()


def _split(plan: Plan, probes: Sequence[Probe], known: Known
           ) -> Tuple[List[Tuple[str, List[ExperimentConfig]]], List[Experiment]]:
    """Per probe: reuse recorded runs; what is left to make (commit, configs); runs to wait for."""
    wanted: List[Tuple[str, List[ExperimentConfig]]] = []
    waiting: List[Experiment] = []
    for probe in probes:
        missing = []
        for config in plan.configs_for(probe.commit):
            found = known.find(probe.commit.sha, config)
            if found is None:
                missing.append(config)
            else:
                probe.runs.append(found)
                if found.status != Status.FINISHED:
                    waiting.append(found)
        probe.reused = not missing and not any(e.status != Status.FINISHED for e in probe.runs)
        if missing:
            wanted.append((probe.commit.sha, missing))
    return wanted, waiting


def _fill(probes: Sequence[Probe], ended: Sequence[Experiment], made: Sequence[Experiment]) -> None:
    """Put the ended runs in their probes (the new ones by the commit they were made on)."""
    by_sha = {e.sha: e for e in ended}
    for probe in probes:
        probe.runs = [by_sha.get(e.sha, e) for e in probe.runs]
        probe.runs += [by_sha[e.sha] for e in made if e.summary.get("parent") == probe.commit.sha]


class Foreground(Launcher):
    """One probe at a time, run by the executor in this process (output to the run's log)."""

    def __init__(self, repo: Repo, store: Store) -> None:
        self.repo, self.store = repo, store

    def run_round(self, plan: Plan, probes: Sequence[Probe], known: Known) -> None:
        from .runners.local import LocalRunner

        wanted, waiting = _split(plan, probes, known)
        ended = wait_for_end(self.repo, self.store, waiting) if waiting else []
        made: List[Experiment] = []
        runner = LocalRunner(self.repo, self.store)
        for commit, configs in wanted:
            snap = snapshot_of(self.repo, commit)
            for config in configs:
                exp = record_one(self.repo, self.store, snap, config, plan)
                try:
                    runner.run_foreground(exp, echo=False)
                except GitExpError:
                    pass  # recorded failed with the reason by the executor: the probe is skipped
                exp.summary = self.store.summary(exp.sha)
                made.append(exp)
                if exp.status == Status.KILLED:  # Ctrl-C: no further run of this round
                    _fill(probes, ended + made, made)
                    return
        _fill(probes, ended + made, made)


class Queued(Launcher):
    """A round's probes recorded on the local queue in one transaction, run by a worker.

    ``jobs``: a worker of this search's own (``--jobs``, only its group) runs them all at
    once; None: the machine's default worker runs them (``--queue``), as many at a time as
    it is set to.
    """

    def __init__(self, repo: Repo, store: Store, jobs: Optional[int], poll: float = 0.5) -> None:
        self.repo, self.store, self.jobs, self.poll = repo, store, jobs, poll

    def run_round(self, plan: Plan, probes: Sequence[Probe], known: Known) -> None:
        from .queue import Queue

        wanted, waiting = _split(plan, probes, known)
        made: List[Experiment] = []
        if wanted:
            with self.repo.batch():
                made = make_many(self.repo, self.store, plan, wanted, Status.QUEUED)
                Queue(self.repo, self.store).record(made)
        if made or waiting:
            self._ensure_worker(plan)
        ended = wait_for_end(self.repo, self.store, waiting + made, self.poll)
        _fill(probes, ended, made)

    def _ensure_worker(self, plan: Plan) -> None:
        from .paths import runs_root
        from .runners.base import gitexp_argv
        from .runners.local import LocalRunner
        from .transport import LocalTransport

        if self.jobs is None:
            LocalRunner(self.repo, self.store).ensure_worker()
            return
        root = runs_root(self.repo)
        os.makedirs(root, exist_ok=True)
        argv = gitexp_argv("worker", "--until-empty", "--jobs", str(self.jobs), "--group", plan.group,
                           "--lock", os.path.join(root, f"worker-{plan.group}.lock"))
        LocalTransport().spawn(argv, cwd=self.repo.root, log_path=os.path.join(root, f"worker-{plan.group}.log"))


class OnTarget(Launcher):
    """A round's probes submitted to a run target's runner; its pull brings the results back.

    Waiting asks the runner for the round's states (one round trip to a host, one ``squeue``
    or ``qstat``) every ``delay`` seconds, from 0.2 s doubling up to ``poll``, and pulls once
    they have all ended there: a short probe is answered within a fraction of a second, a long
    one costs a round trip every ``poll`` seconds, and nothing is pulled while nothing ended.
    """

    def __init__(self, repo: Repo, store: Store, target_name: str, poll: float = 5.0) -> None:
        from .runners import runner_for_target
        from .targets import get_target

        self.repo, self.store, self.poll = repo, store, poll
        self.target = get_target(repo, target_name)
        self.runner = runner_for_target(repo, store, self.target)

    def run_round(self, plan: Plan, probes: Sequence[Probe], known: Known) -> None:
        from .runners.base import Made

        wanted, waiting = _split(plan, probes, known)
        made: List[Experiment] = []
        if wanted:
            with self.repo.batch():
                made = make_many(self.repo, self.store, plan, wanted, self.runner.INITIAL_STATUS)
                configs = [c for _, cs in wanted for c in cs]
                made = self.runner.submit(Made(made, configs, {}))
        self._until_ended_there(waiting + made)
        ended = wait_for_end(self.repo, self.store, waiting + made, self.poll, self._pull)
        _fill(probes, ended, made)

    def _until_ended_there(self, exps: Sequence[Experiment], first: float = 0.2) -> None:
        """Wait until the target says every run has ended (then one pull brings them all)."""
        if not self.runner.asks_another_host():
            return  # its runs write this repository's notes: wait_for_end reads them
        delay = first
        pending = [e for e in exps if e.status not in FINAL_NAMES]
        while pending:
            states = self.runner.states(pending)
            pending = [e for e in pending if states[e.sha][0] not in FINAL_NAMES]
            if pending:
                time.sleep(delay)
                delay = min(delay * 2, self.poll)
        self._pull()

    def _pull(self) -> None:
        if self.target.host:
            from .runners.ssh import pull_with_targets

            pull_with_targets(self.repo, [self.target.name])
