"""How the executor stops a run's program, and what it does with the signals it gets.

* SIGINT, SIGTERM, SIGHUP (and SIGQUIT, SIGUSR2, SIGXCPU, SIGXFSZ, SIGPWR where they are not
  ignored: each would otherwise end the executor without a word) go to the program's process
  group; the run is recorded ``killed`` (``timeout`` when the runner says the time limit came);
  after ``GITEXP_KILL_GRACE`` seconds the group gets SIGKILL; a second signal kills at once.
  Each is written to the run directory's end record first (:func:`gitexp.rundirs.record_end`).
  A signal that comes after the program has ended changes nothing of how it ended.
* The time-limit warning (SIGUSR1 from Slurm or Grid Engine) creates ``$GITEXP_STOP_FILE`` and
  goes on to the program only as its config's ``warning_signal`` says: by default only to a
  process that handles SIGUSR1 (:func:`gitexp.supervisor.forward_warning`), since an unhandled
  SIGUSR1 kills. A program that does not handle it runs on to the limit and is recorded
  ``timeout``.
* When the program has ended, whatever it left running (in its group or out of it, found by
  the run's mark: :mod:`gitexp.supervisor`) is stopped and named in the log and the summary.
"""
from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from typing import Any, Dict, List, Optional

from .config import ExperimentConfig
from .metrics import MatchBudget
from .lifecycle import Status
from .paths import RunPaths
from .rundirs import record_end
from .supervisor import commands, describe, forward_warning, marked_pids, stop, warning_targets

# The runner's warning that the time limit is near (Slurm: --signal=B:USR1@<secs>).
TIMEOUT_SIGNALS = (signal.SIGUSR1,)
# Signals whose default action ends a process: taken as a stop (when not ignored) so that the
# executor records its end instead of vanishing.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
OTHER_FATAL = tuple(getattr(signal, name) for name in ("SIGQUIT", "SIGUSR2", "SIGXCPU", "SIGXFSZ", "SIGPWR")
                    if hasattr(signal, name))
LEFTOVER_GRACE = 3.0  # seconds leftovers get between SIGTERM and SIGKILL
EARLY_WARNING_WAIT = 10.0  # seconds a just-started program has to handle a warning that came early


