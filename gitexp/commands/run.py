"""``git exp run``: make experiment commits from a config (one, or a sweep), then run or queue them."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Dict, List, Optional, Tuple

import click

from ..lifecycle import Status
from .. import experiments
from ..config import ExperimentConfig, check_name, load_config, parse_override
from ..errors import BadInput, NotReady
from ..notes import Store
from ..paths import runs_root
from ..repo import Repo
from ..resources import check as check_requires
from ..sweep import add_cli_sweeps, check_not_empty, expand, parse_spec
from .common import fmt_value, open_store, print_submitted, render_table, start_here

if TYPE_CHECKING:
    from ..runners.base import Runner

# A foreground run of one config (the common case, and the one users wait on) imports neither
# the queue's worker, a target's runner, nor the sweep-file reader: those load where they are used.


@click.command()
@click.argument("config_path", metavar="CONFIG")
@click.option("-p", "--param", "overrides", multiple=True, metavar="NAME=VALUE",
              help="Override a param of the config (repeatable).")
@click.option("--sweep", "sweeps", multiple=True, metavar="NAME=V1,V2,...",
              help="Sweep a param over values (repeatable; crossed as a grid unless --zip).")
@click.option("--zip", "zipped", is_flag=True, help="Vary the --sweep params together instead of crossing them.")
@click.option("--sweep-file", "sweep_file", metavar="FILE",
              help="One experiment per row of a .csv/.tsv/.xlsx file; its header names params.")
@click.option("--name", help="Experiment name (default: the config's name).")
@click.option("--group", help="Group to file the experiments under (default for a sweep: a new sweep id).")
@click.option("--detach", "-d", is_flag=True, help="Start in the background; print the ids and return.")
@click.option("--queue", "to_queue", is_flag=True, help="Queue instead of running now (see git exp worker).")
@click.option("--priority", type=int, default=0, show_default=True, help="Queue priority: higher runs first.")
@click.option("--jobs", "-j", type=int, default=1, show_default=True, help="For a sweep run now: how many at once.")
@click.option("--on", "on", metavar="TARGET", help="Run on a run target (git exp remote list): Slurm, a host over ssh.")
@click.option("--profile", is_flag=True, help="Sample the (Python) program with py-spy: a flame graph and top functions.")
@click.option("--dry-run", is_flag=True, help="Print the experiments that would be made; record nothing.")
@click.option("--skip-done", is_flag=True, help="Skip points whose exact config already finished.")
def run(config_path: str, overrides: Tuple[str, ...], sweeps: Tuple[str, ...], zipped: bool,
        sweep_file: Optional[str], name: Optional[str], group: Optional[str], detach: bool, to_queue: bool, priority: int,
        jobs: int, on: Optional[str], profile: bool, dry_run: bool, skip_done: bool) -> int:
    """Record CONFIG as experiment commits and run them on this machine (or queue them)."""
    repo, store = open_store()
    if jobs < 1:
        raise BadInput(f"--jobs {jobs}: must be at least 1")
    if sweep_file is not None and (sweeps or zipped):
        raise BadInput("--sweep-file with --sweep/--zip: give the points one way", "drop one of them")
    configs, is_sweep, max_parallel = _configs(config_path, overrides, sweeps, zipped, name, group, sweep_file)
    for config in configs if profile else []:
        config.profile = True  # stored with the config: the executor, wherever it runs, profiles
    target = None
    if on:
        from ..targets import get_target

        target = get_target(repo, on)
    if target is not None and to_queue:
        raise BadInput(f"--queue with --on {on}: the run target queues them itself", "drop --queue")
    if not dry_run:
        repo.head()  # a repository with no commits is bad input, before anything is written
        for config in configs:
            if target is None or not target.host:  # over ssh, files: are resolved there
                experiments.check_files(repo, config)
    if skip_done:
        configs = _skip_done(store, configs)
        if not configs:
            click.echo("gitexp: every point already finished; nothing to do", err=True)
            return 0
    if dry_run:  # what the real run would do: the same points, under the names they would get
        _print_points(configs, _planned_names(store, configs))
        return 0
    if target is not None:
        from ..runners import runner_for_target

        return _submit(runner_for_target(repo, store, target), configs, max_parallel)
    if to_queue or is_sweep:
        return _queue_or_sweep(repo, store, configs, to_queue, detach, priority, jobs)
    return _run_one(repo, store, configs[0], detach)


def _configs(path: str, overrides: Tuple[str, ...], sweeps: Tuple[str, ...], zipped: bool,
             name: Optional[str], group: Optional[str],
             sweep_file: Optional[str] = None) -> Tuple[List[ExperimentConfig], bool, Optional[int]]:
    config = load_config(path)
    if name is not None and check_name(name):
        raise BadInput(f"--name {name!r} is not usable as an experiment name", check_name(name))
    if group is not None and check_name(group):
        raise BadInput(f"--group {group!r} is not usable as a group name", check_name(group))
    values = dict(parse_override(text, config) for text in overrides)
    spec = parse_spec(config)
    spec = add_cli_sweeps(config, spec, sweeps, zipped)
    check_not_empty(config, spec)
    config = config.with_params(values, name=name)
    if group:
        config.group = group
    if sweep_file is not None:  # the rows replace the config's own sweep (its max_parallel stays)
        from ..sweepfile import configs_from_file

        configs = configs_from_file(config, sweep_file, list(values), group)[0]
        for point in configs:
            point.check_command()
        return configs, True, spec.max_parallel
    if spec.is_empty():
        config.check_command()
        return [config], False, None
    for key in values:
        if key in spec.varied():
            raise BadInput(f"-p {key}: '{key}' is also swept", "drop one of -p and --sweep for it")
    configs = expand(config, spec, group)
    for point in configs:
        point.check_command()
    return configs, True, spec.max_parallel


def _planned_names(store: Store, configs: List[ExperimentConfig]) -> List[str]:
    """The names recording would give (the rule of ``experiments.make_experiments``)."""
    return experiments.free_names(store, [c.name for c in configs])


def _print_points(configs: List[ExperimentConfig], names: List[str]) -> None:
    rows = [[name, " ".join(f"{k}={fmt_value(v)}" for k, v in c.params.items()), c.group or ""]
            for name, c in zip(names, configs)]
    click.echo(render_table(["name", "params", "group"], rows))
    click.echo(f"{len(configs)} experiment(s); nothing recorded (--dry-run)", err=True)


def _skip_done(store: Store, configs: List[ExperimentConfig]) -> List[ExperimentConfig]:
    done = {e.summary.get("config_hash") for e in store.experiments() if e.status == Status.FINISHED}
    kept = [c for c in configs if c.config_hash() not in done]
    if len(kept) < len(configs):
        click.echo(f"gitexp: skipping {len(configs) - len(kept)} point(s) already finished", err=True)
    return kept


def _queue_or_sweep(repo: Repo, store: Store, configs: List[ExperimentConfig], to_queue: bool,
                    detach: bool, priority: int, jobs: int) -> int:
    from ..queue import Queue
    from ..runners.base import gitexp_argv
    from ..transport import LocalTransport
    from ..worker import Worker

    exps = Queue(repo, store).enqueue(configs, priority)
    group = exps[0].summary.get("group")
    if to_queue:
        for exp in exps:
            click.echo(exp.sha)
        click.echo(f"gitexp: queued {len(exps)} experiment(s)" + (f" in group {group}" if group else "")
                   + "; run them with: git exp worker", err=True)
        return 0
    if detach:
        argv = gitexp_argv("worker", "--until-empty", "--jobs", str(jobs), "--group", str(group))
        os.makedirs(runs_root(repo), exist_ok=True)
        LocalTransport().spawn(argv, cwd=repo.root, log_path=os.path.join(runs_root(repo), f"worker-{group}.log"))
        for exp in exps:
            click.echo(exp.sha)
        click.echo(f"gitexp: sweep {group} ({len(exps)} experiments) runs in the background; "
                   f"see git exp log --group {group}", err=True)
        return 0
    click.echo(f"gitexp: sweep {group}: {len(exps)} experiments, {jobs} at a time", err=True)
    code = Worker(repo, store, jobs=jobs, until_empty=True, only={e.sha for e in exps}, echo=jobs == 1).run()
    statuses: Dict[str, int] = {}
    for exp in exps:
        status = store.summary(exp.sha).get("status", "?")
        statuses[status] = statuses.get(status, 0) + 1
    click.echo("gitexp: sweep " + str(group) + ": " + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))
               + f"; see git exp log --group {group}", err=True)
    if code:
        return code
    return 0 if set(statuses) == {Status.FINISHED} else 1


def _submit(runner: Runner, configs: List[ExperimentConfig], max_parallel: Optional[int]) -> int:
    """Make the commits and hand them to the target's runner: recorded and started, or nothing."""
    from ..operations.submit import submit_made
    from ..runners.base import make

    with runner.repo.batch():
        made = make(runner.repo, runner.store, configs, runner.INITIAL_STATUS, max_parallel)
    print_submitted(submit_made(runner, made))
    return 0


def _run_one(repo: Repo, store: Store, config: ExperimentConfig, detach: bool) -> int:
    problems = check_requires(config.requires, runs_root(repo))
    if problems:
        raise NotReady("not started: " + "; ".join(problems), "free resources or lower 'requires'")
    exp = experiments.create(repo, store, config)
    return start_here(store, exp, detach, f"started {exp.name}", f"experiment {exp.name} ({exp.sha[:10]})")
