"""``git exp fsck``: find refs and notes that point at missing objects, and repair them."""
from __future__ import annotations

import click

from .. import fsck as fsck_core
from .common import open_store


@click.command()
@click.option("--repair", is_flag=True, help="Rewind damaged notes refs to their newest whole state, drop refs "
              "to missing commits, rebuild lost summaries (status lost), and record the ends of runs that a full disk "
              "kept in their run directories.")
def fsck(repair: bool) -> int:
    """Check gitexp's refs and notes for missing objects (exit 1 if any are damaged)."""
    repo, store = open_store()
    damage = fsck_core.check(repo)
    if damage.clean:
        click.echo("gitexp: refs and notes are whole")
    else:
        for line in damage.lines():
            click.echo(f"damaged: {line}")
        if not repair:
            click.echo("gitexp: run `git exp fsck --repair` to recover what can be recovered", err=True)
            return 1
        for line in fsck_core.repair(repo, store, damage):
            click.echo(f"repaired: {line}")
        damage = fsck_core.check(repo)
        for line in damage.lines():
            click.echo(f"still damaged: {line}")
    if repair and not damage.notes:
        # ends a full disk kept in run directories: recorded (never run again) once the notes
        # they go into are whole, so a damaged notes ref is rewound before anything reads it
        for line in fsck_core.record_kept_ends(repo, store):
            click.echo(f"repaired: {line}")
    return 0 if not damage.notes and not damage.lost_commits else 1
