"""Hermetic fixtures: a temp HOME, no system git config, fresh real repositories, the real CLI."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

import gitexp.watchers  # noqa: F401 - installs the config sections' parsers, as the CLI does (tests parse configs in process)

ROOT = Path(__file__).resolve().parents[1]

TRAIN_PY = textwrap.dedent('''
    import sys, time
    import gitexp
    lr = float(sys.argv[1]); steps = int(sys.argv[2])
    for step in range(1, steps + 1):
        val_err = 1.0 / (1 + lr * step)
        gitexp.log(step=step, val_err=val_err, loss=2 * val_err)
        print(f"step {step} acc={1 - val_err:.4f}", flush=True)
    print("done")
''')

CONFIG = textwrap.dedent('''
    name: toy
    group: g1
    command: python train.py {lr} {steps}
    params:
      lr: 0.5
      steps: 5
    metrics:
      val_err: {goal: minimize}
      loss: {goal: minimize}
      acc: {regex: 'acc=([0-9.]+)', goal: maximize}
''')


@pytest.fixture(autouse=True)
def hermetic_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Test")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "test@example.com")
    monkeypatch.setenv("GIT_COMMITTER_NAME", "Test")
    monkeypatch.setenv("GIT_COMMITTER_EMAIL", "test@example.com")
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setenv("GITEXP_KILL_GRACE", "3")
    for var in ("GITEXP_METRICS_FILE", "GITEXP_RUNS_DIR", "GITEXP_NOTES_INTERVAL", "CUDA_VISIBLE_DEVICES"):
        monkeypatch.delenv(var, raising=False)


def git(cwd: Path, *args: str, check: bool = True, input: Optional[str] = None) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, input=input)
    if check and proc.returncode != 0:
        raise AssertionError(f"git {args} failed: {proc.stderr}")
    return proc.stdout


def gitexp(cwd: Path, *args: str, check: bool = True, timeout: float = 120,
           env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
    full_env = dict(os.environ)
    full_env.update(env or {})
    proc = subprocess.run([sys.executable, "-m", "gitexp", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=full_env)
    if check and proc.returncode != 0:
        raise AssertionError(f"git exp {args} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def log_json(cwd: Path, *args: str) -> List[Dict[str, Any]]:
    return json.loads(gitexp(cwd, "log", "--format", "json", *args).stdout)


def wait_for(predicate: Any, timeout: float = 60.0, interval: float = 0.2) -> Any:
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {predicate}")


def make_repo(path: Path, files: Optional[Dict[str, str]] = None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    for name, text in (files or {"train.py": TRAIN_PY, "config.yaml": CONFIG}).items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "init")
    return path


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo")


def all_refs(cwd: Path) -> str:
    return git(cwd, "for-each-ref", "--format=%(refname) %(objectname)")


def assert_fsck_clean(cwd: Path) -> None:
    """No corruption: exit 0 and nothing but 'dangling' notices (garbage git gc collects)."""
    proc = subprocess.run(["git", "fsck", "--strict", "--no-progress"], cwd=cwd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    bad = [line for line in (proc.stdout + proc.stderr).splitlines() if line and not line.startswith("dangling ")]
    assert not bad, bad


# -- real schedulers (Slurm, Grid Engine): shared by their test files ------------------------------
def need_service(ready: Any, script: str, what: str) -> None:
    """Make sure ``ready()``: start the service with its project script (root only) if not;
    skip with the reason on a laptop, fail under CI=true."""
    if not ready() and os.geteuid() == 0:
        subprocess.run([str(ROOT / "scripts" / script)], capture_output=True, timeout=600)
    if ready():
        return
    reason = f"{what} is not running and cannot be started here (scripts/{script} needs root)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI must run the {what} tests")
    pytest.skip(reason)


def with_target(repo: Path, name: str, *options: str) -> Path:
    """``repo`` with run target ``name`` added (``git exp remote add``) and committed."""
    gitexp(repo, "remote", "add", name, *options)
    git(repo, "add", ".gitexp.yaml")
    git(repo, "commit", "-q", "-m", f"target {name}")
    return repo


def rows_when(repo: Path, count: int, statuses: tuple = ("finished",), timeout: float = 180) -> List[Dict[str, Any]]:
    """``git exp log`` rows, once at least ``count`` of them are in one of ``statuses``."""
    def ready() -> List[Dict[str, Any]]:
        rows = log_json(repo)
        return rows if len([r for r in rows if r["status"] in statuses]) >= count else []
    return wait_for(ready, timeout=timeout, interval=0.5)


# -- the fast unit layer: `pytest -m unit` ---------------------------------------------------------
# A test is a unit test when nothing it runs starts gitexp, a service or a wait: read from its code
# (and the code of the helpers and fixtures it uses, followed through the test modules), so a new
# test is sorted without a list to keep. Helpers that only run git (a fresh repository) are fine.
_NOT_UNIT = frozenset({
    "gitexp", "log_json", "rows_when", "with_target", "need_service", "wait_for",  # the CLI, services, waits
    "subprocess", "Popen", "spawn", "fork", "sleep",  # processes of its own, or time
    "Executor", "Worker", "LocalRunner", "run_foreground", "ForkedExecutor", "Server", "serve", "SshTransport",
})
_GIT_ONLY = frozenset({"git", "make_repo", "all_refs", "assert_fsck_clean"})
_TESTS = os.path.dirname(os.path.abspath(__file__))


def _code_names(code: Any) -> set:
    names = set(code.co_names)
    for const in code.co_consts:
        if hasattr(const, "co_names"):
            names |= _code_names(const)
    return names


def _starts_something(func: Any, seen: set) -> bool:
    """Whether ``func`` (a test, fixture or helper) names something in :data:`_NOT_UNIT`, itself
    or through the functions of the test modules it calls."""
    func = getattr(func, "__wrapped__", func)
    code = getattr(func, "__code__", None)
    if code is None or code in seen:
        return False
    seen.add(code)
    names = _code_names(code)
    if names & _NOT_UNIT:
        return True
    module_globals = getattr(func, "__globals__", {})
    for name in names - _GIT_ONLY:
        helper = getattr(module_globals.get(name), "__wrapped__", module_globals.get(name))
        where = getattr(getattr(helper, "__code__", None), "co_filename", "")
        if os.path.dirname(os.path.abspath(where)) == _TESTS and _starts_something(helper, seen):
            return True  # a helper of the tests (conftest, sshd.py, ...): followed into
    return False


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "unit: fast in-process test (set automatically: runs no gitexp "
                                       "process, service or wait); `pytest -m unit` runs them in under 2 minutes")
    config.addinivalue_line("markers", "slow: not a unit test, whatever its code looks like")


def pytest_collection_modifyitems(items: List[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("slow") or item.get_closest_marker("unit"):
            continue
        if "ssh" in str(getattr(getattr(item, "callspec", None), "id", "")).split("-"):
            continue  # run once per transport: the ssh one asks for its sshd by name (getfixturevalue)
        info = getattr(item, "_fixtureinfo", None)
        fixtures = [d.func for defs in (info.name2fixturedefs.values() if info else []) for d in defs]
        seen: set = set()
        if not any(_starts_something(f, seen) for f in [getattr(item, "function", None), *fixtures]):
            item.add_marker(pytest.mark.unit)


def mounted_tmpfs(where: Path, size: str) -> Any:
    """A small tmpfs mounted at ``where`` (a generator for fixtures: yields the mount point,
    unmounts after): a real full disk. Mounting needs root; CI runs as root, so there a failure
    to mount fails the test instead of skipping it."""
    in_ci = os.environ.get("CI") == "true"
    if os.geteuid() != 0:
        if in_ci:
            pytest.fail("CI=true but not root: the full-disk tests need to mount a tmpfs")
        pytest.skip(f"needs root to mount a {size} tmpfs")
    where.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True)
    if proc.returncode != 0:
        if in_ci:
            pytest.fail(f"cannot mount a tmpfs as root: {proc.stderr.decode()}")
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)
