"""Runner logic without a cluster or a second machine: every command a runner runs goes through a
FakeTransport (tests/fake_transport.py), which records it and answers from rules. The real Slurm and
the real sshd are exercised by test_slurm.py and test_ssh_remote.py."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

from conftest import ROOT, all_refs, git, gitexp

sys.path.insert(0, str(ROOT))

from gitexp.config import load_config  # noqa: E402
from gitexp.errors import BadInput, GitExpError  # noqa: E402
from gitexp.notes import Experiment, Store  # noqa: E402
from gitexp.repo import Repo  # noqa: E402
from gitexp.runners import runner_class, runner_for, target_of  # noqa: E402
from gitexp.runners.base import make  # noqa: E402
from gitexp.runners.local import LocalRunner  # noqa: E402
from gitexp.runners.slurm import SlurmRunner  # noqa: E402
from gitexp.runners.ssh import SshRunner  # noqa: E402
from gitexp.status import live_statuses  # noqa: E402
from gitexp.targets import Target, validate  # noqa: E402
from fake_transport import FakeCall, FakeTransport  # noqa: E402

SLURM_TOOLS = {name: f"/opt/slurm/bin/{name}" for name in ("sbatch", "squeue", "scancel", "scontrol")}


def open_repo(path: Path) -> Tuple[Repo, Store]:
    repo = Repo.discover(str(path))
    return repo, Store(repo)


def slurm_fake(job: str = "4242") -> FakeTransport:
    fake = FakeTransport("fake-login", programs=SLURM_TOOLS, user="alice")
    fake.on([SLURM_TOOLS["scontrol"], "show", "config"], stdout="MaxArraySize            = 1001\n")
    fake.on([SLURM_TOOLS["sbatch"], "--parsable", "--hold"], stdout=f"{job}\n")
    return fake


def made(repo: Repo, store: Store, runner: Any, config: str = "config.yaml", sweep: int = 1) -> Any:
    from gitexp.sweep import SweepSpec, expand

    base = load_config(str(Path(repo.root) / config))
    configs = expand(base, SweepSpec(grid={"steps": list(range(1, sweep + 1))})) if sweep > 1 else [base]
    return make(repo, store, configs, runner.INITIAL_STATUS)


# -- Slurm, through its transport -------------------------------------------------------------------
def test_slurm_submit_writes_the_script_and_runs_sbatch_through_the_transport(repo: Path) -> None:
    r, store = open_repo(repo)
    fake = slurm_fake()
    runner = SlurmRunner(r, store, Target("triton", "slurm", {"runner": "slurm", "partition": "gpu"}), fake)
    exps = runner.submit(made(r, store, runner, sweep=3))
    [script_path] = [p for p in fake.files if p.endswith(".sbatch")]
    script = fake.files[script_path].decode()
    assert "#SBATCH --partition=gpu" in script and "#SBATCH --array=0-2" in script
    assert f"#SBATCH --chdir={r.root}" in script
    commands = fake.commands()
    assert [SLURM_TOOLS["sbatch"], "--parsable", "--hold", script_path] in commands
    assert commands[-1] == [SLURM_TOOLS["scontrol"], "release", "4242"]  # released only after recording
    summaries = [store.summary(e.sha) for e in exps]
    assert {s["status"] for s in summaries} == {"pending"} and {s["target"] for s in summaries} == {"triton"}
    assert sorted(s["slurm"]["task"] for s in summaries) == [0, 1, 2]
    assert "batch_script" in store.details(exps[0].sha)
    assert "Slurm job array 4242" in runner.submitted(exps)


def test_slurm_refusal_records_nothing_and_releases_nothing(repo: Path) -> None:
    r, store = open_repo(repo)
    fake = FakeTransport("fake-login", programs=SLURM_TOOLS)
    fake.on([SLURM_TOOLS["sbatch"]], stderr="sbatch: error: invalid partition specified: nope\n", returncode=1)
    runner = SlurmRunner(r, store, Target("triton", "slurm", {"runner": "slurm"}), fake)
    before = all_refs(repo)
    with pytest.raises(BadInput, match="invalid partition specified: nope"):
        runner.submit(made(r, store, runner))
    assert all_refs(repo) == before
    assert not [c for c in fake.commands() if "release" in c]


def test_slurm_recording_failure_cancels_the_held_job(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    r, store = open_repo(repo)
    fake = slurm_fake("77")
    runner = SlurmRunner(r, store, Target("triton", "slurm", {"runner": "slurm"}), fake)

    def refuse(*_a: Any, **_k: Any) -> None:
        raise GitExpError("disk full while recording")

    monkeypatch.setattr(store, "create_batch", refuse)
    with pytest.raises(GitExpError, match="disk full"):
        runner.submit(made(r, store, runner))
    assert [SLURM_TOOLS["scancel"], "--", "77"] in fake.commands()
    assert not [c for c in fake.commands() if "release" in c]


def test_slurm_states_of_many_runs_cost_one_squeue_as_the_targets_user(repo: Path) -> None:
    r, store = open_repo(repo)
    fake = slurm_fake()
    runner = SlurmRunner(r, store, Target("triton", "slurm", {"runner": "slurm"}), fake)
    exps = runner.submit(made(r, store, runner, sweep=4))
    fake.on([SLURM_TOOLS["squeue"]], stdout="4242_0|4242|0|RUNNING|None\n4242_1|4242|1|PENDING|Priority\n")
    before = len(fake.commands())
    states = runner.states([Experiment(e.sha, e.name, store.summary(e.sha)) for e in exps])
    squeues = [c for c in fake.commands()[before:] if c[0] == SLURM_TOOLS["squeue"]]
    assert len(squeues) == 1 and squeues[0][squeues[0].index("-u") + 1] == "alice"
    assert states[exps[0].sha] == ("starting", "Slurm: RUNNING")
    assert states[exps[1].sha] == ("pending", "Slurm: PENDING (Priority)")
    assert states[exps[2].sha][0] == "lost"  # left the queue without a result


def test_slurm_tools_missing_on_the_target_is_bad_input(repo: Path) -> None:
    r, store = open_repo(repo)
    runner = SlurmRunner(r, store, Target("triton", "slurm", {"runner": "slurm"}), FakeTransport("fake-login"))
    with pytest.raises(BadInput, match="sbatch not found on PATH on fake-login"):
        runner.submit(made(r, store, runner))


def test_stop_reason_is_asked_of_the_runner_by_name() -> None:
    assert runner_class("slurm").stop_reason({"cancel_requested": True}, False, False) == "killed"
    assert runner_class("slurm").stop_reason({}, True, True) == "timeout"
    assert runner_class("local").stop_reason({}, False, True) == "killed"
    assert runner_class("local").stop_reason({}, False, False) is None
    assert runner_class("no-such-runner") is runner_class("local")


# -- the registry -----------------------------------------------------------------------------------
def test_registry_dispatches_by_recorded_runner_and_target(repo: Path) -> None:
    r, store = open_repo(repo)
    targets = {"triton": Target("triton", "slurm", {"runner": "slurm", "partition": "gpu"}),
               "gpu3": Target("gpu3", "local", {"runner": "local", "host": "gpu3", "path": "/x"})}
    assert isinstance(runner_for(r, store, Experiment("a" * 40, "a", {"runner": "local"}), targets), LocalRunner)
    slurm = runner_for(r, store, Experiment("b" * 40, "b", {"runner": "slurm", "target": "triton"}), targets)
    assert isinstance(slurm, SlurmRunner) and slurm.target.get("partition") == "gpu"
    # an older note names its target under slurm.remote
    assert target_of({"runner": "slurm", "slurm": {"remote": "triton"}}, targets).name == "triton"
    # the far side wrote runner=local; the target says it is over ssh
    far = runner_for(r, store, Experiment("c" * 40, "c", {"runner": "local", "target": "gpu3"}), targets)
    assert isinstance(far, SshRunner) and far.asks_another_host()
    # a target not defined here (a colleague's): its runner, judged from the note alone
    gone = runner_for(r, store, Experiment("d" * 40, "d", {"runner": "slurm", "target": "elsewhere"}), targets)
    assert isinstance(gone, SlurmRunner) and gone.target.name == "elsewhere"


def test_no_runner_name_comparisons_outside_the_runners() -> None:
    """One boundary: commands, status, queue and the executor dispatch through the registry.
    Every comparison (==, !=, in, not in) with a runner's name, alone or in a tuple, list or
    set, outside gitexp/runners/ (an import contract cannot see a string comparison)."""
    import ast

    from gitexp.runners.registry import RUNNERS

    def names_in(node: ast.expr) -> List[str]:
        items = node.elts if isinstance(node, (ast.Tuple, ast.List, ast.Set)) else [node]
        return [i.value for i in items if isinstance(i, ast.Constant) and i.value in RUNNERS]

    offenders = []
    for path in sorted((ROOT / "gitexp").rglob("*.py")):
        if "runners" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Compare) and any(names_in(side) for side in [node.left, *node.comparators]):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    assert offenders == []


def test_live_statuses_ask_each_target_once_and_remote_ones_only_when_asked(repo: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    r, store = open_repo(repo)
    calls: List[Tuple[str, int]] = []

    def fake_states(self: Any, exps: List[Experiment]) -> Dict[str, Tuple[str, str]]:
        calls.append((self.target.name, len(exps)))
        return {e.sha: ("running", "asked") for e in exps}

    monkeypatch.setattr(SlurmRunner, "states", fake_states)
    monkeypatch.setattr(SshRunner, "states", fake_states)
    gitexp(repo, "remote", "add", "triton", "--runner", "slurm", "--partition", "debug")
    gitexp(repo, "remote", "add", "gpu3", "--host", "gpu3", "--path", "/srv/p")
    exps = [Experiment(f"{i:040x}", f"e{i}", {"status": "pending", "runner": runner, "target": target})
            for i, (runner, target) in enumerate([("slurm", "triton")] * 3 + [("local", "gpu3")] * 2)]
    states = live_statuses(r, exps)
    assert calls == [("triton", 3)]  # ssh targets are not reached by log/show
    assert states[exps[3].sha] == ("pending", None)
    calls.clear()
    live_statuses(r, exps, reach=True)
    assert sorted(calls) == [("gpu3", 2), ("triton", 3)]


# -- target settings -----------------------------------------------------------------------------------
@pytest.mark.parametrize("options, message", [
    ({"runner": "local", "partition": "gpu"}, "'partition' is a setting of the slurm runner, not of the local runner"),
    ({"runner": "slurm", "gpus": "0,1"}, "'gpus' is a setting of the local runner, not of the slurm runner"),
    ({"runner": "slurm", "partion": "gpu"}, "unknown setting 'partion' (did you mean 'partition'?)"),
    ({"runner": "pbs"}, "unknown runner 'pbs'"),
    ({"runner": "local", "host": "gpu3"}, "needs --path"),
    ({"runner": "local", "path": "/x"}, "'path' needs --host"),
    ({"runner": "local", "host": "-oProxyCommand=x", "path": "/x"}, "is not an ssh destination"),
    ({"runner": "local", "gpus": "0,0"}, "gpus: expected distinct GPU indices"),
    ({"runner": "local", "jobs": 0}, "jobs must be a whole number of at least 1"),
    ({"runner": "slurm", "time": "soon"}, "time:"),
])
def test_target_settings_are_checked_against_the_runners_schema(options: Dict[str, Any], message: str) -> None:
    with pytest.raises(BadInput) as caught:
        validate("t", options)
    text = str(caught.value)
    assert message in text and text.startswith("git exp remote t: ") and "\n" not in text


def test_remote_add_refuses_a_slurm_key_on_a_local_target_in_one_line(repo: Path) -> None:
    proc = gitexp(repo, "remote", "add", "box", "--partition", "gpu", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: git exp remote box: 'partition' is a setting of the slurm runner, not of the local runner "
        "(drop it, or use --runner slurm)"]
    assert not (repo / ".gitexp.yaml").exists()


# -- the local runner ------------------------------------------------------------------------------------
def test_local_submit_queues_in_one_transaction_and_starts_a_locked_worker(repo: Path) -> None:
    r, store = open_repo(repo)
    fake = FakeTransport("here")
    target = Target("box", "local", {"runner": "local", "gpus": "0,1", "jobs": 2})
    runner = LocalRunner(r, store, target, fake)
    exps = runner.submit(made(r, store, runner, sweep=3))
    assert {store.summary(e.sha)["status"] for e in exps} == {"queued"}
    assert len(r.refs("refs/exps-queue/")) == 3
    [spawn] = [c for c in fake.calls if c.kind == "spawn"]
    argv = spawn.argv
    assert argv[1:4] == ["-m", "gitexp", "worker"] and "--until-empty" in argv
    assert argv[argv.index("--jobs") + 1] == "2" and argv[argv.index("--gpus") + 1] == "0,1"
    assert argv[argv.index("--lock") + 1].endswith("worker-box.lock")
    assert spawn.cwd == r.root


# -- the ssh runner's side of the conversation ---------------------------------------------------------------
def ssh_runner(repo: Path, fake: FakeTransport, **options: Any) -> SshRunner:
    r, store = open_repo(repo)
    target = Target("gpu3", "local", {"runner": "local", "host": "gpu3", "path": "/srv/my proj",
                                      "python": "/opt/py/bin/python3", **options})
    return SshRunner(r, store, target, fake)


def probe_answer(**changes: Any) -> str:
    answer = {"version": "0.1.0", "protocol": 1, "schemas": [1], "git": "git version 2.39", "repo": True,
              "disk_free": 10 ** 12, "runs_root": "/srv/my proj/.git/gitexp/runs"}
    answer.update(changes)
    return json.dumps(answer) + "\n"


def test_agent_calls_are_argv_lists_in_the_targets_path_with_json_on_stdin(repo: Path) -> None:
    fake = FakeTransport("ssh:gpu3", strict=True)
    fake.on(["/opt/py/bin/python3", "-m", "gitexp", "_agent", "probe"], stdout="login banner\n" + probe_answer())
    info = ssh_runner(repo, fake).preflight()
    [call] = fake.calls
    assert call.argv == ["/opt/py/bin/python3", "-m", "gitexp", "_agent", "probe"]
    assert call.cwd == "/srv/my proj"  # a path with a space stays one word: the transport quotes it
    assert json.loads(call.input or b"{}")["protocol"] == 1
    assert info["repo"] is True


@pytest.mark.parametrize("answer, message, hint", [
    ({"returncode": 126, "stderr": "sh: 1: cd: can't cd to /srv/my proj\n"}, "is not a gitexp repository",
     "git exp remote setup gpu3"),
    ({"returncode": 127, "stderr": "sh: 1: exec: /opt/py/bin/python3: not found\n"},
     "/opt/py/bin/python3 not found on gpu3", "--python"),
    ({"returncode": 1, "stderr": "/opt/py/bin/python3: No module named gitexp\n"},
     "gitexp is not installed for /opt/py/bin/python3 on gpu3", "git exp remote setup gpu3 --install"),
    ({"returncode": 2, "stderr": "Error: No such command '_agent'.\n"}, "too old", "git exp remote setup gpu3 --install"),
    ({"stdout": probe_answer(repo=False)}, "is not a gitexp repository", "git exp remote setup gpu3"),
    ({"stdout": probe_answer(git=None)}, "git is not installed on gpu3", "install git"),
    ({"stdout": probe_answer(version="9.0.0", protocol=2, schemas=[2])}, "cannot read the notes of gitexp",
     "git exp remote setup gpu3 --install"),
])
def test_far_side_problems_are_bad_input_with_the_fix(repo: Path, answer: Dict[str, Any], message: str,
                                                      hint: str) -> None:
    fake = FakeTransport("ssh:gpu3")
    fake.on(["/opt/py/bin/python3"], **answer)
    with pytest.raises(BadInput) as caught:
        ssh_runner(repo, fake).preflight()
    assert message in caught.value.message and hint in (caught.value.hint or "")
    assert caught.value.exit_code == 2


def test_an_unreachable_host_is_bad_input_with_ssh_s_message(repo: Path) -> None:
    fake = FakeTransport("ssh:gpu3")
    fake.unreachable = "ssh: connect to host gpu3 port 22: Connection refused"
    with pytest.raises(BadInput, match="Connection refused"):
        ssh_runner(repo, fake).preflight()


def test_ssh_states_of_many_runs_cost_one_round_trip(repo: Path) -> None:
    fake = FakeTransport("ssh:gpu3")
    shas = [f"{i:040x}" for i in range(50)]
    states = {sha: ["running", None] for sha in shas[:49]}

    def answer(call: FakeCall) -> "subprocess.CompletedProcess[bytes]":
        asked = json.loads(call.input or b"{}")["shas"]
        assert asked == shas
        return subprocess.CompletedProcess(call.argv, 0, json.dumps({"states": states}).encode(), b"")

    fake.on(["/opt/py/bin/python3", "-m", "gitexp", "_agent", "queue"], respond=answer)
    exps = [Experiment(sha, f"e{i}", {"status": "pending"}) for i, sha in enumerate(shas)]
    result = ssh_runner(repo, fake).states(exps)
    assert len(fake.calls) == 1
    assert result[shas[0]] == ("running", "on gpu3")
    assert result[shas[49]] == ("pending", "not recorded on gpu3")


def test_ssh_states_when_the_host_is_down_keep_the_recorded_status(repo: Path) -> None:
    fake = FakeTransport("ssh:gpu3")
    fake.unreachable = "Connection timed out"
    exp = Experiment("e" * 40, "e", {"status": "pending"})
    status, why = ssh_runner(repo, fake).states([exp])[exp.sha]
    assert status == "pending" and "Connection timed out" in (why or "")


def test_ssh_cancel_records_the_far_sides_end_here(repo: Path) -> None:
    r, store = open_repo(repo)
    fake = FakeTransport("ssh:gpu3")
    runner = ssh_runner(repo, fake)
    fake.on(["/opt/py/bin/python3"], stdout=probe_answer())  # not used by cancel
    git(repo, "notes", "--ref=exps", "add", "-m", json.dumps({"status": "pending", "runner": "local",
                                                              "target": "gpu3"}), "HEAD")
    head = git(repo, "rev-parse", "HEAD").strip()
    exp = Experiment(head, "x", store.summary(head))
    fake._rules.clear()
    fake.on(["/opt/py/bin/python3", "-m", "gitexp", "_agent", "cancel"], stdout=json.dumps(
        {"results": [{"sha": head, "line": "stopped x (killed)",
                      "summary": {"status": "killed", "ended": 5.0, "reason": "signal"}}]}))
    assert runner.cancel(exp) == "stopped x (killed) on gpu3"
    assert store.summary(head)["status"] == "killed"


@pytest.mark.parametrize("said, message", [
    ("gitexp-check nodir\n", "is not a gitexp repository"),
    ("gitexp-check norepo\n", "is not a gitexp repository"),
    ("gitexp-check nogit\n", "git is not installed on gpu3"),
    ("gitexp-check nopython\n", "/opt/py/bin/python3 not found on gpu3"),
])
def test_the_check_before_a_push_names_what_is_missing_there(repo: Path, said: str, message: str) -> None:
    fake = FakeTransport("ssh:gpu3")
    fake.on(["sh", "-c"], stdout=said)
    with pytest.raises(BadInput, match=message):
        ssh_runner(repo, fake).check_there()
    [call] = fake.commands()
    assert call[3:] == ["sh", "/srv/my proj", "/opt/py/bin/python3"]  # values as arguments, not in the script


def test_the_check_before_a_push_reads_the_free_disk_at_the_run_root(repo: Path) -> None:
    fake = FakeTransport("ssh:gpu3")
    fake.on(["sh", "-c"], stdout="gitexp-check ok /srv/my proj/.git/gitexp\n"
                                 "/dev/sda1  1000  400  600  40% /srv\n")
    assert ssh_runner(repo, fake).check_there() == (600 * 1024, "/srv/my proj/.git/gitexp")


def test_the_far_sides_gpu_table_and_how_queue_on_shows_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gitexp.commands.queue_cmd import resources_text
    from gitexp.runners.agent import gpu_table

    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho '0, NVIDIA H200, 143000, 143771, 0'\necho '1, NVIDIA H200, 1000, 143771, 97'\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    table = gpu_table()
    assert table == [{"index": 0, "name": "NVIDIA H200", "mem_free": 143000 << 20, "mem_total": 143771 << 20, "util": 0},
                     {"index": 1, "name": "NVIDIA H200", "mem_free": 1000 << 20, "mem_total": 143771 << 20, "util": 97}]
    text = resources_text("gpu3", {"host": "gpu3.lab", "resources": {
        "gpus": table, "ram_available": 10 ** 11, "ram_total": 2 * 10 ** 11, "disk_free": 10 ** 12,
        "disk_total": 4 * 10 ** 12, "disk_path": "/scratch", "cpus": 16, "load": [0.5, 0.4, 0.3]}})
    assert "GPUs     2, 1 free: 0 NVIDIA H200 149.9GB/150.8GB free, 0% busy" in text
    assert "RAM      100.0GB available of 200.0GB" in text and "CPUs     16, load 0.5" in text
    monkeypatch.setenv("PATH", "/nonexistent")
    assert gpu_table() is None


def test_a_slurm_runner_over_ssh_uses_the_targets_paths(repo: Path) -> None:
    r, store = open_repo(repo)
    fake = slurm_fake()
    target = Target("c", "slurm", {"runner": "slurm", "host": "login", "path": "/proj/my \"repo\" $x"})
    runner = SlurmRunner(r, store, target, fake)
    runner.submit(made(r, store, runner))
    [script_path] = [p for p in fake.files if p.endswith(".sbatch")]
    assert script_path.startswith("/proj/my \"repo\" $x/.git/gitexp/runs/slurm/")
    script = fake.files[script_path].decode()
    assert "#SBATCH --chdir=/proj/my \"repo\" $x" in script
    assert "if [ ! -d '/proj/my \"repo\" $x' ]; then" in script
    assert {c.cwd for c in fake.calls if c.kind == "run"} == {"/proj/my \"repo\" $x"}
