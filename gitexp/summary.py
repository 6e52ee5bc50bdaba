"""Checks of what is read from notes and experiment commits: it is data from anyone.

Notes travel with ``git fetch`` from colleagues and clusters, so a summary, details or
metric-history note may have any shape: wrong types, unknown statuses, JSON nested a
hundred thousand levels deep. Readers pass every note through here before using it:

* a summary whose known fields have the wrong type is replaced by a stand-in with status
  ``invalid`` (the experiment still lists, so it can be seen and removed) and one warning
  naming its sha goes to stderr;
* a details note that is not a well-typed mapping reads as empty, with one warning;
* metric-history records that are not flat mappings are dropped, with one warning;
* a stored config (YAML in the experiment commit) that is invalid, or huge once its
  aliases are expanded, reads as empty, with one warning.

What is printed is made safe at the edge: :func:`printable` escapes control characters
for terminals, :func:`json_safe` turns NaN and infinities into null for JSON.

Unknown extra fields are allowed (newer gitexp versions may add some). The checks look
only at the known fields and stay cheap: ``git exp log`` checks 10,000 summaries.
"""
from __future__ import annotations

import json
import math
import re
import sys
from typing import Any, Callable, Dict, FrozenSet, List, Mapping, Optional, Set, Tuple, Union, cast

from .lifecycle import Status

STATUSES = frozenset(s.value for s in Status)
INVALID = "invalid"  # shown for an experiment whose summary note could not be used
MAX_DEPTH = 32  # deeper values (only possible in free-form records) are cut when printed
_SHA_RE = re.compile(r"^[0-9a-f]{40}$")
_JOB_RE = re.compile(r"^[0-9]{1,18}(_[0-9]{1,9})?$")

# C0 controls, DEL and C1 controls: a terminal may act on them (colours, cursor moves,
# window titles, clipboard writes), so text from notes never reaches it unescaped.
_CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f]")
_ESCAPES = {code: f"\\x{code:02x}" for code in [*range(0x20), *range(0x7f, 0xa0)]}

Check = Callable[[Any], Optional[str]]  # None when the value is fine, else what is wrong


# -- display ----------------------------------------------------------------------------------
def printable(text: str, keep: str = "") -> str:
    """``text`` with every control character written as a visible ``\\x1b``-style escape.

    ``keep``: controls to leave as they are, e.g. newline and tab in a code diff.
    """
    if _CONTROL_RE.search(text) is None:
        return text
    if keep:
        return text.translate({code: escape for code, escape in _ESCAPES.items() if chr(code) not in keep})
    return text.translate(_ESCAPES)


# -- parsing ----------------------------------------------------------------------------------
def parse_json(data: Optional[bytes]) -> Tuple[Any, Optional[str]]:
    """(value, None), or (None, problem) for text that is not JSON; no note reads as {}."""
    if not data or not data.strip():
        return {}, None
    try:
        return json.loads(data), None
    except RecursionError:  # e.g. 100,000 nested lists: json's C decoder gives up this way
        return None, "it is nested too deeply"
    except ValueError as exc:
        return None, f"it is not valid JSON ({str(exc)[:80]})"


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


# -- field checks ------------------------------------------------------------------------------
# A rule is (allowed exact types, what is wrong otherwise, finite numbers only), checked inline
# because log checks every summary; or a function for the nested fields (None when fine).
Rule = Union[Tuple[FrozenSet[type], str, bool], Check]
_NONE = type(None)
_STRING: Rule = (frozenset({str, _NONE}), "must be a string", False)
_INTEGER: Rule = (frozenset({int, _NONE}), "must be an integer", False)
_FLAG: Rule = (frozenset({bool, _NONE}), "must be true or false", False)
_NUMBER: Rule = (frozenset({int, float, _NONE}), "must be a number", False)
# Times and durations are formatted, sorted and converted: NaN, infinity or a 400-digit
# integer would break them; a bound of +-1e12 seconds (30,000 years) is far beyond any run.
_TIME: Rule = (frozenset({int, float, _NONE}), "must be a number of seconds", True)
_TIME_LIMIT = 1e12
_SCALARS = frozenset({str, int, float, bool, _NONE})


