"""``git exp plot``: metric curves of experiments, in the terminal or as a picture."""
from __future__ import annotations

import sys
import time
from typing import Any, Dict, List, Optional, Tuple

import click

from .. import plot_draw, plots
from ..errors import BadInput
from ..notes import Experiment, Store
from ..repo import Repo
from ..status import live_statuses
from .common import open_store


@click.command()
@click.argument("words", metavar="METRIC... [ID...]", nargs=-1)
@click.option("--group", "-g", help="The experiments of this group (a sweep's id); default: the latest sweep.")
@click.option("--output", "-o", metavar="FILE", help="Write a picture (.png, .svg, .pdf; needs matplotlib) or text (.txt) instead of drawing in the terminal.")
@click.option("--x", "x_axis", type=click.Choice(list(plots.X_AXES)), default="step", show_default=True,
              help="x axis: step, time since the run started, or epoch (the values logged as epoch=...).")
@click.option("--log-y", is_flag=True, help="Logarithmic y axis (points <= 0 are left out, and the title says how many).")
@click.option("--smooth", "smoothing", type=click.FloatRange(0, 1, max_open=True), default=0.0,
              help="Exponential smoothing weight in [0, 1), e.g. 0.6 (pictures show the raw curve faintly behind).")
@click.option("--watch", is_flag=True, help="Redraw every --interval seconds while a run is in progress; ends when none is.")
@click.option("--interval", type=click.FloatRange(min=0.2), default=2.0, show_default=True, help="Seconds between redraws with --watch.")
@click.option("--width", type=click.IntRange(min=20), help="Width in characters (terminal, .txt) or pixels (pictures).")
@click.option("--height", type=click.IntRange(min=5), help="Height of each chart in lines (terminal, .txt) or of the picture in pixels.")
@click.option("--over", multiple=True, metavar="PARAM",
              help="Mean curve with a band (± one std) of runs that differ only in this param (e.g. seed).")
def plot(words: Tuple[str, ...], group: Optional[str], output: Optional[str], x_axis: str, log_y: bool,
         smoothing: float, watch: bool, interval: float, width: Optional[int], height: Optional[int],
         over: Tuple[str, ...] = ()) -> None:
    """Draw metric curves: METRIC names and experiment IDs in any order.

    Without IDs or --group, the latest sweep (the group of the newest experiment). Without a
    METRIC, the first metric with a goal. A word that is a metric name is taken as a metric.
    Runs in progress on this machine show their points of the last second.
    """
    repo, store = open_store()
    kind = plots.output_kind(output) if output else None
    if output:
        plots.check_writable(output)
    exps = store.experiments()
    metrics, idents = plots.split_args(store, exps, words)
    chosen, what = plots.select(store, exps, idents, group)
    if not metrics:
        metrics = plots.default_metrics(chosen)
        if not metrics:
            raise BadInput("the selected experiments have no metrics yet", "give a METRIC once they have")
    plots.check_metrics(chosen, metrics)
    if kind and kind != "txt":  # say what to install before any work
        plot_draw.need_matplotlib()
    else:
        plot_draw.need_plotext()
    while True:
        statuses = {sha: st for sha, (st, _why) in live_statuses(repo, chosen).items()}
        fig = _figure(repo, store, chosen, statuses, metrics, what, x_axis, log_y, smoothing, kind, width, over)
        running = [e for e in chosen if statuses.get(e.sha) in plots.OPEN]
        if fig.empty and not (watch and running):
            listed = ", ".join(metrics)
            raise BadInput(f"nothing to draw: the selected experiments have no points of {listed} yet",
                           "wait for them, or use --watch")
        _draw(fig, output, kind, width, height, watch)
        if not watch or not running:
            return
        try:
            time.sleep(interval)
        except KeyboardInterrupt:
            return
        chosen = _refreshed(store, chosen)


def _figure(repo: Repo, store: Store, chosen: List[Experiment], statuses: Dict[str, str], metrics: List[str], what: str,
            x_axis: str, log_y: bool, smoothing: float, kind: Optional[str], width: Optional[int],
            over: Tuple[str, ...] = ()) -> plots.Figure:
    hists = plots.histories(repo, store, chosen, statuses)
    bands: Dict[str, Dict[str, Any]] = {}
    if over:  # gitexp.seeds: a mean curve and its band per group of seeds
        from .over_view import band_curves

        chosen, hists, statuses, bands = band_curves(chosen, hists, statuses, over, metrics)
    if kind in ("png", "svg", "pdf"):
        buckets = (width or 1000)  # min/max pairs per pixel column: nothing visible is lost
    else:
        buckets = 2 * (width or plot_draw.terminal_size(None, None, len(metrics))[0])  # braille: 2 dots per column
    fig = plots.build(chosen, hists, metrics, x_axis, log_y, smoothing, title=what, statuses=statuses,
                      buckets=buckets)
    plots.attach_bands(fig, bands, buckets)
    return fig


def _draw(fig: plots.Figure, output: Optional[str], kind: Optional[str], width: Optional[int],
          height: Optional[int], watch: bool) -> None:
    if output and kind:
        plot_draw.render_file(fig, output, kind, width or 0, height or 0)
        if not watch:
            click.echo(f"wrote {output}", err=True)
        return
    color = plot_draw.use_color()
    w, h = plot_draw.terminal_size(width, height, len(fig.metrics))
    text = plot_draw.render_terminal(fig, w, h, color)
    if watch and sys.stdout.isatty():
        text = "\x1b[H\x1b[2J" + text  # home and clear: redraw in place
    click.echo(text)


def _refreshed(store: Store, chosen: List[Experiment]) -> List[Experiment]:
    """The same experiments with their summaries read again (statuses move while watching)."""
    notes = store.read_notes_json([e.sha for e in chosen])
    return [Experiment(e.sha, e.name, notes.get(e.sha, e.summary)) for e in chosen]
