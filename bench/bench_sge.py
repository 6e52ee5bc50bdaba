"""A 500-point sweep as one Grid Engine array job, and `git exp queue --on` with 500 pending.

Needs a running Grid Engine (scripts/sge-up.sh). The sweep is submitted with max_parallel 1
(``-tc 1``) and a command that sleeps, so nearly all 500 tasks are pending when ``git exp
queue --on`` runs. Wrappers in front of qsub, qstat and qacct count their calls. The job is
deleted at the end. Usage: python bench/bench_sge.py [points]
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

from common import ROOT, gitexp_argv, median_of, scratch_repo, wait_for_gc


def counting_wrappers(folder: str, log: str) -> None:
    os.makedirs(folder)
    for tool in ("qsub", "qstat", "qacct"):
        path = os.path.join(folder, tool)
        with open(path, "w") as handle:
            handle.write(f"#!/bin/sh\necho {tool} >> {log}\nexec {shutil.which(tool)} \"$@\"\n")
        os.chmod(path, 0o755)


def main() -> None:
    points = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    if not shutil.which("qsub"):
        sys.exit("Grid Engine is not installed: run scripts/sge-up.sh first")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    repo = scratch_repo({"c.yaml": "command: sleep 30\nparams: {i: 0}\nsweep:\n  max_parallel: 1\n"})
    subprocess.run(gitexp_argv("remote", "add", "bench", "--runner", "sge", "--queue", "all.q"),
                   cwd=repo, env=env, check=True, capture_output=True)
    sweep = "i=" + ",".join(str(i) for i in range(points))
    calls = repo / "calls"
    counting_wrappers(str(repo / ".bin"), str(calls))
    counted = {**env, "PATH": f"{repo / '.bin'}:{env['PATH']}"}
    wait_for_gc()
    start = time.perf_counter()
    out = subprocess.run(gitexp_argv("run", "c.yaml", "--on", "bench", "--sweep", sweep), cwd=repo,
                         env=counted, check=True, capture_output=True, text=True)
    submit = time.perf_counter() - start
    print(f"RESULT submit points={points} seconds={submit:.2f} qsub_calls={calls.read_text().count('qsub')}")
    job = out.stderr.split("array job ")[-1].split(";")[0].strip()
    try:
        pending = sum(1 for line in subprocess.run(["qstat", "-g", "d", "-s", "p"], capture_output=True,
                                                   text=True).stdout.splitlines() if line.split()[:1] == [job])
        calls.write_text("")
        subprocess.run(gitexp_argv("queue", "--on", "bench"), cwd=repo, env=counted, check=True, capture_output=True)
        text = calls.read_text()
        seconds = median_of(3, lambda: subprocess.run(gitexp_argv("queue", "--on", "bench"), cwd=repo, env=env,
                                                      check=True, capture_output=True))
        print(f"RESULT queue experiments={points} sge_pending={pending} seconds={seconds:.3f} "
              f"qstat_calls={text.count('qstat')} qacct_calls={text.count('qacct')}")
    finally:
        subprocess.run(["qdel", job], check=False, capture_output=True)


if __name__ == "__main__":
    main()