def _fields_problem(value: Any, fields: Mapping[str, Rule]) -> Optional[str]:
    """The first known field of the mapping ``value`` that breaks its rule; None if none does."""
    for key, item in value.items():
        rule = fields.get(key)
        if rule is None:
            continue  # unknown fields are allowed: newer versions may write more
        if rule.__class__ is tuple:
            types, message, finite = rule
            if item.__class__ not in types or (finite and isinstance(item, (int, float))
                                                and not -_TIME_LIMIT <= item <= _TIME_LIMIT):
                return f"{key} {message}"
        elif item is not None:
            problem = rule(item)  # type: ignore[operator]
            if problem:
                return f"{key} {problem}"
    return None


def _scalar_map(value: Any) -> Optional[str]:
    if value.__class__ is not dict:
        return "must be a mapping"
    for key, item in value.items():
        if item.__class__ not in _SCALARS:
            return f"{key!r} must be a string, number, true/false or null"
    return None


def _typed_map(fields: Mapping[str, Rule]) -> Check:
    """A flat mapping of scalars (it is printed whole) whose known keys keep their rules."""
    def check(value: Any) -> Optional[str]:
        return _scalar_map(value) or _fields_problem(value, fields)
    return check


def job_problem(value: Any) -> Optional[str]:
    """Slurm job ids are digits (``123``, ``123_4``): anything else could become an option."""
    if value.__class__ is int and 0 <= value < 10 ** 18:
        return None
    if isinstance(value, str) and _JOB_RE.match(value):
        return None
    return "must be a Slurm job id (digits)"


def _non_negative(value: Any) -> Optional[str]:
    return None if value.__class__ is int and value >= 0 else "must be a non-negative integer"


def _pid(value: Any) -> Optional[str]:
    # A pid is passed to the OS (liveness checks, signals): an integer the kernel can hold.
    return None if value.__class__ is int and 0 < value < 2 ** 31 else "must be a process id"


def _status(value: Any) -> Optional[str]:
    if value.__class__ is str and value in STATUSES:
        return None
    return f"must be a known status, not {repr(value)[:40]}"


_METRIC = _typed_map({"best": _NUMBER, "last": _NUMBER, "count": _non_negative, "goal": _STRING})
_WORKER = _typed_map({"host": _STRING, "pid": _pid, "pid_started": _TIME})
_QUEUE = _typed_map({"priority": _INTEGER, "enqueued": _TIME, "seq": _INTEGER})
_SLURM = _typed_map({"job": job_problem, "task": _non_negative, "remote": _STRING, "script": _STRING})


def _metrics(value: Any) -> Optional[str]:
    if value.__class__ is not dict:
        return "must be a mapping"
    for name, entry in value.items():
        problem = _METRIC(entry)
        if problem:
            return f"{name!r}: {problem}"
    return None


def _checkpoints(value: Any) -> Optional[str]:
    if value.__class__ is not list or not all(item.__class__ is dict for item in value):
        return "must be a list of mappings"
    return None


_ALERT = _typed_map({"rule": _STRING, "message": _STRING, "action": _STRING, "time": _TIME})
_NOTIFY = _typed_map({"sent": _non_negative, "failed": _non_negative, "error": _STRING})


def _alerts(value: Any) -> Optional[str]:
    """Alerts of diagnostic rules (gitexp.diagnostics): flat records, printed by show and log."""
    if value.__class__ is not list:
        return "must be a list of mappings"
    for item in value:
        problem = _ALERT(item)
        if problem:
            return problem
    return None


def _numbers(value: Any) -> Optional[str]:
    """Resource peaks (gitexp.monitor): a flat mapping of numbers."""
    if value.__class__ is not dict:
        return "must be a mapping"
    for key, item in value.items():
        if item is not None and (item.__class__ not in (int, float) or not -1e300 < item < 1e300):
            return f"{key!r} must be a number"
    return None


def _commit_ids(value: Any) -> Optional[str]:
    """Attempt chains name commits: 40 hex digits each, nothing a git revision could misread."""
    if value.__class__ is list and all(item.__class__ is str and _SHA_RE.match(item) for item in value):
        return None
    return "must list commit ids (40 hex digits)"


def _mapping(value: Any) -> Optional[str]:
    return None if value.__class__ is dict else "must be a mapping"


