"""The one executor every runner starts (``git exp _exec <sha>``).

It checks the experiment commit out into a throwaway directory, checks ``requires``, runs
the command with GITEXP_* variables, tees the output to ``output.log`` (and the terminal in
the foreground), captures metrics, and writes the notes: at start, every
``GITEXP_NOTES_INTERVAL`` seconds (default 120) while running, and at the end.

Signals: SIGINT, SIGTERM and SIGHUP are passed to the program's process group and the run is
recorded ``killed`` (``timeout`` when the runner said the time limit is near, see
:data:`TIMEOUT_SIGNALS`); after ``GITEXP_KILL_GRACE`` seconds (default 10) the group gets
SIGKILL. A second Ctrl-C kills at once.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any, Dict, List, Optional

import psutil

from . import facts as facts_mod
from . import metrics as metrics_mod
from .config import ExperimentConfig, parse_config
from .errors import GitExpError
from .notes import CONFIG_PATH, DETAILS_REF, METRICS_REF, Store, dump_json, jsonl
from .paths import RunPaths, run_paths
from .repo import Repo
from .resources import check as check_requires

LOG_TAIL_LINES = 60
# The runner's warning that the time limit is near (Slurm: --signal=B:USR1@<secs>).
TIMEOUT_SIGNALS = (signal.SIGUSR1,)


def notes_interval() -> float:
    return float(os.environ.get("GITEXP_NOTES_INTERVAL", "120"))


def kill_grace() -> float:
    return float(os.environ.get("GITEXP_KILL_GRACE", "10"))


def load_experiment_config(repo: Repo, sha: str) -> ExperimentConfig:
    raw = repo.show_file(sha, CONFIG_PATH)
    if raw is None:
        raise GitExpError(f"commit {sha[:12]} is not an experiment (no {CONFIG_PATH})")
    return parse_config(raw.decode(), source=f"{sha[:12]}:{CONFIG_PATH}", stored=True)


class Executor:
    def __init__(self, repo: Repo, store: Store, sha: str, echo: bool = False,
                 runner: str = "local", extra_env: Optional[Dict[str, str]] = None) -> None:
        self.repo = repo
        self.store = store
        self.sha = sha
        self.echo = echo
        self.runner = runner
        self.extra_env = extra_env or {}
        self.config = load_experiment_config(repo, sha)
        self.paths: RunPaths = run_paths(repo, sha)
        self.capture = metrics_mod.RegexCapture(self.config.metrics)
        self.proc: Optional[subprocess.Popen] = None
        self.stop_reason: Optional[str] = None
        self.signals_seen = 0
        self.saw_warning = False
        self.facts: Dict[str, Any] = {}
        self.tail: List[str] = []
        self.lock = threading.Lock()
        self.done = threading.Event()

    # -- the whole run ----------------------------------------------------------------------
    def execute(self) -> int:
        # Handlers first: a stop asked for at any moment from here on is honoured and recorded.
        old_handlers = self._install_signal_handlers()
        try:
            return self._execute()
        finally:
            self._restore_signal_handlers(old_handlers)

    def _execute(self) -> int:
        os.makedirs(self.paths.outdir, exist_ok=True)
        problems = check_requires(self.config.requires, self.paths.outdir, _visible_gpus())
        if problems:
            self._finish_summary("failed", None, reason="preflight: " + "; ".join(problems))
            self._say("gitexp: not started: " + "; ".join(problems))
            return 3
        self._prepare_worktree()
        started = time.time()
        self._start_program()
        assert self.proc is not None
        if self.stop_reason:  # a signal arrived while the program was being started
            self._stop_program(signal.SIGTERM)
        me = psutil.Process()
        self.details_base = self.store.details(self.sha)
        self.store.update_summary(self.sha, lambda s: {
            **s, "status": "running", "started": started, "host": socket.gethostname(),
            "pid": me.pid, "pid_started": me.create_time(), "runner": self.runner,
            "run_dir": self.paths.root, "outdir": self.paths.outdir, "exit_code": None, "reason": None,
        }, message="gitexp: start")
        self._write_exec_info(started)
        self.facts_thread = threading.Thread(target=self._collect_facts, daemon=True)
        self.facts_thread.start()
        flusher = threading.Thread(target=self._periodic, daemon=True)
        flusher.start()
        try:
            self._pump_output()
            code = self._wait()
        finally:
            self.done.set()
        status = self._status_for(code)
        self._finish_summary(status, code, started=started)
        shutil.rmtree(self.paths.worktree, ignore_errors=True)
        self.repo.maintain()
        if code < 0:
            return 128 - code
        return code

    def _status_for(self, code: int) -> str:
        if self.runner == "slurm" and (self.stop_reason == "killed" or (code < 0 and not self.stop_reason)):
            # Slurm signals every process of the job, the program often before us: ask
            # whether this was a cancel, the time limit or preemption.
            from .runners.slurm import stop_reason

            self.stop_reason = stop_reason(self.store.summary(self.sha), self.saw_warning,
                                           signalled=self.stop_reason == "killed")
        if self.stop_reason:
            return self.stop_reason
        if self.saw_warning and code != 0:
            return "timeout"  # warned of the time limit, then stopped without completing
        return "finished" if code == 0 else "failed"

    # -- setup ------------------------------------------------------------------------------
    def _prepare_worktree(self) -> None:
        """Check the commit out into ``wt/`` (no git admin state to clean after a kill)."""
        shutil.rmtree(self.paths.worktree, ignore_errors=True)
        os.makedirs(self.paths.worktree)
        self.repo.checkout_to(self.sha, self.paths.worktree)
        for rel in self.config.files:
            source = rel if os.path.isabs(rel) else os.path.join(self.repo.root, rel)
            target = os.path.join(self.paths.worktree, os.path.basename(rel) if os.path.isabs(rel) else rel)
            if os.path.lexists(target):
                continue
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.symlink(os.path.abspath(source), target)

    def _environment(self) -> Dict[str, str]:
        env = dict(os.environ)
        env.update(self.config.env)
        env.update({
            "GITEXP_EXP_ID": self.sha,
            "GITEXP_EXP_NAME": self.config.name,
            "GITEXP_RUN_DIR": self.paths.root,
            "GITEXP_OUTPUT_DIR": self.paths.outdir,
            "GITEXP_METRICS_FILE": self.paths.metrics,
            "GITEXP_CHECKPOINTS_FILE": self.paths.checkpoints,
            "GITEXP_PARAMS": json.dumps(self.config.params),
            "GITEXP_STOP_FILE": self.paths.stop_file,
            "PYTHONUNBUFFERED": env.get("PYTHONUNBUFFERED", "1"),
        })
        env.update(self.extra_env)
        return env

    def _start_program(self) -> None:
        builtins = {"outdir": self.paths.outdir, "name": self.config.name, "run_dir": self.paths.root}
        command = self.config.render_command(builtins)
        argv = command if isinstance(command, list) else [shutil.which("bash") or "/bin/sh", "-c", command]
        for stale in (self.paths.metrics, self.paths.checkpoints, self.paths.stop_file):
            if os.path.exists(stale):
                os.unlink(stale)
        self.log = open(self.paths.log, "ab")
        self.log.write(f"gitexp: running {command!r} in {self.paths.worktree}\n".encode())
        self.log.flush()
        try:
            self.proc = subprocess.Popen(
                argv, cwd=self.paths.worktree, env=self._environment(), stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
            )
        except OSError as exc:
            self.log.write(f"gitexp: could not start: {exc}\n".encode())
            self.log.close()
            self._finish_summary("failed", 127, reason=f"could not start: {exc}")
            raise GitExpError(f"could not start {argv[0]}: {exc}")

    def _write_exec_info(self, started: float) -> None:
        me = psutil.Process()
        info = {"pid": me.pid, "pid_started": me.create_time(), "host": socket.gethostname(),
                "child": self.proc.pid if self.proc else None, "started": started}
        tmp = self.paths.exec_info + ".tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(info, handle)
        os.replace(tmp, self.paths.exec_info)

    # -- while it runs ----------------------------------------------------------------------
    def _pump_output(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        pending = b""
        out = sys.stdout.buffer if self.echo else None
        while True:
            try:
                chunk = os.read(fd, 65536)
            except InterruptedError:
                continue
            if not chunk:
                break
            self.log.write(chunk)
            self.log.flush()
            if out is not None:
                out.write(chunk)
                out.flush()
            pending += chunk
            *lines, pending = pending.replace(b"\r", b"\n").split(b"\n")
            for line in lines:
                self._feed(line.decode(errors="replace"))
        if pending:
            self._feed(pending.decode(errors="replace"))
        self.log.close()

    def _feed(self, line: str) -> None:
        with self.lock:
            self.capture.feed(line)
            self.tail.append(line)
            if len(self.tail) > LOG_TAIL_LINES:
                del self.tail[0]

    def _wait(self) -> int:
        assert self.proc is not None
        while True:
            try:
                return self.proc.wait()
            except KeyboardInterrupt:  # only if a handler was not installed (not main thread)
                self._on_signal(signal.SIGINT, None)

    def _periodic(self) -> None:
        interval = notes_interval()
        last_notes = time.monotonic()
        while not self.done.wait(5.0):
            try:
                os.utime(self.paths.exec_info)
                if time.monotonic() - last_notes >= interval:
                    last_notes = time.monotonic()
                    self._write_progress()
            except (OSError, GitExpError) as exc:
                self._say(f"gitexp: could not record progress: {exc}")

    def _write_progress(self) -> None:
        history = self._history()
        summaries = metrics_mod.summarize(history, self.config.metrics)
        extra = {(METRICS_REF, self.sha): jsonl(history)}
        if self.facts:
            extra[(DETAILS_REF, self.sha)] = dump_json(self._details())

        def change(s: Dict[str, Any]) -> Optional[Dict[str, Any]]:
            if s.get("status") != "running":
                return None  # finished meanwhile; the final write has it all
            return {**s, "metrics": summaries, "updated": time.time()}

        self.store.update_summary(self.sha, change, extra=extra, message="gitexp: progress")

    def _collect_facts(self) -> None:
        self.facts = facts_mod.collect(self.repo.version())

    # -- signals ----------------------------------------------------------------------------
    def _install_signal_handlers(self) -> Dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        old = {}
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, *TIMEOUT_SIGNALS):
            old[sig] = signal.signal(sig, self._on_signal)
        return old

    def _restore_signal_handlers(self, old: Dict[int, Any]) -> None:
        for sig, handler in old.items():
            signal.signal(sig, handler)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        if signum in TIMEOUT_SIGNALS:
            # The time limit is near: tell the program's main process only (its helpers, such
            # as data-loader workers, would die of an unhandled SIGUSR1) and leave a stop file.
            self.saw_warning = True
            try:
                open(self.paths.stop_file, "a").close()
            except OSError:
                pass
            if self.proc is not None and self.proc.poll() is None:
                try:
                    os.kill(self.proc.pid, signum)
                except ProcessLookupError:
                    pass
            return
        if self.stop_reason is None:
            self.stop_reason = "killed"
        self.signals_seen += 1
        if self.signals_seen > 1:
            self._signal_group(signal.SIGKILL)  # asked twice: no more grace
            return
        self._stop_program(signum)

    def _stop_program(self, signum: int) -> None:
        """``signum`` to the program's whole process group, SIGKILL after the grace period."""
        self._signal_group(signum)
        timer = threading.Timer(kill_grace(), self._signal_group, args=(signal.SIGKILL,))
        timer.daemon = True
        timer.start()

    def _signal_group(self, signum: int) -> None:
        # The group may outlive the main process (a program that left children behind).
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    # -- the end ----------------------------------------------------------------------------
    def _history(self) -> List[Dict[str, Any]]:
        with self.lock:
            regex_points = list(self.capture.points)
        points = metrics_mod.read_points(self.paths.metrics) + regex_points
        points += metrics_mod.file_points(self.config.metrics, self.paths.outdir)
        return metrics_mod.merge(points)

    def _details(self) -> Dict[str, Any]:
        with self.lock:
            tail = "\n".join(self.tail)
        return {**getattr(self, "details_base", {}), "facts": self.facts, "log_tail": tail}

    def _finish_summary(self, status: str, code: Optional[int], started: Optional[float] = None,
                        reason: Optional[str] = None) -> None:
        ended = time.time()
        history = self._history()
        summaries = metrics_mod.summarize(history, self.config.metrics)
        checkpoints = metrics_mod.read_points(self.paths.checkpoints)
        thread = getattr(self, "facts_thread", None)
        if thread is not None:
            thread.join(timeout=30)
        if not self.facts:
            self._collect_facts()
        extra = {(METRICS_REF, self.sha): jsonl(history), (DETAILS_REF, self.sha): dump_json(self._details())}
        if reason is None and status == "failed" and code is not None:
            reason = f"exit code {code}" if code >= 0 else f"killed by signal {-code}"

        def change(s: Dict[str, Any]) -> Dict[str, Any]:
            new = {**s, "status": status, "ended": ended, "exit_code": code, "metrics": summaries,
                   "checkpoints": checkpoints[-20:], "reason": reason,
                   "outdir": self.paths.outdir, "run_dir": self.paths.root}
            if started is not None:
                new["duration"] = ended - started
            return new

        self.store.update_summary(self.sha, change, extra=extra, message=f"gitexp: {status}")

    def _say(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)


def _visible_gpus() -> Optional[List[int]]:
    raw = os.environ.get("CUDA_VISIBLE_DEVICES")
    if raw is None or raw.strip() == "":
        return None
    try:
        return [int(x) for x in raw.split(",") if x.strip()]
    except ValueError:
        return None
