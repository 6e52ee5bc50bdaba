"""Issue #8: a run's points show while it runs, and regex metrics get the program's steps.

* ``log``, ``show`` and ``metrics`` show a running run's points (regex ones included) read from
  its run directory, long before the first progress note (GITEXP_NOTES_INTERVAL, 120 s).
* Regex points are appended to ``<run dir>/captured.jsonl`` as the output arrives.
* ``step: {regex: ...}`` / ``step: latest`` give regex metrics true steps; the match count
  stays the fallback, is recorded as ``step_source: count`` and said by ``show``.
"""
from __future__ import annotations

import json
import os
import socket
import textwrap
from pathlib import Path
from typing import Any, Dict, List

import pytest

from conftest import all_refs, git, gitexp, log_json, wait_for

# The program: a line every 10 steps, and at step 500 a line with the step and two metrics.
REAL_WORLD_PY = textwrap.dedent('''
    for step in range(0, 511):
        if step % 10 == 0:
            print(f"step {step} | loss {3 - step / 1000:.3f} | step time 12ms", flush=True)
        if step % 500 == 0 and step:
            print(f"step {step} train loss: 2.40 test loss: 2.51", flush=True)
''')

REAL_WORLD_METRICS = textwrap.dedent(r'''
    metrics:
      loss: {regex: 'loss ([0-9.]+) \|'}
      test_loss: {regex: 'test loss: ([0-9.]+)'}
''')


def run_dir(repo: Path, sha: str) -> Path:
    return repo / ".git" / "gitexp" / "runs" / sha


def history(repo: Path, ident: str) -> List[Dict[str, Any]]:
    return json.loads(gitexp(repo, "metrics", ident, "--format", "json").stdout)


def steps_of(records: List[Dict[str, Any]], name: str) -> List[Any]:
    return [r["step"] for r in records if name in r]


# -- 1. nothing to see while it runs -------------------------------------------------------
LIVE_PY = textwrap.dedent('''
    import os, sys, time
    import gitexp
    for step in range(3):
        gitexp.log(step=step, api_loss=1.0 / (step + 1))
        print(f"step {step} | loss {2.0 - step / 10:.2f} |", flush=True)
    while not os.path.exists(sys.argv[1]):
        time.sleep(0.05)
''')


def test_running_experiment_shows_its_points_in_log_show_and_metrics(repo: Path, tmp_path: Path) -> None:
    release = tmp_path / "release"
    (repo / "live.py").write_text(LIVE_PY)
    (repo / "live.yaml").write_text(textwrap.dedent(rf'''
        command: python live.py {release}
        step: {{regex: 'step (\d+)'}}
        metrics:
          loss: {{regex: 'loss ([0-9.]+) \|'}}
          api_loss: {{goal: minimize}}
    '''))
    sha = gitexp(repo, "run", "live.yaml", "--detach").stdout.strip()
    try:
        def live_row() -> Any:
            rows = [r for r in log_json(repo) if r["id"] == sha and r["status"] == "running"]
            metrics = rows[0]["metrics"] if rows else {}
            done = metrics.get("loss", {}).get("count") == 3 and metrics.get("api_loss", {}).get("count") == 3
            return rows[0] if done else None

        row = wait_for(live_row, timeout=60)
        assert row["metrics"]["loss"]["last"] == 1.8 and row["metrics"]["loss"]["last_step"] == 2
        assert row["metrics"]["loss"]["best"] == 1.8 and row["metrics"]["loss"]["step_source"] == "regex"
        assert row["metrics"]["api_loss"]["step_source"] == "api"
        # The store was not written more often: the summary note still has no metric.
        note = json.loads(git(repo, "notes", "--ref=exps", "show", sha))
        assert not (note.get("metrics") or {}).get("loss", {}).get("count")
        assert git(repo, "notes", "--ref=exps-metrics", "list", check=False).strip() == ""
        # Regex points are in a file anyone can read.
        captured = [json.loads(line) for line in (run_dir(repo, sha) / "captured.jsonl").read_text().splitlines()]
        assert [(c["metric"], c["step"], c["value"]) for c in captured] == \
            [("loss", 0, 2.0), ("loss", 1, 1.9), ("loss", 2, 1.8)]
        # The table, show (text and JSON) and the whole curve so far.
        table = gitexp(repo, "log", "-m", "loss").stdout
        assert "1.8" in table
        shown = json.loads(gitexp(repo, "show", sha[:10], "--format", "json").stdout)
        assert shown["status"] == "running" and shown["metrics"]["loss"]["count"] == 3
        text = gitexp(repo, "show", sha[:10]).stdout
        assert "api_loss" in text and "1.8" in text
        curve = history(repo, sha[:10])
        assert steps_of(curve, "loss") == [0, 1, 2] and steps_of(curve, "api_loss") == [0, 1, 2]
        assert [r["loss"] for r in curve] == [2.0, 1.9, 1.8]
        csv_text = gitexp(repo, "metrics", sha[:10]).stdout
        assert csv_text.splitlines()[0].startswith("step,time") and len(csv_text.splitlines()) == 4
    finally:
        release.write_text("go")
    wait_for(lambda: [r for r in log_json(repo) if r["id"] == sha and r["status"] == "finished"])
    final = history(repo, sha[:10])
    def points(records: List[Dict[str, Any]]) -> List[Any]:
        return [(r["step"], r["loss"], r["api_loss"]) for r in records]

    assert points(final) == points(curve)  # the notes hold what was shown while it ran
    [row] = log_json(repo)
    assert row["metrics"]["loss"]["step_source"] == "regex" and row["metrics"]["loss"]["count"] == 3


