"""Resource sampling (a real process tree; NVML through a fake pynvml module), the bounded
history, the notes it writes, git exp top (here and --on an ssh target's agent) and hosts."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import types
from pathlib import Path
from typing import Any, Dict, List

import pytest

from conftest import git, gitexp, log_json, make_repo, wait_for


def fake_nvml(gpus: List[Dict[str, Any]], fail_init: bool = False) -> types.ModuleType:
    """A stand-in for nvidia-ml-py's pynvml (the process boundary to the driver)."""
    module = types.ModuleType("pynvml")
    calls: List[str] = []

    def init() -> None:
        calls.append("init")
        if fail_init:
            raise RuntimeError("NVML Shared Library Not Found")

    module.nvmlInit = init  # type: ignore[attr-defined]
    module.nvmlShutdown = lambda: calls.append("shutdown")  # type: ignore[attr-defined]
    module.nvmlDeviceGetCount = lambda: len(gpus)  # type: ignore[attr-defined]
    module.nvmlDeviceGetHandleByIndex = lambda i: gpus[i]  # type: ignore[attr-defined]
    module.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(  # type: ignore[attr-defined]
        used=h["used"], total=h["total"], free=h["total"] - h["used"])
    module.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=h["util"])  # type: ignore[attr-defined]
    module.nvmlDeviceGetComputeRunningProcesses = lambda h: [  # type: ignore[attr-defined]
        types.SimpleNamespace(pid=pid, usedGpuMemory=mem) for pid, mem in h["procs"]]
    module.calls = calls  # type: ignore[attr-defined]
    return module


CHILDREN = textwrap.dedent('''
    import subprocess, sys, time
    block = bytearray(60 * 1024 * 1024)  # 60 MB resident in the parent
    child = subprocess.Popen([sys.executable, "-c",
        "import time; b = bytearray(40 * 1024 * 1024); end = time.time() + 30\\nwhile time.time() < end: pass"])
    print("ready", flush=True)
    time.sleep(30)
''')


def test_sampler_sums_the_process_tree_and_reads_gpus_through_nvml(monkeypatch: pytest.MonkeyPatch,
                                                                    tmp_path: Path) -> None:
    from gitexp import monitor

    proc = subprocess.Popen([sys.executable, "-c", CHILDREN], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        import psutil

        child = psutil.Process(proc.pid).children()[0].pid
        gpus = [{"used": 2e9, "total": 16e9, "util": 35, "procs": [(child, 1.5e9), (999999, 4e9)]},
                {"used": 15.8e9, "total": 16e9, "util": 99, "procs": []}]
        monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(gpus))
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
        sampler = monitor.Sampler(proc.pid, str(tmp_path / "out" / "not-yet"))
        sampler.sample()
        wait_for(lambda: sampler.sample()["cpu"] > 50, timeout=10)  # the busy child, measured between samples
        sample = sampler.sample()
        # Each process's own RSS now: the sum is the tree's (absolute sizes vary: a busy host's
        # kernel may reclaim the cold pages of the two arrays).
        own, kid = (psutil.Process(p).memory_info().rss for p in (proc.pid, child))
    finally:
        proc.kill()
        proc.wait()
    assert sample["procs"] == 2 and sample["rss"] > max(own, kid)
    assert abs(sample["rss"] - (own + kid)) <= 0.25 * (own + kid)
    assert sample["ram_total"] > sample["ram_used"] > 0 and sample["disk_free"] > 0  # an existing parent's disk
    assert sample["gpu0_mem"] == 2e9 and sample["gpu0_util"] == 35 and sample["gpu0_mem_total"] == 16e9
    assert sample["gpu0_mem_run"] == 1.5e9  # only the run's own processes
    assert "gpu1_util" not in sample  # CUDA_VISIBLE_DEVICES=0
    sampler.gpus.close()
    assert sys.modules["pynvml"].calls == ["init", "shutdown"]  # type: ignore[attr-defined]


def test_without_nvml_the_gpu_fields_are_absent_and_nothing_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    from gitexp import monitor

    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml([], fail_init=True))
    sample = monitor.Sampler(999999999, "/").sample()  # no such process either
    assert not [k for k in sample if k.startswith("gpu")] and sample["procs"] == 0 and sample["rss"] == 0
    monkeypatch.setitem(sys.modules, "pynvml", None)  # not installed: import fails
    assert not monitor.Gpus().available


def test_history_keeps_the_whole_run_in_bounded_space() -> None:
    from gitexp.monitor import History, peaks

    history = History(limit=100)
    for i in range(10_000):
        history.add({"time": float(i), "cpu": float(i % 7), "disk_free": 1e9 - i})
    assert len(history.samples) <= 101 and history.samples[0]["time"] == 0.0
    assert history.samples[-1]["time"] > 9_800  # the end is there too, evenly spaced
    got = peaks(history.samples)
    assert got["cpu_peak"] == 6.0 and got["disk_free_min"] <= 1e9 - 9_800


SLOW = textwrap.dedent('''
    import time, gitexp
    for step in range(1, 1000):
        gitexp.log(step=step, loss=1.0 / step)
        time.sleep(0.02)
        if step == 60:
            open("reached", "w").close()
''')


