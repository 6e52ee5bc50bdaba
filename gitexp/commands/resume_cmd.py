"""``git exp resume``: continue an experiment from its latest checkpoint, as a new attempt."""
from __future__ import annotations

import shlex
from typing import Any, Dict, Optional, Tuple

import click

from .. import attempts
from ..config import parse_override
from ..errors import BadInput
from ..executor import load_experiment_config
from ..lifecycle import Status
from ..notes import Experiment
from ..runners.base import Made
from ..runners import runner_for_target
from ..targets import get_target
from .common import open_store
from .run import _submit_made, start_here


@click.command(name="resume")
@click.argument("ident", metavar="ID")
@click.option("--from", "from_step", type=int, metavar="STEP", help="Resume from the checkpoint at this step "
              "(default: the latest).")
@click.option("--checkpoint", "given", metavar="PATH", help="Resume from this checkpoint file (for one no run "
              "here recorded; --from STEP then says its step).")
@click.option("--from-scratch", is_flag=True, help="No checkpoint: start the experiment over as a new attempt.")
@click.option("-p", "--param", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Change a param for the new attempt (recorded as a change in the chain).")
@click.option("--on", metavar="TARGET", help="Resume on this run target (the checkpoint must be there).")
@click.option("--detach", "-d", is_flag=True, help="Start in the background; print the new attempt's id.")
@click.option("--queue", "to_queue", is_flag=True, help="Queue the new attempt for a worker instead of running it.")
def resume(ident: str, from_step: Optional[int], given: Optional[str], from_scratch: bool, overrides: Tuple[str, ...],
           on: Optional[str], detach: bool, to_queue: bool) -> int:
    """Continue experiment ID (a name, or any attempt's id) from its latest checkpoint.

    A new attempt: a commit on the experiment's branch whose parent is the current run, with
    the same config (params changed by -p), the output directory of the run it continues, and
    the command of the config's `resume:` (placeholders {checkpoint} and {step}), or its
    `command` with GITEXP_RESUME_FROM set.
    """
    repo, store = open_store()
    if from_scratch and from_step is not None:
        raise BadInput("--from and --from-scratch exclude each other", "give one of them")
    if from_scratch and given is not None:
        raise BadInput("--checkpoint and --from-scratch exclude each other", "give one of them")
    if given is not None and on:
        raise BadInput("--checkpoint names a file on this machine: leave out --on")
    if to_queue and (on or detach):
        raise BadInput("--queue runs it through the local queue: leave out --on and --detach")
    chosen, current = attempts.find_attempt(store, ident)
    target = get_target(repo, on) if on else None
    config = load_experiment_config(repo, current.sha)
    values: Dict[str, Any] = dict(parse_override(text, config) for text in overrides)
    attempts.ensure_ended(repo, current, reach=True)
    chain = attempts.chain_of(store, current)
    found = None
    if current.status not in attempts.FINAL_NAMES:
        found = attempts.recovered(repo, current)  # what a dead executor had not written
        chain[-1] = (current.sha, {**current.summary, **found[0]})
    upto = chain[:[sha for sha, _ in chain].index(chosen.sha) + 1]  # the chain up to the attempt named
    remote = runner_for_target(repo, store, target) if target is not None else None
    point = None
    if not from_scratch:
        over_ssh = target is not None and bool(target.host)
        point = attempts.resume_point(repo, store, upto, from_step, here=not over_ssh, given=given)
        if over_ssh:
            _check_there(remote, target, point)
    superseded = attempts.supersede(repo, store, current, "a resume continues it", found)
    current = Experiment(current.sha, current.name, superseded)
    status = Status(remote.INITIAL_STATUS) if remote else Status.QUEUED if to_queue else Status.CREATED
    new, new_config = attempts.make_attempt(repo, store, current, "resume" if point else "retry", status,
                                            values, point)
    if remote is not None:
        new.summary.pop("target", None)  # the runner records where it went
        new.summary.pop("runner", None)
        return _submit_made(remote, Made([new], [new_config], {}))
    if to_queue:
        from ..queue import Queue

        Queue(repo, store).record([new])
        click.echo(new.sha)
        click.echo(f"gitexp: queued {new.name} attempt {new.summary['attempt']}; run it with: git exp worker", err=True)
        return 0
    store.create_batch([new])
    what = f"{new.name} {'from step ' + str(point['step']) if point else 'from scratch'} as attempt {new.attempt}"
    return start_here(store, new, detach, f"resumed {what}", f"resuming {what} ({new.sha[:10]})")


def _check_there(runner: Any, target: Any, point: Dict[str, Any]) -> None:
    """The checkpoint must exist on the target's host (one ``test -f`` over its ssh connection)."""
    proc = runner.transport.run(["test", "-f", point["checkpoint"]], timeout=60)
    if getattr(proc, "returncode", 1) != 0:
        raise BadInput(f"the checkpoint {point['checkpoint']} (step {point['step']}) does not exist on "
                       f"{target.name} ({target.host}); nothing was started",
                       f"copy it there (e.g. scp {shlex.quote(point['checkpoint'])} "
                       f"{target.host}:{shlex.quote(point['checkpoint'])}), or resume where it is")
