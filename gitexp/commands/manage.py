"""``git exp rm``, ``branch``, ``diff`` and ``apply``: experiments are commits, so git does the work."""
from __future__ import annotations

import shutil
from typing import Any, Dict, List

import click
from tabulate import tabulate

from ..errors import BadInput, GitExpError
from ..status import live_statuses
from ..notes import CONFIG_PATH
from ..paths import run_paths
from ..repo import RefUpdate
from .common import fmt_value, open_store


@click.command()
@click.argument("idents", metavar="ID...", nargs=-1, required=True)
@click.option("--force", is_flag=True, help="Remove even if it is still running.")
@click.option("--keep-files", is_flag=True, help="Keep its run directory (log, outputs).")
def rm(idents: tuple, force: bool, keep_files: bool) -> None:
    """Delete experiments: ref, notes, queue entry and (unless --keep-files) run directory."""
    repo, store = open_store()
    exps = [store.find(ident) for ident in idents]  # all resolved before anything is removed
    live = live_statuses(repo, exps)
    for exp in exps:
        status = live[exp.sha][0]
        if status in ("pending", "starting", "running") and not force:
            raise BadInput(f"{exp.name} is {status}", f"stop it first (git exp cancel {exp.name}), or pass --force")
    for exp in exps:
        store.remove(exp)
        if not keep_files:
            shutil.rmtree(run_paths(repo, exp.sha).root, ignore_errors=True)
        click.echo(f"removed {exp.name} ({exp.sha[:10]})")


@click.command()
@click.argument("ident", metavar="ID")
@click.argument("branch_name", metavar="BRANCH")
def branch(ident: str, branch_name: str) -> None:
    """Make a normal branch BRANCH at the experiment's commit."""
    repo, store = open_store()
    exp = store.find(ident)
    check = repo.run(["check-ref-format", "--branch", branch_name], check=False)
    if check.returncode != 0:
        raise BadInput(f"{branch_name!r} is not a valid branch name")
    ref = f"refs/heads/{branch_name}"
    if repo.resolve(ref):
        raise BadInput(f"branch {branch_name} already exists", "pick another name")
    if not repo.update_refs([RefUpdate(ref, exp.sha, None)], f"gitexp: branch from {exp.name}"):
        raise GitExpError(f"branch {branch_name} was created meanwhile by someone else")
    click.echo(f"branch {branch_name} -> {exp.sha[:10]} ({exp.name})")


@click.command()
@click.argument("a", metavar="A")
@click.argument("b", metavar="B")
@click.option("--stat", is_flag=True, help="Only a summary of the code changes.")
def diff(a: str, b: str, stat: bool) -> None:
    """Compare two experiments: params, metrics, then code."""
    repo, store = open_store()
    left, right = store.find(a), store.find(b)
    click.echo(f"A = {left.name} ({left.sha[:10]})   B = {right.name} ({right.sha[:10]})\n")
    _compare(_flat(left.summary.get("params")), _flat(right.summary.get("params")), "param")
    lm = {k: v.get("best", v.get("last")) for k, v in (left.summary.get("metrics") or {}).items()}
    rm_ = {k: v.get("best", v.get("last")) for k, v in (right.summary.get("metrics") or {}).items()}
    _compare(lm, rm_, "metric (best)", show_all=True)
    args = ["diff", "--stat"] if stat else ["diff"]
    text = repo.out(args + [left.sha, right.sha, "--", ".", f":(exclude){CONFIG_PATH}"])
    click.echo("code:" if text.strip() else "code: identical")
    if text.strip():
        click.echo(text.rstrip())


def _flat(data: Any) -> Dict[str, Any]:
    return dict(data or {})


def _compare(left: Dict[str, Any], right: Dict[str, Any], label: str, show_all: bool = False) -> None:
    keys: List[str] = sorted(set(left) | set(right))
    rows = [[k, fmt_value(left.get(k)), fmt_value(right.get(k))] for k in keys
            if show_all or left.get(k) != right.get(k)]
    if rows:
        click.echo(tabulate(rows, headers=[label, "A", "B"], disable_numparse=True) + "\n")
    elif keys:
        click.echo(f"{label}s: identical\n")


@click.command()
@click.argument("ident", metavar="ID")
@click.option("--force", is_flag=True, help="Overwrite uncommitted changes in the working tree.")
def apply(ident: str, force: bool) -> None:
    """Make the working tree's files those of the experiment (index and HEAD unchanged)."""
    repo, store = open_store()
    exp = store.find(ident)
    if repo.is_dirty() and not force:
        raise BadInput("the working tree has uncommitted changes that apply would overwrite",
                       "commit or stash them, or pass --force")
    current = repo.snapshot_tree()
    patch = repo.run(["diff", "--binary", current, exp.sha, "--", ".", f":(exclude){CONFIG_PATH}"]).stdout
    if not patch.strip():
        click.echo(f"the working tree already matches {exp.name}")
        return
    repo.run(["apply", "--whitespace=nowarn", "-"], input=patch)
    click.echo(f"applied {exp.name} ({exp.sha[:10]}) to the working tree; review with git diff")
