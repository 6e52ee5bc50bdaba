"""Cost of `git exp bisect` beyond the training itself, and rounds with --parallel.

A history of N commits where commit 5N/8 makes val_err worse; the trainer sleeps TRAIN_S and
prints its metric. For each bisect: the wall time of `git exp bisect`, the same probes'
programs run bare (the probed commit's tree exported, the command run there, in this same
run), and the overhead per probe = (bisect wall - bare total) / probes. Probes of an earlier
repeat are recorded: each repeat uses a fresh repository.

    python bench/bench_bisect.py [--commits 16] [--train 0.5] [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import gitexp_argv  # noqa: E402

TRAIN = '''import sys, time
time.sleep(float(open("train_s.txt").read()))
level = float(open("level.txt").read())
print(f"val_err={level:.4f}", flush=True)
'''
CONFIG = f'''name: toy
command: {sys.executable} train.py {{seed}}
params: {{seed: 0}}
metrics:
  val_err: {{regex: 'val_err=([0-9.]+)', goal: minimize}}
'''
ENV = {**os.environ, "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "b@x", "GIT_COMMITTER_NAME": "bench",
       "GIT_COMMITTER_EMAIL": "b@x", "GIT_CONFIG_NOSYSTEM": "1"}


def run(path: Path, *argv: str) -> str:
    return subprocess.run(argv, cwd=path, env=ENV, check=True, capture_output=True, text=True).stdout


def history(commits: int, train_s: float) -> Path:
    path = Path(tempfile.mkdtemp(prefix="gitexp-bench-bisect-"))
    run(path, "git", "init", "-q", "-b", "main")
    (path / "train.py").write_text(TRAIN)
    (path / "config.yaml").write_text(CONFIG)
    (path / "train_s.txt").write_text(str(train_s))
    (path / "level.txt").write_text("0.1")
    run(path, "git", "add", "-A")
    run(path, "git", "commit", "-q", "-m", "commit 1")
    first = run(path, "git", "rev-parse", "HEAD").strip()
    worse = max(2, commits * 5 // 8)
    for k in range(2, commits + 1):
        (path / "history.txt").write_text(str(k))
        if k == worse:
            (path / "level.txt").write_text("0.3")
        run(path, "git", "add", "-A")
        run(path, "git", "commit", "-q", "-m", f"commit {k}")
    run(path, "git", "checkout", "-q", first)
    run(path, *gitexp_argv("run", "config.yaml", "--name", "good"))
    run(path, "git", "checkout", "-q", "main")
    run(path, *gitexp_argv("run", "config.yaml", "--name", "bad"))
    return path


def bare(path: Path, commits: List[str]) -> float:
    """The probes' programs alone: each commit's tree exported, its command run there."""
    total = 0.0
    for sha in commits:
        with tempfile.TemporaryDirectory() as where:
            archive = subprocess.run(["git", "archive", sha], cwd=path, check=True, capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", where], input=archive, check=True)
            start = time.perf_counter()
            subprocess.run([sys.executable, "train.py", "0"], cwd=where, check=True, capture_output=True)
            total += time.perf_counter() - start
    return total


def one(commits: int, train_s: float, parallel: int) -> Dict[str, float]:
    path = history(commits, train_s)
    start = time.perf_counter()
    out = run(path, *gitexp_argv("bisect", "good", "bad", "--metric", "val_err", "--format", "json",
                                 "--parallel", str(parallel)))
    wall = time.perf_counter() - start
    result = json.loads(out)
    shas = [p["commit"]["sha"] for p in result["probes"]]
    alone = bare(path, shas)
    return {"wall": wall, "bare": alone, "probes": len(shas), "rounds": result["rounds"],
            "per_probe": (wall - alone) / len(shas)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--commits", type=int, default=16)
    parser.add_argument("--train", type=float, default=0.5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--parallel", default="1,3,7")
    args = parser.parse_args()
    print(f"{args.commits} commits, training {args.train}s per probe, median of {args.repeats}")
    print(f"{'parallel':>8} {'rounds':>6} {'probes':>6} {'wall s':>7} {'bare s':>7} {'overhead/probe s':>16}")
    for k in (int(x) for x in args.parallel.split(",")):
        runs = [one(args.commits, args.train, k) for _ in range(args.repeats)]
        med = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        print(f"{k:>8} {med['rounds']:>6.0f} {med['probes']:>6.0f} {med['wall']:>7.2f} {med['bare']:>7.2f} "
              f"{med['per_probe']:>16.3f}")


if __name__ == "__main__":
    main()
