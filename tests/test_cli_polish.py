"""A new user's first hour (issue #8): pipes, help, the man page, dry runs, exit codes, the demo."""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, gitexp

TRIES = 20


def piped_into_head(repo: Path, *args: str) -> subprocess.CompletedProcess:
    """``git exp ARGS | head -n 1`` under ``pipefail``: the exit status is gitexp's unless it is 0."""
    command = " ".join(shlex.quote(a) for a in (sys.executable, "-m", "gitexp", *args))
    return subprocess.run(["bash", "-o", "pipefail", "-c", f"{command} | head -n 1 >/dev/null"],
                          cwd=repo, capture_output=True, text=True, timeout=120)


def assert_quiet_under_head(repo: Path, *args: str, tries: int = TRIES, note: str = "") -> None:
    """Exit 0 every time, nothing on stderr (but ``note``, a line the command prints after its
    output, which it cannot print once the pipe is gone): never an error or a traceback."""
    for attempt in range(tries):
        proc = piped_into_head(repo, *args)
        assert proc.returncode == 0 and proc.stderr in ("", note), (attempt, args[:3], proc.returncode, proc.stderr)


# -- item 1: a closed pipe ends any command quietly ----------------------------------------------
def test_metrics_into_head_ends_quietly(repo: Path) -> None:
    (repo / "long.py").write_text("import gitexp\nfor i in range(20000):\n    gitexp.log(step=i, val_err=1.0 / (i + 1))\n")
    (repo / "long.yaml").write_text("name: long\ncommand: python long.py\nmetrics:\n  val_err: {goal: minimize}\n")
    gitexp(repo, "run", "long.yaml")
    assert len(gitexp(repo, "metrics", "long").stdout) > 200_000  # far more than a pipe holds
    assert_quiet_under_head(repo, "metrics", "long")
    assert_quiet_under_head(repo, "metrics", "long", "--format", "jsonl")


def test_log_and_dry_run_into_head_end_quietly(repo: Path) -> None:
    values = ",".join(str(i) for i in range(1, 2001))
    gitexp(repo, "run", "config.yaml", "--queue", "--sweep", f"steps={values}")
    assert len(gitexp(repo, "log").stdout) > 100_000
    assert_quiet_under_head(repo, "log")
    values = ",".join(str(i) for i in range(100_000, 106_000))
    sweep = ("run", "config.yaml", "--dry-run", "--sweep", f"steps={values}")
    assert len(gitexp(repo, *sweep).stdout) > 200_000
    assert_quiet_under_head(repo, *sweep, tries=5, note="6000 experiment(s); nothing recorded (--dry-run)\n")


def test_usage_errors_point_at_help_that_works(repo: Path) -> None:
    """git turns `git exp --help` into `git help exp` (the man page); `-h` always reaches gitexp."""
    for args, path in ((["bogus"], "git exp"), (["run"], "git exp run"), (["log", "--bad"], "git exp log")):
        proc = gitexp(repo, *args, check=False)
        assert proc.returncode == 2
        assert f"Try '{path} -h' for help." in proc.stderr and "--help" not in proc.stderr, proc.stderr
        assert proc.stderr.strip().splitlines()[-1].startswith("error: ")
    proc = gitexp(repo, "-h")
    assert proc.returncode == 0 and proc.stdout.startswith("Usage: git exp")
