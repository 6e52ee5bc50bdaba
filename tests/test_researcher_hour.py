"""Issue #17, "what a researcher meets every hour" (items 16-21, 23-25): exports that keep every
metric, commands that default to the latest experiment, the command as written in the log,
readable plots and reports, resource samples of short runs, notify templates checked at config
time and webhooks that cannot hold a run, sweeps that keep their group, params that keep their
type, and step budgets named like real trainers name them."""
from __future__ import annotations

import csv
import io
import json
import socket
import textwrap
import time
from pathlib import Path
from typing import Any, Dict


import pytest

from conftest import git, gitexp, log_json, make_repo

TYPED_TRAIN = textwrap.dedent('''
    import sys
    lr, steps = sys.argv[1], sys.argv[2]
    assert "." in lr, f"lr must be a float, got {lr!r}"   # like a trainer that asserts on the type
    assert steps.isdigit(), f"steps must be an int, got {steps!r}"
    for step in range(1, int(steps) + 1):
        print(f"step {step} loss={float(lr) / step:.4f}", flush=True)
''')

TYPED_CONFIG = textwrap.dedent('''
    name: typed
    command: python train.py {lr} {steps}
    params:
      lr: 0.1
      steps: 3
    metrics:
      loss: {regex: 'loss=([0-9.]+)', goal: minimize}
    step: {regex: 'step (\\d+)'}
''')


def run_ok(repo: Path, *args: str, env: Dict[str, str] | None = None) -> Any:
    return gitexp(repo, "run", *args, env=env)


# -- 16: csv and json export every metric ------------------------------------------------------------
def test_log_csv_exports_every_metric(repo: Path) -> None:
    run_ok(repo, "config.yaml")
    rows = list(csv.reader(io.StringIO(gitexp(repo, "log", "--format", "csv").stdout)))
    header = rows[0]
    for metric in ("val_err", "loss", "acc"):  # three metrics with a goal: the table shows two
        assert f"{metric}_best" in header and f"{metric}_last" in header, header
    acc = rows[1][header.index("acc_best")]
    assert acc and float(acc) > 0
    data = log_json(repo)
    assert set(data[0]["metrics"]) >= {"val_err", "loss", "acc"}
    chosen = list(csv.reader(io.StringIO(gitexp(repo, "log", "--format", "csv", "-m", "acc").stdout)))[0]
    assert "acc_best" in chosen and "loss_best" not in chosen  # -m still chooses


# -- 23: a sweep keeps the config's group; an unknown group is bad input -------------------------------
def test_sweep_keeps_the_config_group_and_unknown_group_is_exit_2(repo: Path) -> None:
    run_ok(repo, "config.yaml", "--sweep", "lr=0.1,0.5", "-j", "2")
    rows = log_json(repo)
    assert {r["group"] for r in rows} == {"g1"}, rows
    assert len(log_json(repo, "--group", "g1")) == 2
    bad = gitexp(repo, "log", "--group", "g2", check=False)
    assert bad.returncode == 2, bad
    assert bad.stdout == ""
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and "no experiment in group 'g2'" in lines[0] and "g1" in lines[0], bad.stderr


# -- 24: a value keeps the type of the config's default; diff and compare agree -------------------------
def test_param_override_keeps_the_default_type(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "typed", {"train.py": TYPED_TRAIN, "config.yaml": TYPED_CONFIG})
    run_ok(repo, "config.yaml", "-p", "lr=10", "-p", "steps=2.0")
    run_ok(repo, "config.yaml", "--sweep", "lr=1,2", "--name", "sw")
    rows = log_json(repo)
    assert [r["status"] for r in rows] == ["finished"] * 3, [(r["status"], r["reason"]) for r in rows]
    for row in rows:
        assert isinstance(row["params"]["lr"], float) and isinstance(row["params"]["steps"], int)
    note = gitexp(repo, "run", "config.yaml", "-p", "steps=2.5", "--dry-run")
    assert "steps" in note.stderr and "float" in note.stderr  # says that the type changed


