"""``git exp report``: one self-contained HTML file about a set of experiments (a sweep).

The page needs no network and no plotting library: curves are inline SVG written here from
the same :class:`gitexp.plots.Curve` objects ``git exp plot`` draws (decimated to the chart's
pixel width), styles are one inline ``<style>``, and one small inline script sorts the table
and writes into the page how many curves the browser drew (a test reads it back from a real
headless Chromium). A Content-Security-Policy with the hashes of that style and script
forbids everything else: no request can leave the page, and nothing from the notes can run.

Everything from notes (names, params, reasons, log tails, metric names) is untrusted and is
HTML-escaped; the only paths linked are this machine's run directories, never paths from notes.

Sections: summary table (sortable), alerts, curves (one chart per metric, one colour per run),
time, resources, then one section per run (params, metrics, time, mini charts, checkpoints,
log tail, links).
"""
from __future__ import annotations
from __future__ import annotations

import base64
import hashlib
import html
import os
import time
import urllib.parse
from typing import Any, Dict, List, Mapping, Sequence, Tuple

from . import plots, report_over, seeds
from . import timing as timing_mod
from .metrics import is_number
from .notes import Experiment
from .paths import run_paths
from .query import same_value
from .repo import Repo
from .report_sections import (BAD_STATUSES, alerts_of, alerts_section, metric_entry, profile_section,
                              resource_samples, resource_text, resource_unit, resources_of, resources_section,
                              time_section)
from .report_svg import CHART_W, MINI_H, MINI_W, esc as _e, esc_block as _e_block, svg_chart, swatch as _swatch
from .units import format_size

__all__ = ["render", "svg_chart", "alerts_of", "resources_of", "resource_text", "resource_unit", "resource_samples",
           "log_tail", "BAD_STATUSES"]

MAX_CHARTS = 12

