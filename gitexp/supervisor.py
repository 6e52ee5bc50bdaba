"""The processes of one run: which of them live, which take the time-limit warning, stopping
what the program left behind.

Every process a run's program starts inherits its environment, so the executor marks the
environment (:data:`MARK_VAR`, a value of its own, also kept in ``exec.json``) and a run's
processes are the live processes of this user whose starting environment carries the mark:
children that left the program's process group or session (``setsid``), double-forked
daemons, and a program whose executor was SIGKILLed. Reading ``/proc/<pid>/environ`` of every
process of the user takes a few milliseconds.

The time-limit warning (SIGUSR1) kills a process that does not handle it, so it goes only to
processes whose signal mask says they catch it (``SigCgt`` in ``/proc/<pid>/status``).
"""
from __future__ import annotations

import os
import signal
import time
import uuid
from typing import Dict, List, Optional, Sequence

import psutil

MARK_VAR = "GITEXP_RUN_MARK"
WARNING_MODES = ("auto", "always", "never")  # besides a signal name: see :func:`warning_signal`
WARNING_SIGNALS = ("SIGUSR1", "SIGUSR2", "SIGINT", "SIGTERM", "SIGHUP")


def new_mark(sha: str) -> str:
    return f"{sha}.{uuid.uuid4().hex[:12]}"


# -- which processes belong to a run ----------------------------------------------------------
def marked_pids(mark: str, exclude: Sequence[int] = ()) -> List[int]:
    """Live processes (not zombies) whose starting environment holds ``MARK_VAR=mark``."""
    if not mark or not os.path.isdir("/proc"):
        return []
    needle = f"{MARK_VAR}={mark}\0".encode()
    skip = {os.getpid(), *exclude}
    out: List[int] = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in skip:
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as handle:
                data = handle.read()
        except OSError:
            continue  # gone, or not ours
        if (data.startswith(needle) or b"\0" + needle in data) and _alive(int(name)):
            out.append(int(name))
    return sorted(out)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def describe(pids: Sequence[int], limit: int = 5) -> str:
    """``pid 123 (sleep 600), pid 124 (python worker.py)``: what each of them is."""
    parts = []
    for pid in pids[:limit]:
        try:
            argv = psutil.Process(pid).cmdline()
            what = " ".join(argv)[:80] if argv else psutil.Process(pid).name()
        except psutil.Error:
            what = "gone"
        parts.append(f"pid {pid} ({what})")
    if len(pids) > limit:
        parts.append(f"and {len(pids) - limit} more")
    return ", ".join(parts)


def commands(pids: Sequence[int]) -> List[Dict[str, object]]:
    """[{pid, command}] for the summary note (bounded)."""
    out: List[Dict[str, object]] = []
    for pid in pids[:20]:
        try:
            command = " ".join(psutil.Process(pid).cmdline())[:200]
        except psutil.Error:
            command = ""
        out.append({"pid": pid, "command": command})
    return out


def stop(pids: Sequence[int], grace: float) -> List[int]:
    """SIGTERM to each, SIGKILL to those alive after ``grace`` seconds; those that needed it."""
    for pid in pids:
        _kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [pid for pid in alive if _alive(pid)]
    for pid in alive:
        _kill(pid, signal.SIGKILL)
    return alive


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


# -- the time-limit warning ---------------------------------------------------------------------
def caught_mask(status_text: str) -> Optional[int]:
    """The ``SigCgt`` mask of a ``/proc/<pid>/status`` text (bit n-1 set: signal n is caught)."""
    for line in status_text.splitlines():
        if line.startswith("SigCgt:"):
            try:
                return int(line.split(":", 1)[1].strip(), 16)
            except ValueError:
                return None
    return None


def catches(pid: int, signum: int) -> bool:
    """Whether process ``pid`` has a handler for ``signum`` (its SigCgt mask says so)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as handle:
            mask = caught_mask(handle.read())
    except OSError:
        return False
    return mask is not None and bool(mask & (1 << (int(signum) - 1)))


def warning_targets(pid: int, signum: int) -> List[int]:
    """The processes of the program's tree that take the warning: the program's main process
    when it handles ``signum``, else the top-most descendants that do (the real trainer under
    a ``bash -c`` line), never their helpers below (data-loader workers inherit the handler)."""
    if catches(pid, signum):
        return [pid]
    try:
        children = psutil.Process(pid).children()
    except psutil.Error:
        return []
    out: List[int] = []
    for child in children:
        out += warning_targets(child.pid, signum)
    return out


def warning_signal(mode: str) -> Optional[signal.Signals]:
    """The signal a mode sends regardless of handlers: None for ``auto``/``never``."""
    if mode == "always":
        return signal.SIGUSR1
    if mode in WARNING_SIGNALS:
        return signal.Signals[mode]
    return None


def forward_warning(pid: int, mode: str, signum: int = signal.SIGUSR1) -> List[int]:
    """Pass the time-limit warning to the program as ``mode`` says; the pids it went to.

    ``auto``: SIGUSR1 to the processes that handle it (:func:`warning_targets`); ``never``:
    nobody; ``always``: SIGUSR1 to the main process; a signal name: that signal to the main
    process (``SIGINT`` for a program that saves on KeyboardInterrupt).
    """
    if mode == "never":
        return []
    chosen = warning_signal(mode)
    targets = [pid] if chosen is not None else warning_targets(pid, signum)
    for target in targets:
        _kill(target, chosen if chosen is not None else signum)
    return targets
