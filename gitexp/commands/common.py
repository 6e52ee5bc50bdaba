"""Helpers shared by commands: opening the repository, formatting values and times.

Everything printed for a terminal goes through :func:`fmt_value` or :func:`cell`, which
escape control characters (notes come from anyone, and an escape sequence in a param
must not reach the terminal) and abbreviate long values. CSV and JSON keep values whole.
"""
from __future__ import annotations

import gc
import json
import math
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple, TypeVar

import click

from ..lifecycle import Status
from ..notes import Experiment, Store
from ..repo import Repo
from ..summary import json_safe, printable
from ..units import format_duration, format_size

if TYPE_CHECKING:
    from ..operations.submit import Submitted

_F = TypeVar("_F", bound=Callable[..., Any])  # a click command function, kept typed through a decorator

CELL_WIDTH = 80  # a table cell is cut to this many characters; --format csv/json keep it whole


def open_store() -> Tuple[Repo, Store]:
    repo = Repo.discover(".")
    return repo, Store(repo)


def fmt_value(value: Any) -> str:
    """A value for a terminal: floats short, control characters escaped (never cut: see cell)."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return printable(str(value))


def abbreviate(text: str, width: Optional[int] = CELL_WIDTH) -> str:
    if width is None or len(text) <= width:
        return text
    return text[:width - 1] + "…"


def cell(value: Any, width: Optional[int] = CELL_WIDTH) -> str:
    """A table cell: :func:`fmt_value`, cut to ``width`` characters."""
    return abbreviate(fmt_value(value), width)


def fmt_time(ts: Any) -> str:
    if not isinstance(ts, (int, float)) or isinstance(ts, bool):
        return ""
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))
    except (OverflowError, OSError, ValueError):  # a time no calendar holds (from a bad note)
        return "?"


def fmt_duration(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
        return ""
    try:
        return format_duration(seconds)
    except (OverflowError, ValueError):
        return "?"


def json_text(data: Any, indent: Optional[int] = 2) -> str:
    """Strict JSON: NaN and infinities become null (other tools refuse them), deep nesting is cut."""
    try:
        return json.dumps(data, indent=indent, sort_keys=True, default=str, allow_nan=False)
    except (ValueError, TypeError, RecursionError):
        return json.dumps(json_safe(data), indent=indent, sort_keys=True, default=str, allow_nan=False)


def print_json(data: Any) -> None:
    click.echo(json_text(data))


def output_format(*choices: str, default: str = "table") -> Callable[[_F], _F]:
    return click.option("--format", "fmt", type=click.Choice(list(choices)), default=default,
                        show_default=True, help="Output format.")


def render_table(headers: List[str], rows: List[List[str]], width: Optional[int] = CELL_WIDTH) -> str:
    """tabulate's 'simple' layout for cells that are already strings, in linear time.

    ``git exp log`` prints tens of thousands of rows; tabulate spends most of its time
    guessing column types, which we never need here. Cells are escaped (control characters
    made visible) and cut to ``width`` characters, so one huge param cannot widen every row.
    """
    limit = width if width is not None else float("inf")
    headers = [abbreviate(printable(h), width) for h in headers]

    def cells(row: List[str]) -> List[str]:
        # A printable cell within the width is its own text (str.isprintable: no control character).
        return [c if len(c) <= limit and c.isprintable() else abbreviate(printable(c), width) for c in row]
    # Most rows are all printable and within the width: checked whole, in two C-level calls.
    n = len(headers)
    rows = [row if "".join(row).isprintable() and max(map(len, row), default=0) <= limit else cells(row)
            for row in (r if len(r) == n else (r + [""] * n)[:n] for r in rows)]
    widths = [max(len(h), max(map(len, column), default=0))
              for h, column in zip(headers, zip(*rows) if rows else [()] * len(headers))]
    template = "  ".join("{:<%d}" % w for w in widths)  # one format call per line, not a join of ljusts
    out = [template.format(*headers).rstrip(), "  ".join("-" * w for w in widths)]
    out.extend(template.format(*row).rstrip() for row in rows)
    return "\n".join(out)


@contextmanager
def no_cycle_collection() -> Iterator[None]:
    """Python's cycle collector paused for a listing: building 10,000 rows makes hundreds of
    thousands of objects (none in a cycle), and the collections they trigger were ~10% of
    `git exp log`. Reference counting still frees them; the collector resumes on the way out."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


# -- starting runs (run, resume) ----------------------------------------------------------------
def print_submitted(submitted: "Submitted") -> None:
    """What a run target's runner took: its warnings, the ids, its closing line."""
    for warning in submitted.warnings:
        click.echo(f"gitexp: {warning}", err=True)
    for exp in submitted.exps:
        click.echo(exp.sha)
    click.echo(f"gitexp: {submitted.line}", err=True)


def start_here(store: Store, exp: Experiment, detach: bool, started: str, running: str) -> int:
    """Run a recorded experiment on this machine: in the background (print its id), or in the
    foreground (its output, a closing line, its exit code)."""
    from ..runners.local import LocalRunner  # only for commands that start a run

    runner = LocalRunner(store.repo, store)
    if detach:
        runner.start_detached(exp)
        click.echo(exp.sha)
        click.echo(f"gitexp: {started} in the background; follow it with: git exp logs -f {exp.sha[:10]}", err=True)
        return 0
    click.echo(f"gitexp: {running}", err=True)
    code = runner.run_foreground(exp)
    summary = store.summary(exp.sha)
    click.echo(_closing_line(exp.name, summary), err=True)
    return _exit_code(code, summary)


