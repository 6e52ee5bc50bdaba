"""``git exp report --over seed``: runs that differ only in the ``over`` params, folded.

A table with one row per fold (gitexp.seeds: each metric's mean ± sample std over its finished
runs, n, the folded values, the spread of durations; runs in progress or ended badly counted
apart, never averaged in), and one chart per metric with a mean curve per fold over a filled
band from mean - std to mean + std. The runs' own sections stay as without ``--over``.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Sequence

from . import plots, seeds
from . import timing as timing_mod
from .report_svg import CHART_W, esc, svg_chart, swatch


def fold_figure(folds: Sequence[seeds.Fold], hists: Mapping[str, List[Dict[str, Any]]], over: Sequence[str],
                metrics: Sequence[str], log_y: bool, smoothing: float, what: str) -> plots.Figure:
    """Mean curves (by step) with their bands, one per fold with finished runs."""
    exps, mean_hists, statuses, bands = seeds.band_curves(folds, hists, over, metrics)
    fig = plots.build(exps, mean_hists, metrics, "step", log_y, smoothing, title=what, statuses=statuses,
                      buckets=CHART_W)
    plots.attach_bands(fig, bands, CHART_W)
    return fig


def _stat_cell(s: "seeds.Stat | None") -> str:
    if s is None:
        return '<td class="num"></td>'
    std = "" if s.std is None else repr(s.std)
    text = f"{s.mean:.4g}" + (f" ± {s.std:.3g}" if s.std is not None else "") + f" (n={s.n})"
    return (f'<td class="num stat" data-v="{repr(s.mean)}" data-mean="{repr(s.mean)}" data-std="{std}" '
            f'data-n="{s.n}">{esc(text)}</td>')


def _counts(f: seeds.Fold) -> str:
    words = [f"{len(f.runs)} finished"]
    if f.open:
        words.append(f"{len(f.open)} in progress")
    if f.ended_badly:
        words.append(f"{len(f.ended_badly)} failed")
    apart = " (not averaged)" if f.open or f.ended_badly else ""
    return ", ".join(words) + apart


def fold_table(folds: Sequence[seeds.Fold], over: Sequence[str], metrics: Sequence[str],
               index: Mapping[str, int]) -> List[str]:
    """The folds as a sortable table (``table.runs``: the page's script sorts it)."""
    shown = list(metrics)[:8]
    head = ["", "fold", "runs", "params", f"over {', '.join(over)}"] + [f"{m} mean ± std" for m in shown] + ["duration"]
    out = [f'<h2 id="over">Over {esc(", ".join(over))}</h2>',
           '<p class="muted">Runs that differ only in ' + esc(", ".join(over)) + " folded into one row: each metric's "
           "mean ± sample standard deviation (n - 1) of the finished runs' values (best by the metric's goal, else "
           "last). Runs in progress or ended badly are counted apart and never averaged in.</p>",
           '<table class="runs folds"><thead><tr>' + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr></thead><tbody>"]
    for f in folds:
        color = plots.HEX_COLORS[index.get(f.first.sha, 0) % len(plots.HEX_COLORS)]
        values = ", ".join(",".join(esc(seeds.short_value(v)) for v in f.over.get(name, [])) for name in over)
        span = (f"{timing_mod.seconds_text(f.duration.lo)}–{timing_mod.seconds_text(f.duration.hi)}"
                if f.duration else "")
        cells = [f"<td>{swatch(color)}</td>", f'<td><a href="#run-{f.first.sha}">{esc(f.first.name)}</a></td>',
                 f'<td data-finished="{len(f.runs)}" data-apart="{len(f.open) + len(f.ended_badly)}">'
                 f"{esc(_counts(f))}</td>",
                 "<td>" + esc(" ".join(f"{k}={seeds.short_value(v)}" for k, v in f.params.items())) + "</td>",
                 f"<td>{values}</td>", *[_stat_cell(f.metrics.get(m)) for m in shown], f"<td>{esc(span)}</td>"]
        out.append(f'<tr data-fold="{f.first.sha[:8]}">' + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return out


def fold_curves(fig: plots.Figure, chart_metrics: Sequence[str], over: Sequence[str]) -> List[str]:
    """One chart per metric: each fold's mean curve over its band (mean ± std)."""
    out = ['<h2 id="curves">Curves</h2>',
           f'<p class="muted">Mean over {esc(", ".join(over))} at each step, the band one standard deviation '
           "either side (x: step).</p>"]
    if not chart_metrics:
        return out + ['<p class="muted">No metrics recorded.</p>']
    out.append('<div class="charts">')
    for metric in chart_metrics:
        curves = fig.curves[metric]
        legend = '<ul class="legend">' + "".join(
            f"<li>{swatch(c.color)} {esc(c.exp.name)}</li>" for c in curves) + "</ul>"
        out.append(f'<figure class="chart" data-metric="{esc(metric)}"><figcaption>{esc(metric)}</figcaption>'
                   f"{svg_chart(curves, fig.x_label(), fig.log_y)}{legend}</figure>")
    out.append("</div>")
    return out


def fold_index(folds: Sequence[seeds.Fold]) -> Dict[str, int]:
    """Each fold's colour: its place among the folds with finished runs (as the charts count)."""
    drawn = [f for f in folds if f.runs]
    return {f.first.sha: i for i, f in enumerate(drawn)}
