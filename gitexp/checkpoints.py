"""Checkpoint pointers: recorded by the program (``gitexp.checkpoint``) or found by the executor.

A program that cannot call the API lists its checkpoint files in the config::

    checkpoints: ["out/*.pt", "{outdir}/ckpt-*.pt"]
    checkpoints: {files: ["out/model.pt"], keep: 3, resume_steps: continue}

A relative pattern is matched in the run's working tree (``wt/``, removed when the run
ends), ``{outdir}/...`` in the persistent output directory. :class:`CheckpointWatcher` scans
the patterns every second; a file whose content is new, and the same size and mtime in two
scans running (not being written), is copied (a reflink where the filesystem can, else a real
copy; never a hard link, which a program overwriting the file in place, as ``torch.save``
does, would change under every pointer) to
``{outdir}/.gitexp-checkpoints/<its path, the content's hash in the name>``, and a pointer
to that copy goes to ``checkpoints.jsonl``: path, source, size, mtime, ``sha256``, host, and
the step: the last number in the file's name, else the latest step logged at or before the
file's modification time. The same content is never recorded twice (a file an earlier attempt
left in ``{outdir}`` is not new). Of each watched file the copies of the latest ``keep``
(default 1) contents and the one saved at the best step of the first goal metric are kept,
older ones deleted, so the disk they take is bounded.

Choosing a checkpoint to resume from (:func:`usable`, :func:`choose`) reads pointers from
summary notes, which are untrusted: only well-typed records count, and a path is used only
after checking that it exists on the host that will resume and still holds what was saved
(:func:`mismatch`).
"""
from __future__ import annotations

import collections
import glob
import hashlib
import json
import os
import re
import shutil
import socket
from dataclasses import dataclass, field
from typing import Any, Callable, Deque, Dict, List, Mapping, Optional, Sequence, Tuple

from .metrics import checkpoint_record
from .config import leaves_tree
from .sections import Section
from .watch import RunContext, Watcher

KEEP_DIR = ".gitexp-checkpoints"
_LAST_NUMBER = re.compile(r"(\d+)(?!.*\d)")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
RESUME_STEPS = ("continue", "as_logged")
SPEC_KEYS = ("files", "keep", "resume_steps")
MARKS = 100_000  # (time, step) marks kept to date a checkpoint file by its mtime
Fail = Callable[[str, str, Optional[str]], Exception]


# -- the config ----------------------------------------------------------------------------------
@dataclass
class Spec:
    """``checkpoints:``: the watched patterns, how many copies of each file to keep, and how a
    resumed attempt's steps join the chain's curve (``resume_steps``, see
    :func:`gitexp.attempts.join_chain`)."""

    patterns: List[str] = field(default_factory=list)
    keep: int = 1
    resume_steps: str = "continue"
    given: Any = None  # what the config said, stored back as it was

    def to_dict(self) -> Any:
        return self.given

    def __bool__(self) -> bool:
        return self.given is not None

    def __iter__(self) -> Any:  # the patterns, as the list form always gave
        return iter(self.patterns)


def spec_of(config: Any) -> Spec:
    value = getattr(config, "checkpoints", None)
    if isinstance(value, Spec):
        return value
    return Spec(list(value or []), given=list(value) if value else None)


def parse(value: Any, fail: Fail, leaves_tree: Callable[[str], bool]) -> Spec:
    """The ``checkpoints:`` section: a list of patterns, or a mapping (``files``, ``keep``,
    ``resume_steps``); ``fail(key, message, hint)`` makes the one-line error."""
    if value is None:
        return Spec()
    spec = Spec(given=value)
    if isinstance(value, dict):
        for key in value:
            if key not in SPEC_KEYS:
                raise fail(f"checkpoints.{key}", f"unknown key 'checkpoints.{key}'", "expected one of: "
                           + ", ".join(SPEC_KEYS))
        keep = value.get("keep", 1)
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise fail("checkpoints.keep", f"'checkpoints.keep' must be a whole number >= 1, not {keep!r}",
                       "it is how many contents of each watched file are kept (the best one is kept too)")
        steps = value.get("resume_steps", "continue")
        if steps not in RESUME_STEPS:
            raise fail("checkpoints.resume_steps", f"'checkpoints.resume_steps' must be continue or as_logged, "
                       f"not {steps!r}", "continue: a resumed program that restarts its step counter continues "
                       "the curve from the checkpoint's step")
        spec.keep, spec.resume_steps = keep, steps
        value = value.get("files", [])
        if value == []:
            return spec
    spec.patterns = _patterns(value, fail, leaves_tree)
    return spec


