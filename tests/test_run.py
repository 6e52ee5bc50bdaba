"""git exp run on the local machine: records, metrics, the user's tree untouched, failures, signals."""
from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import all_refs, assert_fsck_clean, git, gitexp, log_json, wait_for


def tree_state(repo: Path) -> dict:
    """Everything a user could notice: index bytes, HEAD, branches, every file's bytes."""
    files = {}
    for path in sorted(repo.rglob("*")):
        if ".git" in path.relative_to(repo).parts or not path.is_file():
            continue
        files[str(path.relative_to(repo))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return {
        "index": hashlib.sha256((repo / ".git" / "index").read_bytes()).hexdigest(),
        "HEAD": (repo / ".git" / "HEAD").read_text(),
        "head_sha": git(repo, "rev-parse", "HEAD"),
        "branches": git(repo, "for-each-ref", "refs/heads"),
        "status": git(repo, "status", "--porcelain"),
        "files": files,
    }


def test_run_records_finished_experiment_with_metrics(repo: Path) -> None:
    proc = gitexp(repo, "run", "config.yaml")
    assert "step 5 acc=" in proc.stdout  # output streamed
    [row] = log_json(repo)
    assert row["status"] == "finished" and row["exit_code"] == 0
    assert row["name"] == "toy" and row["group"] == "g1"
    assert row["params"] == {"lr": 0.5, "steps": 5}
    val_err = row["metrics"]["val_err"]
    assert val_err["best"] == 1.0 / (1 + 0.5 * 5) and val_err["best_step"] == 5 and val_err["count"] == 5
    assert row["metrics"]["acc"]["best"] == round(1 - 1.0 / 3.5, 4)  # regex capture, maximize
    history = json.loads(gitexp(repo, "metrics", row["id"][:8], "--format", "json").stdout)
    assert [r["step"] for r in history] == [1, 2, 3, 4, 5]
    assert {"val_err", "loss", "acc", "time"} <= set(history[2])  # API and regex merged per step
    # readable with plain git
    note = json.loads(git(repo, "notes", "--ref=exps", "show", row["id"]))
    assert note["status"] == "finished"


def test_run_leaves_worktree_index_head_untouched(repo: Path) -> None:
    (repo / "train.py").write_text((repo / "train.py").read_text() + "# uncommitted edit\n")
    (repo / "notes.txt").write_text("untracked file\n")
    git(repo, "add", "notes.txt")
    (repo / "notes.txt").write_text("untracked file, edited after add\n")
    (repo / "new.txt").write_text("brand new\n")
    before = tree_state(repo)
    gitexp(repo, "run", "config.yaml", "-p", "steps=2")
    assert tree_state(repo) == before
    sha = log_json(repo)[0]["id"]
    assert git(repo, "rev-parse", f"{sha}^").strip() == before["head_sha"].strip()
    assert "# uncommitted edit" in git(repo, "show", f"{sha}:train.py")
    assert git(repo, "show", f"{sha}:notes.txt") == "untracked file, edited after add\n"
    assert git(repo, "show", f"{sha}:new.txt") == "brand new\n"
    assert "steps: 2" in git(repo, "show", f"{sha}:.gitexp/experiment.yaml")
    assert git(repo, "rev-parse", "refs/exps/toy").strip() == sha
    assert_fsck_clean(repo)


def test_repeated_name_gets_suffix(repo: Path) -> None:
    gitexp(repo, "run", "config.yaml", "-p", "steps=1")
    gitexp(repo, "run", "config.yaml", "-p", "steps=1")
    names = sorted(r["name"] for r in log_json(repo))
    assert names == ["toy", "toy-2"]


def test_param_values_cannot_run_commands(repo: Path) -> None:
    (repo / "echo.yaml").write_text("command: echo {msg}\nparams:\n  msg: hi\n")
    marker = repo / "pwned"
    proc = gitexp(repo, "run", "echo.yaml", "-p", f"msg=$(touch {marker}); touch {marker}")
    assert not marker.exists()
    assert f"$(touch {marker}); touch {marker}" in proc.stdout


def test_failed_program_exits_with_its_code_and_records_tail(repo: Path) -> None:
    (repo / "fail.yaml").write_text("command: echo about to fail; echo boom >&2; exit 7\n")
    proc = gitexp(repo, "run", "fail.yaml", check=False)
    assert proc.returncode == 7
    [row] = log_json(repo)
    assert row["status"] == "failed" and row["exit_code"] == 7
    shown = gitexp(repo, "show", "fail").stdout
    assert "exit code 7" in shown and "boom" in shown


def test_detach_returns_at_once_and_logs_follow(repo: Path) -> None:
    # the program waits for a file the test writes only after --detach returned: no wall-clock
    # bound (shared machines are noisy), and it cannot have finished before the command returned
    go = repo.parent / "go"
    (repo / "slow.yaml").write_text(f"command: while [ ! -e {go} ]; do sleep 0.05; done; "
                                    "for i in 1 2 3; do echo tick $i; sleep 0.5; done\n")
    proc = gitexp(repo, "run", "slow.yaml", "--detach")
    sha = proc.stdout.strip()
    assert len(sha) == 40
    assert [r["status"] for r in log_json(repo)] != ["finished"]
    go.write_text("")
    followed = gitexp(repo, "logs", "-f", sha[:8], timeout=60).stdout
    assert "tick 3" in followed
    row = wait_for(lambda: [r for r in log_json(repo) if r["status"] == "finished"])[0]
    assert row["id"] == sha


def test_ctrl_c_stops_program_and_records_killed(repo: Path) -> None:
    pidfile = repo / "child.pid"
    (repo / "sleep.yaml").write_text(f"command: echo $$ > {pidfile}; sleep 60\n")
    proc = subprocess.Popen([sys.executable, "-m", "gitexp", "run", "sleep.yaml"], cwd=repo,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip())
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)
    assert proc.returncode == 130
    [row] = log_json(repo)
    assert row["status"] == "killed"
    child = int(pidfile.read_text())
    wait_for(lambda: not os.path.exists(f"/proc/{child}"), timeout=10)


