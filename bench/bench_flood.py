"""A program that prints 70,000 metric lines a second (issue 17 item 12): the executor's peak RSS,
the size of the notes, and how long `git exp metrics` and `git exp show` of that run take.

The program writes 700 lines every 10 ms for SECONDS seconds (default 60), each a step and a loss
read by a metric regex. `git exp run` runs the executor in its own process, so its peak RSS is
sampled (psutil, every 0.1 s) on that process, the program's own not counted. Targets: RSS under
150 MB whatever the length; metrics and show under 1 s each.

Usage: python bench/bench_flood.py [seconds] [lines_per_second]
       python bench/bench_flood.py --build N   # only the end's history build, of N captured points
"""
from __future__ import annotations

import os
import resource
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Tuple

import psutil

from common import gitexp_argv, scratch_repo

FLOOD_PY = textwrap.dedent('''
    import sys, time
    seconds, rate = float(sys.argv[1]), int(sys.argv[2])
    per_tick = rate // 100
    out = sys.stdout
    start = time.monotonic()
    step = 0
    while time.monotonic() - start < seconds:
        tick = time.monotonic()
        out.write("".join(f"step {step + i} loss {1.0 / (step + i + 1):.6f}\\n" for i in range(per_tick)))
        out.flush()
        step += per_tick
        time.sleep(max(0.0, 0.01 - (time.monotonic() - tick)))
    print(f"printed {step} lines in {time.monotonic() - start:.1f}s", file=sys.stderr, flush=True)
''')
CONFIG = textwrap.dedent('''
    name: flood
    command: python flood.py {seconds} {rate}
    params: {seconds: 60, rate: 70000}
    metrics:
      loss: {regex: 'step (?P<step>[0-9]+) loss (?P<value>[0-9.]+)', goal: minimize}
''')


def timed(repo: str, *args: str) -> Tuple[float, float]:
    """(wall seconds, CPU seconds of the command and its children)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(gitexp_argv(*args), cwd=repo, check=True, capture_output=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def build_only(n: int) -> None:
    """What the end of a run of ``n`` regex points costs, without the program: the history note,
    summaries and curve built from a captured.jsonl of n points (peak RSS of this process)."""
    import json
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from gitexp import history_file

    folder = tempfile.mkdtemp(prefix="flood-")
    captured = os.path.join(folder, "captured.jsonl")
    with open(captured, "w") as handle:
        for i in range(n):
            handle.write(json.dumps({"metric": "loss", "value": 1.0 / (i + 1), "step": i, "time": 1.7e9 + i / 7e4,
                                     "src": "group"}) + "\n")
    start, cpu = time.perf_counter(), time.process_time()
    built = history_file.build(os.path.join(folder, "metrics.jsonl"), captured, [], {}, folder)
    print(f"history_file.build of {n:,} points: {time.perf_counter() - start:.1f}s wall, "
          f"{time.process_time() - cpu:.1f}s CPU; {built.records:,} records, curve of {len(built.curve or [])}; "
          f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


def main() -> None:
    if sys.argv[1:2] == ["--build"]:
        build_only(int(sys.argv[2]))
        return
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 60.0
    rate = int(sys.argv[2]) if len(sys.argv) > 2 else 70000
    repo = str(scratch_repo({"flood.py": FLOOD_PY, "c.yaml": CONFIG}))
    proc = subprocess.Popen(gitexp_argv("run", "c.yaml", "-p", f"seconds={seconds:g}", "-p", f"rate={rate}"),
                            cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = [0]
    ended = [0.0]
    cpu = [0.0]

    def sample() -> None:
        me = psutil.Process(proc.pid)
        while proc.poll() is None:
            try:
                peak[0] = max(peak[0], me.memory_info().rss)
                times = me.cpu_times()
                cpu[0] = times.user + times.system
            except psutil.Error:
                return
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    _out, err = proc.communicate()
    total = time.perf_counter() - start
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"the run failed: {err}")
    ended[0] = total - seconds
    sha = subprocess.run(["git", "for-each-ref", "--format=%(objectname)", "refs/exps/"], cwd=repo,
                         capture_output=True, text=True, check=True).stdout.split()[0]

    def note_size(ref: str) -> int:
        blob = subprocess.run(["git", "notes", f"--ref={ref}", "list", sha], cwd=repo, capture_output=True,
                              text=True, check=True).stdout.strip()
        return int(subprocess.run(["git", "cat-file", "-s", blob], cwd=repo, capture_output=True, text=True,
                                  check=True).stdout)

    import json

    summary = json.loads(subprocess.run(["git", "notes", "--ref=exps", "show", sha], cwd=repo, capture_output=True,
                                        text=True, check=True).stdout)
    points = summary["metrics"]["loss"]["count"]
    history, details = note_size("exps-metrics"), note_size("exps-details")
    log = (Path(repo) / ".git" / "gitexp" / "runs" / sha / "output.log").read_text(errors="replace")
    printed = [line for line in log.splitlines() if line.startswith("printed ")]
    print(f"program: {printed[-1] if printed else '?'} (asked {rate:,} lines/s for {seconds:g}s); "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"points recorded: {points:,} (curve: {summary.get('curve')})")
    print(f"executor peak RSS: {peak[0] / 2**20:.0f} MB; its CPU time: {cpu[0]:.0f}s")
    print(f"wall time of git exp run: {total:.1f}s ({ended[0]:.1f}s after the program's {seconds:g}s)")
    print(f"history note: {history / 2**20:.1f} MB ({history / max(points, 1):.0f} B a point); "
          f"details note (with the summary curve): {details / 1024:.0f} KB; summary note: {note_size('exps')} B")
    for args in (("--help",), ("metrics", sha[:10]), ("show", sha[:10]), ("log",), ("metrics", sha[:10], "--full")):
        wall, spent = min(timed(repo, *args) for _ in range(3))
        print(f"git exp {' '.join(args)}: {wall:.2f}s wall, {spent:.2f}s CPU (best of 3)")


if __name__ == "__main__":
    main()
