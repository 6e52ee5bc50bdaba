"""The run lifecycle: one status enum, the legal moves, and the one operation that makes them.

Every change of a run's ``status`` goes through :func:`transition`: it reads the summary
note, checks that the move is legal (:data:`MOVES`), writes the new summary with
compare-and-swap (with any extra notes and refs in the same transaction), and then tells
whoever listens (:func:`listen`): the executor's watchers, notifications. A final state is
never left: running an experiment again is a new *attempt* (:mod:`gitexp.attempts`), a new
run commit with a summary of its own.

``Store.update_summary`` refuses a change of ``status`` made any other way, so no module can
grow its own lifecycle beside this one.

Summary notes carry ``schema``: 1 for notes written before attempts existed (they read as
attempt 1 of a chain of one), :data:`SCHEMA` for new ones.
"""
from __future__ import annotations

import sys
import threading
from dataclasses import dataclass
from enum import Enum
from typing import Any, Callable, Dict, FrozenSet, Iterable, List, Mapping, Optional, Sequence, Tuple

from .repo import RefUpdate

SCHEMA = 2


class Status(str, Enum):
    CREATED = "created"  # recorded by a foreground or detached run, not yet started
    QUEUED = "queued"  # waits in the local queue (refs/exps-queue/<sha>)
    PENDING = "pending"  # handed to a scheduler (Slurm, Grid Engine), not yet started there
    STARTING = "starting"  # an executor (or a queue worker's claim) has it; the program is not running yet
    RUNNING = "running"
    FINISHED = "finished"  # exit code 0
    FAILED = "failed"  # non-zero exit, preflight refused, executor error
    KILLED = "killed"  # a signal or a cancel stopped it
    TIMEOUT = "timeout"  # the scheduler's time limit stopped it
    CANCELLED = "cancelled"  # stopped before it ever ran
    STOPPED = "stopped"  # a diagnostic rule stopped it (NaN, divergence, ...)
    LOST = "lost"  # its executor died without recording an end (written when a new attempt supersedes it)

    def __str__(self) -> str:
        return self.value

    @property
    def final(self) -> bool:
        return self in FINAL


FINAL: FrozenSet[Status] = frozenset({Status.FINISHED, Status.FAILED, Status.KILLED, Status.TIMEOUT,
                                      Status.CANCELLED, Status.STOPPED, Status.LOST})
ACTIVE: FrozenSet[Status] = frozenset({Status.PENDING, Status.STARTING, Status.RUNNING})
# Not ended: every state a run may still leave.
OPEN: FrozenSet[Status] = frozenset(Status) - FINAL
# The ends a run may be tried again from (a new attempt): all but success. In this order in messages.
RETRYABLE_ORDER: Tuple[Status, ...] = (Status.LOST, Status.FAILED, Status.KILLED, Status.CANCELLED, Status.TIMEOUT,
                                       Status.STOPPED)
RETRYABLE: FrozenSet[Status] = frozenset(RETRYABLE_ORDER)
# Sets that differ from those on purpose:
# a run an executor has on this machine, whose run directory holds live data (points, progress):
# a pending one has not reached an executor yet.
LIVE: FrozenSet[Status] = frozenset({Status.STARTING, Status.RUNNING})
# The states the local runner judges from this machine's evidence (experiments.effective_status),
# a dead one then reads as lost: queued and pending runs are judged by their queue or scheduler.
JUDGED_HERE: FrozenSet[Status] = frozenset({Status.CREATED, Status.STARTING, Status.RUNNING})
# Where each state may go. Staying in a non-final state is allowed (a field update with the
# same status, e.g. the executor taking over a worker's claim). Final states go nowhere.
MOVES: Dict[Status, FrozenSet[Status]] = {
    Status.CREATED: frozenset({Status.CREATED, Status.STARTING, Status.RUNNING, Status.QUEUED, Status.PENDING})
    | FINAL,
    Status.QUEUED: frozenset({Status.QUEUED, Status.STARTING, Status.PENDING, Status.CANCELLED, Status.FAILED,
                              Status.LOST}),
    Status.PENDING: frozenset({Status.PENDING, Status.STARTING, Status.RUNNING}) | FINAL,
    Status.STARTING: frozenset({Status.STARTING, Status.RUNNING}) | FINAL,
    Status.RUNNING: frozenset({Status.RUNNING}) | (FINAL - {Status.CANCELLED}),
    **{status: frozenset() for status in FINAL},
}
# Order of states in time, for the merge of two copies of one summary (gitexp.merge): the
# later state wins. ``lost`` is a conclusion drawn without word from the run: any real end beats it.
RANK: Dict[str, int] = {"created": 0, "queued": 1, "pending": 2, "starting": 3, "running": 4, "lost": 5,
                        **{s.value: 6 for s in FINAL if s is not Status.LOST}}


def parse(value: Any) -> Optional[Status]:
    """The Status of a note's ``status`` field; None for anything else (checked notes never have that)."""
    try:
        return Status(value)
    except ValueError:
        return None


