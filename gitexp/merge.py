"""Pure merge rules for the three note kinds, used when experiments travel between repositories.

No git here: functions take parsed notes and return the merged value. Every rule is
*commutative* (``merge(a, b) == merge(b, a)``), *idempotent* (``merge(a, a) == a``) and
*absorbing* (``merge(merge(a, b), b) == merge(a, b)``), so two repositories that pull from each
other in any order end with the same notes, and pulling again changes nothing.

Which side may change a note at all is decided before these rules (``gitexp.sync``): a run
this machine executed (its run directory is here) keeps this machine's notes, and a remote
summary whose ``chain``, ``attempt`` or ``outdir_of`` contradict the commit graph is skipped.

Summary (``refs/notes/exps``)
    The two notes are ordered by :func:`precedence`:

    1. the lifecycle rank of ``status``: created < queued < pending < starting < running <
       lost < finished = failed = killed = timeout = cancelled. ``lost`` is what a machine
       concludes without word from the run, so any real final state beats it;
    2. whether the note was written by the executor (it carries ``host``, the machine that ran
       the program): at the same rank the executing host's note beats the submitting host's;
    3. the newest of its times (``updated``, ``ended``, ``started``, ``claimed``).

    No count field decides (an old note's ``attempts`` is ignored: every attempt is a commit of
    its own, so which attempt a note is comes from the commit graph). The fields of both are kept: the later note's fields win, fields only the other note has
    are added. When all four compare equal, each field takes the larger of the two values
    (compared as canonical JSON text), so the result does not depend on which side is local.

Details (``refs/notes/exps-details``)
    A dict merge of the top-level keys; a key both sides have is decided by the same order,
    applied to the two *summaries* of the run (the details of the side whose summary wins).

Metric history (``refs/notes/exps-metrics``)
    The union of the records, never truncated: identical records are kept once, and a record
    that another record of the same step contains (every metric equal, its time not later) is
    dropped, since a step's record only grows while a run writes it. Ordered by step (numbers
    first), then time, then the record's JSON text.
"""
from __future__ import annotations

import json
import math
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from . import summary as checks
from .lifecycle import RANK
from .notes import METRICS_REF, SUMMARY_REF

LIFECYCLE = RANK  # one order of states, declared with them in gitexp.lifecycle
TIME_FIELDS = ("updated", "ended", "started", "claimed")

Precedence = Tuple[int, int, float]


