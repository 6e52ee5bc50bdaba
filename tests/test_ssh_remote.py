"""Run targets over ssh against the REAL test sshd (scripts/sshd-up.sh, tests/sshd.py).

The "far side" is a git repository in a temporary directory of this same machine, reached over
ssh as another machine would be: its own gitexp (this checkout's, through --python), its own
run directories and notes, a detached worker or Slurm there, results back with git exp pull.
Skipped with the reason where sshd cannot start; never when CI=true (then they fail).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

from conftest import ROOT, all_refs, git, gitexp, log_json, make_repo, wait_for
from sshd import SshHost, short_dir, ssh_host  # noqa: F401  (pytest fixture)

sys.path.insert(0, str(ROOT))

from gitexp.ssh_transport import SshTransport  # noqa: E402

TRAIN = textwrap.dedent('''
    import os, sys, time
    lr = float(sys.argv[1]); steps = int(sys.argv[2]); pause = float(sys.argv[3])
    print("gpu=" + os.environ.get("CUDA_VISIBLE_DEVICES", "none"), flush=True)
    for step in range(1, steps + 1):
        print(f"step {step} loss={1.0 / (1 + lr * step):.4f}", flush=True)
        time.sleep(pause)
    print("done", flush=True)
''')
CONFIG = textwrap.dedent('''
    name: toy
    command: python3 train.py {lr} {steps} {pause}
    params: {lr: 0.5, steps: 5, pause: 0.05, msg: hello}
    metrics:
      loss: {regex: 'loss=([0-9.]+)', goal: minimize, step: {regex: 'step ([0-9]+)'}}
''')


@pytest.fixture
def far_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The far side's interpreter: this one, with this checkout's gitexp on its path."""
    folder = tmp_path_factory.mktemp("farpy")
    wrapper = folder / "python"
    wrapper.write_text(f"#!/bin/sh\nPYTHONPATH={ROOT} exec {sys.executable} \"$@\"\n")
    wrapper.chmod(0o755)
    return str(wrapper)


