"""``git exp log``: one row per experiment, as a table, CSV or JSON."""
from __future__ import annotations

import csv
import sys
from typing import Any, Dict, List, Optional, Tuple

import click

from .. import live as live_mod
from ..numbers import SPARK_ASCII, SPARK_CHARS, parse_spark, spark_line
from ..summary_cache import spark_lines
from ..values import closest
from ..errors import BadInput
from ..status import ELSEWHERE, live_statuses
from ..notes import Experiment, Store
from ..query import known_keys, parse_filter, sort_experiments
from .common import (alerts_cell, no_cycle_collection, fmt_duration, fmt_time, fmt_value, open_store, output_format, print_json,
                     record, render_table)


@click.command()
@click.option("--metric", "-m", "metric_names", multiple=True, help="Show this metric: best by its goal and last (repeatable).")
@click.option("--sort", "sort_key", help="Sort by a param or metric (metrics best-first; '-name' reverses).")
@click.option("--filter", "-f", "filters", multiple=True, help="Keep rows matching e.g. 'lr<0.01', status=finished (repeatable, all must hold).")
@click.option("--group", "-g", help="Only this group (e.g. a sweep).")
@click.option("-n", "limit", type=click.IntRange(min=1), help="Show at most N rows.")
@click.option("--spark/--no-spark", default=True, show_default=True,
              help="A sparkline column: the curve of the first metric shown (from the summaries: no history is read).")
@click.option("--attempts", "expand", is_flag=True,
              help="One row per attempt (retries, resumes) instead of one per experiment.")
@click.option("--over", multiple=True, metavar="PARAM",
              help="Fold runs that differ only in this param (e.g. seed; repeatable) into one row: mean ± std (n).")
@output_format("table", "csv", "json")
def log(metric_names: Tuple[str, ...], sort_key: Optional[str], filters: Tuple[str, ...],
        group: Optional[str], limit: Optional[int], spark: bool, fmt: str, expand: bool = False,
        over: Tuple[str, ...] = ()) -> None:
    """List experiments with their params, status and metrics."""
    with no_cycle_collection():
        _log(metric_names, sort_key, filters, group, limit, spark, fmt, expand, over)


def _log(metric_names: Tuple[str, ...], sort_key: Optional[str], filters: Tuple[str, ...],
         group: Optional[str], limit: Optional[int], spark: bool, fmt: str, expand: bool,
         over: Tuple[str, ...]) -> None:
    repo, store = open_store()
    exps = store.experiments()
    if not exps and fmt == "table":
        from ..sync import hint_when_empty

        hint = hint_when_empty(repo)
        if hint:
            click.echo(f"no experiments here yet; {hint}", err=True)
            return
    parsed = [parse_filter(text) for text in filters]
    keys = known_keys(exps)
    for name in [f.key for f in parsed] + list(metric_names) + ([sort_key.lstrip("-")] if sort_key else []):
        if exps and name not in keys and not (name.endswith(".last") and name[:-5] in keys):
            raise BadInput(f"unknown param or metric {name!r}", closest(name, keys))
    live = live_statuses(repo, exps)
    statuses = {sha: status for sha, (status, _why) in live.items()}
    elsewhere = {sha for sha, (_status, why) in live.items() if why and why.startswith(ELSEWHERE)}
    # Runs in progress on this machine: their points so far, from the run directory (the
    # notes are written every GITEXP_NOTES_INTERVAL seconds). Ended runs read no file, and
    # load none of what reading one takes (gitexp.live imports it where it is used).
    live_mod.refresh(repo, exps, statuses)
    if group:
        exps = _in_group(exps, group)
    if over:  # folds over seeds (gitexp.seeds): filter and sort act on the means
        from .over_view import log_over

        return log_over(exps, statuses, over, parsed, sort_key, limit, metric_names, fmt)
    exps = [e for e in exps if all(f.matches(e, statuses[e.sha]) for f in parsed)]
    exps = sort_experiments(exps, sort_key)
    if limit:
        exps = exps[:limit]
    if expand:
        exps, statuses = _with_attempts(store, exps, statuses)
    metrics = list(metric_names) or _default_metrics(exps)
    show_last = bool(metric_names)
    if fmt == "json":
        print_json([record(e, statuses[e.sha]) for e in exps])
    elif fmt == "csv":  # an export: every metric unless -m chose some (the table shows two)
        _write_csv(exps, statuses, list(metric_names) or all_metrics(exps))
    else:
        _print_table(exps, {sha: st + (" elsewhere" if sha in elsewhere else "") for sha, st in statuses.items()},
                     metrics, show_last, metrics[0] if spark and metrics else None)


def _with_attempts(store: Store, exps: List[Experiment], statuses: Dict[str, str]
                   ) -> Tuple[List[Experiment], Dict[str, str]]:
    """Each experiment preceded by its earlier attempts (one read for all their summaries)."""
    from ..attempts import chain_shas

    earlier = {e.sha: chain_shas(e.summary, e.sha)[:-1] for e in exps}
    notes = store.read_notes_json([sha for shas in earlier.values() for sha in shas])
    out: List[Experiment] = []
    statuses = dict(statuses)
    for exp in exps:
        for sha in earlier[exp.sha]:
            summary = notes.get(sha, {})
            out.append(Experiment(sha, exp.name, summary))
            statuses[sha] = str(summary.get("status", "?"))
        out.append(exp)
    return out, statuses


