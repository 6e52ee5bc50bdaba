"""``git exp top`` (running experiments, live) and ``git exp hosts`` (free resources per host).

Both read this machine directly and each ssh run target in one ``_agent`` round trip (``top``
and ``queue`` ops), so ``top --on gpu3`` shows what ``top`` shows on gpu3. The view is rich's
live table when rich is installed (``pip install 'gitexp[top]'``); ``--once`` prints one plain
table (and so does a run without rich, with the hint).
"""
from __future__ import annotations

import math
import socket
import sys
import time
from typing import Any, Dict, List, Mapping, Optional, Tuple

import click

from .. import timing as timing_mod
from ..errors import BadInput
from ..lifecycle import LIVE
from ..notes import Store
from ..repo import Repo
from ..units import format_duration, format_size
from .common import alerts_cell, fmt_value, open_store, print_json, render_table, resources_text

TOP_HEADERS = ["id", "name", "host", "step", "steps/s", "ETA", "metrics", "CPU", "RSS", "GPU", "alerts"]


def _num(value: Any) -> Optional[float]:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


# -- top -----------------------------------------------------------------------------------------
def top_rows(repo: Repo, store: Store) -> List[Dict[str, Any]]:
    """One row per run in progress (live files for those running here, the notes for others)."""
    from .. import live as live_mod
    from ..monitor import read_live
    from ..paths import run_paths
    from ..status import live_statuses

    exps = store.experiments()
    statuses = {sha: status for sha, (status, _why) in live_statuses(repo, exps).items()}
    here = socket.gethostname()
    now = time.time()
    rows = []
    for exp in exps:
        if statuses.get(exp.sha) not in LIVE:
            continue
        s = exp.summary
        run = live_mod.read(repo, exp, statuses[exp.sha], here)
        history = run.history if run is not None else []
        found = run.metrics if run is not None else s.get("metrics")
        metrics: Dict[str, Any] = found if isinstance(found, dict) else {}
        live = read_live(run_paths(repo, exp.sha, s).root) if run is not None else {}
        started = _num(s.get("started"))
        rows.append({"id": exp.sha, "name": exp.name, "host": s.get("host"), "status": statuses[exp.sha],
                     "started": started, **_progress(history, s, repo, exp.sha, started, now),
                     "metrics": {n: e.get("last") for n, e in list(metrics.items())[:4] if isinstance(e, dict)},
                     "resources": live.get("latest") or {}, "alerts": alerts_cell(s)})
    return rows


def _progress(history: List[Dict[str, Any]], summary: Mapping[str, Any], repo: Repo, sha: str,
              started: Optional[float], now: float) -> Dict[str, Any]:
    """Where the run is, how fast it goes and when it ends: from its step budget (the config's
    ``budget:``, else a param with a common name: max_iters, steps, epochs, ...), else from
    ``requires.time``."""
    step, rate = timing_mod.progress(history, "step")
    config = Store(repo).config_of(sha)  # the checked mapping: a view shows what it can
    params = summary.get("params") if isinstance(summary.get("params"), dict) else {}
    budget = timing_mod.budget_of(params or {}, config.get("budget"))
    amount, unit = budget if budget else (None, "step")
    where, pace = (step, rate) if unit == "step" else timing_mod.progress(history, "epoch")
    eta = None
    if amount and where is not None and pace:
        eta = max(0.0, (amount - where) / pace)
    else:
        limit = _time_limit(config)
        if limit and started:
            eta = max(0.0, started + limit - now)
    out = {"step": step, "rate": rate, "eta": eta, "budget": amount, "budget_unit": unit}
    if unit == "epoch":
        out["epoch"] = where
    return out


def _time_limit(config: Mapping[str, Any]) -> Optional[float]:
    requires = config.get("requires")
    if isinstance(requires, dict) and requires.get("time"):
        from ..units import parse_duration

        try:
            return float(parse_duration(requires["time"]))
        except ValueError:
            return None
    return None


def _step_cell(row: Mapping[str, Any]) -> str:
    """``1200/5000``, or with a budget in epochs ``1200 (epoch 3/10)``."""
    step, budget = _num(row.get("step")), _num(row.get("budget"))
    text = f"{step:g}" if step is not None else ""
    if budget and row.get("budget_unit") == "epoch":
        epoch = _num(row.get("epoch"))
        return text + f" (epoch {epoch:g}/{budget:g})" if epoch is not None else text + f" (of {budget:g} epochs)"
    return text + (f"/{budget:g}" if budget else "")


def _cells(row: Mapping[str, Any]) -> List[str]:
    res = row.get("resources") if isinstance(row.get("resources"), dict) else {}
    gpu = [f"{_num(v) or 0:.0f}%" for k, v in sorted((res or {}).items()) if k.startswith("gpu") and k.endswith("_util")]
    gpu_mem = [v for k, v in (res or {}).items() if k.startswith("gpu") and k.endswith("_mem_run") and _num(v)]
    metrics = row.get("metrics") if isinstance(row.get("metrics"), dict) else {}
    rate, eta = _num(row.get("rate")), _num(row.get("eta"))
    return [str(row.get("id"))[:8], fmt_value(row.get("name")), fmt_value(row.get("host")), _step_cell(row),
            f"{rate:.3g}" if rate else "", format_duration(eta) if eta is not None else "",
            " ".join(f"{fmt_value(k)}={fmt_value(v)}" for k, v in (metrics or {}).items()),
            f"{_num(res.get('cpu')) or 0:.0f}%" if res else "", format_size(_num(res.get("rss")) or 0) if res else "",
            " ".join(gpu) + (f" {format_size(sum(gpu_mem))}" if gpu_mem else ""), fmt_value(row.get("alerts"))]


