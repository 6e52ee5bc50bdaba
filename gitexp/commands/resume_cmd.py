"""``git exp resume``: continue an experiment from its latest checkpoint, as a new attempt."""
from __future__ import annotations

from typing import Optional, Tuple

import click

from .common import open_store, print_submitted, start_here


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
    from ..operations.resume import ResumeOptions, resume as resume_op

    repo, store = open_store()
    options = ResumeOptions(from_step=from_step, checkpoint=given, from_scratch=from_scratch, params=overrides,
                            on=on, detach=detach, queue=to_queue)
    resumed = resume_op(repo, store, ident, options)
    new, point = resumed.new, resumed.point
    if resumed.submitted is not None:
        print_submitted(resumed.submitted)
        return 0
    if resumed.queued:
        click.echo(new.sha)
        click.echo(f"gitexp: queued {new.name} attempt {new.summary['attempt']}; run it with: git exp worker", err=True)
        return 0
    what = f"{new.name} {'from step ' + str(point['step']) if point else 'from scratch'} as attempt {new.attempt}"
    return start_here(store, new, detach, f"resumed {what}", f"resuming {what} ({new.sha[:10]})")
