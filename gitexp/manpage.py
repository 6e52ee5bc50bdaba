"""The manual page git-exp(1), generated from the click commands.

git turns ``git exp --help`` into ``git help exp``, which runs ``man git-exp``. The page is
kept in the repository as ``man/git-exp.1`` (a test checks that it is what this module
makes), installed by setup.py's ``data_files`` into ``<prefix>/share/man/man1``, where
``man`` looks for a ``<prefix>/bin`` on the PATH (a virtualenv, ``~/.local`` for
``pip install --user``). Editable installs skip ``data_files``, so scripts/bootstrap.sh
installs it with ``--install``::

    python -m gitexp.manpage -o man/git-exp.1      # after changing a command or its help
    python -m gitexp.manpage --install .venv       # writes .venv/share/man/man1/git-exp.1

The click objects are only read here, through ``gitexp.cli`` (click itself stays in cli.py
and commands/). The page holds nothing that depends on the machine, the date or the click
version: the option lines are built from the declarations, not from click's help layout.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any, List, Optional

from . import __version__

PAGE_NAME = "git-exp.1"
HELP_OPTIONS = {"-h", "--help"}  # said once, in the synopsis
SECTION_DIR = os.path.join("share", "man", "man1")

DESCRIPTION = """\
Every experiment is a commit on its own branch (refs/exps/<name>): the working tree as it
was, uncommitted edits included, plus the resolved config. Its results, metric histories
and checkpoint pointers are git notes (refs/notes/exps, exps-metrics, exps-details), so
plain git reads them: git notes --ref=exps show <sha>.

git exp -h prints the list of commands, git exp COMMAND -h the help of one; this page has
all of them. (git turns git exp --help into git help exp, which shows this page.)"""

IDS = """\
An <id> is any unambiguous prefix (4 or more characters) of the run commit's sha, or the
experiment's name."""

EXIT_STATUS = [
    ("0", "Success."),
    ("1", "A failure: the message says what (a failed run: the program's own exit status)."),
    ("2", "Bad input: a wrong config, argument or id. Nothing was written."),
    ("3", "What the config requires (disk, RAM, GPU memory) does not fit now. Nothing was run."),
    ("4", "The repository is missing objects that refs or notes name (see git exp fsck)."),
    ("130", "Interrupted (Ctrl-C): the run is recorded killed."),
]

SEE_ALSO = """\
git(1), git-notes(1). README.md and docs/ (config keys, runners, the Python API) in the
gitexp source."""


def roff(text: str) -> str:
    """Text for roff: backslashes and hyphens escaped, no line starting with a control character."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join("\\&" + line if line.startswith((".", "'")) else line for line in text.split("\n"))


def paragraphs(text: str) -> str:
    """Help text as roff paragraphs (blank lines separate them)."""
    blocks = [" ".join(line.strip() for line in block.strip().splitlines())
              for block in text.strip().split("\n\n") if block.strip()]
    return "\n.PP\n".join(roff(block) for block in blocks)


def metavar(param: Any) -> str:
    if param.metavar:
        return str(param.metavar)
    choices = getattr(param.type, "choices", None)
    if choices:
        return "|".join(str(c) for c in choices)
    return str(max(param.opts, key=len)).lstrip("-").replace("-", "_").upper()  # --max-parallel: MAX_PARALLEL


def option_lines(param: Any) -> List[str]:
    """One option as a ``.TP`` entry: its names (and value), then its help and default."""
    names = ", ".join(param.opts)
    if param.secondary_opts:
        names += " / " + ", ".join(param.secondary_opts)
    head = f".B {roff(names)}" if param.is_flag or param.count else f".BI \"{roff(names)} \" {roff(metavar(param))}"
    text = (param.help or "").strip()
    default = param.default
    if param.show_default and default is not None and default is not False and default != () \
            and not callable(default):
        text = f"{text} (default: {default})".strip()
    return [".TP", head, roff(text)]


def command_section(path: str, command: Any, ctx: Any) -> List[str]:
    """``.SS`` for one command: synopsis, help, options; then its subcommands, if a group."""
    usage = " ".join(command.collect_usage_pieces(ctx))
    lines = [f".SS \"{roff(path)} {roff(usage)}\"", paragraphs(command.help or "")]
    for param in command.get_params(ctx):
        if param.param_type_name == "option" and not param.hidden and not HELP_OPTIONS & set(param.opts):
            lines.extend(option_lines(param))
    if hasattr(command, "list_commands"):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                sub_ctx = sub.context_class(sub, info_name=name, parent=ctx)
                lines.extend(command_section(f"{path} {name}", sub, sub_ctx))
    return lines


def render() -> str:
    """The whole page, from the commands as they are now."""
    from .cli import cli

    ctx = cli.context_class(cli, info_name="git exp")
    summary = (cli.help or "").strip().split("\n\n")[0].replace("\n", " ")
    out = [
        f".TH GIT\\-EXP 1 \"\" \"gitexp {roff(__version__)}\" \"gitexp manual\"",
        ".SH NAME",
        f"git\\-exp \\- {roff(summary[0].lower() + summary[1:].rstrip('.'))}",
        ".SH SYNOPSIS",
        ".B git exp",
        ".I command",
        ".RI [ options ] \" \" [ arguments ]",
        ".br",
        ".B git exp \\-h",
        ".br",
        ".BI \"git exp \" command \" \\-h\"",
        ".br",
        ".B git exp \\-\\-version",
        ".SH DESCRIPTION",
        paragraphs(DESCRIPTION),
        ".SH COMMANDS",
    ]
    for name in cli.list_commands(ctx):
        command = cli.get_command(ctx, name)
        if command is not None and not command.hidden:
            out.extend(command_section(f"git exp {name}", command, command.context_class(command, info_name=name,
                                                                                           parent=ctx)))
    out += [".SH IDS", paragraphs(IDS), ".SH EXIT STATUS"]
    for code, meaning in EXIT_STATUS:
        out += [".TP", f".B {code}", roff(meaning)]
    out += [".SH SEE ALSO", paragraphs(SEE_ALSO)]
    return "\n".join(out) + "\n"


def write(path: str, text: str) -> None:
    """Write atomically: a reader (man) never sees half a page."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def install(prefix: str) -> str:
    """Write the page to ``<prefix>/share/man/man1/git-exp.1`` and return that path."""
    path = os.path.join(prefix, SECTION_DIR, PAGE_NAME)
    write(path, render())
    return path


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gitexp.manpage", description="Generate git-exp(1).")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("-o", "--output", help="write the page to this file (default: standard output)")
    where.add_argument("--install", metavar="PREFIX",
                       help="write it to PREFIX/share/man/man1/git-exp.1, where man finds it for PREFIX/bin")
    args = parser.parse_args(argv)
    if args.install:
        print(install(args.install))
    elif args.output:
        write(args.output, render())
    else:
        sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
