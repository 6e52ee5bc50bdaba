"""Issue #7: notes and commits from others are untrusted input (items 2, 8, 13, 16)."""
from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import psutil
import pytest

from conftest import ROOT, all_refs, git, gitexp, log_json, wait_for

sys.path.insert(0, str(ROOT))

from gitexp.runners.base import Transport  # noqa: E402
from gitexp.runners.slurm import JobRef, SlurmRunner, job_of  # noqa: E402


# -- helpers ---------------------------------------------------------------------------------------
def set_note(repo: Path, sha: str, data: Any, ref: str = "exps") -> None:
    """Write a note byte for byte (what a colleague's push could bring)."""
    raw = data if isinstance(data, bytes) else (data if isinstance(data, str) else json.dumps(data)).encode()
    path = repo.parent / "note.bin"
    path.write_bytes(raw)
    blob = git(repo, "hash-object", "-w", str(path)).strip()
    git(repo, "notes", f"--ref={ref}", "add", "-f", "-C", blob, sha)


def note(repo: Path, sha: str, ref: str = "exps") -> Dict[str, Any]:
    return json.loads(git(repo, "notes", f"--ref={ref}", "show", sha))


def queue_two(repo: Path) -> Dict[str, str]:
    """Two queued experiments, a and b (no program runs): name -> sha."""
    for name in ("a", "b"):
        gitexp(repo, "run", "config.yaml", "--queue", "--name", name)
    return {name: git(repo, "rev-parse", f"refs/exps/{name}").strip() for name in ("a", "b")}


def strict_json(text: str) -> Any:
    """JSON as other tools read it: NaN and Infinity are errors."""
    def refuse(name: str) -> None:
        raise ValueError(f"not JSON: {name}")
    return json.loads(text, parse_constant=refuse)


