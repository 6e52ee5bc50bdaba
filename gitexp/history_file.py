"""A run's metric history built from its run directory in bounded memory, and its summary curve.

:func:`gitexp.metrics.build_history` holds every point of a run at once; a program printing
70,000 metric lines a second gives millions. Here the same history (one record per step,
ordered by step then time, "latest" steps resolved) is built by streaming: the points are read
line by line from ``metrics.jsonl`` and ``captured.jsonl``, sorted by step in chunks of
:data:`CHUNK` spilled to temporary files and merged back (``heapq.merge``), and written as the
history note's JSON lines to a file, which git stores with ``git hash-object -w`` (never one
giant Python string). Memory stays flat whatever the number of points.

Beside the full history, a history with more than :data:`CURVE_POINTS` points in a metric gets
a **summary curve**: per metric at most CURVE_POINTS points, the first, last, lowest and highest
value (and the first non-finite one) of each of CURVE_POINTS/5 equal runs of its points, so
spikes and NaNs survive. It is kept in the details note (``curve``, :func:`curve_from_details`),
the summary says ``curve: true``, and the default views (``show``, ``plot``, ``metrics``, the
UI) read it (:func:`read_histories`); ``git exp metrics --full`` reads the whole history.
"""
from __future__ import annotations

import heapq
import json
import math
import os
import pickle
import tempfile
from array import array
from dataclasses import dataclass, field
from typing import Any, Dict, IO, Iterable, Iterator, List, Mapping, Optional, Sequence, Set, Tuple

from . import summary as checks
from .metrics import STEP_SOURCES, is_number, merge, spark_text

CHUNK = 50_000  # points sorted in memory at a time
CURVE_POINTS = 2000  # most points a metric keeps in the summary curve
_BUCKET_KEEP = 5  # first, last, min, max, first non-finite
_SPARK = 16
_NUMERIC, _ODD, _LOOSE = 0, 1, 2  # numeric steps, other steps (strings, NaN), no step


_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str)


def dumps(record: Mapping[str, Any]) -> str:
    """One history record as the note keeps it: compact JSON (older readers parse it alike)."""
    return _ENCODER.encode(record)


_DECODE = json.JSONDecoder().decode


def iter_jsonl(path: str) -> Iterator[Dict[str, Any]]:
    """JSON objects of a JSON-lines file, one at a time (bad and torn lines skipped)."""
    try:
        handle = open(path, encoding="utf-8", errors="surrogateescape")
    except OSError:
        return
    decode = _DECODE
    with handle:
        for line in handle:
            try:
                value = decode(line)
            except ValueError:
                continue  # a blank, bad or torn line
            except RecursionError:
                continue
            if value.__class__ is dict:
                yield value


def iter_captured(path: str) -> Iterator[Dict[str, Any]]:
    """Captured records (as :func:`gitexp.metrics.read_captured` checks them), one at a time."""
    for record in iter_jsonl(path):
        if record.get("metric").__class__ is not str or record.get("src").__class__ is not str:
            continue
        when = record.get("time")
        if when is not None and when.__class__ is not float and not is_number(when):
            record["time"] = None
        yield record


class _Sorter:
    """Items (tuples that compare without reaching their last element) sorted in bounded memory."""

    def __init__(self, folder: str, chunk: int = CHUNK) -> None:
        self.folder = folder
        self.chunk = chunk
        self.items: List[Tuple[Any, ...]] = []
        self.files: List[IO[bytes]] = []

    def add(self, item: Tuple[Any, ...]) -> None:
        self.items.append(item)
        if len(self.items) >= self.chunk:
            self._spill()

    def _spill(self) -> None:
        self.items.sort()
        handle = tempfile.TemporaryFile(dir=self.folder)
        for start in range(0, len(self.items), 1000):
            pickle.dump(self.items[start:start + 1000], handle, protocol=pickle.HIGHEST_PROTOCOL)
        handle.seek(0)
        self.files.append(handle)
        self.items = []

    def sorted(self) -> Iterator[Tuple[Any, ...]]:
        if not self.files:
            self.items.sort()
            yield from self.items
            return
        if self.items:
            self._spill()
        try:
            yield from heapq.merge(*(_unpickled(h) for h in self.files))
        finally:
            self.close()

    def close(self) -> None:
        for handle in self.files:
            handle.close()
        self.files = []


def _unpickled(handle: IO[bytes]) -> Iterator[Tuple[Any, ...]]:
    while True:
        try:
            batch = pickle.load(handle)
        except EOFError:
            return
        yield from batch


def _usable(step: Any) -> bool:
    return step is None or step.__class__ is int or is_number(step) or isinstance(step, str)


