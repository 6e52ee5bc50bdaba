"""The local queue worker: runs queued experiments N at a time, one GPU each.

Each experiment is claimed by compare-and-swap (see ``queue.py``) and run by the one executor
(``git exp _exec <sha>``) in a process of its own session. SIGINT/SIGTERM stop the worker:
it stops claiming, passes SIGTERM to its running executors (recorded ``killed``) and exits.
"""
from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Set

from .lifecycle import Status, transition
from .config import Requires
from .errors import GitExpError, NotReady
from .executor import sweep_stale_worktrees
from .storedconfig import load_experiment_config
from .notes import Experiment, Store
from .paths import run_paths, runs_root
from .queue import CLAIMED, Queue, worker_identity
from .repo import Repo
from .hostprobe import disk, gpu_free_memory, gpu_total_memory, ram
from .resources import check as check_requires
from .rundirs import END_NAME, leftovers, lost_reason, record_end
from .evidence import read_exec_info
from .supervisor import describe
from .supervisor import stop as stop_processes
from .runners.base import exec_argv
from .units import format_size


class ForkedExecutor:
    """The executor in a forked child: no interpreter start or imports per experiment.

    Quacks like the parts of ``subprocess.Popen`` the worker uses (pid, poll).
    """

    def __init__(self, repo: Repo, sha: str, env: Dict[str, str], log_path: str, echo: bool) -> None:
        log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        pid = os.fork()
        if pid == 0:  # the child: never returns
            code = 1
            try:
                os.setsid()
                for sig in (signal.SIGINT, signal.SIGTERM):
                    signal.signal(sig, signal.SIG_DFL)
                os.dup2(log_fd, 2)
                if not echo:
                    devnull = os.open(os.devnull, os.O_WRONLY)
                    os.dup2(devnull, 1)
                os.environ.clear()
                os.environ.update(env)
                from .executor import Executor
                from .notes import Store

                fresh = Repo(repo.root, repo.git_dir, repo.common_dir)
                code = Executor(fresh, Store(fresh), sha, echo=echo).execute()
            except BaseException as exc:  # noqa: BLE001 - report anything, then exit the child
                try:
                    os.write(2, f"gitexp executor: {exc!r}\n".encode())
                except OSError:
                    pass
            finally:
                try:
                    sys.stdout.flush()
                except Exception:  # noqa: BLE001
                    pass
                os._exit(code)
        os.close(log_fd)
        self.pid = pid
        self.returncode: Optional[int] = None

    def poll(self) -> Optional[int]:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                self.returncode = -1
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") \
                    else (os.WEXITSTATUS(status) if os.WIFEXITED(status) else -os.WTERMSIG(status))
        return self.returncode


@dataclass
class Running:
    exp: Experiment
    proc: Any
    gpu: Optional[int]
    ended: Optional[int] = None  # the executor's exit status, once it has ended
    checked: float = 0.0  # when its run's processes were last looked for
    told: bool = False  # the "still running without its executor" line was said


