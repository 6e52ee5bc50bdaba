"""``git exp rm``, ``branch``, ``diff`` and ``apply``: experiments are commits, so git does the work."""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

import click
from tabulate import tabulate

from ..errors import BadInput, GitExpError
from ..evidence import local_executor, process_alive, verified_chain
from ..notes import CONFIG_PATH, Experiment, Store
from ..paths import run_paths
from ..query import param_text, same_value
from ..repo import RefUpdate, Repo
from ..status import live_statuses
from ..summary import printable
from .common import cell, open_store

OPEN = ("pending", "starting", "running")
GITLINK = "160000"


@click.command()
@click.argument("idents", metavar="ID...", nargs=-1, required=True)
@click.option("--force", is_flag=True, help="Remove even if it is still running (its run is stopped).")
@click.option("--keep-files", is_flag=True, help="Keep its run directory (log, outputs).")
def rm(idents: tuple, force: bool, keep_files: bool) -> None:
    """Delete experiments: ref, notes, queue entry and (unless --keep-files) run directory.

    With --force a running experiment is removed too, then its run is stopped (its executor
    signalled, or its Slurm job cancelled), so it does not go on writing results.
    """
    from ..executor import settings_problems

    problems = settings_problems()  # GITEXP_KILL_GRACE is read when stopping: refuse before removing
    if problems:
        raise BadInput("; ".join(problems))
    repo, store = open_store()
    exps = [store.find(ident) for ident in idents]  # all resolved before anything is removed
    live = live_statuses(repo, exps)
    for exp in exps:
        status = live[exp.sha][0]
        if status in OPEN and not force:
            raise BadInput(f"{exp.name} is {status}", f"stop it first (git exp cancel {exp.name}), or pass --force")
    for exp in exps:
        store.remove(exp, own_attempts(repo, store, exp))
        line = f"removed {exp.name} ({exp.sha[:10]})"
        if live[exp.sha][0] in OPEN:
            line += "; " + _stop_run(repo, store, exp)
        if not keep_files:
            shutil.rmtree(run_paths(repo, exp.sha).root, ignore_errors=True)
        click.echo(line)


def own_attempts(repo: Repo, store: Store, exp: Experiment) -> List[str]:
    """The earlier attempts of ``exp`` whose notes go with it.

    Only commits on its own first-parent line (the note's chain is a claim), and none that
    another experiment names or continues: a commit someone built on one of ours and pushed
    under another name can never take our notes with it.
    """
    earlier = verified_chain(repo, exp.sha, exp.summary)
    if not earlier:
        return []
    keep: set = set()
    for other in store.experiments():
        if other.name == exp.name:
            continue
        keep.add(other.sha)
        if other.summary.get("chain"):
            keep.update(verified_chain(repo, other.sha, other.summary))
    return [sha for sha in earlier if sha not in keep]


def _stop_run(repo: Repo, store: Store, exp: Experiment) -> str:
    """Stop a removed experiment's run; wait (briefly) for a local executor to exit first,
    so the run directory is not removed under it."""
    from .queue_cmd import stop_removed  # the queue module imports the worker: only when needed

    from ..executor import kill_grace

    executor = local_executor(repo, exp.sha)  # before it is signalled: this run's own executor, if any
    said = stop_removed(repo, store, exp)
    if said.startswith("stopped") and executor:
        deadline = time.time() + kill_grace() + 5
        while process_alive(*executor) and time.time() < deadline:
            time.sleep(0.1)
    return said


# -- branch -------------------------------------------------------------------------------------
@click.command()
@click.argument("ident", metavar="ID")
@click.argument("branch_name", metavar="BRANCH")
def branch(ident: str, branch_name: str) -> None:
    """Make a normal branch BRANCH at the experiment's commit (``refs/heads/BRANCH`` also accepted)."""
    repo, store = open_store()
    exp = store.find(ident)
    name = _branch_name(repo, branch_name)
    ref = f"refs/heads/{name}"
    if not repo.update_refs([RefUpdate(ref, exp.sha, None)], f"gitexp: branch from {exp.name}"):
        raise GitExpError(f"branch {name} was created meanwhile by someone else")
    click.echo(f"branch {name} -> {exp.sha[:10]} ({exp.name})")


