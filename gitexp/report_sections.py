"""Sections of ``git exp report`` about each run's health: alerts, time, resources, profile.

What the notes say is untrusted: every text is escaped (:func:`gitexp.report_svg.esc`), and
a note's ``alerts`` and ``resources`` are read as data, never as markup or paths.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Iterable, List, Mapping, Sequence, Tuple

from . import plots
from . import timing as timing_mod
from .metrics import is_number
from .notes import Experiment
from .report_svg import MINI_H, MINI_W, esc as _e, svg_chart
from .lifecycle import Status
from .summary import INVALID, printable
from .units import format_size

BAD_STATUSES = (Status.FAILED, Status.KILLED, Status.TIMEOUT, Status.LOST, INVALID, Status.CANCELLED)


def metric_entry(exp: Experiment, name: str) -> Dict[str, Any]:
    entry = (exp.summary.get("metrics") or {}).get(name)
    return entry if isinstance(entry, dict) else {}


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



def alerts_section(exps: Sequence[Experiment], alerts: Mapping[str, List[Tuple[str, str]]]) -> List[str]:
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



def time_section(exps: Sequence[Experiment], timings: Mapping[str, Dict[str, Any]],
                  hists: Mapping[str, List[Dict[str, Any]]], metrics: Sequence[str]) -> List[str]:
    goal_metrics = [m for m in metrics if any(metric_entry(e, m).get("goal") in ("minimize", "maximize")
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


def profile_section(exps: Sequence[Experiment], details: Mapping[str, Mapping[str, Any]], n: int = 5) -> List[str]:
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


def resources_section(exps: Sequence[Experiment], details: Mapping[str, Mapping[str, Any]], x: str) -> List[str]:
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
