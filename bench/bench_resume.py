"""`git exp resume` up to the moment the program starts, and `git exp metrics` of a long chain.

1. A finished 10,000-point run (API points and a checkpoint); `git exp resume` of it with a
   command that writes the time it started: seconds from invoking resume to the program's start.
2. A 5-attempt chain of 100,000 points in all (20,000 per attempt, each resumed 1,000 steps
   before the previous one ended): seconds for `git exp metrics <name> --format jsonl`.

Usage: python bench/bench_resume.py [repeats]
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

from common import ROOT, gitexp_argv, median_of, scratch_repo

WRITE = """\
import json, os, sys, time
import gitexp
if os.environ.get("GITEXP_RESUME_FROM") and os.environ.get("STAMP_ONLY"):
    open(os.environ["STAMP"], "w").write(repr(time.time()))
    sys.exit(0)
resumed = os.environ.get("GITEXP_RESUME_STEP")
start, n = (int(resumed) + 1 - 1000 if resumed else 0), int(os.environ["N"])
for step in range(start, start + n):
    gitexp.log(step=step, loss=1.0 / (step + 1))
path = os.path.join(os.environ["GITEXP_OUTPUT_DIR"], "ckpt.pt")
open(path, "w").write("x")
gitexp.checkpoint(path, step=start + n - 1)
"""


def run(repo: str, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(gitexp_argv(*args), cwd=repo, env=env, check=True, capture_output=True, text=True)


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    repo = scratch_repo({"w.py": WRITE, "c.yaml": "name: big\ncommand: python -S w.py\nenv: {N: '10000', STAMP_ONLY: '1'}\n"})
    stamp = os.path.join(repo, "stamp")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "STAMP": stamp}
    run(repo, env, "run", "c.yaml")
    took = []
    for _ in range(repeats):
        begun = time.time()
        run(repo, env, "resume", "big", "--from", "9999")
        took.append(float(open(stamp).read()) - begun)
    took.sort()
    print(f"RESULT resume_to_program_start_s={took[len(took) // 2]:.3f} (median of {repeats}; 10,000-point run)")

    chain = scratch_repo({"w.py": WRITE, "c.yaml": "name: long\ncommand: python -S w.py\nenv: {N: '20000'}\n"})
    run(chain, env, "run", "c.yaml")
    for _ in range(4):  # each attempt repeats the last 1,000 steps of the one before
        run(chain, env, "resume", "long")
    points = run(chain, env, "metrics", "long", "--format", "jsonl").stdout.count("\n")
    seconds = median_of(repeats, lambda: run(chain, env, "metrics", "long", "--format", "jsonl"))
    print(f"RESULT chain_metrics_s={seconds:.3f} (median of {repeats}; 5 attempts, 100,000 points stored, "
          f"{points} on the joined curve)")


if __name__ == "__main__":
    main()
