"""What a notification says: the fields of a run for the templates, the default body, the
results table, a sparkline of each curve, a PNG of the curves, the log tail and traceback."""
from __future__ import annotations

import math
import os
import socket
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from .notify_config import DEFAULT_SUBJECT, Channel
from .units import format_duration

TAIL_LINES = 40


def results_table(metrics: Any) -> str:
    if not isinstance(metrics, dict) or not metrics:
        return "(no metrics recorded)"
    rows = [("metric", "best", "last", "points", "goal")]
    for name, entry in sorted(metrics.items()):
        if isinstance(entry, dict):
            rows.append((str(name), _num(entry.get("best")), _num(entry.get("last")), str(entry.get("count", "")),
                         str(entry.get("goal") or "")))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)


def _num(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else ""


def sparkline(values: Sequence[float], width: int = 60) -> str:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return ""
    step = max(1, math.ceil(len(values) / width))
    buckets = [values[i:i + step] for i in range(0, len(values), step)]
    lo, hi = min(finite), max(finite)
    bars = "▁▂▃▄▅▆▇█"
    out = []
    for bucket in buckets:
        good = [v for v in bucket if math.isfinite(v)]
        if not good:
            out.append(" ")
            continue
        mean = sum(good) / len(good)
        out.append(bars[int((mean - lo) / (hi - lo) * 7) if hi > lo else 3])
    return "".join(out)


def curve_png(curves: Mapping[str, List[Tuple[float, float]]]) -> Optional[bytes]:
    """The curves as one PNG (a panel per metric), or None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:  # noqa: BLE001 - the plot extra is optional
        return None
    import io

    names = [n for n, pts in curves.items() if pts][:4]
    if not names:
        return None
    fig, axes = plt.subplots(len(names), 1, figsize=(7, 2.2 * len(names)), squeeze=False)
    for ax, name in zip(axes[:, 0], names):
        xs, ys = zip(*curves[name])
        ax.plot(xs, ys, linewidth=1.2)
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("step")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()


def log_tail(path: str, lines: int = TAIL_LINES) -> Tuple[str, str]:
    """(the last lines of the output log, the last Python traceback in its end)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 256 * 1024))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return "", ""
    all_lines = text.splitlines()
    tail = "\n".join(all_lines[-lines:])
    start = text.rfind("Traceback (most recent call last):")
    trace = "\n".join(text[start:].splitlines()[:120]) if start >= 0 else ""
    return tail, trace


def fields_for(event: str, summary: Mapping[str, Any], sha: str, log_path: Optional[str],
               curves: Mapping[str, List[Tuple[float, float]]], alert: Optional[Mapping[str, Any]] = None) -> Dict[str, str]:
    params = summary.get("params") if isinstance(summary.get("params"), dict) else {}
    tail, trace = log_tail(log_path) if log_path and event not in ("started", "alert") else ("", "")
    duration = summary.get("duration")
    lines = [f"{name}: {sparkline([p[1] for p in pts])}" for name, pts in list(curves.items())[:4] if pts]
    return {
        "name": str(summary.get("name") or sha[:10]), "sha": sha, "short": sha[:10], "event": event,
        "status": str(summary.get("status") or ""), "host": str(summary.get("host") or socket.gethostname()),
        "reason": str(summary.get("reason") or ""), "exit_code": str(summary.get("exit_code", "")),
        "duration": format_duration(duration) if isinstance(duration, (int, float)) and not isinstance(duration, bool)
        and math.isfinite(duration) else "",
        "params": " ".join(f"{k}={v}" for k, v in (params or {}).items()),
        "results": results_table(summary.get("metrics")),
        "message": str((alert or {}).get("message") or ""), "rule": str((alert or {}).get("rule") or ""),
        "log_tail": tail, "traceback": trace, "curve": "\n".join(lines),
    }


def default_body(fields: Mapping[str, str]) -> str:
    event = fields["event"]
    out = [f"Experiment {fields['name']} ({fields['short']}) on {fields['host']}: {event}."]
    if fields["params"]:
        out.append(f"params: {fields['params']}")
    if event == "alert":
        out.append(f"alert ({fields['rule']}): {fields['message']}")
    if fields["reason"] and event != "started":
        out.append(f"reason: {fields['reason']}")
    if fields["duration"]:
        out.append(f"duration: {fields['duration']}")
    if event not in ("started",):
        out += ["", "Results:", fields["results"]]
    if fields["curve"]:
        out += ["", "Curves:", fields["curve"]]
    if event not in ("started", "finished", "alert"):
        out += ["", f"Crash report: exit code {fields['exit_code'] or '-'}"]
        if fields["traceback"]:
            out += ["", "Traceback:", fields["traceback"]]
        if fields["log_tail"]:
            out += ["", "Last lines of output:", fields["log_tail"]]
    return "\n".join(out) + "\n"


def render(channel: Channel, fields: Mapping[str, str]) -> Tuple[str, str]:
    subject = channel.subject.format_map(dict(fields))
    if fields["event"] == "alert" and channel.subject == DEFAULT_SUBJECT:
        subject = f"[gitexp] {fields['name']}: alert ({fields['rule']})"
    body = channel.body.format_map(dict(fields)) if channel.body else default_body(fields)
    return " ".join(subject.split())[:200], body