def _step_key(step: Any) -> Tuple[int, float]:
    if step is None:
        return _LOOSE, 0.0
    if step.__class__ is int or is_number(step):
        try:
            number = float(step)
        except OverflowError:
            return _ODD, 0.0
        if not math.isnan(number):
            return _NUMERIC, number
    return _ODD, 0.0


@dataclass
class Built:
    """What :func:`build` made: the history note's file, summaries and the curve."""

    path: Optional[str]  # the history's JSON lines (None: no point at all)
    records: int
    summaries: Dict[str, Dict[str, Any]]
    sources: Dict[str, str]
    counts: Dict[str, int] = field(default_factory=dict)
    curve: Optional[List[Dict[str, Any]]] = None  # None: the history is its own curve

    def remove(self) -> None:
        if self.path:
            try:
                os.unlink(self.path)
            except OSError:
                pass


def _points(api_path: str, captured_path: str, extra: Sequence[Dict[str, Any]],
            found: Dict[str, Set[Any]]) -> Iterator[Tuple[Dict[str, Any], Optional[str]]]:
    """(history point, src of a captured record or None for an API point), in input order."""
    for point in iter_jsonl(api_path):
        if not _usable(point.get("step")):
            point = {**point, "step": None}
        for key in point:
            if key not in ("step", "time"):
                found.setdefault(key, set()).add("api")
        yield point, None
    seen = set()
    for records in (iter_captured(captured_path), iter(extra)):
        for record in records:
            step = record.get("step")
            if not _usable(step):
                continue
            name, src = record["metric"], record.get("src") or "count"
            if (name, src) not in seen:
                seen.add((name, src))
                found.setdefault(name, set()).add(src)
            yield {"step": step, "time": record.get("time"), name: record.get("value")}, src


def _has_latest(captured_path: str, extra: Sequence[Dict[str, Any]]) -> bool:
    if any(r.get("src") == "latest" for r in extra):
        return True
    try:
        with open(captured_path, "rb") as handle:
            tail = b""
            while True:
                block = handle.read(1 << 20)
                if not block:
                    return False
                if b'"latest"' in tail + block:
                    return True
                tail = block[-16:]
    except OSError:
        return False


def _resolved(points: Iterator[Tuple[Dict[str, Any], Optional[str]]], folder: str, chunk: int
              ) -> Iterator[Tuple[int, Dict[str, Any]]]:
    """(input position, point) with "latest" steps resolved as :func:`gitexp.metrics.resolve_latest`
    does: the step of the latest report (by time) at or before the point's time, else 0."""
    by_time = _Sorter(folder, chunk)
    for seq, (point, src) in enumerate(points):
        when: Any = point.get("time")
        timed = is_number(when)
        if src == "latest":
            if timed:
                by_time.add((float(when), 1, 0, seq, point))
            else:
                yield seq, {**point, "step": 0}
            continue
        step = point.get("step")
        if src != "count" and timed and is_number(step):
            by_time.add((float(when), 0, step, seq, point))  # a report: a step as of that time
        else:
            yield seq, point
    current: Any = 0
    for _when, kind, step, seq, point in by_time.sorted():
        if kind == 0:
            current = step
            yield seq, point
        else:
            yield seq, {**point, "step": current}


def _merged(items: Iterable[Tuple[int, Dict[str, Any]]], folder: str, chunk: int) -> Iterator[Dict[str, Any]]:
    """One record per step, ordered as :func:`gitexp.metrics.merge` orders them."""
    by_step = _Sorter(folder, chunk)
    for seq, point in items:
        kind, number = _step_key(point.get("step"))
        by_step.add((kind, number if kind == _NUMERIC else (point.get("time") or 0), seq, point))
    group: List[Dict[str, Any]] = []
    group_key: Any = None
    odd: List[Tuple[int, Dict[str, Any]]] = []
    for kind, number, seq, point in by_step.sorted():
        if kind == _NUMERIC:
            if group and number != group_key:
                yield from (merge(group) if len(group) > 1 else group)
                group = []
            group_key = number
            group.append(point)
        elif kind == _ODD:
            odd.append((seq, point))  # steps that are no numbers: rare, kept together
        else:
            if group:
                yield from (merge(group) if len(group) > 1 else group)
                group = []
            if odd:
                yield from merge(p for _, p in sorted(odd, key=lambda item: item[0]))
                odd = []
            yield dict(point)
    if group:
        yield from (merge(group) if len(group) > 1 else group)
    if odd:
        yield from merge(p for _, p in sorted(odd, key=lambda item: item[0]))