def canonical(value: Any) -> str:
    """One text per JSON value (sorted keys, no spaces): equal values, equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _number(value: Any) -> Optional[float]:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def precedence(summary: Mapping[str, Any]) -> Precedence:
    """Which of two summaries of one run is the later state (larger wins); see the module doc."""
    rank = LIFECYCLE.get(summary.get("status") or "created", 0)
    executed = 1 if isinstance(summary.get("host"), str) and summary.get("host") else 0
    times = [t for t in (_number(summary.get(key)) for key in TIME_FIELDS) if t is not None]
    return rank, executed, max(times) if times else -math.inf


def merge_fields(a: Mapping[str, Any], b: Mapping[str, Any], key_a: Precedence, key_b: Precedence) -> Dict[str, Any]:
    """Top-level union of ``a`` and ``b``; shared keys from the side with the larger key.

    Equal keys: each shared field takes the value with the larger canonical JSON text.
    """
    if key_a > key_b:
        return {**b, **a}
    if key_b > key_a:
        return {**a, **b}
    out = {**a, **b}
    for field in a.keys() & b.keys():
        out[field] = max(a[field], b[field], key=canonical)
    return out


def merge_summary(a: Mapping[str, Any], b: Mapping[str, Any]) -> Dict[str, Any]:
    return merge_fields(a, b, precedence(a), precedence(b))


def merge_details(a: Mapping[str, Any], b: Mapping[str, Any],
                  summary_a: Mapping[str, Any], summary_b: Mapping[str, Any]) -> Dict[str, Any]:
    """Details of one run from two places; conflicts go to the side whose summary wins."""
    return merge_fields(a, b, precedence(summary_a), precedence(summary_b))


def _step_key(step: Any) -> Tuple[int, float]:
    number = _number(step)
    return (0, number) if number is not None else (1, 0.0)


def _record_key(record: Mapping[str, Any], text: str) -> Tuple[Tuple[int, float], float, str]:
    time = _number(record.get("time"))
    return _step_key(record.get("step")), time if time is not None else -math.inf, text


def _contains(big: Mapping[str, Any], small: Mapping[str, Any]) -> bool:
    """``big`` holds every value of ``small`` (time aside) and was written no earlier."""
    for key, value in small.items():
        if key == "time":
            continue
        if key not in big or canonical(big[key]) != canonical(value):
            return False
    t_small, t_big = _number(small.get("time")), _number(big.get("time"))
    return t_small is None or (t_big is not None and t_big >= t_small)


def merge_history(*histories: Iterable[Mapping[str, Any]]) -> List[Dict[str, Any]]:
    """The union of metric histories (JSON-lines records), without duplicates; see the module doc."""
    keyed = merge_keyed_history(*([(canonical(r), dict(r)) for r in history] for history in histories))
    return [record for _text, record in keyed]


Keyed = Sequence[Tuple[str, Dict[str, Any]]]


def merge_keyed_history(*histories: Keyed) -> List[Tuple[str, Dict[str, Any]]]:
    """:func:`merge_history` over ``(canonical text, record)`` pairs (texts computed once by the caller)."""
    unique: Dict[str, Dict[str, Any]] = {}
    for history in histories:
        for text, record in history:
            unique.setdefault(text, record)
    by_step: Dict[str, List[Tuple[str, Dict[str, Any]]]] = {}
    for text, record in unique.items():
        by_step.setdefault(canonical(record.get("step")), []).append((text, record))
    kept: List[Tuple[str, Dict[str, Any]]] = []
    for group in by_step.values():
        if len(group) == 1:
            kept.extend(group)
            continue
        for text, record in group:
            if not any(other_text != text and _contains(other, record) for other_text, other in group):
                kept.append((text, record))
    kept.sort(key=lambda item: _record_key(item[1], item[0]))
    return kept


# -- reading a fetched note -------------------------------------------------------------------
def parse_note(notes_ref: str, data: bytes) -> Tuple[Any, Optional[str]]:
    """(value, None) for a usable note fetched from a remote, (None, problem) otherwise; a metric
    history gives a :class:`History`."""
    if notes_ref == METRICS_REF:
        return parse_history(data)
    value, problem = checks.parse_json(data)
    if problem is None:
        problem = checks.summary_problem(value) if notes_ref == SUMMARY_REF else checks.details_problem(value)
    return (None, problem) if problem else (value, None)


class History:
    """A parsed metric history; canonical texts are computed only when it is merged."""

    def __init__(self, records: List[Dict[str, Any]], whole: bool) -> None:
        self.records = records
        self.whole = whole  # False: a torn last line was left out
        self._keyed: Optional[List[Tuple[str, Dict[str, Any]]]] = None

    @property
    def keyed(self) -> List[Tuple[str, Dict[str, Any]]]:
        if self._keyed is None:
            self._keyed = [(canonical(record), record) for record in self.records]
        return self._keyed

    @property
    def texts(self) -> List[str]:
        return [text for text, _record in self.keyed]


_SCALAR_TYPES = (str, int, float, bool, type(None))


def parse_history(data: bytes) -> Tuple[Any, Optional[str]]:
    """The checks of :func:`gitexp.summary.load_history`, but a bad record rejects the whole note."""
    lines = [line for line in data.splitlines() if line.strip()]
    records: List[Dict[str, Any]] = []
    whole = True
    loads = json.loads
    for number, line in enumerate(lines, 1):
        try:
            value = loads(line)
        except RecursionError:
            return None, f"record {number}: it is nested too deeply"
        except ValueError as exc:
            if number == len(lines):
                whole = False  # a torn last line (a crash mid-write): the rest is good
                break
            return None, f"record {number}: it is not valid JSON ({str(exc)[:80]})"
        if value.__class__ is not dict:
            return None, f"record {number}: it is not a JSON object"
        for item in value.values():
            if not isinstance(item, _SCALAR_TYPES):
                return None, f"record {number}: a value is not a string, number, true/false or null"
        records.append(value)
    return History(records, whole), None
