"""Every status write goes through gitexp.lifecycle: the record-time writes (a run's first summary)
are announced to listeners as transitions are, through the real code paths that make them."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest

from conftest import ROOT, git

sys.path.insert(0, str(ROOT))

from gitexp import experiments, fsck, lifecycle  # noqa: E402
from gitexp.attempts import make_attempt  # noqa: E402
from gitexp.config import load_config  # noqa: E402
from gitexp.lifecycle import Change, Status  # noqa: E402
from gitexp.notes import SUMMARY_REF, Experiment, Store  # noqa: E402
from gitexp.queue import Queue  # noqa: E402
from gitexp.repo import Repo  # noqa: E402
from gitexp.runners.agent import _record_failed  # noqa: E402
from gitexp.runners.base import make  # noqa: E402
from gitexp.runners.slurm import SlurmRunner  # noqa: E402
from gitexp.targets import Target  # noqa: E402
from fake_transport import FakeTransport  # noqa: E402

SLURM_TOOLS = {name: f"/opt/slurm/bin/{name}" for name in ("sbatch", "squeue", "scancel", "scontrol")}


@pytest.fixture
def heard() -> Iterator[List[Change]]:
    changes: List[Change] = []
    stop = lifecycle.listen(changes.append)
    yield changes
    stop()


def open_repo(path: Path) -> Tuple[Repo, Store]:
    repo = Repo.discover(str(path))
    return repo, Store(repo)


def firsts(changes: List[Change]) -> List[Tuple[str, Status]]:
    return [(c.sha, c.new) for c in changes if c.old is None]


def test_recording_a_run_is_heard(repo: Path, heard: List[Change]) -> None:
    r, store = open_repo(repo)
    exp = experiments.create(r, store, load_config(str(repo / "config.yaml")))
    assert firsts(heard) == [(exp.sha, Status.CREATED)]
    assert heard[0].summary["name"] == exp.name


def test_queueing_a_sweep_is_heard_for_each_run(repo: Path, heard: List[Change]) -> None:
    r, store = open_repo(repo)
    config = load_config(str(repo / "config.yaml"))
    exps = Queue(r, store).enqueue([config.with_params({"lr": lr}) for lr in (0.1, 0.2)])
    assert firsts(heard) == [(e.sha, Status.QUEUED) for e in exps]


def test_a_new_attempt_queued_for_retry_is_heard(repo: Path, heard: List[Change]) -> None:
    r, store = open_repo(repo)
    first = experiments.create(r, store, load_config(str(repo / "config.yaml")), status="failed")
    current = Experiment(first.sha, first.name, store.summary(first.sha))
    new, _config = make_attempt(r, store, current, "retry", Status.QUEUED)
    Queue(r, store).record([new])
    assert firsts(heard)[-1] == (new.sha, Status.QUEUED)
    assert store.summary(new.sha)["attempt"] == 2


def test_a_slurm_submission_is_heard_pending(repo: Path, heard: List[Change]) -> None:
    r, store = open_repo(repo)
    fake = FakeTransport("fake-login", programs=SLURM_TOOLS, user="alice")
    fake.on([SLURM_TOOLS["scontrol"], "show", "config"], stdout="MaxArraySize            = 1001\n")
    fake.on([SLURM_TOOLS["sbatch"], "--parsable", "--hold"], stdout="4242\n")
    runner = SlurmRunner(r, store, Target("triton", "slurm", {"runner": "slurm"}), fake)
    exps = runner.submit(make(r, store, [load_config(str(repo / "config.yaml"))], runner.INITIAL_STATUS))
    assert firsts(heard) == [(e.sha, Status.PENDING) for e in exps]
    assert heard[0].summary["slurm"]["job"] == "4242"


def test_a_run_refused_by_the_agents_preflight_is_heard_failed(repo: Path, heard: List[Change]) -> None:
    r, store = open_repo(repo)
    [exp] = make(r, store, [load_config(str(repo / "config.yaml"))], "pending").exps
    _record_failed(store, [(exp, ["data.csv"])], {})
    assert firsts(heard) == [(exp.sha, Status.FAILED)]
    assert "preflight" in store.summary(exp.sha)["reason"]


def test_a_summary_rebuilt_by_fsck_is_heard_lost(repo: Path, heard: List[Change]) -> None:
    r, store = open_repo(repo)
    exp = experiments.create(r, store, load_config(str(repo / "config.yaml")))
    git(repo, "notes", "--ref=exps", "remove", exp.sha)
    heard.clear()
    done = fsck.repair(r, store, fsck.check(r))
    assert any("rebuilt the summary" in line for line in done)
    assert firsts(heard) == [(exp.sha, Status.LOST)]


def test_a_transition_is_heard_with_its_old_status(repo: Path, heard: List[Change]) -> None:
    r, store = open_repo(repo)
    exp = experiments.create(r, store, load_config(str(repo / "config.yaml")))
    lifecycle.transition(store, exp.sha, Status.RUNNING, {"started": 1.0})
    assert [(c.old, c.new) for c in heard] == [(None, Status.CREATED), (Status.CREATED, Status.RUNNING)]


def test_recording_outside_the_lifecycle_is_refused(repo: Path) -> None:
    r, store = open_repo(repo)
    [exp] = make(r, store, [load_config(str(repo / "config.yaml"))], "created").exps
    with pytest.raises(ValueError, match="outside gitexp.lifecycle"):
        store.create_batch([exp])
    with pytest.raises(ValueError, match="outside gitexp.lifecycle"):
        store.create(exp.name, exp.sha, exp.summary)
    assert not r.refs(SUMMARY_REF)


def test_the_sets_agree() -> None:
    assert lifecycle.OPEN == frozenset(Status) - lifecycle.FINAL
    assert lifecycle.ACTIVE < lifecycle.OPEN and lifecycle.LIVE < lifecycle.ACTIVE
    assert lifecycle.RETRYABLE == lifecycle.FINAL - {Status.FINISHED}
    assert "running" in lifecycle.ACTIVE and "stopped" in lifecycle.FINAL  # plain strings are members
