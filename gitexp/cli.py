"""The ``git exp`` command line: a click group over the typed core.

Commands parse and print; the core raises :class:`GitExpError`; ``main`` is the one place
that turns those into ``error: ...`` and an exit code (2 for bad input).
"""
from __future__ import annotations

import errno
import importlib
import os
import sys
from types import FrameType
from typing import Any, Callable, Dict, List, NoReturn, Optional, Tuple, TypeVar

import click

from . import __version__
from . import watchers  # noqa: F401 - installs the config sections' parsers (they load on first use)
from .errors import DiskFull, GitExpError

# command name -> (module under gitexp.commands, attribute). Imported on use, so that
# `git exp log` does not pay for the executor's imports.
COMMANDS: Dict[str, Tuple[str, str]] = {
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
    "resume": ("resume_cmd", "resume"),
    "fsck": ("fsck_cmd", "fsck"),
    "pull": ("sync_cmd", "pull"),
    "push": ("sync_cmd", "push"),
    "plot": ("plot_cmd", "plot"),
    "compare": ("compare_cmd", "compare"),
    "bisect": ("bisect_cmd", "bisect"),
    "report": ("report_cmd", "report"),
    "hooks": ("hooks_cmd", "hooks"),
    "top": ("monitor_cmd", "top"),
    "hosts": ("monitor_cmd", "hosts"),
    "ui": ("ui_cmd", "ui"),
    "completion": ("completion_cmd", "completion"),
    "import": ("import_cmd", "import_"),
    "_exec": ("exec_cmd", "exec_"),
    "_complete": ("completion_cmd", "complete_"),
    "_agent": ("agent_cmd", "agent"),
    "_hook": ("hooks_cmd", "hook"),
}


T = TypeVar("T")


class PipeClosed(Exception):
    """Whoever read our output went away (``git exp log | head``): end quietly.

    Not an OSError on purpose: click turns an EPIPE OSError into a silent exit 1, even
    outside standalone mode; this passes through click to :func:`main`.
    """


def _pipe_guarded(call: Callable[[], T]) -> T:
    try:
        return call()
    except OSError as exc:
        if exc.errno == errno.EPIPE:
            raise PipeClosed() from None
        raise


class LazyGroup(click.Group):
    def make_context(self, info_name: Optional[str], args: List[str], parent: Optional[click.Context] = None,
                     **extra: Any) -> click.Context:
        # --help and --version print while the arguments are parsed
        return _pipe_guarded(lambda: super(LazyGroup, self).make_context(info_name, args, parent, **extra))

    def invoke(self, ctx: click.Context) -> Any:
        return _pipe_guarded(lambda: super(LazyGroup, self).invoke(ctx))

    def list_commands(self, ctx: click.Context) -> List[str]:
        return [name for name in COMMANDS if not name.startswith("_")]

    def get_command(self, ctx: click.Context, cmd_name: str) -> Optional[click.Command]:
        if cmd_name not in COMMANDS:
            return None
        module, attr = COMMANDS[cmd_name]
        command = getattr(importlib.import_module(f"gitexp.commands.{module}"), attr)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, message="gitexp %(version)s")
def cli() -> None:
    """Run and track experiments as git commits: results in git notes, runs anywhere."""


def _end_quietly_on_closed_pipe() -> NoReturn:
    """Exit 0 without a word: the reader of stdout is gone, as with ``git log | head``.

    What is still buffered for stdout would fail again when the interpreter flushes it at
    exit (an "Exception ignored" message and exit code 120), so stdout is pointed at
    /dev/null first, as the Python documentation's note on SIGPIPE advises.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
    sys.exit(0)


def _show_usage_error(exc: click.UsageError) -> None:
    """click's usage, then a hint that works: ``git exp --help`` is turned by git into
    ``git help exp`` (the man page), so the hint names ``-h``, which always reaches us."""
    if type(exc).show is not click.UsageError.show:  # e.g. no command at all: click shows the help
        exc.show()
        return
    if exc.ctx is not None:
        click.echo(exc.ctx.get_usage(), err=True)
        click.echo(f"Try '{exc.ctx.command_path} -h' for help.\n", err=True)
    click.echo(f"error: {exc.format_message()}", err=True)


def _run(argv: Optional[List[str]]) -> int:
    """The command's exit code; every GitExpError as one ``error: ...`` line."""
    try:
        result = cli.main(args=argv, prog_name="git exp", standalone_mode=False)
    except GitExpError as exc:
        click.echo(f"error: {exc}", err=True)
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.UsageError as exc:
        _show_usage_error(exc)
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        click.echo(f"error: {DiskFull(exc.filename or 'the output directory')}", err=True)
        return DiskFull.exit_code
    return result if isinstance(result, int) else 0


def main(argv: Optional[List[str]] = None) -> None:
    try:
        code = _run(argv)
        sys.stdout.flush()  # here, not at interpreter exit, where a closed pipe cannot be handled
    except (PipeClosed, BrokenPipeError):
        _end_quietly_on_closed_pipe()
    if _is_the_program():
        _exit_now(code)
    sys.exit(code)


def _is_the_program() -> bool:
    """Whether this process is ``git exp`` itself (the ``git-exp`` script or ``python -m gitexp``),
    not a program that called :func:`main` (a notebook, a test, ``%run -m gitexp``, a debugger):
    only then may it end at once. Read from the stack: below main() there may be only the
    script, gitexp's ``__main__`` and runpy, which starts ``python -m``."""
    frame: Optional[FrameType] = sys._getframe(2)  # main()'s caller
    while frame is not None:
        if not _program_frame(frame.f_code.co_filename):
            return False
        frame = frame.f_back
    return True


def _program_frame(name: str) -> bool:
    if os.path.basename(name) == "git-exp" or name == "<frozen runpy>":
        return True
    runpy = sys.modules.get("runpy")
    if runpy is not None and name == getattr(runpy, "__file__", None):
        return True
    main = os.path.join(os.path.dirname(os.path.realpath(__file__)), "__main__.py")
    return os.path.realpath(name) == main


def _exit_now(code: int) -> NoReturn:
    """End without tearing the interpreter down: the exit handlers run (a flush, a finalizer,
    coverage), the output is flushed, then the process ends. Dismantling ~250 modules and a
    last garbage collection took 25-60 ms of every command (docs/benchmarks.md), and every file
    gitexp writes is closed (or written whole and renamed) before its command returns.
    A thread that is not a daemon still running is waited for, as at a normal exit."""
    import atexit
    import threading

    if any(not t.daemon for t in threading.enumerate() if t is not threading.current_thread()):
        sys.exit(code)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
