"""Metric capture (regexes over output, metrics files, the Python API) and summaries.

A history is a list of records ``{"step": 3, "time": ..., "val_err": 0.2, "loss": 0.4}``:
points logged at the same step are merged into one record.
"""
from __future__ import annotations

import bisect
import contextlib
import json
import math
import os
import re
import signal
import threading
import time
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Set, Tuple

from . import tfevents
from .config import MetricSpec
from .notes import parse_jsonl
from .numbers import SPARK_POINTS as SPARK_POINTS, finite_number as finite_number, is_number as is_number
from .numbers import parse_spark as parse_spark, spark_series, spark_text as spark_text  # "as": re-exported
from .paths import RunPaths


MAX_LINE = 4096  # characters of a line that regexes (and the log tail) see
MATCH_SECONDS = 0.5  # the most one regex search may take before its metric's regex is turned off


class MatchTimeout(Exception):
    """A regex search ran past its time budget (raised from the SIGALRM handler)."""


class MatchBudget:
    """Bounds the time one ``pattern.search`` may take, with a SIGALRM timer.

    Why a timer and not a thread: CPython's regex engine keeps the GIL for the whole search,
    so a catastrophic pattern in a helper thread would starve the main thread (and with it
    every signal handler). The engine does check for signals every few thousand steps, so a
    handler that raises ends the search. Signals reach the main thread only: elsewhere
    :meth:`install` returns False and searches run unbounded (lines are still cut to
    :data:`MAX_LINE`).

    The timer is armed once per batch of lines (:meth:`watching`), not per search (a
    setitimer per search made capture six times slower); when it fires, the handler ends
    the search under way if that one has run for the whole budget, else it re-arms.
    """

    def __init__(self, seconds: float = MATCH_SECONDS) -> None:
        self.seconds = seconds
        self.installed = False
        self.active = False  # inside watching()
        self.in_search = False
        self.search_started = 0.0
        self.old: Any = None

    def install(self) -> bool:
        if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
            return False
        self.old = signal.signal(signal.SIGALRM, self._on_alarm)
        self.installed = True
        return True

    def uninstall(self) -> None:
        if self.installed:
            self.active = False
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self.old)
            self.installed = False

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        """Searches in this block are bounded (when installed)."""
        if not self.installed or self.active:
            yield
            return
        self.active = True
        signal.setitimer(signal.ITIMER_REAL, self.seconds)
        try:
            yield
        finally:
            self.active = False
            signal.setitimer(signal.ITIMER_REAL, 0)

    def _on_alarm(self, _signum: int, _frame: Any) -> None:
        if not self.active:
            return  # a late alarm after the batch ended
        left = self.seconds
        if self.in_search:
            left -= time.monotonic() - self.search_started
            if left <= 0:
                self.in_search = False
                raise MatchTimeout()
        signal.setitimer(signal.ITIMER_REAL, max(left, 0.001))

    def search(self, pattern: "re.Pattern[str]", line: str) -> Optional["re.Match[str]"]:
        self.search_started = time.monotonic()
        self.in_search = True
        try:
            return pattern.search(line)
        finally:
            self.in_search = False


