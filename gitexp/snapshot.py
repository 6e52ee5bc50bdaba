"""What goes into an experiment's snapshot: tracked files always; untracked ones within limits.

An experiment commit holds the working tree as it is, but an untracked 50 MB dataset or a
trainer's ``out/`` full of checkpoints would be committed on every run (and stay in ``.git``
for good). So untracked, non-ignored files are taken in path order while they fit:

* a file over ``max_file_size`` (default 1 MB) is left out;
* after ``max_files`` untracked files (default 1,000) or ``max_total`` bytes of them
  (default 20 MB) the rest are left out;
* ``exclude`` patterns leave paths out, ``include`` patterns take them in whatever their size
  (patterns as in .gitignore, simplified: ``out/`` a folder, ``*.pt`` a name anywhere,
  ``data/*.csv`` a path from the repository root);
* the run directories, when ``GITEXP_RUNS_DIR`` puts them inside the working tree, are never
  taken.

What was left out is listed in a warning and kept in the experiment's details note.
Tracked files are always in: they are the code.

```yaml
snapshot:
  max_file_size: 1MB
  max_total: 20MB
  max_files: 1000
  exclude: [out/, "*.pt"]
  include: [data/vocab.txt]
```
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from .units import format_size, parse_size

KEYS = ("max_file_size", "max_total", "max_files", "include", "exclude")
DEFAULT_MAX_FILE = 1_000_000
DEFAULT_MAX_TOTAL = 20_000_000
DEFAULT_MAX_FILES = 1000


@dataclass
class SnapshotSpec:
    max_file_size: int = DEFAULT_MAX_FILE
    max_total: int = DEFAULT_MAX_TOTAL
    max_files: int = DEFAULT_MAX_FILES
    include: List[str] = field(default_factory=list)
    exclude: List[str] = field(default_factory=list)
    never: List[str] = field(default_factory=list)  # folders (relative, ending in /) never taken

    def to_dict(self) -> Dict[str, Any]:
        """What differs from the defaults, as stored in the resolved config."""
        out: Dict[str, Any] = {}
        for key, default in (("max_file_size", DEFAULT_MAX_FILE), ("max_total", DEFAULT_MAX_TOTAL),
                             ("max_files", DEFAULT_MAX_FILES)):
            if getattr(self, key) != default:
                out[key] = getattr(self, key)
        for key in ("include", "exclude"):
            if getattr(self, key):
                out[key] = list(getattr(self, key))
        return out


@dataclass(frozen=True)
class LeftOut:
    path: str
    size: int
    why: str

    def to_dict(self) -> Dict[str, Any]:
        return {"path": self.path, "size": self.size, "why": self.why}


def parse(value: Any, fail: Callable[[str, str, Optional[str]], Exception]) -> SnapshotSpec:
    """The ``snapshot:`` section of a config; ``fail(key, message, hint)`` makes the error."""
    if value is None:
        return SnapshotSpec()
    if not isinstance(value, dict):
        raise fail("snapshot", "'snapshot' must be a mapping (" + ", ".join(KEYS) + ")", None)
    for key in value:
        if key not in KEYS:
            raise fail(f"snapshot.{key}", f"unknown key 'snapshot.{key}'", "expected one of: " + ", ".join(KEYS))
    spec = SnapshotSpec()
    for key in ("max_file_size", "max_total"):
        if key in value:
            try:
                setattr(spec, key, parse_size(value[key]))
            except ValueError as exc:
                raise fail(f"snapshot.{key}", f"snapshot.{key}: {exc}", "e.g. 5MB") from exc
    if "max_files" in value:
        count = value["max_files"]
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise fail("snapshot.max_files", f"snapshot.max_files: {count!r} is not a count", "e.g. 500")
        spec.max_files = count
    for key in ("include", "exclude"):
        patterns = value.get(key) or []
        if isinstance(patterns, str):
            patterns = [patterns]
        if not isinstance(patterns, list) or not all(isinstance(p, str) and p.strip() for p in patterns):
            raise fail(f"snapshot.{key}", f"snapshot.{key} must be a list of path patterns", "e.g. [out/, '*.pt']")
        setattr(spec, key, [p.strip() for p in patterns])
    return spec


def matches(path: str, pattern: str) -> bool:
    """``path`` (relative, '/'-separated; a folder ends in '/') against a .gitignore-like pattern."""
    anchored = pattern.startswith("/") or "/" in pattern.rstrip("/")
    pattern = pattern.lstrip("/")
    folder = pattern.endswith("/")
    pattern = pattern.rstrip("/")
    parts = path.rstrip("/").split("/")
    # Every leading folder of the path, and the path itself (unless the pattern is a folder).
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts))]
    if not folder or path.endswith("/"):
        prefixes.append(path.rstrip("/"))
    for candidate in prefixes:
        name = candidate if anchored else candidate.rsplit("/", 1)[-1]
        if fnmatch.fnmatchcase(name, pattern):
            return True
    return False


def choose(spec: SnapshotSpec, untracked: Sequence[Tuple[str, int]]) -> Tuple[List[str], List[LeftOut]]:
    """Which untracked ``(path, size)`` entries to take, and what is left out and why."""
    taken: List[str] = []
    left: List[LeftOut] = []
    total = counted = 0  # what the limits count: not includes, not nested repositories
    for path, size in sorted(untracked):
        if any(path.startswith(prefix) for prefix in spec.never):
            continue  # gitexp's own run directories: not even worth a warning
        if any(matches(path, p) for p in spec.include):
            taken.append(path)
            continue
        if any(matches(path, p) for p in spec.exclude):
            left.append(LeftOut(path, size, "excluded by snapshot.exclude"))
            continue
        if path.endswith("/"):  # a nested repository: recorded as its commit, costs nothing
            taken.append(path)
            continue
        if size > spec.max_file_size:
            left.append(LeftOut(path, size, f"over snapshot.max_file_size ({format_size(spec.max_file_size)})"))
        elif counted >= spec.max_files:
            left.append(LeftOut(path, size, f"past snapshot.max_files ({spec.max_files} untracked files)"))
        elif total + size > spec.max_total:
            left.append(LeftOut(path, size, f"past snapshot.max_total ({format_size(spec.max_total)} of untracked files)"))
        else:
            taken.append(path)
            total += size
            counted += 1
    return taken, left


def warning(left: Sequence[LeftOut], shown: int = 8) -> Optional[str]:
    """One message naming what was left out (the first few, then a count)."""
    if not left:
        return None
    items = [f"{item.path} ({format_size(item.size)}, {item.why})" for item in left[:shown]]
    more = f" and {len(left) - shown} more" if len(left) > shown else ""
    return (f"left {len(left)} untracked file(s) out of the snapshot: " + "; ".join(items) + more
            + " (commit them, or set snapshot.include / snapshot limits in the config)")


def details(left: Sequence[LeftOut], limit: int = 500) -> Mapping[str, Any]:
    """What the experiment's details note keeps about the snapshot."""
    return {"left_out": [item.to_dict() for item in left[:limit]], "left_out_count": len(left)}
