"""The one executor every runner starts (``git exp _exec <sha>``).

It checks the experiment commit out into a throwaway directory, checks ``requires``, runs
the command with GITEXP_* variables, tees the output to ``output.log`` (and the terminal in
the foreground), captures metrics, and writes the notes: at start, every
``GITEXP_NOTES_INTERVAL`` seconds (default 120) while running, and at the end.

Signals: SIGINT, SIGTERM and SIGHUP are passed to the program's process group and the run is
recorded ``killed`` (``timeout`` when the runner said the time limit is near, see
:data:`TIMEOUT_SIGNALS`); after ``GITEXP_KILL_GRACE`` seconds (default 10) the group gets
SIGKILL. A second Ctrl-C kills at once.

What a run can always count on:

* It ends recorded. Its first act writes ``exec.json`` (pid, host) and marks the summary
  ``starting`` with its pid, so a SIGKILL at any later moment shows the run ``lost`` (and
  retryable); any exception after that records it ``failed`` with the reason (the
  traceback goes to ``output.log``). A removed experiment (``git exp rm --force``) is
  never written again: every summary change aborts on a missing note.
* Its throwaway ``wt/`` is removed however it ends; a SIGKILLed executor's is swept later
  (:func:`sweep_stale_worktrees`). ``out/`` and the logs stay.
* Output costs linear time, however long a line: all bytes go to ``output.log``; regexes
  and the log tail see at most MAX_LINE characters a line; the tail note holds at most
  :data:`TAIL_BYTES`.
* No metric regex can stall it: see :class:`~gitexp.metrics.RegexCapture`.
"""
from __future__ import annotations

import collections
import faulthandler
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from typing import Any, Deque, Dict, List, Optional, Tuple

from . import endstate
from . import metrics as metrics_mod
from . import run_env
from .config import ExperimentConfig
from .errors import DiskFull, GitExpError
from .evidence import process_start_time
from .lifecycle import FINAL as FINAL_STATES
from .lifecycle import Status, transition
from .notes import Experiment, Store
from .paths import RunPaths, run_paths
from .pump import OutputPump
from .recorder import TAIL_BYTES, Recorder
from .watchfeed import WatcherFeed
from .stopping import Stopping
from .storedconfig import load_experiment_config
from .repo import Repo
from .resources import check as check_requires
from .runners import runner_class
from .rundirs import EXECUTOR_LOG, LOCK_NAME, prepare_worktree, record_end, sweep_stale_worktrees, try_lock
from .run_env import shell_argv
from .supervisor import new_mark

LOG_TAIL_LINES = 60
__all__ = ["Executor", "TAIL_BYTES", "kill_grace", "notes_interval", "settings_problems", "shell_argv",
           "sweep_stale_worktrees"]
FINAL = tuple(s.value for s in FINAL_STATES)
DEFAULT_SECONDS = {"GITEXP_NOTES_INTERVAL": 120.0, "GITEXP_KILL_GRACE": 10.0, "GITEXP_FULL_DISK_WAIT": 600.0}


def _seconds(name: str) -> Tuple[float, Optional[str]]:
    """The value of a seconds setting, or its default and a warning when it is not usable.

    A bad value falls back to the default rather than failing the run: these are knobs of
    the machinery, not part of the experiment, and they are read after the experiment was
    recorded (a typo should not cost a queued sweep). ``settings_problems`` lets a command
    refuse them before it records anything.
    """
    default = DEFAULT_SECONDS[name]
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default, None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        return default, f"{name}={raw!r} is not a number of seconds >= 0 (write e.g. {name}={default:g})"
    return value, None


def notes_interval() -> float:
    return _seconds("GITEXP_NOTES_INTERVAL")[0]


def kill_grace() -> float:
    return _seconds("GITEXP_KILL_GRACE")[0]


def settings_problems() -> List[str]:
    """What is wrong with the GITEXP_* settings the executor reads, one line each (commands
    can refuse them as bad input before they record anything)."""
    return [problem for problem in (_seconds(name)[1] for name in DEFAULT_SECONDS) if problem]


