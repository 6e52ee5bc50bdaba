"""Overhead of `git exp run` over running the same trivial command directly.

Usage: python bench/bench_run_overhead.py [repeats]
"""
from __future__ import annotations

import os
import subprocess
import sys

from common import ROOT, gitexp_argv, wait_for_gc, median_of, scratch_repo


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    repo = scratch_repo({"c.yaml": 'command: "true"\n', "train.py": "print('x')\n" * 50})
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    wait_for_gc()
    direct = median_of(repeats, lambda: subprocess.run(["bash", "-c", "true"], check=True))
    gitexp = median_of(repeats, lambda: subprocess.run(gitexp_argv("run", "c.yaml"), cwd=repo, check=True,
                                                       env=env, capture_output=True))
    print(f"RESULT direct_s={direct:.3f} gitexp_run_s={gitexp:.3f} overhead_s={gitexp - direct:.3f} (median of {repeats})")


if __name__ == "__main__":
    main()
