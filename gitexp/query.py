"""Listing experiments: filters (``lr<0.01``), sorting by params or metrics, rows for output."""
from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence

from .errors import BadInput
from .numbers import is_number
from .notes import Experiment

_OPS: Dict[str, Callable[[Any, Any], bool]] = {
    "<=": operator.le, ">=": operator.ge, "!=": operator.ne, "==": operator.eq,
    "<": operator.lt, ">": operator.gt, "=": operator.eq, "~": lambda a, b: re.search(str(b), str(a)) is not None,
}
_FILTER_RE = re.compile(r"^\s*([A-Za-z_][\w.\-]*)\s*(<=|>=|!=|==|<|>|=|~)\s*([^<>=!~\s].*?)\s*$")
FIELDS = ("status", "name", "group", "host", "exit_code", "id")


def field_value(exp: Experiment, key: str, status: Optional[str] = None) -> Any:
    """A param, a metric (its best by goal, else its last), or a recorded field."""
    summary = exp.summary
    if key in (summary.get("params") or {}):
        return summary["params"][key]
    metric = (summary.get("metrics") or {}).get(key)
    if key.endswith(".last") and key[:-5] in (summary.get("metrics") or {}):
        return summary["metrics"][key[:-5]].get("last")
    if metric is not None:
        return metric.get("best", metric.get("last"))
    if key == "status":
        return status or exp.status
    if key == "id":
        return exp.sha
    if key == "name":
        return exp.name
    if key == "duration":
        return summary.get("duration")
    return summary.get(key)


@dataclass
class Filter:
    key: str
    op: str
    value: Any

    def matches(self, exp: Experiment, status: str) -> bool:
        actual = field_value(exp, self.key, status)
        if actual is None:
            return False
        if self.op == "~":
            return _OPS["~"](actual, self.value)
        wanted = self.value
        if is_number(actual) and not is_number(wanted):
            return False
        if not is_number(actual):
            actual, wanted = str(actual), str(wanted)
        try:
            return bool(_OPS[self.op](actual, wanted))
        except TypeError:
            return False


def parse_filter(text: str) -> Filter:
    match = _FILTER_RE.match(text)
    if not match or not match.group(3):
        raise BadInput(f"--filter {text!r}: expected NAME OP VALUE with OP one of < <= > >= = != ~",
                       "e.g. --filter 'lr<0.01' or --filter status=finished")
    key, op, raw = match.groups()
    value: Any = raw
    try:
        value = float(raw) if re.match(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$", raw) else raw
    except ValueError:
        pass
    if isinstance(value, float) and value.is_integer() and "." not in raw and "e" not in raw.lower():
        value = int(value)
    if op == "~":
        try:
            re.compile(raw)
        except re.error as exc:
            raise BadInput(f"--filter {text!r}: bad regular expression: {exc}") from exc
    return Filter(key, op, value)


def same_value(a: Any, b: Any) -> bool:
    """Whether two param values are the same for the program: equal and of the same type, so
    ``10`` and ``10.0`` (the program reads ``10`` and ``10.0``) or ``1`` and ``true`` differ.
    ``diff``, ``compare`` and ``report`` all decide with this."""
    return type(a) is type(b) and (a == b or (a != a and b != b))  # NaN is the same as NaN


def param_text(value: Any) -> Any:
    """A param value for a table where types matter: a whole float keeps its ``.0`` (``10.0``
    beside ``10``), so two values shown apart never look alike. Other values as they are."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer() and abs(value) < 1e15:
        return f"{value:.1f}"
    return value


def goal_of(exps: Sequence[Experiment], key: str) -> Optional[str]:
    for exp in exps:
        goal: Optional[str] = ((exp.summary.get("metrics") or {}).get(key) or {}).get("goal") or (exp.summary.get("goals") or {}).get(key)
        if goal:
            return goal
    return None


def sort_experiments(exps: List[Experiment], key: Optional[str]) -> List[Experiment]:
    """Newest first by default; by a metric best-first (by its goal); by a param ascending.

    A leading '-' reverses. Experiments without the value go last.
    """
    if not key:
        return sorted(exps, key=lambda e: e.summary.get("created") or 0, reverse=True)
    reverse = key.startswith("-")
    key = key.lstrip("-")
    if goal_of(exps, key) == "maximize":
        reverse = not reverse
    keyed = [(_sortable(field_value(e, key)), e) for e in exps]  # each value read once
    present = [pair for pair in keyed if pair[0] is not None]
    present.sort(key=lambda pair: pair[0], reverse=reverse)  # stable: equal values keep their order
    return [e for _k, e in present] + [e for k, e in keyed if k is None]


def _sortable(value: Any) -> Any:
    if is_number(value):
        try:
            number = float(value)
        except OverflowError:  # an integer of hundreds of digits (notes may hold any)
            number = math.inf if value > 0 else -math.inf
        return (0, number, "") if not math.isnan(number) else None
    if value is None:
        return None
    return (1, 0.0, str(value))


def known_keys(exps: Sequence[Experiment]) -> List[str]:
    keys = set(FIELDS) | {"duration"}
    for exp in exps:
        keys |= set(exp.summary.get("params") or {})
        keys |= set(exp.summary.get("metrics") or {})
        keys |= set(exp.summary.get("goals") or {})
    return sorted(keys)