@pytest.fixture
def laptop(tmp_path: Path, ssh_host: SshHost, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:  # noqa: F811
    """This side's repository; ssh masters in a private short directory, closed afterwards."""
    runtime = short_dir("gxr-")
    monkeypatch.setenv("XDG_RUNTIME_DIR", runtime)
    repo = make_repo(tmp_path / "laptop", {"train.py": TRAIN, "config.yaml": CONFIG})
    try:
        yield repo
    finally:
        SshTransport(ssh_host.alias, ssh_config=ssh_host.config,
                     control_dir=os.path.join(runtime, "gitexp-ssh")).close()
        shutil.rmtree(runtime, ignore_errors=True)


def add_target(repo: Path, host: SshHost, name: str, path: Path, python: str, *extra: str) -> None:
    gitexp(repo, "remote", "add", name, "--host", host.alias, "--ssh-config", host.config, "--path", str(path),
           "--python", python, *extra)
    git(repo, "add", ".gitexp.yaml")
    git(repo, "commit", "-q", "-m", f"target {name}")


def far_log(path: Path) -> List[Dict[str, Any]]:
    return json.loads(gitexp(path, "log", "--format", "json").stdout)


def far_finished(path: Path, count: int, statuses: tuple = ("finished",), timeout: float = 120) -> List[Dict[str, Any]]:
    def ready() -> List[Dict[str, Any]]:
        rows = far_log(path)
        return rows if len([r for r in rows if r["status"] in statuses]) >= count else []
    return wait_for(ready, timeout=timeout, interval=0.3)


def note(repo: Path, sha: str) -> Dict[str, Any]:
    return json.loads(git(repo, "notes", "--ref=exps", "show", sha))


@pytest.fixture
def gpu3(laptop: Path, ssh_host: SshHost, tmp_path: Path, far_python: str) -> Path:  # noqa: F811
    far = tmp_path / "far side"
    add_target(laptop, ssh_host, "gpu3", far, far_python, "--jobs", "2", "--gpus", "0,1")
    out = gitexp(laptop, "remote", "setup", "gpu3").stdout
    assert "created a git repository" in out and "ready" in out
    return far


# -- the whole path -----------------------------------------------------------------------------------
def test_run_on_ssh_target_runs_there_and_pull_brings_the_results(laptop: Path, gpu3: Path) -> None:
    proc = gitexp(laptop, "run", "config.yaml", "--on", "gpu3")
    sha = proc.stdout.strip()
    assert "sent 1 experiment(s) to gpu3" in proc.stderr
    here = note(laptop, sha)
    assert (here["status"], here["target"], here["runner"]) == ("pending", "gpu3", "local")
    [row] = far_finished(gpu3, 1)
    assert row["id"] == sha and row["name"] == "toy"
    assert not git(gpu3, "for-each-ref", "refs/exps-inbox/").strip()  # the inbox is emptied
    report = json.loads(gitexp(laptop, "queue", "--on", "gpu3", "--format", "json").stdout)
    assert [d["id"] for d in report["done"]] == [sha] and report["states"] == {}
    assert {"ram_available", "disk_free", "gpus", "cpus"} <= set(report["resources"])
    assert "RAM" in gitexp(laptop, "queue", "--on", "gpu3").stdout
    assert log_json(laptop)[0]["status"] == "pending"  # until pulled: log never waits on ssh
    assert "pulled from gpu3" in gitexp(laptop, "pull", "gpu3").stdout
    [mine] = log_json(laptop)
    assert mine["status"] == "finished" and mine["metrics"]["loss"]["count"] == 5
    assert mine["metrics"]["loss"]["best"] == pytest.approx(0.2857)
    assert len(json.loads(gitexp(laptop, "metrics", "toy", "--format", "json").stdout)) == 5
    assert "done" in json.loads(gitexp(laptop, "show", "toy", "--format", "json").stdout)["log_tail"]
    output = gitexp(laptop, "logs", "toy").stdout  # over ssh, from there
    assert "step 5 loss=0.2857" in output
    assert "gpu=0" in output  # the target's worker handed it one of its --gpus
    assert gitexp(laptop, "pull", "gpu3").stdout.strip() == "up to date with gpu3"


def test_push_to_a_target_shares_local_experiments_there(laptop: Path, gpu3: Path) -> None:
    gitexp(laptop, "run", "config.yaml")  # run here, then shared with the target by name
    [mine] = log_json(laptop)
    assert "pushed to gpu3: 1 experiment" in gitexp(laptop, "push", "gpu3").stdout
    assert git(gpu3, "rev-parse", "refs/exps/toy").strip() == mine["id"]
    assert json.loads(git(gpu3, "notes", "--ref=exps", "show", mine["id"]))["status"] == "finished"
    assert gitexp(laptop, "push", "gpu3").stdout.strip() == "gpu3 is up to date"


def test_a_sweep_goes_in_one_push_and_names_taken_there_get_another(laptop: Path, gpu3: Path) -> None:
    gitexp(laptop, "run", "config.yaml", "--on", "gpu3")
    far_finished(gpu3, 1)
    (laptop / "config.yaml").write_text(CONFIG.replace("name: toy", "name: sw"))
    shas = gitexp(laptop, "run", "config.yaml", "--on", "gpu3", "--sweep", "lr=0.1,0.2,0.3").stdout.split()
    assert len(shas) == 3
    rows = far_finished(gpu3, 4)
    assert {r["id"] for r in rows} >= set(shas)
    gitexp(laptop, "pull", "gpu3")
    assert {r["status"] for r in log_json(laptop)} == {"finished"}


def test_files_missing_there_fail_the_run_there_with_the_reason(laptop: Path, gpu3: Path) -> None:
    (laptop / "data.bin").write_text("only here")
    (laptop / "files.yaml").write_text("name: needs\ncommand: cat data.bin\nfiles: [data.bin]\n")
    proc = gitexp(laptop, "run", "files.yaml", "--on", "gpu3")
    assert "failed its preflight there" in proc.stderr
    [row] = far_log(gpu3)
    assert row["status"] == "failed" and "data.bin" in row["reason"]
    gitexp(laptop, "pull", "gpu3")
    [mine] = log_json(laptop)
    assert mine["status"] == "failed" and "do not exist" in mine["reason"]


def test_cancel_stops_it_there(laptop: Path, gpu3: Path) -> None:
    gitexp(laptop, "run", "config.yaml", "--on", "gpu3", "-p", "steps=200", "-p", "pause=0.2")
    wait_for(lambda: [r for r in far_log(gpu3) if r["status"] == "running"], timeout=60)
    out = gitexp(laptop, "cancel", "toy").stdout
    assert "stopped toy" in out and "on gpu3" in out
    assert log_json(laptop)[0]["status"] == "killed"
    assert far_log(gpu3)[0]["status"] == "killed"


# -- Slurm over ssh -------------------------------------------------------------------------------------
def _slurm_ready() -> bool:
    if not shutil.which("sinfo"):
        return False
    proc = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    return proc.returncode == 0 and any(s.startswith(("idle", "mix", "alloc")) for s in proc.stdout.split())


def test_slurm_runner_over_ssh(laptop: Path, ssh_host: SshHost, tmp_path: Path, far_python: str) -> None:  # noqa: F811
    if not _slurm_ready() and os.geteuid() == 0:
        subprocess.run([str(ROOT / "scripts" / "slurm-up.sh")], capture_output=True, timeout=600)
    if not _slurm_ready():
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but Slurm is not running")
        pytest.skip("Slurm is not running and cannot be started here (scripts/slurm-up.sh needs root)")
    far = tmp_path / "cluster"
    add_target(laptop, ssh_host, "triton", far, far_python, "--runner", "slurm", "--partition", "debug")
    gitexp(laptop, "remote", "setup", "triton")
    proc = gitexp(laptop, "run", "config.yaml", "--on", "triton", "--sweep", "lr=0.1,0.5")
    assert "submitted to Slurm there" in proc.stderr
    shas = proc.stdout.split()
    rows = far_finished(far, 2, timeout=180)
    assert {r["runner"] for r in rows} == {"slurm"}
    gitexp(laptop, "pull", "triton")
    mine = log_json(laptop)
    assert {r["id"] for r in mine} == set(shas) and {r["status"] for r in mine} == {"finished"}
    slurm = note(laptop, shas[0])["slurm"]
    assert slurm["job"].isdigit() and slurm["task"] in (0, 1)
    assert "#SBATCH --partition=debug" in json.loads(
        git(laptop, "notes", "--ref=exps-details", "show", shas[0]))["batch_script"]


# -- two targets, one merge ---------------------------------------------------------------------------------
def test_two_targets_and_the_merge(laptop: Path, ssh_host: SshHost, tmp_path: Path, far_python: str) -> None:  # noqa: F811
    paths = {"a": tmp_path / "box a", "b": tmp_path / "box b"}
    for name, path in paths.items():
        add_target(laptop, ssh_host, name, path, far_python)
        gitexp(laptop, "remote", "setup", name)
    sha_a = gitexp(laptop, "run", "config.yaml", "--on", "a", "-p", "lr=0.1").stdout.strip()
    sha_b = gitexp(laptop, "run", "config.yaml", "--on", "b", "-p", "lr=0.9").stdout.strip()
    far_finished(paths["a"], 1)
    far_finished(paths["b"], 1)
    out = gitexp(laptop, "pull", "a", "b").stdout
    assert "pulled from a b" in out
    rows = {r["id"]: r for r in log_json(laptop)}
    assert set(rows) == {sha_a, sha_b} and {r["status"] for r in rows.values()} == {"finished"}
    assert rows[sha_a]["params"]["lr"] == 0.1 and rows[sha_b]["params"]["lr"] == 0.9
    assert note(laptop, sha_a)["target"] == "a" and note(laptop, sha_b)["target"] == "b"
    assert "a" not in json.dumps(note(paths["a"], sha_a).get("target", ""))  # there it is its own
    assert git(paths["a"], "for-each-ref", "refs/exps/").count("\n") == 1  # b's run never went to a


# -- the connection drops ------------------------------------------------------------------------------------
def test_a_dropped_connection_never_stops_a_run_and_the_next_command_reconnects(
        laptop: Path, gpu3: Path, ssh_host: SshHost) -> None:  # noqa: F811
    sha = gitexp(laptop, "run", "config.yaml", "--on", "gpu3", "-p", "steps=20", "-p", "pause=0.2").stdout.strip()
    master = SshTransport(ssh_host.alias, ssh_config=ssh_host.config,
                          control_dir=os.path.join(os.environ["XDG_RUNTIME_DIR"], "gitexp-ssh"))
    follower = subprocess.Popen([sys.executable, "-m", "gitexp", "logs", "-f", sha[:10]], cwd=laptop,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: [r for r in far_log(gpu3) if r["status"] == "running"], timeout=60)
        time.sleep(0.5)
        ssh_host.kill_master(master)  # the laptop's connection drops without goodbye
        _out, err = follower.communicate(timeout=60)
    finally:
        if follower.poll() is None:
            follower.kill()
    assert follower.returncode != 0 and "the run goes on there" in err
    [row] = far_finished(gpu3, 1)
    assert row["metrics"]["loss"]["count"] == 20  # it ran to its end there
    assert "step 20" in gitexp(laptop, "logs", "-f", sha[:10]).stdout  # reconnects
    assert [d["id"] for d in json.loads(gitexp(laptop, "queue", "--on", "gpu3", "--format", "json").stdout)["done"]] \
        == [sha]
    gitexp(laptop, "pull", "gpu3")
    assert log_json(laptop)[0]["status"] == "finished"


# -- values that would run something in a shell ---------------------------------------------------------------------
def test_hostile_params_and_paths_run_nothing_there(laptop: Path, ssh_host: SshHost, tmp_path: Path,  # noqa: F811
                                                    far_python: str) -> None:
    token = uuid.uuid4().hex[:8]
    bait = f"pwned-{token}"
    far = tmp_path / f"far 'q' \"d\" ; $(touch {bait}-1) `touch {bait}-2` $HOME"
    add_target(laptop, ssh_host, "odd", far, far_python)
    gitexp(laptop, "remote", "setup", "odd")
    value = f"a b'; touch /tmp/{bait}-3; echo \"$(touch /tmp/{bait}-4)\" `touch /tmp/{bait}-5` ${{HOME}}"
    (laptop / "echo.yaml").write_text("name: hostile\ncommand: echo {msg}\nparams: {msg: x}\n")
    sha = gitexp(laptop, "run", "echo.yaml", "--on", "odd", "-p", f"msg={value}").stdout.strip()
    [row] = far_finished(far, 1)
    assert row["params"]["msg"] == value
    gitexp(laptop, "pull", "odd")
    assert log_json(laptop)[0]["params"]["msg"] == value
    assert value in gitexp(laptop, "logs", sha[:10]).stdout  # echoed as one word, nothing ran
    home = SshTransport(ssh_host.alias, ssh_config=ssh_host.config, control_dir=short_dir()).home()
    for folder in {Path("/tmp"), Path(home), tmp_path, far, laptop, Path.cwd()}:
        assert not list(folder.glob(f"{bait}*")), folder


# -- bad input: exit 2, one line, nothing written on either side ----------------------------------------------------
def _fake_old_gitexp(folder: Path) -> str:
    """A far-side gitexp that speaks another agent protocol and reads another notes schema."""
    script = folder / "old-python"
    code = ("import sys; import gitexp.runners.agent as a; a.PROTOCOL = 0; a.NOTES_SCHEMAS = (0,); "
            "from gitexp.cli import main; main(sys.argv[1:])")
    script.write_text(f"#!/bin/sh\nexport PYTHONPATH={ROOT}\n"
                      f"if [ \"$1\" = -m ] && [ \"$2\" = gitexp ]; then shift 2; exec {sys.executable} -c '{code}' \"$@\"; fi\n"
                      f"exec {sys.executable} \"$@\"\n")
    script.chmod(0o755)
    return str(script)


BAD = ["unknown target", "host does not answer", "no directory there", "not a repository there",
       "python missing there", "gitexp missing there", "gitexp there reads other notes"]


@pytest.mark.parametrize("case", BAD)
def test_bad_input_exits_2_in_one_line_and_writes_nothing_on_either_side(
        case: str, laptop: Path, ssh_host: SshHost, tmp_path: Path, far_python: str) -> None:  # noqa: F811
    far = tmp_path / "far"
    far.mkdir()
    git(far, "init", "-q")
    python, target, expected = far_python, "t", ""
    if case == "unknown target":
        add_target(laptop, ssh_host, "t", far, python)
        target, expected = "nope", "no run target named 'nope' (defined: t)"
    elif case == "host does not answer":
        config = tmp_path / "ssh_config"
        config.write_text(Path(ssh_host.config).read_text().replace(f"Port {ssh_host.port}", "Port 1"))
        gitexp(laptop, "remote", "add", "t", "--host", ssh_host.alias, "--ssh-config", str(config),
               "--path", str(far), "--python", python)
        expected = "Connection refused"
    elif case == "no directory there":
        add_target(laptop, ssh_host, "t", tmp_path / "missing", python)
        expected = "is not a gitexp repository (create it with: git exp remote setup t)"
    elif case == "not a repository there":
        (tmp_path / "plain").mkdir()
        add_target(laptop, ssh_host, "t", tmp_path / "plain", python)
        expected = "is not a gitexp repository (create it with: git exp remote setup t)"
    elif case == "python missing there":
        add_target(laptop, ssh_host, "t", far, str(tmp_path / "no" / "python3"))
        expected = "no/python3 not found on gitexp-test"
    elif case == "gitexp missing there":
        add_target(laptop, ssh_host, "t", far, "/usr/bin/python3")
        expected = "gitexp is not installed for /usr/bin/python3 on gitexp-test"
    else:
        add_target(laptop, ssh_host, "t", far, _fake_old_gitexp(tmp_path))
        expected = "cannot read the notes of gitexp"
    here_before, far_before = all_refs(laptop), all_refs(far)
    started = time.time()
    proc = gitexp(laptop, "run", "config.yaml", "--on", target, check=False)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], proc.stderr
    assert time.time() - started < 15  # within ssh's connect timeout
    assert all_refs(laptop) == here_before
    assert all_refs(far) == far_before


