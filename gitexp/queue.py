"""The durable queue: ``refs/exps-queue/<sha>`` per queued experiment, order in its note.

A queued experiment is the exact commit that will run. It survives reboots (it is a ref),
every worker on the machine sees it, and a worker claims it by deleting the queue ref with
compare-and-swap in the same transaction that records the claim: two workers can never
start the same experiment.
"""
from __future__ import annotations

import os
import socket
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import psutil

from .config import ExperimentConfig
from .errors import RefConflict
from .experiments import create_many
from .lifecycle import ACTIVE, OPEN, Status, record, transition
from .notes import QUEUE_PREFIX, Experiment, Store
from .repo import RefUpdate, Repo
from .values import Summary

QUEUED = Status.QUEUED
CLAIMED = Status.STARTING  # a worker's claim


def queue_ref(sha: str) -> str:
    return QUEUE_PREFIX + sha


def order_key(exp: Experiment) -> Any:
    queue = Summary.parse(exp.summary).queue
    return (-int(queue.get("priority", 0)), float(queue.get("enqueued", 0)), int(queue.get("seq", 0)), exp.name)


class Queue:
    def __init__(self, repo: Repo, store: Store) -> None:
        self.repo = repo
        self.store = store

    def enqueue(self, configs: List[ExperimentConfig], priority: int = 0) -> List[Experiment]:
        """Record the experiments and queue them in one transaction: all or nothing."""
        return create_many(self.repo, self.store, configs, QUEUED, self._queue_refs(priority))

    def record(self, exps: Sequence[Experiment], priority: int = 0,
               extra_notes: Optional[Mapping[Tuple[str, str], Optional[bytes]]] = None) -> None:
        """Record made experiments (commits written, names chosen) queued, in one transaction."""
        for exp in exps:
            exp.summary["status"] = QUEUED.value
            exp.summary.pop("creator", None)
        record(self.store, exps, self._queue_refs(priority), extra_notes=extra_notes)

    @staticmethod
    def _queue_refs(priority: int) -> Callable[[Experiment], List[RefUpdate]]:
        now = time.time()
        counter = iter(range(1 << 62))

        def queue_refs(exp: Experiment) -> List[RefUpdate]:
            exp.summary["queue"] = {"priority": priority, "enqueued": now, "seq": next(counter)}
            return [RefUpdate(queue_ref(exp.sha), exp.sha, None)]

        return queue_refs

    def queued_shas(self) -> List[str]:
        return [ref[len(QUEUE_PREFIX):] for ref in self.repo.refs(QUEUE_PREFIX)]

    def items(self, exps: Optional[Sequence[Experiment]] = None) -> List[Experiment]:
        """Queued experiments in the order workers take them: priority, then first in first out."""
        queued = set(self.queued_shas())
        if not queued:
            return []
        if exps is None:
            names = {sha: name for name, sha in self.store.experiment_refs().items()}
            notes = self.store.read_notes_json(list(queued))
            exps = [Experiment(sha, names.get(sha, sha[:10]), notes.get(sha, {})) for sha in queued]
        return sorted((e for e in exps if e.sha in queued), key=order_key)

    def claim(self, exp: Experiment, worker: Dict[str, Any]) -> bool:
        """Take a queued experiment for this worker; False if another worker took it first."""
        try:
            moved = transition(self.store, exp.sha, Status.STARTING,
                               {"worker": worker, "wait_reason": None, "claimed": time.time()},
                               refs=[RefUpdate(queue_ref(exp.sha), None, exp.sha)], message=f"gitexp: claim {exp.name}")
        except RefConflict:
            return False
        return moved is not None

    def note_waiting(self, exp: Experiment, reason: str) -> None:
        """Show why a queued experiment does not start yet (written only when it changes)."""
        if exp.summary.get("wait_reason") == reason:
            return
        exp.summary["wait_reason"] = reason

        def change(s: Dict[str, Any]) -> Optional[Dict[str, Any]]:
            if s.get("status") != QUEUED:
                return None
            return {**s, "wait_reason": reason}

        self.store.update_summary(exp.sha, change, message="gitexp: waiting")

    def cancel_queued(self, exp: Experiment) -> bool:
        try:
            moved = transition(self.store, exp.sha, Status.CANCELLED,
                               {"ended": time.time(), "reason": "cancelled while queued"},
                               refs=[RefUpdate(queue_ref(exp.sha), None, exp.sha)], message=f"gitexp: cancel {exp.name}")
        except RefConflict:
            return False  # a worker claimed it meanwhile
        return moved is not None

    def fail_queued(self, exp: Experiment, reason: str) -> bool:
        """Record a queued experiment that can never run ``failed`` and take it off the queue.

        One transaction: the status and the queue entry change together, and only if the
        entry is still there (False if a worker claimed it or someone cancelled it first).
        """
        try:
            moved = transition(self.store, exp.sha, Status.FAILED,
                               {"ended": time.time(), "reason": reason, "wait_reason": None},
                               refs=[RefUpdate(queue_ref(exp.sha), None, exp.sha)],
                               message=f"gitexp: cannot run {exp.name}")
        except RefConflict:
            return False
        return moved is not None


