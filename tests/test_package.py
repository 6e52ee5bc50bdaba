"""The package itself: Python 3.9 syntax, every command documented, the API stays light, no import cycles,
small modules and functions."""
from __future__ import annotations

import ast
import os
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


def test_a_foreground_run_loads_only_what_it_uses(tmp_path: Path) -> None:
    """Where users wait (issue 18): `git exp run` of one config records and runs it without
    dulwich (loose objects are written in process, gitexp/gitobjects.py), the queue's worker, a
    target's runner or the sweep-file reader; and psutil is not loaded before the experiment is
    recorded."""
    from conftest import make_repo

    repo = make_repo(tmp_path / "repo")
    (repo / "c.yaml").write_text(f'command: "{sys.executable} -c pass"\n')
    code = ("import sys, atexit\n"
            "from gitexp import experiments\n"
            "create = experiments.create\n"
            "def spy(*a, **k):  # the experiment is recorded now\n"
            "    print('psutil-before-create', 'psutil' in sys.modules, file=sys.stderr)\n"
            "    return create(*a, **k)\n"
            "experiments.create = spy\n"
            "names = ('dulwich', 'gitexp.worker', 'gitexp.queue', 'gitexp.sweepfile', 'gitexp.runners.ssh')\n"
            "atexit.register(lambda: print('loaded', sorted(m for m in names if m in sys.modules), file=sys.stderr))\n"
            "sys.argv = ['git-exp', 'run', 'c.yaml']\n"
            "from gitexp.cli import main\n"
            "main()\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    assert "finished" in proc.stderr
    assert "psutil-before-create False" in proc.stderr
    assert "loaded []" in proc.stderr
    fsck = subprocess.run(["git", "fsck", "--strict"], cwd=repo, capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr


def test_the_program_ends_at_once_but_runs_its_exit_handlers_and_flushes(tmp_path: Path) -> None:
    """`git exp` ends without tearing the interpreter down (cli._exit_now): exit handlers still
    run and everything printed arrives, however much; called from another program, main()
    raises SystemExit as before instead of ending that program."""
    hook = tmp_path / "hook"
    hook.mkdir()
    mark = tmp_path / "atexit-ran"
    (hook / "sitecustomize.py").write_text(f"import atexit\natexit.register(lambda: open({str(mark)!r}, 'w').close())\n")
    env = {**os.environ, "PYTHONPATH": f"{hook}{os.pathsep}{ROOT}"}
    proc = subprocess.run([sys.executable, "-m", "gitexp", "--version"], capture_output=True, text=True, env=env,
                          cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip(), proc.stderr
    assert mark.exists()
    # 200,000 lines to a pipe, then the end: every byte arrives (as `git-exp`, the script)
    script = tmp_path / "bin" / "git-exp"  # as the installed script: it calls main() itself
    script.parent.mkdir()
    script.write_text("import sys, click\nfrom gitexp import cli\n"
                      "flood = click.Command('_flood', callback=lambda: click.echo("
                      "'\\n'.join(f'line {i}' for i in range(200_000))))\n"
                      "cli.COMMANDS['_flood'] = ('', '')\n"
                      "cli.LazyGroup.get_command = lambda self, ctx, name: flood\n"
                      "sys.argv = ['git-exp', '_flood']\n"
                      "import atexit, os\natexit.register(lambda: print('exit-handler', file=sys.stderr))\n"
                      "cli.main()\n")
    flood = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert flood.returncode == 0, flood.stderr
    assert flood.stdout == "\n".join(f"line {i}" for i in range(200_000)) + "\n"
    assert "exit-handler" in flood.stderr
    # run as a module by another program (IPython's %run -m, a debugger): that program goes on
    hosted = subprocess.run([sys.executable, "-c", "import runpy, sys\nsys.argv = ['gitexp', '--version']\n"
                             "try:\n    runpy.run_module('gitexp', run_name='__main__', alter_sys=True)\n"
                             "except SystemExit as e:\n    print('host goes on', e.code)\n"],
                            capture_output=True, text=True, env=env, cwd=tmp_path)
    assert "host goes on 0" in hosted.stdout, hosted.stdout + hosted.stderr
    from gitexp.cli import main

    with pytest.raises(SystemExit) as ended:  # in-process: this test's process goes on
        main(["--version"])
    assert ended.value.code == 0


def test_process_start_time_is_psutils_create_time() -> None:
    import psutil

    from gitexp.evidence import process_start_time

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
    try:
        for pid in (os.getpid(), child.pid, 1):
            assert abs((process_start_time(pid) or 0) - psutil.Process(pid).create_time()) < 0.01
    finally:
        child.kill()
        child.wait()
    assert process_start_time(child.pid) is None  # reaped: gone


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