def _experiment(repo: Path, sha: str) -> Any:
    from gitexp.notes import Store
    from gitexp.repo import Repo

    git_repo = Repo.discover(str(repo))
    return git_repo, Store(git_repo).find(sha)


def test_only_runs_in_progress_here_read_files(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gitexp import live

    monkeypatch.chdir(repo)
    gitexp(repo, "run", "config.yaml")
    [row] = log_json(repo)
    git_repo, exp = _experiment(repo, row["id"])
    stale = run_dir(repo, exp.sha) / "captured.jsonl"
    stale.write_text(json.dumps({"metric": "acc", "value": 99.0, "step": 999, "time": 1.0, "src": "count"}) + "\n")
    opened: List[str] = []
    real_open = open
    monkeypatch.setattr("builtins.open", lambda path, *a, **k: (opened.append(str(path)), real_open(path, *a, **k))[1])
    # Ended: the note answers, no file is opened.
    live.refresh(git_repo, [exp], {exp.sha: "finished"})
    assert exp.summary["metrics"]["acc"]["best"] != 99.0 and not opened
    assert live.read(git_repo, exp) is None
    # "running" on another host: not ours either.
    exp.summary.update(status="running", host="elsewhere.example")
    assert live.read(git_repo, exp, "running") is None and not opened
    # "running" here, but the executor named in exec.json is gone: the notes answer.
    exp.summary.update(host=socket.gethostname())
    assert live.read(git_repo, exp, "running") is None
    # Listing 10,000 ended experiments looks at their notes only: not even the repository.
    from gitexp.notes import Experiment

    ended = [Experiment(f"{i:040x}", f"e{i}", {"status": "finished", "host": socket.gethostname()})
             for i in range(10_000)]
    live.refresh(None, ended, {e.sha: "finished" for e in ended})  # type: ignore[arg-type]
    assert all("metrics" not in e.summary for e in ended)


def test_captured_file_tolerates_a_torn_last_line(tmp_path: Path) -> None:
    from gitexp import metrics

    path = tmp_path / "captured.jsonl"
    good = metrics.captured_record("loss", 2.5, 10, 100.0, "regex")
    path.write_text(json.dumps(good) + "\n" + '{"metric": "loss", "value": 2.4, "st')
    assert metrics.read_captured(str(path)) == [good]
    path.write_text(json.dumps(good) + "\n" + json.dumps({"metric": ["x"], "src": "count"}) + "\n")
    assert metrics.read_captured(str(path)) == [good]  # a record of the wrong shape is dropped


def test_a_retry_is_a_new_attempt_with_clean_points_and_the_old_files_stay(repo: Path) -> None:
    gitexp(repo, "run", "config.yaml")
    [row] = log_json(repo)
    sha = row["id"]
    stale = {"metric": "acc", "value": 0.99, "step": 999, "time": 1.0, "src": "count"}
    (run_dir(repo, sha) / "captured.jsonl").write_text(json.dumps(stale) + "\n")
    before = (run_dir(repo, sha) / "captured.jsonl").read_text()
    # An ended attempt never runs again: nothing of it is touched.
    proc = gitexp(repo, "_exec", sha, check=False)
    assert proc.returncode != 0 and "already ended" in proc.stderr
    assert (run_dir(repo, sha) / "captured.jsonl").read_text() == before
    assert log_json(repo)[0]["status"] == "finished"


# -- 2. true steps for regex metrics -----------------------------------------------------------
def test_real_world_example_records_the_printed_steps(repo: Path) -> None:
    (repo / "train2.py").write_text(REAL_WORLD_PY)
    (repo / "real.yaml").write_text("command: python train2.py\nstep: {regex: 'step (\\d+)'}\n" + REAL_WORLD_METRICS)
    gitexp(repo, "run", "real.yaml")
    records = history(repo, "real")
    assert steps_of(records, "loss") == list(range(0, 511, 10))
    assert steps_of(records, "test_loss") == [500]  # on the line that said "step 500"
    at_500 = [r for r in records if r["step"] == 500][0]
    assert at_500["test_loss"] == 2.51 and at_500["loss"] == 2.5
    [row] = log_json(repo)
    assert row["metrics"]["test_loss"]["last_step"] == 500
    assert row["metrics"]["loss"]["step_source"] == "regex" and row["metrics"]["test_loss"]["step_source"] == "regex"
    shown = gitexp(repo, "show", "real").stdout
    assert "match count" not in shown
    # The stored config says where the steps come from.
    stored = git(repo, "show", f"{row['id']}:.gitexp/experiment.yaml")
    assert "step (\\d+)" in stored


def test_without_a_step_source_steps_are_match_counts_and_show_says_so(repo: Path) -> None:
    (repo / "train2.py").write_text(REAL_WORLD_PY)
    (repo / "real.yaml").write_text("command: python train2.py\n" + REAL_WORLD_METRICS)
    gitexp(repo, "run", "real.yaml")
    records = history(repo, "real")
    assert steps_of(records, "loss") == list(range(1, 53))
    assert steps_of(records, "test_loss") == [1]
    [row] = log_json(repo)
    assert row["metrics"]["loss"]["step_source"] == "count"
    shown = gitexp(repo, "show", "real").stdout
    assert "steps: match count for loss, test_loss" in shown


def test_per_metric_step_and_step_group(repo: Path) -> None:
    (repo / "p.py").write_text(textwrap.dedent('''
        print("warmup acc=0.10")
        for epoch in range(1, 4):
            print(f"== epoch {epoch} ==")
            print(f"acc={epoch / 10 + 0.1:.2f} err={1 - epoch / 10:.2f}")
            print(f"iter {epoch * 100} lr=0.{epoch}")
    '''))
    (repo / "p.yaml").write_text(textwrap.dedent(r'''
        command: python p.py
        step: {regex: 'iter (\d+)'}
        metrics:
          acc: {regex: 'acc=([0-9.]+)', goal: maximize, step: {regex: 'epoch (\d+)'}}
          err: {regex: 'err=([0-9.]+)', step: count}
          lr: {regex: 'iter (?P<step>\d+) lr=(?P<value>[0-9.]+)'}
    '''))
    gitexp(repo, "run", "p.yaml")
    records = history(repo, "p")
    assert [(r["step"], r["acc"]) for r in records if "acc" in r] == [(0, 0.1), (1, 0.2), (2, 0.3), (3, 0.4)]
    assert steps_of(records, "err") == [1, 2, 3]
    assert steps_of(records, "lr") == [100, 200, 300]
    [row] = log_json(repo)
    sources = {name: m.get("step_source") for name, m in row["metrics"].items()}
    assert sources == {"acc": "regex", "err": "count", "lr": "group"}


def test_step_latest_takes_the_latest_step_of_any_source(repo: Path) -> None:
    (repo / "l.py").write_text(textwrap.dedent('''
        import time
        import gitexp
        print("eval acc=0.05", flush=True)
        time.sleep(0.05)
        for step in (100, 200, 300):
            gitexp.log(step=step, train_loss=1.0 / step)  # flushed within a second, after the print
            time.sleep(0.05)
            print(f"eval acc={step / 1000}", flush=True)
            time.sleep(0.05)
    '''))
    (repo / "l.yaml").write_text(textwrap.dedent('''
        command: python l.py
        metrics:
          acc: {regex: 'acc=([0-9.]+)', goal: maximize, step: latest}
          train_loss: {}
    '''))
    gitexp(repo, "run", "l.yaml")
    records = history(repo, "l")
    assert [(r["step"], r["acc"]) for r in records if "acc" in r] == [(0, 0.05), (100, 0.1), (200, 0.2), (300, 0.3)]
    assert [r.get("train_loss") is not None for r in records] == [False, True, True, True]
    [row] = log_json(repo)
    assert row["metrics"]["acc"]["step_source"] == "latest" and row["metrics"]["acc"]["best_step"] == 300


@pytest.mark.parametrize("text, line, words", [
    ("metrics:\n  loss: {regex: 'loss ([0-9.]+)', step: {regex: 'step (\\d+'}}\n", 3, "does not compile"),
    ("metrics:\n  loss: {regex: 'loss ([0-9.]+)', step: {regex: 'step \\d+'}}\n", 3, "needs a group"),
    ("metrics:\n  loss: {regex: 'loss ([0-9.]+)', step: newest}\n", 3, "must be latest, count"),
    ("metrics:\n  loss: {regex: 'loss ([0-9.]+)', step: {regx: 'step (\\d+)'}}\n", 3, "unknown key"),
    ("metrics:\n  loss: {goal: minimize, step: latest}\n", 3, "regex metrics only"),
    ("step: latest\nmetrics:\n  loss: {goal: minimize}\n", 2, "no metric has a 'regex'"),
    ("metrics:\n  loss: {regex: 'loss ([0-9.]+)'}\nstep:\n  regex: '('\n", 5, "does not compile"),
    ("metrics:\n  loss: {regex: 'loss ([0-9.]+)'}\nstep: [1]\n", 4, "must be latest, count"),
])
def test_bad_step_settings_are_refused_naming_the_line(repo: Path, text: str, line: int, words: str) -> None:
    (repo / "bad.yaml").write_text("command: echo hi\n" + text)
    before = all_refs(repo)
    proc = gitexp(repo, "run", "bad.yaml", check=False)
    assert proc.returncode == 2, proc.stderr
    assert f"bad.yaml:{line}:" in proc.stderr and words in proc.stderr, proc.stderr
    assert all_refs(repo) == before
    assert not (repo / ".git" / "gitexp" / "runs").exists() or not os.listdir(repo / ".git" / "gitexp" / "runs")


def test_latest_never_takes_a_match_count_for_a_step() -> None:
    from gitexp import metrics

    records = [metrics.captured_record("other", 1.0, 7, 10.0, "count"),  # 7th match: no step
               metrics.captured_record("acc", 0.5, None, 11.0, "latest"),
               metrics.captured_record("acc", 0.6, None, 13.0, "latest")]
    history, sources = metrics.build_history([{"step": 40, "time": 12.0, "loss": 1.0}], records)
    assert [(r["step"], r.get("acc")) for r in history if "acc" in r] == [(0, 0.5), (40, 0.6)]
    assert sources == {"loss": "api", "other": "count", "acc": "latest"}
    summary = metrics.summarize(history, {}, sources)
    assert summary["acc"]["step_source"] == "latest" and summary["acc"]["last_step"] == 40


def test_a_slow_step_regex_is_turned_off_with_a_warning() -> None:
    from gitexp import metrics
    from gitexp.config import parse_config

    config = parse_config("command: x\nstep: {regex: '(a+)+$'}\nmetrics:\n  loss: {regex: 'loss ([0-9.]+)'}\n")
    budget = metrics.MatchBudget(0.05)
    assert budget.install()
    try:
        capture = metrics.RegexCapture(config.metrics, budget)
        with budget.watching():
            warnings = capture.feed("a" * 40 + "! loss 2.5")
            capture.feed("loss 2.4")
    finally:
        budget.uninstall()
    assert warnings and "step regex" in warnings[0] and "off for the rest of this run" in warnings[0]
    assert [(p["step"], p["value"]) for p in capture.points] == [(0, 2.5), (0, 2.4)]
