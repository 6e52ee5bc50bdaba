"""Helpers shared by commands: opening the repository, formatting values and times."""
from __future__ import annotations

import datetime
import json
from typing import Any, Tuple

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
    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))



def output_format(*choices: str, default: str = "table") -> Any:
    return click.option("--format", "fmt", type=click.Choice(list(choices)), default=default,
                        show_default=True, help="Output format.")
