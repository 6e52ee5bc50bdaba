"""Hostile inputs to the executor, worker and queue (issue #7): nothing may hang, leak or lie."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import psutil
import pytest

from conftest import git, gitexp, log_json, wait_for

REDOS = "(a+)+$"  # exponential backtracking on 'aaa...ab'


def run_dir(repo: Path, sha: str) -> Path:
    return repo / ".git" / "gitexp" / "runs" / sha


def note(repo: Path, sha: str, ref: str = "exps") -> Optional[Dict[str, Any]]:
    proc = subprocess.run(["git", "notes", f"--ref={ref}", "show", sha], cwd=repo, capture_output=True, text=True)
    return json.loads(proc.stdout) if proc.returncode == 0 else None


def kill_tree(pid: int) -> None:
    """SIGKILL a process and everything it started (cleanup of a test that failed)."""
    try:
        proc = psutil.Process(pid)
        procs = [proc] + proc.children(recursive=True)
    except psutil.Error:
        return
    for p in procs:
        try:
            p.kill()
        except psutil.Error:
            pass


def rows_by_name(repo: Path) -> Dict[str, Dict[str, Any]]:
    return {r["name"]: r for r in log_json(repo)}


# -- item 10: a metric regex cannot make a run unkillable or stall it ----------------------------
def test_redos_metric_regex_cannot_make_a_run_unkillable(repo: Path) -> None:
    (repo / "redos.py").write_text("import time\nprint('a' * 5000 + 'b', flush=True)\n"
                                   "print('ready', flush=True)\ntime.sleep(300)\n")
    (repo / "redos.yaml").write_text(f"command: python redos.py\nmetrics:\n  bad: {{regex: '{REDOS}'}}\n")
    proc = subprocess.Popen([sys.executable, "-m", "gitexp", "run", "redos.yaml"], cwd=repo,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        sha = wait_for(lambda: log_json(repo) and log_json(repo)[0]["id"])
        log = run_dir(repo, sha) / "output.log"
        wait_for(lambda: log.exists() and b"ready" in log.read_bytes())
        time.sleep(1.0)  # the executor is now matching the 'aaa...ab' line (for ever, unbounded)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        kill_tree(proc.pid)
    assert proc.returncode == 130  # a stopped foreground run exits 130 (docs/runners.md)
    assert log_json(repo)[0]["status"] == "killed"


def test_pathological_regex_is_turned_off_and_the_run_still_finishes(repo: Path) -> None:
    (repo / "slow.py").write_text("print('a' * 5000 + 'b')\nprint('acc=0.5')\nprint('a' * 3000 + 'b')\n")
    (repo / "slow.yaml").write_text(textwrap.dedent(f"""\
        command: python slow.py
        metrics:
          bad: {{regex: '{REDOS}'}}
          acc: {{regex: 'acc=([0-9.]+)', goal: maximize}}
        """))
    proc = gitexp(repo, "run", "slow.yaml", timeout=120)
    [row] = log_json(repo)
    assert row["status"] == "finished"
    assert row["metrics"]["acc"]["best"] == 0.5  # the other regexes keep working
    assert "regex capture of 'bad' is off" in proc.stderr
    assert b"regex capture of 'bad' is off" in (run_dir(repo, row["id"]) / "output.log").read_bytes()


# -- item 11: long lines are linear and the tail is bounded --------------------------------------
def test_huge_line_without_newline_is_logged_whole_and_the_tail_is_bounded(repo: Path) -> None:
    size = 32 << 20
    (repo / "big.py").write_text(textwrap.dedent(f"""\
        import sys
        for i in range(200):
            print(str(i) + 'y' * 10000)
        sys.stdout.write('x' * {size})
        sys.stdout.flush()
        """))
    (repo / "big.yaml").write_text("command: python big.py\nmetrics:\n  m: {regex: 'm=([0-9]+)'}\n")
    gitexp(repo, "run", "big.yaml", timeout=600)
    [row] = log_json(repo)
    assert row["status"] == "finished"
    data = (run_dir(repo, row["id"]) / "output.log").read_bytes()
    assert data.endswith(b"y" * 10000 + b"\n" + b"x" * size)  # every byte is in output.log
    tail = note(repo, row["id"], "exps-details")["log_tail"]
    assert len(json.dumps(tail)) <= 64 * 1024
    assert tail.splitlines()[-1].startswith("x" * 100) and "more bytes" in tail.splitlines()[-1]
    assert "199" + "y" * 100 in tail  # the last lines, cut, are kept


# -- item 12: files entries ---------------------------------------------------------------------
def test_files_with_trailing_slash_and_a_tracked_directory_of_the_same_name(repo: Path) -> None:
    (repo / ".gitignore").write_text("data/big.bin\nextra/\n")
    (repo / "data").mkdir()
    (repo / "data" / "README").write_text("tracked readme\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "data readme")
    (repo / "data" / "big.bin").write_text("ignored payload\n")
    (repo / "extra").mkdir()
    (repo / "extra" / "x.txt").write_text("extra file\n")
    (repo / "uses.yaml").write_text("command: cat data/README data/big.bin extra/x.txt\nfiles: [data/, extra/]\n")
    proc = gitexp(repo, "run", "uses.yaml")
    for text in ("tracked readme", "ignored payload", "extra file"):
        assert text in proc.stdout
    [row] = log_json(repo)
    assert row["status"] == "finished"
    assert not (run_dir(repo, row["id"]) / "wt").exists()


def test_files_entry_linked_through_a_symlink_out_of_the_run_directory_is_refused(repo: Path, tmp_path: Path) -> None:
    os.symlink("..", repo / "up")  # a tracked symlink: wt/up is the run directory
    git(repo, "add", "up")
    git(repo, "commit", "-q", "-m", "symlink")
    (tmp_path / "secret").write_text("outside\n")  # repo/up/secret exists
    (repo / "esc.yaml").write_text("command: echo program-ran\nfiles: [up/secret]\n")
    proc = gitexp(repo, "run", "esc.yaml", check=False)
    assert "program-ran" not in proc.stdout
    rows = log_json(repo)
    if proc.returncode == 2 and not rows:
        return  # the config validator refused it before anything was recorded: also fine
    [row] = rows
    assert row["status"] == "failed" and "outside the run's directory" in (row["reason"] or "")
    assert not os.path.lexists(run_dir(repo, row["id"]) / "secret")
    assert not (run_dir(repo, row["id"]) / "wt").exists()


def test_any_executor_error_records_failed_with_reason_and_removes_the_worktree(
        repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gitexp import experiments
    from gitexp.config import load_config
    from gitexp.errors import GitExpError
    from gitexp.executor import Executor
    from gitexp.notes import Store
    from gitexp.repo import Repo

    monkeypatch.chdir(repo)
    r = Repo.discover(str(repo))
    store = Store(r)
    exp = experiments.create(r, store, load_config(str(repo / "config.yaml")))

    def broken(self: Any) -> None:
        assert os.path.isdir(self.paths.worktree)
        raise RuntimeError("boom")

    monkeypatch.setattr(Executor, "_start_program", broken)
    with pytest.raises(GitExpError) as caught:
        Executor(r, store, exp.sha).execute()
    assert "RuntimeError: boom" in str(caught.value)
    summary = store.summary(exp.sha)
    assert summary["status"] == "failed" and "RuntimeError: boom" in summary["reason"]
    assert not (run_dir(repo, exp.sha) / "wt").exists()
    assert b"Traceback" in (run_dir(repo, exp.sha) / "output.log").read_bytes()


# -- item 13: a crash between recording and starting; rm --force while running ------------------
def test_executor_killed_before_the_program_started_is_lost_and_retryable(repo: Path, tmp_path: Path) -> None:
    # A fake nvidia-smi: the first call (the run command's check) answers, later ones (the
    # executor's preflight) hang, so the executor is caught before it starts the program.
    bindir = tmp_path / "bin"
    bindir.mkdir()
    flag = tmp_path / "asked-once"
    (bindir / "nvidia-smi").write_text(f"#!/bin/sh\nif [ -e {flag} ]; then sleep 120; fi\ntouch {flag}\necho 80000\n")
    (bindir / "nvidia-smi").chmod(0o755)
    (repo / "gpu.yaml").write_text("command: echo program-ran\nrequires: {gpus: 1}\n")
    env = {"PATH": f"{bindir}:{os.environ['PATH']}"}
    sha = gitexp(repo, "run", "gpu.yaml", "--detach", env=env).stdout.strip()
    info_path = run_dir(repo, sha) / "exec.json"
    wait_for(lambda: info_path.exists() and log_json(repo)[0]["status"] == "starting")
    pid = json.loads(info_path.read_text())["pid"]
    os.killpg(pid, signal.SIGKILL)  # the executor and its hanging nvidia-smi
    wait_for(lambda: log_json(repo)[0]["status"] == "lost", timeout=30)
    gitexp(repo, "queue", "retry", "gpu")
    assert log_json(repo)[0]["status"] == "queued"


def test_rm_force_of_a_running_experiment_is_never_recreated(repo: Path) -> None:
    (repo / "long.yaml").write_text("command: sleep 40\n")
    sha = gitexp(repo, "run", "long.yaml", "--detach").stdout.strip()
    row = wait_for(lambda: [r for r in log_json(repo) if r["status"] == "running"])[0]
    executor = psutil.Process(note(repo, sha)["pid"])
    program = executor.children(recursive=True)
    try:
        gitexp(repo, "rm", "--force", "long")
        executor.wait(timeout=60)  # it notices, stops its program and exits
    finally:
        for p in [executor] + program:
            try:
                p.kill()
            except psutil.Error:
                pass
    assert row["id"] == sha
    for ref in ("exps", "exps-metrics", "exps-details"):
        assert note(repo, sha, ref) is None
    assert git(repo, "for-each-ref", "refs/exps/") == ""
    assert not run_dir(repo, sha).exists()


# -- item 16: bad settings, bad checkpoints, requirements that can never be met ------------------
def test_bad_kill_grace_and_notes_interval_fall_back_with_a_warning(repo: Path) -> None:
    (repo / "sleep.yaml").write_text("command: echo started; sleep 60\n")
    env = {**os.environ, "GITEXP_KILL_GRACE": "abc", "GITEXP_NOTES_INTERVAL": "-5"}
    proc = subprocess.Popen([sys.executable, "-m", "gitexp", "run", "sleep.yaml"], cwd=repo, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: log_json(repo) and log_json(repo)[0]["status"] == "running")
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
    finally:
        kill_tree(proc.pid)
    assert proc.returncode == 130
    assert log_json(repo)[0]["status"] == "killed"
    assert "GITEXP_KILL_GRACE='abc'" in err and "GITEXP_NOTES_INTERVAL='-5'" in err
    assert "using the default" in err and "Traceback" not in err


def test_checkpoint_rejects_bad_values_and_malformed_records_are_sanitised(repo: Path) -> None:
    (repo / "ckpt.py").write_text(textwrap.dedent("""\
        import json, os
        import gitexp
        open("m.bin", "wb").write(b"0123456789")
        for kwargs in ({"size": "x"}, {"step": "one"}, {"size": -1}):
            try:
                gitexp.checkpoint("m.bin", **kwargs)
            except (TypeError, ValueError) as exc:
                print("rejected:", exc)
        gitexp.checkpoint("m.bin", step=2)
        with open(os.environ["GITEXP_CHECKPOINTS_FILE"], "a") as handle:
            handle.write(json.dumps({"path": "/x", "step": "abc", "size": "x", "time": "t"}) + "\\n")
            handle.write(json.dumps({"path": 5, "size": 1}) + "\\n")
        """))
    (repo / "ckpt.yaml").write_text("command: python ckpt.py\n")
    proc = gitexp(repo, "run", "ckpt.yaml")
    assert proc.stdout.count("rejected:") == 3
    shown = json.loads(gitexp(repo, "show", "ckpt", "--format", "json").stdout)
    assert shown["status"] == "finished"
    gitexp(repo, "show", "ckpt")  # the table form reads them too
    checkpoints = note(repo, shown["id"])["checkpoints"]
    assert [c["path"].endswith("m.bin") for c in checkpoints] == [True, False]
    assert [(c["step"], c["size"], c["time"] is None) for c in checkpoints] == [(2, 10, False), (None, None, True)]


def test_sweep_that_can_never_fit_fails_with_reason_instead_of_hanging(repo: Path) -> None:
    (repo / "huge.yaml").write_text("command: echo never\nrequires: {ram: 100TB}\nparams: {lr: 1}\n")
    proc = gitexp(repo, "run", "huge.yaml", "--sweep", "lr=1,2", check=False, timeout=120)
    assert proc.returncode == 3
    assert "requires.ram 100.0TB exceeds this machine's" in proc.stderr
    rows = log_json(repo)
    assert len(rows) == 2 and {r["status"] for r in rows} == {"failed"}
    assert all("requires.ram" in r["reason"] for r in rows)
    assert git(repo, "for-each-ref", "refs/exps-queue/") == ""


# -- item 5 (worker half): no queue entry can hang a worker -------------------------------------
def craft_queued_experiment(repo: Path, name: str, config_text: str) -> str:
    """A queued experiment made with plumbing only, whose stored config is ``config_text``."""
    def plumb(*args: str, stdin: str = "", env: Optional[Dict[str, str]] = None) -> str:
        out = subprocess.run(["git", *args], cwd=repo, input=stdin, capture_output=True, text=True,
                             env={**os.environ, **(env or {})}, check=True)
        return out.stdout.strip()

    blob = plumb("hash-object", "-w", "--stdin", stdin=config_text)
    index = {"GIT_INDEX_FILE": str(repo / ".git" / "crafted-index")}
    plumb("read-tree", "HEAD", env=index)
    plumb("update-index", "--add", "--cacheinfo", f"100644,{blob},.gitexp/experiment.yaml", env=index)
    tree = plumb("write-tree", env=index)
    sha = plumb("commit-tree", tree, "-p", "HEAD", "-m", f"exp: {name}")
    summary = {"name": name, "status": "queued", "queue": {"priority": 0, "enqueued": 1.0, "seq": 0}}
    plumb("update-ref", f"refs/exps/{name}", sha)
    plumb("notes", "--ref=exps", "add", "-m", json.dumps(summary), sha)
    plumb("update-ref", f"refs/exps-queue/{sha}", sha)
    return sha


@pytest.mark.parametrize("config_text", ["name: [unclosed\n", "name: \u00e9\ncommand: echo hi\n",
                                         "just a string\n"])
def test_queued_experiment_with_an_unreadable_config_fails_instead_of_hanging_the_worker(
        repo: Path, config_text: str) -> None:
    bad = craft_queued_experiment(repo, "bad", config_text)
    gitexp(repo, "run", "config.yaml", "-p", "steps=1", "--queue", "--name", "good")
    proc = gitexp(repo, "worker", "--until-empty", check=False, timeout=120)
    rows = rows_by_name(repo)
    assert rows["good"]["status"] == "finished"
    assert rows["bad"]["status"] == "failed" and "config" in rows["bad"]["reason"]
    assert "bad" in proc.stderr and "failed" in proc.stderr
    assert git(repo, "for-each-ref", "refs/exps-queue/") == ""
    assert note(repo, bad)["status"] == "failed"


# -- item 17: disk use ------------------------------------------------------------------------
def test_package_cache_keeps_only_a_few_entries(tmp_path: Path) -> None:
    from gitexp import facts

    cache = Path(os.path.expanduser("~")) / ".cache" / "gitexp"
    cache.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for i in range(10):
        old = cache / f"packages-old{i:02d}.json"
        old.write_text("[]")
        os.utime(old, (now - 1000 - i, now - 1000 - i))
    packages = facts.installed_packages()
    assert packages
    left = sorted(p.name for p in cache.glob("packages-*.json"))
    assert len(left) <= 4
    assert "packages-old00.json" in left and "packages-old09.json" not in left  # newest kept
    assert facts.installed_packages() == packages  # the fresh entry is one of those kept



@pytest.mark.parametrize("first_on_path", ["cwd", "script_dir"])
def test_package_list_is_not_rescanned_when_files_appear_in_the_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, first_on_path: str) -> None:
    from gitexp import facts

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work if first_on_path == "cwd" else tmp_path)
    # sys.path[0]: the working directory under `python -m gitexp`, the script's directory
    # (a busy one such as /tmp) when gitexp runs from a script there
    monkeypatch.setattr(sys, "path", [str(work), *sys.path])
    scans: List[int] = []
    scan = facts._scan_packages
    monkeypatch.setattr(facts, "_scan_packages", lambda: scans.append(1) or scan())
    first = facts.installed_packages()
    (work / "checkpoint.pt").write_text("x")  # the working directory's mtime changes
    os.utime(work, (time.time() + 5, time.time() + 5))
    assert facts.installed_packages() == first
    assert len(scans) <= 1  # read from the cache the second time

def test_worktrees_of_dead_runs_are_swept_and_live_ones_kept(repo: Path) -> None:
    runs = repo / ".git" / "gitexp" / "runs"
    finished = subprocess.Popen(["true"])
    finished.wait()
    me = psutil.Process()
    cases = {
        "d" * 40: {"pid": finished.pid, "pid_started": 1.0, "host": socket.gethostname()},
        "e" * 40: {"pid": me.pid, "pid_started": me.create_time(), "host": socket.gethostname()},
        "f" * 40: {"pid": finished.pid, "pid_started": 1.0, "host": "another-machine"},
    }
    for sha, info in cases.items():
        (runs / sha / "wt").mkdir(parents=True)
        (runs / sha / "wt" / "copy.py").write_text("# a full copy of the tree\n")
        (runs / sha / "out").mkdir()
        (runs / sha / "out" / "model.bin").write_text("weights\n")
        (runs / sha / "exec.json").write_text(json.dumps({**info, "child": None}))
    gitexp(repo, "run", "config.yaml", "-p", "steps=1")
    [row] = log_json(repo)
    assert not (runs / row["id"] / "wt").exists()  # its own, at its end
    assert not (runs / ("d" * 40) / "wt").exists()  # dead executor on this host
    assert (runs / ("d" * 40) / "out" / "model.bin").exists()  # outputs stay
    assert (runs / ("e" * 40) / "wt" / "copy.py").exists()  # live executor
    assert (runs / ("f" * 40) / "wt" / "copy.py").exists()  # another machine's run


def test_worktree_is_removed_when_the_run_is_stopped_and_out_stays(repo: Path) -> None:
    (repo / "sleep.yaml").write_text("command: echo started; sleep 60\n")
    proc = subprocess.Popen([sys.executable, "-m", "gitexp", "run", "sleep.yaml"], cwd=repo,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        row = wait_for(lambda: [r for r in log_json(repo) if r["status"] == "running"])[0]
        assert (run_dir(repo, row["id"]) / "wt").exists()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        kill_tree(proc.pid)
    assert log_json(repo)[0]["status"] == "killed"
    assert not (run_dir(repo, row["id"]) / "wt").exists()
    assert (run_dir(repo, row["id"]) / "out").is_dir()
