"""``git exp apply``: write an experiment's files into the working tree (index and HEAD unchanged).

:func:`plan_apply` reads only: which files would be written, which of those have uncommitted
changes, what stands in the way. :func:`apply` refuses what the plan forbids, then writes the
files with git's own checkout code through a private index.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from ..errors import BadInput
from ..notes import CONFIG_PATH, Experiment, Store
from ..repo import Repo
from ..summary import printable

GITLINK = "160000"


@dataclass(frozen=True)
class ApplyPlan:
    write: Tuple[str, ...] = ()    # paths to write from the experiment
    dirty: Tuple[str, ...] = ()    # ... of those, ones with uncommitted changes
    blocked: Tuple[str, ...] = ()  # what would have to be removed first
    kept: Tuple[str, ...] = ()     # paths in the working tree, not in the experiment
    skipped: Tuple[str, ...] = ()  # submodules: apply does not check them out


@dataclass(frozen=True)
class Applied:
    exp: Experiment
    plan: ApplyPlan  # what was written: plan.write


@dataclass(frozen=True)
class TreeChange:
    """One line of ``git diff-tree -r -z``."""

    old_mode: str
    new_mode: str
    new_sha: str
    status: str
    path: str  # as git printed it, decoded with surrogateescape so any bytes round-trip


def apply(repo: Repo, store: Store, ident: str, force: bool = False) -> Applied:
    """Write the files of experiment ``ident`` that differ from the working tree. BadInput,
    with nothing written, when a file or link stands where a directory must go, or (without
    ``force``) when a file to write has uncommitted changes."""
    exp = store.find(ident)
    plan = plan_apply(repo, exp.sha)
    if plan.blocked:
        raise BadInput(f"apply would have to remove {plan.blocked[0]}, which the experiment does not contain",
                       "move it out of the way first; nothing was written")
    if plan.dirty and not force:
        raise BadInput(f"apply would overwrite {len(plan.dirty)} file(s) with uncommitted changes: "
                       f"{listed(plan.dirty)}", "commit or stash them, or pass --force")
    if plan.write:
        write_files(repo, exp.sha, plan.write)
    return Applied(exp, plan)


def diff_trees(repo: Repo, old: str, new: str) -> List[TreeChange]:
    """``git diff-tree -r -z`` of two tree-ish shas, renames off: every path that differs."""
    raw = repo.run(["diff-tree", "-r", "-z", "--no-renames", "--no-commit-id", old, new]).stdout
    items = raw.split(b"\0")
    changes = []
    for meta, path in zip(items[0::2], items[1::2]):
        if not meta.startswith(b":"):
            continue
        old_mode, new_mode, _old_sha, new_sha, status = meta[1:].decode().split(" ")
        changes.append(TreeChange(old_mode, new_mode, new_sha, status[:1], os.fsdecode(path)))
    return changes


def plan_apply(repo: Repo, sha: str) -> ApplyPlan:
    """What apply would write, and what stands in its way; reads only, writes nothing."""
    work = repo.snapshot_tree()  # the working tree as a tree: tracked and untracked files
    local = {c.path for c in diff_trees(repo, repo.head(), work)}  # uncommitted changes
    out: Dict[str, List[str]] = {"write": [], "dirty": [], "blocked": [], "kept": [], "skipped": []}
    checked_dirs: Dict[str, Optional[str]] = {}
    for change in diff_trees(repo, work, sha):
        if change.path == CONFIG_PATH:
            continue
        kind, what = _classify(repo.root, change, change.path in local, checked_dirs)
        if kind == "dirty":
            out["dirty"].append(what)
            kind = "write"
        if kind:
            out[kind].append(what)
    return ApplyPlan(**{k: tuple(v) for k, v in out.items()})


def _classify(root: str, change: TreeChange, changed_here: bool,
              checked_dirs: Dict[str, Optional[str]]) -> Tuple[Optional[str], str]:
    """(the plan's list for this change, or None to leave it; what to add to it)."""
    path = change.path
    if change.status == "D":
        return "kept", path
    if GITLINK in (change.old_mode, change.new_mode):
        return "skipped", path
    in_the_way = _leading_dirs_problem(root, path, checked_dirs)
    if in_the_way:
        return "blocked", in_the_way
    full = os.path.join(root, path)
    if change.status == "A" and os.path.lexists(full):
        # On disk but not in the snapshot: an ignored file or directory.
        if os.path.isdir(full) and not os.path.islink(full):
            return "blocked", f"the directory {shown_path(path)}/"
        if _disk_blob_sha(full) == change.new_sha:
            return None, path
        return "dirty", path
    if change.status != "A" and changed_here:
        return "dirty", path
    return "write", path


def _leading_dirs_problem(root: str, path: str, checked: Dict[str, Optional[str]]) -> Optional[str]:
    """A file or symlink where ``path`` needs a directory (writing would delete it or write
    through the link, maybe outside the repository); None when the way is clear."""
    parts = path.split("/")[:-1]
    for i in range(1, len(parts) + 1):
        prefix = "/".join(parts[:i])
        if prefix not in checked:
            full = os.path.join(root, prefix)
            problem = None
            if os.path.islink(full):
                problem = f"the symbolic link {shown_path(prefix)}"
            elif os.path.lexists(full) and not os.path.isdir(full):
                problem = f"the file {shown_path(prefix)}"
            checked[prefix] = problem
        if checked[prefix]:
            return checked[prefix]
    return None


def _disk_blob_sha(full: str) -> Optional[str]:
    """The blob sha git would give this file or symlink without filters; None if unreadable."""
    try:
        data = os.fsencode(os.readlink(full)) if os.path.islink(full) else _read(full)
    except OSError:
        return None
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _read(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def write_files(repo: Repo, sha: str, paths: Sequence[str]) -> None:
    """Write ``paths`` of commit ``sha`` into the working tree with git's own checkout code
    (modes, symlinks, filters), through a private index: the user's index is not touched."""
    fd, index = tempfile.mkstemp(prefix="gitexp-apply-", dir=repo.git_dir)
    os.close(fd)
    os.unlink(index)
    env = {"GIT_INDEX_FILE": index}
    try:
        repo.run(["read-tree", sha], env=env)
        listing = b"".join(os.fsencode(p) + b"\0" for p in paths)
        repo.run(["checkout-index", "-f", "-z", "--stdin"], input=listing, env=env)
    finally:
        if os.path.exists(index):
            os.unlink(index)


def shown_path(path: str) -> str:
    """A path for the terminal: bytes that are not UTF-8 as U+FFFD, control characters escaped."""
    return printable(path.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))


def listed(paths: Sequence[str], limit: int = 10) -> str:
    """Up to ``limit`` paths for a message, and how many more."""
    shown = ", ".join(shown_path(p) for p in paths[:limit])
    return shown + (f" and {len(paths) - limit} more" if len(paths) > limit else "")