class RegexCapture:
    """Turns output lines into points for metrics that declare a ``regex``.

    Each line is cut to :data:`MAX_LINE` characters, and a regex whose search runs past the
    budget is turned off for the rest of the run (a warning says so): no regex can stall the
    executor for more than one budget.

    Points are captured records (:func:`captured_record`): ``{"metric", "value", "step",
    "time", "src"}``, where ``src`` says where the step came from (see :data:`STEP_SOURCES`).
    The step regexes of a line are searched before the metric regexes, so the step printed on
    a line applies to the metrics on that same line.
    """

    def __init__(self, specs: Mapping[str, MetricSpec], budget: Optional[MatchBudget] = None) -> None:
        self.rules = [(name, re.compile(spec.regex), spec.step or "count", spec.step_regex)
                      for name, spec in specs.items() if spec.regex]
        # One search per distinct step regex and line, however many metrics share it.
        self.step_rules = {text: re.compile(text) for _, _, mode, text in self.rules if mode == "regex" and text}
        self.step_now: Dict[str, int] = {}  # step regex -> the latest step it matched
        self.budget = budget or MatchBudget()
        self.counts: Dict[str, int] = {}
        # Points found since the last take(): the executor takes them after each batch of output
        # (to captured.jsonl and the watchers), so memory holds one batch, never the run's points.
        self.points: List[Dict[str, Any]] = []
        self.warnings: List[str] = []

    def take(self) -> List[Dict[str, Any]]:
        """The points found since the last call (and no longer kept here)."""
        taken, self.points = self.points, []
        return taken

    def feed(self, line: str) -> List[str]:
        """Capture from one line; returns warnings raised by this line (regexes turned off)."""
        line = line[:MAX_LINE]
        now = time.time()
        warnings: List[str] = []
        for text, pattern in list(self.step_rules.items()):
            try:
                match = self.budget.search(pattern, line)
            except MatchTimeout:
                del self.step_rules[text]
                warnings.append(f"gitexp: step regex {text!r}: it took more than {self.budget.seconds:g}s on one "
                                "line; it is off for the rest of this run (its metrics keep the last step it found)")
                continue
            if match:
                step = _int_or_none(match.groupdict().get("step") or match.group(1))
                if step is not None:
                    self.step_now[text] = step
        for rule in list(self.rules):
            name, pattern = rule[0], rule[1]
            try:
                match = self.budget.search(pattern, line)
            except MatchTimeout:
                self.rules.remove(rule)
                warnings.append(f"gitexp: metric '{name}': its regex took more than {self.budget.seconds:g}s "
                                f"on one line; regex capture of '{name}' is off for the rest of this run")
                continue
            if match:
                self._add(rule, match, now)
        self.warnings += warnings
        return warnings

    def _add(self, rule: Tuple[str, Any, str, Optional[str]], match: "re.Match[str]", now: float) -> None:
        name, _pattern, mode, step_regex = rule
        groups = match.groupdict()
        raw = groups.get("value") or match.group(1)
        try:
            value = float(raw)
        except (TypeError, ValueError):
            return
        self.counts[name] = self.counts.get(name, 0) + 1
        step = _int_or_none(groups.get("step"))
        if step is not None:
            src = "group"
        elif mode == "regex":
            step, src = self.step_now.get(step_regex or "", 0), "regex"  # 0: before the first step line
        elif mode == "latest":
            step, src = None, "latest"  # resolved when the history is built (resolve_latest)
        else:
            step, src = self.counts[name], "count"
        self.points.append(captured_record(name, value, step, now, src))


STEP_SOURCES = ("api", "file", "group", "regex", "latest", "count")


def captured_record(name: str, value: Any, step: Any, when: Optional[float], src: str) -> Dict[str, Any]:
    """One regex point as the executor appends it to ``captured.jsonl`` (one JSON line each).

    The metric's name is a value, never a key, so no metric name can clash with the fields.
    """
    return {"metric": name, "value": value, "step": step, "time": when, "src": src}


def _int_or_none(raw: Any) -> Optional[int]:
    if raw is None:
        return None
    try:
        return int(raw)
    except (TypeError, ValueError):
        return None


class LineSplitter:
    """Output bytes in, lines out, in time linear in the bytes however long a line grows.

    Only the first ``limit`` bytes of a line are kept (the whole line still goes to
    ``output.log``); ``\r`` ends a line too (progress bars).
    """

    def __init__(self, limit: int = MAX_LINE) -> None:
        self.limit = limit
        self.partial = bytearray()
        self.cut = 0  # bytes of the current line dropped beyond the limit

    def push(self, chunk: bytes) -> List[Tuple[str, int]]:
        """(text, bytes cut) for every line the chunk completes."""
        pieces = chunk.replace(b"\r", b"\n").split(b"\n")
        lines = []
        for piece in pieces[:-1]:
            self._keep(piece)
            lines.append(self._take())
        self._keep(pieces[-1])
        return lines

    def finish(self) -> List[Tuple[str, int]]:
        """The last line, if the output did not end with a newline."""
        return [self._take()] if self.partial or self.cut else []

    def _keep(self, piece: bytes) -> None:
        room = self.limit - len(self.partial)
        if room > 0:
            self.partial += piece[:room]
        self.cut += max(0, len(piece) - max(room, 0))

    def _take(self) -> Tuple[str, int]:
        line = (bytes(self.partial).decode(errors="replace"), self.cut)
        self.partial = bytearray()
        self.cut = 0
        return line


def read_points(path: str) -> List[Dict[str, Any]]:
    if not os.path.exists(path):
        return []
    with open(path, "rb") as handle:
        return parse_jsonl(handle.read())


def read_checkpoints(path: str) -> List[Dict[str, Any]]:
    """Checkpoint pointers the program recorded, with malformed ones dropped or mended.

    The file is the program's to write (by hand or through an older API), so nothing in it
    is trusted: ``path`` must be a string (else the record is dropped); ``size`` a
    non-negative int, ``step`` an int, ``time`` a number and ``host`` a string, else None.
    """
    return [r for r in (checkpoint_record(record) for record in read_points(path)) if r is not None]


