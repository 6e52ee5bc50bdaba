"""git exp pull / push of many finished experiments over a loopback remote.

Usage: python bench/bench_sync.py [experiments] [history_points]

A "cluster" repository gets N finished experiments (queued as one sweep, then given finished
summaries, metric histories of P points and details notes in one write, as a run would leave
them); a fresh clone pulls them (first pull), pulls again with nothing new (no-op pull), and
the cluster pushes them to a bare hub (push). Every timing is the whole command, interpreter
start included, median of 3 for the no-op pull.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, median_of, scratch_repo, wait_for_gc

CLI = ("import sys; from gitexp import cli; cli.COMMANDS.setdefault('pull', ('sync_cmd', 'pull')); "
       "cli.COMMANDS.setdefault('push', ('sync_cmd', 'push')); cli.main(sys.argv[1:])")


def gx(cwd: Path, *args: str) -> str:
    proc = subprocess.run([sys.executable, "-c", CLI, *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    if proc.returncode != 0:
        raise SystemExit(f"git exp {' '.join(args)} failed: {proc.stderr}")
    return proc.stdout


def finish_all(repo: Path, points: int) -> None:
    """Give every experiment the notes a finished run leaves, in one notes write."""
    sys.path.insert(0, str(ROOT))
    from gitexp.notes import DETAILS_REF, METRICS_REF, SUMMARY_REF, Store, dump_json, jsonl
    from gitexp.repo import Repo

    store = Store(Repo.discover(str(repo)))
    notes = {}
    now = time.time()
    for i, exp in enumerate(store.experiments()):
        history = [{"step": s, "time": now + s, "loss": 1.0 / (s + i), "acc": 1 - 1.0 / (s + i)}
                   for s in range(1, points + 1)]
        notes[(SUMMARY_REF, exp.sha)] = dump_json({
            **exp.summary, "status": "finished", "host": "node7", "pid": 4242, "started": now, "ended": now + 60,
            "duration": 60.0, "exit_code": 0, "runner": "local",
            "metrics": {"loss": {"best": 1.0 / points, "last": 1.0 / points, "count": points, "goal": "minimize"}}})
        notes[(METRICS_REF, exp.sha)] = jsonl(history)
        notes[(DETAILS_REF, exp.sha)] = dump_json({"facts": {"hostname": "node7", "cpus": 64, "python": "3.11"},
                                                   "log_tail": f"run {i}\n" + "done\n" * 20})
    with store.repo.batch():
        store.write(notes, message="bench: finished")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    points = int(sys.argv[2]) if len(sys.argv) > 2 else 50
    cluster = scratch_repo({"c.yaml": 'command: "true"\nparams: {i: 0}\n', "train.py": "print(1)\n"})
    gx(cluster, "run", "c.yaml", "--queue", "--sweep", "i=" + ",".join(str(i) for i in range(n)))
    finish_all(cluster, points)
    subprocess.run(["git", "gc", "-q"], cwd=cluster, check=True)
    work = Path(tempfile.mkdtemp(prefix="gitexp-bench-sync-"))
    laptop = work / "laptop"
    subprocess.run(["git", "clone", "-q", "--no-local", str(cluster), str(laptop)], check=True)
    wait_for_gc()

    start = time.perf_counter()
    out = gx(laptop, "pull", "origin")
    first = time.perf_counter() - start
    listed = json.loads(gx(laptop, "log", "--format", "json"))
    assert len(listed) == n and all(r["status"] == "finished" for r in listed), out
    print(f"RESULT pull_first experiments={n} history_points={points} seconds={first:.2f} ({out.strip()})")

    wait_for_gc()
    noop = median_of(3, lambda: gx(laptop, "pull", "origin"))
    print(f"RESULT pull_nothing_new experiments={n} seconds={noop:.3f}")

    start = time.perf_counter()
    gx(laptop, "run", "c.yaml", "-p", "i=-1", "--name", "one-more")
    subprocess.run(["git", "-C", str(cluster), "notes", "--ref=exps", "add", "-f", "-m",
                    json.dumps({"status": "finished", "host": "node7", "name": "x", "ended": time.time() + 99}),
                    json.loads(gx(cluster, "log", "--format", "json", "-n", "1"))[0]["id"]], check=True,
                   capture_output=True)
    wait_for_gc()
    start = time.perf_counter()
    gx(laptop, "pull", "origin")
    print(f"RESULT pull_one_changed_note experiments={n} seconds={time.perf_counter() - start:.3f}")

    hub = work / "hub.git"
    subprocess.run(["git", "init", "-q", "--bare", str(hub)], check=True)
    wait_for_gc()
    start = time.perf_counter()
    gx(cluster, "push", str(hub))
    print(f"RESULT push_first experiments={n} seconds={time.perf_counter() - start:.2f}")
    wait_for_gc()
    noop_push = median_of(3, lambda: gx(cluster, "push", str(hub)))
    print(f"RESULT push_nothing_new experiments={n} seconds={noop_push:.3f}")
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(cluster, ignore_errors=True)


if __name__ == "__main__":
    main()
