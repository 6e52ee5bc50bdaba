"""``git exp remote add/list/remove/setup``: run targets, the named places to run experiments.

A run target is not a git remote: it names a runner (local, slurm, sge) and where it runs (this
machine, or a git repository on another host reached over ssh). See ``gitexp/targets.py``.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import click

from ..errors import BadInput
from ..runners import RUNNERS, runner_class
from ..targets import COMMON, Option, add_target, describe, get_target, load_targets, remove_target
from .common import open_store, output_format, print_json, render_table


@click.group()
def remote() -> None:
    """Run targets: named places to run (kept in .gitexp.yaml, per-user overrides in git config)."""


# Flags whose name is not the setting's: a repeatable list is named in the singular.
_FLAG_NAMES = {"modules": "module"}
# Which runner a setting belongs to, as the help of ``remote add`` says it.
_RUNNER_LABELS = {"local": "Local runner", "slurm": "Slurm", "sge": "Grid Engine"}


def _option_help(option: Option, owners: List[Tuple[str, Option]]) -> str:
    """One setting's help: its own text, or each runner's that has it, labelled."""
    if not owners:
        text = option.help
        return text[:1].upper() + text[1:] + "."
    by_help: Dict[str, List[str]] = {}
    for name, owned in owners:
        by_help.setdefault(owned.help, []).append(_RUNNER_LABELS.get(name, name))
    return "; ".join(f"{', '.join(labels)}: {text}" for text, labels in by_help.items()) + "."


def _setting_options() -> List[click.Option]:
    """``remote add``'s flags, made from the target settings (``targets.COMMON``) and each runner's
    ``OPTIONS``, so a setting a runner declares is a flag with the runner's own help."""
    owners: Dict[str, List[Tuple[str, Option]]] = {}
    for name in sorted(RUNNERS, key=lambda n: (list(_RUNNER_LABELS) + [n]).index(n)):
        for key, option in runner_class(name).OPTIONS.items():
            owners.setdefault(key, []).append((name, option))
    schema = {key: option for key, option in COMMON.items() if key != "runner"}
    for key, entries in owners.items():
        schema.setdefault(key, entries[0][1])
    options = []
    for key, option in schema.items():
        flag = "--" + _FLAG_NAMES.get(key, key).replace("_", "-")
        text = _option_help(option, [] if key in COMMON else owners[key])
        if option.kind in ("list", "env"):
            metavar = "KEY=VALUE" if option.kind == "env" else None
            options.append(click.Option([flag, key], multiple=True, metavar=metavar,
                                        help=text + " Repeatable."))
        else:
            options.append(click.Option([flag, key], type=int if option.kind == "count" else str, help=text))
    return options


@click.argument("name")
@click.option("--runner", type=click.Choice(sorted(RUNNERS)), default="local", show_default=True,
              help="How experiments are scheduled there.")
@click.option("--user", is_flag=True, help="Keep it in your git config instead of the shared .gitexp.yaml.")
def add(name: str, runner: str, user: bool, **settings: Any) -> None:
    """Add (or replace) run target NAME. Without --host it is this machine (e.g. a Slurm login node)."""
    repo, _store = open_store()
    options: Dict[str, Any] = {"runner": runner}
    for key, value in settings.items():
        options[key] = list(value) if isinstance(value, tuple) else value
    where = add_target(repo, name, options, user=user)
    hint = f"; create the repository there with: git exp remote setup {name}" if options.get("host") else ""
    click.echo(f"run target {name} saved in {where}{hint}")


# After NAME and --runner, before --user (click lists them in the reverse of this list).
add.__click_params__[1:1] = reversed(_setting_options())  # type: ignore[attr-defined]
add = remote.command(name="add")(add)


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
    from ..runners.ssh_setup import setup_target

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
