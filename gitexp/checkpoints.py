"""Checkpoint pointers: recorded by the program (``gitexp.checkpoint``) or found by the executor.

A program that cannot call the API lists its checkpoint files in the config::

    checkpoints: ["out/*.pt", "{outdir}/ckpt-*.pt"]

A relative pattern is matched in the run's working tree (``wt/``, removed when the run
ends), ``{outdir}/...`` in the persistent output directory. :class:`CheckpointWatcher` scans
the patterns every second; a file that is new or changed, and the same size and mtime in two
scans running (not being written), is recorded in ``checkpoints.jsonl`` like an API pointer:
path, size, mtime, host, and the step (the last number in the file's name, else the latest
step any metric reported). A file in the working tree is first hard-linked (copied across
filesystems) to ``{outdir}/.gitexp-checkpoints/<its path>``, so it outlives the run; the
pointer names that copy.

Choosing a checkpoint to resume from (:func:`usable`, :func:`choose`) reads pointers from
summary notes, which are untrusted: only well-typed records count, and a path is used only
after checking that it exists on the host that will resume.
"""
from __future__ import annotations

import glob
import json
import os
import re
import shutil
import socket
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from .metrics import checkpoint_record
from .watch import RunContext, Watcher, register

KEEP_DIR = ".gitexp-checkpoints"
_LAST_NUMBER = re.compile(r"(\d+)(?!.*\d)")


def step_from_name(path: str) -> Optional[int]:
    match = _LAST_NUMBER.search(os.path.basename(path))
    return int(match.group(1)) if match and len(match.group(1)) < 19 else None


class CheckpointWatcher(Watcher):
    def __init__(self, ctx: RunContext, patterns: Sequence[str]) -> None:
        self.ctx = ctx
        self.patterns = [self._full(p) for p in patterns]
        self.pending: Dict[str, Tuple[int, int]] = {}  # path -> (size, mtime_ns) seen once
        self.recorded: Dict[str, Tuple[int, int]] = {}
        self.latest_step: Optional[int] = None
        self.next_scan = 0.0

    def _full(self, pattern: str) -> str:
        if pattern.startswith("{outdir}"):
            return os.path.join(self.ctx.paths.outdir, pattern[len("{outdir}"):].lstrip("/"))
        return os.path.join(self.ctx.paths.worktree, pattern)

    def on_points(self, records: List[Dict[str, Any]]) -> None:
        for record in records:
            step = record.get("step")
            if isinstance(step, int) and not isinstance(step, bool) and (self.latest_step is None
                                                                          or step > self.latest_step):
                self.latest_step = step

    def on_tick(self, now: float) -> None:
        if now >= self.next_scan:
            self.next_scan = now + 1.0
            self.scan(settled=False)

    def on_end(self, status: str) -> None:
        self.scan(settled=True)

    def scan(self, settled: bool) -> None:
        """Record files that changed; unless ``settled``, only those unchanged since the last scan."""
        for pattern in self.patterns:
            for path in sorted(glob.glob(pattern, recursive=True)):
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                if not os.path.isfile(path):
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

    def _record(self, path: str, st: os.stat_result) -> bool:
        kept = self._keep(path)
        if kept is None:
            return False
        step = step_from_name(path)
        record = {"path": kept, "source": os.path.relpath(path, self.ctx.paths.worktree)
                  if path.startswith(self.ctx.paths.worktree + os.sep) else path,
                  "step": step if step is not None else self.latest_step, "size": st.st_size,
                  "time": st.st_mtime, "host": socket.gethostname(), "found": True}
        try:
            with open(self.ctx.paths.checkpoints, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")
        except OSError as exc:
            self.ctx.say(f"gitexp: warning: cannot record checkpoint {path}: {exc.strerror}")
            return False
        return True

    def _keep(self, path: str) -> Optional[str]:
        """A path for the checkpoint that outlives the run's working tree."""
        worktree = self.ctx.paths.worktree + os.sep
        if not path.startswith(worktree):
            return path
        target = os.path.join(self.ctx.paths.outdir, KEEP_DIR, os.path.relpath(path, worktree))
        tmp = f"{target}.tmp{os.getpid()}"
        try:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            try:
                os.link(path, tmp)
            except OSError:
                shutil.copy2(path, tmp)  # another filesystem, or no hard links there
            os.replace(tmp, target)
        except OSError as exc:
            self.ctx.say(f"gitexp: warning: cannot keep checkpoint {path}: {exc.strerror}")
            try:
                os.unlink(tmp)
            except OSError:
                pass
            return None
        return target


@register
def _factory(ctx: RunContext) -> Optional[Watcher]:
    patterns = getattr(ctx.config, "checkpoints", None)
    return CheckpointWatcher(ctx, patterns) if patterns else None


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
        out.append({key: record[key] for key in ("path", "step", "host", "time")})
    return out


def chain_checkpoints(summaries: Sequence[Tuple[str, Mapping[str, Any]]]) -> List[Dict[str, Any]]:
    """Every usable pointer of a chain (attempt sha, summary; oldest first), newest first."""
    out: List[Dict[str, Any]] = []
    for sha, summary in reversed(summaries):
        for record in usable(summary.get("checkpoints")):
            out.append({**record, "attempt": sha})
    return out


def choose(candidates: List[Dict[str, Any]], step: Optional[int]) -> Optional[Dict[str, Any]]:
    """The newest pointer (highest step, then latest), or the one at ``step``."""
    if step is not None:
        return next((c for c in candidates if c["step"] == step), None)
    if not candidates:
        return None
    return max(candidates, key=lambda c: (c["step"] if c["step"] is not None else -1, c["time"] or 0.0))


def describe_steps(candidates: List[Dict[str, Any]]) -> str:
    steps = sorted({c["step"] for c in candidates if c["step"] is not None})
    return ", ".join(str(s) for s in steps) if steps else "none has a step"
