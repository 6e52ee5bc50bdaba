"""``git exp report``: one offline HTML file about a sweep (or any experiments)."""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Tuple

import click

from .. import plots
from .. import report as report_mod
from ..notes import DETAILS_REF, Experiment
from ..status import live_statuses
from .common import open_store


@click.command()
@click.argument("idents", metavar="[ID...]", nargs=-1)
@click.option("--group", "-g", help="The experiments of this group (a sweep's id); default: the latest sweep.")
@click.option("--output", "-o", metavar="FILE", default="report.html", show_default=True,
              help="Where to write the HTML file.")
@click.option("--metric", "-m", "metric_names", multiple=True,
              help="Metrics to show (repeatable); default: all, those with a goal first.")
@click.option("--x", "x_axis", type=click.Choice(list(plots.X_AXES)), default="step", show_default=True,
              help="x axis of the curves: step, time since the run started, or epoch.")
@click.option("--log-y", is_flag=True, help="Logarithmic y axis for the curves.")
@click.option("--smooth", "smoothing", type=click.FloatRange(0, 1, max_open=True), default=0.0,
              help="Exponential smoothing weight in [0, 1) for the curves (the raw curve shows faintly).")
@click.option("--over", multiple=True, metavar="PARAM",
              help="Fold runs that differ only in this param (e.g. seed): mean ± std rows and mean curves with a band.")
def report(idents: Tuple[str, ...], group: Optional[str], output: str, metric_names: Tuple[str, ...],
           x_axis: str, log_y: bool, smoothing: float, over: Tuple[str, ...] = ()) -> None:
    """Write one HTML file: table, alerts, curves, time, resources, a section per run.

    With --over seed, runs that differ only in their seed are folded into one row (mean ± std;
    runs in progress or failed counted apart) and drawn as a mean curve over a filled band.

    It needs no network and no plotting library: the curves are inline SVG. Without IDs or
    --group, the latest sweep (the group of the newest experiment).
    """
    repo, store = open_store()
    plots.check_writable(output)
    exps = store.experiments()
    chosen, what = plots.select(store, exps, idents, group)
    if metric_names:
        plots.check_metrics(chosen, metric_names)
        metrics = list(metric_names)
    else:
        metrics = _ordered_metrics(chosen)
    if over:
        from .over_view import check_over

        check_over(chosen, over)
    statuses = {sha: st for sha, (st, _why) in live_statuses(repo, chosen).items()}
    hists = plots.histories(repo, store, chosen, statuses)
    details = store.read_notes_json([e.sha for e in chosen], DETAILS_REF)
    if x_axis == "epoch" and not any(plots.epoch_of_steps(h) for h in hists.values()):
        plots.build(chosen, hists, [], x_axis)  # BadInput saying how to log epochs
    page = report_mod.render(repo, chosen, statuses, hists, details, metrics, what, x_axis, log_y, smoothing, over)

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(page)
    plots.write_atomically(output, write)
    click.echo(f"wrote {output} ({len(chosen)} experiment(s), {os.path.getsize(output) // 1024} KiB)", err=True)


def _ordered_metrics(exps: List[Experiment]) -> List[str]:
    """Every metric the experiments have, those declared with a goal first."""
    goals: Dict[str, Any] = {}
    for exp in exps:
        for name in exp.summary.get("goals") or {}:
            goals.setdefault(str(name), None)
    rest = [m for m in plots.known_metrics(exps) if m not in goals]
    return list(goals) + sorted(rest)
