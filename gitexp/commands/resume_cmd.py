"""``git exp resume``: continue an experiment from its latest checkpoint, as a new attempt."""
from __future__ import annotations

import shlex
from typing import Any, Dict, List, Optional, Tuple

import click

from .. import attempts
from ..config import parse_override
from ..errors import BadInput
from ..executor import load_experiment_config
from ..lifecycle import FINAL, Status
from ..notes import Experiment, Store
from ..repo import Repo
from ..runners.base import Made
from ..runners.local import LocalRunner
from ..targets import get_target
from .common import open_store
from .run import _closing_line, _exit_code, _submit_made


@click.command(name="resume")
@click.argument("ident", metavar="ID")
@click.option("--from", "from_step", type=int, metavar="STEP", help="Resume from the checkpoint at this step "
              "(default: the latest).")
@click.option("--from-scratch", is_flag=True, help="No checkpoint: start the experiment over as a new attempt.")
@click.option("-p", "--param", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Change a param for the new attempt (recorded as a change in the chain).")
@click.option("--on", metavar="TARGET", help="Resume on this run target (the checkpoint must be there).")
@click.option("--detach", "-d", is_flag=True, help="Start in the background; print the new attempt's id.")
@click.option("--queue", "to_queue", is_flag=True, help="Queue the new attempt for a worker instead of running it.")
def resume(ident: str, from_step: Optional[int], from_scratch: bool, overrides: Tuple[str, ...],
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
    if to_queue and (on or detach):
        raise BadInput("--queue runs it through the local queue: leave out --on and --detach")
    chosen, current = attempts.find_attempt(store, ident)
    target = get_target(repo, on) if on else None
    config = load_experiment_config(repo, current.sha)
    values: Dict[str, Any] = dict(parse_override(text, config) for text in overrides)
    _refuse_if_running(repo, current)
    chain = attempts.chain_of(store, current)
    if current.status not in {s.value for s in FINAL}:
        fields, _notes = attempts.recovered(repo, current)  # what a dead executor had not written
        chain[-1] = (current.sha, {**current.summary, **fields})
    upto = [pair for pair in chain[:[sha for sha, _ in chain].index(chosen.sha) + 1]]
    point = None
    if not from_scratch:
        point = attempts.resume_point(repo, store, upto, from_step, here=target is None or not target.host)
        if target is not None and target.host:
            _check_there(repo, store, target, point)
    superseded = attempts.supersede(repo, store, current, "a resume continues it")
    current = Experiment(current.sha, current.name, superseded)
    runner = LocalRunner(repo, store) if target is None else None
    status = Status.QUEUED if to_queue else Status.CREATED
    if target is not None:
        from ..runners import runner_for_target

        remote_runner = runner_for_target(repo, store, target)
        status = Status(remote_runner.INITIAL_STATUS)
    new, new_config = attempts.make_attempt(repo, store, current, "resume" if point else "retry", status,
                                            values, point)
    if target is not None:
        new.summary.pop("target", None)
        new.summary.pop("runner", None)
        return _submit_made(remote_runner, Made([new], [new_config], {}))
    if to_queue:
        from ..queue import Queue

        Queue(repo, store).record([new])
        click.echo(new.sha)
        click.echo(f"gitexp: queued {new.name} attempt {new.summary['attempt']}; run it with: git exp worker", err=True)
        return 0
    store.create_batch([new])
    assert runner is not None
    what = f"from step {point['step']} ({point['checkpoint']})" if point else "from scratch"
    if detach:
        runner.start_detached(new)
        click.echo(new.sha)
        click.echo(f"gitexp: resumed {new.name} {what} as attempt {new.summary['attempt']} in the background; "
                   f"follow it with: git exp logs -f {new.sha[:10]}", err=True)
        return 0
    click.echo(f"gitexp: resuming {new.name} {what} as attempt {new.summary['attempt']} ({new.sha[:10]})", err=True)
    code = runner.run_foreground(new)
    summary = store.summary(new.sha)
    click.echo(_closing_line(new.name, summary), err=True)
    return _exit_code(code, summary)


def _refuse_if_running(repo: Repo, exp: Experiment) -> None:
    alive = attempts.live_program(repo, exp)
    if alive:
        raise BadInput(f"{exp.name} is still running ({alive}); nothing was started",
                       f"wait for it, or stop it first: git exp cancel {exp.sha[:10]}")
    from ..status import live_status

    status, reason = live_status(repo, exp, reach=True)
    if status in ("queued", "pending", "starting", "running", "created"):
        raise BadInput(f"{exp.name} is {status}" + (f" ({reason})" if reason else "") + "; nothing was started",
                       f"wait for it to end, or stop it first: git exp cancel {exp.sha[:10]}")


def _check_there(repo: Repo, store: Store, target: Any, point: Dict[str, Any]) -> None:
    """The checkpoint must exist on the target's host (one ``test -f`` over its ssh connection)."""
    from ..runners import runner_for_target

    runner = runner_for_target(repo, store, target)
    argv: List[str] = ["test", "-f", point["checkpoint"]]
    proc = runner.transport.run(argv, timeout=60)
    if getattr(proc, "returncode", 1) != 0:
        raise BadInput(f"the checkpoint {point['checkpoint']} (step {point['step']}) does not exist on "
                       f"{target.name} ({target.host}); nothing was started",
                       f"copy it there (e.g. scp {shlex.quote(point['checkpoint'])} "
                       f"{target.host}:{shlex.quote(point['checkpoint'])}), or resume where it is")
