"""`git exp log` sorted by a metric, against a plain Python reader of the same data (issue 18).

For each size, experiments are recorded through the real store (one commit each, a finished
summary with two metrics, each with the 16-point curve the executor keeps for the sparkline),
the repository is packed as `git gc --auto` leaves it, and the same summaries are written as
one JSON file each. Then, interleaved, median of REPEATS:

* `git exp log --metric val_err --sort val_err` (the table with its sparkline column),
* the same with `--no-spark`,
* the plain reader: a Python script that loads every JSON file, sorts by the metric and prints
  one row each (what any listing has to do at the least: interpreter start, read, sort, print),
* with `--compare DIR`: the first command again with the gitexp of another checkout (e.g. a
  `git worktree` of an older commit), so before and after are measured in the same run, on a
  copy of the repository (each keeps its own summary cache).

Usage: python bench/bench_listing.py [--repeats N] [--compare DIR] [sizes...]   (default: 1000 10000)
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import ROOT, scratch_repo, wait_for_gc  # noqa: E402

import gitexp.watchers  # noqa: E402,F401  (installs the config sections' parsers, as the CLI does)
from gitexp.config import parse_config  # noqa: E402
from gitexp.experiments import initial_summary, make_commit, take_snapshot  # noqa: E402
from gitexp.metrics import spark_series, spark_text  # noqa: E402
from gitexp.notes import Experiment, Store  # noqa: E402
from gitexp.repo import Repo  # noqa: E402

try:  # the lifecycle records a run's first status (newer trees)
    from gitexp.lifecycle import record as _record
except ImportError:  # pragma: no cover - older trees
    def _record(store: Store, exps: List[Experiment], **kw: object) -> None:
        store.create_batch(exps, **kw)  # type: ignore[arg-type]

CONFIG = ("command: python train.py {lr}\nparams: {lr: 0.1, depth: 2}\n"
          "metrics:\n  val_err: {goal: minimize}\n  loss: {goal: minimize}\n")

PLAIN_READER = '''
import json, os, sys
folder, metric = sys.argv[1], sys.argv[2]
rows = []
for name in os.listdir(folder):
    with open(os.path.join(folder, name)) as handle:
        s = json.load(handle)
    m = s.get("metrics", {}).get(metric, {})
    rows.append((m.get("best", float("inf")), s["name"], s["status"], s["params"], m.get("last"), s.get("duration")))
rows.sort(key=lambda r: r[0])
out = ["name status params best last duration"]
for best, name, status, params, last, duration in rows:
    out.append(f"{name:<12} {status:<9} {' '.join(f'{k}={v}' for k, v in params.items()):<24} "
               f"{best:.4g} {last:.4g} {duration:.1f}s")
sys.stdout.write("\\n".join(out) + "\\n")
'''


def metric(values: List[float]) -> Dict[str, object]:
    best = min(values)
    return {"best": best, "last": values[-1], "count": len(values), "goal": "minimize",
            "best_step": values.index(best) + 1, "last_step": len(values), "step_source": "api",
            "spark": spark_text(spark_series(values))}


def add_experiments(repo: Repo, store: Store, start: int, count: int, folder: Path) -> None:
    base = parse_config(CONFIG, source="bench.yaml")
    snap = take_snapshot(repo)
    for chunk in range(start, start + count, 1000):
        exps = []
        for i in range(chunk, min(start + count, chunk + 1000)):
            lr = round(random.uniform(0.001, 1), 5)
            config = base.with_params({"lr": lr, "depth": random.choice([2, 3, 4])}, name=f"exp{i}")
            sha = make_commit(repo, snap, config)
            val = [1 / (1 + lr * step) + random.uniform(0, 0.01) for step in range(1, 31)]
            summary = initial_summary(config, snap, "finished")
            now = time.time()
            summary.update({"duration": 12.5, "exit_code": 0, "started": now - 12.5, "ended": now,
                            "host": "bench", "metrics": {"val_err": metric(val), "loss": metric([2 * v for v in val])}})
            exps.append(Experiment(sha, f"exp{i}", summary))
        _record(store, exps)
        for exp in exps:
            (folder / f"{exp.sha}.json").write_text(json.dumps({**exp.summary, "name": exp.name}))


def timer(argv: List[str], cwd: Path, env: Dict[str, str]) -> Callable[[], float]:
    def run() -> float:
        start = time.perf_counter()
        subprocess.run(argv, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - start
    return run


def interleaved(repeats: int, timers: Dict[str, Callable[[], float]]) -> Dict[str, float]:
    """Median of each, the commands taking turns (so a busy moment costs them all alike)."""
    times: Dict[str, List[float]] = {name: [] for name in timers}
    for _ in range(repeats):
        for name, run in timers.items():
            times[name].append(run())
    return {name: sorted(values)[len(values) // 2] for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("sizes", nargs="*", type=int, default=[1000, 10000])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--compare", help="another checkout whose gitexp runs the same listing")
    args = parser.parse_args()
    path = scratch_repo({"train.py": "print(1)\n"})
    folder = Path(tempfile.mkdtemp(prefix="gitexp-bench-json-"))
    reader = folder.parent / f"{folder.name}-reader.py"
    reader.write_text(PLAIN_READER)
    repo = Repo.discover(str(path))
    store = Store(repo)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as installed: bytecode cached
    log = [sys.executable, "-m", "gitexp", "log", "--metric", "val_err", "--sort", "val_err"]
    have = 0
    for size in sorted(args.sizes):
        add_experiments(repo, store, have, size - have, folder)
        have = size
        wait_for_gc()  # gitexp starts `git gc --auto` after writes: let it finish, then pack as it would
        subprocess.run(["git", "-c", "gc.autoDetach=false", "gc", "--auto", "--quiet"], cwd=path, check=True)
        subprocess.run(["git", "pack-refs", "--all"], cwd=path, check=True)
        timers = {"log": timer(log, path, env), "log_no_spark": timer(log + ["--no-spark"], path, env),
                  "plain_reader": timer([sys.executable, str(reader), str(folder), "val_err"], path, env)}
        if args.compare:
            # A copy of the repository: each gitexp keeps its own summary cache (the same file name),
            # so neither reads what the other wrote.
            twin = Path(f"{path}-compare-{size}")
            shutil.copytree(path, twin, symlinks=True)
            timers["log_compare"] = timer(log, twin, {**env, "PYTHONPATH": str(Path(args.compare).resolve())})
        for run in timers.values():  # warm the page cache and bytecode once
            run()
        result = interleaved(args.repeats, timers)
        fields = " ".join(f"{name}_s={seconds:.3f}" for name, seconds in result.items())
        print(f"RESULT experiments={size} {fields} log/plain={result['log'] / result['plain_reader']:.2f}x "
              f"(median of {args.repeats}, interleaved)", flush=True)


if __name__ == "__main__":
    main()
