"""``git exp remote add/list/remove/setup``: run targets, the named places to run experiments.

A run target is not a git remote: it names a runner (local, slurm, sge) and where it runs (this
machine, or a git repository on another host reached over ssh). See ``gitexp/targets.py``.
"""
from __future__ import annotations

from typing import Optional, Tuple

import click

from ..errors import BadInput
from ..runners import RUNNERS
from ..targets import add_target, describe, get_target, load_targets, remove_target
from .common import open_store, output_format, print_json, render_table


@click.group()
def remote() -> None:
    """Run targets: named places to run (kept in .gitexp.yaml, per-user overrides in git config)."""


@remote.command(name="add")
@click.argument("name")
@click.option("--runner", type=click.Choice(sorted(RUNNERS)), default="local", show_default=True,
              help="How experiments are scheduled there.")
@click.option("--host", help="Run on this host over ssh (user@host, or an alias from ~/.ssh/config).")
@click.option("--path", help="With --host: the git repository there (git exp remote setup creates it).")
@click.option("--python", help="The Python that has gitexp there (default: python3 over ssh; for Slurm "
              "without --host, this interpreter).")
@click.option("--ssh-config", "ssh_config", help="With --host: an ssh client config file (ssh -F).")
@click.option("--port", type=int, help="With --host: the ssh port.")
@click.option("--disk-margin", "disk_margin", help="Free disk to keep there beyond requires.disk (default 1GB).")
@click.option("--ssh-timeout", "ssh_timeout", help="With --host: how long one round trip there may take, e.g. "
              "2m (default 5m).")
@click.option("--gpus", help="Local runner: GPU indices its worker hands out, one per experiment, e.g. 0,1.")
@click.option("--jobs", type=int, help="Local runner: how many experiments its worker runs at once.")
@click.option("--partition", help="Slurm partition (-p).")
@click.option("--account", help="Slurm account (-A).")
@click.option("--qos", help="Slurm QOS.")
@click.option("--time", "time_", help="Slurm, Grid Engine: default time limit, e.g. 4h (an experiment's requires.time wins).")
@click.option("--mem", help="Slurm, Grid Engine: default memory, e.g. 16GB (requires.ram wins).")
@click.option("--cpus", type=int, help="Slurm: CPUs per task; Grid Engine: slots of --pe.")
@click.option("--gres", help="Slurm: generic resources, e.g. gpu:1.")
@click.option("--constraint", help="Slurm: node features (-C).")
@click.option("--max-parallel", type=int, help="Slurm, Grid Engine: at most this many array tasks at once (%N, -tc).")
@click.option("--signal-warning", type=int, help="Slurm, Grid Engine: seconds before the time limit to send SIGUSR1 (default 120).")
@click.option("--module", "modules", multiple=True, help="Slurm, Grid Engine: module to load first (repeatable).")
@click.option("--setup", "setup", multiple=True, help="Shell line to run first (the local runner's worker, a Slurm or "
              "Grid Engine job), e.g. 'source venv/bin/activate' (repeatable).")
@click.option("--env", "env", multiple=True, metavar="KEY=VALUE", help="Local runner: environment of its worker and "
              "programs (the config's env: wins; repeatable).")
@click.option("--sbatch", "sbatch", multiple=True, help="Slurm: extra #SBATCH line, e.g. '--exclusive' (repeatable).")
@click.option("--queue", help="Grid Engine: cluster queue (-q), e.g. all.q.")
@click.option("--pe", help="Grid Engine: parallel environment that requires.cpus asks slots of (-pe).")
@click.option("--project", help="Grid Engine: project (-P).")
@click.option("--ram-resource", "ram_resource", help="Grid Engine: resource that requires.ram asks, per slot "
              "(default h_vmem; e.g. mem_free).")