def test_setup_reports_what_is_missing_there(laptop: Path, ssh_host: SshHost, tmp_path: Path) -> None:  # noqa: F811
    add_target(laptop, ssh_host, "t", tmp_path / "new", "/usr/bin/python3")
    proc = gitexp(laptop, "remote", "setup", "t", check=False)
    assert proc.returncode == 2 and "gitexp is not installed for /usr/bin/python3" in proc.stderr
    assert not (tmp_path / "new").exists()  # checked before anything is made: a failed setup leaves nothing


def test_queue_on_a_target_with_500_experiments_is_one_ssh_round_trip(laptop: Path, gpu3: Path,
                                                                    tmp_path: Path) -> None:
    """Counts the ssh processes `git exp queue --on` starts (a PATH wrapper around ssh)."""
    proc = gitexp(gpu3, "run", str(_far_config(gpu3)), "--queue", "--sweep", "steps=" + ",".join(map(str, range(500))),
                  check=False)
    assert proc.returncode == 0, proc.stderr
    bindir, calls = tmp_path / "bin", tmp_path / "ssh-calls"
    bindir.mkdir()
    real = shutil.which("ssh")
    (bindir / "ssh").write_text(f"#!/bin/sh\necho ssh >> {calls}\nexec {real} \"$@\"\n")
    (bindir / "ssh").chmod(0o755)
    env = {"PATH": f"{bindir}:{os.environ['PATH']}"}
    gitexp(laptop, "queue", "--on", "gpu3", env=env)  # opens the master: at most one more
    calls.unlink()
    report = json.loads(gitexp(laptop, "queue", "--on", "gpu3", "--format", "json", env=env).stdout)
    assert len(report["queued"]) == 500
    assert len(calls.read_text().splitlines()) == 1


