"""``git exp run``: make the experiment commit, then run it here (or detached)."""
from __future__ import annotations

import os
import sys
from typing import Optional, Tuple

import click

from .. import experiments
from ..config import load_config, parse_override
from ..errors import BadInput, NotReady
from ..paths import runs_root
from ..resources import check as check_requires
from ..runners.local import LocalRunner
from ..units import format_duration
from .common import fmt_value, open_store


@click.command()
@click.argument("config_path", metavar="CONFIG")
@click.option("-p", "--param", "overrides", multiple=True, metavar="NAME=VALUE",
              help="Override a param of the config (repeatable).")
@click.option("--name", help="Experiment name (default: the config's name).")
@click.option("--group", help="Group to file the experiment under.")
@click.option("--detach", "-d", is_flag=True, help="Start in the background; print its id and return.")
def run(config_path: str, overrides: Tuple[str, ...], name: Optional[str], group: Optional[str],
        detach: bool) -> int:
    """Record CONFIG as an experiment commit and run it on this machine."""
    repo, store = open_store()
    config = load_config(config_path)
    values = dict(parse_override(text, config) for text in overrides)
    config = config.with_params(values, name=name)
    if group:
        config.group = group
    repo.head()  # a repository with no commits is bad input, before anything is written
    experiments.check_files(repo, config)
    problems = check_requires(config.requires, runs_root(repo))
    if problems:
        raise NotReady("not started: " + "; ".join(problems), "free resources or lower 'requires'")
    exp = experiments.create(repo, store, config)
    runner = LocalRunner(repo, store)
    if detach:
        runner.submit([exp])
        click.echo(exp.sha)
        click.echo(f"gitexp: started {exp.name} in the background; follow it with: git exp logs -f {exp.sha[:10]}",
                   err=True)
        return 0
    click.echo(f"gitexp: experiment {exp.name} ({exp.sha[:10]})", err=True)
    code = runner.run_foreground(exp)
    summary = store.summary(exp.sha)
    click.echo(_closing_line(exp.name, summary), err=True)
    return code


def _closing_line(name: str, summary: dict) -> str:
    parts = [f"gitexp: {name} {summary.get('status', '?')}"]
    if summary.get("duration") is not None:
        parts.append(f"in {format_duration(summary['duration'])}")
    if summary.get("status") == "failed" and summary.get("reason"):
        parts.append(f"({summary['reason']})")
    best = []
    for metric, entry in sorted((summary.get("metrics") or {}).items()):
        if entry.get("best") is not None:
            best.append(f"{metric}={fmt_value(entry['best'])}")
    if best:
        parts.append("best " + " ".join(best))
    return " ".join(parts)
