"""The Slurm runner against a real single-node Slurm started by scripts/slurm-up.sh."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT, all_refs, git, gitexp, log_json, need_service, rows_when, wait_for, with_target


def _slurm_ready() -> bool:
    if not shutil.which("sinfo"):
        return False
    proc = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    return proc.returncode == 0 and any(s.startswith(("idle", "mix", "alloc")) for s in proc.stdout.split())


@pytest.fixture(scope="session")
def slurm() -> None:
    need_service(_slurm_ready, "slurm-up.sh", "Slurm")


@pytest.fixture
def cluster_repo(repo: Path, slurm: None) -> Path:
    return with_target(repo, "triton", "--runner", "slurm", "--partition", "debug")


def test_single_experiment_runs_through_sbatch(cluster_repo: Path) -> None:
    proc = gitexp(cluster_repo, "run", "config.yaml", "--on", "triton")
    assert "Slurm job" in proc.stderr
    [row] = rows_when(cluster_repo, 1)
    assert row["runner"] == "slurm" and row["metrics"]["val_err"]["count"] == 5
    shown = json.loads(gitexp(cluster_repo, "show", "toy", "--format", "json").stdout)
    note = json.loads(git(cluster_repo, "notes", "--ref=exps", "show", row["id"]))
    assert note["slurm"]["job"].isdigit() and note["slurm"]["task"] is None
    details = json.loads(git(cluster_repo, "notes", "--ref=exps-details", "show", row["id"]))
    assert "#SBATCH --partition=debug" in details["batch_script"] and "_exec" in details["batch_script"]
    assert details["facts"]["hostname"]  # the executor ran inside the allocation
    assert Path(note["slurm"]["script"]).exists()
    assert shown["status"] == "finished"


def test_sweep_is_one_job_array(cluster_repo: Path) -> None:
    gitexp(cluster_repo, "run", "config.yaml", "--on", "triton", "--sweep", "lr=0.1,0.5,1.0", "--sweep", "steps=2,3")
    rows = rows_when(cluster_repo, 6)
    notes = [json.loads(git(cluster_repo, "notes", "--ref=exps", "show", r["id"])) for r in rows]
    assert len({n["slurm"]["job"] for n in notes}) == 1
    assert sorted(n["slurm"]["task"] for n in notes) == [0, 1, 2, 3, 4, 5]
    script = Path(notes[0]["slurm"]["script"]).read_text()
    assert "#SBATCH --array=0-5" in script
    assert {r["status"] for r in rows} == {"finished"} and len({r["group"] for r in rows}) == 1


def test_cancel_running_job_records_killed(cluster_repo: Path) -> None:
    (cluster_repo / "sleep.yaml").write_text("command: echo started; sleep 120\n")
    gitexp(cluster_repo, "run", "sleep.yaml", "--on", "triton")
    wait_for(lambda: [r for r in log_json(cluster_repo) if r["status"] == "running"], timeout=60)
    out = gitexp(cluster_repo, "cancel", "sleep").stdout
    assert "cancelled sleep" in out
    [row] = rows_when(cluster_repo, 1, ("killed",))
    assert row["status"] == "killed"


def test_crash_ends_failed_with_exit_code(cluster_repo: Path) -> None:
    (cluster_repo / "crash.yaml").write_text("command: echo dying; exit 3\n")
    gitexp(cluster_repo, "run", "crash.yaml", "--on", "triton")
    [row] = rows_when(cluster_repo, 1, ("failed",))
    assert row["exit_code"] == 3
    assert "dying" in gitexp(cluster_repo, "show", "crash").stdout


def test_job_that_dies_without_executor_shows_slurm_reason(cluster_repo: Path) -> None:
    gitexp(cluster_repo, "remote", "add", "broken", "--runner", "slurm", "--partition", "debug",
           "--python", "/nonexistent/python3")
    gitexp(cluster_repo, "run", "config.yaml", "--on", "broken")
    row = wait_for(lambda: [r for r in log_json(cluster_repo) if r["status"] in ("failed", "lost")],
                   timeout=90, interval=0.5)[0]
    assert row["status"] == "failed"
    shown = gitexp(cluster_repo, "show", row["id"][:8]).stdout
    assert "Slurm: FAILED" in shown


def test_time_limit_sends_warning_then_records_timeout(cluster_repo: Path) -> None:
    (cluster_repo / "long.py").write_text(
        "import os, signal, time, gitexp\n"
        "def warned(*_):\n"
        "    print('got the warning, checkpointing', flush=True)\n"
        "    open(os.path.join(gitexp.output_dir(), 'ckpt'), 'w').write('x')\n"
        "signal.signal(signal.SIGUSR1, warned)\n"
        "for i in range(600):\n"
        "    gitexp.log(step=i, loss=1.0 / (i + 1))\n"
        "    time.sleep(1)\n")
    (cluster_repo / "long.yaml").write_text("command: python long.py\nrequires: {time: 1m}\n")
    gitexp(cluster_repo, "run", "long.yaml", "--on", "triton")
    # `log` says timeout as soon as Slurm does (squeue); the executor, stopped by the limit, is
    # still recording its end then (on a busy machine for seconds): wait for that record.
    [row] = wait_for(lambda: [r for r in log_json(cluster_repo) if r["status"] == "timeout" and r.get("ended")],
                     timeout=180, interval=0.5)
    shown = json.loads(gitexp(cluster_repo, "show", "long", "--format", "json").stdout)
    assert "got the warning" in shown["log_tail"]
    assert [o["path"] for o in shown["outputs"]] == ["ckpt"]
    assert row["metrics"]["loss"]["count"] > 20
    script = Path(json.loads(git(cluster_repo, "notes", "--ref=exps", "show", row["id"]))["slurm"]["script"]).read_text()
    assert "#SBATCH --time=0-00:01:00" in script and "#SBATCH --signal=B:USR1@30" in script


def test_auto_resume_after_the_time_limit_resubmits_from_the_node(cluster_repo: Path) -> None:
    (cluster_repo / "ck.py").write_text(
        "import os, sys, time, gitexp\n"
        "if gitexp.resume_from():\n"
        "    print('resumed from', gitexp.resume_from()['path'], 'at', gitexp.resume_from()['step'], flush=True)\n"
        "    sys.exit(0)\n"
        "path = os.path.join(gitexp.output_dir(), 'c2.json')\n"
        "open(path, 'w').write('{}')\n"
        "gitexp.checkpoint(path, step=2)\n"
        "time.sleep(600)\n")
    (cluster_repo / "ck.yaml").write_text("name: ck\ncommand: python ck.py\nrequires: {time: 1m}\nauto_resume: 1\n")
    gitexp(cluster_repo, "run", "ck.yaml", "--on", "triton")

    def both() -> list:
        rows = log_json(cluster_repo, "--attempts")
        return rows if [r["status"] for r in rows] == ["timeout", "finished"] else []
    first, second = wait_for(both, timeout=240, interval=1)
    again = json.loads(git(cluster_repo, "notes", "--ref=exps", "show", second["id"]))
    assert again["auto_resumes"] == 1 and again["resume"]["step"] == 2 and again["runner"] == "slurm"
    old = json.loads(git(cluster_repo, "notes", "--ref=exps", "show", first["id"]))
    assert again["slurm"]["job"] != old["slurm"]["job"]  # a new job, sbatch from the node
    shown = json.loads(gitexp(cluster_repo, "show", second["id"][:12], "--format", "json").stdout)
    assert "resumed from" in shown["log_tail"] and "at 2" in shown["log_tail"]


def _no_held_jobs() -> bool:
    out = subprocess.run(["squeue", "-h", "-t", "PENDING", "-o", "%r"], capture_output=True, text=True).stdout
    return "JobHeldUser" not in out


@pytest.mark.parametrize("case", ["undefined remote", "sbatch missing", "bad partition", "sbatch rejects"])
def test_slurm_bad_input_records_nothing(case: str, cluster_repo: Path, tmp_path: Path) -> None:
    env = None
    args = ["run", "config.yaml", "--on", "triton"]
    if case == "undefined remote":
        args = ["run", "config.yaml", "--on", "nowhere"]
        expected = "no run target named 'nowhere' (defined: triton)"
    elif case == "sbatch missing":
        bindir = tmp_path / "bin"
        bindir.mkdir()
        os.symlink(shutil.which("git"), bindir / "git")
        env = {"PATH": str(bindir)}
        expected = "sbatch not found on PATH"
    elif case == "bad partition":
        gitexp(cluster_repo, "remote", "add", "triton", "--runner", "slurm", "--partition", "nope")
        expected = "invalid partition specified: nope"
    else:
        gitexp(cluster_repo, "remote", "add", "triton", "--runner", "slurm", "--partition", "debug",
               "--sbatch", "--no-such-option=1")
        expected = "sbatch refused the job"
    before = all_refs(cluster_repo)
    proc = gitexp(cluster_repo, *args, check=False, env=env)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], proc.stderr
    assert all_refs(cluster_repo) == before
    assert _no_held_jobs()


def test_remote_settings_shared_file_and_user_override(cluster_repo: Path) -> None:
    git(cluster_repo, "config", "exp.remote.triton.account", "my-project")
    listed = json.loads(gitexp(cluster_repo, "remote", "list", "--format", "json").stdout)
    assert listed["triton"] == {"runner": "slurm", "partition": "debug", "account": "my-project"}
    assert "account" not in (cluster_repo / ".gitexp.yaml").read_text()
    gitexp(cluster_repo, "remote", "remove", "triton")
    assert "triton" not in json.loads(gitexp(cluster_repo, "remote", "list", "--format", "json").stdout)


def test_sweep_larger_than_max_array_size_is_split(cluster_repo: Path) -> None:
    """Drives SlurmRunner in process with MaxArraySize pretended to be 4: 7 points, 3 arrays."""
    import sys

    sys.path.insert(0, str(ROOT))
    from gitexp.config import load_config
    from gitexp.notes import Store
    from gitexp.repo import Repo
    from gitexp.runners.slurm import SlurmRunner
    from gitexp.sweep import SweepSpec, expand
    from gitexp.targets import get_target

    repo = Repo.discover(str(cluster_repo))
    runner = SlurmRunner(repo, Store(repo), get_target(repo, "triton"))
    runner.max_array_size = lambda: 4  # type: ignore[method-assign]
    configs = expand(load_config(str(cluster_repo / "config.yaml")), SweepSpec(grid={"steps": [1, 2, 3, 4, 5, 6, 7]}))
    cwd = os.getcwd()
    os.chdir(cluster_repo)
    try:
        exps = runner.submit_configs(configs)
    finally:
        os.chdir(cwd)
    jobs = [e.summary["slurm"]["job"] for e in exps]
    assert len(set(jobs)) == 3 and [e.summary["slurm"]["task"] for e in exps] == [0, 1, 2, 0, 1, 2, None]
    rows = rows_when(cluster_repo, 7)
    assert {r["status"] for r in rows} == {"finished"}
