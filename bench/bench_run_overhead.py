"""Overhead of `git exp run` over running the same trivial command directly.

The command is `python -c pass` (a Python program that does nothing), run bare and under `git
exp run` in the foreground, taking turns, median of REPEATS. With `--compare DIR`, the gitexp
of another checkout (e.g. a `git worktree` of an older commit) runs it too, in the same turns,
so before and after are measured side by side.

Usage: python bench/bench_run_overhead.py [repeats] [--compare DIR]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List

from common import ROOT, gitexp_argv, scratch_repo, wait_for_gc

PROGRAM = [sys.executable, "-c", "pass"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("repeats", nargs="?", type=int, default=10)
    parser.add_argument("--compare", help="another checkout whose gitexp runs the same config")
    args = parser.parse_args()
    repo = scratch_repo({"c.yaml": f'command: "{sys.executable} -c pass"\n', "train.py": "print('x')\n" * 50})
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as installed: bytecode cached

    def timed(argv: List[str], run_env: Dict[str, str]) -> Callable[[], float]:
        def run() -> float:
            start = time.perf_counter()
            subprocess.run(argv, cwd=repo, env=run_env, check=True, capture_output=True)
            return time.perf_counter() - start
        return run

    timers = {"bare": timed(PROGRAM, env), "gitexp_run": timed(gitexp_argv("run", "c.yaml"), env)}
    if args.compare:
        timers["compare_run"] = timed(gitexp_argv("run", "c.yaml"), {**env, "PYTHONPATH": str(Path(args.compare).resolve())})
    for run in timers.values():  # bytecode and page cache warm, as on a second run
        run()
    times: Dict[str, List[float]] = {name: [] for name in timers}
    for _ in range(args.repeats):
        wait_for_gc()
        for name, run in timers.items():
            times[name].append(run())
    median = {name: sorted(values)[len(values) // 2] for name, values in times.items()}
    line = " ".join(f"{name}_s={seconds:.3f}" for name, seconds in median.items())
    overheads = " ".join(f"{name}_overhead_s={seconds - median['bare']:.3f}" for name, seconds in median.items()
                         if name != "bare")
    print(f"RESULT {line} {overheads} (median of {args.repeats}, interleaved)")


if __name__ == "__main__":
    main()
