"""``git exp _exec <sha>``: the executor entry point every runner starts (hidden)."""
from __future__ import annotations

import click

from ..executor import Executor
from ..notes import Store
from ..repo import Repo


@click.command(name="_exec", hidden=True)
@click.argument("sha")
@click.option("--runner", default="local", help="Which runner started this executor.")
@click.option("--echo/--no-echo", default=False, help="Copy the program's output to stdout.")
def exec_(sha: str, runner: str, echo: bool) -> int:
    """Run experiment SHA here and record its results (used by the runners)."""
    repo = Repo.discover(".")
    full = repo.resolve(sha)
    if not full:
        from ..errors import BadInput

        raise BadInput(f"no commit {sha!r} in {repo.root}", "the experiment ref was not pushed here")
    store = Store(repo)
    return Executor(repo, store, full, echo=echo, runner=runner).execute()