def checkpoint_record(record: Any) -> Optional[Dict[str, Any]]:
    """One pointer with its known fields mended (None when it names no path); also used on
    pointers read back from summary notes, which are just as untrusted."""
    if not isinstance(record, dict) or not isinstance(record.get("path"), str) or not record["path"] \
            or "\0" in record["path"]:
        return None
    record = dict(record)
    assert isinstance(record, dict)
    size, step = record.get("size"), record.get("step")
    record["size"] = size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else None
    record["step"] = step if isinstance(step, int) and not isinstance(step, bool) else None
    record["time"] = record.get("time") if is_number(record.get("time")) else None
    record["host"] = record.get("host") if isinstance(record.get("host"), str) else None
    return record


def file_records(specs: Mapping[str, MetricSpec], base_dir: str, work_dir: Optional[str] = None
                 ) -> List[Dict[str, Any]]:
    """Points from metrics files the program wrote (a JSON object, or JSON lines), as
    captured records: a record's ``step`` is its step (src "file"), else its position (src
    "count"); and from TensorBoard event files (:func:`tfevents_records`)."""
    points = tfevents_records(specs, base_dir, work_dir)
    for name, spec in specs.items():
        if not spec.file:
            continue
        path = spec.file if os.path.isabs(spec.file) else os.path.join(base_dir, spec.file)
        if not os.path.exists(path):
            continue
        with open(path, "rb") as handle:
            raw = handle.read()
        try:
            loaded = json.loads(raw)
            records = loaded if isinstance(loaded, list) else [loaded]
        except ValueError:
            records = parse_jsonl(raw)
        key = spec.key or name
        for i, record in enumerate(records):
            if isinstance(record, dict) and key in record:
                src = "file" if "step" in record else "count"
                points.append(captured_record(name, record[key], record.get("step", i + 1), record.get("time"), src))
    return points


def tfevents_records(specs: Mapping[str, MetricSpec], base_dir: str, work_dir: Optional[str] = None,
                     files: Optional[tfevents.EventFiles] = None) -> List[Dict[str, Any]]:
    """Scalars of ``tfevents:`` metrics, as captured records with their steps (src "file") and
    wall times. A relative glob is matched in ``base_dir`` ({outdir}) and in ``work_dir`` (the
    program's working directory, while it exists). Files are followed through ``files`` (one
    offset per file), so repeated calls read only what was appended."""
    files = files or tfevents.SHARED
    points: List[Dict[str, Any]] = []
    for name, spec in specs.items():
        if not spec.tfevents:
            continue
        tag = spec.tag or name
        paths: Dict[str, None] = {}
        for folder in [base_dir] + ([work_dir] if work_dir else []):
            for path in tfevents.find(spec.tfevents, folder):
                paths.setdefault(os.path.realpath(path), None)
        for path in paths:
            points += [captured_record(name, s.value, s.step, s.wall_time, "file")
                       for s in files.scalars(path) if s.tag == tag]
    return points


def file_points(specs: Mapping[str, MetricSpec], base_dir: str) -> List[Dict[str, Any]]:
    """Points from metrics files, as history points (``{"step", "time", name: value}``)."""
    return [_as_point(r) for r in file_records(specs, base_dir)]


def read_captured(path: str) -> List[Dict[str, Any]]:
    """Captured records from a ``captured.jsonl`` (torn last line skipped, odd records dropped)."""
    out = []
    for record in read_points(path):
        if not isinstance(record.get("metric"), str) or not isinstance(record.get("src"), str):
            continue
        if not (record.get("time") is None or is_number(record["time"])):
            record["time"] = None
        out.append(record)
    return out


def _as_point(record: Mapping[str, Any]) -> Dict[str, Any]:
    return {"step": record.get("step"), "time": record.get("time"), record["metric"]: record.get("value")}


def _usable_step(step: Any) -> bool:
    return step is None or is_number(step) or isinstance(step, str)