def _in_group(exps: List[Experiment], group: str) -> List[Experiment]:
    """The experiments of ``group``; BadInput naming the known groups when it has none."""
    members = [e for e in exps if e.summary.get("group") == group]
    if members or not exps:
        return members
    groups = sorted({g for g in (e.summary.get("group") for e in exps) if isinstance(g, str) and g})
    if not groups:
        raise BadInput(f"no experiment in group {group!r}: no experiment has a group")
    hint = closest(group, groups)
    listed = ", ".join(groups[:20]) + (f" and {len(groups) - 20} more" if len(groups) > 20 else "")
    raise BadInput(f"no experiment in group {group!r} (groups: {listed})",
                   hint if hint.startswith("did you mean") else None)


def _default_metrics(exps: List[Experiment]) -> List[str]:
    """The table's metric columns: the first two declared with a goal."""
    return _goal_metrics(exps)[:2]


def all_metrics(exps: List[Experiment]) -> List[str]:
    """Every metric of any row: those with a goal first (as the table shows them), then the
    others by name."""
    goals = _goal_metrics(exps)
    rest: Dict[str, None] = {}
    for exp in exps:
        found = exp.summary.get("metrics")
        for name in found if isinstance(found, dict) else {}:
            if name not in goals:
                rest.setdefault(str(name), None)
    return goals + sorted(rest)


def _goal_metrics(exps: List[Experiment]) -> List[str]:
    names: Dict[str, None] = {}
    for exp in exps:
        found = exp.summary.get("goals")
        for name in found if isinstance(found, dict) else {}:
            names.setdefault(str(name), None)
    return list(names)


def _metric_cells(exp: Experiment, name: str) -> Tuple[Any, Any]:
    entry = (exp.summary.get("metrics") or {}).get(name) or {}
    return entry.get("best"), entry.get("last")


def _print_table(exps: List[Experiment], statuses: Dict[str, str], metrics: List[str], show_last: bool,
                 spark_metric: Optional[str] = None) -> None:
    if not exps:
        click.echo("no experiments yet (git exp run config.yaml)", err=True)
        return
    sparks = _sparks(exps, spark_metric) if spark_metric else None
    headers = ["id", "name", "status", "params"]
    for name in metrics:
        headers += [f"{name} best", f"{name} last"] if show_last else [name]
    if sparks is not None:
        headers.append(f"{spark_metric} curve")
    headers += ["duration", "when"]

    alerts = {e.sha: alerts_cell(e.summary) for e in exps if e.summary.get("alerts")}
    if alerts:  # a column only when some run raised an alert (gitexp.diagnostics)
        headers.append("alerts")
    click.echo(render_table(headers, [_row(exp, statuses, metrics, show_last, sparks, alerts) for exp in exps]))


def _row(exp: Experiment, statuses: Dict[str, str], metrics: List[str], show_last: bool,
         sparks: Optional[Dict[str, str]], alerts: Dict[str, str]) -> List[str]:
    """One line of the table (10,000 of them for a big listing: each lookup made once)."""
    s = exp.summary
    params = s.get("params")
    attempt = exp.attempt
    row = [exp.sha[:8], exp.name if attempt == 1 else f"{exp.name} #{attempt}", statuses[exp.sha],
           " ".join([f"{k}={fmt_value(v)}" for k, v in params.items()]) if params else ""]
    found = s.get("metrics") or {}
    for name in metrics:
        entry = found.get(name) or {}
        best, last = entry.get("best"), entry.get("last")
        row += [fmt_value(best), fmt_value(last)] if show_last else [fmt_value(best if best is not None else last)]
    if sparks is not None:
        row.append(sparks.get(exp.sha, ""))
    row += [fmt_duration(s.get("duration")), fmt_time(s.get("created"))]
    if alerts:
        row.append(alerts.get(exp.sha, ""))
    return row


def _sparks(exps: List[Experiment], metric: str) -> Optional[Dict[str, str]]:
    """sha -> sparkline of the metric's downsampled curve kept in its summary (``spark``,
    written by metrics.summarize); None when no row has one (the column is left out). Notes
    written before summaries carried a curve show an empty cell."""
    out: Dict[str, str] = {}
    chars = SPARK_CHARS if _can_print(SPARK_CHARS) else SPARK_ASCII
    memo = spark_lines()
    for exp in exps:
        entry = (exp.summary.get("metrics") or {}).get(metric)
        if not isinstance(entry, dict):
            continue
        line = spark_line(entry.get("spark"), chars, memo)
        if line or parse_spark(entry.get("spark")):  # a curve of missing values: an empty cell, as before
            out[exp.sha] = line
    return out or None


def _can_print(text: str) -> bool:
    encoding = getattr(sys.stdout, "encoding", None) or "ascii"
    try:
        text.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def _write_csv(exps: List[Experiment], statuses: Dict[str, str], metrics: List[str]) -> None:
    params: Dict[str, None] = {}
    for exp in exps:
        for key in exp.summary.get("params") or {}:
            params.setdefault(key, None)
    writer = csv.writer(sys.stdout)
    header = ["id", "name", "group", "status"] + list(params)
    for name in metrics:
        header += [f"{name}_best", f"{name}_last"]
    header += ["duration_s", "created", "exit_code", "host"]
    writer.writerow(header)
    for exp in exps:
        s = exp.summary
        row = [exp.sha, exp.name, s.get("group") or "", statuses[exp.sha]]
        row += [_csv(s.get("params", {}).get(k)) for k in params]
        for name in metrics:
            row += [_csv(v) for v in _metric_cells(exp, name)]
        row += [_csv(s.get("duration")), fmt_time(s.get("created")), _csv(s.get("exit_code")), s.get("host") or ""]
        writer.writerow(row)


def _csv(value: Any) -> str:
    return "" if value is None else str(value)