class _Summary:
    """:func:`gitexp.metrics.summarize` one record at a time (the spark comes in a second pass)."""

    def __init__(self, specs: Mapping[str, Any]) -> None:
        self.specs = specs
        self.out: Dict[str, Dict[str, Any]] = {}

    def add(self, record: Mapping[str, Any], values: List[Tuple[Any, ...]]) -> None:
        """Count ``record`` in; its metric values go to ``values`` too."""
        step, when = record.get("step"), record.get("time")
        for key, value in record.items():
            if key in ("step", "time") or value.__class__ not in (float, int):
                continue
            values.append((key, value, step, when))
            entry = self.out.get(key)
            if entry is None:
                spec = self.specs.get(key)
                entry = self.out[key] = {"count": 0, "goal": spec.goal if spec else None}
            entry["count"] += 1
            entry["last"] = value
            entry["last_step"] = step
            goal = entry["goal"]
            if goal and not math.isnan(value):
                best = entry.get("best")
                if best is None or (value < best if goal == "minimize" else value > best):
                    entry["best"] = value
                    entry["best_step"] = step


class _Series:
    """One metric's second pass: its spark (as :func:`gitexp.metrics.spark_series`) and, when it
    has more than CURVE_POINTS points, its curve's points."""

    def __init__(self, name: str, n: int) -> None:
        self.name = name
        self.i = 0
        self.spark = _Buckets(n, min(_SPARK, n))
        self.sparks: List[Optional[float]] = []
        self.finite = array("d")
        self.curved = n > CURVE_POINTS
        self.buckets = _Buckets(n, CURVE_POINTS // _BUCKET_KEEP) if self.curved else None
        self.curve: List[Dict[str, Any]] = []
        self.bucket: Dict[str, Tuple[Any, ...]] = {}

    def add(self, value: Any, step: Any, when: Any) -> None:
        try:
            number = float(value)
        except OverflowError:
            number = math.nan
        if math.isfinite(number):
            self.finite.append(number)
        if self.buckets is not None:
            self._keep(value, number, step, when)
            if self.buckets.ends():
                self._end_curve_bucket()
        if self.spark.ends():
            self._end_spark_bucket()

    def _keep(self, value: Any, number: float, step: Any, when: Any) -> None:
        point = (self.i, value, step, when)  # self.i: its place, so a bucket keeps the order
        self.i += 1
        bucket = self.bucket
        if "first" not in bucket:
            bucket["first"] = point
        bucket["last"] = point
        if math.isfinite(number):
            if "min" not in bucket or number < bucket["min"][1]:
                bucket["min"] = point
            if "max" not in bucket or number > bucket["max"][1]:
                bucket["max"] = point
        elif "odd" not in bucket:
            bucket["odd"] = point

    def _end_spark_bucket(self) -> None:
        chunk = self.finite
        if not chunk:
            self.sparks.append(None)
        else:
            mean = math.fsum(v / len(chunk) for v in chunk)  # each scaled first: the sum cannot overflow
            rounded = float(f"{mean:.4g}")
            self.sparks.append(rounded if math.isfinite(rounded) else mean)
        self.finite = array("d")

    def _end_curve_bucket(self) -> None:
        for _i, value, step, when in sorted(set(self.bucket.values()), key=lambda p: p[0]):
            self.curve.append({"step": step, "time": when, self.name: value})
        self.bucket = {}


class _Buckets:
    """Counts points into ``buckets`` runs of ``n`` as ``values[b*n//buckets:(b+1)*n//buckets]``."""

    def __init__(self, n: int, buckets: int) -> None:
        self.n, self.buckets, self.b, self.i = n, buckets, 0, 0

    def ends(self) -> bool:
        """Count one point; whether it is the last of its run."""
        self.i += 1
        if self.b < self.buckets and self.i == (self.b + 1) * self.n // self.buckets:
            self.b += 1
            return True
        return False


def build(api_path: str, captured_path: str, extra: Sequence[Dict[str, Any]], specs: Mapping[str, Any],
          folder: str, sorter_chunk: int = CHUNK) -> Built:
    """The history of a run directory's points as a file in ``folder`` (see the module).

    Raises OSError (ENOSPC on a full disk) when a file cannot be written; nothing is left then.
    """
    found: Dict[str, Set[Any]] = {}
    points = _points(api_path, captured_path, extra, found)
    items = _resolved(points, folder, sorter_chunk) if _has_latest(captured_path, extra) \
        else enumerate(p for p, _ in points)
    summary = _Summary(specs)
    fd, path = tempfile.mkstemp(prefix="history-", suffix=".jsonl", dir=folder)
    records = 0
    values = tempfile.TemporaryFile(dir=folder)  # (metric, value, step, time) for the second pass
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            batch: List[Tuple[Any, ...]] = []
            for record in _merged(items, folder, sorter_chunk):
                out.write(_ENCODER.encode(record) + "\n")
                summary.add(record, batch)
                records += 1
                if len(batch) >= 5000:
                    pickle.dump(batch, values, protocol=pickle.HIGHEST_PROTOCOL)
                    batch = []
            pickle.dump(batch, values, protocol=pickle.HIGHEST_PROTOCOL)
        values.seek(0)
        counts = {name: entry["count"] for name, entry in summary.out.items()}
        curve = _second_pass(_unpickled(values), counts, summary.out)
    except BaseException:
        os.unlink(path)
        raise
    finally:
        values.close()
    sources = {name: "+".join(s for s in STEP_SOURCES if s in srcs) or "+".join(sorted(srcs))
               for name, srcs in found.items()}
    summaries = _finish_summaries(summary.out, specs, sources)
    if not records:
        os.unlink(path)
        return Built(None, 0, summaries, sources, counts)
    return Built(path, records, summaries, sources, counts, curve)


def _second_pass(values: Iterator[Tuple[Any, ...]], counts: Mapping[str, int], out: Dict[str, Dict[str, Any]]
                 ) -> Optional[List[Dict[str, Any]]]:
    """Sparks into ``out``; the curve when a metric has more than CURVE_POINTS points (metrics
    with fewer keep all theirs)."""
    series = {name: _Series(name, n) for name, n in counts.items() if n}
    small: List[Dict[str, Any]] = []
    for name, value, step, when in values:
        one = series[name]
        one.add(value, step, when)
        if not one.curved:
            small.append({"step": step, "time": when, name: value})
    for name, s in series.items():
        out[name]["spark"] = spark_text(s.sparks)
    if not any(s.curved for s in series.values()):
        return None
    points: List[Dict[str, Any]] = small
    for s in series.values():
        points += s.curve
    return merge(points)


def _finish_summaries(out: Dict[str, Dict[str, Any]], specs: Mapping[str, Any],
                      sources: Mapping[str, str]) -> Dict[str, Dict[str, Any]]:
    for name, spec in specs.items():
        out.setdefault(name, {"count": 0, "goal": spec.goal})
    for name, source in sources.items():
        if name in out and out[name]["count"]:
            out[name]["step_source"] = source
    return out


# -- the summary curve in notes ------------------------------------------------------------------
CURVE_KEY = "curve"  # in the details note: {"records": N, "counts": {metric: n}, "jsonl": "..."}
MAX_CURVE_TEXT = 64 * 1024 * 1024


def curve_field(built: Built) -> Optional[Dict[str, Any]]:
    """The details note's ``curve`` for ``built`` (None when the history is its own curve)."""
    if built.curve is None:
        return None
    return {"records": built.records, "counts": built.counts,
            "jsonl": "".join(dumps(r) + "\n" for r in built.curve)}


def curve_from_details(sha: str, details: Mapping[str, Any]) -> Optional[List[Dict[str, Any]]]:
    """The summary curve a details note keeps (checked: notes are untrusted), or None.

    The reader for views that draw or list a run's curve (plot, show, metrics, the UI)."""
    entry = details.get(CURVE_KEY)
    if not isinstance(entry, dict) or not isinstance(entry.get("jsonl"), str) \
            or len(entry["jsonl"]) > MAX_CURVE_TEXT:
        return None
    return checks.load_history(sha, entry["jsonl"].encode(), "refs/notes/exps-details")


def read_histories(store: Any, exps: Sequence[Any], full: bool = False) -> Dict[str, List[Dict[str, Any]]]:
    """sha -> the history each view draws: the summary curve where the run has one (its summary
    says ``curve: true``), else (or with ``full``) the whole history note. Two ``cat-file`` calls
    whatever the count."""
    from .notes import DETAILS_REF, METRICS_REF

    out: Dict[str, List[Dict[str, Any]]] = {}
    curved = [e.sha for e in exps if not full and e.summary.get("curve") is True]
    if curved:
        for sha, data in store.read_notes(DETAILS_REF, curved).items():
            curve = curve_from_details(sha, checks.load_details(sha, data, DETAILS_REF))
            if curve is not None:
                out[sha] = curve
    rest = [e.sha for e in exps if e.sha not in out]
    notes = store.read_notes(METRICS_REF, rest) if rest else {}
    for sha in rest:
        out[sha] = checks.load_history(sha, notes.get(sha, b""), METRICS_REF)
    return out


def write_blob(repo: Any, path: str) -> Any:
    """The file at ``path`` as a git blob (``git hash-object -w``), to be given as a note's
    content (:class:`gitexp.notes.WrittenBlob`). DiskFull when git finds no space."""
    from .notes import WrittenBlob

    return WrittenBlob(repo.out(["hash-object", "-w", "--", path]).strip())
