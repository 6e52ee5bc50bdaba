"""Submitting a 500-point sweep to the real local Slurm, and `git exp log` with 500 jobs pending.

Needs a running Slurm (scripts/slurm-up.sh). The sweep is submitted with max_parallel 1 and
a command that sleeps, so nearly all 500 tasks are PENDING when `git exp log` runs; the jobs
are cancelled at the end. Usage: python bench/bench_slurm.py [points]
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

from common import ROOT, gitexp_argv, wait_for_gc, median_of, scratch_repo


def main() -> None:
    points = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    if not shutil.which("sbatch"):
        sys.exit("Slurm is not installed: run scripts/slurm-up.sh first")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    repo = scratch_repo({"c.yaml": "command: sleep 30\nparams: {i: 0}\nsweep:\n  max_parallel: 1\n"})
    subprocess.run(gitexp_argv("remote", "add", "bench", "--runner", "slurm", "--partition", "debug"),
                   cwd=repo, env=env, check=True, capture_output=True)
    sweep = "i=" + ",".join(str(i) for i in range(points))
    calls_log = repo / "sbatch-calls"
    wrapper_dir = repo / ".bin"
    wrapper_dir.mkdir()
    wrapper = wrapper_dir / "sbatch"
    wrapper.write_text(f"#!/bin/sh\necho call >> {calls_log}\nexec {shutil.which('sbatch')} \"$@\"\n")
    wrapper.chmod(0o755)
    env_counted = {**env, "PATH": f"{wrapper_dir}:{env['PATH']}"}
    wait_for_gc()
    start = time.perf_counter()
    out = subprocess.run(gitexp_argv("run", "c.yaml", "--on", "bench", "--sweep", sweep), cwd=repo,
                         env=env_counted, check=True, capture_output=True, text=True)
    submit = time.perf_counter() - start
    calls = calls_log.read_text().count("call")
    print(f"RESULT submit points={points} seconds={submit:.2f} sbatch_calls={calls}")
    try:
        pending = subprocess.run(["squeue", "-h", "-r", "-t", "PENDING", "-o", "%i"], capture_output=True,
                                 text=True).stdout.count("\n")
        seconds = median_of(3, lambda: subprocess.run(gitexp_argv("log"), cwd=repo, env=env, check=True,
                                                      capture_output=True))
        print(f"RESULT log experiments={points} slurm_pending={pending} seconds={seconds:.3f}")
    finally:
        job = out.stderr.split("job array ")[-1].split(";")[0].strip()
        subprocess.run(["scancel", job], check=False)


if __name__ == "__main__":
    main()
