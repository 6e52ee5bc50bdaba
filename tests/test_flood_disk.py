"""Issue 17 items 12 and 9: a program that floods its output keeps the executor's memory flat
(every point on disk and in git, a summary curve for the views), and a disk that fills up during
a run delays its record without losing it or running it again."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Dict, List

import pytest

from conftest import ROOT, git, gitexp, log_json, make_repo, mounted_tmpfs, wait_for

sys.path.insert(0, str(ROOT))

FLOOD = """\
import sys
n = int(sys.argv[1])
out = sys.stdout
for i in range(n):
    out.write(f"step {i} loss {1.0 / (i + 1) + (9.0 if i == n // 3 else 0.0):.6f}\\n")
"""
FLOOD_CONFIG = """\
name: flood
command: python flood.py {n}
params: {n: 30000}
metrics:
  loss: {regex: 'step (?P<step>[0-9]+) loss (?P<value>[0-9.]+)', goal: minimize}
"""

NAN_FLOOD = """\
import sys
n = int(sys.argv[1])
out = sys.stdout
for i in range(n):
    out.write(f"step {i} loss nan\\n" if i == n // 2 else f"step {i} loss {1.0 / (i + 1):.6f}\\n")
"""


def run_dir(repo: Path, sha: str) -> Path:
    return repo / ".git" / "gitexp" / "runs" / sha


def test_flood_keeps_a_bounded_number_of_points_in_memory_and_every_point_in_git(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gitexp import experiments, history_file, metrics
    from gitexp.config import load_config
    from gitexp.executor import Executor
    from gitexp.notes import Store
    from gitexp.repo import Repo

    repo = make_repo(tmp_path / "r", {"flood.py": FLOOD, "config.yaml": FLOOD_CONFIG})
    monkeypatch.chdir(repo)
    r = Repo.discover(str(repo))
    store = Store(r)
    exp = experiments.create(r, store, load_config(str(repo / "config.yaml")))
    held: List[int] = []
    take = metrics.RegexCapture.take

    def watched_take(self: Any) -> List[Dict[str, Any]]:
        held.append(len(self.points))  # what the executor holds between two batches of output
        return take(self)

    monkeypatch.setattr(metrics.RegexCapture, "take", watched_take)
    assert Executor(r, store, exp.sha).execute() == 0
    n = 30000
    assert sum(held) == n and max(held) <= 65536 // len("step 0 loss 0.000000\n") + 1  # one pipe read at most
    summary = store.summary(exp.sha)
    assert summary["status"] == "finished" and summary["curve"] is True
    loss = summary["metrics"]["loss"]
    assert loss["count"] == n and loss["last_step"] == n - 1 and loss["best"] == pytest.approx(round(1.0 / n, 6))
    full = store.history(exp.sha)  # the whole history, in git
    assert [r["step"] for r in full] == list(range(n))
    curve = history_file.curve_from_details(exp.sha, store.details(exp.sha))
    assert curve is not None and len(curve) <= history_file.CURVE_POINTS
    assert curve[0]["step"] == 0 and curve[-1]["step"] == n - 1
    assert max(r["loss"] for r in curve) == max(r["loss"] for r in full)  # the spike survives
    # The views read the curve; --full reads every point.
    shown = gitexp(repo, "metrics", exp.sha[:10], "--format", "json")
    assert len(json.loads(shown.stdout)) == len(curve) and "--full" in shown.stderr
    assert len(json.loads(gitexp(repo, "metrics", exp.sha[:10], "--format", "json", "--full").stdout)) == n


def test_thinning_a_backlog_keeps_what_the_diagnostics_look_for() -> None:
    from gitexp.watch import thin

    n = 100_000
    records = [{"metric": "loss", "value": 1.0 / (i + 1), "step": i, "time": float(i), "src": "regex"} for i in range(n)]
    records[50_001]["value"] = float("nan")
    records[70_000]["value"] = 99.0  # a spike: the divergence rule's evidence
    records[80_000]["value"] = "oops"  # not a number: the watchers judge it
    records += [{"metric": "acc", "value": i / 1000, "step": i, "time": n + i, "src": "regex"} for i in range(1000)]
    kept = thin(records, 20_000)
    assert len(kept) <= 20_000 + 10 and len(kept) < len(records) // 4
    assert [r["time"] for r in kept] == sorted(r["time"] for r in kept)  # in their order
    loss = [r for r in kept if r["metric"] == "loss"]
    assert loss[0]["step"] == 0 and loss[-1]["step"] == n - 1  # the first and the latest point
    assert any(r["step"] == 50_001 and r["value"] != r["value"] for r in loss)  # the NaN
    assert any(r["step"] == 70_000 and r["value"] == 99.0 for r in loss)  # the highest
    assert any(r["step"] == 80_000 for r in loss)
    assert min(r["value"] for r in loss if isinstance(r["value"], float) and r["value"] == r["value"]) == 1.0 / n
    assert [r for r in kept if r["metric"] == "acc"] == records[n:]  # a small metric is kept whole
    assert thin(records[:10], 100) == records[:10]
    nans = [{"metric": "loss", "value": float("nan"), "step": i, "time": float(i), "src": "regex"} for i in range(n)]
    assert len(thin(nans, 20_000)) <= 20_000  # a diverged program printing NaN for ever: still bounded


def test_watchers_that_fall_behind_a_flood_see_a_thinned_backlog_and_still_alert(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gitexp import experiments, pump, watch
    from gitexp.config import load_config
    from gitexp.executor import Executor
    from gitexp.notes import Store
    from gitexp.repo import Repo

    program = NAN_FLOOD
    config = FLOOD_CONFIG.replace("[0-9.]+)'", "[0-9.]+|nan)'") + "diagnostics:\n  nan: warn\n"
    repo = make_repo(tmp_path / "r", {"flood.py": program, "config.yaml": config})
    monkeypatch.chdir(repo)
    r = Repo.discover(str(repo))
    store = Store(r)
    exp = experiments.create(r, store, load_config(str(repo / "config.yaml")))
    monkeypatch.setattr(pump, "BACKLOG_LIMIT", 1000)
    longest: List[int] = []
    points = watch.Watchers.points

    def slow_points(self: Any, records: List[Dict[str, Any]]) -> None:
        longest.append(len(records))
        threading.Event().wait(0.2)  # a watcher thread starved by a flood
        points(self, records)

    monkeypatch.setattr(watch.Watchers, "points", slow_points)
    assert Executor(r, store, exp.sha).execute() == 0
    assert store.details(exp.sha).get("watch_thinned", 0) > 0
    assert max(longest) <= 1000 + 1000  # a batch at most past the limit, never the whole flood
    alerts = [a for a in store.summary(exp.sha).get("alerts", []) if a["rule"] == "nan"]
    assert alerts and alerts[0]["metric"] == "loss" and "15000" in alerts[0]["message"], alerts
    assert store.summary(exp.sha)["metrics"]["loss"]["count"] == 30000  # every point in git all the same


def test_the_streamed_history_is_the_one_build_history_gives(tmp_path: Path) -> None:
    import random

    import gitexp.watchers  # noqa: F401 - config sections
    from gitexp import history_file, metrics
    from gitexp.config import parse_config

    specs = parse_config("command: x\nmetrics:\n  m0: {goal: minimize}\n  m1: {goal: maximize}\n").metrics
    rng = random.Random(7)
    for trial in range(60):
        api, captured, t = [], [], 1000.0
        for _ in range(rng.randint(0, 200)):
            t += rng.random()
            if rng.random() < 0.3:
                api.append({"step": rng.choice([None, rng.randint(0, 40), "s1"]), "time": rng.choice([t, None]),
                            f"a{rng.randint(0, 1)}": rng.choice([rng.random(), float("nan"), 3])})
            else:
                src = rng.choice(["group", "regex", "latest", "count", "file"])
                captured.append(metrics.captured_record(f"m{rng.randint(0, 2)}", rng.choice([rng.random(), 7]),
                                                        None if src == "latest" else rng.randint(0, 50),
                                                        rng.choice([t, None]), src))
        folder = tmp_path / str(trial)
        folder.mkdir()
        (folder / "m.jsonl").write_text("".join(json.dumps(p) + "\n" for p in api))
        (folder / "c.jsonl").write_text("".join(json.dumps(p) + "\n" for p in captured))
        history, sources = metrics.build_history(api, captured)
        built = history_file.build(str(folder / "m.jsonl"), str(folder / "c.jsonl"), [], specs, str(folder),
                                   sorter_chunk=rng.choice([3, 50, 10000]))
        lines = Path(built.path).read_text().splitlines() if built.path else []
        assert lines == [history_file.dumps(r) for r in history]
        assert json.dumps(built.summaries, sort_keys=True) == json.dumps(metrics.summarize(history, specs, sources),
                                                                          sort_keys=True)


# -- item 9: a full disk ---------------------------------------------------------------------------
FILLER = """\
import os, sys, time
for i in range(40):
    print(f"step {i} loss {1.0 / (i + 1):.4f}", flush=True)
out = os.environ["GITEXP_OUTPUT_DIR"]
try:
    with open(os.path.join(out, "fill"), "wb") as handle:
        while True:
            handle.write(b"x" * 65536)
            handle.flush()
except OSError:
    pass
print("filled the disk", flush=True)
"""
FILLER_CONFIG = """\
name: filler
command: python fill.py
metrics:
  loss: {regex: 'step (?P<step>[0-9]+) loss (?P<value>[0-9.]+)', goal: minimize}
"""


@pytest.fixture
def small_disk(tmp_path: Path) -> Any:
    """A repository on a 12 MB tmpfs (mounting needs root; CI runs as root)."""
    for mount in mounted_tmpfs(tmp_path / "small", "12m"):
        yield make_repo(mount / "r", {"fill.py": FILLER, "config.yaml": FILLER_CONFIG})


def _the_run(repo: Path) -> str:
    (sha,) = [p.name for p in (repo / ".git" / "gitexp" / "runs").iterdir() if len(p.name) == 40]
    return sha


def _fill(repo: Path, sha: str) -> Path:
    return run_dir(repo, sha) / "out" / "fill"


def test_a_full_disk_is_said_at_once_and_the_end_recorded_when_space_returns(small_disk: Path) -> None:
    from gitexp import endstate

    repo = small_disk
    proc = subprocess.Popen([sys.executable, "-m", "gitexp", "run", "config.yaml"], cwd=repo, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "GITEXP_FULL_DISK_WAIT": "300"})
    said: List[str] = []
    assert proc.stderr is not None
    reader = threading.Thread(target=lambda: said.extend(iter(proc.stderr.readline, "")), daemon=True)
    reader.start()
    wait_for(lambda: any("disk is full" in line for line in said), timeout=200)
    line = next(line for line in said if "disk is full" in line)
    sha = _the_run(repo)
    assert str(run_dir(repo, sha)) in line and "waits" in line
    state = wait_for(lambda: endstate.read_state(str(run_dir(repo, sha))), timeout=60)
    assert state["status"] == "finished" and state["fields"]["exit_code"] == 0
    _fill(repo, sha).unlink()  # space comes back: the executor records the end itself
    assert proc.wait(timeout=200) == 0, "".join(said)
    (row,) = log_json(repo)
    assert row["status"] == "finished"
    assert row["metrics"]["loss"]["count"] == 40


def test_an_end_kept_on_a_full_disk_is_recorded_by_the_next_command_and_never_run_again(small_disk: Path) -> None:
    repo = small_disk
    env = {"GITEXP_FULL_DISK_WAIT": "3"}
    proc = gitexp(repo, "run", "config.yaml", check=False, env=env, timeout=300)
    assert proc.returncode != 0 and "disk is full" in proc.stderr and "never runs again" in proc.stderr
    sha = _the_run(repo)
    assert json.loads((run_dir(repo, sha) / "end.json").read_text())["status"] == "finished"
    retried = gitexp(repo, "queue", "--retry-lost", check=False)  # the disk still full: kept, not run
    assert "never run again" in retried.stdout + retried.stderr
    assert not git(repo, "for-each-ref", "refs/exps-queue/").strip()
    _fill(repo, sha).unlink()
    (row,) = log_json(repo)  # the next command that looks records it
    assert row["status"] == "finished" and row["metrics"]["loss"]["count"] == 40
    assert len(json.loads(gitexp(repo, "metrics", sha[:10], "--format", "json").stdout)) == 40
    assert "running" not in (run_dir(repo, sha) / "output.log").read_text().split("filled the disk")[-1]


def test_fsck_repair_records_an_end_kept_on_disk(small_disk: Path) -> None:
    repo = small_disk
    proc = gitexp(repo, "run", "config.yaml", check=False, env={"GITEXP_FULL_DISK_WAIT": "2"}, timeout=300)
    assert proc.returncode != 0
    sha = _the_run(repo)
    _fill(repo, sha).unlink()
    repaired = gitexp(repo, "fsck", "--repair")
    assert "recorded filler" in repaired.stdout and "finished" in repaired.stdout
    summary = json.loads(git(repo, "notes", "--ref=exps", "show", sha))
    assert summary["status"] == "finished" and summary["metrics"]["loss"]["count"] == 40