class Executor(OutputPump, Stopping, Recorder, WatcherFeed):
    def __init__(self, repo: Repo, store: Store, sha: str, echo: bool = False,
                 runner: str = "local", extra_env: Optional[Dict[str, str]] = None) -> None:
        self.repo = repo
        self.store = store
        self.sha = sha
        self.echo = echo
        self.runner = runner
        self.extra_env = extra_env or {}
        # The config is read inside execute(): a commit whose config cannot be read is then
        # recorded failed instead of leaving the run as it was.
        self.config: Optional[ExperimentConfig] = None
        self.paths: RunPaths = run_paths(repo, sha)
        self.budget = metrics_mod.MatchBudget()
        self.capture = metrics_mod.RegexCapture({}, self.budget)
        self.interval, interval_problem = _seconds("GITEXP_NOTES_INTERVAL")
        self.grace, grace_problem = _seconds("GITEXP_KILL_GRACE")
        self.setting_warnings = [f"{p}; using the default" for p in (interval_problem, grace_problem) if p]
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.log: Optional[Any] = None
        self.lock_fd: Optional[int] = None
        self.stop_reason: Optional[str] = None
        self.stop_signum = signal.SIGTERM
        self.killed_at: Optional[float] = None
        self.signals_seen = 0
        self.saw_warning = False
        self.facts: Dict[str, Any] = {}
        self.tail: Deque[str] = collections.deque(maxlen=LOG_TAIL_LINES)
        self.captured_file: Optional[Any] = None  # captured.jsonl, appended as points are found
        self.captured_lost = 0
        self.unwritten: List[Dict[str, Any]] = []  # points not yet in captured.jsonl (a full disk)
        self.backlog: List[Dict[str, Any]] = []  # points not yet handed to the watchers
        self.thinned = 0  # times the backlog was thinned (watch.thin)
        self.patience = _seconds("GITEXP_FULL_DISK_WAIT")[0]
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.stderr_copy: Optional[Any] = None
        self.fault_file: Optional[Any] = None
        self.mark = new_mark(sha)  # in the program's environment: finds every process of the run
        self.leftovers: List[Dict[str, object]] = []

    # -- the whole run ----------------------------------------------------------------------
    def execute(self) -> int:
        from .notify import install

        # Notifications of this run's state changes (its config's notify:), also of a
        # preflight failure or a crash before the program starts; once per process.
        install(self.repo, self.store)
        # Handlers first: a stop asked for at any moment from here on is honoured and recorded.
        old_handlers = self._install_signal_handlers()
        try:
            self._lock_run_dir()  # nothing is recorded if another executor has this run
            self._keep_stderr()
            try:
                return self._execute()
            except endstate.EndKept:
                record_end(self.paths.root, "disk", "the disk stayed full; the end is kept in end.json")
                raise  # the end is on disk: recorded by the next command, never recorded failed here
            except GitExpError as exc:
                self._on_crash(exc)
                raise
            except Exception as exc:
                reason = self._on_crash(exc)
                raise GitExpError(reason, f"the traceback is in {self.paths.log}") from exc
            except BaseException as exc:
                self._on_crash(exc)
                raise
            finally:
                self._clean_up()
        finally:
            self._restore_signal_handlers(old_handlers)

    def _execute(self) -> int:
        self._take_attempt()  # an attempt that ended never runs again; nothing is touched then
        self._set_stale_files_aside()  # this attempt started before (a scheduler's requeue)
        self._write_exec_info()  # first: from here on a crash leaves a pid to find dead
        endstate.reserve(self.paths.root)  # room for the end, should the disk fill up meanwhile
        self._mark_starting()
        self.config = load_experiment_config(self.repo, self.sha)
        self.capture = metrics_mod.RegexCapture(self.config.metrics, self.budget)
        for warning in self.setting_warnings:
            self._say(f"gitexp: warning: {warning}")
        sweep_stale_worktrees(self.repo)
        os.makedirs(self.paths.outdir, exist_ok=True)
        problems = check_requires(self.config.requires, self.paths.outdir, _visible_gpus())
        if problems:
            self._finish_summary(Status.FAILED, None, reason="preflight: " + "; ".join(problems))
            self._say("gitexp: not started: " + "; ".join(problems))
            return 3
        self._prepare_worktree()
        if self.stop_reason:  # stopped before the program began: nothing to start
            self._finish_summary(self.stop_reason, None, reason="stopped before the program started")
            return 128 + int(self.stop_signum)
        started = time.time()
        self._start_program()
        assert self.proc is not None
        if self.stop_reason:  # a signal arrived while the program was being started
            self._stop_program(signal.SIGTERM)
        self._judge_early_warning()  # a time-limit warning that came before it started
        self._mark_running(started)
        self._start_watchers(started)
        return self._run_to_end(started)

    def _take_attempt(self) -> None:
        summary = self.store.summary(self.sha)
        if summary.get("status") in FINAL:
            raise GitExpError(f"{self.sha[:12]} already ended ({summary.get('status')}); an attempt runs once, "
                              "nothing was run", f"git exp queue retry {self.sha[:12]} or git exp resume "
                              f"{self.sha[:12]} starts a new attempt")
        self.attempt = summary
        self.paths = run_paths(self.repo, self.sha, summary)  # a resumed attempt shares out/

    def _run_to_end(self, started: float) -> int:
        self.facts_thread = threading.Thread(target=self._collect_facts, daemon=True)
        self.facts_thread.start()
        flusher = threading.Thread(target=self._periodic, daemon=True)
        flusher.start()
        try:
            self._pump_output()
            code = self._wait()
        finally:
            self.done.set()
        record_end(self.paths.root, "program-ended", f"exit code {code}" if code >= 0 else f"signal {-code}")
        self._stop_leftovers()
        status = self._status_for(code)
        watchers = getattr(self, "watchers", None)
        if watchers is not None:
            self._feed_watchers()
            watchers.end(status)
        self._finish_summary(status, code, started=started)
        record_end(self.paths.root, "recorded", status)
        self._auto_resume(status)
        self.repo.maintain()
        if code < 0:
            return 128 - code
        return code

    def _auto_resume(self, status: str) -> None:
        """``auto_resume: N`` on a scheduler (Slurm, Grid Engine): resubmit the run from its
        latest checkpoint as a new attempt, from the node, through the run's own runner. The
        local queue's worker does the same for its runs."""
        if runner_class(self.runner).retries_on_local_queue() or status == Status.FINISHED:
            return
        from .attempts import auto_resume
        from .runners import runner_for
        from .runners.base import Made

        summary = self.store.summary(self.sha)
        exp = Experiment(self.sha, str(summary.get("name") or ""), summary)
        try:
            runner = runner_for(self.repo, self.store, exp)
            made = auto_resume(self.repo, self.store, exp, Status(runner.INITIAL_STATUS))
            if made is None:
                return
            new, config = made
            runner.submit(Made([new], [config], {}))
            self._say(f"gitexp: auto_resume: {exp.name} continues as attempt {new.summary.get('attempt')} "
                      f"({new.sha[:12]})")
        except Exception as exc:  # noqa: BLE001 - the run is recorded; a failed resubmission is reported
            self._say(f"gitexp: auto_resume of {exp.name} failed: {exc}")

    def _status_for(self, code: int) -> str:
        if self.stop_reason == Status.KILLED or (code < 0 and not self.stop_reason):
            # The runner says why (Slurm signals every process of the job, the program often
            # before us: a cancel, the time limit or preemption).
            self.stop_reason = runner_class(self.runner).stop_reason(
                self.store.summary(self.sha), self.saw_warning, self.stop_reason == Status.KILLED)
        if self.stop_reason:
            return self.stop_reason
        if self.saw_warning and code != 0:
            return Status.TIMEOUT  # warned of the time limit, then stopped without completing
        return Status.FINISHED if code == 0 else Status.FAILED

    # -- crashes and cleaning up ------------------------------------------------------------
    def _on_crash(self, exc: BaseException) -> str:
        """Whatever went wrong in here: stop the program and record the run ended, with why."""
        if isinstance(exc, GitExpError):
            reason = str(exc)
        else:
            reason = f"gitexp executor error: {type(exc).__name__}: {exc}"
            self._log_text("gitexp: executor error:\n" + traceback.format_exc())
        status = Status.KILLED if isinstance(exc, KeyboardInterrupt) else Status.FAILED
        what = "disk" if isinstance(exc, DiskFull) else "signal" if isinstance(exc, KeyboardInterrupt) else "exception"
        record_end(self.paths.root, what, f"stopped on {type(exc).__name__}: {reason}"[:2000])
        try:
            self._end_program()
            self._record_end(status, reason)
        except BaseException as second:  # noqa: BLE001 - the first error is the one to raise
            self._say(f"gitexp: could not record the run {status}: {second}")
        return reason

    def _end_program(self) -> None:
        """SIGTERM to a program still running, SIGKILL after the grace period."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.proc.wait(timeout=self.grace)
            except subprocess.TimeoutExpired:
                pass
        self._signal_group(signal.SIGKILL)  # and whatever it left behind in its group
        self.proc.wait()
        self._stop_leftovers()

    def _record_end(self, status: str, reason: str) -> None:
        # A removed run, or one already recorded as ended, is kept as it is (transition's rules).
        transition(self.store, self.sha, Status(status),
                   {"ended": time.time(), "reason": reason, "exit_code": self.proc.returncode if self.proc else None})

    def _clean_up(self) -> None:
        """Runs however the run ends: the worktree goes, ``out/`` and the logs stay."""
        self.done.set()
        if self.log is not None and not self.log.closed:
            self.log.close()
        if self.captured_file is not None:
            self.captured_file.close()
        shutil.rmtree(self.paths.worktree, ignore_errors=True)
        self.budget.uninstall()
        if self.fault_file is not None:
            faulthandler.disable()
        for handle in {id(h): h for h in (self.fault_file, self.stderr_copy) if h is not None}.values():
            handle.close()
        self.fault_file = self.stderr_copy = None
        if self.lock_fd is not None:
            os.close(self.lock_fd)  # releases the lock
            self.lock_fd = None

    def _lock_run_dir(self) -> None:
        os.makedirs(self.paths.root, exist_ok=True)
        deadline = time.monotonic() + 30  # a sweeper holds the lock for a moment only
        while True:
            fd = try_lock(self.paths.root)
            if fd is not None:
                self.lock_fd = fd
                return
            if time.monotonic() > deadline:
                raise GitExpError(f"another executor is running {self.sha[:12]} on this machine",
                                  f"its lock is {os.path.join(self.paths.root, LOCK_NAME)}")
            time.sleep(0.1)

    # -- setup ------------------------------------------------------------------------------
    def _identity(self) -> Dict[str, Any]:
        return {"host": socket.gethostname(), "pid": os.getpid(), "pid_started": process_start_time(os.getpid())}

    def _mark_starting(self) -> None:
        """Show the run as this process's from the start: if it dies, the run shows ``lost``."""
        ident = self._identity()
        claims = runner_class(self.runner).executor_claims()

        fields = {**ident, "runner": self.runner, "run_dir": self.paths.root, "outdir": self.paths.outdir}
        if claims:
            # A queue worker's claim already says ``starting`` and names the worker; a
            # local run names its executor, whose death makes it ``lost``.
            recorded = transition(self.store, self.sha, Status.STARTING, {**fields, "exit_code": None, "reason": None},
                                  fields_from=lambda s: {"worker": s.get("worker") or ident})
        else:  # a scheduler's runs are judged by their runner; only check the run is recorded
            recorded = self.store.summary(self.sha)
            if recorded.get("status") in FINAL:
                recorded = {}
        if not recorded:
            current = self.store.summary(self.sha)
            if current.get("status") in FINAL:
                raise GitExpError(f"{self.sha[:12]} already ended ({current.get('status')}); an attempt runs once",
                                  f"git exp queue retry {self.sha[:12]} or git exp resume {self.sha[:12]} "
                                  "starts a new attempt")
            raise GitExpError(f"{self.sha[:12]} is not a recorded experiment here (no summary note); "
                              "nothing was run")

    def _mark_running(self, started: float) -> None:
        self.details_base = self.store.details(self.sha)
        ident = self._identity()

        # Removed meanwhile (git exp rm --force): transition never re-creates the note.
        transition(self.store, self.sha, Status.RUNNING,
                   {**ident, "started": started, "runner": self.runner, "run_dir": self.paths.root,
                    "outdir": self.paths.outdir, "exit_code": None, "reason": None}, message="gitexp: start")
        self._write_exec_info(started)

    def _prepare_worktree(self) -> None:
        """Check the commit out into ``wt/`` and link its ``files`` (see gitexp.rundirs)."""
        assert self.config is not None
        prepare_worktree(self.repo, self.sha, self.paths.worktree, self.config.files, self._log_text)

    def _start_program(self) -> None:
        assert self.config is not None
        point = run_env.resume_point(getattr(self, "attempt", None))
        command, shown = run_env.command(self.config, self.paths, point)
        env = run_env.environment(self.config, self.sha, self.paths, self.mark, point, self.extra_env)
        argv = command if isinstance(command, list) else shell_argv(command)
        # Unbuffered: a failed write (a full disk) loses that chunk only, never wedges a buffer.
        self.log = open(self.paths.log, "ab", buffering=0)
        # The command as written, with its values: people read this line (logs, crash mails).
        self.log.write(f"gitexp: running {shown} in {self.paths.worktree}\n".encode())
        self.log.flush()
        try:
            self.proc = subprocess.Popen(
                argv, cwd=self.paths.worktree, env=env, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
            )
        except OSError as exc:
            self.log.write(f"gitexp: could not start: {exc}\n".encode())
            self.log.close()
            self._finish_summary(Status.FAILED, 127, reason=f"could not start: {exc}")
            raise GitExpError(f"could not start {argv[0]}: {exc}") from exc

    def _set_stale_files_aside(self) -> None:
        """Files an earlier start of this very attempt left go to ``earlier-<time>/``, kept.

        Every retry or resume is a new attempt with a directory of its own; an attempt starts
        twice only when a scheduler requeues its job. Done before exec.json names this
        executor: while a live executor is named there, the points files in the directory are
        its run's (``gitexp.live`` relies on that).
        """
        # output.log stays: it is appended to, and `git exp logs -f` may already follow it.
        stale = [p for p in (self.paths.metrics, self.paths.captured, self.paths.checkpoints, self.paths.stop_file,
                             os.path.join(self.paths.root, endstate.END_STATE)) if os.path.exists(p)]
        if not stale:
            return
        folder = os.path.join(self.paths.root, f"earlier-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
        os.makedirs(folder, exist_ok=True)
        for path in stale:
            os.replace(path, os.path.join(folder, os.path.basename(path)))

    def _write_exec_info(self, started: Optional[float] = None) -> None:
        info: Dict[str, Any] = {**self._identity(), "started": started, "child": None, "child_started": None,
                                "mark": self.mark}
        if self.proc is not None:
            info["child"] = self.proc.pid
            info["child_started"] = process_start_time(self.proc.pid)  # None: already gone
        os.makedirs(self.paths.root, exist_ok=True)
        tmp = self.paths.exec_info + ".tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(info, handle)
        os.replace(tmp, self.paths.exec_info)

    # -- while it runs ----------------------------------------------------------------------
    def _wait(self) -> int:
        assert self.proc is not None
        while True:
            try:
                return self.proc.wait()
            except KeyboardInterrupt:  # only if a handler was not installed (not main thread)
                self._on_signal(signal.SIGINT, None)

    def _log_text(self, text: str) -> None:
        """A line of gitexp's own in output.log (and the tail), beside the program's output."""
        try:
            if self.log is not None and not self.log.closed:
                self.log.write(text.encode())
                self.log.flush()
            else:
                os.makedirs(self.paths.root, exist_ok=True)
                with open(self.paths.log, "ab") as handle:
                    handle.write(text.encode())
        except OSError:
            pass
        with self.lock:
            self.tail.extend(text.rstrip("\n").splitlines()[-LOG_TAIL_LINES:])

    def _say(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)
        if self.stderr_copy is not None:  # stderr is a terminal: keep its lines in executor.log too
            try:
                self.stderr_copy.write(text + "\n")
                self.stderr_copy.flush()
            except (OSError, ValueError):
                pass

    def _keep_stderr(self) -> None:
        """What the executor says, and a hard crash's traceback (faulthandler), end up in
        ``<run dir>/executor.log``: a detached or worker-started executor's stderr is that
        file already; a foreground one's lines are copied there."""
        path = os.path.join(self.paths.root, EXECUTOR_LOG)
        try:
            same = os.path.samestat(os.fstat(2), os.stat(path))
        except OSError:
            same = False
        try:
            handle = open(path, "a", encoding="utf-8", errors="replace")
        except OSError:
            return
        self.stderr_copy = None if same else handle
        if not faulthandler.is_enabled():
            faulthandler.enable(file=handle, all_threads=True)
            self.fault_file = handle
        elif same:
            handle.close()


def _visible_gpus() -> Optional[List[int]]:
    raw = os.environ.get("CUDA_VISIBLE_DEVICES")
    if raw is None or raw.strip() == "":
        return None
    try:
        return [int(x) for x in raw.split(",") if x.strip()]
    except ValueError:
        return None