def _exit_code(code: int, summary: Dict[str, Any]) -> int:
    """The program's own status, except for a run stopped by a signal to ``git exp run``
    (Ctrl-C, SIGTERM, SIGHUP): 130, as docs/runners.md promises, whatever the program made of
    the signal (a training script that catches KeyboardInterrupt, saves and exits 1)."""
    if summary.get("status") == Status.KILLED:
        return 130
    return code


def _closing_line(name: str, summary: Dict[str, Any]) -> str:
    parts = [f"gitexp: {name} {summary.get('status', '?')}"]
    if summary.get("duration") is not None:
        parts.append(f"in {format_duration(summary['duration'])}")
    if summary.get("status") == Status.FAILED and summary.get("reason"):
        parts.append(f"({summary['reason']})")
    best = [f"{m}={fmt_value(e['best'])}" for m, e in sorted((summary.get("metrics") or {}).items())
            if e.get("best") is not None]
    if best:
        parts.append("best " + " ".join(best))
    return " ".join(parts)

# -- what show, log, top and queue print about a run -----------------------------------------------
def record(exp: Experiment, status: str) -> Dict[str, Any]:
    s = exp.summary
    return {
        "id": exp.sha, "name": exp.name, "group": s.get("group"), "status": status,
        "params": s.get("params") or {}, "metrics": s.get("metrics") or {},
        "created": s.get("created"), "started": s.get("started"), "ended": s.get("ended"),
        "duration": s.get("duration"), "exit_code": s.get("exit_code"), "host": s.get("host"),
        "runner": s.get("runner"), "parent": s.get("parent"), "reason": s.get("reason"),
        "attempt": exp.attempt,
        "alerts": s.get("alerts") or [],
    }


def _finite(value: Any) -> Optional[float]:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def alert_lines(summary: Mapping[str, Any]) -> List[str]:
    alerts = summary.get("alerts")
    if not isinstance(alerts, list) or not alerts:
        return []
    out = [f"\nalerts ({len(alerts)}):"]
    for alert in alerts[-20:]:
        if isinstance(alert, dict):
            when = time.strftime("%H:%M:%S", time.localtime(alert["time"])) if _finite(alert.get("time")) else ""
            out.append(f"  {when} {fmt_value(alert.get('rule'))} ({fmt_value(alert.get('action'))}): "
                       f"{fmt_value(alert.get('message'))}")
    return out


def resource_lines(summary: Mapping[str, Any]) -> List[str]:
    res = summary.get("resources")
    if not isinstance(res, dict) or not res:
        return []
    parts = []
    for key, label, size in (("cpu_peak", "CPU", False), ("rss_peak", "RSS", True), ("ram_used_peak", "host RAM", True),
                             ("disk_free_min", "free disk min", True), ("gpu_util_peak", "GPU util", False),
                             ("gpu_mem_peak", "GPU mem", True)):
        value = _finite(res.get(key))
        if value is not None:
            parts.append(f"{label} {format_size(value) if size else f'{value:.0f}%'}")
    gpu_util = [v for k, v in res.items() if k.startswith("gpu") and k.endswith("_util_peak") and _finite(v) is not None]
    if gpu_util and "gpu_util_peak" not in res:
        parts.append(f"GPU util {max(gpu_util):.0f}%")
    samples = res.get("samples")
    return [f"\nresources (peaks{f' of {samples} samples' if _finite(samples) else ''}): " + ", ".join(parts)]


def notify_lines(summary: Mapping[str, Any]) -> List[str]:
    record = summary.get("notify")
    if not isinstance(record, dict):
        return []
    line = f"\nnotifications: {fmt_value(record.get('sent', 0))} sent"
    if record.get("failed"):
        line += f", {fmt_value(record.get('failed'))} failed: {fmt_value(record.get('error'))}"
    return [line]


def alerts_cell(summary: Mapping[str, Any]) -> str:
    alerts = summary.get("alerts")
    if not isinstance(alerts, list) or not alerts:
        return ""
    rules = {str(a.get("rule")) for a in alerts if isinstance(a, dict)}
    return f"{len(alerts)}: " + ",".join(sorted(rules))


def resources_text(name: str, report: Dict[str, Any]) -> str:
    res: Dict[str, Any] = report["resources"] if isinstance(report.get("resources"), dict) else {}
    lines = [f"{fmt_value(name)} ({fmt_value(report.get('host'))}):"]
    gpus = res.get("gpus")
    if isinstance(gpus, list) and gpus:
        free = [g for g in gpus if isinstance(g, dict) and (g.get("util") or 0) < 5
                and _amount(g.get("mem_free")) >= 0.9 * _amount(g.get("mem_total"))]
        lines.append(f"  GPUs     {len(gpus)}, {len(free)} free: " + "; ".join(
            f"{fmt_value(g.get('index'))} {fmt_value(g.get('name'))} {format_size(_amount(g.get('mem_free')))}/"
            f"{format_size(_amount(g.get('mem_total')))} free, {fmt_value(g.get('util'))}% busy"
            for g in gpus if isinstance(g, dict)))
    else:
        lines.append("  GPUs     none that nvidia-smi can list")
    lines.append(f"  RAM      {format_size(_amount(res.get('ram_available')))} available of "
                 f"{format_size(_amount(res.get('ram_total')))}")
    lines.append(f"  disk     {format_size(_amount(res.get('disk_free')))} free of {format_size(_amount(res.get('disk_total')))}"
                 f" at {fmt_value(res.get('disk_path'))}")
    load = res.get("load")
    load_text = f", load {fmt_value(load[0])}" if isinstance(load, list) and load else ""
    lines.append(f"  CPUs     {fmt_value(res.get('cpus'))}{load_text}")
    return "\n".join(lines)


def _amount(value: object) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0
