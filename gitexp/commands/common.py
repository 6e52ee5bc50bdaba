"""Helpers shared by commands: opening the repository, formatting values and times.

Everything printed for a terminal goes through :func:`fmt_value` or :func:`cell`, which
escape control characters (notes come from anyone, and an escape sequence in a param
must not reach the terminal) and abbreviate long values. CSV and JSON keep values whole.
"""
from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any, List, Optional, Tuple

import click

from ..notes import Experiment, Store
from ..repo import Repo
from ..summary import json_safe, printable
from ..units import format_duration

if TYPE_CHECKING:
    from ..operations.submit import Submitted

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


def output_format(*choices: str, default: str = "table") -> Any:
    return click.option("--format", "fmt", type=click.Choice(list(choices)), default=default,
                        show_default=True, help="Output format.")


def render_table(headers: List[str], rows: List[List[str]], width: Optional[int] = CELL_WIDTH) -> str:
    """tabulate's 'simple' layout for cells that are already strings, in linear time.

    ``git exp log`` prints tens of thousands of rows; tabulate spends most of its time
    guessing column types, which we never need here. Cells are escaped (control characters
    made visible) and cut to ``width`` characters, so one huge param cannot widen every row.
    """
    headers = [abbreviate(printable(h), width) for h in headers]
    rows = [[abbreviate(printable(c), width) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in rows:
        for i, text in enumerate(row):
            if len(text) > widths[i]:
                widths[i] = len(text)

    def line(cells: List[str]) -> str:
        return "  ".join(text.ljust(w) for text, w in zip(cells, widths)).rstrip()
    out = [line(headers), "  ".join("-" * w for w in widths)]
    out.extend(line(row) for row in rows)
    return "\n".join(out)


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


def _exit_code(code: int, summary: dict) -> int:
    """The program's own status, except for a run stopped by a signal to ``git exp run``
    (Ctrl-C, SIGTERM, SIGHUP): 130, as docs/runners.md promises, whatever the program made of
    the signal (a training script that catches KeyboardInterrupt, saves and exits 1)."""
    if summary.get("status") == "killed":
        return 130
    return code


def _closing_line(name: str, summary: dict) -> str:
    parts = [f"gitexp: {name} {summary.get('status', '?')}"]
    if summary.get("duration") is not None:
        parts.append(f"in {format_duration(summary['duration'])}")
    if summary.get("status") == "failed" and summary.get("reason"):
        parts.append(f"({summary['reason']})")
    best = [f"{m}={fmt_value(e['best'])}" for m, e in sorted((summary.get("metrics") or {}).items())
            if e.get("best") is not None]
    if best:
        parts.append("best " + " ".join(best))
    return " ".join(parts)
