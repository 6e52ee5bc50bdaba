"""Issue #16: what others push can never act on this machine.

The "malicious colleague" fixture: a bare hub, this repository (``mine``) pushing its
experiments there, and a second clone (``theirs``) that crafts refs and notes with plain git
(``commit-tree``, ``notes add``, a forced push). Then ``git exp pull`` here, and every
command on what arrived: cancel, rm, resume, retry.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, Optional

import psutil
import pytest

from conftest import all_refs, assert_fsck_clean, git, gitexp, log_json, make_repo, wait_for

SLOW = """\
import sys, time
for step in range(600):
    print(f"step {step} loss {1.0 / (step + 1):.4f}", flush=True)
    time.sleep(0.2)
"""

TRAIN = """\
import json, os, sys
import gitexp
out = os.environ["GITEXP_OUTPUT_DIR"]
start = 0
ck = sys.argv[1] if len(sys.argv) > 1 else None
if ck:
    start = json.load(open(ck))["step"] + 1
    print("resumed from", ck, flush=True)
for step in range(start, 4):
    print(f"step {step} loss {10.0 / (step + 1):.4f}", flush=True)
    gitexp.log(step=step, val=step)
    path = os.path.join(out, "model.txt")
    json.dump({"step": step}, open(path, "w"))
    gitexp.checkpoint(path, step=step)
