"""Metric capture (regexes over output, metrics files, the Python API) and summaries.

A history is a list of records ``{"step": 3, "time": ..., "val_err": 0.2, "loss": 0.4}``:
points logged at the same step are merged into one record.
"""
from __future__ import annotations

import json
import math
import os
import re
import time
from typing import Any, Dict, Iterable, List, Mapping, Optional

from .config import MetricSpec
from .notes import parse_jsonl


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class RegexCapture:
    """Turns output lines into points for metrics that declare a ``regex``."""

    def __init__(self, specs: Mapping[str, MetricSpec]) -> None:
        self.rules = [(name, re.compile(spec.regex)) for name, spec in specs.items() if spec.regex]
        self.counts: Dict[str, int] = {}
        self.points: List[Dict[str, Any]] = []

    def feed(self, line: str) -> None:
        for name, pattern in self.rules:
            match = pattern.search(line)
            if not match:
                continue
            groups = match.groupdict()
            raw = groups.get("value") or match.group(1)
            try:
                value = float(raw)
            except (TypeError, ValueError):
                continue
            self.counts[name] = self.counts.get(name, 0) + 1
            step: Any = self.counts[name]
            if groups.get("step") is not None:
                try:
                    step = int(groups["step"])
                except ValueError:
                    pass
            self.points.append({"step": step, "time": time.time(), name: value})


def read_points(path: str) -> List[Dict[str, Any]]:
    if not os.path.exists(path):
        return []
    with open(path, "rb") as handle:
        return parse_jsonl(handle.read())


def file_points(specs: Mapping[str, MetricSpec], base_dir: str) -> List[Dict[str, Any]]:
    """Points from metrics files the program wrote (a JSON object, or JSON lines)."""
    points: List[Dict[str, Any]] = []
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
                points.append({"step": record.get("step", i + 1), "time": record.get("time"), name: record[key]})
    return points


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


def summarize(history: List[Dict[str, Any]], specs: Mapping[str, MetricSpec]) -> Dict[str, Dict[str, Any]]:
    """For every metric seen: last, best (by its goal), step of best, count."""
    out: Dict[str, Dict[str, Any]] = {}
    for record in history:
        for key, value in record.items():
            if key in ("step", "time") or not is_number(value):
                continue
            spec = specs.get(key)
            goal = spec.goal if spec else None
            entry = out.setdefault(key, {"count": 0, "goal": goal})
            entry["count"] += 1
            entry["last"] = value
            entry["last_step"] = record.get("step")
            if goal and not math.isnan(value):
                best = entry.get("best")
                better = best is None or (value < best if goal == "minimize" else value > best)
                if better:
                    entry["best"] = value
                    entry["best_step"] = record.get("step")
    for name, spec in specs.items():
        out.setdefault(name, {"count": 0, "goal": spec.goal})
    return out


def best_value(summary: Mapping[str, Any], name: str) -> Optional[float]:
    entry = (summary.get("metrics") or {}).get(name) or {}
    value = entry.get("best", entry.get("last"))
    return value if is_number(value) else None
