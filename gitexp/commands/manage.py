"""``git exp rm``, ``branch``, ``diff`` and ``apply``: experiments are commits, so git does the work."""
from __future__ import annotations

import os
import re
from typing import Any, Callable, Dict, List, Tuple

import click
from tabulate import tabulate

from ..errors import BadInput, GitExpError
from ..notes import CONFIG_PATH, Experiment
from ..operations.apply import Applied, listed, shown_path
from ..query import param_text, same_value
from ..repo import RefUpdate, Repo
from ..summary import printable
from .common import cell, open_store


@click.command()
@click.argument("idents", metavar="ID...", nargs=-1, required=True)
@click.option("--force", is_flag=True, help="Remove even if it is still running (its run is stopped).")
@click.option("--keep-files", is_flag=True, help="Keep its run directory (log, outputs).")
def rm(idents: Tuple[str, ...], force: bool, keep_files: bool) -> None:
    """Delete experiments: ref, notes, queue entry and (unless --keep-files) run directory.

    With --force a running experiment is removed too, then its run is stopped (its executor
    signalled, or its Slurm job cancelled), so it does not go on writing results.
    """
    from ..operations.remove import remove

    repo, store = open_store()
    for removed in remove(repo, store, idents, force=force, keep_files=keep_files):
        exp = removed.exp
        line = f"removed {exp.name} ({exp.sha[:10]})"
        click.echo(line + (f"; {removed.stopped.line}" if removed.stopped else ""))


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
    shown = shown_path(given)
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
    from ..operations.apply import apply as apply_files

    repo, store = open_store()
    click.echo(_apply_report(apply_files(repo, store, ident, force=force)))


def _apply_report(applied: Applied) -> str:
    exp, plan = applied.exp, applied.plan
    if plan.write:
        lines = [f"applied {exp.name} ({exp.sha[:10]}): wrote {len(plan.write)} file(s): {listed(plan.write)}"]
    else:
        lines = [f"the working tree already has the files of {exp.name} ({exp.sha[:10]})"]
    if plan.kept:
        lines.append(f"left {len(plan.kept)} file(s) the experiment does not contain as they are: "
                     f"{listed(plan.kept, 5)}")
    if plan.skipped:
        lines.append(f"skipped {len(plan.skipped)} submodule(s): {listed(plan.skipped, 5)}")
    if plan.write:
        lines.append("index and HEAD are unchanged; review with git diff")
    return "\n".join(lines)