def test_dead_background_executor_is_shown_lost(repo: Path) -> None:
    (repo / "long.yaml").write_text("command: sleep 120\n")
    gitexp(repo, "run", "long.yaml", "--detach")
    row = wait_for(lambda: [r for r in log_json(repo) if r["status"] == "running"])[0]
    note = json.loads(git(repo, "notes", "--ref=exps", "show", row["id"]))
    import psutil

    program = psutil.Process(note["pid"]).children(recursive=True)
    os.kill(note["pid"], signal.SIGKILL)
    time.sleep(0.5)
    # Its program lives on: not lost (a retry would start a second copy beside it).
    assert log_json(repo)[0]["status"] == "running"
    for child in program:  # the orphaned program, and nothing else
        child.kill()
    wait_for(lambda: log_json(repo)[0]["status"] == "lost", timeout=10)


def test_not_enough_disk_refuses_with_numbers_and_writes_nothing(repo: Path) -> None:
    (repo / "big.yaml").write_text("command: echo should-not-run\nrequires:\n  disk: 900TB\n")
    before = all_refs(repo)
    proc = gitexp(repo, "run", "big.yaml", check=False)
    assert proc.returncode == 3
    # where, how much is free (in the unit that suits it) and how much is required, in one line
    assert re.fullmatch(rf"error: not started: not enough free disk at {re.escape(str(repo))}/\S*: "
                        r"\d+(\.\d+)?[KMGT]?B free, 900\.0TB required \(.*\)\n", proc.stderr), proc.stderr
    assert "should-not-run" not in proc.stdout
    assert all_refs(repo) == before


def test_outputs_dir_env_and_show_lists_outputs(repo: Path) -> None:
    (repo / "out.yaml").write_text(
        "command: echo weights > {outdir}/model.bin && test \"$GITEXP_OUTPUT_DIR\" = {outdir}\n")
    gitexp(repo, "run", "out.yaml")
    data = json.loads(gitexp(repo, "show", "out", "--format", "json").stdout)
    assert data["status"] == "finished"
    assert [o["path"] for o in data["outputs"]] == ["model.bin"]
    assert data["facts"]["python"] and data["facts"]["git"].startswith("git version")
    assert data["facts"]["packages"] and data["facts"]["cpus"] >= 1
    assert data["config"]["command"].startswith("echo weights")


def test_files_are_linked_not_committed(repo: Path) -> None:
    (repo / ".gitignore").write_text("data/\n")
    (repo / "data").mkdir()
    (repo / "data" / "train.csv").write_text("1,2,3\n")
    (repo / "uses.yaml").write_text("command: cat data/train.csv\nfiles: [data]\n")
    proc = gitexp(repo, "run", "uses.yaml")
    assert "1,2,3" in proc.stdout
    sha = log_json(repo)[0]["id"]
    assert "data/train.csv" not in git(repo, "ls-tree", "-r", "--name-only", sha)


def test_python_api_is_a_noop_outside_gitexp(tmp_path: Path) -> None:
    script = tmp_path / "s.py"
    script.write_text("import gitexp\nfor i in range(3): gitexp.log(step=i, x=i)\n"
                      "print(gitexp.checkpoint('nothing', step=1))\n")
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "None"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.py"]