SECTION = Section("checkpoints", lambda value, given: parse(value, given.fail, leaves_tree))  # installed by gitexp.watchers


def _patterns(value: Any, fail: Fail, leaves_tree: Callable[[str], bool]) -> List[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
        raise fail("checkpoints", "'checkpoints' must be a list of file patterns",
                   'e.g. checkpoints: ["out/*.pt", "{outdir}/ckpt-*.pt"]')
    for pattern in value:
        rest = pattern[len("{outdir}"):].lstrip("/") if pattern.startswith("{outdir}") else pattern
        if "\0" in pattern or os.path.isabs(rest) or leaves_tree(rest) or "{" in rest:
            raise fail("checkpoints", f"'checkpoints' pattern {pattern!r} must be a relative path "
                       "in the run's directory, or start with {outdir}/",
                       'e.g. "out/*.pt" (in the run\'s working tree) or "{outdir}/*.pt"')
    return list(value)


def step_from_name(path: str) -> Optional[int]:
    match = _LAST_NUMBER.search(os.path.basename(path))
    return int(match.group(1)) if match and len(match.group(1)) < 19 else None


# -- copies --------------------------------------------------------------------------------------
def _clone(src: int, dst: int) -> bool:
    """A reflink (copy-on-write clone) where the filesystem has them (Linux FICLONE)."""
    try:
        import fcntl

        fcntl.ioctl(dst, 0x40049409, src)  # FICLONE
        return True
    except (ImportError, OSError):
        return False


def copy_hashed(path: str, tmp: str) -> str:
    """Copy ``path`` to ``tmp`` (a reflink where possible); the sha256 of what was copied."""
    digest = hashlib.sha256()
    with open(path, "rb") as src, open(tmp, "wb") as dst:
        if _clone(src.fileno(), dst.fileno()):
            with open(tmp, "rb") as copied:
                for chunk in iter(lambda: copied.read(1 << 20), b""):
                    digest.update(chunk)
            return digest.hexdigest()
        for chunk in iter(lambda: src.read(1 << 20), b""):
            digest.update(chunk)
            dst.write(chunk)
    return digest.hexdigest()


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def mismatch(pointer: Mapping[str, Any]) -> Optional[str]:
    """Why the file a pointer names no longer holds what was recorded (None: it does, as far as
    the pointer says: its ``sha256``, else its ``size``)."""
    path = pointer["path"]
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        return f"it cannot be read ({exc.strerror})"
    if isinstance(pointer.get("size"), int) and size != pointer["size"]:
        return f"it is {size} bytes, {pointer['size']} were recorded"
    want = pointer.get("sha256")
    if isinstance(want, str) and _SHA256.match(want):
        try:
            if file_sha256(path) != want:
                return "its content changed since it was recorded (sha256 differs)"
        except OSError as exc:
            return f"it cannot be read ({exc.strerror})"
    return None


# -- the watcher ---------------------------------------------------------------------------------
class CheckpointWatcher(Watcher):
    def __init__(self, ctx: RunContext, spec: Spec, goal: Optional[Tuple[str, str]] = None) -> None:
        self.ctx = ctx
        self.spec = spec
        self.patterns = [self._full(p) for p in spec.patterns]
        self.keep_root = os.path.join(self.ctx.paths.outdir, KEEP_DIR)
        self.pending: Dict[str, Tuple[int, int]] = {}  # path -> (size, mtime_ns) seen once
        self.recorded: Dict[str, Tuple[int, int]] = {}
        self.hashes: Dict[str, str] = {}  # path -> sha256 of its content last recorded
        self.kept: Dict[str, List[Tuple[str, Optional[int]]]] = {}  # path -> its copies (path, step), oldest first
        self.marks: Deque[Tuple[float, int]] = collections.deque(maxlen=MARKS)  # (time, step) logged
        self.goal = goal  # (metric, minimize|maximize): the best checkpoint is kept
        self.best: Optional[Tuple[float, Optional[int]]] = None
        self.next_scan = 0.0
        self._baseline()

    def _full(self, pattern: str) -> str:
        if pattern.startswith("{outdir}"):
            return os.path.join(self.ctx.paths.outdir, pattern[len("{outdir}"):].lstrip("/"))
        return os.path.join(self.ctx.paths.worktree, pattern)

    def _files(self) -> List[str]:
        found = []
        for pattern in self.patterns:
            for path in sorted(glob.glob(pattern, recursive=True)):
                if not path.startswith(self.keep_root + os.sep) and os.path.isfile(path):
                    found.append(path)
        return found

    def _baseline(self) -> None:
        """Files there before this attempt began (an earlier attempt's, in a shared
        ``{outdir}``) are not new checkpoints."""
        for path in self._files():
            try:
                st = os.stat(path)
            except OSError:
                continue
            if st.st_mtime < self.ctx.started:
                self.recorded[path] = (st.st_size, st.st_mtime_ns)

    def on_points(self, records: List[Dict[str, Any]]) -> None:
        for record in records:
            step, when = record.get("step"), record.get("time")
            if isinstance(step, int) and not isinstance(step, bool) and isinstance(when, (int, float)):
                self.marks.append((float(when), step))
            if self.goal is not None and isinstance(record.get(self.goal[0]), (int, float)):
                value = float(record[self.goal[0]])
                better = self.best is None or (value < self.best[0] if self.goal[1] == "minimize"
                                               else value > self.best[0])
                if value == value and better:
                    self.best = (value, step if isinstance(step, int) else None)

    def step_at(self, when: float) -> Optional[int]:
        """The step logged last at or before ``when`` (a file's mtime)."""
        best: Optional[Tuple[float, int]] = None
        for mark in self.marks:
            if mark[0] <= when and (best is None or mark >= best):
                best = mark
        return best[1] if best is not None else None

    def on_tick(self, now: float) -> None:
        if now >= self.next_scan:
            self.next_scan = now + 1.0
            self.scan(settled=False)

    def on_end(self, status: str) -> None:
        self.scan(settled=True)

    def scan(self, settled: bool) -> None:
        """Record files that changed; unless ``settled``, only those unchanged since the last scan."""
        for path in self._files():
            try:
                st = os.stat(path)
            except OSError:
                continue
            key = (st.st_size, st.st_mtime_ns)
            if self.recorded.get(path) == key:
                continue
            if settled or self.pending.get(path) == key:
                self.pending.pop(path, None)
                if self._record(path, st):
                    self.recorded[path] = key
            else:
                self.pending[path] = key

    def _source(self, path: str) -> str:
        for base in (self.ctx.paths.worktree, self.ctx.paths.outdir):
            if path.startswith(base + os.sep):
                return os.path.relpath(path, base)
        return os.path.basename(path)

    def _record(self, path: str, st: os.stat_result) -> bool:
        """Copy and point to ``path``; False to look again later (it changed while copied)."""
        kept = self._keep(path, st)
        if kept is None:
            return False
        target, digest = kept
        if self.hashes.get(path) == digest:
            return True  # rewritten with the same content: nothing new
        step = step_from_name(path)
        step = step if step is not None else self.step_at(st.st_mtime)
        record = {"path": target, "source": self._source(path), "step": step, "size": st.st_size,
                  "mtime": st.st_mtime, "time": st.st_mtime, "sha256": digest, "host": socket.gethostname(),
                  "found": True}
        try:
            with open(self.ctx.paths.checkpoints, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")
        except OSError as exc:
            self.ctx.say(f"gitexp: warning: cannot record checkpoint {path}: {exc.strerror}")
            return False
        self.hashes[path] = digest
        self.kept.setdefault(path, []).append((target, step))
        self._prune(path)
        return True

    def _keep(self, path: str, st: os.stat_result) -> Optional[Tuple[str, str]]:
        """(the copy, its sha256), or None when the file changed while copied or cannot be kept."""
        source = self._source(path)
        stem, suffix = os.path.splitext(os.path.basename(source))
        folder = os.path.join(self.keep_root, os.path.dirname(source))
        tmp = os.path.join(folder, f".{stem}.tmp{os.getpid()}")
        try:
            os.makedirs(folder, exist_ok=True)
            digest = copy_hashed(path, tmp)
            now = os.stat(path)
            if (now.st_size, now.st_mtime_ns) != (st.st_size, st.st_mtime_ns):
                return None  # written while we copied: the next scans settle it
            target = os.path.join(folder, f"{stem}.{digest[:16]}{suffix}")
            if os.path.exists(target):
                os.unlink(tmp)  # this content is kept already (an earlier save or attempt)
            else:
                os.replace(tmp, target)
            return target, digest
        except (OSError, shutil.Error) as exc:
            self.ctx.say(f"gitexp: warning: cannot keep checkpoint {path}: "
                         f"{getattr(exc, 'strerror', None) or exc}")
            return None
        finally:
            if os.path.lexists(tmp):
                try:
                    os.unlink(tmp)
                except OSError:
                    pass

    def _prune(self, path: str) -> None:
        """Delete copies of ``path`` beyond the latest ``keep`` and the best one."""
        copies = self.kept[path]
        keep = {c[0] for c in copies[-self.spec.keep:]}
        best_step = self.best[1] if self.best is not None else None
        if best_step is not None:
            before = [c for c in copies if c[1] is not None and c[1] <= best_step]
            if before:
                keep.add(max(before, key=lambda c: c[1] if c[1] is not None else -1)[0])
        for copy_path, _step in copies:
            if copy_path not in keep:
                try:
                    os.unlink(copy_path)
                except OSError:
                    pass
        self.kept[path] = [c for c in copies if c[0] in keep]


def _goal(config: Any) -> Optional[Tuple[str, str]]:
    for name, metric in (getattr(config, "metrics", None) or {}).items():
        if getattr(metric, "goal", None) in ("minimize", "maximize"):
            return name, metric.goal
    return None


def factory(ctx: RunContext) -> Optional[Watcher]:
    spec = spec_of(ctx.config)
    return CheckpointWatcher(ctx, spec, _goal(ctx.config)) if spec.patterns else None


# -- choosing one to resume from -------------------------------------------------------------
def usable(records: Any) -> List[Dict[str, Any]]:
    """Well-typed pointers from a note, later ones first; of pointers to one path only the last
    counts (the file holds what was saved last)."""
    if not isinstance(records, list):
        return []
    out: List[Dict[str, Any]] = []
    seen = set()
    for raw in reversed(records):
        record = checkpoint_record(raw)
        if record is None or record["path"] in seen:
            continue
        seen.add(record["path"])
        digest = record.get("sha256")
        out.append({**{key: record[key] for key in ("path", "step", "host", "time", "size")},
                    "sha256": digest if isinstance(digest, str) and _SHA256.match(digest) else None})
    return out


def chain_checkpoints(summaries: Sequence[Tuple[str, Mapping[str, Any]]]) -> List[Dict[str, Any]]:
    """Every usable pointer of a chain (attempt sha, summary; oldest first), newest first."""
    out: List[Dict[str, Any]] = []
    for sha, summary in reversed(summaries):
        for record in usable(summary.get("checkpoints")):
            out.append({**record, "attempt": sha})
    return out


def choose(candidates: List[Dict[str, Any]], step: Optional[int]) -> Optional[Dict[str, Any]]:
    """The newest pointer, or the one at ``step`` (of the latest attempt that has one).

    Newest: of the latest attempt that recorded one (``candidates`` come newest attempt
    first), the highest step, then the latest. Steps are each attempt's own: a program that
    restarts its counter on resume saves at low steps again, and those are still its newest.
    """
    if step is not None:
        return next((c for c in candidates if c["step"] == step), None)
    if not candidates:
        return None
    latest = [c for c in candidates if c.get("attempt") == candidates[0].get("attempt")]
    return max(latest, key=lambda c: (c["step"] if c["step"] is not None else -1, c["time"] or 0.0))


def describe_steps(candidates: List[Dict[str, Any]]) -> str:
    steps = sorted({c["step"] for c in candidates if c["step"] is not None})
    return ", ".join(str(s) for s in steps) if steps else "none has a step"
