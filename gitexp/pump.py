"""The executor's output pump: the program's output to ``output.log`` (and the terminal), its
lines to the metric regexes, the log tail and ``captured.jsonl``.

Output costs linear time however long a line is. The pump ends at the end of the output, or
once the program's main process has ended and its output is drained: whatever it left behind
holding the pipe (a ``setsid`` child, a daemon) cannot keep the run going (the executor then
stops those processes: :mod:`gitexp.supervisor`).
"""
from __future__ import annotations

import errno
import json
import os
import select
import subprocess
import sys
import threading
import time
from typing import Any, Deque, Dict, List, Optional, Tuple

from . import metrics as metrics_mod
from .paths import RunPaths
from .watch import BACKLOG_LIMIT, thin

DRAIN_QUIET = 0.5  # after the main process ended: the pipe quiet this long ends the output
DRAIN_MOST = 3.0  # ... and at most this long after it ended, however much still comes


class OutputPump:
    """Mixed into :class:`gitexp.executor.Executor`, whose state it uses."""

    proc: Optional["subprocess.Popen[bytes]"]
    paths: RunPaths
    log: Optional[Any]
    echo: bool
    capture: metrics_mod.RegexCapture
    budget: metrics_mod.MatchBudget
    tail: Deque[str]
    lock: threading.Lock
    killed_at: Optional[float]
    stop_reason: Optional[str]
    captured_file: Optional[Any]
    captured_lost: int  # failed writes of captured.jsonl
    unwritten: List[Dict[str, Any]]  # points not yet in captured.jsonl (a full disk)
    backlog: List[Dict[str, Any]]  # points not yet handed to the watchers
    thinned: int  # times the backlog was thinned (watch.thin): the watchers fell behind
    watching: bool = False
    ended_at: Optional[float] = None  # monotonic time the main process was seen ended
    quiet_since: float = 0.0

    def _say(self, text: str) -> None:
        raise NotImplementedError

    def _log_text(self, text: str) -> None:
        raise NotImplementedError

    def _pump_output(self) -> None:
        """Tee the output to output.log (and the terminal); lines to the regexes and the tail.

        Linear in the output however long a line is: only the first MAX_LINE bytes of a line
        are kept for matching, while every byte goes to output.log.
        """
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        splitter = metrics_mod.LineSplitter()
        poller = select.poll()  # unlike select(), any fd number
        poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        while True:
            chunk = self._read_output(poller, fd)
            if not chunk:
                break
            self._copy_out(chunk)
            self._feed_lines(splitter.push(chunk))
        self._feed_lines(splitter.finish())
        self.proc.stdout.close()
        if self.ended_at is None:
            self.ended_at = time.monotonic()

    def _read_output(self, poller: Any, fd: int) -> bytes:
        """The next chunk; b"" at the end of the output, or once the program's main process has
        ended and the pipe stayed quiet for DRAIN_QUIET seconds (at most DRAIN_MOST in all):
        a process it left behind (a ``setsid`` child, a daemon) may hold the pipe open for
        ever, and the run ends with its program."""
        assert self.proc is not None
        while True:
            if poller.poll(100 if self.ended_at is not None else 500):
                data = os.read(fd, 65536)
                if not data or self.ended_at is None or time.monotonic() - self.ended_at < DRAIN_MOST:
                    self.quiet_since = time.monotonic()
                    return data
                return b""
            now = time.monotonic()
            if self.ended_at is None and self.proc.poll() is not None:
                self.ended_at = self.quiet_since = now
            if self.ended_at is not None and (now - self.quiet_since > DRAIN_QUIET or now - self.ended_at > DRAIN_MOST):
                return b""
            if self.killed_at is not None and self.proc.poll() is not None and now - self.killed_at > 1.0:
                return b""

    def _copy_out(self, chunk: bytes) -> None:
        assert self.log is not None
        try:
            self.log.write(chunk)
        except OSError as exc:
            # A full disk must not stop the pump (the program would block on a full pipe):
            # the bytes are lost to output.log, still reach the tail, and the run goes on.
            if not getattr(self, "log_lost", 0):
                self._disk_trouble(self.paths.log, exc)
                self._say("gitexp: warning: output is not kept in output.log until there is space")
            self.log_lost = getattr(self, "log_lost", 0) + len(chunk)
        if self.echo:
            try:
                sys.stdout.buffer.write(chunk)
                sys.stdout.buffer.flush()
            except (OSError, ValueError):
                self.echo = False  # the terminal or pipe went away; output.log still has it all

    def _feed_lines(self, lines: List[Tuple[str, int]]) -> None:
        ctx = getattr(self, "ctx", None)
        if lines and ctx is not None:
            ctx.last_output = time.time()
        if lines:
            with self.budget.watching():  # one timer for the batch bounds each search in it
                for line, cut in lines:
                    self._feed(line, cut)
            self._append_captured()

    def _append_captured(self) -> None:
        """The batch's regex points to captured.jsonl, at once: ``git exp log``, ``show`` and
        ``metrics`` read a running run's points from there (``gitexp.live``), the notes are
        built from it (:mod:`gitexp.history_file`), and so can anyone. Then to the watchers.

        Nothing keeps the points once written: memory holds a batch, whatever the run prints.
        A failed write (a full disk) keeps the batch in :attr:`unwritten` and says at once that
        the disk is full; the next batch tries again, so no point is lost while space comes back.
        """
        new = self.capture.take()
        if not new and not self.unwritten:
            return
        if self.watching:
            with self.lock:
                self.backlog.extend(new)  # the watchers see every point as it comes, ...
                if len(self.backlog) > BACKLOG_LIMIT:  # ... unless they fall behind a flood
                    self.backlog = thin(self.backlog, BACKLOG_LIMIT // 2)
                    self.thinned += 1
        self.unwritten.extend(new)
        self._write_captured()

    def _write_captured(self) -> bool:
        """Write the points not yet in captured.jsonl; False (they are kept) when it failed."""
        if not self.unwritten:
            return True
        # After a failed write the file may end in a torn line: start on a line of our own.
        text = ("\n" if self.captured_lost else "") + "".join(json.dumps(r) + "\n" for r in self.unwritten)
        data = memoryview(text.encode())
        try:
            if self.captured_file is None:
                self.captured_file = open(self.paths.captured, "ab", buffering=0)
            while data:
                data = data[self.captured_file.write(data) or len(data):]
        except OSError as exc:
            if not self.captured_lost:
                self._disk_trouble(self.paths.captured, exc)
            self.captured_lost += 1
            return False
        self.unwritten = []
        return True

    def _disk_trouble(self, path: str, exc: OSError) -> None:
        """Say at once that a write failed, and when the disk is full, where the results are
        kept and that gitexp waits for space."""
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            self._say(f"gitexp: the disk is full (writing {path}: {exc.strerror}); the run goes on and its "
                      f"results are kept in {self.paths.root} (points in memory until they can be written); "
                      "gitexp waits for space to record them")
        else:
            self._say(f"gitexp: warning: cannot write {path}: {exc.strerror}; trying again with the next output")

    def _feed(self, line: str, cut: int = 0) -> None:
        if self.stop_reason is None:  # once stopping, leftover output is not worth a regex's time
            for warning in self.capture.feed(line):
                self._log_text(warning + "\n")
                self._say(warning)
        text = f"{line} [... {cut} more bytes]" if cut else line
        with self.lock:
            self.tail.append(text)
