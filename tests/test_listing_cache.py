"""The summary cache behind `git exp log` (gitexp/summary_cache.py): what it keeps is what git
holds. A note changed with plain git is read again, a broken cache file is ignored, strings are
stored once (interned), and the sparklines drawn once are the ones a fresh drawing gives."""
from __future__ import annotations

import json
import marshal
import subprocess
import sys
import time
from pathlib import Path
from typing import List

from conftest import ROOT, git

sys.path.insert(0, str(ROOT))
import gitexp.watchers  # noqa: E402,F401  (the config sections' parsers, as the CLI installs them)
from gitexp import numbers, summary_cache  # noqa: E402
from gitexp.config import parse_config  # noqa: E402
from gitexp.experiments import initial_summary, make_commit, take_snapshot  # noqa: E402
from gitexp.lifecycle import record  # noqa: E402
from gitexp.notes import SUMMARY_REF, Experiment, Store  # noqa: E402
from gitexp.repo import Repo  # noqa: E402

CONFIG = "command: python train.py\nparams: {lr: 0.1}\nmetrics:\n  val_err: {goal: minimize}\n"


def recorded(repo: Path, count: int) -> List[Experiment]:
    made = Repo.discover(str(repo))
    store = Store(made)
    snap = take_snapshot(made)
    exps = []
    for i in range(count):
        config = parse_config(CONFIG, source="c.yaml").with_params({"lr": 0.1 * (i + 1)}, name=f"e{i}")
        sha = make_commit(made, snap, config)
        curve = [1 / (1 + (i + 1) * step) for step in range(1, 21)]
        summary = initial_summary(config, snap, "finished")
        summary.update({"duration": 3.0, "exit_code": 0, "ended": time.time(), "metrics": {"val_err": {
            "best": min(curve), "last": curve[-1], "count": len(curve), "goal": "minimize",
            "spark": numbers.spark_text(numbers.spark_series(curve))}}})
        exps.append(Experiment(sha, f"e{i}", summary))
    record(store, exps)
    return exps


def listing(repo: Path) -> str:
    proc = subprocess.run([sys.executable, "-m", "gitexp", "log", "--metric", "val_err", "--sort", "val_err"],
                          cwd=repo, capture_output=True, text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin",
                                                                          "PYTHONIOENCODING": "utf-8"})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def cache_file(repo: Path) -> Path:
    return repo / ".git" / "gitexp" / "cache" / summary_cache.FILE


def test_the_cache_keeps_what_git_holds_and_reads_a_changed_note_again(repo: Path) -> None:
    exps = recorded(repo, 3)
    first = listing(repo)
    assert cache_file(repo).exists()
    assert listing(repo) == first  # from the cache now
    assert sum(any(ch in line for ch in numbers.SPARK_CHARS) for line in first.splitlines()) == 3
    # someone rewrites a note with plain git: the listing shows the new note, not the cached one
    changed = {**exps[0].summary, "status": "failed", "reason": "rewritten"}
    git(repo, "notes", "--ref", SUMMARY_REF, "add", "-f", "-m", json.dumps(changed), exps[0].sha)
    row = next(line for line in listing(repo).splitlines() if line.startswith(exps[0].sha[:8]))
    assert " failed " in row


def test_strings_are_stored_once_and_sparklines_drawn_once(repo: Path) -> None:
    recorded(repo, 3)
    with_memo = listing(repo)
    data = marshal.loads(cache_file(repo).read_bytes())
    a, b = list(data["summaries"].values())[:2]
    assert a["status"] is b["status"] and next(iter(a)) is next(iter(b))  # interned: one object each
    texts = {s["metrics"]["val_err"]["spark"] for s in data["summaries"].values()}
    assert set(data["spark_lines"]) == texts
    assert all(data["spark_lines"][t] == numbers.sparkline(numbers.parse_spark(t)) for t in texts)
    # the same table when every line is drawn afresh (a cache without its drawn lines)
    del data["spark_lines"]
    cache_file(repo).write_bytes(marshal.dumps(data))
    assert listing(repo) == with_memo


def test_a_broken_cache_file_is_ignored(repo: Path) -> None:
    recorded(repo, 2)
    good = listing(repo)
    for junk in (b"", b"\x00garbage", marshal.dumps({"version": summary_cache.VERSION, "tree": 1})):
        cache_file(repo).write_bytes(junk)
        assert listing(repo) == good


def test_a_listing_of_ended_runs_loads_nothing_it_does_not_use(repo: Path) -> None:
    """Where users wait (issue 18): `git exp log` of ended runs reads the cache and prints; the
    config parser (yaml), the liveness checks (psutil) and the pack reader (dulwich) stay unloaded."""
    recorded(repo, 2)
    listing(repo)
    code = ("import sys, atexit\n"
            "names = ('yaml', 'psutil', 'dulwich', 'gitexp.config', 'gitexp.metrics', 'gitexp.experiments')\n"
            "atexit.register(lambda: print('loaded', sorted(m for m in names if m in sys.modules), file=sys.stderr))\n"
            "sys.argv = ['git-exp', 'log', '--metric', 'val_err']\n"
            "from gitexp.cli import main\nmain()\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert "loaded []" in proc.stderr and proc.stdout.count("finished") == 2


def test_a_run_that_ended_between_the_read_and_the_look_is_not_shown_lost(repo: Path) -> None:
    """The executor records the end, then exits at once; a listing that read the note just before
    (running) and looks at the process just after (gone) reads the note again and shows the end."""
    import json as json_mod
    import socket

    from gitexp.paths import run_paths
    from gitexp.status import live_statuses

    from gitexp.lifecycle import Status, transition

    [exp] = recorded(repo, 1)
    running = {**exp.summary, "status": "running", "host": socket.gethostname(), "ended": None}
    git(repo, "notes", "--ref", SUMMARY_REF, "add", "-f", "-m", json_mod.dumps(running), exp.sha)
    made = Repo.discover(str(repo))
    store = Store(made)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a pid that has ended: the executor after it exited
    paths = run_paths(made, exp.sha)
    Path(paths.root).mkdir(parents=True)
    Path(paths.exec_info).write_text(json_mod.dumps({"pid": gone.pid, "pid_started": time.time(),
                                                     "host": socket.gethostname()}))
    [stale] = [e for e in store.experiments() if e.sha == exp.sha]  # read while it "runs"
    assert stale.status == "running"
    assert live_statuses(made, [stale])[exp.sha][0] == "lost"  # nothing recorded: lost it is
    transition(store, exp.sha, Status.FINISHED, {"exit_code": 0, "ended": time.time()})  # the end, then exit
    assert stale.status == "running"  # read a moment before the end was recorded
    assert live_statuses(made, [stale])[exp.sha] == ("finished", None)
    assert stale.summary["status"] == "finished" and stale.summary["exit_code"] == 0
