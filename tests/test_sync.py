"""git exp pull / push: experiments and results shared through plain git remotes.

Real repositories throughout: a bare "hub", a "cluster" clone that runs experiments and a
"laptop" clone, pulling and pushing with the real CLI.
"""
from __future__ import annotations

import itertools
import json
import os
import random
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Dict, Optional

import pytest

from conftest import assert_fsck_clean, git, log_json, make_repo, wait_for

from gitexp import merge as rules
from gitexp.sync import _valid_name

# Until gitexp/cli.py lists pull and push, the tests add them to the command table.
_CLI = ("import sys; from gitexp import cli; "
        "cli.COMMANDS.setdefault('pull', ('sync_cmd', 'pull')); "
        "cli.COMMANDS.setdefault('push', ('sync_cmd', 'push')); cli.main(sys.argv[1:])")


def exp(cwd: Path, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-c", _CLI, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"git exp {args} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def notes(cwd: Path, sha: str, ref: str = "exps") -> Optional[str]:
    proc = subprocess.run(["git", "notes", f"--ref={ref}", "show", sha], cwd=cwd, capture_output=True, text=True)
    return proc.stdout if proc.returncode == 0 else None


def summary(cwd: Path, sha: str) -> Dict[str, Any]:
    return json.loads(notes(cwd, sha) or "{}")


def set_note(cwd: Path, sha: str, value: Any, ref: str = "exps") -> None:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    subprocess.run(["git", "notes", f"--ref={ref}", "add", "-f", "-F", "-", sha], cwd=cwd, input=text,
                   text=True, check=True, capture_output=True)


def exp_refs(cwd: Path) -> Dict[str, str]:
    out = git(cwd, "for-each-ref", "--format=%(refname) %(objectname)", "refs/exps/")
    return {line.split()[0][len("refs/exps/"):]: line.split()[1] for line in out.splitlines()}


def user_refs(cwd: Path) -> str:
    return git(cwd, "for-each-ref", "--format=%(refname) %(objectname)", "refs/heads/", "refs/remotes/", "refs/tags/")


def hub_and_clone(tmp_path: Path, name: str = "cluster") -> tuple:
    origin = make_repo(tmp_path / "origin")
    hub = tmp_path / "hub.git"
    git(tmp_path, "clone", "-q", "--bare", str(origin), str(hub))
    clone = tmp_path / name
    git(tmp_path, "clone", "-q", str(hub), str(clone))
    return hub, clone


def clone(tmp_path: Path, hub: Path, name: str) -> Path:
    git(tmp_path, "clone", "-q", str(hub), str(tmp_path / name))
    return tmp_path / name


def queue(cwd: Path, name: str, *params: str) -> str:
    args = ["run", "config.yaml", "--queue", "--name", name]
    for p in params:
        args += ["-p", p]
    exp(cwd, *args)
    return exp_refs(cwd)[name]


# -- the whole path: run on the cluster, push to the hub, pull on the laptop ------------------------
def test_pull_brings_experiments_notes_and_histories_and_touches_no_branch(tmp_path: Path) -> None:
    hub, cluster = hub_and_clone(tmp_path)
    exp(cluster, "run", "config.yaml", "--name", "a", "-p", "lr=0.1")
    exp(cluster, "run", "config.yaml", "--name", "b", "-p", "lr=0.2")
    pushed = exp(cluster, "push", "origin")
    assert "pushed to origin: 2 experiments, notes (exps, exps-metrics, exps-details)" in pushed.stdout
    assert exp(cluster, "push", "origin").stdout.strip() == "origin is up to date"

    laptop = clone(tmp_path, hub, "laptop")
    branches = user_refs(laptop)
    assert exp(laptop, "pull").stdout.splitlines()[0] == "pulled from origin: 2 new experiments"
    assert user_refs(laptop) == branches  # only refs/exps, refs/notes/exps* and refs/exps-sync change
    rows = {r["name"]: r for r in log_json(laptop)}
    assert {n: (r["status"], r["params"]["lr"]) for n, r in rows.items()} == {"a": ("finished", 0.1),
                                                                           "b": ("finished", 0.2)}
    for name, sha in exp_refs(cluster).items():
        assert exp_refs(laptop)[name] == sha
        for ref in ("exps", "exps-metrics", "exps-details"):
            assert notes(laptop, sha, ref) == notes(cluster, sha, ref)  # the same bytes, history intact
    metrics = json.loads(exp(laptop, "metrics", "a", "--format", "json").stdout)
    assert [m["step"] for m in metrics] == [1, 2, 3, 4, 5]
    assert_fsck_clean(laptop)
    assert exp(laptop, "fsck").returncode == 0

    # Nothing new: nothing changes, and the notes tips are the hub's (fast-forwards, no merge commits).
    before = git(laptop, "for-each-ref", "--format=%(refname) %(objectname)")
    assert exp(laptop, "pull", "origin").stdout.strip() == "up to date with origin"
    assert git(laptop, "for-each-ref", "--format=%(refname) %(objectname)") == before
    for ref in ("refs/notes/exps", "refs/notes/exps-metrics", "refs/notes/exps-details"):
        assert git(laptop, "rev-parse", ref) == git(hub, "rev-parse", ref)


def test_push_to_a_bare_hub_then_another_clone_pulls_and_both_results_meet(tmp_path: Path) -> None:
    hub, cluster = hub_and_clone(tmp_path)
    laptop = clone(tmp_path, hub, "laptop")
    exp(cluster, "run", "config.yaml", "--name", "from-cluster")
    exp(laptop, "run", "config.yaml", "--name", "from-laptop", "-p", "lr=0.3")
    exp(cluster, "push", str(hub))  # a path works as well as a remote name
    out = exp(laptop, "push", "origin").stdout
    assert "pulled from origin: 1 new experiment" in out and "pushed to origin: 1 experiment" in out
    exp(cluster, "pull", "origin")
    for repo in (cluster, laptop):
        assert {r["name"]: r["status"] for r in log_json(repo)} == {"from-cluster": "finished",
                                                                  "from-laptop": "finished"}
        assert_fsck_clean(repo)
    # Both sides and the hub converge on the same notes commits.
    for ref in ("refs/notes/exps", "refs/notes/exps-metrics", "refs/notes/exps-details"):
        tips = {git(repo, "rev-parse", ref) for repo in (cluster, laptop, hub)}
        assert len(tips) == 1, ref
        assert git(hub, "rev-list", "--parents", "-n", "1", ref).count(" ") >= 1
    assert_fsck_clean(hub)


# -- merge rules, one by one -------------------------------------------------------------------------
PENDING = {"status": "pending", "name": "x", "params": {"lr": 0.1}, "runner": "slurm", "created": 100.0,
           "slurm": {"job": "123", "remote": "triton"}}
FINISHED = {"status": "finished", "name": "x", "params": {"lr": 0.1}, "runner": "slurm", "created": 100.0,
            "host": "node7", "started": 110.0, "ended": 200.0, "exit_code": 0,
            "metrics": {"loss": {"best": 0.1, "last": 0.2, "count": 3, "goal": "minimize"}}}


def test_final_state_from_the_executing_host_beats_pending() -> None:
    merged = rules.merge_summary(PENDING, FINISHED)
    assert merged["status"] == "finished" and merged["exit_code"] == 0 and merged["host"] == "node7"
    assert merged["slurm"] == {"job": "123", "remote": "triton"}  # fields merged, not replaced
    assert merged == rules.merge_summary(FINISHED, PENDING)


@pytest.mark.parametrize("lower,higher", [
    ({"status": "created"}, {"status": "queued"}),
    ({"status": "queued"}, {"status": "pending"}),
    ({"status": "pending"}, {"status": "starting"}),
    ({"status": "starting", "host": "h"}, {"status": "running"}),
    ({"status": "running", "host": "h", "updated": 500.0}, {"status": "lost"}),
    ({"status": "lost", "updated": 900.0, "host": "h"}, {"status": "failed", "ended": 10.0}),
    ({"status": "lost"}, {"status": "finished"}),
    ({"status": "cancelled", "ended": 300.0}, {"status": "killed", "host": "node7", "ended": 290.0}),
    ({"status": "running", "host": "h", "updated": 10.0}, {"status": "running", "host": "h", "updated": 20.0}),
    # A count field never decides (issue 16): a forged "attempts" does not outrank a final state.
    ({"status": "queued", "attempts": 99999}, {"status": "failed", "host": "h", "ended": 99.0, "attempts": 1}),
])
def test_lifecycle_order(lower: Dict[str, Any], higher: Dict[str, Any]) -> None:
    for merged in (rules.merge_summary(lower, higher), rules.merge_summary(higher, lower)):
        assert merged["status"] == higher["status"]
        assert {k: merged[k] for k in higher} == higher


def test_equal_precedence_is_decided_the_same_way_on_both_sides() -> None:
    a = {"status": "finished", "host": "h", "ended": 5.0, "exit_code": 0, "note": "a"}
    b = {"status": "failed", "host": "h", "ended": 5.0, "exit_code": 1, "extra": 1}
    assert rules.merge_summary(a, b) == rules.merge_summary(b, a)
    assert rules.merge_summary(a, b)["extra"] == 1 and rules.merge_summary(a, b)["note"] == "a"


def _random_summary(rng: random.Random) -> Dict[str, Any]:
    note: Dict[str, Any] = {"status": rng.choice(sorted(rules.LIFECYCLE))}
    for key, values in (("host", ["a", "b"]), ("updated", [1.0, 2.0]), ("ended", [1.0, 3.0]),
                        ("attempts", [1, 2]), ("x", [1, 2, 3]), ("y", ["p", "q"]), ("exit_code", [0, 1])):
        if rng.random() < 0.5:
            note[key] = rng.choice(values)
    return note


def test_summary_merge_is_commutative_idempotent_and_absorbing() -> None:
    rng = random.Random(7)
    notes_ = [_random_summary(rng) for _ in range(60)]
    for a, b in itertools.product(notes_, repeat=2):
        m = rules.merge_summary(a, b)
        assert m == rules.merge_summary(b, a)
        assert rules.merge_summary(m, a) == m and rules.merge_summary(m, b) == m
        assert rules.merge_summary(a, a) == a


def test_history_merge_is_a_union_without_duplicates_sorted_by_step_then_time() -> None:
    a = [{"step": 1, "time": 1.0, "loss": 1.0}, {"step": 2, "time": 2.0, "loss": 0.5}]
    b = [{"step": 1, "time": 1.0, "loss": 1.0}, {"step": 2, "time": 2.5, "loss": 0.5, "acc": 0.7},
         {"step": 3, "time": 3.0, "loss": 0.25}, {"step": 10, "time": 4.0, "loss": 0.1}]
    merged = rules.merge_history(a, b)
    assert merged == [b[0], b[1], b[2], b[3]]  # step 2 of a is inside b's grown record of step 2
    assert rules.merge_history(b, a) == merged and rules.merge_history(merged, a) == merged
    # Different values at one step are both kept (nothing is ever dropped that is not contained).
    c = [{"step": 2, "time": 9.0, "loss": 0.4}]
    assert rules.merge_history(merged, c) == [b[0], b[1], c[0], b[2], b[3]]
    # Records without a step come last, in time order.
    d = [{"time": 5.0, "loss": 1.0}, {"step": 1, "time": 1.0, "loss": 1.0}]
    assert rules.merge_history(d) == [d[1], d[0]]


def test_details_follow_the_winning_summary_and_keep_the_rest() -> None:
    here = {"facts": {"hostname": "laptop"}, "batch_script": "#!/bin/bash"}
    there = {"facts": {"hostname": "node7"}, "log_tail": "done"}
    merged = rules.merge_details(here, there, PENDING, FINISHED)
    assert merged == {"facts": {"hostname": "node7"}, "batch_script": "#!/bin/bash", "log_tail": "done"}
    assert merged == rules.merge_details(there, here, FINISHED, PENDING)


def test_invalid_remote_names_are_cleaned() -> None:
    sha = "ab" * 20
    assert _valid_name("toy", sha) == "toy"
    assert _valid_name("a/b c", sha) == "a-b-c"
    assert _valid_name("..", sha) == f"exp-{sha[:10]}"
    assert _valid_name("x" * 300, sha) == "x" * 190


# -- merge rules in real repositories -----------------------------------------------------------------
def _two_sides(tmp_path: Path) -> tuple:
    """A laptop that queued experiment x and a cluster clone that has it too (the same commit)."""
    hub, laptop = hub_and_clone(tmp_path, "laptop")
    sha = queue(laptop, "x")
    exp(laptop, "push", "origin")
    cluster = clone(tmp_path, hub, "cluster")
    exp(cluster, "pull")
    return hub, laptop, cluster, sha


def test_final_note_from_the_cluster_beats_pending_and_both_directions_agree(tmp_path: Path) -> None:
    hub, laptop, cluster, sha = _two_sides(tmp_path)
    base = summary(laptop, sha)
    set_note(laptop, sha, {**base, **PENDING, "name": "x"})
    set_note(laptop, sha, {"facts": {"hostname": "laptop"}, "batch_script": "#!/bin/bash"}, "exps-details")
    set_note(laptop, sha, '{"step": 1, "time": 1.0, "loss": 1.0}\n', "exps-metrics")
    set_note(cluster, sha, {**base, **FINISHED, "name": "x"})
    set_note(cluster, sha, {"facts": {"hostname": "node7"}, "log_tail": "done"}, "exps-details")
    set_note(cluster, sha, '{"step": 1, "time": 1.0, "loss": 1.0}\n{"step": 2, "time": 2.0, "loss": 0.5}\n'
             '{"step": 3, "time": 3.0, "loss": 0.2}\n', "exps-metrics")
    laptop2 = tmp_path / "laptop2"
    shutil.copytree(laptop, laptop2, symlinks=True)

    exp(laptop, "pull", str(cluster))
    exp(cluster, "pull", str(laptop2))  # the other direction, from the laptop as it was
    for ref in ("exps", "exps-metrics", "exps-details"):
        assert notes(laptop, sha, ref) == notes(cluster, sha, ref), ref
    merged = summary(laptop, sha)
    assert merged["status"] == "finished" and merged["host"] == "node7"
    assert merged["slurm"] == PENDING["slurm"]  # what only the submitting side knew is kept
    assert [json.loads(line)["step"] for line in notes(laptop, sha, "exps-metrics").splitlines()] == [1, 2, 3]
    assert json.loads(notes(laptop, sha, "exps-details")) == {
        "facts": {"hostname": "node7"}, "batch_script": "#!/bin/bash", "log_tail": "done"}
    assert {r["name"]: r["status"] for r in log_json(laptop)} == {"x": "finished"}
    # One more exchange each way and both notes refs are the very same commits.
    exp(laptop, "pull", str(cluster))
    exp(cluster, "pull", str(laptop))
    for ref in ("refs/notes/exps", "refs/notes/exps-metrics", "refs/notes/exps-details"):
        assert git(laptop, "rev-parse", ref) == git(cluster, "rev-parse", ref)
    for repo in (laptop, cluster):
        assert_fsck_clean(repo)


def test_histories_are_united_without_duplicates_and_never_truncated(tmp_path: Path) -> None:
    hub, laptop, cluster, sha = _two_sides(tmp_path)
    long = "".join(json.dumps({"step": s, "time": float(s), "loss": 1.0 / s}, sort_keys=True) + "\n"
                   for s in range(1, 201))
    short = "".join(json.dumps({"step": s, "time": float(s), "loss": 1.0 / s}, sort_keys=True) + "\n"
                    for s in range(1, 51))
    set_note(cluster, sha, long, "exps-metrics")
    set_note(laptop, sha, short + json.dumps({"step": 7, "time": 99.0, "val": 3}) + "\n", "exps-metrics")
    exp(laptop, "pull", str(cluster))
    records = [json.loads(line) for line in notes(laptop, sha, "exps-metrics").splitlines()]
    assert len(records) == 201 and len({json.dumps(r, sort_keys=True) for r in records}) == 201
    assert [r["step"] for r in records] == sorted(r["step"] for r in records)
    # The cluster's longer history alone: it is taken as it is, the very same blob.
    set_note(laptop, sha, short, "exps-metrics")
    exp(laptop, "pull", str(cluster))
    assert notes(laptop, sha, "exps-metrics") == long


def test_a_malformed_remote_note_never_replaces_a_good_local_one(tmp_path: Path) -> None:
    hub, laptop, cluster, sha = _two_sides(tmp_path)
    good = summary(laptop, sha)
    set_note(cluster, sha, {**good, "status": "finished", "host": "node7", "params": [1, 2]})
    set_note(cluster, sha, "[" * 100000 + "]" * 100000, "exps-details")
    bad_new = queue(cluster, "bad-new")
    set_note(cluster, bad_new, {"status": "finished", "metrics": "x"})
    before_exps = git(laptop, "for-each-ref", "refs/exps/")
    laptop2 = tmp_path / "laptop2"
    shutil.copytree(laptop, laptop2, symlinks=True)
    proc = exp(laptop, "pull", str(cluster))
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 3, proc.stderr
    assert any(f"summary note of {sha[:10]}" in w and "params must be a mapping" in w and "local note is kept" in w
               for w in warnings)
    assert any(f"details note of {sha[:10]}" in w for w in warnings)
    assert any(f"summary note of {bad_new[:10]}" in w and "not taken" in w for w in warnings)
    assert summary(laptop, sha) == good
    assert "bad-new" not in exp_refs(laptop)  # an experiment without a usable summary is left out
    assert "1 without a usable summary note there left out" in proc.stdout
    assert git(laptop, "for-each-ref", "refs/exps/") == before_exps
    for ref in ("exps", "exps-details"):  # the bad notes are not in the merged tree
        assert notes(laptop, sha, ref) == notes(laptop2, sha, ref)
    assert_fsck_clean(laptop)
    # A bad local note is replaced by a good remote one.
    set_note(laptop, sha, {"status": 7})
    set_note(cluster, sha, {**good, "status": "finished", "host": "node7"})
    exp(laptop, "pull", str(cluster))
    assert summary(laptop, sha)["status"] == "finished"


def test_remote_refs_that_name_no_commit_are_skipped(tmp_path: Path) -> None:
    hub, cluster = hub_and_clone(tmp_path)
    queue(cluster, "good")
    tree = git(cluster, "rev-parse", "HEAD^{tree}").strip()
    blob = git(cluster, "rev-parse", "HEAD:train.py").strip()
    git(cluster, "update-ref", "refs/exps/a-tree", tree)
    git(cluster, "update-ref", "refs/notes/exps-details", blob)
    laptop = make_repo(tmp_path / "laptop")
    proc = exp(laptop, "pull", str(cluster))
    assert f"warning: skipping refs/exps/a-tree of {cluster}: it names a tree object {tree[:10]}, not a commit" \
        in proc.stderr
    assert f"warning: skipping refs/notes/exps-details of {cluster}: it names a blob object" in proc.stderr
    assert set(exp_refs(laptop)) == {"good"} and "1 new experiment" in proc.stdout
    assert git(laptop, "for-each-ref", "refs/notes/exps-details") == ""
    assert_fsck_clean(laptop)


@pytest.mark.parametrize("glob", [False, True], ids=["explicit-refspecs", "one-glob"])
def test_a_remote_experiment_whose_name_is_taken_here_gets_a_free_name(tmp_path: Path, glob: bool,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    hub, laptop = hub_and_clone(tmp_path, "laptop")
    cluster = clone(tmp_path, hub, "cluster")
    mine = queue(laptop, "toy", "lr=0.1")
    theirs = queue(cluster, "toy", "lr=0.2")
    other = queue(laptop, "toy-2", "lr=0.3")
    exp(cluster, "push", "origin")
    out = exp(laptop, "pull").stdout
    assert "toy-3: named toy on origin, a name taken here" in out
    refs = exp_refs(laptop)
    assert refs["toy"] == mine and refs["toy-3"] == theirs
    assert exp(laptop, "pull").stdout.strip() == "up to date with origin"  # the same commit, under any name
    if glob:  # as with more than GLOB_FROM new experiments: one glob refspec, negative ones for the rest
        from gitexp import sync
        from gitexp.repo import Repo

        monkeypatch.setattr(sync, "GLOB_FROM", 1)
        report = sync.push(Repo.discover(str(laptop)), "origin")
        assert report.pushed == [("toy-2", "toy-2"), ("toy", "toy-4")]  # toy-3 is a negative refspec here
        assert exp_refs(hub) == {"toy": theirs, "toy-2": other, "toy-4": mine}
    else:
        pushed = exp(laptop, "push", "origin").stdout
        assert "pushed to origin: 2 experiments" in pushed
        assert "toy: named toy-3 on origin, its name is taken there" in pushed
        # never overwritten there either; a name free there is kept, a taken one avoids it
        assert exp_refs(hub) == {"toy": theirs, "toy-2": other, "toy-3": mine}
    assert exp(laptop, "push", "origin").stdout.strip() == "origin is up to date"
    assert_fsck_clean(laptop)
    if not glob:  # by hand: a plain fetch of refs/exps/* refuses the clash, a forced one loses ours
        proc = subprocess.run(["git", "fetch", "origin", "refs/exps/*:refs/exps/*"], cwd=laptop,
                              capture_output=True, text=True)
        assert proc.returncode != 0 and "rejected" in proc.stderr and exp_refs(laptop)["toy"] == mine
        git(laptop, "fetch", "origin", "+refs/exps/*:refs/exps/*")
        assert exp_refs(laptop)["toy"] == theirs  # our experiment's ref is gone


# -- concurrency ------------------------------------------------------------------------------------
def test_concurrent_pulls_from_two_remotes_while_local_runs_finish(tmp_path: Path) -> None:
    hub, laptop = hub_and_clone(tmp_path, "laptop")
    remotes = []
    for name in ("c1", "c2"):
        repo = clone(tmp_path, hub, name)
        exp(repo, "run", "config.yaml", "--queue", "--name", name, "--sweep", "lr=" + ",".join(
            str(i / 100) for i in range(1, 9)))
        remotes.append(repo)
    barrier = tmp_path / "go"
    (laptop / "wait.yaml").write_text(
        f"command: while [ ! -e {barrier} ]; do sleep 0.05; done; echo val_err={{i}}\n"
        "params: {i: 0}\nmetrics:\n  val_err: {regex: 'val_err=([0-9.]+)'}\n")
    for i in range(4):
        exp(laptop, "run", "wait.yaml", "-p", f"i={i}", "--detach")
    wait_for(lambda: len([r for r in log_json(laptop) if r["status"] == "running"]) == 4, timeout=120)
    pulls = [subprocess.Popen([sys.executable, "-c", _CLI, "pull", str(repo)], cwd=laptop,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for repo in remotes]
    barrier.write_text("")
    for proc in pulls:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert "8 new experiments" in out
    rows = wait_for(lambda: (lambda rs: rs if sum(r["status"] == "finished" for r in rs) == 4 else None)(
        log_json(laptop)), timeout=120)
    assert len(rows) == 20
    assert sorted(r["metrics"]["val_err"]["last"] for r in rows if r["status"] == "finished") == [0, 1, 2, 3]
    assert sorted(r["name"] for r in rows if r["status"] == "queued") == sorted(
        exp_refs(remotes[0]).keys() | exp_refs(remotes[1]).keys())
    assert_fsck_clean(laptop)
    assert exp(laptop, "fsck").returncode == 0


def test_push_retries_when_the_hub_changes_under_it(tmp_path: Path) -> None:
    hub, laptop = hub_and_clone(tmp_path, "laptop")
    other = clone(tmp_path, hub, "other")
    queue(laptop, "mine")
    queue(other, "theirs")
    # The laptop's pre-push hook runs after the lease was checked against what the hub had
    # and before the hub takes the push: the first time, another writer pushes meanwhile.
    hook = laptop / ".git" / "hooks" / "pre-push"
    marker = tmp_path / "hook-ran"
    hook.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        echo run >> {marker}
        if [ "$(wc -l < {marker})" = 1 ]; then
            cd {other} && env -u GIT_DIR -u GIT_WORK_TREE {sys.executable} -c "{_CLI}" push origin >/dev/null || exit 1
        fi
        exit 0
    """))
    hook.chmod(0o755)
    out = exp(laptop, "push", "origin").stdout
    assert marker.read_text().count("run") == 2  # the first push lost the race and was retried
    assert "pulled from origin: 1 new experiment" in out and "pushed to origin: 1 experiment" in out
    assert set(exp_refs(hub)) == {"mine", "theirs"}
    names = {summary(hub, sha)["name"] for sha in exp_refs(hub).values()}
    assert names == {"mine", "theirs"}  # both results in the hub's notes
    exp(other, "pull")
    assert {r["name"] for r in log_json(other)} == {"mine", "theirs"}
    assert_fsck_clean(hub)


# -- bad input -------------------------------------------------------------------------------------
def test_unknown_remote_unreachable_remote_and_empty_remote(tmp_path: Path) -> None:
    hub, laptop = hub_and_clone(tmp_path, "laptop")
    before = git(laptop, "for-each-ref")
    proc = exp(laptop, "pull", "nosuch", check=False)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip() == ("error: no git remote named 'nosuch' (known git remotes: origin) (add one with "
                                   "git remote add <name> <url>, or give a path or URL)")
    proc = exp(laptop, "pull", "origin", "nosuch", check=False)  # checked before anything is fetched
    assert proc.returncode == 2 and "no git remote named 'nosuch'" in proc.stderr
    proc = exp(laptop, "push", str(tmp_path / "missing"), check=False)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "cannot fetch experiments from" in proc.stderr and "does not appear to be a git repository" in proc.stderr
    git(laptop, "remote", "add", "dead", "ssh://nobody@127.0.0.1:1/nothing.git")
    proc = exp(laptop, "pull", "dead", check=False)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "cannot fetch experiments from dead:" in proc.stderr
    assert git(laptop, "for-each-ref") == before  # nothing written
    # A remote without experiments: said so, exit 0 (a new hub is a normal state), nothing written.
    proc = exp(laptop, "pull", "origin")
    assert proc.stderr.strip() == ("origin has no experiments (no refs/exps/* or refs/notes/exps there); "
                                   "nothing to pull from it")
    assert git(laptop, "for-each-ref") == before
    git(laptop, "remote", "remove", "origin")
    proc = exp(laptop, "pull", check=False)  # no origin, two... one remote left: dead
    assert proc.returncode == 2
    git(laptop, "remote", "add", "other", str(hub))
    proc = exp(laptop, "pull", check=False)
    assert proc.returncode == 2 and "name the git remote to use (known git remotes: dead, other)" in proc.stderr


def test_hint_when_a_fresh_clone_has_no_experiments(tmp_path: Path) -> None:
    from gitexp.repo import Repo
    from gitexp.sync import hint_when_empty

    hub, cluster = hub_and_clone(tmp_path)
    empty = clone(tmp_path, hub, "empty")
    assert hint_when_empty(Repo.discover(str(empty))) is None  # the hub has none yet
    queue(cluster, "a")
    exp(cluster, "push", "origin")
    fresh = clone(tmp_path, hub, "fresh")
    assert hint_when_empty(Repo.discover(str(fresh))) == "origin has experiments: fetch them with `git exp pull origin`"
    assert hint_when_empty(Repo.discover(str(cluster))) is None
    assert hint_when_empty(Repo.discover(str(make_repo(tmp_path / "alone")))) is None
    exp(fresh, "pull")
    assert hint_when_empty(Repo.discover(str(fresh))) is None


# -- what is safe by hand with plain git (the claims of docs/architecture.md) ------------------------
def test_plain_git_fetch_and_push_of_notes(tmp_path: Path) -> None:
    hub, laptop, cluster, sha = _two_sides(tmp_path)
    set_note(cluster, sha, {**summary(cluster, sha), "status": "finished", "host": "node7"})
    exp(cluster, "push", "origin")
    other = queue(laptop, "local-only")
    mine = git(laptop, "rev-parse", "refs/notes/exps").strip()

    # 1. A plain fetch into refs/notes/* is refused when the notes diverged: safe, but does nothing.
    proc = subprocess.run(["git", "fetch", "origin", "refs/notes/*:refs/notes/*"], cwd=laptop,
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "non-fast-forward" in proc.stderr
    assert git(laptop, "rev-parse", "refs/notes/exps").strip() == mine
    # 2. Forced, it overwrites the local notes: the local experiment's summary is gone.
    scratch = tmp_path / "scratch"
    shutil.copytree(laptop, scratch, symlinks=True)
    git(scratch, "fetch", "origin", "+refs/notes/*:refs/notes/*")
    assert notes(scratch, other) is None
    # 3. Into a name of its own it is harmless; git exp pull then merges both sides.
    git(laptop, "fetch", "origin", "+refs/notes/exps:refs/notes/exps-incoming")
    assert git(laptop, "rev-parse", "refs/notes/exps").strip() == mine
    exp(laptop, "pull", "origin")
    assert summary(laptop, sha)["status"] == "finished" and notes(laptop, other) is not None
    # 4. After git exp pull, a plain push of the notes is a fast-forward (no force needed),
    #    and a plain push of a new experiment ref creates it.
    git(laptop, "push", "origin", "refs/notes/exps:refs/notes/exps", "refs/exps/local-only:refs/exps/local-only")
    assert git(hub, "rev-parse", "refs/notes/exps") == git(laptop, "rev-parse", "refs/notes/exps")
    # 5. A plain push of an experiment ref whose name the hub has for another commit is refused.
    git(cluster, "update-ref", "refs/exps/local-only", git(cluster, "rev-parse", "HEAD").strip())
    proc = subprocess.run(["git", "push", "origin", "refs/exps/local-only"], cwd=cluster, capture_output=True,
                          text=True)
    assert proc.returncode != 0 and "rejected" in proc.stderr
    assert_fsck_clean(laptop)


# -- over ssh (the real sshd of scripts/sshd-up.sh; skipped where it cannot run) ---------------------
def _test_sshd() -> Dict[str, str]:
    script = Path(__file__).resolve().parents[1] / "scripts" / "sshd-up.sh"
    if not script.exists():
        pytest.skip("no scripts/sshd-up.sh")
    proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        pytest.skip(f"no test sshd: {(proc.stderr or proc.stdout).strip()[-200:]}")
    state = os.environ.get("GITEXP_SSHD_DIR") or f"/tmp/gitexp-sshd-{os.getuid()}"
    env = {}
    for line in Path(state, "env").read_text().splitlines():
        key, _, value = line.partition("=")
        env[key] = value
    return env


def test_pull_and_push_over_ssh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sshd = _test_sshd()
    monkeypatch.setenv("GIT_SSH_COMMAND", f"ssh -F {sshd['GITEXP_SSHD_CONFIG']}")
    hub, cluster = hub_and_clone(tmp_path)
    exp(cluster, "run", "config.yaml", "--name", "remote-run")
    url = f"ssh://{sshd['GITEXP_SSHD_HOST']}{hub}"
    assert "pushed to " + url + ": 1 experiment" in exp(cluster, "push", url).stdout
    laptop = make_repo(tmp_path / "laptop")
    git(laptop, "remote", "add", "hub", f"{sshd['GITEXP_SSHD_HOST']}:{hub}")  # scp-like syntax
    assert exp(laptop, "pull", "hub").stdout.startswith("pulled from hub: 1 new experiment")
    assert {r["name"]: r["status"] for r in log_json(laptop)} == {"remote-run": "finished"}
    sha = exp_refs(laptop)["remote-run"]
    assert notes(laptop, sha, "exps-metrics") == notes(cluster, sha, "exps-metrics")
    assert exp(laptop, "pull", "hub").stdout.strip() == "up to date with hub"
    assert_fsck_clean(laptop)