class Worker:
    def __init__(self, repo: Repo, store: Store, jobs: int = 1, gpus: Optional[List[int]] = None,
                 until_empty: bool = False, only: Optional[Set[str]] = None, group: Optional[str] = None,
                 echo: bool = False,
                 poll: float = 0.5, say: Any = None, lock_path: Optional[str] = None) -> None:
        self.repo = repo
        self.store = store
        self.queue = Queue(repo, store)
        self.gpus = gpus
        self.jobs = min(jobs, len(gpus)) if gpus else jobs
        self.until_empty = until_empty
        self.only = only
        self.group = group
        self.echo = echo
        self.poll = poll
        self.running: List[Running] = []
        self.stopping = False
        self.identity = worker_identity()
        self.say = say or (lambda text: print(text, file=sys.stderr, flush=True))
        self.started = 0
        self.never_fit = 0  # queued experiments failed because they need more than this machine has
        self.lock_path = lock_path
        self.lock_fd: Optional[int] = None

    # -- one worker per lock (the detached worker of a run target) ---------------------------------
    def take_lock(self) -> bool:
        """Hold ``lock_path`` (flock); False when another worker holds it."""
        if self.lock_path is None:
            return True
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self.lock_fd = fd
        return True

    def _release_lock(self) -> None:
        if self.lock_fd is not None:
            os.close(self.lock_fd)  # closing releases the flock
            self.lock_fd = None

    def _may_end(self) -> bool:
        """With a lock, whether this worker may exit now that it has nothing to do.

        A worker started for new experiments exits at once when this one holds the lock, so
        this one must see them: it lets the lock go, looks once more, and takes the lock back
        (going on) if something arrived meanwhile and no newer worker took the lock.
        """
        if self.lock_fd is None:
            return True
        self._release_lock()
        if not self._candidates():
            return True
        return not self.take_lock()

    def run(self) -> int:
        old = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        sweep_stale_worktrees(self.repo, force=True)
        try:
            while True:
                self._reap()
                waiting = [] if self.stopping else self._candidates()
                if waiting and len(self.running) < self.jobs:
                    self._fill(waiting)
                if not self.running and (self.stopping or (self.until_empty and not waiting)):
                    if self.stopping or self._may_end():
                        break
                time.sleep(self.poll if not self.running else min(self.poll, 0.02))
        finally:
            self._release_lock()
            for sig, handler in old.items():
                signal.signal(sig, handler)
        if self.stopping:
            return 130
        # Like a single run that does not fit (exit 3), so scripts see that some never ran.
        return NotReady.exit_code if self.never_fit else 0

    # -- scheduling ----------------------------------------------------------------------------
    def _candidates(self) -> List[Experiment]:
        items = self.queue.items()
        if self.only is not None:
            items = [e for e in items if e.sha in self.only]
        if self.group is not None:
            items = [e for e in items if e.summary.get("group") == self.group]
        return items

    def _free_gpus(self) -> List[int]:
        busy = {r.gpu for r in self.running}
        return [g for g in (self.gpus or []) if g not in busy]

    def _fill(self, waiting: List[Experiment]) -> None:
        root = runs_root(self.repo)
        for exp in waiting:
            if len(self.running) >= self.jobs or self.stopping:
                return
            gpu = self._free_gpus()[0] if self.gpus else None
            try:
                requires = load_experiment_config(self.repo, exp.sha).requires
            except Exception as exc:  # noqa: BLE001 - whatever it is, this commit can never run
                self._cannot_run(exp, f"cannot read its stored config: {exc}")
                continue
            problems = check_requires(requires, root, [gpu] if gpu is not None else None)
            if problems and self.until_empty:
                # "Not now" is worth waiting for; "never" (more than this machine has) would
                # hold --until-empty forever.
                never = never_fits(requires, root, self.gpus)
                if never and self._cannot_run(exp, "; ".join(never)):
                    self.never_fit += 1
                if never:
                    continue
            if problems:
                self.queue.note_waiting(exp, "; ".join(problems))
                continue
            if not self.queue.claim(exp, self.identity):
                continue  # another worker took it
            self._start(exp, gpu)

    def _cannot_run(self, exp: Experiment, reason: str) -> bool:
        """Fail a queued experiment that can never run here and drop it from the queue."""
        if not self.queue.fail_queued(exp, reason):
            return False  # another worker took it, or it was cancelled, meanwhile
        self.say(f"gitexp worker: {exp.name} ({exp.sha[:10]}) failed: {reason}")
        return True

    def _start(self, exp: Experiment, gpu: Optional[int]) -> None:
        env = dict(os.environ)
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = str(gpu)
        paths = run_paths(self.repo, exp.sha)
        os.makedirs(paths.root, exist_ok=True)
        log_path = os.path.join(paths.root, "executor.log")
        sys.stdout.flush()
        sys.stderr.flush()
        proc: Any
        if hasattr(os, "fork"):
            proc = ForkedExecutor(self.repo, exp.sha, env, log_path, self.echo)
        else:
            argv = exec_argv(exp.sha, ["--runner", "local"] + (["--echo"] if self.echo else []))
            with open(log_path, "ab") as log:
                proc = subprocess.Popen(argv, cwd=self.repo.root, env=env, stdin=subprocess.DEVNULL,
                                        stdout=None if self.echo else subprocess.DEVNULL, stderr=log,
                                        start_new_session=True)
        self.running.append(Running(exp, proc, gpu))
        self.started += 1
        where = f" on GPU {gpu}" if gpu is not None else ""
        self.say(f"gitexp worker: started {exp.name} ({exp.sha[:10]}){where}")

    def _reap(self) -> None:
        """Free the slot (and GPU) of each run that has ended: its executor has exited and no
        process of its run lives on (a program whose executor was SIGKILLed, what it left)."""
        for item in list(self.running):
            if item.ended is None:
                code = item.proc.poll()
                if code is None:
                    continue
                item.ended = code
                self._executor_ended(item, code)
            if self._run_lives(item):
                continue
            self.running.remove(item)
            self._settle(item)

    def _executor_ended(self, item: Running, code: int) -> None:
        """Record in the run directory how an executor that did not record its run's end died."""
        run_dir = run_paths(self.repo, item.exp.sha).root
        if code == 0 or read_exec_info(os.path.join(run_dir, END_NAME)).get("what") == "recorded":
            return
        if code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else f"signal {-code}"
            why = f"was killed by {name} (signal {-code}" + ("; the OOM killer sends it" if -code == 9 else "") + ")"
        else:
            why = f"exited with code {code} without recording the end (its stderr: {run_dir}/executor.log)"
        record_end(run_dir, "killed", why + time.strftime(" at %H:%M:%S"), by="worker")

    def _run_lives(self, item: Running) -> bool:
        """Whether a process of the run still lives (looked for at most once a second)."""
        if time.monotonic() - item.checked < 1.0:
            return True
        item.checked = time.monotonic()
        alive = leftovers(self.repo, item.exp.sha)
        if alive and self.stopping:
            stop_processes(alive, 0.0 if item.told else 5.0)
        if alive and not item.told:
            item.told = True
            where = f" and GPU {item.gpu}" if item.gpu is not None else ""
            self.say(f"gitexp worker: {item.exp.name}: its executor ended but {describe(alive)} still runs; "
                     f"its slot{where} stay taken until it ends")
        return bool(alive)

    def _settle(self, item: Running) -> None:
        """The run and all its processes have ended: a run whose executor died is recorded
        ``lost`` with why; then ``auto_resume``."""
        from .attempts import supersede

        summary = self.store.summary(item.exp.sha)
        code = item.ended if item.ended is not None else 0
        if summary.get("status") == CLAIMED:  # the executor died before it could start
            self._mark_failed(item.exp, code)
            summary = self.store.summary(item.exp.sha)
        elif summary.get("status") in (Status.STARTING, Status.RUNNING):
            why = lost_reason(run_paths(self.repo, item.exp.sha).root)
            try:
                summary = supersede(self.repo, self.store, Experiment(item.exp.sha, item.exp.name, summary), why)
            except GitExpError as exc:
                self.say(f"gitexp worker: {item.exp.name}: could not record it lost: {exc}")
        status = summary.get("status", "?")
        reason = f" ({summary.get('reason')})" if status == Status.LOST and summary.get("reason") else ""
        self.say(f"gitexp worker: {item.exp.name} {status}{reason}")
        self._auto_resume(Experiment(item.exp.sha, item.exp.name, summary))

    def _auto_resume(self, exp: Experiment) -> None:
        """``auto_resume: N``: a run stopped by a time limit, preemption or its executor's death
        goes back on the queue as a new attempt from its latest checkpoint."""
        from .attempts import auto_resume

        try:
            made = auto_resume(self.repo, self.store, exp, Status.QUEUED)
            if made is None:
                return
            Queue(self.repo, self.store).record([made[0]], int((exp.summary.get("queue") or {}).get("priority", 0)))
        except GitExpError as exc:
            self.say(f"gitexp worker: {exp.name}: no automatic resume: {exc}")
            return
        new = made[0]
        point = new.summary.get("resume") or {}
        self.say(f"gitexp worker: {exp.name}: auto_resume queued attempt {new.summary.get('attempt')} "
                 + (f"from step {point.get('step')}" if point else "from scratch"))

    def _mark_failed(self, exp: Experiment, code: int) -> None:
        log = os.path.join(run_paths(self.repo, exp.sha).root, "executor.log")
        reason = f"executor exited with code {code} before starting the program; see {log}"

        status = Status.KILLED if code < 0 else Status.FAILED  # a signal stopped it before it began
        transition(self.store, exp.sha, status, {"exit_code": code, "reason": reason, "ended": time.time()},
                   only_from=[Status.STARTING], message="gitexp: executor failed")

    def _on_signal(self, signum: int, _frame: Any) -> None:
        if self.stopping:  # asked again: executors kill their programs without grace
            for item in self.running:
                _kill_group(item.proc, signal.SIGTERM)
            return
        self.stopping = True
        self.say(f"gitexp worker: stopping; {len(self.running)} running experiment(s) will be recorded killed")
        for item in self.running:
            _kill_group(item.proc, signal.SIGTERM)


