"""Helpers shared by commands: opening the repository, formatting values and times."""
from __future__ import annotations

import json
import time
from typing import Any, List, Tuple

import click

from ..notes import Store
from ..repo import Repo


def open_store() -> Tuple[Repo, Store]:
    repo = Repo.discover(".")
    return repo, Store(repo)


def fmt_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def fmt_time(ts: Any) -> str:
    if not isinstance(ts, (int, float)):
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))



def output_format(*choices: str, default: str = "table") -> Any:
    return click.option("--format", "fmt", type=click.Choice(list(choices)), default=default,
                        show_default=True, help="Output format.")


def render_table(headers: List[str], rows: List[List[str]]) -> str:
    """tabulate's 'simple' layout for cells that are already strings, in linear time.

    ``git exp log`` prints tens of thousands of rows; tabulate spends most of its time
    guessing column types, which we never need here.
    """
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            if len(cell) > widths[i]:
                widths[i] = len(cell)
    def line(cells: List[str]) -> str:
        return "  ".join(cell.ljust(w) for cell, w in zip(cells, widths)).rstrip()
    out = [line(headers), "  ".join("-" * w for w in widths)]
    out.extend(line(row) for row in rows)
    return "\n".join(out)
