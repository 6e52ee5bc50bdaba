"""The Grid Engine runner against a real single-node Grid Engine started by scripts/sge-up.sh,
and its parsers on hostile and odd scheduler output (no Grid Engine needed for those)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Dict

import pytest

from conftest import all_refs, git, gitexp, log_json, need_service, rows_when, wait_for, with_target

from gitexp.runners.sge import ended_as, job_of, parse_qacct, parse_qstat, sge_status
from sshd import ssh_host  # noqa: F401  (pytest fixture)
from test_ssh_remote import far_python, laptop  # noqa: F401  (pytest fixtures)


def _sge_ready() -> bool:
    if not shutil.which("qstat"):
        return False
    proc = subprocess.run(["qstat", "-f"], capture_output=True, text=True)
    if os.path.exists("/usr/sbin/sge_execd") and subprocess.run(["pgrep", "-x", "sge_execd"],
                                                                capture_output=True).returncode != 0:
        return False  # a local execution daemon that died: qstat still lists its queue for a while
    return proc.returncode == 0 and any("@" in line.split()[0] for line in proc.stdout.splitlines() if line.split())


@pytest.fixture
def sge() -> None:
    """Checked before every test: a daemon that died under an earlier test is started again."""
    need_service(_sge_ready, "sge-up.sh", "Grid Engine")


@pytest.fixture
def grid_repo(repo: Path, sge: None) -> Path:
    return with_target(repo, "hpc", "--runner", "sge", "--queue", "all.q", "--pe", "smp")


def note(repo: Path, sha: str) -> Dict[str, Any]:
    return json.loads(git(repo, "notes", "--ref=exps", "show", sha))


def our_jobs() -> str:
    return subprocess.run(["qstat", "-u", "*"], capture_output=True, text=True).stdout


# -- against a real Grid Engine ------------------------------------------------------------------
def test_single_experiment_runs_through_qsub(grid_repo: Path) -> None:
    proc = gitexp(grid_repo, "run", "config.yaml", "--on", "hpc")
    assert "Grid Engine job" in proc.stderr
    [row] = rows_when(grid_repo, 1)
    assert row["runner"] == "sge" and row["metrics"]["val_err"]["count"] == 5
    recorded = note(grid_repo, row["id"])
    assert recorded["sge"]["job"].isdigit() and recorded["sge"]["task"] is None
    details = json.loads(git(grid_repo, "notes", "--ref=exps-details", "show", row["id"]))
    script = details["batch_script"]
    assert "#$ -q all.q" in script and "#$ -notify" in script and "--runner sge" in script
    assert details["facts"]["hostname"]  # the executor ran inside the job
    assert Path(recorded["sge"]["script"]).exists()


def test_sweep_is_one_array_job_with_task_limit(grid_repo: Path) -> None:
    gitexp(grid_repo, "remote", "add", "hpc", "--runner", "sge", "--queue", "all.q", "--max-parallel", "2")
    gitexp(grid_repo, "run", "config.yaml", "--on", "hpc", "--sweep", "lr=0.1,0.5,1.0", "--sweep", "steps=2,3")
    rows = rows_when(grid_repo, 6)
    notes = [note(grid_repo, r["id"]) for r in rows]
    assert len({n["sge"]["job"] for n in notes}) == 1
    assert sorted(n["sge"]["task"] for n in notes) == [1, 2, 3, 4, 5, 6]
    script = Path(notes[0]["sge"]["script"]).read_text()
    assert "#$ -t 1-6" in script and "#$ -tc 2" in script
    assert {r["status"] for r in rows} == {"finished"}
    by_steps = {r["params"]["steps"]: r["metrics"]["val_err"]["count"] for r in rows}
    assert by_steps == {2: 2, 3: 3}


def test_cancel_running_job_and_one_task_of_an_array(grid_repo: Path) -> None:
    (grid_repo / "sleep.yaml").write_text("name: nap\ncommand: echo started {n}; sleep 300\nparams: {n: 1}\n")
    gitexp(grid_repo, "run", "sleep.yaml", "--on", "hpc", "--sweep", "n=1,2")
    rows = wait_for(lambda: [r for r in log_json(grid_repo) if r["status"] == "running"][1:] and log_json(grid_repo),
                    timeout=90)
    first, second = sorted(rows, key=lambda r: note(grid_repo, r["id"])["sge"]["task"])
    out = gitexp(grid_repo, "cancel", first["name"]).stdout
    assert f"cancelled {first['name']}" in out and "qdel" in out
    wait_for(lambda: {r["id"]: r["status"] for r in log_json(grid_repo)}[first["id"]] == "killed", timeout=60)
    assert {r["id"]: r["status"] for r in log_json(grid_repo)}[second["id"]] == "running"
    gitexp(grid_repo, "cancel", second["name"])
    statuses = {r["status"] for r in rows_when(grid_repo, 2, ("killed",), timeout=60)}
    assert statuses == {"killed"}
    proc = gitexp(grid_repo, "cancel", second["name"], check=False)
    assert proc.returncode == 2 and "nothing to cancel" in proc.stderr


def test_pending_job_shows_grid_engine_state_and_cancels(grid_repo: Path) -> None:
    (grid_repo / "wide.yaml").write_text("name: wide\ncommand: echo never\nrequires: {cpus: 7}\n")
    gitexp(grid_repo, "remote", "add", "narrow", "--runner", "sge", "--queue", "all.q", "--pe", "smp")
    gitexp(grid_repo, "run", "wide.yaml", "--on", "narrow")  # 7 slots: all.q has 4, it waits
    queue = gitexp(grid_repo, "queue", "--on", "narrow").stdout
    assert "wide" in queue and "Grid Engine: qw" in queue, queue
    gitexp(grid_repo, "cancel", "wide")
    [row] = rows_when(grid_repo, 1, ("killed",), timeout=30)
    assert "qdel" in row.get("reason", "") or row["status"] == "killed"


def test_job_that_dies_without_executor_shows_qacct(grid_repo: Path) -> None:
    gitexp(grid_repo, "remote", "add", "broken", "--runner", "sge", "--queue", "all.q", "--python", "/nonexistent/python3")
    gitexp(grid_repo, "run", "config.yaml", "--on", "broken")
    row = wait_for(lambda: [r for r in log_json(grid_repo) if r["status"] == "failed"], timeout=90, interval=1)[0]
    assert "Grid Engine: exit_status 127" in gitexp(grid_repo, "show", row["id"][:8]).stdout


def test_time_limit_sends_warning_then_records_timeout(grid_repo: Path) -> None:
    (grid_repo / "long.py").write_text(
        "import os, signal, time, gitexp\n"
        "def warned(*_):\n"
        "    print('got the warning, checkpointing', flush=True)\n"
        "    open(os.path.join(gitexp.output_dir(), 'ckpt'), 'w').write('x')\n"
        "signal.signal(signal.SIGUSR1, warned)\n"
        "for i in range(600):\n"
        "    gitexp.log(step=i, loss=1.0 / (i + 1))\n"
        "    time.sleep(1)\n")
    (grid_repo / "long.yaml").write_text("command: python long.py\nrequires: {time: 1m}\n")
    gitexp(grid_repo, "run", "long.yaml", "--on", "hpc")
    [row] = rows_when(grid_repo, 1, ("timeout",), timeout=150)
    shown = json.loads(gitexp(grid_repo, "show", "long", "--format", "json").stdout)
    assert "got the warning" in shown["log_tail"]
    assert [o["path"] for o in shown["outputs"]] == ["ckpt"]
    assert row["metrics"]["loss"]["count"] > 20
    script = Path(note(grid_repo, row["id"])["sge"]["script"]).read_text()
    assert "#$ -l h_rt=60,s_rt=30" in script


def test_auto_resume_after_the_time_limit_resubmits_from_the_node(grid_repo: Path) -> None:
    (grid_repo / "ck.py").write_text(
        "import os, sys, time, gitexp\n"
        "if os.environ.get('GITEXP_RESUME_FROM'):\n"
        "    print('resumed from', os.environ['GITEXP_RESUME_FROM'], flush=True)\n"
        "    sys.exit(0)\n"
        "path = os.path.join(gitexp.output_dir(), 'c2.json')\n"
        "open(path, 'w').write('{}')\n"
        "gitexp.checkpoint(path, step=2)\n"
        "time.sleep(600)\n")
    (grid_repo / "ck.yaml").write_text("name: ck\ncommand: python ck.py\nrequires: {time: 40s}\nauto_resume: 1\n")
    gitexp(grid_repo, "run", "ck.yaml", "--on", "hpc")

    def both() -> list:
        rows = log_json(grid_repo, "--attempts")
        return rows if [r["status"] for r in rows] == ["timeout", "finished"] else []
    first, second = wait_for(both, timeout=150, interval=1)
    again = note(grid_repo, second["id"])
    assert again["auto_resumes"] == 1 and again["resume"]["step"] == 2 and again["runner"] == "sge"
    assert again["sge"]["job"] != note(grid_repo, first["id"])["sge"]["job"]  # a new job, qsub from the node
    assert "resumed from" in json.loads(gitexp(grid_repo, "show", second["id"][:12], "--format", "json").stdout)["log_tail"]


@pytest.mark.parametrize("case", ["unknown queue", "unknown pe", "undefined resource", "qsub rejects",
                                  "slurm setting", "bad time", "cpus without pe", "qsub missing"])
def test_sge_bad_input_records_nothing(case: str, grid_repo: Path, tmp_path: Path) -> None:
    env = None
    config = "config.yaml"
    add = ["remote", "add", "hpc", "--runner", "sge", "--queue", "all.q"]
    if case == "unknown queue":
        add[-1], expected = "nope.q", 'qsub refused the job for run target \'hpc\': Job was rejected because job requests unknown queue "nope.q"'
    elif case == "unknown pe":
        add += ["--pe", "nope"]
        (grid_repo / "cpus.yaml").write_text("command: echo hi\nrequires: {cpus: 2}\n")
        config, expected = "cpus.yaml", 'the requested parallel environment "nope" does not exist'
    elif case == "undefined resource":
        add += ["--gpu-resource", "gpu"]
        (grid_repo / "gpu.yaml").write_text("command: echo hi\nrequires: {gpus: 1}\n")
        config, expected = "gpu.yaml", 'unknown resource "gpu"'
    elif case == "qsub rejects":
        add += ["--qsub", "-l no_such_thing=1"]
        expected = 'unknown resource "no_such_thing"'
    elif case == "slurm setting":
        add += ["--partition", "debug"]
        expected = "'partition' is a setting of the slurm runner, not of the sge runner"
    elif case == "bad time":
        (grid_repo / "bad.yaml").write_text("command: echo hi\nrequires: {time: soon}\n")
        config, expected = "bad.yaml", "time"
    elif case == "cpus without pe":
        (grid_repo / "cpus.yaml").write_text("command: echo hi\nrequires: {cpus: 2}\n")
        config, expected = "cpus.yaml", "names no parallel environment"
    else:
        bindir = tmp_path / "bin"
        bindir.mkdir()
        os.symlink(shutil.which("git"), bindir / "git")
        env, expected = {"PATH": str(bindir)}, "qsub not found on PATH"
    before = all_refs(grid_repo)
    proc = gitexp(grid_repo, *add, check=False)
    if case == "slurm setting":
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and expected in proc.stderr
        return
    assert proc.returncode == 0, proc.stderr
    before = all_refs(grid_repo)
    proc = gitexp(grid_repo, "run", config, "--on", "hpc", check=False, env=env)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], proc.stderr
    assert all_refs(grid_repo) == before
    assert " hqw " not in our_jobs()  # nothing left held


def test_sge_settings_checked_by_their_runner(repo: Path) -> None:
    proc = gitexp(repo, "remote", "add", "hpc", "--runner", "slurm", "--queue", "all.q", check=False)
    assert proc.returncode == 2 and "'queue' is a setting of the sge runner, not of the slurm runner" in proc.stderr
    gitexp(repo, "remote", "add", "hpc", "--runner", "sge", "--queue", "all.q", "--time", "4h", "--qsub", "-l scratch=1G")
    listed = json.loads(gitexp(repo, "remote", "list", "--format", "json").stdout)
    assert listed["hpc"] == {"runner": "sge", "queue": "all.q", "time": "4h", "qsub": ["-l scratch=1G"]}


# -- parsers, on what qstat/qacct/notes may hold ------------------------------------------------------
QSTAT = """<?xml version='1.0'?>
<job_info><queue_info><Queue-List><job_list state="running"><JB_job_number>12</JB_job_number>
<state>r</state></job_list></Queue-List></queue_info>
<job_info><job_list state="pending"><JB_job_number>13</JB_job_number><state>hqw</state>
<tasks>2-6:2</tasks></job_list><job_list state="pending"><JB_job_number>x;rm</JB_job_number>
<state>qw</state></job_list><job_list state="pending"><JB_job_number>14</JB_job_number>
<state>Eqw</state><tasks>1</tasks></job_list></job_info></job_info>"""


def test_qstat_xml_parsed_with_array_ranges() -> None:
    table = parse_qstat(QSTAT)
    assert table == {("12", None): "r", ("13", 2): "hqw", ("13", 4): "hqw", ("13", 6): "hqw", ("14", 1): "Eqw"}
    assert sge_status("pending", "hqw")[0] == "pending" and sge_status("running", "r")[0] == "running"
    assert sge_status("pending", "r")[0] == "starting"
    assert sge_status("running", None)[0] == "lost"
    assert "error state" in (sge_status("pending", "Eqw")[1] or "")


def test_qacct_records_by_task_and_what_they_mean() -> None:
    text = ("==============================================================\n"
            "qname        all.q\njobnumber    7\ntaskid       undefined\nfailed       37  : qmaster enforced h_rt limit\n"
            "exit_status  137\n"
            "==============================================================\n"
            "jobnumber    8\ntaskid       2\nfailed       0\nexit_status  127\n")
    records = parse_qacct(text)
    assert ended_as({}, records[None])[0] == "timeout"
    assert ended_as({}, records[2]) == ("failed", "Grid Engine: exit_status 127")
    assert ended_as({"cancel_requested": True}, records[2])[0] == "killed"
    assert ended_as({}, {"failed": "0", "exit_status": "0"})[0] == "lost"


@pytest.mark.parametrize("handle", [{"job": "-u root"}, {"job": "12 13"}, {"job": "12", "task": 0},
                                    {"job": "12", "task": "3"}, {"job": True}, "12", {"job": "1" * 30}])
def test_hostile_job_ids_never_reach_qdel(handle: Any) -> None:
    assert job_of({"sge": handle}) is None


def test_plain_job_ids_pass() -> None:
    ref = job_of({"sge": {"job": "12", "task": 3}})
    assert ref is not None and ref.argv() == ["12", "-t", "3"]
    plain = job_of({"sge": {"job": 12}})
    assert plain is not None and plain.argv() == ["12"]


# -- over the ssh transport: Grid Engine on a cluster's login node, from a laptop --------------------
def test_sge_runner_over_ssh(laptop: Path, ssh_host: Any, far_python: str, sge: None,  # noqa: F811
                             tmp_path: Path) -> None:
    from test_ssh_remote import add_target, far_finished

    far = tmp_path / "cluster"
    add_target(laptop, ssh_host, "hpc", far, far_python, "--runner", "sge", "--queue", "all.q")
    gitexp(laptop, "remote", "setup", "hpc")
    proc = gitexp(laptop, "run", "config.yaml", "--on", "hpc", "--sweep", "lr=0.1,0.5")
    shas = proc.stdout.split()
    rows = far_finished(far, 2, timeout=180)
    assert {r["runner"] for r in rows} == {"sge"}
    gitexp(laptop, "pull", "hpc")
    mine = log_json(laptop)
    assert {r["id"] for r in mine} == set(shas) and {r["status"] for r in mine} == {"finished"}
    handle = note(laptop, shas[0])["sge"]
    assert handle["job"].isdigit() and handle["task"] in (1, 2)
    assert "#$ -t 1-2" in json.loads(git(laptop, "notes", "--ref=exps-details", "show", shas[0]))["batch_script"]
