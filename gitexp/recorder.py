"""The executor's records while a run goes and at its end: the heartbeat, progress notes every
``GITEXP_NOTES_INTERVAL`` seconds, and the final summary, history and details.

The history is built from the run directory's files in bounded memory
(:mod:`gitexp.history_file`) and stored as a blob written from a file; the end is first kept in
the run directory (:mod:`gitexp.endstate`), so a full disk delays its record but never loses it.
"""
from __future__ import annotations

import json
import os
import threading
import time
from .lifecycle import Status
from typing import Any, Deque, Dict, List, Optional

from . import endstate
from . import facts as facts_mod
from . import history_file
from . import metrics as metrics_mod
from .config import ExperimentConfig
from .errors import DiskFull, GitExpError
from .notes import DETAILS_REF, METRICS_REF, Store, dump_json
from .paths import HEARTBEAT_SECONDS, RunPaths
from .repo import Repo
from .rundirs import RECORDED_OUTPUTS, list_outputs

TAIL_BYTES = 64 * 1024  # the most the log tail may take in the details note (as JSON)


class Recorder:
    """Mixed into :class:`gitexp.executor.Executor`, whose state it uses."""

    repo: Repo
    store: Store
    sha: str
    paths: RunPaths
    config: Optional[ExperimentConfig]
    interval: float
    done: threading.Event
    lock: threading.Lock
    tail: Deque[str]
    facts: Dict[str, Any]
    leftovers: List[Dict[str, object]]
    stop_reason: Optional[str]
    kill_detail: Optional[str]
    unwritten: List[Dict[str, Any]]
    thinned: int
    patience: float
    watchers: Any

    def _say(self, text: str) -> None:
        raise NotImplementedError

    def _write_captured(self) -> bool:
        raise NotImplementedError

    def _stop_program(self, signum: int) -> None:
        raise NotImplementedError

    # -- while it runs ------------------------------------------------------------------------
    def _periodic(self) -> None:
        last_notes = time.monotonic()
        while not self.done.wait(HEARTBEAT_SECONDS):
            try:
                present = self._heartbeat()
                if present and time.monotonic() - last_notes >= self.interval:
                    last_notes = time.monotonic()
                    present = self._write_progress()
                if not present:
                    self._abandon()
                    return
            except (OSError, GitExpError) as exc:
                self._say(f"gitexp: could not record progress: {exc}")

    def _heartbeat(self) -> bool:
        """Touch exec.json; False if the run's directory and its summary note were removed."""
        try:
            os.utime(self.paths.exec_info)
            return True
        except FileNotFoundError:
            return bool(self.store.summary(self.sha))

    def _abandon(self) -> None:
        """The experiment was removed (``git exp rm --force``) under us: stop its program."""
        import signal

        self._say(f"gitexp: experiment {self.sha[:12]} was removed; stopping its program")
        if self.stop_reason is None:
            self.stop_reason = Status.KILLED
            self._stop_program(signal.SIGTERM)

    def _write_progress(self) -> bool:
        """Progress notes while running; False if the experiment's note is gone."""
        built = self._build()
        try:
            extra: Dict[Any, Optional[bytes]] = {}
            if built.path:
                extra[(METRICS_REF, self.sha)] = history_file.write_blob(self.repo, built.path)
            if self.facts:
                extra[(DETAILS_REF, self.sha)] = dump_json(self._with_curve(self._details(), built))
            present = [True]
            watched = self.watchers.summary_fields() if getattr(self, "watchers", None) else {}

            def change(s: Dict[str, Any]) -> Optional[Dict[str, Any]]:
                present[0] = bool(s)
                if s.get("status") != Status.RUNNING:
                    return None  # removed, or finished meanwhile (the final write has it all)
                return {**s, **watched, "metrics": built.summaries, "curve": built.curve is not None,
                        "updated": time.time()}

            self.store.update_summary(self.sha, change, extra=extra, message="gitexp: progress")
            return present[0]
        finally:
            built.remove()

    def _collect_facts(self) -> None:
        try:
            self.facts = facts_mod.collect(self.repo.version())
        except Exception as exc:  # noqa: BLE001 - facts are nice to have; never fail a run on them
            self.facts = {"error": f"{type(exc).__name__}: {exc}"}

    # -- the history ----------------------------------------------------------------------------
    def _specs(self) -> Dict[str, Any]:
        return dict(self.config.metrics) if self.config is not None else {}

    def _file_records(self) -> List[Dict[str, Any]]:
        return metrics_mod.file_records(self._specs(), self.paths.outdir, self.paths.worktree)

    def _build(self) -> history_file.Built:
        """The history so far, from the run directory (as ``gitexp.live`` reads it)."""
        self._write_captured()
        return history_file.build(self.paths.metrics, self.paths.captured, self._file_records(), self._specs(),
                                  self.paths.root)

    @staticmethod
    def _with_curve(details: Dict[str, Any], built: history_file.Built) -> Dict[str, Any]:
        curve = history_file.curve_field(built)
        if curve is None:
            return {k: v for k, v in details.items() if k != history_file.CURVE_KEY}
        return {**details, history_file.CURVE_KEY: curve}

    def _details(self) -> Dict[str, Any]:
        with self.lock:
            lines = list(self.tail)
        watched = self.watchers.details_fields() if getattr(self, "watchers", None) is not None else {}
        details = {**getattr(self, "details_base", {}), **watched, "facts": self.facts,
                   "log_tail": bounded_tail(lines)}
        lost = getattr(self, "log_lost", 0)
        if lost:
            details["log_bytes_lost"] = lost
        if self.thinned:  # the watchers fell behind a flood and saw each stretch's extremes
            details["watch_thinned"] = self.thinned
        return details

    # -- the end --------------------------------------------------------------------------------
    def _finish_summary(self, status: str, code: Optional[int], started: Optional[float] = None,
                        reason: Optional[str] = None) -> None:
        """Record the end: first in the run directory (end.json), then in the notes. While the disk
        is full it waits (saying so at once) up to GITEXP_FULL_DISK_WAIT seconds; then it raises
        EndKept and the end stays on disk for the next command (:mod:`gitexp.endstate`)."""
        ended = time.time()
        thread = getattr(self, "facts_thread", None)
        if thread is not None:
            thread.join(timeout=30)
        if not self.facts:
            self._collect_facts()
        # What the run left, for `show` on other machines (a target's out/ is not here).
        self.details_base = {**getattr(self, "details_base", {}),
                             "outputs": list_outputs(self.paths.outdir, RECORDED_OUTPUTS)}
        fields = self._end_fields(status, code, ended, started, reason)
        details = self._details()
        deadline = time.monotonic() + self.patience
        where = self.paths.root

        def keep() -> None:
            # Points a full disk kept out of captured.jsonl go into end.json (while they fit).
            points = [] if self._write_captured() else self.unwritten
            endstate.write_state(where, {"status": status, "fields": fields, "details": details, "points": points})

        try:
            endstate.until_space(keep, deadline, self._say, where)
            records = self._file_records()
            if self.unwritten:
                endstate.until_space(lambda: self._write_captured() or _no_space(), deadline, self._say, where)
            endstate.until_space(lambda: endstate.record(
                self.repo, self.store, self.sha, self.paths, self._specs(), status, fields, details, records,
                patience=0.0), deadline, self._say, where)
            endstate.clear(where)
        except DiskFull as exc:
            kept = endstate.read_state(where) is not None
            text = (f"the disk stayed full for {self.patience:g}s: {status} (exit code {code}) is not recorded yet; "
                    + (f"it is kept in {where} with the run's points, and the next git exp command that looks at "
                       "this run (git exp log, show, queue) or git exp fsck --repair records it; it never runs again"
                       if kept else f"free space: its points are in {where}"))
            self._say(f"gitexp: {text}")
            if kept:
                raise endstate.EndKept(text) from exc
            raise

    def _end_fields(self, status: str, code: Optional[int], ended: float, started: Optional[float],
                    reason: Optional[str]) -> Dict[str, Any]:
        if reason is None and status == Status.FAILED and code is not None:
            reason = f"exit code {code}" if code >= 0 else f"killed by signal {-code}"
        if status == Status.STOPPED and reason is None:
            reason = getattr(self, "stop_detail", None)
        if status == Status.KILLED and reason is None:
            reason = self.kill_detail
        checkpoints = metrics_mod.read_checkpoints(self.paths.checkpoints)
        fields: Dict[str, Any] = {"ended": ended, "exit_code": code, "checkpoints": checkpoints[-20:],
                                  "reason": reason, "outdir": self.paths.outdir, "run_dir": self.paths.root}
        if started is not None:
            fields["duration"] = ended - started
        if self.leftovers:
            fields["leftovers"] = self.leftovers
        if getattr(self, "watchers", None) is not None:
            fields.update(self.watchers.summary_fields())
        return fields


def _no_space() -> bool:
    raise OSError(28, "No space left on device")


def bounded_tail(lines: List[str]) -> str:
    """The last lines whose JSON encoding fits TAIL_BYTES (each line is already cut)."""
    kept: List[str] = []
    size = 0
    for line in reversed(lines):
        size += len(json.dumps(line))
        if size > TAIL_BYTES:
            break
        kept.append(line)
    return "\n".join(reversed(kept))