def no_crash(proc: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 0, proc.stderr


# -- item 8: malformed summaries -------------------------------------------------------------------
BAD_SUMMARIES = {
    "params-list": {"params": [1, 2]},
    "worker-string": {"status": "starting", "worker": "me"},
    "metrics-string": {"metrics": "x"},
    "slurm-int": {"status": "running", "runner": "slurm", "slurm": 5},
    "created-text": {"created": "yesterday"},
    "status-int": {"status": 7},
    "not-an-object": [1, 2],
    "deeply-nested": "[" * 100000 + "]" * 100000,
    "not-json": "{\"status\": ",
}


@pytest.mark.parametrize("bad", list(BAD_SUMMARIES), ids=list(BAD_SUMMARIES))
def test_bad_summary_is_skipped_with_one_warning_and_the_rest_lists(repo: Path, bad: str) -> None:
    shas = queue_two(repo)
    set_note(repo, shas["a"], BAD_SUMMARIES[bad])
    for args in (("log",), ("log", "--format", "json"), ("log", "--format", "csv"), ("queue",),
                 ("queue", "--format", "json"), ("show", "a"), ("show", "b", "--format", "json")):
        proc = gitexp(repo, *args, check=False)
        no_crash(proc)
        warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
        if args[0] == "show" and args[1] == "b":
            assert warnings == []
        else:
            assert len(warnings) == 1, proc.stderr
            assert f"skipping the summary note of {shas['a'][:10]}" in warnings[0]
            assert f"git notes --ref=exps show {shas['a']}" in warnings[0]
    rows = {r["name"]: r for r in log_json(repo)}
    assert rows["b"]["status"] == "queued" and rows["b"]["params"] == {"lr": 0.5, "steps": 5}
    assert rows["a"]["status"] == "invalid" and rows["a"]["params"] == {}
    shown = gitexp(repo, "show", "a").stdout
    assert "status     invalid: its summary note is unusable" in shown


def test_bad_summary_of_a_finished_run_does_not_hide_the_others(repo: Path) -> None:
    gitexp(repo, "run", "config.yaml", "--name", "good")
    shas = queue_two(repo)
    set_note(repo, shas["b"], {"status": "finished", "metrics": {"val_err": {"best": "low", "count": 1}}})
    rows = {r["name"]: r for r in log_json(repo, "--sort", "val_err")}
    assert rows["good"]["status"] == "finished" and rows["b"]["status"] == "invalid"
    proc = gitexp(repo, "log", "--metric", "val_err", "--filter", "val_err<1")
    assert "good" in proc.stdout and "metrics 'val_err': best must be a number" in proc.stderr


def test_bad_details_and_history_notes_are_skipped(repo: Path) -> None:
    gitexp(repo, "run", "config.yaml")
    sha = log_json(repo)[0]["id"]
    set_note(repo, sha, {"facts": {"ram": "lots", "hostname": "h"}, "log_tail": "x"}, ref="exps-details")
    proc = gitexp(repo, "show", "toy", check=False)
    no_crash(proc)
    assert "skipping the details note of" in proc.stderr and "facts.ram must be a number" in proc.stderr
    good = {"step": 1, "time": 1.0, "loss": 0.5}
    lines = [json.dumps([1, 2]), "[" * 100000 + "]" * 100000, json.dumps({"step": 2, "loss": {"x": 1}}),
             json.dumps(good), '{"step": 3, "lo']  # the torn last line of a crash is no warning
    set_note(repo, sha, "\n".join(lines) + "\n", ref="exps-metrics")
    for fmt in ("json", "jsonl", "csv"):
        proc = gitexp(repo, "metrics", "toy", "--format", fmt, check=False)
        no_crash(proc)
        assert proc.stderr.count("warning: skipping bad records of the metric-history note") == 1
    assert json.loads(gitexp(repo, "metrics", "toy", "--format", "json").stdout) == [good]
    set_note(repo, sha, "[" * 100000 + "]" * 100000, ref="exps-details")
    no_crash(gitexp(repo, "show", "toy", "--format", "json", check=False))


def test_config_yaml_alias_bomb_in_a_commit_is_not_expanded(repo: Path) -> None:
    shas = queue_two(repo)
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(5))  # 10**6 values once expanded: past the limit, still cheap for old code
    blob = subprocess.run(["git", "hash-object", "-w", "--stdin"], cwd=repo, input=bomb.encode(),
                          capture_output=True, check=True).stdout.decode().strip()
    env = dict(os.environ, GIT_INDEX_FILE=str(repo.parent / "bomb-index"))
    subprocess.run(["git", "read-tree", shas["a"]], cwd=repo, env=env, check=True)
    subprocess.run(["git", "update-index", "--add", "--cacheinfo", f"100644,{blob},.gitexp/experiment.yaml"],
                   cwd=repo, env=env, check=True)
    tree = subprocess.run(["git", "write-tree"], cwd=repo, env=env, capture_output=True, check=True).stdout
    commit = subprocess.run(["git", "commit-tree", tree.decode().strip(), "-m", "bomb"], cwd=repo,
                            capture_output=True, check=True).stdout.decode().strip()
    git(repo, "update-ref", "refs/exps/bomb", commit)
    proc = gitexp(repo, "show", "bomb", "--format", "json", check=False, timeout=30)
    no_crash(proc)
    assert "skipping the config of" in proc.stderr and json.loads(proc.stdout)["config"] == {}


# -- item 8: Slurm job ids from notes never become options -----------------------------------------
class RecordingTransport(Transport):
    def __init__(self) -> None:
        super().__init__()
        self.calls: List[List[str]] = []

    def run(self, argv: Any, cwd: Any = None, input: Any = None, env: Any = None) -> subprocess.CompletedProcess:
        self.calls.append(list(argv))
        return subprocess.CompletedProcess(list(argv), 0, b"", b"")


@pytest.mark.parametrize("job", ["--user=root", "-u root", "123;rm", "12_3", "", None, ["1"], True, "1 2"])
def test_job_of_refuses_anything_but_a_job_id(job: Any) -> None:
    assert job_of({"slurm": {"job": job, "task": None}}) is None
    assert job_of({"slurm": {"job": "123", "task": "--signal=KILL"}}) is None
    assert job_of({"slurm": "x"}) is None