def test_diff_and_compare_agree_on_equal_params(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "eq", {"train.py": TYPED_TRAIN.replace('assert "." in lr, f"lr must be a float, got {lr!r}"', "pass"),
                                       "a.yaml": TYPED_CONFIG.replace("lr: 0.1", "lr: 10"),
                                       "b.yaml": TYPED_CONFIG.replace("lr: 0.1", "lr: 10.0")})
    run_ok(repo, "a.yaml", "--name", "int")
    run_ok(repo, "b.yaml", "--name", "float")
    diff = gitexp(repo, "diff", "int", "float").stdout
    compare = json.loads(gitexp(repo, "compare", "int", "float", "--format", "json").stdout)
    assert "lr" in compare["params"] and "lr" not in compare["same_params"]
    assert "params: identical" not in diff and "10.0" in diff, diff
    text = gitexp(repo, "compare", "int", "float").stdout
    assert "10.0" in text


# -- 17: show, logs and metrics without an id use the latest experiment ---------------------------------
def test_show_logs_metrics_default_to_the_latest_experiment(repo: Path) -> None:
    run_ok(repo, "config.yaml", "--name", "older")
    time.sleep(1.1)  # created times a second apart
    run_ok(repo, "config.yaml", "-p", "steps=3", "--name", "newer")
    newest = next(r for r in log_json(repo) if r["name"] == "newer")
    shown = json.loads(gitexp(repo, "show", "--format", "json").stdout)
    assert shown["id"] == newest["id"]
    logs = gitexp(repo, "logs")
    assert "step 3 acc=" in logs.stdout and "step 4" not in logs.stdout
    assert "newer" in logs.stderr  # which one, on stderr
    rows = list(csv.DictReader(io.StringIO(gitexp(repo, "metrics").stdout)))
    assert [int(float(r["step"])) for r in rows] == [1, 2, 3]


def test_show_without_id_in_an_empty_repository_is_exit_2(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "empty")
    for command in ("show", "logs", "metrics"):
        proc = gitexp(repo, command, check=False)
        assert proc.returncode == 2 and proc.stdout == "", (command, proc)
        assert len(proc.stderr.strip().splitlines()) == 1 and "no experiments" in proc.stderr


# -- 18: the log's first line is the command as written, with values --------------------------------------
def test_logs_first_line_is_the_command_with_values(repo: Path) -> None:
    run_ok(repo, "config.yaml", "-p", "lr=0.25")
    first = gitexp(repo, "logs").stdout.splitlines()[0]
    assert first.startswith("gitexp: running python train.py 0.25 5 in "), first
    assert "GITEXP_P_" not in first and "\\n" not in first
    from gitexp.notify import log_tail

    tail, _trace = log_tail(str(repo / ".git" / "gitexp" / "runs" / log_json(repo)[0]["id"] / "output.log"))
    assert tail.splitlines()[0] == first  # what a crash mail quotes


# -- 20: metrics csv has elapsed seconds ---------------------------------------------------------------
def test_metrics_csv_has_elapsed_seconds(repo: Path) -> None:
    run_ok(repo, "config.yaml")
    rows = list(csv.DictReader(io.StringIO(gitexp(repo, "metrics").stdout)))
    assert rows and "elapsed_s" in rows[0]
    elapsed = [float(r["elapsed_s"]) for r in rows]
    assert all(0 <= e < 60 for e in elapsed) and elapsed == sorted(elapsed)
    assert abs(float(rows[0]["time"]) - float(rows[0]["elapsed_s"]) - float(rows[-1]["time"]) + float(rows[-1]["elapsed_s"])) < 1e-2


# -- 21: notify templates are rendered at config time; a silent webhook cannot hold a run -------------------
@pytest.mark.parametrize("template", ["{params:%}", "{name!r:>{999999999}}", "{name:>999999999}", "{status:d}"])
def test_notify_template_with_a_bad_format_spec_is_exit_2(repo: Path, template: str) -> None:
    config = (repo / "config.yaml").read_text() + (
        f"notify:\n  webhook: {{url: 'http://127.0.0.1:9/x', on: [failed], subject: '{template}'}}\n")
    (repo / "bad.yaml").write_text(config)
    before = git(repo, "for-each-ref")
    proc = gitexp(repo, "run", "bad.yaml", check=False, timeout=30)
    assert proc.returncode == 2, proc
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith("error: bad.yaml:") and "notify.webhook.subject" in lines[0], proc.stderr
    assert len(lines) <= 2 and proc.stdout == ""
    assert git(repo, "for-each-ref") == before