def _kill_group(proc: Any, sig: int) -> None:
    if proc.poll() is not None:
        return
    try:
        os.kill(proc.pid, sig)
    except ProcessLookupError:
        pass


def never_fits(requires: Requires, disk_path: str, gpu_slots: Optional[List[int]]) -> List[str]:
    """What no waiting can ever give on this machine: more than it has in total.

    ``gpu_slots`` are the worker's --gpus: each experiment then gets exactly one GPU.
    """
    out = []
    if requires.ram and requires.ram > ram().total:
        out.append(f"requires.ram {format_size(requires.ram)} exceeds this machine's "
                   f"{format_size(ram().total)} total")
    if requires.disk:
        here = disk(disk_path)
        if requires.disk > here.total:
            out.append(f"requires.disk {format_size(requires.disk)} exceeds the {format_size(here.total)} "
                       f"total of the disk holding {here.path}")
    if requires.cpus and requires.cpus > (os.cpu_count() or 1):
        out.append(f"requires.cpus {requires.cpus} exceeds this machine's {os.cpu_count()} CPUs")
    if requires.gpus or requires.gpu_mem:
        out += _gpus_never_fit(requires, gpu_slots)
    return out


def _gpus_never_fit(requires: Requires, gpu_slots: Optional[List[int]]) -> List[str]:
    free = gpu_free_memory()
    if free is None:
        return ["requires a GPU but no NVIDIA GPU can be queried on this machine"]
    count = 1 if gpu_slots else len(free)
    if requires.gpus and requires.gpus > count:
        where = "this worker gives each experiment one GPU (--gpus)" if gpu_slots else \
            f"this machine has {len(free)}"
        return [f"requires.gpus {requires.gpus}, but {where}"]
    totals = gpu_total_memory()
    if requires.gpu_mem and totals and requires.gpu_mem > max(totals):
        return [f"requires.gpu_mem {format_size(requires.gpu_mem)} exceeds the {format_size(max(totals))} "
                f"of this machine's largest GPU"]
    return []