def can_move(old: Optional[Status], new: Status) -> bool:
    """Whether a run in ``old`` (None: no status yet) may be recorded ``new``."""
    if old is None:
        return True
    return new in MOVES[old]


@dataclass(frozen=True)
class Change:
    """What listeners hear: run ``sha`` went from ``old`` to ``new``; ``summary`` is the new note."""

    sha: str
    old: Optional[Status]
    new: Status
    summary: Mapping[str, Any]


Listener = Callable[[Change], None]
_listeners: List[Listener] = []
_listeners_lock = threading.Lock()


def listen(listener: Listener) -> Callable[[], None]:
    """Hear every state change this process records; returns the function that stops it."""
    with _listeners_lock:
        _listeners.append(listener)

    def stop() -> None:
        with _listeners_lock:
            if listener in _listeners:
                _listeners.remove(listener)

    return stop


def announce(change: Change) -> None:
    """Tell every listener; one that fails is reported and never undoes the recorded change."""
    with _listeners_lock:
        listeners = list(_listeners)
    for listener in listeners:
        try:
            listener(change)
        except Exception as exc:  # noqa: BLE001 - a listener's bug must not fail the run
            print(f"gitexp: warning: a state-change listener failed: {type(exc).__name__}: {exc}",
                  file=sys.stderr, flush=True)


# -- record time: runs that get their first summary -----------------------------------------------
def record(store: Any, exps: Sequence[Any],
           extra_refs_for: Optional[Callable[[Any], List[RefUpdate]]] = None,
           extra_notes: Optional[Mapping[Tuple[str, str], Optional[bytes]]] = None) -> None:
    """Record new runs (``notes.Experiment``s, names chosen) in one transaction, then announce each.

    The record-time door beside :func:`transition`: a run's first status (``created``,
    ``queued``, ``pending``, or at once ``failed`` when its preflight refused it) is heard by
    the listeners as a change from no status (``Change.old`` None).
    """
    store.create_batch(exps, extra_refs_for, extra_notes=extra_notes, by_lifecycle=True)
    for exp in exps:
        _announce_new(exp.sha, exp.summary)


def record_one(store: Any, base_name: str, sha: str, summary: Dict[str, Any], extra_refs: Sequence[RefUpdate] = (),
               extra_notes: Optional[Mapping[Tuple[str, str], Optional[bytes]]] = None) -> str:
    """Record one new run under a free name from ``base_name`` (its name), then announce it."""
    name: str = store.create(base_name, sha, summary, extra_refs, extra_notes=extra_notes, by_lifecycle=True)
    _announce_new(sha, summary)
    return name


def restore(store: Any, sha: str, summary: Dict[str, Any], message: str) -> bool:
    """Give a recorded run whose summary note is gone a new one (``fsck --repair``); announced.

    False (nothing written) when a note appeared meanwhile: that one is kept.
    """
    done = store.update_summary(sha, lambda current: None if current else dict(summary), message=message,
                                moves_status=True)
    if not done:
        return False
    _announce_new(sha, done)
    return True


def _announce_new(sha: str, summary: Mapping[str, Any]) -> None:
    status = parse(summary.get("status", "created"))
    if status is not None:
        announce(Change(sha, None, status, summary))


def transition(store: Any, sha: str, to: Status, fields: Optional[Mapping[str, Any]] = None, *,
               only_from: Iterable[Status] = (), keep_if: Optional[Callable[[Dict[str, Any]], bool]] = None,
               extra: Optional[Mapping[Tuple[str, str], Optional[bytes]]] = None, refs: Sequence[RefUpdate] = (),
               message: Optional[str] = None, patience: float = 0.0,
               fields_from: Optional[Callable[[Dict[str, Any]], Mapping[str, Any]]] = None) -> Optional[Dict[str, Any]]:
    """Record run ``sha`` as ``to`` with ``fields``; the new summary, or None when not moved.

    Not moved (nothing written, nothing announced): the run has no summary (never recorded,
    or removed), its state is not in ``only_from`` (when given), ``keep_if`` says so, or the
    move is not legal (a final state is kept: the first recorded end wins).
    ``fields_from``: fields computed from the current summary (e.g. a counter).
    ``extra``/``refs``: more notes and ref updates in the same transaction (compare-and-swap:
    a ref that moved meanwhile raises RefConflict and nothing is written).
    """
    allowed = frozenset(only_from)
    seen: Dict[str, Optional[Status]] = {}

    def change(current: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        if not current:
            return None
        old = parse(current.get("status", "created"))
        if allowed and old not in allowed:
            return None
        if not can_move(old, to) or (keep_if is not None and keep_if(current)):
            return None
        seen["old"] = old
        new = {**current, **(fields or {})}
        if fields_from is not None:
            new.update(fields_from(current))
        new["status"] = to.value
        new["schema"] = max(SCHEMA, int(current.get("schema") or 1))
        return new

    result: Dict[str, Any] = store.update_summary(sha, change, extra=extra, refs=refs, message=message or f"gitexp: {to.value}",
                                  patience=patience, moves_status=True)
    if not result or "old" not in seen:
        return None
    old = seen["old"]
    if old is not to:
        announce(Change(sha, old, to, result))
    return result