def test_a_webhook_that_never_answers_cannot_hold_the_run(repo: Path) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)  # accepts connections (the kernel does), never answers
    port = server.getsockname()[1]
    try:
        config = (repo / "config.yaml").read_text() + (
            f"notify:\n  webhook: {{url: 'http://127.0.0.1:{port}/hook', on: [started, finished]}}\n")
        (repo / "hook.yaml").write_text(config)
        began = time.monotonic()
        gitexp(repo, "run", "hook.yaml", env={"GITEXP_NOTIFY_WAIT": "2"}, timeout=60)
        took = time.monotonic() - began
    finally:
        server.close()
    assert took < 12, took  # the run's end waited 2 s, not 2 x 15 s
    row = log_json(repo)[0]
    assert row["status"] == "finished"
    shown = gitexp(repo, "show", row["id"]).stdout
    assert "failed" in shown and "no answer within 2 s" in shown, shown


# -- 25: top's ETA from a step budget named like real trainers name it ---------------------------------------
NANOGPT_LIKE = textwrap.dedent('''
    import sys, time
    max_iters = int(sys.argv[1])
    for it in range(max_iters):
        print(f"iter {it}: loss {3.0 / (it + 1):.4f}", flush=True)
        time.sleep(0.1)
''')


def test_top_shows_an_eta_for_a_max_iters_budget(tmp_path: Path) -> None:
    config = textwrap.dedent('''
        name: gpt
        command: python train.py {max_iters}
        params: {max_iters: 300, n_ep: 4}
        metrics:
          loss: {regex: 'iter \\d+: loss ([0-9.]+)', goal: minimize}
        step: {regex: 'iter (\\d+)'}
    ''')
    repo = make_repo(tmp_path / "gpt", {"train.py": NANOGPT_LIKE, "config.yaml": config,
                                         "ep.yaml": config.replace("name: gpt", "name: ep") + "budget: {param: n_ep, unit: epoch}\n"})
    gitexp(repo, "run", "config.yaml", "--detach")
    try:
        def row() -> Any:
            rows = json.loads(gitexp(repo, "top", "--once", "--format", "json").stdout)["rows"]
            return rows[0] if rows and rows[0].get("rate") else None
        from conftest import wait_for

        found = wait_for(row, timeout=60, interval=0.5)
        assert found["budget"] == 300 and found["eta"] is not None and 0 < found["eta"] < 120, found
        table = gitexp(repo, "top", "--once").stdout
        assert "/300" in table
    finally:
        gitexp(repo, "cancel", "gpt", check=False)


def test_budget_in_the_config_is_checked_and_epoch_budgets_are_known() -> None:
    from gitexp.timing import budget_of

    assert budget_of({"max_iters": 5000, "lr": 0.1}) == (5000, "step")
    assert budget_of({"num_epochs": 10}) == (10, "epoch")
    assert budget_of({"total": 7}, "total") == (7, "step")
    assert budget_of({"n_ep": 3}, {"param": "n_ep", "unit": "epoch"}) == (3, "epoch")
    assert budget_of({"lr": 0.1}) is None


@pytest.mark.parametrize("budget, message", [("nosuch", "budget names 'nosuch', which is not a param"),
                                             ("{param: lr, unit: hours}", "budget unit 'hours'"),
                                             ("-5", "budget must be a param name or a number of steps")])
def test_a_bad_budget_is_exit_2(repo: Path, budget: str, message: str) -> None:
    (repo / "b.yaml").write_text((repo / "config.yaml").read_text() + f"budget: {budget}\n")
    proc = gitexp(repo, "run", "b.yaml", check=False)
    assert proc.returncode == 2 and message in proc.stderr and proc.stderr.startswith("error: b.yaml:"), proc
    assert log_json(repo) == []


