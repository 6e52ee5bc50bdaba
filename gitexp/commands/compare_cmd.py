"""``git exp compare``: several experiments side by side: params that differ, metrics, time, code."""
from __future__ import annotations

import string
from typing import Any, Dict, List, Optional, Sequence, Tuple

import click

from .. import plots
from .. import timing as timing_mod
from ..errors import BadInput
from ..metrics import is_number
from ..notes import CONFIG_PATH, Experiment, Store
from ..query import param_text, same_value
from ..repo import Repo
from ..status import live_statuses
from ..summary import printable
from .common import cell, fmt_duration, open_store, output_format, print_json, render_table


@click.command()
@click.argument("idents", metavar="ID...", nargs=-1)
@click.option("--group", "-g", help="Compare the experiments of this group (a sweep), with any IDs given.")
@click.option("--metric", "-m", "metric_names", multiple=True, help="Only these metrics (repeatable; default: all).")
@click.option("--over", multiple=True, metavar="PARAM",
              help="Compare groups of runs that differ only in this param (e.g. seed): means, Welch's t-test.")
@output_format("text", "json", default="text")
def compare(idents: Tuple[str, ...], group: Optional[str], metric_names: Tuple[str, ...], fmt: str,
            over: Tuple[str, ...] = ()) -> None:
    """Experiments side by side: params that differ, metrics (best, step of best, last),
    time, and a summary of how their code differs from the first one's.

    The best value of each metric among them is marked with *.
    """
    repo, store = open_store()
    if not idents and group is None:
        raise BadInput("name at least two experiments (or --group)", "e.g. git exp compare a1b2 c3d4")
    exps = [store.find(ident) for ident in idents]  # BadInput for an unknown id, before any work
    if group is not None:
        exps += plots.select(store, store.experiments(), (), group)[0]
    exps = _unique(exps)
    if len(exps) < 2:
        raise BadInput("compare needs at least two different experiments", "name another one")
    if metric_names:
        plots.check_metrics(exps, metric_names)
    statuses = {sha: st for sha, (st, _why) in live_statuses(repo, exps).items()}
    if over:  # gitexp.seeds: each group of seeds against the first
        from .over_view import compare_over

        return compare_over(exps, statuses, over, metric_names, fmt)
    hists = plots.histories(repo, store, exps, statuses)
    data = comparison(repo, store, exps, statuses, hists, list(metric_names))
    if fmt == "json":
        print_json(data)
        return
    _print(data)


def _unique(exps: Sequence[Experiment]) -> List[Experiment]:
    seen: Dict[str, Experiment] = {}
    for exp in exps:
        seen.setdefault(exp.sha, exp)
    return list(seen.values())


def letters(count: int) -> List[str]:
    """A, B, ..., Z, AA, AB, ...: short column names."""
    out = []
    for i in range(count):
        name = ""
        i += 1
        while i:
            i, r = divmod(i - 1, 26)
            name = string.ascii_uppercase[r] + name
        out.append(name)
    return out


def _params(exps: Sequence[Experiment]) -> Tuple[Dict[str, List[Any]], Dict[str, Any]]:
    """(params whose values differ: name -> value per experiment, params equal in all)."""
    keys: Dict[str, None] = {}
    for exp in exps:
        for key in exp.summary.get("params") or {}:
            keys.setdefault(key, None)
    differ: Dict[str, List[Any]] = {}
    same: Dict[str, Any] = {}
    missing = object()
    for key in keys:
        values = [(exp.summary.get("params") or {}).get(key, missing) for exp in exps]
        if all(same_value(v, values[0]) for v in values):
            same[key] = values[0]
        else:
            differ[key] = [None if v is missing else v for v in values]
    return differ, same


def _metrics(exps: Sequence[Experiment], hists: Dict[str, List[Dict[str, Any]]],
             wanted: List[str]) -> Dict[str, Dict[str, Any]]:
    names = wanted or sorted(plots.known_metrics(exps))
    out: Dict[str, Dict[str, Any]] = {}
    for name in names:
        rows = []
        goal = None
        for exp in exps:
            entry = (exp.summary.get("metrics") or {}).get(name)
            entry = entry if isinstance(entry, dict) else {}
            goal = goal or (entry.get("goal") if entry.get("goal") in ("minimize", "maximize") else None)
            hit = timing_mod.time_to_best(hists.get(exp.sha) or [], exp.summary, name)
            rows.append({"best": entry.get("best"), "best_step": entry.get("best_step"), "last": entry.get("last"),
                         "last_step": entry.get("last_step"), "count": entry.get("count"),
                         "seconds_to_best": hit.get("seconds") if hit else None})
        winner = _winner([r["best"] for r in rows], goal)
        out[name] = {"goal": goal, "values": rows, "best_of": winner}
    return out


def _winner(values: List[Any], goal: Optional[str]) -> Optional[int]:
    """Index of the best value by the goal (None without a goal or a number, or on a tie for all)."""
    numbers = [(v, i) for i, v in enumerate(values) if is_number(v) and v == v]
    if goal not in ("minimize", "maximize") or not numbers:
        return None
    best = min(numbers) if goal == "minimize" else max(numbers, key=lambda p: (p[0], -p[1]))
    if len(numbers) > 1 and all(v == best[0] for v, _ in numbers):
        return None
    return best[1]


