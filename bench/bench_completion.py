"""Shell completion in a repository of many experiments: the time of one `git exp _complete`.

Usage: python bench/bench_completion.py [experiments]

Each timing is the whole command a TAB runs (interpreter start included), median of 5:
a subcommand, an id prefix, an experiment name, param names after -p (no config on the
line: read from the summary notes) and metric names.
"""
from __future__ import annotations

import os
import subprocess
import sys

from common import ROOT, gitexp_argv, median_of, scratch_repo, wait_for_gc


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
    repo = scratch_repo({"c.yaml": 'command: "true"\nparams: {i: 0, lr: 0.1}\n'})
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run(gitexp_argv("run", "c.yaml", "--queue", "--sweep", "i=" + ",".join(map(str, range(n)))),
                   cwd=repo, env=env, check=True, capture_output=True)
    wait_for_gc()  # gitexp packs the 10,000 loose refs after the write (Repo.maintain)
    sha = subprocess.run(["git", "for-each-ref", "--count=1", "--format=%(objectname)", "refs/exps/"], cwd=repo,
                         capture_output=True, text=True, check=True).stdout.strip()
    cases = {"subcommand": ["0", "--", "ru"], "id prefix": ["1", "--", "show", sha[:5]],
             "name": ["1", "--", "show", "c-i=99"], "param after -p (from notes)": ["2", "--", "run", "-p", ""],
             "metric": ["2", "--", "log", "--metric", ""]}
    def run(*args: str) -> None:
        subprocess.run(gitexp_argv(*args), cwd=repo, env=env, check=True, capture_output=True)

    # the floor in the same run: the interpreter's start and gitexp's CLI import
    print(f"RESULT baseline git exp --version seconds={median_of(5, lambda: run('--version')):.3f}")
    for what, args in cases.items():
        print(f"RESULT completion {what} experiments={n} "
              f"seconds={median_of(5, lambda args=args: run('_complete', *args)):.3f}")


if __name__ == "__main__":
    main()
