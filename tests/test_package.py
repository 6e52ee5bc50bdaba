"""The package itself: Python 3.9 syntax, every command documented, the API stays light, no import cycles,
small modules and functions."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Set

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


MAX_MODULE_LINES = 520  # issue 18: "no module over ~500 lines"
MAX_FUNCTION_LINES = 70  # ... "no function over ~60" (ruff's C901 bounds their branching)


def test_modules_and_functions_stay_small() -> None:
    """A module that outgrows this splits along a seam (docs/architecture.md, the module map)."""
    big, long = [], []
    for path in MODULES:
        text = path.read_text()
        name = str(path.relative_to(ROOT))
        if text.count("\n") > MAX_MODULE_LINES:
            big.append(f"{name}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{name}:{node.lineno} {node.name}: {length} lines")
    assert big == [] and long == []


def test_no_module_is_in_an_import_cycle() -> None:
    """Module by module, function-level imports included (import-linter's acyclic contract
    judges subpackages as wholes): a cycle means one of its imports points up a layer."""
    import grimp

    graph = grimp.build_graph("gitexp", exclude_type_checking_imports=True)
    edges = {m: graph.find_modules_directly_imported_by(m) for m in graph.modules}
    cycles = [sorted(scc) for scc in _strongly_connected(edges) if len(scc) > 1]
    assert cycles == [], "import cycles (docs/architecture.md, Layers, says which way each import points)"


def _strongly_connected(edges: Dict[str, Set[str]]) -> List[Set[str]]:
    """Tarjan's strongly connected components, iteratively (the graph is a few hundred modules)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    found: List[Set[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                scc = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    scc.add(member)
                    if member == node:
                        break
                found.append(scc)
    return found
