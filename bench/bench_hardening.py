"""The hardening figures: output without newlines, identical runs at once, `git exp fsck`.

Usage: python bench/bench_hardening.py [MB ...]     (default: 8 32 64)

* output: `git exp run` of a program printing N MB with no newline, against the same bytes
  in 100-byte lines, in the same run (the executor used to be quadratic in line length);
* identical: wall time of 25 `git exp run` of one config started at once (25 commits);
* fsck: `git exp fsck` over a queued 1,000-point sweep.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

from common import ROOT, gitexp_argv, scratch_repo, wait_for_gc

ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def timed(argv: list, cwd: str) -> float:
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, check=True, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def output(sizes: list) -> None:
    program = ("import sys\nn = int(sys.argv[1]) * 1024 * 1024\nline = sys.argv[2] == 'lines'\n"
               "chunk = (b'x' * 99 + b'\\n') if line else b'x' * 100\n"
               "out = sys.stdout.buffer\nfor _ in range(n // 100):\n    out.write(chunk)\n")
    repo = scratch_repo({"emit.py": program, "c.yaml": "command: python emit.py {mb} {kind}\n"
                                                        "params: {mb: 1, kind: lines}\n"
                                                        "metrics:\n  loss: {regex: 'loss=([0-9.]+)'}\n"})
    for mb in sizes:
        wait_for_gc()
        lines = timed(gitexp_argv("run", "c.yaml", "-p", f"mb={mb}", "-p", "kind=lines"), str(repo))
        one = timed(gitexp_argv("run", "c.yaml", "-p", f"mb={mb}", "-p", "kind=one"), str(repo))
        print(f"RESULT output_mb={mb} one_line_s={one:.2f} in_lines_s={lines:.2f} ratio={one / lines:.2f}")


def identical() -> None:
    repo = scratch_repo({"c.yaml": 'command: "true"\n'})
    wait_for_gc()
    start = time.perf_counter()
    procs = [subprocess.Popen(gitexp_argv("run", "c.yaml"), cwd=repo, env=ENV, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL) for _ in range(25)]
    for proc in procs:
        proc.wait()
    wall = time.perf_counter() - start
    refs = subprocess.run(["git", "for-each-ref", "refs/exps/"], cwd=repo, capture_output=True, text=True).stdout
    print(f"RESULT identical_runs=25 commits={len(refs.splitlines())} wall_s={wall:.2f}")


def fsck() -> None:
    repo = scratch_repo({"c.yaml": 'command: "true"\nparams: {i: 0}\n'})
    values = ",".join(str(i) for i in range(1000))
    subprocess.run(gitexp_argv("run", "c.yaml", "--queue", "--sweep", f"i={values}"), cwd=repo, env=ENV,
                   check=True, capture_output=True)
    wait_for_gc()
    print(f"RESULT fsck_experiments=1000 fsck_s={timed(gitexp_argv('fsck'), str(repo)):.2f}")


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [8, 32, 64]
    output(sizes)
    identical()
    fsck()


if __name__ == "__main__":
    main()
