"""Executor overhead with resource sampling and diagnostics on (issue #11's benchmark).

A training loop does ~1 ms of arithmetic per step and logs one point per step (about 1,000
points/s) for 8,000 steps. It runs bare (``python train.py``: gitexp.log has no executor to
write for) and under ``git exp run`` with every default diagnostic rule on and a resource sample
each second (GITEXP_SAMPLE_INTERVAL=1; the default is 5). Reported: the loop's own time (measured
inside the program) and the whole command's wall time, medians of the repeats.

Usage: python bench/bench_monitor.py [repeats]
"""
from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import time

from common import ROOT, gitexp_argv, scratch_repo, wait_for_gc

TRAIN = '''
import time, gitexp
start = time.perf_counter()
for step in range(1, 8001):
    x = 0.0
    for i in range(9000):
        x += i * 1e-9
    gitexp.log(step=step, loss=1.0 / step + x * 0, acc=1 - 1.0 / step)
print(f"LOOP {time.perf_counter() - start:.4f}", flush=True)
'''
CONFIG = "command: python train.py\nmetrics: {loss: {goal: minimize}, acc: {goal: maximize}}\n"
OFF = CONFIG + "diagnostics: off\n"  # the same executor with no diagnostics (and no sampling, below)


def timed(argv: list, cwd: str, env: dict) -> tuple:
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    loop = float(re.findall(r"LOOP ([0-9.]+)", proc.stdout + proc.stderr)[-1])
    return loop, wall


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    repo = str(scratch_repo({"train.py": TRAIN, "c.yaml": CONFIG, "off.yaml": OFF}))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GITEXP_SAMPLE_INTERVAL": "1"}
    bare, run, off = [], [], []
    for _ in range(repeats):  # interleaved, so a noisy neighbour hurts all alike
        wait_for_gc()
        bare.append(timed([sys.executable, "train.py"], repo, env))
        off.append(timed(gitexp_argv("run", "off.yaml"), repo, {**env, "GITEXP_SAMPLE_INTERVAL": "0"}))
        run.append(timed(gitexp_argv("run", "c.yaml"), repo, env))
    off_loop = statistics.median(o[0] for o in off)
    bare_loop, run_loop = statistics.median(b[0] for b in bare), statistics.median(r[0] for r in run)
    bare_wall, run_wall = statistics.median(b[1] for b in bare), statistics.median(r[1] for r in run)
    print(f"RESULT points_per_s={8000 / run_loop:.0f} bare_loop_s={bare_loop:.3f} run_loop_s={run_loop:.3f} "
          f"loop_overhead={100 * (run_loop / bare_loop - 1):.2f}% monitoring_off_loop_s={off_loop:.3f} "
          f"monitoring_overhead={100 * (run_loop / off_loop - 1):.2f}% bare_wall_s={bare_wall:.3f} "
          f"run_wall_s={run_wall:.3f} (median of {repeats}; sampling every 1 s, default diagnostics)")


if __name__ == "__main__":
    main()
