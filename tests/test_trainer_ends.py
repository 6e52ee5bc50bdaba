"""Runs that end badly end right (issue 17, items 6, 7, 8, 10, 11), with trainers that behave
like real ones: no gitexp import, steps printed, a checkpoint saved in place at intervals, no
signal handler, children of their own."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import psutil
import pytest

from conftest import git, gitexp, log_json, make_repo, wait_for

# Prints `step N | loss X`, saves {outdir}/ckpt.txt every 5 steps (in place), continues from it
# when GITEXP_RESUME_FROM is set. argv: steps, seconds per step, then optional actions.
TRAINER = textwrap.dedent('''
    import os, subprocess, sys, time
    steps, pause = int(sys.argv[1]), float(sys.argv[2])
    actions = sys.argv[3:]
    out = os.environ.get("GITEXP_OUTPUT_DIR", ".")
    ckpt = os.path.join(out, "ckpt.txt")
    start = int(open(ckpt).read()) if os.environ.get("GITEXP_RESUME_FROM") and os.path.exists(ckpt) else 0
    if start:
        print(f"resumed at step {start}", flush=True)
    with open(os.path.join(out, "pid"), "w") as f:
        f.write(str(os.getpid()))
    if "daemon" in actions:  # a child in a session of its own, holding our stdout
        subprocess.Popen(["setsid", "sh", "-c", "exec sleep 617"])
    for step in range(start, steps):
        time.sleep(pause)
        print(f"step {step} | loss {1.0 / (step + 1):.4f}", flush=True)
        if step % 5 == 4:
            with open(ckpt, "w") as f:
                f.write(str(step + 1))
        if "oom" in actions and step == 13 and not start:
            os.kill(os.getpid(), 9)  # as the OOM killer does
    with open(os.path.join(out, "spans.txt"), "a") as f:
        f.write("done\\n")
    print("done", flush=True)
''')

# Records when it ran and with which GPU, for the double-booking check.
SPANS = textwrap.dedent('''
    import os, sys, time
    began = time.time()
    time.sleep(float(sys.argv[1]))
    with open(sys.argv[2], "a") as f:
        f.write(f"{began} {time.time()} {os.environ.get('CUDA_VISIBLE_DEVICES')}\\n")
    print("done", flush=True)
''')


def repo_with(tmp_path: Path, config: str, extra: Optional[Dict[str, str]] = None) -> Path:
    files = {"train.py": TRAINER, "spans.py": SPANS, "config.yaml": config, **(extra or {})}
    return make_repo(tmp_path / "repo", files)


def run_dir(repo: Path, sha: str) -> Path:
    return repo / ".git" / "gitexp" / "runs" / sha


def note(repo: Path, sha: str) -> Dict[str, Any]:
    return json.loads(git(repo, "notes", "--ref=exps", "show", sha))


def exec_info(repo: Path, sha: str) -> Dict[str, Any]:
    try:
        return json.loads((run_dir(repo, sha) / "exec.json").read_text())
    except (OSError, ValueError):
        return {}


def sleepers(arg: str = "617") -> List[psutil.Process]:
    out = []
    for proc in psutil.process_iter(["cmdline"]):
        if proc.info["cmdline"] == ["sleep", arg]:
            out.append(proc)
    return out


@pytest.fixture(autouse=True)
def no_sleepers_left() -> Any:
    yield
    for proc in sleepers():
        proc.kill()


def start_worker(repo: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "gitexp", "worker", *args], cwd=repo,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def stop_worker(worker: subprocess.Popen) -> str:
    if worker.poll() is None:
        os.killpg(worker.pid, signal.SIGTERM)
    out, _ = worker.communicate(timeout=60)
    return out


# -- item 10: a child that outlives the program ---------------------------------------------------
def test_program_that_leaves_a_setsid_child_ends_when_it_exits(tmp_path: Path) -> None:
    repo = repo_with(tmp_path, "name: daemon\ncommand: python train.py 3 0.1 daemon\n")
    began = time.time()
    proc = gitexp(repo, "run", "config.yaml", timeout=60)  # hung for ever before
    assert time.time() - began < 40
    assert "step 2 | loss" in proc.stdout
    [row] = log_json(repo)
    assert row["status"] == "finished" and row["exit_code"] == 0
    assert not sleepers(), "the leftover child was not stopped"
    summary = note(repo, row["id"])
    assert any("sleep 617" in item["command"] for item in summary["leftovers"])
    shown = gitexp(repo, "show", "daemon").stdout
    assert "left 1 process(es) running" in shown and "sleep 617" in shown


def test_detached_program_that_leaves_a_child_is_recorded_finished_and_cancel_finds_nothing(tmp_path: Path) -> None:
    repo = repo_with(tmp_path, "name: daemon\ncommand: python train.py 3 0.1 daemon\n")
    gitexp(repo, "run", "config.yaml", "--detach")
    row = wait_for(lambda: [r for r in log_json(repo) if r["status"] == "finished"], timeout=40)[0]
    assert row["exit_code"] == 0 and not sleepers()
    assert gitexp(repo, "cancel", "daemon", check=False).returncode != 0  # nothing left to cancel
    assert log_json(repo)[0]["status"] == "finished"


# -- item 6: the time-limit warning ---------------------------------------------------------------
def test_sigcgt_parsing_and_the_forwarding_decision() -> None:
    from gitexp import supervisor

    assert supervisor.caught_mask("Name:\tx\nSigCgt:\t0000000000000202\n") == 0x202
    assert supervisor.caught_mask("Name:\tx\n") is None
    plain = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    handler = subprocess.Popen(["bash", "-c", "true; exec " + sys.executable + " -c 'import signal, time; "
                                "signal.signal(signal.SIGUSR1, lambda *a: print(\"saving\", flush=True)); "
                                "time.sleep(30)'"], stdout=subprocess.PIPE, text=True)
    shell = subprocess.Popen(["bash", "-c", f"{sys.executable} -c 'import signal, time; "
                              "signal.signal(signal.SIGUSR1, lambda *a: None); time.sleep(30)'; true"])
    try:
        time.sleep(1.5)
        assert not supervisor.catches(plain.pid, signal.SIGUSR1)
        assert supervisor.forward_warning(plain.pid, "auto") == []
        assert supervisor.forward_warning(plain.pid, "never") == []
        assert supervisor.forward_warning(handler.pid, "auto") == [handler.pid]
        # under a bash line the trainer is bash's child: it gets the warning, bash does not
        [child] = psutil.Process(shell.pid).children()
        assert supervisor.forward_warning(shell.pid, "auto") == [child.pid]
        time.sleep(0.5)
        assert plain.poll() is None and shell.poll() is None  # nobody died of the warning
        assert supervisor.forward_warning(plain.pid, "SIGINT") == [plain.pid]
        assert plain.wait(timeout=10) != 0
    finally:
        for p in (plain, handler, shell):
            p.kill()
            p.wait()


def test_time_limit_warning_does_not_kill_a_program_without_a_handler(tmp_path: Path) -> None:
    repo = repo_with(tmp_path, "name: warned\ncommand: python train.py 12 0.4\n")
    gitexp(repo, "run", "config.yaml", "--detach")
    sha = wait_for(lambda: [r for r in log_json(repo) if r["status"] == "running"], timeout=30)[0]["id"]
    wait_for(lambda: "step 2 |" in (run_dir(repo, sha) / "output.log").read_text(), timeout=30)
    os.kill(exec_info(repo, sha)["pid"], signal.SIGUSR1)  # what Slurm sends signal_warning before the limit
    row = wait_for(lambda: [r for r in log_json(repo) if r["status"] not in ("running", "starting")], timeout=40)[0]
    log = (run_dir(repo, sha) / "output.log").read_text()
    assert row["status"] == "finished" and row["exit_code"] == 0, log
    assert "step 11 |" in log and "not passed on" in log
    assert (run_dir(repo, sha) / "stop-requested").exists()


LATE_HANDLER = textwrap.dedent('''
    import signal, sys, time
    time.sleep(float(sys.argv[1]))  # its imports come first
    got = []
    if sys.argv[2] == "handler":
        signal.signal(signal.SIGUSR1, lambda *_: got.append(1))
    for _ in range(60):
        if got:
            break
        time.sleep(0.1)
    print("handled the warning" if got else "no warning came")
''')


@pytest.mark.parametrize("handler", ["handler", "none"])
def test_a_warning_that_comes_before_the_program_starts_is_judged_once_it_runs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, handler: str) -> None:
    """Slurm sends --signal's warning up to a minute early: with a short limit it can come while
    the executor is still preparing the run. It is passed on once the program handles it (within
    EARLY_WARNING_WAIT), or said not to be: never dropped without a word."""
    from gitexp import experiments, stopping
    from gitexp.config import load_config
    from gitexp.executor import Executor
    from gitexp.notes import Store
    from gitexp.repo import Repo

    repo = make_repo(tmp_path / "r", {"late.py": LATE_HANDLER,
                                      "config.yaml": f"name: early\ncommand: python late.py 1.0 {handler}\n"})
    monkeypatch.chdir(repo)
    r = Repo.discover(str(repo))
    store = Store(r)
    exp = experiments.create(r, store, load_config(str(repo / "config.yaml")))
    prepare = Executor._prepare_worktree

    def warned_while_preparing(self: Any) -> None:
        os.kill(os.getpid(), signal.SIGUSR1)  # the scheduler's warning, before the program exists
        prepare(self)

    monkeypatch.setattr(Executor, "_prepare_worktree", warned_while_preparing)
    monkeypatch.setattr(stopping, "EARLY_WARNING_WAIT", 3.0)  # the program handles it after 1 s, lives 7 s
    assert Executor(r, store, exp.sha).execute() == 0
    log = (run_dir(repo, exp.sha) / "output.log").read_text()
    if handler == "handler":
        assert "handled the warning" in log and "passed on as SIGUSR1" in log, log
    else:
        assert "no warning came" in log and "not passed on" in log, log
    assert (run_dir(repo, exp.sha) / "stop-requested").exists()


def _slurm_ready() -> bool:
    try:
        proc = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0 and any(s.startswith(("idle", "mix", "alloc")) for s in proc.stdout.split())


def test_slurm_time_limit_lets_a_program_without_handler_run_to_the_limit(tmp_path: Path) -> None:
    if not _slurm_ready():
        pytest.skip("Slurm is not running here (scripts/slurm-up.sh)")
    repo = repo_with(tmp_path, "name: limit\ncommand: python train.py 400 0.5\nrequires: {time: 1m}\n")
    gitexp(repo, "remote", "add", "triton", "--runner", "slurm", "--partition", "debug")
    git(repo, "add", ".gitexp.yaml")
    git(repo, "commit", "-q", "-m", "target")
    gitexp(repo, "run", "config.yaml", "--on", "triton")
    # `log` says timeout as soon as Slurm does; the executor's own record (`ended`) comes after
    row = wait_for(lambda: [r for r in log_json(repo) if r["status"] in ("timeout", "failed", "finished")
                            and r.get("ended")], timeout=240, interval=1)[0]
    log = (run_dir(repo, row["id"]) / "output.log").read_text()
    assert row["status"] == "timeout", log
    assert row["exit_code"] != -signal.SIGUSR1, "the program died of the warning"
    assert "not passed on" in log
    after = log.split("not passed on", 1)[1]
    assert after.count("| loss") >= 10, "the program did not run on to the limit"


# -- item 7: auto_resume when the executor dies first; SIGKILL counts -------------------------------
AUTO = "name: ar\ncommand: python train.py 12 1.0\nauto_resume: 1\ncheckpoints: ['{outdir}/ckpt.txt']\n"


def test_auto_resume_waits_for_the_orphaned_program_then_resumes(tmp_path: Path) -> None:
    repo = repo_with(tmp_path, AUTO)
    gitexp(repo, "run", "config.yaml", "--queue")
    worker = start_worker(repo, "--until-empty")
    try:
        sha = wait_for(lambda: [r for r in log_json(repo) if r["status"] == "running"], timeout=30)[0]["id"]
        wait_for(lambda: "step 8 |" in (run_dir(repo, sha) / "output.log").read_text(), timeout=30)
        info = exec_info(repo, sha)
        os.kill(info["pid"], signal.SIGKILL)  # the OOM killer takes the executor first; the program
        # lives on until its next print meets the broken pipe, as a real trainer does
        rows = wait_for(lambda: (lambda rs: rs if [r["status"] for r in rs] == ["lost", "finished"] else [])(
            log_json(repo, "--attempts")), timeout=90, interval=0.5)
    finally:
        out = stop_worker(worker)
    assert "no automatic resume" not in out, out
    first, second = rows
    assert "SIGKILL" in note(repo, first["id"])["reason"], note(repo, first["id"])
    again = note(repo, second["id"])
    assert again["auto_resumes"] == 1 and again["kind"] == "resume"
    assert "resumed at step" in (run_dir(repo, second["id"]) / "output.log").read_text()
    assert "ar lost" in out


def test_program_killed_by_sigkill_is_resumed_like_a_crash_and_ends_are_configurable(tmp_path: Path) -> None:
    ckpt = "checkpoints: ['{outdir}/ckpt.txt']\n"
    repo = repo_with(tmp_path, "name: oom\ncommand: python train.py 16 0.3 oom\nauto_resume: 1\n" + ckpt,
                     {"only.yaml": "name: only\ncommand: python train.py 16 0.3 oom\n" + ckpt
                                   + "auto_resume: {times: 1, ends: [timeout]}\n"})
    gitexp(repo, "run", "config.yaml", "--queue")
    gitexp(repo, "run", "only.yaml", "--queue")
    out = gitexp(repo, "worker", "--until-empty", timeout=120).stderr
    rows = {(r["name"], r["attempt"]): r for r in log_json(repo, "--attempts")}
    assert rows[("oom", 1)]["status"] == "failed" and rows[("oom", 1)]["exit_code"] == -9, out
    assert rows[("oom", 2)]["status"] == "finished", out
    assert ("only", 2) not in rows and rows[("only", 1)]["exit_code"] == -9


# -- item 8: every lost run says why ---------------------------------------------------------------
def test_lost_run_says_its_executor_was_sigkilled_and_when_it_was_last_seen(tmp_path: Path) -> None:
    repo = repo_with(tmp_path, "name: gone\ncommand: python train.py 40 0.2\n")
    gitexp(repo, "run", "config.yaml", "--detach")
    sha = wait_for(lambda: [r for r in log_json(repo) if r["status"] == "running"], timeout=30)[0]["id"]
    info = exec_info(repo, sha)
    os.kill(info["pid"], signal.SIGKILL)
    os.kill(info["child"], signal.SIGKILL)
    wait_for(lambda: log_json(repo)[0]["status"] == "lost", timeout=20)
    shown = json.loads(gitexp(repo, "show", "gone", "--format", "json").stdout)
    assert "SIGKILL" in shown["reason"] and "last seen alive" in shown["reason"], shown["reason"]
    assert "lost" in gitexp(repo, "show", "gone").stdout


def test_executor_that_gets_a_fatal_signal_records_why(tmp_path: Path) -> None:
    repo = repo_with(tmp_path, "name: usr2\ncommand: python train.py 40 0.2\n")
    gitexp(repo, "run", "config.yaml", "--detach")
    sha = wait_for(lambda: [r for r in log_json(repo) if r["status"] == "running"], timeout=30)[0]["id"]
    os.kill(exec_info(repo, sha)["pid"], signal.SIGUSR2)  # its default action ends a process silently
    row = wait_for(lambda: [r for r in log_json(repo) if r["status"] not in ("running", "starting")], timeout=30)[0]
    assert row["status"] == "killed", row
    assert "SIGUSR2" in note(repo, sha)["reason"]
    end = json.loads((run_dir(repo, sha) / "executor-end.json").read_text())
    assert end["what"] == "recorded" and end["detail"] == "killed"


def test_foreground_executor_lines_are_kept_in_its_run_directory(tmp_path: Path) -> None:
    repo = repo_with(tmp_path, "name: said\ncommand: python train.py 2 0.05\n")
    env = {"GITEXP_NOTES_INTERVAL": "oops"}  # the executor warns about it on its stderr
    gitexp(repo, "run", "config.yaml", env=env)
    [row] = log_json(repo)
    text = (run_dir(repo, row["id"]) / "executor.log").read_text()
    assert "GITEXP_NOTES_INTERVAL" in text


# -- item 11: a slot stays busy while any process of its run lives --------------------------------
def test_worker_never_double_books_slots_or_gpus_when_executors_die(tmp_path: Path) -> None:
    spans = tmp_path / "spans.log"
    config = f"name: s\ncommand: python spans.py {{t}} {spans}\nparams: {{t: 6}}\n"
    repo = repo_with(tmp_path, config)
    for i in range(4):
        gitexp(repo, "run", "config.yaml", "--queue", "--name", f"s{i}")
    worker = start_worker(repo, "--jobs", "2", "--gpus", "0,1", "--until-empty")
    try:
        running = wait_for(lambda: (lambda rs: rs if len(rs) == 2 else [])(
            [r for r in log_json(repo) if r["status"] == "running" and exec_info(repo, r["id"]).get("child")]),
            timeout=60)
        for row in running:
            os.kill(exec_info(repo, row["id"])["pid"], signal.SIGKILL)
        worker.wait(timeout=120)
    finally:
        out = stop_worker(worker)
    lines = [line.split() for line in spans.read_text().splitlines()]
    assert len(lines) == 4, out
    for i, (b1, e1, g1) in enumerate(lines):
        overlapping = [(b2, e2, g2) for j, (b2, e2, g2) in enumerate(lines)
                       if j != i and float(b2) < float(e1) - 0.05 and float(b1) < float(e2) - 0.05]
        assert len(overlapping) <= 1, (lines, out)
        assert all(g2 != g1 for _b, _e, g2 in overlapping), (lines, out)
