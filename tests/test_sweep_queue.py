"""Sweeps, the durable queue, workers, priorities, cancel, retry."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from conftest import all_refs, assert_fsck_clean, git, gitexp, log_json, wait_for


def queue_json(repo: Path) -> dict:
    return json.loads(gitexp(repo, "queue", "--format", "json", "--all").stdout)


def test_grid_sweep_from_the_command_line_runs_every_point(repo: Path) -> None:
    proc = gitexp(repo, "run", "config.yaml", "--sweep", "lr=0.1,0.5,1.0", "--sweep", "steps=2,3", "-j", "2")
    rows = log_json(repo)
    assert len(rows) == 6 and {r["status"] for r in rows} == {"finished"}
    assert len({r["group"] for r in rows}) == 1 and rows[0]["group"] == "g1"  # the config's group
    assert {(r["params"]["lr"], r["params"]["steps"]) for r in rows} == {
        (lr, s) for lr in (0.1, 0.5, 1.0) for s in (2, 3)}
    assert "toy-lr=0.5,steps=3" in {r["name"] for r in rows}
    assert len(log_json(repo, "--group", rows[0]["group"])) == 6
    assert "6 finished" in proc.stderr
    assert git(repo, "for-each-ref", "refs/exps-queue/") == ""


def test_sweep_section_random_is_seeded_and_zip_varies_together(repo: Path) -> None:
    (repo / "rand.yaml").write_text(
        "command: python train.py {lr} {steps}\nparams: {lr: 0.1, steps: 1}\n"
        "sweep:\n  random:\n    samples: 5\n    seed: 7\n    params:\n"
        "      lr: {loguniform: [0.001, 1.0]}\n      steps: {choice: [1, 2, 3]}\n")
    def points() -> list:  # name and params; the group (a new sweep id) differs each time
        return [line.rsplit(None, 1)[0] for line in gitexp(repo, "run", "rand.yaml", "--dry-run").stdout.splitlines()]
    assert points() == points()
    first = gitexp(repo, "run", "rand.yaml", "--dry-run").stdout
    assert first.count("rand-lr=") == 5
    values = [float(line.split("lr=")[2].split()[0]) for line in first.splitlines()[2:]]
    assert all(0.001 <= v <= 1.0 for v in values) and len(set(values)) == 5
    assert log_json(repo) == []  # dry run recorded nothing
    out = gitexp(repo, "run", "config.yaml", "--sweep", "lr=0.1,0.2", "--sweep", "steps=1,2", "--zip",
                 "--dry-run").stdout
    assert "lr=0.1,steps=1" in out and "lr=0.2,steps=2" in out and "lr=0.1,steps=2" not in out


def test_queue_then_worker_runs_in_priority_then_fifo_order(repo: Path) -> None:
    gitexp(repo, "run", "config.yaml", "--queue", "--name", "first", "-p", "steps=1")
    gitexp(repo, "run", "config.yaml", "--queue", "--name", "second", "-p", "steps=1")
    gitexp(repo, "run", "config.yaml", "--queue", "--name", "urgent", "-p", "steps=1", "--priority", "5")
    q = queue_json(repo)
    assert [i["name"] for i in q["queued"]] == ["urgent", "first", "second"]
    assert len(git(repo, "for-each-ref", "refs/exps-queue/").splitlines()) == 3
    gitexp(repo, "worker", "--until-empty", "--jobs", "1")
    rows = sorted(log_json(repo), key=lambda r: r["started"])
    assert [r["name"] for r in rows] == ["urgent", "first", "second"]
    assert {r["status"] for r in rows} == {"finished"}
    assert queue_json(repo)["queued"] == []


def test_cancel_drops_queued_and_kills_running(repo: Path) -> None:
    (repo / "sleep.yaml").write_text("command: sleep 30\n")
    gitexp(repo, "run", "sleep.yaml", "--queue", "--name", "runs")
    gitexp(repo, "run", "sleep.yaml", "--queue", "--name", "waits")
    gitexp(repo, "cancel", "waits")
    worker = subprocess.Popen([sys.executable, "-m", "gitexp", "worker", "--until-empty"], cwd=repo,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: [r for r in log_json(repo) if r["name"] == "runs" and r["status"] == "running"])
        out = gitexp(repo, "cancel", "runs").stdout
        assert "killed" in out
        assert worker.wait(timeout=30) == 0
    finally:
        worker.kill()
    status = {r["name"]: r["status"] for r in log_json(repo)}
    assert status == {"runs": "killed", "waits": "cancelled"}


def test_run_that_does_not_fit_waits_with_reason(repo: Path) -> None:
    # More than is free, yet no more than the disk holds: "not now", worth waiting for
    # (a requirement larger than the machine could ever give fails at once: test_harden_exec).
    total = shutil.disk_usage(repo).total
    (repo / "huge.yaml").write_text(f"command: echo never\nrequires: {{disk: {total}}}\n")
    gitexp(repo, "run", "huge.yaml", "--queue")
    worker = subprocess.Popen([sys.executable, "-m", "gitexp", "worker", "--until-empty"], cwd=repo,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        item = wait_for(lambda: [i for i in queue_json(repo)["queued"] if i["wait_reason"]])[0]
        assert "not enough free disk" in item["wait_reason"] and "required" in item["wait_reason"]
        assert worker.poll() is None  # still waiting, not failed
        assert "not enough free disk" in gitexp(repo, "queue").stdout
        gitexp(repo, "cancel", "huge")
        assert worker.wait(timeout=30) == 0
    finally:
        worker.kill()
    assert log_json(repo)[0]["status"] == "cancelled"


def test_rm_of_a_queued_experiment_takes_it_off_the_queue(repo: Path) -> None:
    gitexp(repo, "run", "config.yaml", "--queue", "--name", "gone")
    gitexp(repo, "rm", "gone")
    assert git(repo, "for-each-ref", "refs/exps-queue/") == ""
    proc = gitexp(repo, "worker", "--until-empty")
    assert "started 0 experiment(s)" in proc.stderr


def test_detached_sweep_in_a_fresh_repository(repo: Path) -> None:
    proc = gitexp(repo, "run", "config.yaml", "--sweep", "lr=0.1,0.5", "--detach")
    assert len(proc.stdout.split()) == 2
    wait_for(lambda: (lambda rows: len(rows) == 2 and all(r["status"] == "finished" for r in rows))(log_json(repo)))


def test_skip_done_skips_finished_configs(repo: Path) -> None:
    gitexp(repo, "run", "config.yaml", "--sweep", "lr=0.1,0.5")
    proc = gitexp(repo, "run", "config.yaml", "--sweep", "lr=0.1,0.5,1.0", "--skip-done")
    assert "skipping 2 point(s)" in proc.stderr
    assert sorted(r["params"]["lr"] for r in log_json(repo)) == [0.1, 0.5, 1.0]


def test_gpus_one_per_running_experiment(repo: Path, tmp_path: Path) -> None:
    (repo / "gpu.yaml").write_text(
        "command: echo gpu=$CUDA_VISIBLE_DEVICES; sleep 1\nparams: {i: 0}\n"
        "metrics:\n  gpu: {regex: 'gpu=([0-9]+)'}\n")
    gitexp(repo, "run", "gpu.yaml", "--queue", "--sweep", "i=1,2,3,4")
    proc = gitexp(repo, "worker", "--until-empty", "--jobs", "4", "--gpus", "0,1")
    rows = log_json(repo)
    assert sorted(r["metrics"]["gpu"]["last"] for r in rows) == [0, 0, 1, 1]
    # never two at once on one GPU: runs on the same GPU do not overlap in time
    for gpu in (0, 1):
        spans = sorted((r["started"], r["ended"]) for r in rows if r["metrics"]["gpu"]["last"] == gpu)
        assert spans[0][1] <= spans[1][0]
    assert "2 at a time" in proc.stderr


def started_count(marker: Path) -> dict:
    counts: dict = {}
    if marker.exists():
        for line in marker.read_text().split():
            counts[line] = counts.get(line, 0) + 1
    return counts


def test_two_workers_run_each_of_40_exactly_once_and_retry_lost_after_sigkill(repo: Path) -> None:
    marker = repo.parent / "started.txt"
    (repo / "t.yaml").write_text(f"command: echo $GITEXP_EXP_ID >> {marker}; sleep {{s}}\nparams: {{i: 0, s: 0}}\n")
    gitexp(repo, "run", "t.yaml", "--queue", "--sweep", "i=" + ",".join(map(str, range(40))))
    workers = [subprocess.Popen([sys.executable, "-m", "gitexp", "worker", "--until-empty", "--jobs", "2"],
                                cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(2)]
    assert [w.wait(timeout=300) for w in workers] == [0, 0]
    rows = log_json(repo)
    assert len(rows) == 40 and {r["status"] for r in rows} == {"finished"}
    counts = started_count(marker)
    assert len(counts) == 40 and set(counts.values()) == {1}
    assert_fsck_clean(repo)

    # now a worker dies with SIGKILL halfway, its running executors with it
    gitexp(repo, "run", "t.yaml", "--queue", "--group", "second", "-p", "s=2",
           "--sweep", "i=" + ",".join(map(str, range(40))))
    victim = subprocess.Popen([sys.executable, "-m", "gitexp", "worker", "--jobs", "2"], cwd=repo,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    survivor = subprocess.Popen([sys.executable, "-m", "gitexp", "worker", "--until-empty", "--jobs", "2"],
                                cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: len([r for r in log_json(repo, "--group", "second") if r["status"] == "finished"]) >= 6,
             timeout=120)
    def victim_running() -> list:
        """The victim's executors, once one of them is recorded running (so it can be lost)."""
        kids = psutil.Process(victim.pid).children()
        pids = {k.pid for k in kids}
        for row in log_json(repo, "--group", "second", "--filter", "status=running"):
            if json.loads(git(repo, "notes", "--ref=exps", "show", row["id"])).get("pid") in pids:
                return kids
        return []
    for child in wait_for(victim_running, timeout=60, interval=0.05):
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    victim.kill()
    victim.wait()
    assert survivor.wait(timeout=300) == 0
    second = log_json(repo, "--group", "second")
    lost = [r for r in second if r["status"] == "lost"]
    assert lost, [r["status"] for r in second]
    assert {r["status"] for r in second} <= {"finished", "lost"}
    gitexp(repo, "queue", "--retry-lost")
    gitexp(repo, "worker", "--until-empty", "--jobs", "2", timeout=300)
    second = log_json(repo, "--group", "second")
    assert len(second) == 40 and {r["status"] for r in second} == {"finished"}
    assert_fsck_clean(repo)