def _branch_name(repo: Repo, given: str) -> str:
    """The short branch name for ``given``, or BadInput when git would refuse or misread it.

    ``refs/heads/x`` means branch ``x`` (not ``refs/heads/refs/heads/x``). A name that git
    would resolve to something else first (a tag, a remote-tracking branch, a full ref name,
    HEAD, a full sha) is refused: every later ``git checkout NAME`` would be ambiguous.
    """
    name = given[len("refs/heads/"):] if given.startswith("refs/heads/") else given
    shown = _shown(given)
    if not name or name.startswith("-") or name in ("HEAD", "@") \
            or repo.run(["check-ref-format", f"refs/heads/{name}"], check=False).returncode != 0:
        raise BadInput(f"{shown!r} is not a valid branch name", "see git help check-ref-format")
    if name.startswith("refs/") or re.fullmatch(r"[0-9a-fA-F]{40}|[0-9a-fA-F]{64}|[A-Z_]*HEAD", name):
        raise BadInput(f"branch name {shown!r} would be ambiguous: git reads it as something else first",
                       "pick another name")
    if re.fullmatch(r"[A-Z_]+", name) and any(os.path.exists(os.path.join(d, name))
                                              for d in (repo.git_dir, repo.common_dir)):
        raise BadInput(f"branch name {shown!r} would be ambiguous with git's own {name}", "pick another name")
    ref = f"refs/heads/{name}"
    # git's lookup order for a short name: refs/<n>, refs/tags/<n>, refs/heads/<n>, refs/remotes/<n>[/HEAD]
    others = [f"refs/{name}", f"refs/tags/{name}", f"refs/remotes/{name}", f"refs/remotes/{name}/HEAD"]
    parts = name.split("/")
    parents = [f"refs/heads/{'/'.join(parts[:i])}" for i in range(1, len(parts))]
    existing = repo.refs(ref, *others, *parents)  # a pattern also matches the refs below it
    if ref in existing:
        raise BadInput(f"branch {printable(name)} already exists", "pick another name")
    clash = [r for r in others if r in existing]
    if clash:
        raise BadInput(f"branch name {printable(name)!r} would be ambiguous with {printable(clash[0])}",
                       "pick another name")
    # git keeps refs as files: branch a/b cannot exist beside branch a.
    nested = [r for r in existing if r in parents or r.startswith(ref + "/")]
    if nested:
        raise BadInput(f"branch {printable(name)} cannot be made while branch {printable(nested[0][11:])} exists",
                       "pick another name")
    return name


# -- diff ---------------------------------------------------------------------------------------
@click.command()
@click.argument("a", metavar="A")
@click.argument("b", metavar="B")
@click.option("--stat", is_flag=True, help="Only a summary of the code changes.")
def diff(a: str, b: str, stat: bool) -> None:
    """Compare two experiments: params, metrics, then code."""
    repo, store = open_store()
    left, right = store.find(a), store.find(b)
    click.echo(f"A = {cell(left.name)} ({left.sha[:10]})   B = {cell(right.name)} ({right.sha[:10]})\n")
    _compare(_flat(left.summary.get("params")), _flat(right.summary.get("params")), "param", shown=param_text)
    _compare(_best(left), _best(right), "metric (best)", show_all=True)
    # Only shas from refs reach git's argv (both are full hex shas), never text from notes.
    args = ["diff", "--stat"] if stat else ["diff"]
    text = repo.out(args + [left.sha, right.sha, "--", ".", f":(exclude){CONFIG_PATH}"])
    click.echo("code:" if text.strip() else "code: identical")
    if text.strip():
        click.echo(printable(text.rstrip(), keep="\t\n"))  # the files may hold escape sequences too


def _flat(data: Any) -> Dict[str, Any]:
    return dict(data) if isinstance(data, dict) else {}


def _best(exp: Experiment) -> Dict[str, Any]:
    metrics = exp.summary.get("metrics")
    if not isinstance(metrics, dict):
        return {}
    return {k: v.get("best", v.get("last")) for k, v in metrics.items() if isinstance(v, dict)}


def _compare(left: Dict[str, Any], right: Dict[str, Any], label: str, show_all: bool = False,
             shown: Callable[[Any], Any] = lambda v: v) -> None:
    keys: List[str] = sorted(set(left) | set(right))
    rows = [[cell(k), cell(shown(left.get(k))), cell(shown(right.get(k)))] for k in keys
            if show_all or not same_value(left.get(k), right.get(k))]
    if rows:
        click.echo(tabulate(rows, headers=[label, "A", "B"], disable_numparse=True) + "\n")
    elif keys:
        click.echo(f"{label}s: identical\n")


