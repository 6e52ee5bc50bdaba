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

import base64
import hashlib
import html
import math
import os
import time
import urllib.parse
from typing import Any, Dict, Iterable, List, Mapping, Sequence, Tuple

from . import plots
from . import timing as timing_mod
from .metrics import is_number
from .notes import Experiment
from .paths import run_paths
from .query import same_value
from .repo import Repo
from .summary import printable
from .units import format_size

BAD_STATUSES = ("failed", "killed", "timeout", "lost", "invalid", "cancelled")
MAX_CHARTS = 12
CHART_W, CHART_H = 720, 260
MINI_W, MINI_H = 340, 150

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
  var out=document.getElementById('render-check');
  if(out){out.setAttribute('data-curves',String(drawn));
    out.setAttribute('data-rows',String(document.querySelectorAll('table.runs tbody tr').length));
  }
})();
""".strip()


def _e(value: Any) -> str:
    """Escaped text of any value from notes (control characters made visible too)."""
    if value is None:
        return ""
    if isinstance(value, float):
        return html.escape(f"{value:.4g}")
    return html.escape(printable(str(value)), quote=True)


def _e_block(text: str) -> str:
    """Escaped multi-line text (newlines and tabs kept, other control characters made visible)."""
    return html.escape(printable(text, keep="\n\t"), quote=True)


def _csp_hash(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


# -- charts -------------------------------------------------------------------------------------
def svg_chart(curves: Sequence[plots.Curve], x_label: str, log_y: bool, width: int = CHART_W,
              height: int = CHART_H, show_raw: bool = True) -> str:
    """An SVG line chart: axes with round ticks, a polyline per curve (class ``curve``,
    ``data-run`` = the run's short id), the raw curve faint behind a smoothed one."""
    left, right, top, bottom = 58, 12, 10, 38
    pw, ph = width - left - right, height - top - bottom
    xs = [v for c in curves for v in c.xs]
    ys = [v for c in curves for v in c.ys] + [v for c in curves if c.raw and show_raw for v in c.raw[1]]
    if log_y:
        ys = [v for v in ys if v > 0]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img">']
    if not xs or not ys:
        parts.append(f'<text x="{width / 2:.0f}" y="{height / 2:.0f}" text-anchor="middle">no points yet</text></svg>')
        return "".join(parts)
    x0, x1 = min(xs), max(xs)
    if x1 <= x0:
        x0, x1 = x0 - 1, x1 + 1
    if log_y:
        y0, y1 = math.log10(min(ys)), math.log10(max(ys))
    else:
        y0, y1 = min(ys), max(ys)
    if y1 <= y0:
        pad = abs(y0) * 0.05 or 1.0
        y0, y1 = y0 - pad, y1 + pad
    else:
        pad = (y1 - y0) * 0.04
        y0, y1 = y0 - pad, y1 + pad

    def sx(v: float) -> float:
        return left + (v - x0) / (x1 - x0) * pw

    def sy(v: float) -> float:
        w = math.log10(v) if log_y else v
        return top + ph - (w - y0) / (y1 - y0) * ph

    yticks = plots.log_ticks(10 ** y0, 10 ** y1) if log_y else plots.nice_ticks(y0, y1, 5)
    yticks = [t for t in yticks if not log_y or t > 0]
    for t, label in zip(yticks, plots.tick_texts(yticks)):
        y = sy(t)
        parts.append(f'<line class="grid" x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}"/>'
                     f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{_e(label)}</text>')
    xticks = plots.nice_ticks(x0, x1, 6)
    for t, label in zip(xticks, plots.tick_texts(xticks)):
        x = sx(t)
        parts.append(f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + ph}"/>'
                     f'<text x="{x:.1f}" y="{top + ph + 15}" text-anchor="middle">{_e(label)}</text>')
    parts.append(f'<rect class="axis" x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none"/>')
    parts.append(f'<text x="{left + pw / 2:.0f}" y="{height - 6}" text-anchor="middle">{_e(x_label)}</text>')
    for curve in curves:
        if curve.raw and show_raw:
            pts = _points(curve.raw[0], curve.raw[1], sx, sy, log_y)
            if pts:
                parts.append(f'<polyline class="raw" fill="none" stroke="{curve.color}" stroke-opacity="0.25" '
                             f'stroke-width="1" points="{pts}"/>')
    for curve in curves:
        pts = _points(curve.xs, curve.ys, sx, sy, log_y)
        if not pts:
            continue
        name = _e(plots.label(curve.exp, curve.status))
        if " " not in pts:  # a single point: a dot
            cx, cy = pts.split(",")
            parts.append(f'<circle class="curve" data-run="{curve.exp.sha[:8]}" cx="{cx}" cy="{cy}" r="3" '
                         f'fill="{curve.color}"><title>{name}</title></circle>')
            continue
        parts.append(f'<polyline class="curve" data-run="{curve.exp.sha[:8]}" fill="none" stroke="{curve.color}" '
                     f'stroke-width="1.6" stroke-linejoin="round" points="{pts}"><title>{name}</title></polyline>')
        if len(curve.xs) <= plots.SPARSE_POINTS:  # a sparse curve (an eval every 500 steps): its points
            parts += [f'<circle class="mark" cx="{p.split(",")[0]}" cy="{p.split(",")[1]}" r="2.5" fill="{curve.color}"/>'
                      for p in pts.split(" ")]
    parts.append("</svg>")
    return "".join(parts)


def _points(xs: Sequence[float], ys: Sequence[float], sx: Any, sy: Any, log_y: bool) -> str:
    return " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in zip(xs, ys) if not log_y or y > 0)


def _swatch(color: str) -> str:
    return (f'<svg width="12" height="12" aria-hidden="true"><rect width="12" height="12" rx="2" '
            f'fill="{color}"/></svg>')


# -- what the notes say ------------------------------------------------------------------------------
def alerts_of(exp: Experiment, status: str, details: Mapping[str, Any],
              history: Sequence[Mapping[str, Any]]) -> List[Tuple[str, str]]:
    """(level, text) for one run: alerts the notes carry (``alerts`` in the summary or the
    details, as another part of gitexp records them), a run that did not finish well, and
    metrics that went to NaN or infinity."""
    out: List[Tuple[str, str]] = []
    for source in (exp.summary.get("alerts"), details.get("alerts")):
        for item in source if isinstance(source, list) else []:
            out.append(_alert_item(item))
    if status in BAD_STATUSES:
        reason = exp.summary.get("reason")
        code = exp.summary.get("exit_code")
        said = f"exit code {code}" if is_number(code) and code else ""
        words = ", ".join(printable(str(w)) for w in (said, reason) if w)
        out.append(("error", f"{status}" + (f": {words}" if words else "")))
    bad: Dict[str, Any] = {}
    for record in history:
        for key, value in record.items():
            if key not in ("step", "time") and key not in bad and isinstance(value, float) and not math.isfinite(value):
                bad[key] = record.get("step")
    for metric, step in bad.items():
        out.append(("warning", f"{printable(metric)} became {_nonfinite_word(history, metric)} at step {step}"))
    return out


def _nonfinite_word(history: Sequence[Mapping[str, Any]], metric: str) -> str:
    for record in history:
        value = record.get(metric)
        if isinstance(value, float) and not math.isfinite(value):
            return "NaN" if math.isnan(value) else "infinite"
    return "NaN"


def _alert_item(item: Any) -> Tuple[str, str]:
    if isinstance(item, dict):
        level = str(item.get("level") or item.get("severity") or "warning")
        text = item.get("message") or item.get("text") or item.get("reason")
        rest = {k: v for k, v in item.items() if k not in ("level", "severity", "message", "text", "reason")}
        words = printable(str(text)) if text is not None else ""
        if rest:
            words += (" " if words else "") + " ".join(f"{printable(str(k))}={printable(str(v))[:80]}"
                                                       for k, v in list(rest.items())[:8])
        return (level if level in ("error", "warning", "info") else "warning"), words
    return "warning", printable(str(item))[:500]


def resources_of(exp: Experiment, details: Mapping[str, Any]) -> Dict[str, str]:
    """What the notes say about the run's machine and its use of it, as label -> text."""
    out: Dict[str, str] = {}
    s = exp.summary
    found = details.get("facts")
    facts: Dict[str, Any] = found if isinstance(found, dict) else {}
    host = s.get("host") or facts.get("hostname")
    if host:
        out["host"] = str(host)
    if s.get("runner"):
        out["runner"] = str(s["runner"])
    if is_number(facts.get("cpus")):
        out["CPUs"] = str(facts["cpus"])
    if is_number(facts.get("ram")) and facts["ram"] > 0:
        out["RAM"] = format_size(facts["ram"])
    if isinstance(facts.get("gpus"), list):
        out["GPUs"] = ", ".join(str(g) for g in facts["gpus"]) or "none"
    for where in (s.get("resources"), details.get("resources")):
        if isinstance(where, dict):
            for key, value in _flat(where):
                out[key] = value
    return out


def _flat(data: Mapping[str, Any], prefix: str = "", depth: int = 0) -> Iterable[Tuple[str, str]]:
    for key, value in list(data.items())[:40]:
        name = f"{prefix}{key}"
        if isinstance(value, dict) and depth < 2:
            yield from _flat(value, name + ".", depth + 1)
        elif isinstance(value, list):
            if value and all(isinstance(v, dict) for v in value):
                yield name, f"{len(value)} sample(s)"
            else:
                yield name, ", ".join(str(v) for v in value[:20])[:300]
        else:
            yield name, resource_text(str(key), value)[:300]


def resource_unit(key: str) -> str:
    """What a resource field counts, from its name (gitexp.monitor's fields): "bytes",
    "percent", "seconds" or "" (a plain number)."""
    key = key.lower()
    if key.startswith("cpu") or "util" in key:
        return "percent"
    if any(word in key for word in ("rss", "ram", "disk", "mem", "bytes")):
        return "bytes"
    if key in ("interval", "time_limit") or key.endswith("_seconds"):
        return "seconds"
    return ""


def resource_text(key: str, value: Any) -> str:
    """A resource value in human units: 81.7GB, 97%, 5s."""
    if not is_number(value) or isinstance(value, bool):
        return str(value)
    unit = resource_unit(key)
    if unit == "bytes" and value >= 0:
        return format_size(value)
    if unit == "percent":
        return f"{value:.0f}%"
    if unit == "seconds":
        return timing_mod.seconds_text(float(value))
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def resource_samples(exp: Experiment, details: Mapping[str, Any]) -> Dict[str, List[Dict[str, Any]]]:
    """Lists of samples ({"time": ..., "cpu": ..., ...}) under ``resources``, by name."""
    out: Dict[str, List[Dict[str, Any]]] = {}
    for where in (exp.summary.get("resources"), details.get("resources")):
        if not isinstance(where, dict):
            continue
        for key, value in where.items():
            if isinstance(value, list) and value and all(isinstance(v, dict) and is_number(v.get("time"))
                                                         for v in value[:1000]):
                out[str(key)] = value[:100_000]
    return out


# -- the page ------------------------------------------------------------------------------------------
def render(repo: Repo, exps: Sequence[Experiment], statuses: Mapping[str, str],
           hists: Mapping[str, List[Dict[str, Any]]], details: Mapping[str, Mapping[str, Any]],
           metrics: Sequence[str], what: str, x: str = "step", log_y: bool = False,
           smoothing: float = 0.0) -> str:
    """The whole HTML page."""
    chart_metrics = list(metrics)[:MAX_CHARTS]
    fig = plots.build(exps, hists, chart_metrics, x, log_y, smoothing, title=what, statuses=statuses,
                      buckets=CHART_W)
    index = {e.sha: i for i, e in enumerate(exps)}
    timings = {e.sha: timing_mod.analyze(hists.get(e.sha) or [], e.summary) for e in exps}
    alerts = {e.sha: alerts_of(e, statuses.get(e.sha, e.status), details.get(e.sha) or {}, hists.get(e.sha) or [])
              for e in exps}
    title = f"gitexp report: {what}"
    body: List[str] = [f"<h1>{_e(title)}</h1>",
                       f'<p class="muted">{len(exps)} experiment(s) in {_e(repo.root)}, '
                       f'made {_e(time.strftime("%Y-%m-%d %H:%M:%S"))} by git exp report. '
                       "This file needs no network: open it anywhere.</p>",
                       '<p id="render-check" hidden></p>',  # the script's count, for tests: not shown
                       '<nav><a href="#table">table</a> · <a href="#alerts">alerts</a> · <a href="#curves">curves</a> · '
                       '<a href="#time">time</a> · <a href="#resources">resources</a> · <a href="#runs">runs</a></nav>']
    body += _table(exps, statuses, metrics, timings, index)
    body += _alerts_section(exps, alerts)
    body += _curves_section(fig, metrics, chart_metrics)
    body += _time_section(exps, timings, hists, metrics)
    body += _resources_section(exps, details, x)
    body += _profile_section(exps, details)
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


def _metric_entry(exp: Experiment, name: str) -> Dict[str, Any]:
    entry = (exp.summary.get("metrics") or {}).get(name)
    return entry if isinstance(entry, dict) else {}


def _num_cell(value: Any, best: bool = False) -> str:
    if not is_number(value):
        return '<td class="num"></td>'
    shown = f"{value:.4g}" if isinstance(value, float) else str(value)
    cls = "num best" if best else "num"
    return f'<td class="{cls}" data-v="{_e(repr(float(value)))}">{_e(shown)}</td>'


def _best_runs(exps: Sequence[Experiment], name: str) -> List[str]:
    """The runs holding the best value of a metric by its goal (all of them on a tie)."""
    goal = next((_metric_entry(e, name).get("goal") for e in exps if _metric_entry(e, name).get("goal")), None)
    values: List[Tuple[float, str]] = []
    for exp in exps:
        value: Any = _metric_entry(exp, name).get("best")
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
            cells.append(_num_cell(_metric_entry(exp, m).get("best", _metric_entry(exp, m).get("last")),
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


def _alerts_section(exps: Sequence[Experiment], alerts: Mapping[str, List[Tuple[str, str]]]) -> List[str]:
    out = ['<h2 id="alerts">Alerts</h2>']
    items = [(exp, level, text) for exp in exps for level, text in alerts[exp.sha]]
    if not items:
        return out + ['<p class="muted">None: no run failed, no metric went to NaN or infinity, '
                      "and the notes carry no alerts.</p>"]
    out.append("<ul>")
    for exp, level, text in items:
        out.append(f'<li class="alert {_e(level)}">{_e(level)}: <a href="#run-{exp.sha}">{_e(exp.name)}</a>: '
                   f"{_e(text)}</li>")
    out.append("</ul>")
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


def _time_section(exps: Sequence[Experiment], timings: Mapping[str, Dict[str, Any]],
                  hists: Mapping[str, List[Dict[str, Any]]], metrics: Sequence[str]) -> List[str]:
    goal_metrics = [m for m in metrics if any(_metric_entry(e, m).get("goal") in ("minimize", "maximize")
                                              for e in exps)][:3]
    epochs = any(timings[e.sha].get("epoch_time") is not None for e in exps)  # else an empty column
    head = ["run", "duration", "start-up", "step time (median)", "steps/s"] + (["epoch time"] if epochs else [])
    head += [f"time to best {_e(m)}" for m in goal_metrics]
    out = ['<h2 id="time">Time</h2>', "<table><thead><tr>" + "".join(f"<th>{h}</th>" for h in head) +
           "</tr></thead><tbody>"]
    st = timing_mod.seconds_text
    for exp in exps:
        t = timings[exp.sha]
        rate = f"{t['steps_per_s']:.3g}" if t["steps_per_s"] else ""
        cells = [f'<td><a href="#run-{exp.sha}">{_e(exp.name)}</a></td>', f"<td>{_e(st(t['duration']))}</td>",
                 f"<td>{_e(st(t['startup']))}</td>", f"<td>{_e(st(t['step_time']))}</td>",
                 f"<td>{_e(rate)}</td>"] + ([f"<td>{_e(st(t['epoch_time']))}</td>"] if epochs else [])
        for m in goal_metrics:
            hit = timing_mod.time_to_best(hists.get(exp.sha) or [], exp.summary, m)
            when = f"{st(hit['seconds'])} (step {hit['step']})" if hit and hit.get("seconds") is not None else ""
            cells.append(f"<td>{_e(when)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return out


def _profile_section(exps: Sequence[Experiment], details: Mapping[str, Mapping[str, Any]], n: int = 5) -> List[str]:
    """Runs made with --profile: their top functions by own and by total time (details note)."""
    out: List[str] = []
    for exp in exps:
        profile = (details.get(exp.sha) or {}).get("profile")
        if not isinstance(profile, dict):
            continue
        out.append(f"<h3>{_e(exp.name)}</h3>")
        if profile.get("error"):
            out.append(f'<p class="muted">not profiled: {_e(profile["error"])}</p>')
            continue
        out.append(f'<p class="muted">{_e(profile.get("samples"))} samples at {_e(profile.get("rate"))}/s; '
                   f'flame graph: <code>{_e(profile.get("folder"))}/flamegraph.svg</code></p>')
        out.append("<table><thead><tr><th>by own time</th><th></th><th>by total time</th><th></th></tr></thead><tbody>")
        own, total = (_tops(profile.get(k))[:n] for k in ("top_self", "top_total"))
        for i in range(max(len(own), len(total))):
            cells = [c for tops in (own, total) for c in (tops[i] if i < len(tops) else ("", ""))]
            out.append("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>")
        out.append("</tbody></table>")
    return ['<h2 id="profile">Profile</h2>', *out] if out else []


def _tops(value: Any) -> List[Tuple[str, str]]:
    return [(str(t[0]), f"{t[1]:.0%}") for t in value or []
            if isinstance(t, list) and len(t) == 2 and isinstance(t[1], (int, float)) and not isinstance(t[1], bool)]


def _resources_section(exps: Sequence[Experiment], details: Mapping[str, Mapping[str, Any]], x: str) -> List[str]:
    out = ['<h2 id="resources">Resources</h2>']
    rows = {e.sha: resources_of(e, details.get(e.sha) or {}) for e in exps}
    keys: Dict[str, None] = {}
    for found in rows.values():
        for key in found:
            keys.setdefault(key, None)
    if not keys:
        return out + ['<p class="muted">The notes record nothing about the machines yet.</p>']
    out.append('<div class="wide"><table><thead><tr><th>run</th>' + "".join(f"<th>{_e(k)}</th>" for k in keys)
               + "</tr></thead><tbody>")
    for exp in exps:
        out.append(f'<tr><td><a href="#run-{exp.sha}">{_e(exp.name)}</a></td>' +
                   "".join(f"<td>{_e(rows[exp.sha].get(k, ''))}</td>" for k in keys) + "</tr>")
    out.append("</tbody></table></div>")
    for exp in exps:
        for name, samples in resource_samples(exp, details.get(exp.sha) or {}).items():
            out += _sample_charts(exp, name, samples)
    return out


def _sample_charts(exp: Experiment, name: str, samples: List[Dict[str, Any]]) -> List[str]:
    """Charts of resource samples over time (each numeric field one chart)."""
    start = min(float(s["time"]) for s in samples)
    fields: Dict[str, None] = {}
    for sample in samples[:1000]:
        for key, value in sample.items():
            if key != "time" and is_number(value):
                fields.setdefault(str(key), None)
    out = [f"<h3>{_e(exp.name)}: {_e(name)}</h3>", '<div class="charts">']
    flat = []
    charts = 0
    for key in fields:
        pts = [(float(s["time"]) - start, float(s[key])) for s in samples if is_number(s.get(key))]
        if len({p[1] for p in pts}) < 2:  # a constant (ram_total, disk_total): the table says it
            flat.append(key)
            continue
        charts += 1
        if charts > 8:
            continue
        scale, unit = _chart_unit(key, max(abs(p[1]) for p in pts))
        xs, ys = plots.decimate([p[0] for p in pts], [p[1] / scale for p in pts], MINI_W)
        curve = plots.Curve(exp, key, xs, ys, None, 0)
        caption = _e(key) + (f" ({unit})" if unit else "")
        out.append(f"<figure><figcaption>{caption}</figcaption>{svg_chart([curve], 'seconds', False, MINI_W, MINI_H)}"
                   "</figure>")
    out.append("</div>")
    if flat:
        out.append('<p class="muted">Constant over the run: ' + ", ".join(
            f"{_e(k)} {_e(resource_text(k, samples[0].get(k)))}" for k in flat[:20]) + ".</p>")
    return out


def _chart_unit(key: str, largest: float) -> Tuple[float, str]:
    """(divisor, unit) for a chart of a resource field: bytes in KB/MB/GB/TB, percent."""
    unit = resource_unit(key)
    if unit == "percent":
        return 1.0, "%"
    if unit == "bytes":
        scale, name = 1.0, "B"
        for name_, size in (("KB", 1e3), ("MB", 1e6), ("GB", 1e9), ("TB", 1e12)):
            if largest >= size:
                scale, name = size, name_
        return scale, name
    if unit == "seconds":
        return 1.0, "s"
    return 1.0, ""


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
    if metrics:
        rows = []
        for name, entry in sorted(metrics.items()):
            entry = entry if isinstance(entry, dict) else {}
            hit = timing_mod.time_to_best(history, s, name)
            rows.append(f"<tr><td>{_e(name)}</td><td>{_e(entry.get('goal'))}</td>{_num_cell(entry.get('best'))}"
                        f"<td>{_e(entry.get('best_step'))}</td>{_num_cell(entry.get('last'))}"
                        f"<td>{_e(entry.get('last_step'))}</td><td>{_e(entry.get('count'))}</td>"
                        f"<td>{_e(timing_mod.seconds_text(hit['seconds']) if hit and hit.get('seconds') is not None else '')}</td></tr>")
        out.append("<table><thead><tr><th>metric</th><th>goal</th><th>best</th><th>at step</th><th>last</th>"
                   "<th>at step</th><th>points</th><th>time to best</th></tr></thead><tbody>" + "".join(rows) +
                   "</tbody></table>")
    lines = timing_mod.lines(t)
    if lines:
        out.append("<pre>" + _e_block("\n".join(line.strip() for line in lines[2:])) + "</pre>")
    mini = [m for m in metrics if isinstance(metrics[m], dict) and metrics[m].get("goal")][:4] or list(metrics)[:4]
    if mini and history:
        fig = plots.build([exp], {exp.sha: history}, mini, x if x != "epoch" or plots.epoch_of_steps(history) else "step",
                          log_y, smoothing, statuses={exp.sha: status}, buckets=MINI_W)
        out.append('<div class="charts">')
        for metric in mini:
            for curve in fig.curves[metric]:
                curve.index = index
            out.append(f"<figure><figcaption>{_e(metric)}</figcaption>"
                       f"{svg_chart(fig.curves[metric], fig.x_label(), log_y, MINI_W, MINI_H)}</figure>")
        out.append("</div>")
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
