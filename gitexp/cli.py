"""The ``git exp`` command line: a click group over the typed core.

Commands parse and print; the core raises :class:`GitExpError`; ``main`` is the one place
that turns those into ``error: ...`` and an exit code (2 for bad input).
"""
from __future__ import annotations

import errno
import importlib
import sys
from typing import Any, Dict, List, Optional

import click

from .errors import DiskFull, GitExpError

# command name -> (module under gitexp.commands, attribute). Imported on use, so that
# `git exp log` does not pay for the executor's imports.
COMMANDS: Dict[str, tuple] = {
    "run": ("run", "run"),
    "log": ("log", "log"),
    "show": ("inspect", "show"),
    "logs": ("inspect", "logs"),
    "metrics": ("inspect", "metrics"),
    "rm": ("manage", "rm"),
    "branch": ("manage", "branch"),
    "diff": ("manage", "diff"),
    "apply": ("manage", "apply"),
    "queue": ("queue_cmd", "queue"),
    "worker": ("queue_cmd", "worker"),
    "cancel": ("queue_cmd", "cancel"),
    "remote": ("remote_cmd", "remote"),
    "fsck": ("fsck_cmd", "fsck"),
    "_exec": ("exec_cmd", "exec_"),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> List[str]:
        return [name for name in COMMANDS if not name.startswith("_")]

    def get_command(self, ctx: click.Context, cmd_name: str) -> Optional[click.Command]:
        if cmd_name not in COMMANDS:
            return None
        module, attr = COMMANDS[cmd_name]
        command: Any = getattr(importlib.import_module(f"gitexp.commands.{module}"), attr)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="gitexp", message="gitexp %(version)s")
def cli() -> None:
    """Run and track experiments as git commits: results in git notes, runs anywhere."""


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
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        click.echo(f"error: {DiskFull(exc.filename or 'the output directory')}", err=True)
        sys.exit(DiskFull.exit_code)
    sys.exit(result if isinstance(result, int) else 0)
