"""Claims and evidence: the one trust boundary for shared experiments.

Everything that arrives by fetch (notes, commits, a committed ``.gitexp.yaml``) is a *claim*:
anyone whose experiments you pull could have written it with plain git. Acting on this
machine (signalling a process, deleting notes, following a path, running a command again)
needs *local evidence*, which only this machine writes:

* this repository's run directory of the run (``<runs root>/<sha>/``): the executor makes it
  and writes ``exec.json`` (its pid, start time, host) there; a fetch never creates it;
* the live process itself: a gitexp process of this user whose command line names the run
  (``_exec <sha>``) or which holds that run directory's ``executor.lock`` open;
* the commit graph: an attempt's ``chain`` is its first-parent ancestors, so a note cannot
  make another experiment's commit part of its chain;
* paths inside this machine's run root for the run's chain.

This module is the only place those judgements are made; docs/security.md is the rule.
"""
from __future__ import annotations

import json
import os
import re
import socket
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from .fileio import write_atomic
from .paths import run_paths, runs_root
from .repo import Repo

_SHA = re.compile(r"^[0-9a-f]{40}$")
LOCK_NAME = "executor.lock"


def read_exec_info(path: str) -> Dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            info: Dict[str, Any] = json.load(handle)
            return info
    except (OSError, ValueError):
        return {}


_BOOT_TIME: List[float] = []


def process_start_time(pid: int) -> Optional[float]:
    """When process ``pid`` started, in seconds since the epoch (psutil's ``create_time``); None
    when it is gone. Read from /proc where there is one: recording who runs an experiment then
    does not import psutil (~20 ms) before the program starts."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
        if not _BOOT_TIME:
            with open("/proc/stat", "rb") as handle:
                _BOOT_TIME.append(float(next(line for line in handle if line.startswith(b"btime ")).split()[1]))
        ticks = int(stat[stat.rindex(b")") + 2:].split()[19])  # field 22, starttime, in clock ticks
        return ticks / os.sysconf("SC_CLK_TCK") + _BOOT_TIME[0]
    except FileNotFoundError:
        if os.path.isdir("/proc/self"):
            return None  # /proc works: the process is gone
    except (OSError, ValueError, IndexError, StopIteration):
        pass
    import psutil

    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return None


def process_alive(pid: Optional[int], started: Optional[float]) -> bool:
    if not pid:
        return False
    import psutil

    try:
        proc = psutil.Process(int(pid))
        if started is not None and abs(proc.create_time() - float(started)) > 2.0:
            return False  # the pid was reused by another process
        return proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return False


# -- the commit graph ----------------------------------------------------------------------------
def first_parents(repo: Repo, sha: str, count: int) -> List[str]:
    """Up to ``count`` first-parent ancestors of ``sha``, nearest first (read in process)."""
    out: List[str] = []
    current = sha
    for _ in range(count):
        try:
            parents = repo.commit_object(current).parents
        except Exception:  # noqa: BLE001 - a missing or odd object ends the line
            break
        if not parents:
            break
        current = parents[0].decode() if isinstance(parents[0], bytes) else str(parents[0])
        out.append(current)
    return out


def chain_problem(repo: Repo, sha: str, summary: Mapping[str, Any]) -> Optional[str]:
    """Why a note's ``chain``, ``attempt`` or ``outdir_of`` does not match the commit graph, or None.

    An attempt *n* is a commit whose first parent is attempt *n-1*: its chain (oldest first) is
    exactly its first *n-1* first-parent ancestors, reversed; ``outdir_of`` is one of them.
    """
    chain = summary.get("chain")
    attempt = summary.get("attempt")
    owner = summary.get("outdir_of")
    earlier: List[str] = []
    if chain is not None:
        if not isinstance(chain, list) or not all(isinstance(c, str) and _SHA.match(c) for c in chain):
            return "its chain is not a list of commit ids"
        earlier = list(chain)
    if earlier:
        line = first_parents(repo, sha, len(earlier))
        if list(reversed(line)) != earlier:
            return "its chain does not match the commit graph (an attempt's chain is its first-parent ancestors)"
    if attempt is not None and (not isinstance(attempt, int) or isinstance(attempt, bool)
                                or attempt != len(earlier) + 1):
        return f"its attempt number does not match its chain of {len(earlier)} earlier attempt(s)"
    if owner is not None and owner not in earlier:
        return "its outdir_of is not an earlier attempt of its own chain"
    return None


def verified_chain(repo: Repo, sha: str, summary: Mapping[str, Any]) -> List[str]:
    """The earlier attempts of ``sha`` that the commit graph confirms (oldest first).

    The longest tail of the note's chain that is the first-parent line of ``sha``: whatever a
    note claims, only commits of this experiment's own line come back.
    """
    chain = summary.get("chain")
    if not isinstance(chain, list):
        return []
    claimed = [c for c in chain if isinstance(c, str) and _SHA.match(c)]
    line = first_parents(repo, sha, len(claimed))
    out: List[str] = []
    for claimed_sha, real in zip(reversed(claimed), line):
        if claimed_sha != real:
            break
        out.append(real)
    return list(reversed(out))


def attempt_number(repo: Repo, sha: str, summary: Mapping[str, Any]) -> int:
    """Which attempt ``sha`` is, from the commit graph (never from a field alone)."""
    return len(verified_chain(repo, sha, summary)) + 1


# -- this machine's run directories ------------------------------------------------------------------
def ran_here(repo: Repo, sha: str) -> bool:
    """Whether this repository executed (or started executing) run ``sha`` on this machine.

    Its run directory holds ``exec.json`` naming this host: only an executor (or the
    command that spawned it) of this repository writes it.
    """
    info = read_exec_info(run_paths(repo, sha).exec_info)
    return bool(info) and info.get("host") == socket.gethostname()


def local_executor(repo: Repo, sha: str) -> Optional[Tuple[int, float]]:
    """(pid, start time) of the live executor of run ``sha`` on this machine, or None.

    The pid comes from this repository's ``exec.json`` (never from a note), and the process
    must prove it is that executor: a live gitexp process of this user whose command line
    names the run, or which holds the run directory's lock file open (a worker's forked
    executors and a foreground ``git exp run`` keep their parent's command line).
    """
    paths = run_paths(repo, sha)
    info = read_exec_info(paths.exec_info)
    if info.get("host") != socket.gethostname():
        return None
    pid, started = info.get("pid"), info.get("pid_started")
    if not isinstance(pid, int) or isinstance(pid, bool) or not isinstance(started, (int, float)):
        return None
    if not process_alive(pid, started) or not is_own_process(pid):
        return None
    if proves_run(pid, sha, os.path.join(paths.root, LOCK_NAME)):
        return pid, float(started)
    return None


def local_program(repo: Repo, sha: str) -> Optional[int]:
    """The pid of run ``sha``'s program on this machine (from ``exec.json``), alive and ours, or None."""
    info = read_exec_info(run_paths(repo, sha).exec_info)
    if info.get("host") != socket.gethostname():
        return None
    pid, started = info.get("child"), info.get("child_started")
    if not isinstance(pid, int) or isinstance(pid, bool) or not process_alive(pid, started) or not is_own_process(pid):
        return None
    return pid


