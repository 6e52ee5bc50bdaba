"""``git exp import tensorboard LOGDIR``: record a run made before gitexp from its event files."""
from __future__ import annotations

from typing import Optional

import click

from .. import tbimport
from ..config import load_config
from .common import open_store


@click.group("import")
def import_() -> None:
    """Record runs made outside gitexp as experiments (marked imported)."""


@import_.command("tensorboard")
@click.argument("logdir")
@click.option("--config", "config_path", metavar="CONFIG",
              help="Config to record with it; its tfevents metrics rename tags and give their goals.")
@click.option("--name", help="Experiment name (default: the config's name, else LOGDIR's folder name).")
def tensorboard(logdir: str, config_path: Optional[str], name: Optional[str]) -> int:
    """Record the finished run whose TensorBoard event files are under LOGDIR: status finished,
    every scalar tag a metric (with its steps and wall times)."""
    repo, store = open_store()
    config = load_config(config_path) if config_path else None
    exp, files = tbimport.import_logdir(repo, store, logdir, config, name)
    metrics = exp.summary.get("metrics") or {}
    click.echo(exp.sha)
    click.echo(f"gitexp: imported {exp.name} from {len(files)} event file(s): {len(metrics)} metric(s) "
               f"({', '.join(sorted(metrics)[:8])}{', ...' if len(metrics) > 8 else ''}); see git exp show {exp.sha[:10]}",
               err=True)
    return 0