def resolve_latest(api_points: List[Dict[str, Any]], records: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Records whose step is "latest" get the step of the latest point (by time) that another
    source reported at or before their line was read (gitexp.log, a step group or step regex,
    a metrics file's own step; never a match count); 0 when none had yet.

    Done when the history is built, not when the line is read: the Python API flushes its
    file once a second, so a step logged just before a print may reach the file after it.
    """
    if not any(r.get("src") == "latest" for r in records):
        return records
    reports = [*api_points, *(r for r in records if r.get("src") not in ("latest", "count"))]  # counts are no steps
    marks = sorted((p["time"], p["step"]) for p in reports if is_number(p.get("time")) and is_number(p.get("step")))
    times = [t for t, _ in marks]
    out = []
    for record in records:
        if record.get("src") == "latest":
            at = bisect.bisect_right(times, record["time"]) - 1 if is_number(record.get("time")) else -1
            record = {**record, "step": marks[at][1] if at >= 0 else 0}
        out.append(record)
    return out


def build_history(api_points: List[Dict[str, Any]], records: List[Dict[str, Any]]
                  ) -> Tuple[List[Dict[str, Any]], Dict[str, str]]:
    """The history (one record per step) from the Python API's points and captured records
    (regexes and metrics files), and for each metric where its steps came from.

    The one way a history is built: the executor for the notes, ``gitexp.live`` for a run in
    progress, so both show the same.
    """
    api_points = [p if _usable_step(p.get("step")) else {**p, "step": None} for p in api_points]
    records = resolve_latest(api_points, [r for r in records if _usable_step(r.get("step"))])
    found: Dict[str, Set[Any]] = {}
    for point in api_points:
        for key in point:
            if key not in ("step", "time"):
                found.setdefault(key, set()).add("api")
    for record in records:
        found.setdefault(record["metric"], set()).add(record.get("src") or "count")
    sources = {name: "+".join(s for s in STEP_SOURCES if s in srcs) or "+".join(sorted(srcs))
               for name, srcs in found.items()}
    return merge([*api_points, *(_as_point(r) for r in records)]), sources


def merge(points: Iterable[Mapping[str, Any]]) -> List[Dict[str, Any]]:
    """One record per step (values at the same step merged), ordered by step then time."""
    by_step: Dict[Any, Dict[str, Any]] = {}
    loose: List[Dict[str, Any]] = []
    for point in points:
        step = point.get("step")
        if step is None:
            loose.append(dict(point))
            continue
        record = by_step.setdefault(step, {"step": step})
        for key, value in point.items():
            if key == "time" and record.get("time") is not None and value is not None:
                record["time"] = max(record["time"], value)
            else:
                record[key] = value
    ordered = sorted(by_step.values(), key=lambda r: (_sort_key(r["step"]), r.get("time") or 0))
    return ordered + sorted(loose, key=lambda r: r.get("time") or 0)


def _sort_key(step: Any) -> float:
    return float(step) if is_number(step) else math.inf


def summarize(history: List[Dict[str, Any]], specs: Mapping[str, MetricSpec],
              sources: Optional[Mapping[str, str]] = None) -> Dict[str, Dict[str, Any]]:
    """For every metric seen: last, best (by its goal), step of best, count, where its
    steps came from (``step_source``, from :func:`build_history`), and ``spark``: the curve
    downsampled to at most :data:`SPARK_POINTS` values (:func:`spark_text`), so ``git exp
    log`` can draw a sparkline from the summary alone, without reading any history."""
    out: Dict[str, Dict[str, Any]] = {}
    series: Dict[str, List[float]] = {}
    for record in history:
        for key, value in record.items():
            if key in ("step", "time") or not is_number(value):
                continue
            spec = specs.get(key)
            goal = spec.goal if spec else None
            entry = out.setdefault(key, {"count": 0, "goal": goal})
            entry["count"] += 1
            series.setdefault(key, []).append(value)
            entry["last"] = value
            entry["last_step"] = record.get("step")
            if goal and not math.isnan(value):
                best = entry.get("best")
                better = best is None or (value < best if goal == "minimize" else value > best)
                if better:
                    entry["best"] = value
                    entry["best_step"] = record.get("step")
    for name, values in series.items():
        out[name]["spark"] = spark_text(spark_series(values))
    for name, spec in specs.items():
        out.setdefault(name, {"count": 0, "goal": spec.goal})
    for name, source in (sources or {}).items():
        if name in out and out[name]["count"]:
            out[name]["step_source"] = source
    return out


def best_value(summary: Mapping[str, Any], name: str) -> Optional[float]:
    entry = (summary.get("metrics") or {}).get(name) or {}
    value = entry.get("best", entry.get("last"))
    return value if is_number(value) else None


def run_dir_history(paths: RunPaths, specs: Mapping[str, MetricSpec]) -> Tuple[List[Dict[str, Any]], Dict[str, str]]:
    """A run's history from its run directory, built as the executor builds its notes."""
    records = read_captured(paths.captured)
    records += file_records(specs, paths.outdir, paths.worktree)
    return build_history(read_points(paths.metrics), records)
