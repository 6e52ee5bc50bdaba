"""``git exp hooks install/uninstall`` and the hidden ``git exp _hook`` the scripts call."""
from __future__ import annotations

import sys
from typing import Tuple

import click

from ..errors import BadInput, GitExpError
from ..summary import printable
from .common import open_store


@click.group()
def hooks() -> None:
    """Git hooks gitexp installs (pre-push: refuse a push that would fill a run target's disk)."""


@hooks.command(name="install")
def install() -> None:
    """Install the pre-push hook (an existing hook is kept and run first)."""
    from ..hooks.install import install as do_install

    repo, _store = open_store()
    click.echo(do_install(repo))


@hooks.command(name="uninstall")
def uninstall() -> None:
    """Remove gitexp's pre-push hook (and put back the hook it chained)."""
    from ..hooks.install import uninstall as do_uninstall

    repo, _store = open_store()
    click.echo(do_uninstall(repo))


@click.command(name="_hook", hidden=True)
@click.argument("name")
@click.argument("args", nargs=-1)
def hook(name: str, args: Tuple[str, ...]) -> int:
    """Run gitexp's part of git hook NAME (called by the installed hook scripts)."""
    from ..hooks import prepush

    if name != "pre-push" or len(args) != 2:
        raise BadInput(f"_hook {name}: expected pre-push <remote name> <url>")
    repo, _store = open_store()
    try:
        code, lines = prepush.check(repo, args[0], args[1], sys.stdin.read().splitlines())
    except GitExpError as exc:  # say whose refusal it is and how to get past it
        code, lines = 1, [f"{prepush.SAID}: error: {printable(str(exc))}; fix it, {prepush.SKIP}"]
    for line in lines:
        click.echo(line, err=True)
    return code
