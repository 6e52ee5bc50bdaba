"""Costs of the analysis commands (issue #12).

1. A 20-run sweep with 10,000 points per run (two metrics): `git exp plot` to the terminal
   and to a PNG, and `git exp report`, as a user runs them.
2. `git exp log -m val_err` on 10,000 experiments: with the sparkline column (summaries
   carry a 16-point curve per metric), with --no-spark, and on the same experiments written
   without the curve (notes from before it existed), so the price of the column shows.

Usage: python bench/bench_analysis.py [runs points listing]   (default: 20 10000 10000)
"""
from __future__ import annotations

import os
import random
import subprocess
import sys
import time

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))

from common import ROOT, gitexp_argv, median_of, scratch_repo, wait_for_gc  # noqa: E402

import gitexp.watchers  # noqa: E402,F401  (installs the config sections' parsers, as the CLI does)
from gitexp.config import parse_config  # noqa: E402
from gitexp.experiments import initial_summary, make_commit, take_snapshot  # noqa: E402
from gitexp.lifecycle import record  # noqa: E402
from gitexp.metrics import spark_series, spark_text  # noqa: E402
from gitexp.notes import DETAILS_REF, METRICS_REF, Experiment, Store, dump_json, jsonl  # noqa: E402
from gitexp.repo import Repo  # noqa: E402

CONFIG = ("command: python train.py {lr}\nparams: {lr: 0.1}\n"
          "metrics:\n  val_err: {goal: minimize}\n  loss: {goal: minimize}\n")


def curve(lr: float, points: int) -> list:
    t0 = time.time() - points * 0.05
    rng = random.Random(lr)
    out = []
    for step in range(1, points + 1):
        val = 1.0 / (1 + lr * step / 50) + rng.uniform(0, 0.02)
        out.append({"step": step, "time": t0 + step * 0.05, "val_err": val, "loss": 2 * val})
    return out


def metric_summary(values: list, with_spark: bool) -> dict:
    entry = {"best": min(values), "last": values[-1], "count": len(values), "goal": "minimize",
             "best_step": values.index(min(values)) + 1, "last_step": len(values)}
    if with_spark:
        entry["spark"] = spark_text(spark_series(values))
    return entry


def summary_curve(history: list) -> dict:
    """The details note's summary curve, built as the executor builds it at a run's end."""
    import tempfile

    from gitexp import history_file

    with tempfile.TemporaryDirectory() as folder:
        api = os.path.join(folder, "metrics.jsonl")
        with open(api, "w") as handle:
            handle.write(jsonl(history).decode())
        built = history_file.build(api, os.path.join(folder, "captured.jsonl"), [], {}, folder)
        built.remove()
    field = history_file.curve_field(built)
    return {history_file.CURVE_KEY: field} if field else {}


def make(repo: Repo, store: Store, count: int, points: int, group: str, with_history: bool,
         with_spark: bool = True, with_curve: bool = False) -> None:
    """``count`` finished experiments of ``points`` points each; ``with_curve``: each keeps a
    summary curve in its details note, as a run recorded by ``git exp run`` does."""
    base = parse_config(CONFIG, source="bench.yaml")
    snap = take_snapshot(repo)
    for start in range(0, count, 1000):
        exps, notes = [], {}
        for i in range(start, min(count, start + 1000)):
            lr = round(0.05 + i * 0.37 % 1, 4)
            config = base.with_params({"lr": lr}, name=f"{group}-{i}")
            config.group = group
            sha = make_commit(repo, snap, config)
            history = curve(lr, points)
            summary = initial_summary(config, snap, "finished")
            summary.update({"duration": points * 0.05, "exit_code": 0, "started": history[0]["time"] - 2,
                            "ended": history[-1]["time"],
                            "metrics": {m: metric_summary([r[m] for r in history], with_spark)
                                        for m in ("val_err", "loss")}})
            exps.append(Experiment(sha, f"{group}-{i}", summary))
            if with_history:
                notes[(METRICS_REF, sha)] = jsonl(history)
            details = summary_curve(history) if with_curve else {}
            if details:
                notes[(DETAILS_REF, sha)] = dump_json(details)
                summary["curve"] = True
        record(store, exps, extra_notes=notes)


def timed(path: str, *args: str) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return median_of(3, lambda: subprocess.run(gitexp_argv(*args), cwd=path, env=env, check=True,
                                               capture_output=True))


def settle(path: str) -> None:
    wait_for_gc()
    subprocess.run(["git", "-c", "gc.autoDetach=false", "gc", "--auto", "--quiet"], cwd=path, check=True)


def main() -> None:
    runs, points, listing = ([int(x) for x in sys.argv[1:4]] + [20, 10_000, 10_000][len(sys.argv[1:4]):])[:3]
    path = str(scratch_repo({"train.py": "print(1)\n"}))
    repo = Repo.discover(path)
    store = Store(repo)
    make(repo, store, runs, points, "sweep", with_history=True)
    settle(path)
    out = os.path.join(path, "out")
    os.makedirs(out)
    print(f"{runs} runs x {points} points (val_err, loss):")
    for label, args in [
        ("plot val_err, terminal 120x25", ("plot", "val_err", "--width", "120", "--height", "25")),
        ("plot val_err loss -> PNG", ("plot", "val_err", "loss", "-o", os.path.join(out, "c.png"))),
        ("plot val_err --smooth 0.6 --x time -> PNG", ("plot", "val_err", "--smooth", "0.6", "--x", "time",
                                                       "-o", os.path.join(out, "t.png"))),
        ("report -> HTML", ("report", "-o", os.path.join(out, "r.html"))),
        ("compare first 3", ("compare", "sweep-0", "sweep-1", "sweep-2")),
    ]:
        seconds = timed(path, *args)
        print(f"RESULT {label:<45} {seconds:.2f}s")
    size = os.path.getsize(os.path.join(out, "r.html"))
    print(f"RESULT report size {size / 1024:.0f} KiB")

    for with_spark in (True, False):
        lpath = str(scratch_repo({"train.py": "print(1)\n"}))
        lrepo = Repo.discover(lpath)
        make(lrepo, Store(lrepo), listing, 200, "many", with_history=False, with_spark=with_spark)
        settle(lpath)
        what = "summaries with curves" if with_spark else "old summaries (no curve)"
        for args in (("log", "-m", "val_err"), ("log", "-m", "val_err", "--no-spark")):
            seconds = timed(lpath, *args)
            print(f"RESULT {listing} exps, {what:<26} git exp {' '.join(args):<28} {seconds:.3f}s")


if __name__ == "__main__":
    main()
