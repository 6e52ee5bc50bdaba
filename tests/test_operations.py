"""The operations layer (gitexp/operations/): library functions with typed results, and the
commands over them refusing bad input before anything is written."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from conftest import all_refs, git, gitexp, log_json


def test_rm_force_with_a_bad_kill_grace_exits_2_before_removing_anything(repo: Path) -> None:
    gitexp(repo, "run", "config.yaml", "-p", "steps=1")
    sha = log_json(repo)[0]["id"]
    run_dir = repo / ".git" / "gitexp" / "runs" / sha
    before = all_refs(repo)
    assert run_dir.is_dir()
    proc = gitexp(repo, "rm", "--force", "toy", check=False, env={"GITEXP_KILL_GRACE": "abc"})
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "GITEXP_KILL_GRACE" in lines[0], proc.stderr
    assert all_refs(repo) == before and run_dir.is_dir()


def test_operations_return_typed_results_and_check_before_writing(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gitexp.errors import BadInput
    from gitexp.notes import Store
    from gitexp.operations.apply import ApplyPlan, plan_apply
    from gitexp.operations.remove import Removed, remove
    from gitexp.operations.retry import retry
    from gitexp.repo import Repo
    from gitexp.runners.base import Stopped
    from gitexp.runners.local import LocalRunner

    gitexp(repo, "run", "config.yaml", "-p", "steps=1")
    monkeypatch.chdir(repo)
    r = Repo.discover(os.fspath(repo))
    store = Store(r)
    exp = store.find("toy")
    (repo / "train.py").write_text("changed\n")
    plan = plan_apply(r, exp.sha)
    assert isinstance(plan, ApplyPlan) and plan.write == ("train.py",) and plan.dirty == ("train.py",)
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.write = ()  # type: ignore[misc]
    with pytest.raises(BadInput, match="only lost, failed"):
        retry(r, store, ["toy"])  # finished: refused at the call, before anything is queued
    with pytest.raises(BadInput, match="name the experiments"):
        retry(r, store, [])
    stopped = LocalRunner(r, store).stop_removed(exp)  # its executor has ended: nothing to signal
    assert stopped == Stopped("its executor is not running here; nothing to stop")
    removed = list(remove(r, store, ["toy"], keep_files=True))
    assert removed == [Removed(exp, None)]
    assert git(repo, "for-each-ref", "refs/exps/") == ""
