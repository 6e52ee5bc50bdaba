"""The package itself: Python 3.9 syntax, every command documented, the API stays light."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

MODULES = sorted((ROOT / "gitexp").rglob("*.py"))
DOCS = "\n".join(p.read_text() for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_module_parses_as_python_3_9(path: Path) -> None:
    ast.parse(path.read_text(), filename=str(path), feature_version=(3, 9))


def test_every_command_has_help_and_is_documented() -> None:
    from gitexp.cli import COMMANDS, cli

    import click

    ctx = click.Context(cli)
    for name in COMMANDS:
        if name.startswith("_"):
            continue
        command = cli.get_command(ctx, name)
        assert command is not None and (command.help or "").strip(), name
        assert f"git exp {name}" in DOCS, f"`git exp {name}` is not in the README or docs/"


def test_importing_the_api_does_not_import_the_tool() -> None:
    code = "import sys, gitexp; print(sorted(m for m in ('click', 'yaml', 'dulwich', 'psutil') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