def _strings(value: Any) -> Optional[str]:
    if value.__class__ is list and all(item.__class__ is str for item in value):
        return None
    return "must be a list of strings"


_SUMMARY: Dict[str, Rule] = {
    "status": _status, "params": _scalar_map, "goals": _scalar_map, "metrics": _metrics,
    "checkpoints": _checkpoints, "worker": _WORKER, "queue": _QUEUE, "slurm": _SLURM, "sge": _SLURM,
    "schema": _INTEGER, "pid": _pid, "exit_code": _INTEGER, "attempts": _INTEGER,
    "parent_dirty": _FLAG, "cancel_requested": _FLAG,
    "attempt": _INTEGER, "auto_resumes": _INTEGER, "chain": lambda v: _commit_ids(v),
    "resume": lambda v: _mapping(v), "param_changes": lambda v: _mapping(v), "kind": _STRING,
    "outdir_of": lambda v: _commit_ids([v]), "alerts": _alerts, "resources": _numbers, "notify": _NOTIFY,
    **{key: _TIME for key in ("created", "started", "ended", "duration", "updated", "claimed", "pid_started")},
    **{key: _STRING for key in ("name", "group", "description", "config_hash", "parent", "host", "runner",
                                "run_dir", "outdir", "reason", "wait_reason", "previous_status")},
}
_DETAILS: Dict[str, Rule] = {"facts": _mapping, "log_tail": _STRING, "batch_script": _STRING, "resources": _mapping}
_FACTS: Dict[str, Rule] = {
    **{key: _STRING for key in ("hostname", "user", "platform", "python", "python_executable", "git")},
    "cpus": _INTEGER, "ram": _NUMBER, "gpus": _strings,
    "packages": lambda v: None if v.__class__ is list else "must be a list",
}
# Every summary field this version knows: those checked above, and those it writes and reads as
# they are. A note's other fields (a newer version's) are kept: values.Summary.extra.
SUMMARY_FIELDS: FrozenSet[str] = frozenset(_SUMMARY) | {
    "target", "name_there", "submodules", "creator", "bisect", "recovered", "recovered_from", "imported"}


def summary_problem(value: Any) -> Optional[str]:
    """What is wrong with a parsed summary note, or None when its known fields are usable."""
    if value.__class__ is not dict:
        return "the note is not a JSON object"
    return _fields_problem(value, _SUMMARY)


def details_problem(value: Any) -> Optional[str]:
    if value.__class__ is not dict:
        return "the note is not a JSON object"
    problem = _fields_problem(value, _DETAILS)
    if problem or not value.get("facts"):
        return problem
    problem = _fields_problem(value["facts"], _FACTS)
    return f"facts.{problem}" if problem else None


# -- reading notes ------------------------------------------------------------------------------
_warned: Set[Tuple[str, str]] = set()


def warn(what: str, notes_ref: str, sha: str, problem: str) -> None:
    """One line on stderr per bad note and process, naming the note so it can be read or fixed.

    ``what`` ends with "of", e.g. "the summary note of".
    """
    if (notes_ref, sha) in _warned:
        return
    _warned.add((notes_ref, sha))
    short = notes_ref[len("refs/notes/"):] if notes_ref.startswith("refs/notes/") else notes_ref
    print(printable(f"warning: skipping {what} {sha[:10]}: {problem[:200]}; "
                    f"see git notes --ref={short} show {sha}"), file=sys.stderr, flush=True)


def invalid_summary(problem: str) -> Dict[str, Any]:
    """What an experiment with an unusable summary note lists as: nothing but why."""
    return {"status": INVALID, "reason": f"its summary note is unusable: {problem[:200]}"}


def checked_summary(sha: str, value: Any, parse_problem: Optional[str], notes_ref: str) -> Dict[str, Any]:
    problem = parse_problem or summary_problem(value)
    if problem is None:
        return cast(Dict[str, Any], value)  # summary_problem checked it
    warn("the summary note of", notes_ref, sha, problem)
    return invalid_summary(problem)


def load_summary(sha: str, data: Optional[bytes], notes_ref: str) -> Dict[str, Any]:
    value, problem = parse_json(data)
    return checked_summary(sha, value, problem, notes_ref)