@pytest.fixture
def running(tmp_path: Path) -> Any:
    config = "name: slow\ncommand: python train.py\nparams: {steps: 999}\nmetrics: {loss: {goal: minimize}}\n"
    repo = make_repo(tmp_path / "repo", {"train.py": SLOW, "c.yaml": config})
    env = {"GITEXP_SAMPLE_INTERVAL": "0.5"}
    gitexp(repo, "run", "c.yaml", "--detach", env=env)
    runs = repo / ".git" / "gitexp" / "runs"
    wait_for(lambda: list(runs.glob("*/wt/reached")) and list(runs.glob("*/resources.json")), timeout=60)
    yield repo
    gitexp(repo, "cancel", "slow", check=False)


def test_top_shows_step_rate_eta_metrics_and_resources_of_a_running_run(running: Path) -> None:
    report = json.loads(gitexp(running, "top", "--format", "json").stdout)
    [row] = report["rows"]
    assert row["name"] == "slow" and row["status"] == "running"
    assert row["step"] >= 20 and row["budget"] == 999 and 5 < row["rate"] < 60 and row["eta"] > 0
    assert row["metrics"]["loss"] > 0
    assert row["resources"]["rss"] > 0 and "cpu" in row["resources"]
    text = gitexp(running, "top", "--once").stdout
    assert "1 running" in text and "slow" in text and "/999" in text and "loss=" in text


def test_top_on_an_ssh_target_asks_its_agent_in_one_round_trip(running: Path, tmp_path: Path) -> None:
    from gitexp.commands import monitor_cmd
    from gitexp.notes import Store
    from gitexp.repo import Repo
    from gitexp.runners.ssh import SshRunner
    from gitexp.targets import Target
    from fake_transport import FakeCall, FakeTransport

    here = make_repo(tmp_path / "client")
    fake = FakeTransport("ssh:gpu3")

    def agent(call: FakeCall) -> "subprocess.CompletedProcess[bytes]":  # the real far side, in the other repo
        return subprocess.run([sys.executable, "-m", "gitexp", *call.argv[3:]], cwd=running, input=call.input,
                              capture_output=True)

    fake.on([sys.executable, "-m", "gitexp", "_agent", "top"], respond=agent)
    r = Repo.discover(str(here))
    runner = SshRunner(r, Store(r), Target("gpu3", "local", {"runner": "local", "host": "gpu3", "path": "/srv/p",
                                                              "python": sys.executable}), fake)
    report = runner.agent("top", {})
    assert [c.argv[3:] for c in fake.calls] == [["_agent", "top"]]
    assert [row["name"] for row in report["rows"]] == ["slow"]
    assert monitor_cmd._cells(report["rows"][0])[1] == "slow"


def test_finished_run_has_peaks_in_the_summary_and_samples_in_the_details(tmp_path: Path) -> None:
    train = "import time, gitexp\nfor s in range(1, 16):\n    gitexp.log(step=s, loss=1/s)\n    time.sleep(0.1)\n"
    repo = make_repo(tmp_path / "repo", {"train.py": train, "c.yaml": "name: r\ncommand: python train.py\n"})
    gitexp(repo, "run", "c.yaml", env={"GITEXP_SAMPLE_INTERVAL": "0.2"})
    summary = json.loads(git(repo, "notes", "--ref=exps", "show", "refs/exps/r"))
    peaks = summary["resources"]
    assert peaks["rss_peak"] > 0 and peaks["disk_free_min"] > 0 and peaks["samples"] >= 2
    details = json.loads(git(repo, "notes", "--ref=exps-details", "show", "refs/exps/r"))
    samples = details["resources"]["samples"]
    assert len(samples) == peaks["samples"] and {"time", "cpu", "rss", "ram_used", "disk_free"} <= set(samples[0])
    assert "resources (peaks of" in gitexp(repo, "show", "r").stdout

    git(repo, "commit", "-q", "--allow-empty", "-m", "again")
    gitexp(repo, "run", "c.yaml", env={"GITEXP_SAMPLE_INTERVAL": "0"})  # sampling off
    latest = max(log_json(repo), key=lambda e: e["created"])
    assert "resources" not in json.loads(git(repo, "notes", "--ref=exps", "show", latest["id"]))


def test_a_hostile_resources_note_makes_the_summary_invalid_not_a_crash(tmp_path: Path) -> None:
    from gitexp.summary import summary_problem

    assert summary_problem({"resources": {"rss_peak": "lots"}}) == "resources 'rss_peak' must be a number"
    assert summary_problem({"alerts": [{"rule": ["x"]}]}) is not None
    assert summary_problem({"notify": {"sent": -1}}) is not None
    assert summary_problem({"alerts": [{"rule": "nan", "message": "m", "action": "stop", "time": 1.0}],
                            "resources": {"cpu_peak": 1.5}, "notify": {"sent": 2, "failed": 0}}) is None


def test_hosts_lists_this_machine(repo: Path) -> None:
    report = json.loads(gitexp(repo, "hosts", "--format", "json").stdout)
    res = report["here"]["resources"]
    assert res["ram_total"] > 0 and res["disk_free"] > 0 and res["cpus"] >= 1
    text = gitexp(repo, "hosts").stdout
    assert "RAM" in text and "disk" in text and "GPUs" in text
    proc = gitexp(repo, "top", "--on", "nowhere", check=False)
    assert proc.returncode == 2 and "nowhere" in proc.stderr