def code_changes(repo: Repo, base: str, other: str) -> List[Dict[str, Any]]:
    """Files that differ between two experiment commits (their config file left out):
    path, lines added and deleted (None for binary files)."""
    text = repo.out(["diff", "--numstat", "--no-renames", base, other, "--", ".", f":(exclude){CONFIG_PATH}"])
    out = []
    for line in text.splitlines():
        parts = line.split("\t", 2)
        if len(parts) != 3:
            continue
        added, deleted, path = parts
        out.append({"path": path, "added": int(added) if added.isdigit() else None,
                    "deleted": int(deleted) if deleted.isdigit() else None})
    return out


def comparison(repo: Repo, store: Store, exps: Sequence[Experiment], statuses: Dict[str, str],
               hists: Dict[str, List[Dict[str, Any]]], wanted: List[str]) -> Dict[str, Any]:
    differ, same = _params(exps)
    names = letters(len(exps))
    runs = []
    for name, exp in zip(names, exps):
        facts = timing_mod.analyze(hists.get(exp.sha) or [], exp.summary)
        runs.append({"column": name, "id": exp.sha, "name": exp.name, "status": statuses.get(exp.sha, exp.status),
                     "group": exp.summary.get("group"), "parent": exp.summary.get("parent"),
                     "duration": facts["duration"], "step_time": facts["step_time"],
                     "steps_per_s": facts["steps_per_s"], "epoch_time": facts["epoch_time"],
                     "startup": facts["startup"]})
    # Only shas from refs reach git's argv (full hex shas), never text from notes.
    code = [{"column": name, "against": names[0], "files": code_changes(repo, exps[0].sha, exp.sha)}
            for name, exp in zip(names[1:], exps[1:])]
    return {"experiments": runs, "params": differ, "same_params": same,
            "metrics": _metrics(exps, hists, wanted), "code": code}


def _num(value: Any) -> str:
    return cell(value, 24)


def _print(data: Dict[str, Any]) -> None:
    runs = data["experiments"]
    cols = [r["column"] for r in runs]
    echo = click.echo
    for r in runs:
        echo(f"{r['column']} = {cell(r['name'])} ({r['id'][:10]}) {cell(r['status'])}")
    echo("")
    if data["params"]:
        rows = [[cell(k)] + [_num(param_text(v)) for v in values] for k, values in data["params"].items()]
        echo(render_table(["param"] + cols, rows))
    else:
        echo("params: identical")
    if data["same_params"]:
        echo("same in all: " + " ".join(f"{cell(k)}={_num(param_text(v))}" for k, v in data["same_params"].items()))
    parents = {r["parent"] for r in runs}
    if len(parents) > 1:
        echo("based on different commits: " + ", ".join(f"{r['column']} {cell(r['parent'], 12)}" for r in runs))
    echo("")
    rows = []
    for name, entry in data["metrics"].items():
        marks = ["*" if entry["best_of"] == i else "" for i in range(len(runs))]
        vals = entry["values"]
        rows.append([f"{cell(name)} best"] + [_num(v["best"]) + m for v, m in zip(vals, marks)])
        rows.append([f"{cell(name)} step of best"] + [_num(v["best_step"]) for v in vals])
        rows.append([f"{cell(name)} last"] + [_num(v["last"]) for v in vals])
        rows.append([f"{cell(name)} time to best"] + [timing_mod.seconds_text(v["seconds_to_best"]) for v in vals])
    if rows:
        echo(render_table(["metric"] + cols, rows))
        echo("")
    rows = [["duration"] + [fmt_duration(r["duration"]) for r in runs],
            ["step time (median)"] + [timing_mod.seconds_text(r["step_time"]) for r in runs],
            ["steps/s"] + [f"{r['steps_per_s']:.3g}" if r["steps_per_s"] else "" for r in runs],
            ["start-up"] + [timing_mod.seconds_text(r["startup"]) for r in runs]]
    if any(r["epoch_time"] for r in runs):
        rows.append(["epoch time (median)"] + [timing_mod.seconds_text(r["epoch_time"]) for r in runs])
    echo(render_table(["time"] + cols, rows))
    echo("")
    for entry in data["code"]:
        files = entry["files"]
        head = f"code {entry['column']} vs {entry['against']}:"
        if not files:
            echo(f"{head} identical")
            continue
        added = sum(f["added"] or 0 for f in files)
        deleted = sum(f["deleted"] or 0 for f in files)
        listed = ", ".join(_file_text(f) for f in files[:8]) + (f" and {len(files) - 8} more" if len(files) > 8 else "")
        echo(f"{head} {len(files)} file(s) changed, +{added} -{deleted}: {listed}")
    changed = next((e for e in data["code"] if e["files"]), None)
    if changed:
        other = runs[cols.index(changed["column"])]["id"][:10]
        echo(f"(the lines: git exp diff {runs[0]['id'][:10]} {other})")


def _file_text(entry: Dict[str, Any]) -> str:
    path = printable(entry["path"])
    if entry["added"] is None:
        return f"{path} (binary)"
    return f"{path} (+{entry['added']} -{entry['deleted']})"