def load_details(sha: str, data: Optional[bytes], notes_ref: str) -> Dict[str, Any]:
    value, problem = parse_json(data)
    problem = problem or details_problem(value)
    if problem is None:
        return cast(Dict[str, Any], value)  # details_problem checked it
    warn("the details note of", notes_ref, sha, problem)
    return {}


def load_history(sha: str, data: Optional[bytes], notes_ref: str) -> List[Dict[str, Any]]:
    """Records of a JSON-lines history; a torn last line (a crash mid-write) is skipped quietly."""
    lines = [line for line in (data or b"").splitlines() if line.strip()]
    fast = _whole_history(lines)
    if fast is not None:
        return fast
    out: List[Dict[str, Any]] = []
    bad: Optional[str] = None
    for number, line in enumerate(lines, 1):
        value, problem = parse_json(line)
        # A torn last line (a crash mid-write) after good records is quiet; a note with no
        # usable record at all is corrupt, and says so.
        torn = problem is not None and problem.startswith("it is not valid JSON") and number == len(lines) and out
        if problem is None and not isinstance(value, dict):
            problem = "it is not a JSON object"
        if problem is None and any(not is_scalar(v) for v in value.values()):
            problem = "a value is not a string, number, true/false or null"
        if problem is None:
            out.append(value)
        elif not torn and bad is None:
            bad = f"record {number}: {problem}"
    if bad:
        warn("bad records of the metric-history note of", notes_ref, sha, bad)
    return out


def _whole_history(lines: List[bytes]) -> Optional[List[Dict[str, Any]]]:
    """Every line at once (one decoder call: 100,000 points are read in a fraction of the
    time), when each is a flat record; None to check line by line (a torn or bad line, or
    lines that only decode joined: the count of records must be the count of lines)."""
    try:
        values = json.loads(b"[" + b",".join(lines) + b"]")
    except (ValueError, RecursionError):
        return None
    if len(values) != len(lines):
        return None
    scalars = _SCALARS
    for value in values:
        if value.__class__ is not dict:
            return None
        for item in value.values():
            if item.__class__ not in scalars:
                return None
    return cast(List[Dict[str, Any]], values)  # each checked above: a dict of scalars


def load_config(sha: str, raw: Optional[bytes], path: str) -> Dict[str, Any]:
    """The resolved config stored in an experiment commit, or {} with a warning if unusable.

    The commit may come from anyone too: YAML aliases can make a small file expand into
    billions of nodes when printed, so the expanded size and depth are bounded here.
    """
    if not raw:
        return {}
    import yaml

    try:
        value = yaml.load(raw, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (yaml.YAMLError, RecursionError, ValueError) as exc:
        problem: Optional[str] = f"it is not valid YAML ({str(exc).splitlines()[0][:80] if str(exc) else ''})"
    else:
        problem = None if isinstance(value, dict) else "it is not a mapping"
        problem = problem or _size_problem(value, max_nodes=100_000)
    if problem is None:
        return cast(Dict[str, Any], value)  # a mapping, checked above
    print(printable(f"warning: skipping the config of {sha[:10]}: {problem}; "
                    f"see git show {sha}:{path}"), file=sys.stderr, flush=True)
    return {}


def _size_problem(value: Any, max_nodes: int) -> Optional[str]:
    """Walks ``value`` without recursion, giving up past ``max_nodes`` nodes or MAX_DEPTH levels."""
    stack = [(value, 0)]
    seen = 0
    while stack:
        item, depth = stack.pop()
        seen += 1
        if seen > max_nodes:
            return f"it has more than {max_nodes} values once YAML aliases are expanded"
        if isinstance(item, (dict, list)):
            if depth >= MAX_DEPTH:
                return f"it is nested more than {MAX_DEPTH} levels deep"
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return None


# -- printing ----------------------------------------------------------------------------------
def json_safe(value: Any, depth: int = 0) -> Any:
    """``value`` as strict JSON can hold it: NaN and infinities become null, deep nesting is cut."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (dict, list, tuple)) and depth >= MAX_DEPTH:
        return "(nested too deeply)"
    if isinstance(value, dict):
        return {str(k): json_safe(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v, depth + 1) for v in value]
    return value


def json_safe_dict(value: Mapping[str, Any]) -> Dict[str, Any]:
    """:func:`json_safe` of a mapping at the top: a dict."""
    return {str(k): json_safe(v, 1) for k, v in value.items()}
