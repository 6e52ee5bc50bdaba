"""The ``git exp`` command line: a click group over the typed core.

Commands parse and print; the core raises :class:`GitExpError`; ``main`` is the one place
that turns those into ``error: ...`` and an exit code (2 for bad input).
"""
from __future__ import annotations

import sys
from typing import List, Optional

import click

from .commands import exec_cmd, inspect, log, manage, run
from .errors import GitExpError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="gitexp", message="gitexp %(version)s")
def cli() -> None:
    """Run and track experiments as git commits: results in git notes, runs anywhere."""


for command in (run.run, log.log, inspect.show, inspect.logs, inspect.metrics, manage.rm,
                manage.branch, manage.diff, manage.apply, exec_cmd.exec_):
    cli.add_command(command)


def main(argv: Optional[List[str]] = None) -> None:
    try:
        result = cli.main(args=argv, prog_name="git exp", standalone_mode=False)
    except GitExpError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except BrokenPipeError:
        sys.exit(0)
    sys.exit(result if isinstance(result, int) else 0)
