"""Queueing a 1,000-point sweep, and the worker's per-experiment overhead on trivial commands.

Usage: python bench/bench_queue.py [points] [worker_experiments]
The worker figure is wall time of `git exp worker --until-empty --jobs 1` over N queued
`true` experiments, divided by N: claim + executor start + notes writes + reaping.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

from common import ROOT, gitexp_argv, wait_for_gc, scratch_repo


def main() -> None:
    points = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    n_run = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    repo = scratch_repo({"c.yaml": 'command: "true"\nparams: {i: 0}\n', "train.py": "print(1)\n"})
    sweep = "i=" + ",".join(str(i) for i in range(points))
    wait_for_gc()
    start = time.perf_counter()
    subprocess.run(gitexp_argv("run", "c.yaml", "--queue", "--sweep", sweep), cwd=repo, env=env, check=True,
                   capture_output=True)
    queue_s = time.perf_counter() - start
    queued = subprocess.run(["git", "for-each-ref", "refs/exps-queue/"], cwd=repo, capture_output=True,
                            text=True).stdout.count("\n")
    print(f"RESULT queue_sweep points={points} seconds={queue_s:.2f} queued={queued}")

    repo2 = scratch_repo({"c.yaml": 'command: "true"\nparams: {i: 0}\n'})
    sweep = "i=" + ",".join(str(i) for i in range(n_run))
    subprocess.run(gitexp_argv("run", "c.yaml", "--queue", "--sweep", sweep), cwd=repo2, env=env, check=True,
                   capture_output=True)
    wait_for_gc()
    start = time.perf_counter()
    subprocess.run(gitexp_argv("worker", "--until-empty", "--jobs", "1"), cwd=repo2, env=env, check=True,
                   capture_output=True)
    total = time.perf_counter() - start
    direct = time.perf_counter()
    for _ in range(n_run):
        subprocess.run(["bash", "-c", "true"], check=True)
    direct = time.perf_counter() - direct
    print(f"RESULT worker experiments={n_run} total_s={total:.2f} per_experiment_s={total / n_run:.3f} "
          f"overhead_per_experiment_s={(total - direct) / n_run:.3f}")


if __name__ == "__main__":
    main()
