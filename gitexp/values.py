"""Value types: commit ids, experiment names, ref names, and a run's summary read once from its note.

``Oid``, ``ExpName`` and ``RefName`` are strings that passed their parser, so a short name and
a full ref, or a name and a commit id, cannot be confused where the types are checked. A
:class:`Summary` is a summary note parsed once: typed accessors for the fields the readers
use, every other field kept (``extra``), its schema version, and where the note came from
(written here, or fetched from a remote).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Dict, List, Mapping, NewType, Optional, Sequence

from .errors import BadInput
from .lifecycle import Status, parse as parse_status
from .summary import SUMMARY_FIELDS

Oid = NewType("Oid", str)  # a full commit id: 40 lower-case hex digits
ExpName = NewType("ExpName", str)  # an experiment's name: one file name under refs/exps/
RefName = NewType("RefName", str)  # a full ref name: refs/...

SHORT = 10  # hex digits of a commit id in tables and messages
_OID_RE = re.compile(r"^[0-9a-f]{40}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=,+-]*$")
# A name is one file name under refs/exps/ (255 bytes on most filesystems, less ".lock"); 200
# leaves room for the "-N" a taken name gets and for a sweep id's "-sweep-xxxxxx".
MAX_NAME_LEN = 200


# -- commit ids ---------------------------------------------------------------------------------
def is_oid(text: Any) -> bool:
    return text.__class__ is str and _OID_RE.match(text) is not None


def parse_oid(text: str, what: str = "commit id") -> Oid:
    """``text`` as an Oid; BadInput naming ``what`` for anything but 40 lower-case hex digits."""
    if not is_oid(text):
        raise BadInput(f"{what} {text[:60]!r} is not a commit id (40 hex digits)")
    return Oid(text)


def short(oid: str, length: int = SHORT) -> str:
    """The abbreviation of a commit id shown to people (the first ``length`` hex digits)."""
    return oid[:length]


# -- names and refs -----------------------------------------------------------------------------
def name_problem(name: str, max_len: Optional[int] = MAX_NAME_LEN) -> Optional[str]:
    """Why ``name`` cannot be an experiment name (a ref name under refs/exps/), or None."""
    if max_len is not None and len(name) > max_len:
        return f"it has {len(name)} characters; the most is {max_len}"
    if not _NAME_RE.match(name):
        return "use letters, digits and . _ - = , + (starting with a letter or digit)"
    if ".." in name or name.endswith((".", ".lock")):
        return "it may not contain '..' or end with '.' or '.lock'"
    return None


def parse_exp_name(text: str, what: str = "experiment name") -> ExpName:
    problem = name_problem(text)
    if problem:
        raise BadInput(f"{what} {text[:60]!r} is not usable: {problem}")
    return ExpName(text)


def ref_name(prefix: str, name: str) -> RefName:
    """The full ref of ``name`` in the namespace ``prefix`` (one of those in :mod:`gitexp.notes`)."""
    if not prefix.startswith("refs/") or not prefix.endswith("/"):
        raise ValueError(f"not a ref namespace: {prefix!r}")
    return RefName(prefix + name)


def name_in(prefix: str, ref: str) -> Optional[str]:
    """The name of ``ref`` within the namespace ``prefix``, or None when it is not in it."""
    return ref[len(prefix):] if ref.startswith(prefix) and len(ref) > len(prefix) else None


# -- summaries ----------------------------------------------------------------------------------
class Origin(str, Enum):
    HERE = "here"  # written by this repository's commands
    FETCHED = "fetched"  # read from a remote's notes (untrusted: checked, never acted on as a claim here)


def _text(value: Any) -> Optional[str]:
    return value if value.__class__ is str else None


def _number(value: Any) -> Optional[float]:
    return value if value.__class__ in (int, float) else None  # an int stays an int (as JSON output shows it)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class Summary:
    """A summary note, parsed once (:meth:`parse`); the note itself stays in ``note``.

    Accessors give the type the field should have, or None (or empty) when it is absent or
    of another type: a note that failed its checks (``gitexp.summary``) reads as status
    ``invalid``, whose :attr:`status` is None and :attr:`status_text` ``"invalid"``.
    """

    note: Mapping[str, Any]
    origin: Origin = Origin.HERE
    schema: int = 1
    status: Optional[Status] = None
    extra: Mapping[str, Any] = field(default_factory=dict)  # fields this version does not know

    @classmethod
    def parse(cls, note: Mapping[str, Any], origin: Origin = Origin.HERE) -> "Summary":
        schema = note.get("schema")
        return cls(note=note, origin=origin,
                   schema=schema if schema.__class__ is int and schema > 0 else 1,
                   status=parse_status(note.get("status", "created")),
                   extra={k: v for k, v in note.items() if k not in SUMMARY_FIELDS})

    def get(self, key: str, default: Any = None) -> Any:
        """Any field as the note has it (unknown ones too)."""
        return self.note.get(key, default)

    @property
    def status_text(self) -> str:
        return str(self.note.get("status", "created"))

    @property
    def final(self) -> bool:
        return self.status is not None and self.status.final

    @property
    def name(self) -> Optional[str]:
        return _text(self.note.get("name"))

    @property
    def group(self) -> Optional[str]:
        return _text(self.note.get("group"))

    @property
    def host(self) -> Optional[str]:
        return _text(self.note.get("host"))

    @property
    def reason(self) -> Optional[str]:
        return _text(self.note.get("reason"))

    @property
    def target(self) -> Optional[str]:
        return _text(self.note.get("target"))

    @property
    def runner(self) -> Optional[str]:
        return _text(self.note.get("runner"))

    @property
    def params(self) -> Mapping[str, Any]:
        return _mapping(self.note.get("params"))

    @property
    def metrics(self) -> Mapping[str, Any]:
        return _mapping(self.note.get("metrics"))

    @property
    def queue(self) -> Mapping[str, Any]:
        return _mapping(self.note.get("queue"))

    @property
    def worker(self) -> Mapping[str, Any]:
        return _mapping(self.note.get("worker"))

    @property
    def created(self) -> Optional[float]:
        return _number(self.note.get("created"))

    @property
    def started(self) -> Optional[float]:
        return _number(self.note.get("started"))

    @property
    def ended(self) -> Optional[float]:
        return _number(self.note.get("ended"))

    @property
    def duration(self) -> Optional[float]:
        return _number(self.note.get("duration"))

    @property
    def exit_code(self) -> Optional[int]:
        value = self.note.get("exit_code")
        return value if value.__class__ is int else None

    @property
    def attempt(self) -> int:
        """Which run of the experiment this is (1: the first; see gitexp.attempts)."""
        n = self.note.get("attempt")
        if n.__class__ is int and n > 0:
            return int(n)
        chain = self.note.get("chain")
        return 1 + (len(chain) if isinstance(chain, list) else 0)

    @property
    def chain(self) -> List[str]:
        chain = self.note.get("chain")
        return [c for c in chain if is_oid(c)] if isinstance(chain, list) else []

    def best(self) -> Dict[str, Any]:
        """metric -> its best value (its last when it has no goal)."""
        return {k: v.get("best", v.get("last")) for k, v in self.metrics.items() if isinstance(v, dict)}


def closest(word: str, choices: Sequence[str]) -> str:
    import difflib  # only when a word is wrong: it is not cheap to import (~4 ms of every run)

    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f"did you mean '{match[0]}'?" if match else "expected one of: " + ", ".join(choices)