def is_own_process(pid: int) -> bool:
    import psutil

    try:
        return not hasattr(os, "getuid") or psutil.Process(pid).uids().real == os.getuid()
    except (psutil.Error, ValueError, OverflowError):
        return False


def proves_run(pid: int, sha: str, lock_path: str) -> bool:
    """Whether process ``pid`` is run ``sha``'s gitexp executor (its argv or its open lock file)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        argv = proc.cmdline()
        if not any(os.path.basename(part) in ("gitexp", "git-exp") for part in argv[:3]):
            return False
        if "_exec" in argv and sha in argv:
            return True
        real = os.path.realpath(lock_path)
        return any(os.path.realpath(f.path) == real for f in proc.open_files())
    except (psutil.Error, OSError, ValueError, OverflowError):
        return False


def chain_run_dirs(repo: Repo, shas: Sequence[str]) -> List[str]:
    """This machine's run directories of the given attempts (each may not exist)."""
    root = runs_root(repo)
    return [os.path.join(root, sha) for sha in shas if _SHA.match(sha)]


def inside(path: str, roots: Sequence[str]) -> bool:
    """Whether ``path`` (symlinks resolved) lies inside one of ``roots``."""
    real = os.path.realpath(path)
    for root in roots:
        base = os.path.realpath(root)
        if real == base or real.startswith(base + os.sep):
            return True
    return False


# -- scheduler jobs this repository submitted ---------------------------------------------------------
SUBMITTED_DIR = "submitted"


def record_submission(repo: Repo, runner: str, job: str, shas: Sequence[str]) -> None:
    """Remember here that this repository submitted ``job`` for ``shas`` (best effort).

    A job id in a note is a claim: one of your other jobs' ids in a pulled note must never be
    cancelled. This file in this machine's runs root is the evidence :func:`submitted_here` asks for.
    """
    folder = os.path.join(runs_root(repo), SUBMITTED_DIR)
    path = os.path.join(folder, f"{runner}-{job}.json")
    try:
        os.makedirs(folder, exist_ok=True)
        write_atomic(path, json.dumps({"runner": runner, "job": job, "shas": list(shas)}).encode())
    except OSError:
        pass  # without it, cancel refuses and says to cancel the job by hand


def submitted_here(repo: Repo, runner: str, job: str, sha: str) -> bool:
    """Whether this repository submitted scheduler job ``job`` (digits) for run ``sha``."""
    if not re.fullmatch(r"[0-9]{1,18}", job):
        return False
    info = read_exec_info(os.path.join(runs_root(repo), SUBMITTED_DIR, f"{runner}-{job}.json"))
    shas = info.get("shas")
    return info.get("runner") == runner and isinstance(shas, list) and sha in shas

