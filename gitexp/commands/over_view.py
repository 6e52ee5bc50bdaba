"""``--over PARAM`` for log, compare and plot: folds of runs (gitexp.seeds), printed."""
from __future__ import annotations

import csv
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

import click

from .. import seeds
from ..config import closest
from ..errors import BadInput
from ..notes import Experiment
from ..query import Filter, sort_experiments
from .common import fmt_duration, fmt_value, print_json, render_table

ALPHA = 0.05


def check_over(exps: Sequence[Experiment], over: Sequence[str]) -> None:
    params = sorted({k for e in exps for k in (e.summary.get("params") or {})})
    for name in over:
        if exps and name not in params:
            raise BadInput(f"--over {name}: no experiment has a param {name!r}", closest(name, params))


def folded(exps: Sequence[Experiment], statuses: Dict[str, str], over: Sequence[str]
           ) -> Tuple[List[seeds.Fold], Dict[str, seeds.Fold]]:
    check_over(exps, over)
    folds = seeds.fold(exps, statuses, over)
    return folds, {f.first.sha: f for f in folds}


def stat_text(s: Optional[seeds.Stat]) -> str:
    if s is None:
        return ""
    return f"{fmt_value(s.mean)} ± {fmt_value(s.std)} (n={s.n})" if s.std is not None else f"{fmt_value(s.mean)} (n=1)"


def log_over(exps: List[Experiment], statuses: Dict[str, str], over: Sequence[str], filters: Sequence[Filter],
             sort_key: Optional[str], limit: Optional[int], metrics: Sequence[str], fmt: str) -> None:
    """``git exp log --over``: one row per fold; filters and sort act on the means."""
    folds, by_sha = folded(exps, statuses, over)
    stand_ins = [f.as_experiment() for f in folds]
    stand_ins = [e for e in stand_ins if all(flt.matches(e, e.status) for flt in filters)]
    stand_ins = sort_experiments(stand_ins, sort_key)[:limit]
    chosen = [by_sha[e.sha] for e in stand_ins]
    if fmt == "json":
        print_json([f.to_json() for f in chosen])
        return
    names = list(metrics) or sorted({m for f in chosen for m in f.goals})[:2] or \
        sorted({m for f in chosen for m in f.metrics})[:2]
    if fmt == "csv":
        _csv(chosen, names, over)
        return
    headers = ["id", "name", "runs", "params", f"over {','.join(over)}", *[f"{m} mean ± std" for m in names],
               "duration"]
    rows = []
    for f in chosen:
        counts = f"{len(f.runs)} finished" + (f", {len(f.open)} running" if f.open else "") + \
            (f", {len(f.ended_badly)} failed" if f.ended_badly else "")
        span = f"{fmt_duration(f.duration.lo)}–{fmt_duration(f.duration.hi)}" if f.duration else ""
        rows.append([f.first.sha[:8], f.first.name, counts, " ".join(f"{k}={fmt_value(v)}" for k, v in f.params.items()),
                     ",".join(fmt_value(v) for v in f.over.get(over[0], []))[:40],
                     *[stat_text(f.metrics.get(m)) for m in names], span])
    if not rows:
        click.echo("no experiments to fold", err=True)
        return
    click.echo(render_table(headers, rows))


def _csv(folds: Sequence[seeds.Fold], metrics: Sequence[str], over: Sequence[str]) -> None:
    params = list(dict.fromkeys(k for f in folds for k in f.params))
    writer = csv.writer(sys.stdout)
    writer.writerow(["id", "name", "n", "in_progress", "failed", *params,
                     *[f"{m}_{x}" for m in metrics for x in ("mean", "std")], "duration_mean", "duration_std"])
    for f in folds:
        cells: List[Any] = [f.first.sha, f.first.name, len(f.runs), len(f.open), len(f.ended_badly)]
        cells += [f.params.get(k, "") for k in params]
        for m in metrics:
            s = f.metrics.get(m)
            cells += [s.mean if s else "", s.std if s and s.std is not None else ""]
        cells += [f.duration.mean if f.duration else "", f.duration.std if f.duration and f.duration.std else ""]
        writer.writerow(cells)


def compare_over(exps: List[Experiment], statuses: Dict[str, str], over: Sequence[str],
                 metrics: Sequence[str], fmt: str) -> None:
    """``git exp compare --over``: each fold against the first, metric by metric (Welch's t-test)."""
    folds, _ = folded(exps, statuses, over)
    if len(folds) < 2:
        raise BadInput(f"the experiments make only one group over {', '.join(over)}: nothing to compare",
                       "add runs that differ in another param")
    names = list(metrics) or sorted({m for f in folds for m in f.metrics})
    base = folds[0]
    out: List[Dict[str, Any]] = []
    for other in folds[1:]:
        for m in names:
            a, b = base.metrics.get(m), other.metrics.get(m)
            test = seeds.welch(a, b) if a and b else None
            out.append({"metric": m, "a": base.to_json(), "b": other.to_json(), "test": test.to_json() if test else None,
                        "differ": None if test is None else test.p < ALPHA,
                        "a_stat": a.to_json() if a else None, "b_stat": b.to_json() if b else None})
    if fmt == "json":
        print_json({"method": "Welch's t-test (two-sided, unequal variances)", "alpha": ALPHA, "comparisons": out})
        return
    click.echo(f"groups over {', '.join(over)} (A: {base.first.name}, "
               f"{' '.join(f'{k}={fmt_value(v)}' for k, v in base.params.items())}); "
               f"Welch's t-test, two-sided, alpha {ALPHA}")
    rows = []
    for item, letter in zip(out, _letters(len(folds), len(names))):
        a, b, test = item["a_stat"], item["b_stat"], item["test"]
        verdict = "need 2+ runs each" if test is None else \
            ("differ beyond their spread" if item["differ"] else "within their spread")
        rows.append([letter, item["metric"], _stat_cell(a), _stat_cell(b),
                     "" if test is None else f"{test['t']:.3g}", "" if test is None else f"{test['df']:.3g}",
                     "" if test is None else f"{test['p']:.3g}", verdict])
    click.echo(render_table(["vs", "metric", "A mean ± std (n)", "B mean ± std (n)", "t", "df", "p", "verdict"], rows))
    for other, letter in zip(folds, ["A", *_letters(len(folds), 1)]):
        counted = f" ({len(other.open)} in progress, {len(other.ended_badly)} failed: not averaged)" \
            if other.open or other.ended_badly else ""
        click.echo(f"{letter}: {other.first.name} " + " ".join(f"{k}={fmt_value(v)}" for k, v in other.params.items())
                   + counted)


def _letters(folds: int, per: int) -> List[str]:
    return [chr(ord("B") + i) if i < 25 else f"#{i + 2}" for i in range(folds - 1) for _ in range(per)]


def _stat_cell(s: Optional[Dict[str, Any]]) -> str:
    if not s:
        return ""
    return stat_text(seeds.Stat(s["n"], s["mean"], s["std"], s["min"], s["max"]))


def band_curves(chosen: Sequence[Experiment], hists: Dict[str, List[Dict[str, Any]]], statuses: Dict[str, str],
                over: Sequence[str], metrics: Sequence[str]
                ) -> Tuple[List[Experiment], Dict[str, List[Dict[str, Any]]], Dict[str, str], Dict[str, Dict[str, Any]]]:
    """``plot --over``: per fold of finished runs a mean curve and its band (gitexp.seeds)."""
    folds, _ = folded(chosen, statuses, over)
    return seeds.band_curves(folds, hists, over, metrics)