FAKE_SMI = "#!/bin/sh\necho 'Fake GPU A'\necho 'Fake GPU B'\n"

BAD = {
    "empty sweep section": ("sweep: {}\n", ["run", "s.yaml"], "the sweep is empty"),
    "empty --sweep": ("", ["run", "s.yaml", "--sweep", "lr="], "--sweep lr: no values given"),
    "swept param not in config": ("", ["run", "s.yaml", "--sweep", "lx=1,2"], "'lx' is not a param"),
    "swept param not in config (section)": ("sweep:\n  depth: [1, 2]\n", ["run", "s.yaml", "--queue"],
                                            "s.yaml:6: 'depth' is swept but is not a param"),
    "low > high": ("sweep:\n  random:\n    samples: 3\n    params:\n      lr: {uniform: [1.0, 0.1]}\n",
                   ["run", "s.yaml", "--queue"], "low > high"),
    "zip of unequal lengths": ("", ["run", "s.yaml", "--sweep", "lr=1,2", "--sweep", "steps=1", "--zip"],
                               "same number of values"),
    "--jobs 0 for a worker": ("", ["worker", "--jobs", "0"], "--jobs 0: must be at least 1"),
    "--jobs 0 for a sweep": ("", ["run", "s.yaml", "--sweep", "lr=1,2", "--jobs", "0"], "--jobs 0"),
    "--gpus naming a missing GPU": ("", ["worker", "--gpus", "0,5", "--until-empty"], "no GPU 5 on this machine"),
    "retry naming nothing": ("", ["queue", "retry"], "name the experiments to retry"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_sweep_and_queue_bad_input(case: str, repo: Path, tmp_path: Path) -> None:
    extra, args, expected = BAD[case]
    (repo / "s.yaml").write_text("command: python train.py {lr} {steps}\nparams:\n  lr: 0.1\n  steps: 1\n" + extra)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "nvidia-smi").write_text(FAKE_SMI)
    (bindir / "nvidia-smi").chmod(0o755)
    before = all_refs(repo)
    proc = gitexp(repo, *args, check=False, env={"PATH": f"{bindir}:{os.environ['PATH']}"})
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], proc.stderr
    assert all_refs(repo) == before


def test_retry_of_a_finished_run_is_refused(repo: Path) -> None:
    gitexp(repo, "run", "config.yaml", "-p", "steps=1")
    [row] = log_json(repo)
    assert row["status"] == "finished"
    before = all_refs(repo)
    proc = gitexp(repo, "queue", "retry", row["id"][:10], check=False)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: toy is finished; only lost, failed"), proc.stderr
    assert all_refs(repo) == before and "refs/exps-queue/" not in before
    assert log_json(repo)[0]["status"] == "finished"