"""

CONFIGS = {
    "train.py": TRAIN,
    "slow.py": SLOW,
    "toy.yaml": "name: toy\ncommand: python train.py\nresume: python train.py {checkpoint}\nparams: {lr: 0.1}\n"
                "metrics:\n  loss: {regex: 'loss ([0-9.]+)', step: {regex: 'step (\\d+)'}, goal: minimize}\n",
    "other.yaml": "name: other\ncommand: python train.py\nparams: {lr: 0.2}\n",
    "slow.yaml": "name: slow\ncommand: python slow.py\n",
}


class Colleague:
    """A second clone of the hub that writes whatever it likes with plain git, and pushes it."""

    def __init__(self, hub: Path, path: Path) -> None:
        self.hub = hub
        self.path = path
        git(path.parent, "clone", "-q", "-b", "main", str(hub), str(path))
        self.fetch()

    def fetch(self) -> None:
        git(self.path, "fetch", "-q", "-f", "origin", "refs/exps/*:refs/exps/*", "refs/notes/*:refs/notes/*")

    def note(self, sha: str, ref: str = "exps") -> Dict[str, Any]:
        return json.loads(git(self.path, "notes", f"--ref={ref}", "show", sha))

    def forge_note(self, sha: str, value: Any, ref: str = "exps") -> None:
        text = value if isinstance(value, str) else json.dumps(value)
        git(self.path, "notes", f"--ref={ref}", "add", "-f", "-m", text, sha)

    def commit(self, parent: str, message: str = "exp: forged", tree: Optional[str] = None) -> str:
        tree = tree or git(self.path, "rev-parse", f"{parent}^{{tree}}").strip()
        return git(self.path, "commit-tree", tree, "-p", parent, "-m", message).strip()

    def experiment(self, name: str, parent: str, summary: Dict[str, Any], tree: Optional[str] = None) -> str:
        sha = self.commit(parent, f"exp: {name}", tree)
        git(self.path, "update-ref", f"refs/exps/{name}", sha)
        self.forge_note(sha, {"schema": 2, "name": name, "params": {}, "created": time.time(), **summary})
        return sha

    def push(self) -> None:
        git(self.path, "push", "-q", "-f", "origin", "refs/exps/*:refs/exps/*", "refs/notes/*:refs/notes/*")


@pytest.fixture
def world(tmp_path: Path) -> Dict[str, Any]:
    hub = tmp_path / "hub.git"
    git(tmp_path, "init", "-q", "--bare", str(hub))
    mine = make_repo(tmp_path / "mine", CONFIGS)
    git(mine, "remote", "add", "hub", str(hub))
    git(mine, "push", "-q", "hub", "main")
    return {"hub": hub, "mine": mine, "tmp": tmp_path}


def publish(world: Dict[str, Any]) -> Colleague:
    gitexp(world["mine"], "push", "hub")
    return Colleague(world["hub"], world["tmp"] / "theirs")


def exp_sha(repo: Path, name: str) -> str:
    return git(repo, "rev-parse", f"refs/exps/{name}").strip()


def my_note(repo: Path, sha: str, ref: str = "exps") -> str:
    return git(repo, "notes", f"--ref={ref}", "show", sha)


def start_slow(mine: Path) -> Dict[str, Any]:
    gitexp(mine, "run", "slow.yaml", "--detach")
    sha = exp_sha(mine, "slow")
    wait_for(lambda: json.loads(my_note(mine, sha)).get("status") == "running", timeout=60)
    return json.loads(my_note(mine, sha))


def stop(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


# -- 1. a forged note never signals a process of ours ---------------------------------------------------
def test_a_pulled_note_naming_our_executor_or_worker_kills_nothing(world: Dict[str, Any]) -> None:
    mine = world["mine"]
    slow = start_slow(mine)
    worker = subprocess.Popen([sys.executable, "-m", "gitexp", "worker"], cwd=mine, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: psutil.pid_exists(worker.pid) and "worker" in " ".join(psutil.Process(worker.pid).cmdline()))
        theirs = publish(world)
        main = git(theirs.path, "rev-parse", "HEAD").strip()
        here = socket.gethostname()
        executor = {"host": here, "pid": slow["pid"], "pid_started": slow["pid_started"]}
        workerid = {"host": here, "pid": worker.pid, "pid_started": psutil.Process(worker.pid).create_time()}
        theirs.experiment("killer", main, {"status": "running", "started": time.time(), **executor})
        theirs.experiment("killer2", main, {"status": "running", "started": time.time(), **workerid})
        theirs.experiment("killer3", main, {"status": "starting", "worker": workerid})
        theirs.push()
        gitexp(mine, "pull", "hub")
        for name in ("killer", "killer2", "killer3"):
            proc = gitexp(mine, "cancel", name, check=False)
            assert "stopped" not in proc.stdout, proc.stdout
        for name in ("killer", "killer2", "killer3"):
            proc = gitexp(mine, "rm", "--force", name, check=False)
            assert proc.returncode == 0, proc.stderr
            assert "stopped its executor" not in proc.stdout, proc.stdout
        time.sleep(1.0)
        assert psutil.pid_exists(slow["pid"]) and psutil.pid_exists(worker.pid)
        assert json.loads(my_note(mine, exp_sha(mine, "slow")))["status"] == "running"
        rows = {r["name"]: r["status"] for r in log_json(mine)}
        assert rows["slow"] == "running"
        # Our own run is still ours to stop: local evidence (its run directory) proves it.
        assert "stopped slow" in gitexp(mine, "cancel", "slow").stdout
        assert json.loads(my_note(mine, exp_sha(mine, "slow")))["status"] == "killed"
    finally:
        stop(worker.pid)
        stop(slow["pid"])


def test_a_pulled_running_note_on_our_host_is_shown_as_elsewhere_never_lost(world: Dict[str, Any]) -> None:
    mine = world["mine"]
    theirs = publish(world)
    main = git(theirs.path, "rev-parse", "HEAD").strip()
    theirs.experiment("ghost", main, {"status": "running", "host": socket.gethostname(), "pid": 4194000,
                                      "pid_started": 1.0, "command": "touch PWNED"})
    theirs.experiment("waiting", main, {"status": "queued"})
    theirs.push()
    gitexp(mine, "pull", "hub")
    table = gitexp(mine, "log").stdout
    rows = {r["name"]: r["status"] for r in log_json(mine)}
    assert rows["ghost"] == "running" and rows["waiting"] == "queued"
    assert "running elsewhere" in table and "queued elsewhere" in table


# -- 2. rm deletes only the experiment's own attempts --------------------------------------------------
def test_rm_of_a_pulled_experiment_never_deletes_our_notes(world: Dict[str, Any]) -> None:
    mine = world["mine"]
    gitexp(mine, "run", "toy.yaml")
    toy = exp_sha(mine, "toy")
    before = {ref: my_note(mine, toy, ref) for ref in ("exps", "exps-metrics")}
    theirs = publish(world)
    main = git(theirs.path, "rev-parse", "HEAD").strip()
    # A chain naming our commit, on a commit that does not descend from it: invalid at pull.
    theirs.experiment("eraser", main, {"status": "finished", "chain": [toy], "attempt": 2})
    # One that does descend from it (graph-valid), under another name.
    theirs.experiment("eraser2", toy, {"status": "finished", "chain": [toy], "attempt": 2})
    theirs.push()
    proc = gitexp(mine, "pull", "hub")
    assert "eraser" not in {r["name"] for r in log_json(mine)}
    assert "does not match the commit graph" in proc.stderr
    gitexp(mine, "rm", "eraser2")
    assert {ref: my_note(mine, toy, ref) for ref in ("exps", "exps-metrics")} == before
    assert [r["status"] for r in log_json(mine) if r["name"] == "toy"] == ["finished"]
    assert_fsck_clean(mine)


# -- 3. our results are never overwritten ---------------------------------------------------------------
@pytest.mark.parametrize("forgery", [
    {"status": "failed", "params": {"lr": 666}, "reason": "forged", "ended": 4e9, "updated": 4e9},
    {"status": "failed", "attempts": 99999, "params": {"lr": 666}},
    {"status": "lost", "host": "evil", "updated": 4e9, "metrics": {"loss": {"best": -1.0}}},
])
def test_a_pulled_note_for_our_run_never_replaces_our_record(world: Dict[str, Any], forgery: Dict[str, Any]) -> None:
    mine = world["mine"]
    gitexp(mine, "run", "toy.yaml")
    toy = exp_sha(mine, "toy")
    before = {ref: my_note(mine, toy, ref) for ref in ("exps", "exps-metrics", "exps-details")}
    theirs = publish(world)
    theirs.forge_note(toy, {**theirs.note(toy), **forgery})
    forged_points = git(theirs.path, "notes", "--ref=exps-metrics", "show", toy)
    theirs.forge_note(toy, forged_points + json.dumps({"step": 99, "loss": -5.0, "time": 4e9}) + "\n", "exps-metrics")
    theirs.forge_note(toy, {"log_tail": ["forged"]}, "exps-details")
    theirs.push()
    gitexp(mine, "pull", "hub")
    assert {ref: my_note(mine, toy, ref) for ref in ("exps", "exps-metrics", "exps-details")} == before
    row = log_json(mine)[0]
    assert row["status"] == "finished" and row["params"] == {"lr": 0.1}
    history = json.loads(gitexp(mine, "metrics", "toy", "--format", "json").stdout)
    assert 99 not in [r.get("step") for r in history]
    # Pushing back is still a fast-forward: nothing is lost on either side.
    gitexp(mine, "push", "hub")
    assert_fsck_clean(mine)


# -- 4. checkpoint pointers and outdir_of -----------------------------------------------------------------
@pytest.mark.parametrize("pointer", ["/etc/hostname", "../../../../../../../../etc/hostname", "{other_out}/model.txt"])
def test_a_pulled_later_attempt_cannot_point_resume_at_other_files(world: Dict[str, Any], pointer: str) -> None:
    mine = world["mine"]
    gitexp(mine, "run", "toy.yaml")
    gitexp(mine, "run", "other.yaml")
    toy, other = exp_sha(mine, "toy"), exp_sha(mine, "other")
    other_model = mine / ".git" / "gitexp" / "runs" / other / "out" / "model.txt"
    other_before = other_model.read_text()
    theirs = publish(world)
    path = pointer.replace("{other_out}", str(other_model.parent))
    pointers = [{"path": path, "step": 99, "host": socket.gethostname(), "time": 4e9}]
    # outdir_of naming another experiment: not an attempt of this chain, so the note is invalid.
    bad = theirs.commit(toy, "exp: toy (attempt 2: resume)")
    theirs.forge_note(bad, {**theirs.note(toy), "attempt": 2, "chain": [toy], "kind": "resume", "outdir_of": other,
                            "status": "failed", "checkpoints": pointers, "ended": 4e9})
    git(theirs.path, "update-ref", "refs/exps/toy", bad)
    theirs.push()
    proc = gitexp(mine, "pull", "hub")
    assert exp_sha(mine, "toy") == toy and "outdir_of" in proc.stderr
    # A consistent later attempt whose pointer names a file no run here recorded.
    later = theirs.commit(toy, "exp: toy (attempt 2: resume)")
    theirs.forge_note(later, {**theirs.note(toy), "attempt": 2, "chain": [toy], "kind": "resume", "outdir_of": toy,
                              "status": "failed", "host": "colleague-box", "checkpoints": pointers, "ended": 4e9})
    git(theirs.path, "update-ref", "refs/exps/toy", later)
    theirs.push()
    gitexp(mine, "pull", "hub")
    assert exp_sha(mine, "toy") == later  # their attempt of our experiment: the ref follows it
    refs = all_refs(mine)
    proc = gitexp(mine, "resume", "toy", check=False)
    if proc.returncode == 0:  # it may resume from one of our own checkpoints, never from theirs
        log = (mine / ".git" / "gitexp" / "runs" / exp_sha(mine, "toy") / "output.log").read_text()
        assert path not in log and "resumed from" in log
        assert "hostname" not in log
    else:
        assert proc.returncode == 2 and "--checkpoint" in proc.stderr, proc.stderr
        assert all_refs(mine) == refs
    assert other_model.read_text() == other_before
    assert_fsck_clean(mine)


def test_a_pulled_attempt_that_changes_code_does_not_move_our_ref(world: Dict[str, Any]) -> None:
    mine = world["mine"]
    gitexp(mine, "run", "toy.yaml")
    toy = exp_sha(mine, "toy")
    theirs = publish(world)
    git(theirs.path, "read-tree", toy)
    blob = git(theirs.path, "hash-object", "-w", "--stdin", input="open('PWNED', 'w')\n").strip()
    git(theirs.path, "update-index", "--add", "--cacheinfo", f"100644,{blob},train.py")
    tree = git(theirs.path, "write-tree").strip()
    later = theirs.commit(toy, "exp: toy (attempt 2: retry)", tree)
    theirs.forge_note(later, {**theirs.note(toy), "attempt": 2, "chain": [toy], "kind": "retry", "status": "lost"})
    git(theirs.path, "update-ref", "refs/exps/toy", later)
    theirs.push()
    proc = gitexp(mine, "pull", "hub")
    assert exp_sha(mine, "toy") == toy and "changes its code" in proc.stderr


# -- 5. retry only what this repository ran -------------------------------------------------------------------
def test_retry_lost_never_runs_a_pulled_experiment(world: Dict[str, Any]) -> None:
    mine = world["mine"]
    theirs = publish(world)
    main = git(theirs.path, "rev-parse", "HEAD").strip()
    config = "name: pwn\ncommand: touch PWNED\n"
    git(theirs.path, "read-tree", main)
    blob = git(theirs.path, "hash-object", "-w", "--stdin", input=config).strip()
    git(theirs.path, "update-index", "--add", "--cacheinfo", f"100644,{blob},.gitexp/experiment.yaml")
    tree = git(theirs.path, "write-tree").strip()
    here = socket.gethostname()
    theirs.experiment("pwn", main, {"status": "running", "host": here, "pid": 4194001, "pid_started": 1.0}, tree)
    theirs.experiment("pwn2", main, {"status": "lost", "host": here, "ended": 1.0}, tree)
    theirs.push()
    gitexp(mine, "pull", "hub")
    proc = gitexp(mine, "queue", "--retry-lost", check=False)
    assert "ran on" in proc.stderr and "resume it there" in proc.stderr
    for name in ("pwn", "pwn2"):
        refused = gitexp(mine, "queue", "retry", name, check=False)
        assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert not git(mine, "for-each-ref", "refs/exps-queue/").strip()
    gitexp(mine, "worker", "--until-empty", timeout=60)
    assert not list(world["tmp"].rglob("PWNED"))


def test_retry_lost_reports_a_bad_stored_config_and_goes_on(world: Dict[str, Any]) -> None:
    mine = world["mine"]
    slow = start_slow(mine)
    stop(slow["pid"])  # the executor and its program die without a word: lost
    main = git(mine, "rev-parse", "HEAD").strip()
    git(mine, "read-tree", main)
    blob = git(mine, "hash-object", "-w", "--stdin", input="name: [unclosed\n").strip()
    git(mine, "update-index", "--add", "--cacheinfo", f"100644,{blob},.gitexp/experiment.yaml")
    tree = git(mine, "write-tree").strip()
    git(mine, "read-tree", "HEAD")
    bad = git(mine, "commit-tree", tree, "-p", main, "-m", "exp: bad").strip()
    git(mine, "update-ref", "refs/exps/bad", bad)
    here = socket.gethostname()
    note = {"schema": 2, "name": "bad", "params": {}, "status": "running", "host": here, "pid": 4194002,
            "pid_started": 1.0, "created": 1.0}
    git(mine, "notes", "--ref=exps", "add", "-f", "-m", json.dumps(note), bad)
    run_dir = mine / ".git" / "gitexp" / "runs" / bad  # run here by an executor that died (local evidence)
    run_dir.mkdir(parents=True)
    (run_dir / "exec.json").write_text(json.dumps({"host": here, "pid": 4194002, "pid_started": 1.0}))
    wait_for(lambda: {r["name"]: r["status"] for r in log_json(mine)} == {"slow": "lost", "bad": "lost"})
    proc = gitexp(mine, "queue", "--retry-lost", check=False)
    assert "not retried bad" in proc.stderr, proc.stderr
    assert "queued slow again" in proc.stdout
    assert len(git(mine, "for-each-ref", "refs/exps-queue/").splitlines()) == 1


# -- messages --------------------------------------------------------------------------------------------------
def test_pull_says_invalid_for_an_invalid_name(world: Dict[str, Any]) -> None:
    mine = world["mine"]
    gitexp(mine, "run", "toy.yaml")
    theirs = publish(world)
    main = git(theirs.path, "rev-parse", "HEAD").strip()
    theirs.experiment("-rf", main, {"status": "finished"})
    theirs.push()
    proc = gitexp(mine, "pull", "hub")
    out = proc.stdout + proc.stderr
    assert "not a valid name here" in out and "a name taken here" not in out


def test_metrics_of_a_corrupt_note_warns_naming_the_sha(world: Dict[str, Any]) -> None:
    mine = world["mine"]
    gitexp(mine, "run", "toy.yaml")
    toy = exp_sha(mine, "toy")
    git(mine, "notes", "--ref=exps-metrics", "add", "-f", "-m", "this is not json", toy)
    proc = gitexp(mine, "metrics", "toy")
    assert toy[:10] in proc.stderr and "warning" in proc.stderr


# -- 1 (schedulers): a job id in a pulled note is never cancelled ----------------------------------------------
def test_a_pulled_note_naming_one_of_our_slurm_jobs_cancels_nothing(world: Dict[str, Any]) -> None:
    mine, tmp = world["mine"], world["tmp"]
    fakebin = tmp / "fakebin"
    fakebin.mkdir()
    calls = tmp / "calls"
    for tool in ("scancel", "scontrol", "sbatch"):
        (fakebin / tool).write_text(f"#!/bin/sh\necho {tool} \"$@\" >> {calls}\n")
        (fakebin / tool).chmod(0o755)
    # squeue says job 4242 (one of "our" jobs) runs: only the evidence stands between the note and scancel
    (fakebin / "squeue").write_text("#!/bin/sh\necho '4242|4242|N/A|RUNNING|None'\n")
    (fakebin / "squeue").chmod(0o755)
    env = {"PATH": f"{fakebin}:{os.environ['PATH']}"}
    theirs = publish(world)
    main = git(theirs.path, "rev-parse", "HEAD").strip()
    forged = theirs.experiment("jobkiller", main, {"status": "running", "runner": "slurm",
                                                   "slurm": {"job": "4242", "task": None}})
    theirs.push()
    gitexp(mine, "pull", "hub")
    proc = gitexp(mine, "cancel", "jobkiller", check=False, env=env)
    assert proc.returncode != 0 and "not submitted from this repository" in proc.stderr, proc.stderr
    out = gitexp(mine, "rm", "--force", "jobkiller", env=env).stdout
    assert "not submitted from this repository" in out
    assert not calls.exists() or "scancel" not in calls.read_text()
    # With the record this repository writes when it submits, the same job is ours to cancel.
    from gitexp.evidence import record_submission
    from gitexp.repo import Repo

    theirs.push()
    gitexp(mine, "pull", "hub")
    assert exp_sha(mine, "jobkiller") == forged
    record_submission(Repo.discover(str(mine)), "slurm", "4242", [forged])
    gitexp(mine, "cancel", "jobkiller", check=False, env=env)
    assert "scancel -- 4242" in calls.read_text()