# -- 20: a short run's resource peaks are measured --------------------------------------------------------
SHORT_BUSY = textwrap.dedent('''
    import time
    block = bytearray(80 * 1024 * 1024)  # 80 MB held for the whole run
    for i in range(0, len(block), 4096):
        block[i] = 1
    end = time.time() + 1.2
    n = 0
    while time.time() < end:  # busy: one core
        n += 1
    print("step 1 acc=0.5", flush=True)
''')


def test_a_short_run_gets_real_resource_peaks(repo: Path) -> None:
    (repo / "busy.py").write_text(SHORT_BUSY)
    (repo / "busy.yaml").write_text("name: busy\ncommand: python busy.py\nmetrics:\n  acc: {regex: 'acc=([0-9.]+)'}\n")
    gitexp(repo, "run", "busy.yaml", env={"GITEXP_SAMPLE_INTERVAL": "5"})
    row = log_json(repo)[0]
    summary = json.loads(git(repo, "notes", "--ref=exps", "show", row["id"]))
    peaks = summary["resources"]
    assert peaks["samples"] >= 3, peaks  # the start, early ones, the end
    assert peaks["rss_peak"] > 60 * 1024 * 1024, peaks
    assert peaks["cpu_peak"] > 20, peaks
    shown = gitexp(repo, "show", row["id"]).stdout
    assert "peaks of 1 samples" not in shown and "RSS 0B" not in shown


# -- 19: pictures and reports a person can read ----------------------------------------------------------
def test_plot_picture_marks_single_point_and_sparse_series() -> None:
    pytest.importorskip("matplotlib")
    from gitexp import plot_draw, plots
    from gitexp.notes import Experiment

    exp = Experiment("a" * 40, "run", {"created": 1.0})
    dense = plots.Curve(exp, "loss", [float(i) for i in range(2000)], [1.0 / (i + 1) for i in range(2000)])
    fig = plots.Figure(["loss", "val_loss", "test_acc"], {
        "loss": [dense],
        "val_loss": [plots.Curve(exp, "val_loss", [500.0, 1000.0, 1500.0], [0.9, 0.7, 0.6])],
        "test_acc": [plots.Curve(exp, "test_acc", [1500.0], [0.8])]}, "step", False, "t")
    axes = plot_draw.matplotlib_figure(fig).axes
    markers = {ax.get_title(loc="left"): [line.get_marker() for line in ax.lines] for ax in axes}
    assert markers["val_loss"] == ["o"] and markers["test_acc"] == ["o"], markers
    assert markers["loss"] == ["None"]  # a dense curve stays a plain line


def test_tick_labels_of_a_narrow_range_differ() -> None:
    from gitexp import plots

    ticks = plots.nice_ticks(8.1e10, 8.2e10, 5)
    labels = plots.tick_texts(ticks)
    assert len(set(labels)) == len(labels), labels


def test_report_has_units_no_constant_charts_no_debug_text(repo: Path, tmp_path: Path) -> None:
    (repo / "busy.py").write_text(SHORT_BUSY)
    (repo / "busy.yaml").write_text("name: busy\ncommand: python busy.py\nmetrics:\n  acc: {regex: 'acc=([0-9.]+)'}\n")
    gitexp(repo, "run", "busy.yaml")
    out = tmp_path / "r.html"
    gitexp(repo, "report", "-o", str(out))
    page = out.read_text()
    assert "drawn: " not in page  # no debug line
    assert "<th>epoch time</th>" not in page  # no run logs epochs: no empty column
    resources = page[page.index('id="resources"'):page.index('id="runs"')]
    assert "e+" not in resources, resources[:2000]  # 8.169e+10 -> 81.7GB
    assert "MB" in resources or "GB" in resources
    assert "<figcaption>ram_total" not in resources and "<figcaption>disk_total" not in resources  # constant
    assert "<figcaption>rss (MB)" in resources  # a chart in units
    assert '<div class="wide">' in resources  # a wide table scrolls instead of overflowing
    from gitexp.report import resource_text

    assert resource_text("rss_peak", 8.169e10) == "81.7GB" and resource_text("cpu_peak", 97.26) == "97%"
