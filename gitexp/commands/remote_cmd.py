"""``git exp remote add/list/remove``: named places to run."""
from __future__ import annotations

from typing import Optional, Tuple

import click

from ..remotes import RUNNERS, add_remote, describe, load_remotes, remove_remote
from .common import open_store, output_format, print_json, render_table


@click.group()
def remote() -> None:
    """Named places to run (kept in .gitexp.yaml, per-user overrides in git config)."""


@remote.command(name="add")
@click.argument("name")
@click.option("--runner", type=click.Choice(list(RUNNERS)), default="local", show_default=True)
@click.option("--partition", help="Slurm partition (-p).")
@click.option("--account", help="Slurm account (-A).")
@click.option("--qos", help="Slurm QOS.")
@click.option("--time", "time_", help="Default time limit, e.g. 4h (an experiment's requires.time wins).")
@click.option("--mem", help="Default memory, e.g. 16GB (requires.ram wins).")
@click.option("--cpus", type=int, help="CPUs per task.")
@click.option("--gres", help="Generic resources, e.g. gpu:1.")
@click.option("--constraint", help="Node features (-C).")
@click.option("--max-parallel", type=int, help="At most this many array tasks at once (%N).")
@click.option("--signal-warning", type=int, help="Seconds before the time limit to send SIGUSR1 (default 120).")
@click.option("--python", help="Python on the nodes that has gitexp (default: this interpreter).")
@click.option("--module", "modules", multiple=True, help="Module to load first (repeatable).")
@click.option("--setup", "setup", multiple=True, help="Shell line to run first, e.g. 'source venv/bin/activate'.")
@click.option("--sbatch", "sbatch", multiple=True, help="Extra #SBATCH line, e.g. '--exclusive' (repeatable).")
@click.option("--user", is_flag=True, help="Keep it in your git config instead of the shared .gitexp.yaml.")
def add(name: str, runner: str, partition: Optional[str], account: Optional[str], qos: Optional[str],
        time_: Optional[str], mem: Optional[str], cpus: Optional[int], gres: Optional[str],
        constraint: Optional[str], max_parallel: Optional[int], signal_warning: Optional[int],
        python: Optional[str], modules: Tuple[str, ...], setup: Tuple[str, ...], sbatch: Tuple[str, ...],
        user: bool) -> None:
    """Add (or replace) remote NAME. With no host it is this machine (e.g. a Slurm login node)."""
    repo, _store = open_store()
    options = {"runner": runner, "partition": partition, "account": account, "qos": qos, "time": time_,
               "mem": mem, "cpus": cpus, "gres": gres, "constraint": constraint, "max_parallel": max_parallel,
               "signal_warning": signal_warning, "python": python, "modules": list(modules),
               "setup": list(setup), "sbatch": list(sbatch)}
    where = add_remote(repo, name, options, user=user)
    click.echo(f"remote {name} saved in {where}")


@remote.command(name="list")
@output_format("table", "json")
def list_(fmt: str) -> None:
    """The defined remotes and their settings."""
    repo, _store = open_store()
    remotes = load_remotes(repo)
    if fmt == "json":
        print_json({name: {"runner": r.runner, **r.options} for name, r in remotes.items()})
        return
    if not remotes:
        click.echo("no remotes (git exp remote add NAME --runner slurm --partition P)", err=True)
        return
    click.echo(render_table(["name", "settings"], [[n, describe(r)] for n, r in sorted(remotes.items())]))


@remote.command(name="remove")
@click.argument("name")
def remove(name: str) -> None:
    """Forget remote NAME (from .gitexp.yaml and your git config)."""
    repo, _store = open_store()
    remove_remote(repo, name)
    click.echo(f"removed remote {name}")
