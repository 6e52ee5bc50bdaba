"""Watchers: modules that follow a run as the executor runs it, without growing the executor.

The executor owns the process, the output and the notes; everything that only *looks* at a
run (resource sampling, diagnostics, checkpoint files appearing) is a :class:`Watcher`. The
executor builds one per factory of :func:`gitexp.watchers.factories` (the one list of them, in
order) when the program starts and calls it from one watch thread:

* :meth:`Watcher.on_points` with the metric records that arrived since the last call,
  regex-captured and ``gitexp.log`` points alike, all in the history's shape
  ``{"step", "time", <metric>: value}`` (:func:`as_point` turns a captured record
  ``{"metric", "value", "step", "time", "src"}`` into that shape, so no watcher sees two shapes);
* :meth:`Watcher.on_tick` about every :data:`TICK_SECONDS` (a watcher keeps its own pace);
* :meth:`Watcher.on_end` once the program ended, before the final notes are written.

A watcher adds to the notes through :meth:`Watcher.summary_fields` (small: merged into the
summary note) and :meth:`Watcher.details_fields` (merged into the details note), read at
every progress write and at the end. It may stop the run with :meth:`RunContext.stop`
(status ``stopped``, with the reason) and record an alert with :meth:`RunContext.alert`.
A watcher that raises is reported once and dropped; it never fails the run.

State changes (started, finished, failed, ...) are not a watcher's business: listen to
them with :func:`gitexp.lifecycle.listen`.
"""
from __future__ import annotations

import math
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Set

TICK_SECONDS = 1.0


class RunContext:
    """What a watcher may know about its run and ask of the executor."""

    def __init__(self, sha: str, name: str, config: Any, paths: Any, pid: int, started: float,
                 stop: Callable[[str], None], say: Callable[[str], None]) -> None:
        self.sha = sha
        self.name = name
        self.config = config  # gitexp.config.ExperimentConfig
        self.paths = paths  # gitexp.paths.RunPaths (out/, logs, the worktree)
        self.pid = pid  # the program's main process (its process group has the same id)
        self.started = started
        self._stop = stop
        self._say = say
        self.alerts: List[Dict[str, Any]] = []
        self.last_output = started  # time of the last output line (stall detection)
        self.monitor: Optional[Any] = None  # the resource sampler (gitexp.monitor), read by diagnostics
        self.lock = threading.Lock()

    def stop(self, reason: str) -> None:
        """Stop the program (SIGTERM to its group, SIGKILL after the grace); status ``stopped``."""
        self._stop(reason)

    def alert(self, rule: str, message: str, action: str = "warn", **data: Any) -> Dict[str, Any]:
        """Record an alert (kept in the summary note, shown by show and log) and print it."""
        record = {"rule": rule, "message": message, "action": action, "time": time.time(), **data}
        with self.lock:
            self.alerts.append(record)
        self._say(f"gitexp: alert ({rule}): {message}")
        return record

    def say(self, text: str) -> None:
        self._say(text)


class Watcher:
    """Override what you need; every method is optional."""

    def on_points(self, records: List[Dict[str, Any]]) -> None:
        pass

    def on_tick(self, now: float) -> None:
        pass

    def on_end(self, status: str) -> None:
        pass

    def summary_fields(self) -> Dict[str, Any]:
        return {}

    def details_fields(self) -> Dict[str, Any]:
        return {}


CAPTURED_KEYS = frozenset(("metric", "value", "step", "time", "src"))


def as_point(record: Dict[str, Any]) -> Dict[str, Any]:
    """A record in the history's shape: a captured record (a regex or metrics-file point,
    ``{"metric", "value", "step", "time", "src"}``) becomes ``{"step", "time", <metric>: value}``;
    an API point already is one."""
    if set(record) == CAPTURED_KEYS and isinstance(record.get("metric"), str):
        return {"step": record.get("step"), "time": record.get("time"), record["metric"]: record.get("value")}
    return record


BACKLOG_LIMIT = 40_000  # captured points waiting for the watchers before the backlog is thinned


def thin(records: List[Dict[str, Any]], keep: int) -> List[Dict[str, Any]]:
    """At most about ``keep`` of ``records`` (captured points waiting for the watchers), in
    their order: per metric, each stretch's first, last, lowest and highest value, and its first
    value that is not a finite number, so what the diagnostics look for survives (a NaN, a
    divergence, the best so far, the latest point) and a program printing NaN for ever still
    holds a bounded backlog. The executor thins its backlog this way
    when a program prints points faster than the watchers' thread can take them (a flood of
    output on a busy machine): memory stays bounded and no alert is missed.
    """
    by_metric: Dict[Any, List[int]] = {}
    for i, record in enumerate(records):
        by_metric.setdefault(record.get("metric"), []).append(i)
    per_metric = max(4, keep // max(1, len(by_metric)))
    kept: Set[int] = set()
    for indices in by_metric.values():
        if len(indices) <= per_metric:
            kept.update(indices)
            continue
        size = max(1, -(-len(indices) * 4 // per_metric))
        for start in range(0, len(indices), size):
            stretch = indices[start:start + size]
            numbers, odd = [], None
            for i in stretch:
                value = records[i].get("value")
                if value.__class__ in (int, float) and math.isfinite(value):
                    numbers.append((value, i))
                elif odd is None:
                    odd = i  # the first NaN, inf, string or bool: the watchers judge it
            kept.update((stretch[0], stretch[-1]) if odd is None else (stretch[0], stretch[-1], odd))
            if numbers:
                kept.update((min(numbers)[1], max(numbers)[1]))
    return [records[i] for i in sorted(kept)]


Factory = Callable[[RunContext], Optional[Watcher]]
# Each returns a watcher for the run, or None when it has nothing to watch (e.g. no
# `checkpoints:` in the config). The built-in ones are listed in gitexp.watchers.


class Watchers:
    """The executor's side: build, feed and drain every watcher of one run."""

    def __init__(self, ctx: RunContext, factories: Sequence[Factory]) -> None:
        self.ctx = ctx
        self.active: List[Watcher] = []
        for factory in factories:
            watcher = self._guard(factory, ctx)
            if watcher is not None:
                self.active.append(watcher)

    def _guard(self, call: Callable[..., Any], *args: Any) -> Any:
        try:
            return call(*args)
        except Exception as exc:  # noqa: BLE001 - a watcher's bug must not fail the run
            self.ctx.say(f"gitexp: warning: a run watcher failed ({type(exc).__name__}: {exc}); it is turned off")
            return None

    def _each(self, method: str, *args: Any) -> None:
        for watcher in list(self.active):
            try:
                getattr(watcher, method)(*args)
            except Exception as exc:  # noqa: BLE001
                self.ctx.say(f"gitexp: warning: run watcher {type(watcher).__name__} failed "
                             f"({type(exc).__name__}: {exc}); it is turned off")
                self.active.remove(watcher)

    def points(self, records: List[Dict[str, Any]]) -> None:
        if records:
            self._each("on_points", [as_point(r) for r in records])

    def tick(self, now: float) -> None:
        self._each("on_tick", now)

    def end(self, status: str) -> None:
        self._each("on_end", status)

    def summary_fields(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {}
        for watcher in list(self.active):
            out.update(self._guard(watcher.summary_fields) or {})
        with self.ctx.lock:
            if self.ctx.alerts:
                out["alerts"] = list(self.ctx.alerts[-50:])
        return out

    def details_fields(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {}
        for watcher in list(self.active):
            out.update(self._guard(watcher.details_fields) or {})
        return out
