"""A run's end kept in its run directory until it is recorded: the full-disk path.

When the program has ended, the executor writes ``end.json`` (status, exit code, times, reason,
details) beside ``captured.jsonl`` and ``metrics.jsonl`` before it records the end in the notes.
On a full disk (ENOSPC, a quota, or git finding no space) it says at once on stderr and in
``executor.log`` that the disk is full, where the results are kept and that it waits; it tries
again every few seconds for ``GITEXP_FULL_DISK_WAIT`` seconds (600). If space comes back, the
end is recorded with every point. If not, the executor exits and leaves the end on disk: the
next gitexp command that lists or looks at the run (``log``, ``show``, ``queue``, ``status``
through :func:`settle_pending`) or ``git exp fsck --repair`` records it from there, with every
point; never by running the program again (``queue --retry-lost`` skips such a run).
"""
from __future__ import annotations

import errno
import json
import os
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, TypeVar

from . import history_file
from . import metrics as metrics_mod
from .errors import DiskFull, GitExpError
from .fileio import write_atomic
from .lifecycle import FINAL, JUDGED_HERE, Status, transition
from .notes import DETAILS_REF, METRICS_REF, Experiment, Store, dump_json
from .paths import RunPaths, run_paths
from .repo import Repo

END_STATE = "end.json"
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
RETRY_SECONDS = 2.0
FINAL_NAMES = tuple(s.value for s in FINAL)
UNENDED = JUDGED_HERE  # the states a run whose end is kept here can still be in
T = TypeVar("T")


class EndKept(GitExpError):
    """The disk stayed full: the run's end is kept in its run directory, not yet in the notes."""


def no_space(exc: BaseException) -> bool:
    return isinstance(exc, DiskFull) or (isinstance(exc, OSError) and exc.errno in NO_SPACE)


def until_space(action: Callable[[], T], deadline: float, say: Callable[[str], None], where: str) -> T:
    """``action()``, tried again every RETRY_SECONDS while the disk is full, until ``deadline``
    (time.monotonic()); the first failure is said at once. DiskFull once the deadline passed."""
    told = False
    while True:
        try:
            return action()
        except (OSError, DiskFull) as exc:
            if not no_space(exc):
                raise
            if time.monotonic() >= deadline:
                raise DiskFull(where) from exc
            if not told:
                told = True
                left = max(0.0, deadline - time.monotonic())
                say(f"gitexp: the disk is full ({exc}); the run's results are kept in {where} "
                    f"(end.json, captured.jsonl, metrics.jsonl); gitexp waits up to {left:.0f}s for space "
                    "to record them, else the next git exp command (or git exp fsck --repair) records them")
            time.sleep(RETRY_SECONDS)


RESERVE = 64 * 1024  # bytes end.json takes while a run goes, so its end fits on a full disk (removed once recorded)


def reserve(root: str) -> None:
    """Take room for end.json while there is space (best effort): at the end it is written in
    place, which needs no new blocks, so the end is kept even on a disk that filled up since."""
    try:
        with open(os.path.join(root, END_STATE), "wb") as handle:
            handle.write(b" " * RESERVE)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError:
        pass


def write_state(root: str, state: Mapping[str, Any]) -> None:
    """end.json, in the room :func:`reserve` took (then whole or not at all: a reader takes a
    half-written one for no state), else as a new file. OSError when it does not fit (a full disk)."""
    path = os.path.join(root, END_STATE)
    data = json.dumps(state, default=str).encode()
    if len(data) > RESERVE and isinstance(state.get("details"), dict):  # facts and the tail are the bulk
        details = {k: v for k, v in state["details"].items() if k not in ("facts", "log_tail")}
        data = json.dumps({**state, "details": details}, default=str).encode()
    try:
        size = os.path.getsize(path)
    except OSError:
        size = 0
    if 0 < len(data) <= size:
        with open(path, "r+b") as handle:
            handle.write(b" " * size)  # no state while it is written: a crash leaves none, never half
            handle.seek(0)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        return
    write_atomic(path, data, durable=True)


def clear(root: str) -> None:
    """The end is in the notes: its copy (and the room taken for it) goes."""
    try:
        os.unlink(os.path.join(root, END_STATE))
    except OSError:
        pass


def read_state(root: str) -> Optional[Dict[str, Any]]:
    try:
        with open(os.path.join(root, END_STATE), encoding="utf-8") as handle:
            state = json.load(handle)
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(state, dict) or state.get("status") not in FINAL_NAMES or not isinstance(state.get("fields"), dict):
        return None
    return state


