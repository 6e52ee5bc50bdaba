"""`git exp log --metric val_err` time with 1,000 .. 10,000 recorded experiments.

Experiments are recorded through the real store (one commit each, summary notes with
metrics), in batches, then `git exp log` runs as a user would run it.
Usage: python bench/bench_log_listing.py [sizes...]   (default: 1000 2000 5000 10000)
"""
from __future__ import annotations

import os
import random
import subprocess
import sys
import time

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))

from common import ROOT, gitexp_argv, median_of, scratch_repo, wait_for_gc  # noqa: E402

import gitexp.watchers  # noqa: E402,F401  (installs the config sections' parsers, as the CLI does)
from gitexp.config import parse_config  # noqa: E402
from gitexp.experiments import initial_summary, make_commit, take_snapshot  # noqa: E402
from gitexp.lifecycle import record  # noqa: E402
from gitexp.notes import Experiment, Store  # noqa: E402
from gitexp.repo import Repo  # noqa: E402


def add_experiments(repo: Repo, store: Store, start: int, count: int) -> None:
    base = parse_config("command: python train.py {lr}\nparams: {lr: 0.1}\n"
                        "metrics:\n  val_err: {goal: minimize}\n", source="bench.yaml")
    snap = take_snapshot(repo)
    exps = []
    for i in range(start, start + count):
        config = base.with_params({"lr": round(random.uniform(0.001, 1), 5)}, name=f"exp{i}")
        sha = make_commit(repo, snap, config)
        summary = initial_summary(config, snap, "finished")
        summary.update({"duration": 12.5, "exit_code": 0, "started": time.time(), "ended": time.time(),
                        "metrics": {"val_err": {"best": random.random(), "last": random.random(), "count": 30,
                                                "goal": "minimize", "best_step": 7, "last_step": 30}}})
        exps.append(Experiment(sha, f"exp{i}", summary))
    record(store, exps)


def main() -> None:
    sizes = [int(x) for x in sys.argv[1:]] or [1000, 2000, 5000, 10000]
    path = scratch_repo({"train.py": "print(1)\n"})
    repo = Repo.discover(str(path))
    store = Store(repo)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    have = 0
    print("experiments  log_s  per_1000_s")
    for size in sizes:
        add_experiments(repo, store, have, size - have)
        # gitexp runs `git gc --auto` in the background after writes; let it finish before timing
        wait_for_gc()
        subprocess.run(["git", "-c", "gc.autoDetach=false", "gc", "--auto", "--quiet"], cwd=path, check=True)
        have = size
        seconds = median_of(3, lambda: subprocess.run(gitexp_argv("log", "--metric", "val_err"), cwd=path,
                                                       env=env, check=True, capture_output=True))
        print(f"RESULT {size:>10}  {seconds:.3f}  {seconds / size * 1000:.3f}")


if __name__ == "__main__":
    main()