def top_report(repo: Repo, store: Store) -> Dict[str, Any]:
    return {"host": socket.gethostname(), "rows": top_rows(repo, store), "time": time.time()}


def _far(repo: Repo, store: Store, name: str) -> Any:
    from ..runners import far_runner
    from ..targets import get_target

    return far_runner(repo, store, get_target(repo, name), "--on takes an ssh run target (git exp remote)")


@click.command()
@click.option("--on", "target", metavar="TARGET", help="The experiments running on this ssh run target.")
@click.option("--once", is_flag=True, help="Print the table once and exit (no live view).")
@click.option("--interval", "-d", type=click.FloatRange(min=0.2), default=2.0, show_default=True,
              help="Seconds between refreshes.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="Output format (json implies --once).")
def top(target: Optional[str], once: bool, interval: float, fmt: str) -> None:
    """Running experiments, live: step, rate, ETA, latest metrics, CPU, memory, GPU, alerts."""
    repo, store = open_store()
    runner = _far(repo, store, target) if target else None

    def fetch() -> Dict[str, Any]:
        return runner.agent("top", {}) if runner is not None else top_report(repo, store)

    if fmt == "json":
        print_json(fetch())
        return
    try:
        import rich  # noqa: F401
    except ImportError:
        if not once:
            click.echo("git exp top: the live view needs rich (pip install 'gitexp[top]'); printing once", err=True)
        once = True
    if once or not sys.stdout.isatty():
        report = fetch()
        rows = [_cells(r) for r in report.get("rows") or [] if isinstance(r, dict)]
        click.echo(f"{fmt_value(report.get('host'))}: {len(rows)} running")
        if rows:
            click.echo(render_table(TOP_HEADERS, rows))
        return
    _live(fetch, interval)


def _live(fetch: Any, interval: float) -> None:
    from rich.console import Console
    from rich.live import Live
    from rich.table import Table

    def table() -> Table:
        report = fetch()
        rows = [r for r in report.get("rows") or [] if isinstance(r, dict)]
        view = Table(title=f"gitexp top: {fmt_value(report.get('host'))}, {len(rows)} running, "
                           f"{time.strftime('%H:%M:%S')}  (Ctrl-C quits)", title_justify="left")
        for header in TOP_HEADERS:
            view.add_column(header, overflow="fold")
        for row in rows:
            view.add_row(*_cells(row))  # every cell already escaped by fmt_value
        return view

    with Live(table(), console=Console(), auto_refresh=False, screen=False) as live:
        try:
            while True:
                time.sleep(interval)
                live.update(table(), refresh=True)
        except KeyboardInterrupt:
            pass


# -- hosts ---------------------------------------------------------------------------------------
@click.command()
@click.option("--on", "targets", metavar="TARGET", multiple=True,
              help="Only these ssh run targets (repeatable); default: this machine and every ssh target.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="Output format.")
def hosts(targets: Tuple[str, ...], fmt: str) -> None:
    """Free GPUs, GPU memory, RAM and disk: this machine and each ssh run target (one round trip each)."""
    from ..runners.agent import resources
    from ..targets import load_targets

    repo, store = open_store()
    defined = load_targets(repo)
    names = list(targets) or [n for n, t in sorted(defined.items()) if t.options.get("host")]
    reports: Dict[str, Any] = {}
    if not targets:
        reports["here"] = {"host": socket.gethostname(), "resources": resources(repo)}
    for name in names:
        refusal = defined[name].refusal if name in defined else None
        if refusal is not None and not targets:  # never contacted: its ssh_config is not trusted
            reports[name] = {"error": str(refusal), "skipped": True}
            continue
        try:
            reports[name] = _far(repo, store, name).queue_report(False)
        except BadInput as exc:
            if targets:
                raise
            reports[name] = {"error": str(exc)}
    if fmt == "json":
        print_json({name: {k: v for k, v in r.items() if k in ("host", "resources", "error")}
                    for name, r in reports.items()})
        return
    for name, report in reports.items():
        if report.get("skipped"):
            click.echo(f"{fmt_value(name)}: not contacted: {fmt_value(report['error'])}")
        elif report.get("error"):
            click.echo(f"{fmt_value(name)}: unreachable: {fmt_value(report['error'])}")
        else:
            click.echo(resources_text(name, report))


def far_top(request: Dict[str, Any]) -> Dict[str, Any]:
    """The far side of ``top --on``: ``git exp _agent top`` answers with this."""
    from ..runners.agent import check_protocol

    check_protocol(request)
    repo, store = open_store()
    return top_report(repo, store)


__all__ = ["top", "hosts", "far_top"]