@click.option("--gpu-resource", "gpu_resource", help="Grid Engine: resource that requires.gpus asks, e.g. gpu.")
@click.option("--qsub", "qsub", multiple=True, help="Grid Engine: extra #$ line, e.g. '-l scratch=10G' (repeatable).")
@click.option("--user", is_flag=True, help="Keep it in your git config instead of the shared .gitexp.yaml.")
def add(name: str, runner: str, host: Optional[str], path: Optional[str], python: Optional[str],
        ssh_config: Optional[str], port: Optional[int], disk_margin: Optional[str], ssh_timeout: Optional[str],
        gpus: Optional[str],
        jobs: Optional[int], partition: Optional[str], account: Optional[str], qos: Optional[str],
        time_: Optional[str], mem: Optional[str], cpus: Optional[int], gres: Optional[str],
        constraint: Optional[str], max_parallel: Optional[int], signal_warning: Optional[int],
        modules: Tuple[str, ...], setup: Tuple[str, ...], env: Tuple[str, ...], sbatch: Tuple[str, ...], queue: Optional[str],
        pe: Optional[str], project: Optional[str], ram_resource: Optional[str], gpu_resource: Optional[str],
        qsub: Tuple[str, ...], user: bool) -> None:
    """Add (or replace) run target NAME. Without --host it is this machine (e.g. a Slurm login node)."""
    repo, _store = open_store()
    options = {"runner": runner, "host": host, "path": path, "python": python, "ssh_config": ssh_config,
               "port": port, "disk_margin": disk_margin, "ssh_timeout": ssh_timeout, "gpus": gpus, "jobs": jobs, "partition": partition,
               "account": account, "qos": qos, "time": time_, "mem": mem, "cpus": cpus, "gres": gres,
               "constraint": constraint, "max_parallel": max_parallel, "signal_warning": signal_warning,
               "modules": list(modules), "setup": list(setup), "env": list(env), "sbatch": list(sbatch), "queue": queue, "pe": pe,
               "project": project, "ram_resource": ram_resource, "gpu_resource": gpu_resource, "qsub": list(qsub)}
    where = add_target(repo, name, options, user=user)
    hint = f"; create the repository there with: git exp remote setup {name}" if host else ""
    click.echo(f"run target {name} saved in {where}{hint}")


@remote.command(name="list")
@output_format("table", "json")
def list_(fmt: str) -> None:
    """The defined run targets and their settings."""
    repo, _store = open_store()
    targets = load_targets(repo)
    if fmt == "json":
        print_json({name: {"runner": t.runner, **t.options} for name, t in targets.items()})
        return
    if not targets:
        click.echo("no run targets (git exp remote add NAME --runner slurm --partition P, "
                   "or --host HOST --path REPO)", err=True)
        return
    click.echo(render_table(["name", "settings"], [[n, describe(t)] for n, t in sorted(targets.items())]))


@remote.command(name="remove")
@click.argument("name")
def remove(name: str) -> None:
    """Forget run target NAME (from .gitexp.yaml and your git config)."""
    repo, _store = open_store()
    remove_target(repo, name)
    click.echo(f"removed run target {name}")


@remote.command(name="setup")
@click.argument("name")
@click.option("--install", is_flag=True, help="First install this gitexp there: wheels built here from what is "
              "installed, sent over ssh, into a virtual environment (no package index needed there).")
@click.option("--install-dir", metavar="DIR", help="With --install: where the environment goes there "
              "(default ~/.gitexp/venv-<version>).")
def setup(name: str, install: bool, install_dir: Optional[str]) -> None:
    """Prepare run target NAME on its host: create its git repository there (git init) and check
    that git, Python and a gitexp that reads this one's notes are installed there."""
    from ..runners.ssh import setup_target

    if install_dir is not None and not install:
        raise BadInput("--install-dir goes with --install")
    repo, store = open_store()
    for line in setup_target(repo, store, get_target(repo, name), install=install, install_dir=install_dir):
        click.echo(line)


# -- trust: the ssh settings of the shared .gitexp.yaml (gitexp/trust.py) --------------------------
@remote.command(name="trust")
@click.option("--revoke", is_flag=True, help="Trust no version of .gitexp.yaml any more.")
def trust(revoke: bool) -> None:
    """Use the ssh_config settings of this version of the shared .gitexp.yaml.

    An ssh config can run commands on this machine (ProxyCommand, LocalCommand, Match exec), so
    one that comes with the shared file is used only after this; read the file and the ssh
    config files it names first. A later change to any of them needs trusting again. Your own
    settings (git config exp.remote.NAME.ssh-config, remote add --ssh-config) need no trust."""
    from ..targets import trust_shared_file

    repo, _store = open_store()
    click.echo(trust_shared_file(repo, revoke))
