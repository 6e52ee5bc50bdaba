"""What a run target's far side answers is a claim too: the checks on an ``_agent`` reply.

The client (:mod:`gitexp.runners.ssh`) reads at most :data:`MAX_REPLY` bytes of an answer
(the transport kills the command past that), and parses its last line here: JSON, an object,
nested at most :data:`MAX_DEPTH` levels, every known field of its operation of the right type,
the fields the caller needs present. For ``submit`` every experiment sent must come back once,
and nothing else. A reply that fails is refused as a whole: :func:`reply_problem` says why in
a few words, and the caller treats it as the far side's refusal.
"""
from __future__ import annotations

import json
from typing import Any, Collection, Dict, Mapping, Optional, Sequence, Tuple, Type, Union

from ..summary import STATUSES

MAX_REPLY = 32 << 20  # bytes: 500 queued experiments answer in ~250 KB
PROTOCOL = 1  # of the requests and answers between the two sides; bumped when one changes shape
MAX_DEPTH = 32
NONE = type(None)
Types = Union[Type[Any], Tuple[Type[Any], ...]]

# The fields each operation's answer may carry, and their types. Unknown extra fields are allowed
# (a newer far side may say more); a known field of another type is not.
FIELDS: Dict[str, Dict[str, Types]] = {
    "probe": {"version": str, "protocol": int, "schemas": list, "python": str, "executable": str, "host": str,
              "git": (str, NONE), "repo": bool, "root": str, "runs_root": str, "disk_free": int,
              "disk_total": int},
    "submit": {"exps": list, "warnings": list, "host": str},
    "queue": {"queued": list, "running": list, "done": list, "states": dict, "resources": dict, "host": str},
    "cancel": {"results": list},
    "drop": {"dropped": list},
    "top": {"rows": list, "host": str},
}
NEEDED: Dict[str, Tuple[str, ...]] = {"probe": ("version", "protocol"), "submit": ("exps",),
                                      "cancel": ("results",), "drop": ("dropped",)}
EXP_FIELDS: Dict[str, Types] = {"sha": str, "name": str, "status": str, "reason": (str, NONE),
                                "slurm": (dict, NONE), "runner": (str, NONE), "handle": (dict, NONE)}


def parse_reply(op: str, stdout: bytes, need: Sequence[str] = ()) -> Tuple[Dict[str, Any], Optional[str]]:
    """(the answer, None), or ({}, what is wrong with it). The answer is the last line of
    ``stdout`` (a login script may print before it)."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    if not lines:
        return {}, "no answer at all"
    try:
        answer = json.loads(lines[-1])
    except RecursionError:
        return {}, f"JSON nested more than {MAX_DEPTH} levels deep"
    except ValueError:
        return {}, f"not JSON: {lines[-1][:80].decode(errors='replace')!r}"
    if not isinstance(answer, dict):
        return {}, f"a JSON {type(answer).__name__}, not an object"
    problem = depth_problem(answer) or fields_problem(answer, FIELDS.get(op, {}), (*NEEDED.get(op, ()), *need))
    return (({}, problem) if problem else (answer, None))


def depth_problem(value: Any, limit: int = MAX_DEPTH) -> Optional[str]:
    """Walks ``value`` without recursion; past ``limit`` levels it says so."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth >= limit:
                return f"JSON nested more than {limit} levels deep"
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return None


def fields_problem(value: Mapping[str, Any], fields: Mapping[str, Types], need: Sequence[str]) -> Optional[str]:
    missing = [key for key in need if key not in value]
    if missing:
        return f"no {', '.join(repr(k) for k in missing)} in it (it has {', '.join(map(repr, list(value)[:5])) or 'nothing'})"
    for key, kinds in fields.items():
        if key in value and (not isinstance(value[key], kinds) or isinstance(value[key], bool) and kinds is int):
            return f"{key!r} is a {type(value[key]).__name__}"
    return None


def submitted_problem(answer: Mapping[str, Any], sent: Collection[str]) -> Optional[str]:
    """What is wrong with ``submit``'s account of the experiments: each one sent, once."""
    seen = set()
    for item in answer["exps"]:
        if not isinstance(item, dict):
            return "an experiment in 'exps' is not an object"
        problem = fields_problem(item, EXP_FIELDS, ("sha", "name", "status"))
        if problem:
            return f"an experiment in 'exps': {problem}"
        if item["sha"] not in sent or item["sha"] in seen:
            return f"'exps' names {item['sha'][:40]!r}, which was {'already listed' if item['sha'] in seen else 'not sent'}"
        if item["status"] not in STATUSES or not item["name"] or any(ord(c) < 32 for c in item["name"]):
            return f"experiment {item['sha'][:10]} has status {item['status'][:20]!r} and name {item['name'][:40]!r}"
        seen.add(item["sha"])
    if len(seen) != len(sent):
        return f"it accounts for {len(seen)} of the {len(sent)} experiment(s) sent"
    warnings = answer.get("warnings") or []
    if not all(isinstance(w, str) for w in warnings):
        return "'warnings' is not a list of strings"
    return None


__all__ = ["MAX_REPLY", "MAX_DEPTH", "parse_reply", "submitted_problem"]