def test_scancel_gets_the_job_after_double_dash(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert job_of({"slurm": {"job": "4242", "task": 3}}) == JobRef("4242", 3)
    transport = RecordingTransport()
    from gitexp.notes import Store
    from gitexp.remotes import Remote
    from gitexp.repo import Repo

    r = Repo.discover(str(repo))
    runner = SlurmRunner(r, Store(r), Remote("c", "slurm"), transport)
    monkeypatch.setattr(runner, "_tool", lambda name: f"/fake/{name}")
    runner.scancel(JobRef("4242", 3))
    assert transport.calls == [["/fake/scancel", "--", "4242_3"]]


def test_cancel_with_a_hostile_job_id_runs_no_scancel(repo: Path, tmp_path: Path) -> None:
    shas = queue_two(repo)
    summary = note(repo, shas["a"])
    summary.update({"status": "running", "runner": "slurm", "slurm": {"job": "--user=root", "task": None}})
    set_note(repo, shas["a"], summary)
    fakebin = tmp_path / "fakebin"
    fakebin.mkdir()
    calls = tmp_path / "calls"
    for tool in ("scancel", "squeue", "scontrol"):
        (fakebin / tool).write_text(f"#!/bin/sh\necho {tool} \"$@\" >> {calls}\n")
        (fakebin / tool).chmod(0o755)
    # squeue says the "job" runs, so only the id check stands between the note and scancel
    (fakebin / "squeue").write_text("#!/bin/sh\necho '--user=root|--user=root|N/A|RUNNING|None'\n")
    env = {"PATH": f"{fakebin}:{os.environ['PATH']}"}
    proc = gitexp(repo, "cancel", "a", check=False, env=env)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert not calls.exists() or "scancel" not in calls.read_text()


# -- item 8: terminal escapes ------------------------------------------------------------------------
def test_control_characters_from_notes_are_escaped_on_the_terminal(repo: Path) -> None:
    shas = queue_two(repo)
    evil = "\x1b]0;pwned\x07\x1b[31mred\x9b2J"
    summary = note(repo, shas["a"])
    summary["params"]["evil"] = evil
    summary["group"] = "g\x1b[1m"
    summary["metrics"] = {"l\x1bss": {"best": 0.5, "last": 0.5, "count": 1, "goal": "minimize"}}
    summary["checkpoints"] = [{"path": "/x\x1b[2J", "host": "h\r", "step": 1, "size": 10}]
    set_note(repo, shas["a"], summary)
    set_note(repo, shas["a"], {"log_tail": "line\x1b[2Jone\nline\ttwo\r"}, ref="exps-details")
    for args in (("log",), ("log", "--metric", "l\x1bss"), ("queue",), ("show", "a"), ("logs", "a"),
                 ("diff", "a", "b")):
        out = gitexp(repo, *args).stdout
        assert not any(ch in out for ch in "\x1b\x07\x9b\r\t"), (args, out)
    assert "\\x1b[31mred\\x9b2J" in gitexp(repo, "log").stdout
    assert "line\\x1b[2Jone\n  line\\x09two" in gitexp(repo, "show", "a").stdout
    assert "line\\x1b[2Jone\nline\\x09two\\x0d" in gitexp(repo, "logs", "a").stdout
    # csv and json keep the value whole
    rows = {r["name"]: r for r in log_json(repo)}
    assert rows["a"]["params"]["evil"] == evil
    text = gitexp(repo, "log", "--format", "csv").stdout
    assert [r["evil"] for r in csv.DictReader(io.StringIO(text)) if r["name"] == "a"] == [evil]


# -- item 16: branch names, long cells, NaN, checkpoint shapes ---------------------------------------
def test_branch_accepts_full_ref_name_and_refuses_ambiguous_names(repo: Path) -> None:
    shas = queue_two(repo)
    gitexp(repo, "branch", "a", "refs/heads/x")
    assert git(repo, "rev-parse", "refs/heads/x").strip() == shas["a"]
    assert "refs/heads/refs/" not in all_refs(repo)
    git(repo, "tag", "v1")
    git(repo, "update-ref", "refs/remotes/origin/main", "HEAD")
    for name in ("v1", "refs/tags/v2", "refs/heads/refs/heads/y", "origin/main", "HEAD", "-x", "a..b",
                 "x/y", "0" * 40, ""):
        proc = gitexp(repo, "branch", "--", "a", name, check=False)
        assert proc.returncode == 2 and proc.stderr.startswith("error: "), (name, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1
    assert git(repo, "for-each-ref", "refs/heads/").count("\n") == 2  # main and x only


def test_long_values_are_cut_in_tables_and_whole_in_csv_and_json(repo: Path) -> None:
    shas = queue_two(repo)
    summary = note(repo, shas["a"])
    summary["params"]["big"] = "z" * 300_000
    set_note(repo, shas["a"], summary)
    for args in (("log",), ("queue",)):
        lines = gitexp(repo, *args).stdout.splitlines()
        assert max(len(line) for line in lines) < 400 and any("…" in line for line in lines)
    assert "z" * 300_000 in gitexp(repo, "log", "--format", "csv").stdout
    assert {r["name"]: r for r in log_json(repo)}["a"]["params"]["big"] == "z" * 300_000


def test_json_outputs_never_hold_nan_or_infinity(repo: Path) -> None:
    gitexp(repo, "run", "config.yaml")
    sha = log_json(repo)[0]["id"]
    summary = note(repo, sha)
    summary["metrics"]["val_err"].update({"best": float("nan"), "last": float("inf")})
    summary["params"]["lr"] = float("-inf")
    set_note(repo, sha, json.dumps(summary))
    history = "".join(json.dumps(r) + "\n" for r in ({"step": 1, "loss": float("nan")}, {"step": 2, "loss": 1.0}))
    set_note(repo, sha, history, ref="exps-metrics")
    row = strict_json(gitexp(repo, "log", "--format", "json").stdout)[0]
    assert row["metrics"]["val_err"]["best"] is None and row["params"]["lr"] is None
    strict_json(gitexp(repo, "show", "toy", "--format", "json").stdout)
    strict_json(gitexp(repo, "queue", "--format", "json").stdout)
    assert strict_json(gitexp(repo, "metrics", "toy", "--format", "json").stdout)[0]["loss"] is None
    for line in gitexp(repo, "metrics", "toy", "--format", "jsonl").stdout.splitlines():
        strict_json(line)


def test_show_tolerates_any_checkpoint_record(repo: Path) -> None:
    shas = queue_two(repo)
    summary = note(repo, shas["a"])
    summary["checkpoints"] = [{"path": "p", "size": "x"}, {"size": -5, "step": [1]}, {}, {"size": 10 ** 30},
                              {"deep": json.loads("[" * 500 + "]" * 500)}]
    set_note(repo, shas["a"], summary)
    proc = gitexp(repo, "show", "a", check=False)
    no_crash(proc)
    assert "checkpoints:" in proc.stdout and "step" in proc.stdout
    no_crash(gitexp(repo, "show", "a", "--format", "json", check=False))


# -- item 2: apply -----------------------------------------------------------------------------------
def test_apply_never_deletes_files_the_experiment_does_not_contain(repo: Path) -> None:
    (repo / "a.py").write_text("experiment's a\n")
    (repo / "train.py").write_text((repo / "train.py").read_text() + "# variant\n")
    gitexp(repo, "run", "config.yaml", "--queue", "--name", "variant")
    git(repo, "checkout", "--", "train.py")
    (repo / "a.py").write_text("my a\n")                 # untracked and different
    (repo / "notes.txt").write_text("keep me\n")         # untracked, not in the experiment
    (repo / "train.py").write_text((repo / "train.py").read_text() + "# mine\n")  # uncommitted edit
    head, index = git(repo, "rev-parse", "HEAD"), git(repo, "ls-files", "-s")
    proc = gitexp(repo, "apply", "variant", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("error: apply would overwrite 2 file(s) with uncommitted changes: a.py, "
                                   "train.py (commit or stash them, or pass --force)")
    assert (repo / "a.py").read_text() == "my a\n" and "# mine" in (repo / "train.py").read_text()
    out = gitexp(repo, "apply", "variant", "--force").stdout
    assert (repo / "notes.txt").read_text() == "keep me\n"
    assert (repo / "a.py").read_text() == "experiment's a\n"
    assert "# variant" in (repo / "train.py").read_text() and "# mine" not in (repo / "train.py").read_text()
    assert not (repo / ".gitexp").exists()
    assert "notes.txt" in out and "left 1 file(s)" in out
    assert git(repo, "rev-parse", "HEAD") == head and git(repo, "ls-files", "-s") == index


def test_apply_clean_tree_writes_without_force_and_keeps_new_committed_files(repo: Path) -> None:
    (repo / "train.py").write_text((repo / "train.py").read_text() + "# variant\n")
    gitexp(repo, "run", "config.yaml", "--queue", "--name", "variant")
    git(repo, "checkout", "--", "train.py")
    (repo / "extra.py").write_text("committed later\n")
    git(repo, "add", "extra.py")
    git(repo, "commit", "-q", "-m", "extra")
    gitexp(repo, "apply", "variant")
    assert "# variant" in (repo / "train.py").read_text() and (repo / "extra.py").exists()
    again = gitexp(repo, "apply", "variant")
    assert again.returncode == 0 and "already has the files" in again.stdout


def test_apply_refuses_to_write_through_a_symlink_or_over_a_directory(repo: Path, tmp_path: Path) -> None:
    (repo / "sub").mkdir()
    (repo / "sub" / "f.txt").write_text("in the experiment\n")
    gitexp(repo, "run", "config.yaml", "--queue", "--name", "withsub")
    outside = tmp_path / "outside"
    outside.mkdir()
    (repo / "sub" / "f.txt").unlink()
    (repo / "sub").rmdir()
    (repo / "sub").symlink_to(outside)
    proc = gitexp(repo, "apply", "withsub", "--force", check=False)
    assert proc.returncode == 2 and "symbolic link sub" in proc.stderr
    assert list(outside.iterdir()) == []


# -- item 16/13: rm --force stops the run --------------------------------------------------------------
def test_rm_force_stops_a_running_experiment(repo: Path) -> None:
    (repo / "sleep.yaml").write_text("name: sleeper\ncommand: sleep 60\n")
    gitexp(repo, "run", "sleep.yaml", "--detach")
    row = wait_for(lambda: [r for r in log_json(repo) if r["status"] == "running"], timeout=60)[0]
    pid = note(repo, row["id"])["pid"]
    assert psutil.pid_exists(pid)
    out = gitexp(repo, "rm", "--force", "sleeper").stdout
    assert "stopped its executor" in out
    wait_for(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE,
             timeout=20)
    assert "refs/exps/sleeper" not in all_refs(repo)


def test_cancel_and_rm_never_signal_a_process_a_note_names(repo: Path) -> None:
    victim = subprocess.Popen(["sleep", "60"])
    try:
        shas = queue_two(repo)
        git(repo, "update-ref", "-d", f"refs/exps-queue/{shas['a']}")
        summary = note(repo, shas["a"])
        summary.update({"status": "running", "runner": "local", "host": __import__("socket").gethostname(),
                        "pid": victim.pid, "pid_started": psutil.Process(victim.pid).create_time()})
        set_note(repo, shas["a"], summary)
        proc = gitexp(repo, "cancel", "a", check=False)
        assert proc.returncode != 0 and "nothing was signalled" in proc.stderr
        out = gitexp(repo, "rm", "--force", "a").stdout
        assert "nothing to stop" in out
        assert victim.poll() is None
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.wait()