STYLE = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;max-width:1200px;color:#222;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:16px;margin:20px 0 6px}.muted{color:#666}code,pre{font:12px/1.35 ui-monospace,Menlo,Consolas,monospace}
pre{background:#f6f6f6;padding:8px;overflow:auto;max-height:320px}
table{border-collapse:collapse;margin:6px 0}th,td{padding:3px 8px;border-bottom:1px solid #eee;text-align:left;vertical-align:top}
th{background:#fafafa;position:sticky;top:0}table.runs th{cursor:pointer;user-select:none}
td.num{text-align:right;font-variant-numeric:tabular-nums}.best{font-weight:700}
.charts{display:flex;flex-wrap:wrap;gap:16px}figure{margin:0}figcaption{font-weight:600;margin:4px 0}
svg text{font:11px system-ui,sans-serif;fill:#444}svg .grid{stroke:#e6e6e6}svg .axis{stroke:#999}
.legend{display:flex;flex-wrap:wrap;gap:4px 14px;margin:6px 0 0;padding:0;list-style:none;font-size:12px}
.wide{overflow-x:auto;max-width:100%}.alert{margin:2px 0}.alert.error{color:#a00}.alert.warning{color:#8a5a00}
section.run{border-top:2px solid #ddd;margin-top:24px}.status-failed,.status-killed,.status-lost,.status-timeout,.status-invalid{color:#a00}
.status-running,.status-starting{color:#06c}
""".strip()

SCRIPT = """
(function(){
  function key(td){var v=td.getAttribute('data-v');if(v===null)v=td.textContent;var n=parseFloat(v);return isNaN(n)?v.toLowerCase():n;}
  document.querySelectorAll('table.runs').forEach(function(t){
    var ths=t.querySelectorAll('thead th');
    ths.forEach(function(th,i){th.addEventListener('click',function(){
      var tb=t.tBodies[0],rows=Array.prototype.slice.call(tb.rows),asc=th.getAttribute('data-sort')!=='asc';
      ths.forEach(function(o){o.removeAttribute('data-sort');});th.setAttribute('data-sort',asc?'asc':'desc');
      rows.sort(function(a,b){var x=key(a.cells[i]),y=key(b.cells[i]);if(x===y)return 0;
        if(typeof x!==typeof y)return (typeof x==='number'?-1:1);return (x<y?-1:1)*(asc?1:-1);});
      rows.forEach(function(r){tb.appendChild(r);});});});
  });
  var drawn=0;
  document.querySelectorAll('svg .curve').forEach(function(c){var b=c.getBBox();if(b.width>0||b.height>0)drawn++;});
  var bands=0;
  document.querySelectorAll('svg .band').forEach(function(c){var b=c.getBBox();if(b.width>0&&b.height>0)bands++;});
  var out=document.getElementById('render-check');
  if(out){out.setAttribute('data-curves',String(drawn));out.setAttribute('data-bands',String(bands));
    out.setAttribute('data-rows',String(document.querySelectorAll('table.runs tbody tr').length));
  }
})();
""".strip()


def _csp_hash(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


# -- the page ------------------------------------------------------------------------------------------
def render(repo: Repo, exps: Sequence[Experiment], statuses: Mapping[str, str],
           hists: Mapping[str, List[Dict[str, Any]]], details: Mapping[str, Mapping[str, Any]],
           metrics: Sequence[str], what: str, x: str = "step", log_y: bool = False,
           smoothing: float = 0.0, over: Sequence[str] = ()) -> str:
    """The whole HTML page; with ``over`` (params such as seed), the folds' table and their mean
    curves with bands before the runs' own sections (gitexp.report_over)."""
    chart_metrics = list(metrics)[:MAX_CHARTS]
    index = {e.sha: i for i, e in enumerate(exps)}
    timings = {e.sha: timing_mod.analyze(hists.get(e.sha) or [], e.summary) for e in exps}
    alerts = {e.sha: alerts_of(e, statuses.get(e.sha, e.status), details.get(e.sha) or {}, hists.get(e.sha) or [])
              for e in exps}
    title = f"gitexp report: {what}" + (f", over {', '.join(over)}" if over else "")
    body: List[str] = [f"<h1>{_e(title)}</h1>",
                       f'<p class="muted">{len(exps)} experiment(s) in {_e(repo.root)}, '
                       f'made {_e(time.strftime("%Y-%m-%d %H:%M:%S"))} by git exp report. '
                       "This file needs no network: open it anywhere.</p>",
                       '<p id="render-check" hidden></p>',  # the script's count, for tests: not shown
                       '<nav><a href="#table">table</a> · <a href="#alerts">alerts</a> · <a href="#curves">curves</a> · '
                       '<a href="#time">time</a> · <a href="#resources">resources</a> · <a href="#runs">runs</a></nav>']
    if over:
        folds = seeds.fold(exps, statuses, over)
        body += report_over.fold_table(folds, over, metrics, report_over.fold_index(folds))
    body += _table(exps, statuses, metrics, timings, index)
    body += alerts_section(exps, alerts)
    if over:
        fig = report_over.fold_figure(folds, hists, over, chart_metrics, log_y, smoothing, what)
        body += report_over.fold_curves(fig, chart_metrics, over)
    else:
        fig = plots.build(exps, hists, chart_metrics, x, log_y, smoothing, title=what, statuses=statuses,
                          buckets=CHART_W)
        body += _curves_section(fig, metrics, chart_metrics)
    body += time_section(exps, timings, hists, metrics)
    body += resources_section(exps, details, x)
    body += profile_section(exps, details)
    body.append('<h2 id="runs">Runs</h2>')
    for exp in exps:
        body += _run_section(repo, exp, statuses.get(exp.sha, exp.status), hists.get(exp.sha) or [],
                             details.get(exp.sha) or {}, timings[exp.sha], alerts[exp.sha], index[exp.sha],
                             x, log_y, smoothing)
    csp = (f"default-src 'none'; img-src data:; style-src '{_csp_hash(STYLE)}'; "
           f"script-src '{_csp_hash(SCRIPT)}'; base-uri 'none'; form-action 'none'")
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title>", f"<style>{STYLE}</style>", "</head><body>",
        *body, f"<script>{SCRIPT}</script>", "</body></html>", ""])


def _differing_params(exps: Sequence[Experiment]) -> List[str]:
    keys: Dict[str, None] = {}
    for exp in exps:
        for key in exp.summary.get("params") or {}:
            keys.setdefault(key, None)
    if len(exps) == 1:
        return list(keys)
    missing = object()
    values = {k: [(e.summary.get("params") or {}).get(k, missing) for e in exps] for k in keys}
    return [k for k, vs in values.items() if not all(same_value(v, vs[0]) for v in vs)]


def _num_cell(value: Any, best: bool = False) -> str:
    if not is_number(value):
        return '<td class="num"></td>'
    shown = f"{value:.4g}" if isinstance(value, float) else str(value)
    cls = "num best" if best else "num"
    return f'<td class="{cls}" data-v="{_e(repr(float(value)))}">{_e(shown)}</td>'


def _best_runs(exps: Sequence[Experiment], name: str) -> List[str]:
    """The runs holding the best value of a metric by its goal (all of them on a tie)."""
    goal = next((metric_entry(e, name).get("goal") for e in exps if metric_entry(e, name).get("goal")), None)
    values: List[Tuple[float, str]] = []
    for exp in exps:
        value: Any = metric_entry(exp, name).get("best")
        if is_number(value) and value == value:
            values.append((float(value), exp.sha))
    if goal not in ("minimize", "maximize") or len(values) < 2:
        return []
    best = min(v for v, _ in values) if goal == "minimize" else max(v for v, _ in values)
    return [sha for v, sha in values if v == best]


def _table(exps: Sequence[Experiment], statuses: Mapping[str, str], metrics: Sequence[str],
           timings: Mapping[str, Dict[str, Any]], index: Mapping[str, int]) -> List[str]:
    params = _differing_params(exps)
    shown_metrics = list(metrics)[:8]
    head = ["", "name", "id", "status"] + [_e(p) for p in params] + [f"{_e(m)} best" for m in shown_metrics]
    head += ["duration", "steps/s"]
    out = ['<h2 id="table">Experiments</h2>', '<table class="runs"><thead><tr>' +
           "".join(f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>"]
    winners = {m: _best_runs(exps, m) for m in shown_metrics}
    for exp in exps:
        color = plots.HEX_COLORS[index[exp.sha] % len(plots.HEX_COLORS)]
        status = statuses.get(exp.sha, exp.status)
        cells = [f'<td data-v="{index[exp.sha]}">{_swatch(color)}</td>',
                 f'<td><a href="#run-{exp.sha}">{_e(exp.name)}</a></td>', f"<td><code>{exp.sha[:8]}</code></td>",
                 f'<td class="status-{_e(status)}">{_e(status)}</td>']
        for p in params:
            value = (exp.summary.get("params") or {}).get(p)
            cells.append(_num_cell(value) if is_number(value) else f"<td>{_e(value)}</td>")
        for m in shown_metrics:
            cells.append(_num_cell(metric_entry(exp, m).get("best", metric_entry(exp, m).get("last")),
                                   exp.sha in winners[m]))
        duration = exp.summary.get("duration")
        cells.append(f'<td class="num" data-v="{_e(duration if is_number(duration) else "")}">'
                     f'{_e(timing_mod.seconds_text(duration) if is_number(duration) else "")}</td>')
        cells.append(_num_cell(timings[exp.sha].get("steps_per_s")))
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    if len(metrics) > len(shown_metrics):
        out.append(f'<p class="muted">{len(metrics) - len(shown_metrics)} more metric(s) in each run\'s section.</p>')
    out.append('<p class="muted">Click a column to sort; bold: the best value by the metric\'s goal.</p>')
    return out


def _legend(curves: Sequence[plots.Curve]) -> str:
    seen: Dict[str, plots.Curve] = {}
    for c in curves:
        seen.setdefault(c.exp.sha, c)
    return '<ul class="legend">' + "".join(
        f'<li>{_swatch(c.color)} <a href="#run-{c.exp.sha}">{_e(plots.label(c.exp, c.status))}</a></li>'
        for c in seen.values()) + "</ul>"


def _curves_section(fig: plots.Figure, metrics: Sequence[str], chart_metrics: Sequence[str]) -> List[str]:
    out = ['<h2 id="curves">Curves</h2>']
    if not chart_metrics:
        return out + ['<p class="muted">No metrics recorded.</p>']
    out.append('<div class="charts">')
    for metric in chart_metrics:
        curves = fig.curves[metric]
        caption = _e(metric) + (" (smoothed)" if any(c.raw for c in curves) else "")
        if fig.dropped.get(metric):
            caption += f' <span class="muted">({fig.dropped[metric]} point(s) &lt;= 0 left out of the log scale)</span>'
        out.append(f'<figure class="chart" data-metric="{_e(metric)}"><figcaption>{caption}</figcaption>'
                   f"{svg_chart(curves, fig.x_label(), fig.log_y)}{_legend(curves)}</figure>")
    out.append("</div>")
    if len(metrics) > len(chart_metrics):
        rest = ", ".join(_e(m) for m in list(metrics)[len(chart_metrics):][:30])
        out.append(f'<p class="muted">Not drawn ({len(metrics) - len(chart_metrics)}): {rest}. '
                   "Choose with git exp report -m METRIC.</p>")
    return out


def _run_section(repo: Repo, exp: Experiment, status: str, history: List[Dict[str, Any]],
                 details: Mapping[str, Any], t: Dict[str, Any], alerts: List[Tuple[str, str]], index: int,
                 x: str, log_y: bool, smoothing: float) -> List[str]:
    s = exp.summary
    color = plots.HEX_COLORS[index % len(plots.HEX_COLORS)]
    out = [f'<section class="run" id="run-{exp.sha}">',
           f'<h3>{_swatch(color)} {_e(exp.name)} <code class="muted">{exp.sha[:10]}</code> '
           f'<span class="status-{_e(status)}">{_e(status)}</span></h3>']
    facts = []
    if s.get("group"):
        facts.append(f"group {_e(s['group'])}")
    if is_number(s.get("created")):
        facts.append(f"created {_e(time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(s['created'])))}")
    if is_number(s.get("duration")):
        facts.append(f"took {_e(timing_mod.seconds_text(s['duration']))}")
    if s.get("parent"):
        facts.append(f"based on {_e(str(s['parent'])[:10])}" + (" with uncommitted changes" if s.get("parent_dirty") else ""))
    out.append(f'<p class="muted">{" · ".join(facts)}</p>')
    out.append(f"<p><code>git exp show {exp.sha[:10]}</code> · <code>git exp metrics {exp.sha[:10]}</code> · "
               f"<code>git exp logs {exp.sha[:10]}</code>{_local_links(repo, exp)} · <a href=\"#table\">back to the table</a></p>")
    for level, text in alerts:
        out.append(f'<p class="alert {_e(level)}">{_e(level)}: {_e(text)}</p>')
    params = s.get("params") or {}
    if params:
        out.append("<table><thead><tr><th>param</th><th>value</th></tr></thead><tbody>" +
                   "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in params.items()) +
                   "</tbody></table>")
    found = s.get("metrics")
    metrics: Dict[str, Any] = found if isinstance(found, dict) else {}
    out += _metrics_table(exp, metrics, history)
    lines = timing_mod.lines(t)
    if lines:
        out.append("<pre>" + _e_block("\n".join(line.strip() for line in lines[2:])) + "</pre>")
    out += _mini_charts(exp, status, metrics, history, index, x, log_y, smoothing)
    checkpoints = s.get("checkpoints") if isinstance(s.get("checkpoints"), list) else []
    if checkpoints:
        out.append("<p>checkpoints:</p><ul>" + "".join(
            f"<li>step {_e(c.get('step'))}: {_e(c.get('host'))}:{_e(c.get('path'))}"
            + (f" ({_e(format_size(c['size']))})" if is_number(c.get("size")) and c["size"] >= 0 else "") + "</li>"
            for c in checkpoints[:50] if isinstance(c, dict)) + "</ul>")
    tail = log_tail(details)
    if tail:
        out.append(f"<p>last lines of its output:</p><pre>{_e_block(tail)}</pre>")
    out.append("</section>")
    return out


def _metrics_table(exp: Experiment, metrics: Mapping[str, Any], history: List[Dict[str, Any]]) -> List[str]:
    if not metrics:
        return []
    rows = []
    for name, entry in sorted(metrics.items()):
        entry = entry if isinstance(entry, dict) else {}
        hit = timing_mod.time_to_best(history, exp.summary, name)
        rows.append(f"<tr><td>{_e(name)}</td><td>{_e(entry.get('goal'))}</td>{_num_cell(entry.get('best'))}"
                    f"<td>{_e(entry.get('best_step'))}</td>{_num_cell(entry.get('last'))}"
                    f"<td>{_e(entry.get('last_step'))}</td><td>{_e(entry.get('count'))}</td>"
                    f"<td>{_e(timing_mod.seconds_text(hit['seconds']) if hit and hit.get('seconds') is not None else '')}</td></tr>")
    return ["<table><thead><tr><th>metric</th><th>goal</th><th>best</th><th>at step</th><th>last</th>"
            "<th>at step</th><th>points</th><th>time to best</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"]


def _mini_charts(exp: Experiment, status: str, metrics: Mapping[str, Any], history: List[Dict[str, Any]],
                 index: int, x: str, log_y: bool, smoothing: float) -> List[str]:
    """Small charts of the run's first four goal metrics (else its first four)."""
    mini = [m for m in metrics if isinstance(metrics[m], dict) and metrics[m].get("goal")][:4] or list(metrics)[:4]
    if not mini or not history:
        return []
    fig = plots.build([exp], {exp.sha: history}, mini, x if x != "epoch" or plots.epoch_of_steps(history) else "step",
                      log_y, smoothing, statuses={exp.sha: status}, buckets=MINI_W)
    out = ['<div class="charts">']
    for metric in mini:
        for curve in fig.curves[metric]:
            curve.index = index
        out.append(f"<figure><figcaption>{_e(metric)}</figcaption>"
                   f"{svg_chart(fig.curves[metric], fig.x_label(), log_y, MINI_W, MINI_H)}</figure>")
    out.append("</div>")
    return out


def _local_links(repo: Repo, exp: Experiment) -> str:
    """Links to this machine's run directory files (never to paths named by notes)."""
    paths = run_paths(repo, exp.sha, exp.summary)
    links = []
    for label, path in (("output.log", paths.log), ("outputs", paths.outdir)):
        if os.path.exists(path):
            links.append(f'<a href="file://{html.escape(urllib.parse.quote(os.path.abspath(path)))}">{label}</a>')
    return (" · " + " · ".join(links)) if links else ""


def log_tail(details: Mapping[str, Any], lines: int = 30) -> str:
    tail = details.get("log_tail")
    if not isinstance(tail, str) or not tail.strip():
        return ""
    return "\n".join(tail.rstrip().split("\n")[-lines:])
