"""Slowdown of a CPU-bound Python loop under `git exp run --profile` (py-spy sampling at 100/s)
against the same loop under a bare `git exp run`, both in this one benchmark run, interleaved.

The program times its own loop (a fixed amount of work), so gitexp's start and end, and
py-spy's attach and its writing of the profile, are not counted: only what sampling costs the
program while it runs. Target: at most 5% slower.

Usage: python bench/bench_profile.py [repeats] [loop_iterations]
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from typing import List

from common import ROOT, gitexp_argv, scratch_repo, wait_for_gc

LOOP_PY = textwrap.dedent('''
    import sys, time

    def work(n):
        total = 0
        for i in range(n):
            total += i * i % 7
        return total

    time.sleep(1.5)  # py-spy attaches within the executor's first watch tick: sample the whole loop
    start = time.perf_counter()
    work(int(sys.argv[1]))
    print(f"loop_s={time.perf_counter() - start:.4f}", flush=True)
''')


def loop_seconds(repo: str, env: dict, profile: bool) -> float:
    argv = gitexp_argv("run", "c.yaml", *(["--profile"] if profile else []))
    proc = subprocess.run(argv, cwd=repo, env=env, capture_output=True, text=True, check=True)
    match = re.search(r"loop_s=([0-9.]+)", proc.stdout + proc.stderr)
    if not match:
        raise SystemExit(f"no loop time in the output:\n{proc.stdout}\n{proc.stderr}")
    if profile and "gitexp: profile:" in proc.stderr:
        raise SystemExit(f"not profiled: {proc.stderr}")
    return float(match.group(1))


def median(values: List[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    iterations = int(sys.argv[2]) if len(sys.argv) > 2 else 20_000_000
    repo = scratch_repo({"loop.py": LOOP_PY,
                         "c.yaml": f"name: loop\ncommand: {sys.executable} loop.py {iterations}\n"})
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    wait_for_gc()
    bare: List[float] = []
    profiled: List[float] = []
    for _ in range(repeats):  # interleaved, so a busy neighbour slows both alike
        bare.append(loop_seconds(str(repo), env, profile=False))
        profiled.append(loop_seconds(str(repo), env, profile=True))
    slowdown = median(profiled) / median(bare) - 1
    print(f"bare loop_s: {', '.join(f'{v:.3f}' for v in bare)}")
    print(f"--profile loop_s: {', '.join(f'{v:.3f}' for v in profiled)}")
    print(f"RESULT bare_s={median(bare):.3f} profiled_s={median(profiled):.3f} slowdown={slowdown:+.1%} "
          f"(median of {repeats}, {iterations:,} iterations; target <= 5%)")


if __name__ == "__main__":
    main()
