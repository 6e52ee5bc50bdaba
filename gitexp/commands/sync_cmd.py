"""``git exp pull`` and ``git exp push``: share experiments and results through any git remote."""
from __future__ import annotations

from typing import Tuple

import click

from .. import sync
from ..summary import printable
from .common import open_store


@click.command()
@click.argument("remotes", nargs=-1)
def pull(remotes: Tuple[str, ...]) -> int:
    """Fetch experiments and results from git REMOTES (names, paths or URLs) and merge them.

    A run target's name (git exp remote list) pulls from its repository over ssh.

    Without REMOTES: origin (or the only git remote). Your branches are not touched;
    results are merged, never overwritten (see docs/architecture.md).
    """
    repo, _store = open_store()
    from ..runners.ssh import pull_with_targets  # a run target's name: its repository over ssh

    report = pull_with_targets(repo, list(remotes))
    label = " ".join(remotes) or sync.default_remote(sync.git_remotes(repo))
    for spec in report.empty:
        click.echo(printable(f"{spec} has no experiments (no refs/exps/* or refs/notes/exps there); "
                             "nothing to pull from it"), err=True)
    if len(report.empty) == len(set(remotes or [label])):
        return 0
    for line in report.lines(label):
        click.echo(printable(line))
    return 0


@click.command()
@click.argument("remote")
def push(remote: str) -> int:
    """Share your experiments and results with git REMOTE (a name, path or URL).

    A run target's name (git exp remote list) pushes to its repository over ssh.

    Pulls first, so the results there are merged with yours; experiments are pushed under
    names that are free there, notes as fast-forwards with a lease.
    """
    repo, store = open_store()
    from ..runners.ssh import push_to_target  # a run target's name: its repository over ssh

    report = push_to_target(repo, store, remote)
    if report.pulled.changed:
        for line in report.pulled.lines(remote):
            click.echo(printable(line))
    if not report.pushed and not report.notes:
        click.echo(printable(f"{remote} is up to date"))
        return 0
    parts = []
    if report.pushed:
        parts.append(f"{len(report.pushed)} experiment{'s' if len(report.pushed) != 1 else ''}")
    if report.notes:
        parts.append("notes (" + ", ".join(ref[len("refs/notes/"):] for ref in report.notes) + ")")
    click.echo(printable(f"pushed to {remote}: {', '.join(parts)}"))
    for local, there in report.pushed:
        if local != there:
            click.echo(printable(f"  {local}: named {there} on {remote}, its name is taken there"))
    return 0