class Stopping:
    """Mixed into :class:`gitexp.executor.Executor`, whose state it uses."""

    proc: Optional["subprocess.Popen[bytes]"]
    paths: RunPaths
    config: Optional[ExperimentConfig]
    budget: MatchBudget
    stop_reason: Optional[str]
    stop_signum: signal.Signals
    signals_seen: int
    saw_warning: bool
    killed_at: Optional[float]
    grace: float
    mark: str
    leftovers: List[Dict[str, object]]
    kill_detail: Optional[str] = None  # why a run recorded killed was stopped, when not the usual
    early_warning: int = 0  # a time-limit warning that came before the program was started

    def _log_text(self, text: str) -> None:
        raise NotImplementedError

    def _install_signal_handlers(self) -> Dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        old: Dict[int, Any] = {}
        for sig in (*STOP_SIGNALS, *TIMEOUT_SIGNALS):
            old[sig] = signal.signal(sig, self._on_signal)
        for sig in OTHER_FATAL:
            if signal.getsignal(sig) is signal.SIG_DFL:  # an ignored one (SIGUSR2 under Grid Engine) stays so
                old[sig] = signal.signal(sig, self._on_signal)
        self.budget.install()  # regex searches bounded by SIGALRM (main thread only)
        return old

    def _restore_signal_handlers(self, old: Dict[int, Any]) -> None:
        self.budget.uninstall()
        for sig, handler in old.items():
            signal.signal(sig, handler)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        if signum in TIMEOUT_SIGNALS:
            self._time_limit_warning(signum)
            return
        name = signal.Signals(signum).name
        record_end(self.paths.root, "signal", f"got {name} (signal {signum})")
        if self.proc is not None and self.proc.poll() is not None and self.stop_reason is None:
            return  # the program has ended on its own: the run ends as it did (leftovers are stopped)
        if self.stop_reason is None:
            self.stop_reason = Status.KILLED
            self.stop_signum = signal.Signals(signum)
            if signum in OTHER_FATAL:
                self.kill_detail = f"its executor got {name}"
                self._log_text(f"gitexp: the executor got {name}; stopping the program\n")
        self.signals_seen += 1
        if self.signals_seen > 1:
            self._signal_group(signal.SIGKILL)  # asked twice: no more grace
            return
        self._stop_program(signal.SIGTERM if signum in OTHER_FATAL else signum)

    def _time_limit_warning(self, signum: int) -> None:
        """Leave the stop file; pass the warning on as ``warning_signal`` says (see the module)."""
        self.saw_warning = True
        try:
            open(self.paths.stop_file, "a").close()
        except OSError:
            pass
        if self.proc is None:
            # A scheduler may send it early (Slurm: up to a minute before the time asked), even
            # before the program is running: it is judged once the program runs.
            self.early_warning = signum
            return
        if self.proc.poll() is not None:
            return
        mode = self.config.warning_signal if self.config is not None else "auto"
        name = signal.Signals(signum).name
        sent = forward_warning(self.proc.pid, mode, signum)
        if sent:
            how = mode if mode.startswith("SIG") else name
            self._log_text(f"gitexp: the time limit is near ({name}): passed on as {how} to pid "
                           f"{', '.join(map(str, sent))}; $GITEXP_STOP_FILE created\n")
        else:
            why = "warning_signal: never" if mode == "never" else f"the program does not handle {name}"
            self._log_text(f"gitexp: the time limit is near ({name}); not passed on ({why}: it would die of it). "
                           "It runs until the limit and is recorded timeout; $GITEXP_STOP_FILE created "
                           "(set warning_signal in the config to pass it on)\n")

    def _judge_early_warning(self) -> None:
        """A warning that came before the program started, judged now that it runs: with
        ``warning_signal: auto`` the program gets up to EARLY_WARNING_WAIT seconds to install
        its handler (its imports come first), then it is passed on or said not to be."""
        signum = self.early_warning
        if not signum or self.proc is None:
            return
        proc = self.proc
        auto = (self.config.warning_signal if self.config is not None else "auto") == "auto"

        def judge() -> None:
            deadline = time.monotonic() + EARLY_WARNING_WAIT
            while auto and proc.poll() is None and time.monotonic() < deadline \
                    and not warning_targets(proc.pid, signum):
                time.sleep(0.2)
            if proc.poll() is not None:
                self._log_text(f"gitexp: the time limit is near ({signal.Signals(signum).name}, sent before the "
                               "program started); the program ended before it was passed on\n")
                return
            self._time_limit_warning(signum)

        threading.Thread(target=judge, daemon=True).start()

    def _stop_program(self, signum: int) -> None:
        """``signum`` to the program's whole process group, SIGKILL after the grace period."""
        self._signal_group(signum)
        timer = threading.Timer(self.grace, self._signal_group, args=(signal.SIGKILL,))
        timer.daemon = True
        timer.start()

    def _signal_group(self, signum: int) -> None:
        # The group may outlive the main process (a program that left children behind).
        if self.proc is None:
            return
        if signum == signal.SIGKILL and self.killed_at is None:
            self.killed_at = time.monotonic()
        try:
            os.killpg(self.proc.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    def _stop_leftovers(self) -> None:
        """The program has ended: stop what it left running (in its group or out of it) and say which."""
        if self.proc is None or self.proc.poll() is None:
            return
        pids = marked_pids(self.mark)
        group = _group_alive(self.proc.pid)
        if not pids and not group:
            return
        what = describe(pids) if pids else "processes of its process group"
        self.leftovers = commands(pids) or [{"pid": None, "command": "(its process group)"}]
        stubborn = stop(pids, LEFTOVER_GRACE)
        if _group_alive(self.proc.pid):
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        how = "SIGTERM, then SIGKILL" if stubborn else "SIGTERM"
        self._log_text(f"gitexp: the program ended but left {len(pids) or 'some'} process(es) running: {what}; "
                       f"stopped them ({how})\n")


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False
