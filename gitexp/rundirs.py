"""Run directories on this machine: the throwaway worktree of a run, the executor's lock,
sweeping the worktrees that SIGKILLed executors left, and what a run directory says about a
run's end (the executor's own record of it, processes left behind, why a run is lost).

Every executor holds ``<run dir>/executor.lock`` (flock) while it runs; a run directory whose
lock is free and whose executor and program are both gone is stale, and its ``wt/`` goes
(``out/`` and the logs stay).
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import time
from typing import Any, Callable, Dict, List, Optional

from .errors import GitExpError
from .evidence import process_alive, read_exec_info
from .fileio import write_atomic
from .paths import run_paths, runs_root
from .repo import Repo
from .supervisor import marked_pids

LOCK_NAME = "executor.lock"  # held by the live executor of a run directory (flock)
SWEEP_EVERY = 3600.0  # an executor looks for stale worktrees at most this often


def prepare_worktree(repo: Repo, sha: str, wt: str, files: List[str], log_text: Callable[[str], None]) -> None:
    """Check commit ``sha`` out into ``wt`` (no git admin state to clean after a kill) and
    link each ``files`` entry (data, weights: what git does not hold) into it."""
    shutil.rmtree(wt, ignore_errors=True)
    os.makedirs(wt)
    repo.checkout_to(sha, wt)
    for entry in files:
        _link_entry(repo, wt, entry, log_text)


def _link_entry(repo: Repo, wt: str, entry: str, log_text: Callable[[str], None]) -> None:
    rel = os.path.normpath(entry)  # "data/" and "data" name the same directory
    source = os.path.abspath(rel if os.path.isabs(rel) else os.path.join(repo.root, rel))
    target = os.path.normpath(os.path.join(wt, os.path.basename(rel) if os.path.isabs(rel) else rel))
    if not target.startswith(wt + os.sep):
        raise GitExpError(f"files: {entry!r} would be linked at {target}, outside the run's directory {wt}; "
                          "nothing was run", "list paths inside the repository, or absolute paths")
    _link_into(wt, source, target, entry, log_text)


def _link_into(wt: str, source: str, target: str, entry: str, log_text: Callable[[str], None]) -> None:
    if not within(os.path.dirname(target), wt):  # through a symlink the commit holds
        raise GitExpError(f"files: {entry!r} would be linked through a symlink to "
                          f"{os.path.realpath(os.path.dirname(target))}, outside the run's directory; "
                          "nothing was run")
    if not os.path.lexists(target):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.symlink(source, target)
        return
    if os.path.isdir(target) and not os.path.islink(target) and os.path.isdir(source):
        # The commit holds part of this directory (say data/README): its files stay, and
        # what only the source has (the ignored data) is linked in beside them.
        for name in sorted(os.listdir(source)):
            _link_into(wt, os.path.join(source, name), os.path.join(target, name), entry, log_text)
        return
    rel = os.path.relpath(target, wt)
    log_text(f"gitexp: files: {rel} is in the experiment commit; the committed version is used\n")


def within(path: str, root: str) -> bool:
    """Whether ``path``, with the symlinks among its existing parts resolved, lies in ``root``."""
    probe = path
    while not os.path.lexists(probe) and os.path.dirname(probe) != probe:
        probe = os.path.dirname(probe)
    real, base = os.path.realpath(probe), os.path.realpath(root)
    return real == base or real.startswith(base + os.sep)


def try_lock(run_dir: str) -> Optional[int]:
    """The run directory's executor lock, or None while a live executor holds it."""
    try:
        fd = os.open(os.path.join(run_dir, LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except OSError:
        pass  # no locks on this filesystem: liveness is judged by pids alone
    return fd


def sweep_stale_worktrees(repo: Repo, force: bool = False) -> List[str]:
    """Remove the ``wt/`` of runs on this host whose executor and program are both gone.

    An executor removes its worktree however its run ends, except when it is SIGKILLed:
    this catches those. ``out/`` and the logs stay. Without ``force`` it runs at most once
    every SWEEP_EVERY seconds per runs root (executors call it; workers force it).
    """
    root = runs_root(repo)
    stamp = os.path.join(root, ".wt-swept")
    try:
        if not force and os.path.exists(stamp) and time.time() - os.path.getmtime(stamp) < SWEEP_EVERY:
            return []
        os.makedirs(root, exist_ok=True)
        with open(stamp, "a"):
            os.utime(stamp)
        entries = [e.path for e in os.scandir(root) if e.is_dir(follow_symlinks=False)]
    except OSError:
        return []
    return [run_dir for run_dir in entries if _remove_stale_worktree(run_dir)]


def _remove_stale_worktree(run_dir: str) -> bool:
    worktree = os.path.join(run_dir, "wt")
    if not os.path.isdir(worktree):
        return False
    fd = try_lock(run_dir)  # held by a live executor: not stale; held by us: none can start
    if fd is None:
        return False
    try:
        if not _is_stale(run_dir, worktree):
            return False
        shutil.rmtree(worktree, ignore_errors=True)
        return True
    finally:
        os.close(fd)


def _is_stale(run_dir: str, worktree: str) -> bool:
    info = read_exec_info(os.path.join(run_dir, "exec.json"))
    if not info:  # written first by every executor since; older ones: judge by age
        try:
            return time.time() - os.path.getmtime(worktree) > SWEEP_EVERY
        except OSError:
            return False
    if info.get("host") != socket.gethostname():
        return False  # a run on another machine sharing this directory: its business
    # An executor killed with SIGKILL may leave its program running in wt/: keep it then.
    return not process_alive(info.get("pid"), info.get("pid_started")) and \
        not process_alive(info.get("child"), info.get("child_started"))


# -- what is left of a run, and why it ended ----------------------------------------------------
END_NAME = "executor-end.json"  # the executor's own word on how it ended (or is ending)
EXECUTOR_LOG = "executor.log"  # a detached or worker-started executor's stderr


def leftovers(repo: Repo, sha: str) -> List[int]:
    """Live processes run ``sha``'s program started on this machine (its mark in ``exec.json``),
    its main process included: what keeps a run's slot busy after its executor is gone."""
    from .evidence import is_own_process

    info = read_exec_info(run_paths(repo, sha).exec_info)
    mark = info.get("mark")
    if info.get("host") != socket.gethostname() or not isinstance(mark, str):
        return []
    own = [pid for pid in marked_pids(mark, exclude=[info.get("pid") or 0]) if is_own_process(pid)]
    executor = info.get("pid")
    return [pid for pid in own if pid != executor]


def record_end(run_dir: str, what: str, detail: str, **extra: Any) -> None:
    """The executor's word on its end (``what``: program-ended, recorded, signal, exception,
    disk, killed), kept in the run directory where ``show`` finds it; best effort (a full disk)."""
    record = {"what": what, "detail": detail, "time": time.time(), "pid": os.getpid(), **extra}
    try:
        write_atomic(os.path.join(run_dir, END_NAME), json.dumps(record).encode())
    except OSError:
        pass


def lost_reason(run_dir: str) -> str:
    """Why a run whose executor is gone without recording an end is lost, from what its run
    directory holds: the executor's own record, its heartbeat, the end of its stderr."""
    info = read_exec_info(os.path.join(run_dir, "exec.json"))
    end = read_exec_info(os.path.join(run_dir, END_NAME))
    pid = info.get("pid")
    if end.get("what") in ("signal", "exception", "disk", "killed"):
        text = f"its executor (pid {end.get('pid', pid)}) {end.get('detail')}"
    elif end.get("what") == "program-ended":
        text = (f"its program had ended ({end.get('detail')}), but its executor (pid {end.get('pid', pid)}) "
                "died before it recorded the end")
    else:
        text = f"its executor (pid {pid}) died without a word (SIGKILL: the OOM killer, kill -9, or a reboot)"
    try:
        seen = os.path.getmtime(os.path.join(run_dir, "exec.json"))
        text += f"; last seen alive {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(seen))}"
    except OSError:
        pass
    last = _last_line(os.path.join(run_dir, EXECUTOR_LOG))
    if last:
        text += f"; its stderr ({os.path.join(run_dir, EXECUTOR_LOG)}) ends: {last[:200]}"
    return text


def _last_line(path: str) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, os.path.getsize(path) - 4096))
            lines = [line for line in handle.read().decode(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1].strip() if lines else ""


# -- what a run left in its output directory ----------------------------------------------------
MAX_OUTPUTS = 10_000  # listed by show on this machine
RECORDED_OUTPUTS = 200  # kept in the details note, for show on other machines


def list_outputs(outdir: str, limit: int = MAX_OUTPUTS) -> List[Dict[str, Any]]:
    """The files under ``outdir`` (path relative to it, size), sorted; at most ``limit``."""
    found: List[Dict[str, Any]] = []
    if not os.path.isdir(outdir):
        return found
    for base, dirs, files in os.walk(outdir):
        dirs.sort()
        if len(found) >= limit:
            break
        for name in sorted(files):
            full = os.path.join(base, name)
            try:
                size: Optional[int] = os.path.getsize(full)
            except OSError:
                size = None
            found.append({"path": os.path.relpath(full, outdir), "size": size})
    return sorted(found, key=lambda f: f["path"])[:limit]


def recorded_outputs(details: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The outputs a run's details note lists (written where it ran): checked, it is a claim."""
    items = details.get("outputs")
    out: List[Dict[str, Any]] = []
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and isinstance(item.get("path"), str):
            size = item.get("size")
            out.append({"path": item["path"], "size": size if isinstance(size, int) and not isinstance(size, bool)
                        and size >= 0 else None})
    return out[:RECORDED_OUTPUTS]