# -- apply --------------------------------------------------------------------------------------
@click.command()
@click.argument("ident", metavar="ID")
@click.option("--force", is_flag=True, help="Also overwrite files of the experiment that have uncommitted changes.")
def apply(ident: str, force: bool) -> None:
    """Write the experiment's files into the working tree (index and HEAD unchanged).

    Only files the experiment contains are written. Files it does not contain are left as
    they are, tracked or not: apply never deletes a file. A file that would change and has
    uncommitted changes (or is untracked) is overwritten only with --force.
    """
    repo, store = open_store()
    exp = store.find(ident)
    plan = _plan_apply(repo, exp.sha)
    if plan.blocked:
        raise BadInput(f"apply would have to remove {plan.blocked[0]}, which the experiment does not contain",
                       "move it out of the way first; nothing was written")
    if plan.dirty and not force:
        raise BadInput(f"apply would overwrite {len(plan.dirty)} file(s) with uncommitted changes: "
                       f"{_listed(plan.dirty)}", "commit or stash them, or pass --force")
    if plan.write:
        _write_files(repo, exp.sha, plan.write)
    click.echo(_apply_report(exp, plan))


@dataclass
class ApplyPlan:
    write: List[str] = field(default_factory=list)    # paths to write from the experiment
    dirty: List[str] = field(default_factory=list)    # ... of those, ones with uncommitted changes
    blocked: List[str] = field(default_factory=list)  # what would have to be removed first
    kept: List[str] = field(default_factory=list)     # paths in the working tree, not in the experiment
    skipped: List[str] = field(default_factory=list)  # submodules: apply does not check them out


@dataclass(frozen=True)
class _Change:
    old_mode: str
    new_mode: str
    new_sha: str
    status: str
    path: str  # as git printed it, decoded with surrogateescape so any bytes round-trip


def _diff_trees(repo: Repo, old: str, new: str) -> List[_Change]:
    """``git diff-tree -r -z`` of two tree-ish shas, renames off: every path that differs."""
    raw = repo.run(["diff-tree", "-r", "-z", "--no-renames", "--no-commit-id", old, new]).stdout
    items = raw.split(b"\0")
    changes = []
    for meta, path in zip(items[0::2], items[1::2]):
        if not meta.startswith(b":"):
            continue
        old_mode, new_mode, _old_sha, new_sha, status = meta[1:].decode().split(" ")
        changes.append(_Change(old_mode, new_mode, new_sha, status[:1], os.fsdecode(path)))
    return changes


def _plan_apply(repo: Repo, sha: str) -> ApplyPlan:
    """What apply would write, and what stands in its way; reads only, writes nothing."""
    work = repo.snapshot_tree()  # the working tree as a tree: tracked and untracked files
    local = {c.path for c in _diff_trees(repo, repo.head(), work)}  # uncommitted changes
    plan = ApplyPlan()
    checked_dirs: Dict[str, Optional[str]] = {}
    for change in _diff_trees(repo, work, sha):
        path = change.path
        if path == CONFIG_PATH:
            continue
        if change.status == "D":
            plan.kept.append(path)
            continue
        if GITLINK in (change.old_mode, change.new_mode):
            plan.skipped.append(path)
            continue
        in_the_way = _leading_dirs_problem(repo.root, path, checked_dirs)
        if in_the_way:
            plan.blocked.append(in_the_way)
            continue
        full = os.path.join(repo.root, path)
        if change.status == "A" and os.path.lexists(full):
            # On disk but not in the snapshot: an ignored file or directory.
            if os.path.isdir(full) and not os.path.islink(full):
                plan.blocked.append(f"the directory {_shown(path)}/")
                continue
            if _disk_blob_sha(full) == change.new_sha:
                continue
            plan.dirty.append(path)
        elif change.status != "A" and path in local:
            plan.dirty.append(path)
        plan.write.append(path)
    return plan


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
                problem = f"the symbolic link {_shown(prefix)}"
            elif os.path.lexists(full) and not os.path.isdir(full):
                problem = f"the file {_shown(prefix)}"
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


def _write_files(repo: Repo, sha: str, paths: Sequence[str]) -> None:
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


def _shown(path: str) -> str:
    """A path for the terminal: bytes that are not UTF-8 as U+FFFD, control characters escaped."""
    return printable(path.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))


def _listed(paths: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(_shown(p) for p in paths[:limit])
    return shown + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


def _apply_report(exp: Experiment, plan: ApplyPlan) -> str:
    if plan.write:
        lines = [f"applied {exp.name} ({exp.sha[:10]}): wrote {len(plan.write)} file(s): {_listed(plan.write)}"]
    else:
        lines = [f"the working tree already has the files of {exp.name} ({exp.sha[:10]})"]
    if plan.kept:
        lines.append(f"left {len(plan.kept)} file(s) the experiment does not contain as they are: "
                     f"{_listed(plan.kept, 5)}")
    if plan.skipped:
        lines.append(f"skipped {len(plan.skipped)} submodule(s): {_listed(plan.skipped, 5)}")
    if plan.write:
        lines.append("index and HEAD are unchanged; review with git diff")
    return "\n".join(lines)