def record(repo: Repo, store: Store, sha: str, paths: RunPaths, specs: Mapping[str, Any], status: str,
           fields: Dict[str, Any], details: Optional[Dict[str, Any]], records: Sequence[Dict[str, Any]],
           patience: float = 0.0, message: str = "gitexp: end") -> Optional[Dict[str, Any]]:
    """Record the end of ``sha`` with the history of its run directory (streamed: see
    :mod:`gitexp.history_file`); ``records``: points of metrics files. DiskFull when git stays
    out of space for ``patience`` seconds."""
    built = history_file.build(paths.metrics, paths.captured, records, specs, paths.root)
    try:
        notes: Dict[Tuple[str, str], Optional[bytes]] = {}
        if built.path:
            notes[(METRICS_REF, sha)] = history_file.write_blob(repo, built.path)
        fields = {**fields, "metrics": built.summaries, "curve": built.curve is not None}
        if details is not None:
            details = dict(details)
            curve = history_file.curve_field(built)
            if curve is not None:
                details[history_file.CURVE_KEY] = curve
            else:
                details.pop(history_file.CURVE_KEY, None)
            notes[(DETAILS_REF, sha)] = dump_json(details)
        return transition(store, sha, Status(status), fields, extra=notes, patience=patience, message=message)
    finally:
        built.remove()


def pending(repo: Repo, exp: Experiment) -> Optional[Dict[str, Any]]:
    """The end state kept in ``exp``'s run directory on this machine, when its note has not
    recorded an end (None otherwise)."""
    if exp.status not in UNENDED:
        return None
    return read_state(run_paths(repo, exp.sha, exp.summary).root)


def settle(repo: Repo, store: Store, exp: Experiment) -> Optional[str]:
    """Record the end kept on disk for a run whose executor is gone; its status, or None when
    there is none (or the disk is still full: then nothing changes)."""
    from .evidence import local_executor

    state = pending(repo, exp)
    if state is None or local_executor(repo, exp.sha):
        return None
    paths = run_paths(repo, exp.sha, exp.summary)
    specs = _metric_specs(repo, exp.sha)
    fields = {**state["fields"], "recorded_later": time.time()}
    details = state.get("details") if isinstance(state.get("details"), dict) else None
    kept = [r for r in state.get("points") or [] if isinstance(r, dict) and isinstance(r.get("metric"), str)]
    records = kept + metrics_mod.file_records(specs, paths.outdir)
    try:
        done = record(repo, store, exp.sha, paths, specs, state["status"], fields, details, records,
                      message=f"gitexp: {exp.name} ended (recorded from its run directory)")
    except (OSError, DiskFull) as exc:
        if no_space(exc):
            return None
        raise
    clear(paths.root)
    if done:
        exp.summary.clear()
        exp.summary.update(done)
    status: Optional[str] = state["status"]
    return status


def _metric_specs(repo: Repo, sha: str) -> Dict[str, Any]:
    """The stored config's metrics (goals, metrics files); {} when it cannot be read."""
    from .storedconfig import load_experiment_config

    try:
        return dict(load_experiment_config(repo, sha).metrics)
    except Exception:  # noqa: BLE001 - an unreadable config still keeps the API and regex points
        return {}


def settle_pending(repo: Repo, exps: Sequence[Experiment], statuses: Dict[str, Any]) -> List[str]:
    """Record the ends kept on disk of the runs found ``lost`` (``statuses``: sha -> (status,
    reason), updated); the names of those recorded."""
    store: Optional[Store] = None
    done = []
    for exp in exps:
        entry = statuses.get(exp.sha)
        if not entry or entry[0] != Status.LOST or exp.status not in UNENDED:
            continue
        if not os.path.exists(os.path.join(run_paths(repo, exp.sha, exp.summary).root, END_STATE)):
            continue
        store = store or Store(repo)
        status = settle(repo, store, exp)
        if status:
            statuses[exp.sha] = (status, None)
            done.append(exp.name)
    return done


def settle_all(repo: Repo, store: Store) -> List[str]:
    """``git exp fsck --repair``: record every end kept on disk whose executor is gone; a line each."""
    done = []
    for exp in store.experiments():
        if pending(repo, exp) is None:
            continue
        status = settle(repo, store, exp)
        if status:
            done.append(f"recorded {exp.name} ({exp.sha[:10]}) {status} from its run directory (its end was kept "
                        "there while the disk was full)")
    return done
