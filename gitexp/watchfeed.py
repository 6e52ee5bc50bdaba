"""The executor's feed of its run watchers (:mod:`gitexp.watch`): every new point as it comes
(regex points handed over by the output pump, the Python API's file read from its offset,
TensorBoard scalars) and a tick each second, from a thread of its own."""
from __future__ import annotations

import signal
import threading
import time
from typing import Any, Dict, List, Optional, Set, Tuple

from . import metrics as metrics_mod
from . import tfevents
from .config import ExperimentConfig
from .notes import parse_jsonl
from .lifecycle import Status
from .paths import RunPaths
from .watch import TICK_SECONDS, RunContext, Watchers
from .watchers import factories as watcher_factories


class WatcherFeed:
    """Mixed into :class:`gitexp.executor.Executor`, whose state it uses."""

    sha: str
    config: Optional[ExperimentConfig]
    paths: RunPaths
    proc: Any
    done: threading.Event
    lock: threading.Lock
    backlog: List[Dict[str, Any]]
    watching: bool
    stop_reason: Optional[str]

    def _say(self, text: str) -> None:
        raise NotImplementedError

    def _stop_program(self, signum: int) -> None:
        raise NotImplementedError

    def _specs(self) -> Dict[str, Any]:
        raise NotImplementedError

    def _start_watchers(self, started: float) -> None:
        assert self.config is not None and self.proc is not None
        self.ctx = RunContext(self.sha, self.config.name, self.config, self.paths, self.proc.pid, started,
                              self._stop_for, self._say)
        self.watchers = Watchers(self.ctx, watcher_factories())
        self.api_offset = 0
        self.tfevents_seen: Set[Tuple[Any, ...]] = set()
        tfevents.SHARED.warn = self._say  # a corrupt event file is one line in output.log
        self.watching = bool(self.watchers.active)
        if self.watchers.active:
            threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self) -> None:
        while not self.done.wait(TICK_SECONDS):
            self._feed_watchers()

    def _feed_watchers(self) -> None:
        """New points (regex-captured and API) and a tick to every watcher."""
        with self.lock:
            new, self.backlog = self.backlog, []  # the pump adds each batch as it is written
        try:
            with open(self.paths.metrics, "rb") as handle:
                handle.seek(self.api_offset)
                data = handle.read()
            whole = data[:data.rfind(b"\n") + 1]  # a torn last line waits for the next round
            self.api_offset += len(whole)
            new = new + parse_jsonl(whole)
        except OSError:
            pass
        self.watchers.points(list(new) + self._new_tfevents())
        self.watchers.tick(time.time())

    def _new_tfevents(self) -> List[Dict[str, Any]]:
        """TensorBoard scalars that appeared since the last round (each file read from its offset)."""
        out = []
        for record in metrics_mod.tfevents_records(self._specs(), self.paths.outdir, self.paths.worktree):
            key = (record["metric"], record["step"], record["time"], record["value"])
            if key not in self.tfevents_seen:
                self.tfevents_seen.add(key)
                out.append(record)
        return out

    def _stop_for(self, reason: str) -> None:
        """A watcher's stop (a diagnostic rule): the run ends ``stopped`` with ``reason``."""
        if self.stop_reason is None:
            self.stop_reason = Status.STOPPED
            self.stop_detail = reason
            self._stop_program(signal.SIGTERM)