def _far_config(far: Path) -> Path:
    path = far / "q.yaml"
    path.write_text("name: q\ncommand: echo {steps}\nparams: {steps: 1}\n")
    git(far, "commit", "-q", "--allow-empty", "-m", "far base")
    return path


def test_resume_on_an_ssh_target_checks_the_checkpoint_there_and_comes_back(laptop: Path, gpu3: Path) -> None:
    from test_resume import CONFIG as RESUME_CONFIG
    from test_resume import TRAIN as RESUME_TRAIN

    (laptop / "rtrain.py").write_text(RESUME_TRAIN)
    (laptop / "r.yaml").write_text(RESUME_CONFIG.replace("train.py", "rtrain.py"))
    assert gitexp(laptop, "run", "r.yaml", check=False).returncode == 3
    first = log_json(laptop)[0]["id"]
    out = Path(note(laptop, first)["outdir"])
    # A checkpoint that is not on the target: one line, exit 2, nothing pushed or recorded.
    (out / "ckpt2.json").rename(out / "moved.json")
    before, far_before = all_refs(laptop), all_refs(gpu3)
    proc = gitexp(laptop, "resume", "toy", "--on", "gpu3", "--from", "2", check=False)
    assert proc.returncode == 2 and "does not exist on gpu3" in proc.stderr, proc.stderr
    assert all_refs(laptop) == before and all_refs(gpu3) == far_before
    # The latest one is there (same machine in this test): the new attempt runs there.
    proc = gitexp(laptop, "resume", "toy", "--on", "gpu3")
    second = proc.stdout.strip()
    assert len(second) == 40 and "sent 1 experiment(s) to gpu3" in proc.stderr
    [row] = far_finished(gpu3, 1)
    assert row["id"] == second and row["attempt"] == 2
    gitexp(laptop, "pull", "gpu3")
    [mine] = log_json(laptop)
    assert (mine["id"], mine["status"], mine["attempt"]) == (second, "finished", 2)
    curve = json.loads(gitexp(laptop, "metrics", "toy", "--format", "json").stdout)
    assert [r["val"] for r in curve if "val" in r] == [0, 1, 2, 3, 4, 105, 106, 107]