def worker_identity() -> Dict[str, Any]:
    me = psutil.Process()
    return {"host": socket.gethostname(), "pid": os.getpid(), "pid_started": me.create_time()}


class View:
    """What ``git exp queue`` lists: queued (in the order workers take them), active, recent."""

    def __init__(self, queued: List[Experiment], active: List[Experiment], done: List[Experiment],
                 states: Dict[str, Tuple[str, Optional[str]]]) -> None:
        self.queued, self.active, self.done, self.states = queued, active, done, states

    def status(self, exp: Experiment) -> str:
        return self.states[exp.sha][0]

    def items(self, kind: str) -> List[Dict[str, Any]]:
        """The rows of one part as plain data (``queue --format json``, the ssh agent)."""
        if kind == "queued":
            return [item(e, self.status(e), i + 1) for i, e in enumerate(self.queued)]
        return [item(e, self.status(e)) for e in (self.active if kind == "running" else self.done)]


def listing(repo: Repo, store: Store, exps: Sequence[Experiment], show_all: bool, reach: bool = False) -> View:
    """Queue, active and the last 10 ended experiments (all with ``show_all``), with live states."""
    from .status import live_statuses

    states = live_statuses(repo, exps, reach=reach)
    for exp in exps:
        if states[exp.sha][1]:
            exp.summary["reason"] = states[exp.sha][1]
    queued = Queue(repo, store).items(exps)
    in_queue = {e.sha for e in queued}  # listed once, in the queue (even if its note says otherwise)
    active = [e for e in exps if states[e.sha][0] in ACTIVE and e.sha not in in_queue]
    ended = [e for e in exps if states[e.sha][0] not in OPEN and e.sha not in in_queue]
    done = sorted(ended, key=_when_ended, reverse=True)
    return View(queued, active, done if show_all else done[:10], states)


def _when_ended(exp: Experiment) -> float:
    s = Summary.parse(exp.summary)
    return s.ended or s.created or 0


def item(exp: Experiment, status: str, position: Optional[int] = None) -> Dict[str, Any]:
    s = Summary.parse(exp.summary)
    return {"position": position, "id": exp.sha, "name": exp.name, "status": status,
            "priority": s.queue.get("priority", 0), "params": dict(s.params),
            "wait_reason": s.get("wait_reason"), "host": s.host, "reason": s.reason,
            "enqueued": s.queue.get("enqueued"), "group": s.group,
            "target": s.target, "runner": s.runner,
            "started": s.started or s.get("claimed"), "ended": s.ended,
            "worker_host": s.worker.get("host") if s.worker else None}