def test_progress_notes_are_written_while_running(repo: Path) -> None:
    (repo / "prog.py").write_text(
        "import gitexp, time\nfor i in range(40):\n    gitexp.log(step=i, val_err=1/(i+1))\n    time.sleep(0.25)\n")
    (repo / "prog.yaml").write_text("command: python prog.py\nmetrics:\n  val_err: {goal: minimize}\n")
    proc = subprocess.Popen([sys.executable, "-m", "gitexp", "run", "prog.yaml"], cwd=repo,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "GITEXP_NOTES_INTERVAL": "1"})
    try:
        def progress() -> bool:  # the note itself, not log (which reads a running run's own files)
            rows = log_json(repo)
            if not rows or rows[0]["status"] != "running":
                return False
            note = json.loads(git(repo, "notes", "--ref=exps", "show", rows[0]["id"]))
            return (note.get("metrics") or {}).get("val_err", {}).get("count", 0) > 0
        wait_for(progress, timeout=30)
        assert git(repo, "notes", "--ref=exps-metrics", "show", log_json(repo)[0]["id"]).count("\n") > 0
    finally:
        proc.wait(timeout=60)
    assert log_json(repo)[0]["metrics"]["val_err"]["count"] == 40


def test_requires_survive_the_round_trip_through_the_commit(repo: Path) -> None:
    (repo / "req.yaml").write_text("command: echo ok\nrequires: {time: 2h, ram: 1MB, disk: 1MB, cpus: 1}\n")
    gitexp(repo, "run", "req.yaml")
    [row] = log_json(repo)
    assert row["status"] == "finished"
    stored = json.loads(gitexp(repo, "show", "req", "--format", "json").stdout)["config"]["requires"]
    assert stored == {"time": "7200s", "ram": 1000000, "disk": 1000000, "cpus": 1}


def test_sigterm_stops_a_program_that_left_children_behind(repo: Path, tmp_path: Path) -> None:
    import psutil

    pidfile = tmp_path / "sleep.pid"
    # The program waits for its child: it is still running when SIGTERM comes (a program that
    # exits at once ends its run, and its leftovers are stopped: tests/test_trainer_ends.py).
    (repo / "bg.yaml").write_text(f"command: sleep 300 & echo $! > {pidfile}; echo started; wait\n")
    proc = subprocess.Popen([sys.executable, "-m", "gitexp", "run", "bg.yaml"], cwd=repo,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(lambda: log_json(repo) and log_json(repo)[0]["status"] == "running")
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip())
    sleeper = psutil.Process(int(pidfile.read_text()))  # the one it left behind, and no other
    try:
        assert sleeper.cmdline() == ["sleep", "300"]
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        assert log_json(repo)[0]["status"] == "killed"

        def gone() -> bool:  # is_running() also tells a reused pid apart; a zombie is dead too
            try:
                return not sleeper.is_running() or sleeper.status() == psutil.STATUS_ZOMBIE
            except psutil.NoSuchProcess:
                return True
        wait_for(gone, timeout=15)
    finally:
        if sleeper.is_running():
            sleeper.kill()


def test_time_limit_warning_reaches_the_program_and_decides_timeout(repo: Path) -> None:
    """The runner's warning (SIGUSR1 to the executor): exit 0 after it is finished, else timeout."""
    (repo / "warn.py").write_text(
        "import os, signal, sys, time\n"
        "def on_warning(*_):\n"
        "    print('checkpointing', flush=True)\n"
        "    sys.exit(int(sys.argv[1]))\n"
        "signal.signal(signal.SIGUSR1, on_warning)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n")
    (repo / "warn.yaml").write_text("command: python warn.py {code}\nparams: {code: 0}\n")
    for code, expected in (("0", "finished"), ("3", "timeout")):
        proc = subprocess.Popen([sys.executable, "-m", "gitexp", "run", "warn.yaml", "-p", f"code={code}",
                                 "--name", f"w{code}"], cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        wait_for(lambda name=f"w{code}": any(r["name"] == name and r["status"] == "running" for r in log_json(repo)))
        time.sleep(0.5)
        proc.send_signal(signal.SIGUSR1)
        proc.wait(timeout=30)
        data = json.loads(gitexp(repo, "show", f"w{code}", "--format", "json").stdout)
        assert data["status"] == expected and "checkpointing" in data["log_tail"]
        assert os.path.exists(os.path.join(data["outdir"], "..", "stop-requested"))


def test_export_ignore_attributes_do_not_hide_files_from_the_run(repo: Path) -> None:
    (repo / ".gitattributes").write_text("train.py export-ignore\n")
    gitexp(repo, "run", "config.yaml", "-p", "steps=1")
    assert log_json(repo)[0]["status"] == "finished"
