"""``git exp queue``, ``git exp worker`` and ``git exp cancel``: the durable local queue, and what
waits and runs on a run target (``queue --on``)."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import click

from ..errors import BadInput
from ..facts import gpu_models
from ..notes import Store
from ..queue import QUEUED, item, listing
from ..repo import Repo
from ..runners import far_runner, target_of
from ..runners.base import parse_gpu_list
from ..targets import Target, get_target, load_targets
from ..worker import Worker
from .common import fmt_time, fmt_value, open_store, output_format, print_json, render_table, resources_text
from ..lifecycle import ACTIVE



@click.group(name="queue", invoke_without_command=True)
@click.option("--all", "show_all", is_flag=True, help="Also list every finished experiment, not just the last 10.")
@click.option("--retry-lost", is_flag=True, help="Queue again every experiment whose run was lost.")
@click.option("--on", metavar="TARGET", help="What waits and runs on this run target, with its scheduler's state "
              "(and, over ssh, the host's free GPUs, RAM and disk).")
@output_format("table", "json")
@click.pass_context
def queue(ctx: click.Context, show_all: bool, retry_lost: bool, on: Optional[str], fmt: str) -> None:
    """What is queued (in the order it will run), running, and recently done."""
    if ctx.invoked_subcommand is not None:
        return
    repo, store = open_store()
    if retry_lost:
        _retry(ctx, (), lost=True)
        return
    target = get_target(repo, on) if on else None
    if target is not None and target.host:
        _show_far_queue(repo, store, target, show_all, fmt)
        return
    exps = store.experiments()
    if target is not None:
        targets = load_targets(repo)
        exps = [e for e in exps if target_of(e.summary, targets).name == target.name]
    view = listing(repo, store, exps, show_all, reach=target is not None)
    if fmt == "json":
        print_json({"queued": view.items("queued"), "running": view.items("running"), "done": view.items("done")})
        return
    rows = [_row(item(e, view.status(e), i + 1)) for i, e in enumerate(view.queued)]
    rows += [_row(item(e, view.status(e))) for e in view.active + view.done]
    if not rows:
        click.echo("the queue is empty (git exp run config.yaml --queue)", err=True)
        return
    click.echo(render_table(HEADERS, rows))


HEADERS = ["#", "id", "name", "status", "prio", "params", "where / why"]


def _show_far_queue(repo: Repo, store: Store, target: Target, show_all: bool, fmt: str) -> None:
    """The far side's own queue and host resources, from one ssh round trip."""
    report = far_runner(repo, store, target).queue_report(show_all)
    if fmt == "json":
        print_json(report)
        return
    click.echo(resources_text(target.name, report))
    rows = [_row(entry) for kind in ("queued", "running", "done") for entry in _list(report.get(kind))
            if isinstance(entry, dict)]
    if not rows:
        click.echo(f"nothing queued, running or done on {target.name}", err=True)
        return
    click.echo(render_table(HEADERS, rows))


def _list(value: Any) -> List[Any]:
    return value if isinstance(value, list) else []


def _row(entry: Dict[str, Any]) -> List[str]:
    status = str(entry.get("status"))
    params: Dict[str, Any] = entry["params"] if isinstance(entry.get("params"), dict) else {}
    if status == QUEUED:
        why = entry.get("wait_reason") or f"queued {fmt_time(entry.get('enqueued'))}"
    elif status in ACTIVE:
        host = entry.get("host") or entry.get("worker_host") or ""
        where = f"{host} since {fmt_time(entry.get('started'))}" if host else \
            (f"on {entry['target']} (git exp queue --on {entry['target']})" if entry.get("target") else "")
        why = entry.get("reason") or where
    else:
        why = entry.get("reason") or fmt_time(entry.get("ended"))
    position = entry.get("position")
    return [str(position) if position else "", str(entry.get("id"))[:8], fmt_value(entry.get("name")), status,
            str(entry.get("priority")) if entry.get("enqueued") is not None else "",
            " ".join(f"{k}={fmt_value(v)}" for k, v in params.items()), fmt_value(why)]


@queue.command(name="retry")
@click.argument("idents", metavar="[ID]...", nargs=-1)
@click.option("--lost", is_flag=True, help="Every experiment whose run was lost.")
@click.option("--priority", type=int, help="Queue them with this priority.")
@click.pass_context
def retry(ctx: click.Context, idents: Tuple[str, ...], lost: bool, priority: Optional[int]) -> None:
    """Start ended experiments over (lost, failed, killed, cancelled, timeout, stopped) as a new queued attempt."""
    _retry(ctx, idents, lost, priority)


def _retry(ctx: click.Context, idents: Tuple[str, ...], lost: bool, priority: Optional[int] = None) -> None:
    from ..operations.retry import NotRetried, Retried, Skipped, retry as retry_op

    repo, store = open_store()
    tried = failed = 0
    for outcome in retry_op(repo, store, idents, lost, priority):
        if isinstance(outcome, Skipped):
            click.echo(f"skipped {outcome.why}", err=True)
            continue
        tried += 1
        if isinstance(outcome, NotRetried):
            failed += 1
            click.echo(f"not retried {outcome.exp.name}: {outcome.error}", err=True)
        elif isinstance(outcome, Retried):
            click.echo(f"queued {outcome.exp.name} again as attempt {outcome.new.summary['attempt']} "
                       f"({outcome.new.sha[:10]})")
    if not tried:
        click.echo("no lost experiments", err=True)
    if failed:
        ctx.exit(1)


def parse_gpus(text: Optional[str]) -> Optional[List[int]]:
    if text is None:
        return None
    try:
        ids = parse_gpu_list(text)
    except ValueError as exc:
        raise BadInput(f"--gpus {text!r}: {exc}") from None
    present = gpu_models()
    if present:
        missing = [i for i in ids if i >= len(present)]
        if missing:
            raise BadInput(f"--gpus {text}: no GPU {missing[0]} on this machine; it has {len(present)} "
                           f"(0-{len(present) - 1}: {', '.join(present)})")
    else:
        click.echo("gitexp worker: no NVIDIA GPU can be listed here; using --gpus as given", err=True)
    return ids


@click.command()
@click.option("--jobs", "-j", type=int, default=1, show_default=True, help="How many experiments at once.")
@click.option("--gpus", help="GPU indices to use, one per running experiment (sets CUDA_VISIBLE_DEVICES).")
@click.option("--until-empty", is_flag=True, help="Exit once nothing is queued or running (for scripts and CI).")
@click.option("--group", help="Only run experiments of this group (e.g. one sweep).")
@click.option("--lock", "lock_path", metavar="FILE",
              help="One worker per lock file: exit at once if another worker holds it (run targets use it).")
def worker(jobs: int, gpus: Optional[str], until_empty: bool, group: Optional[str], lock_path: Optional[str]) -> int:
    """Run the queue on this machine: at most --jobs at a time, one GPU each with --gpus."""
    if jobs < 1:
        raise BadInput(f"--jobs {jobs}: must be at least 1", "e.g. --jobs 2")
    gpu_ids = parse_gpus(gpus)
    repo, store = open_store()
    from ..executor import settings_problems

    problems = settings_problems()
    if problems:
        raise BadInput("; ".join(problems))
    w = Worker(repo, store, jobs=jobs, gpus=gpu_ids, until_empty=until_empty, group=group, lock_path=lock_path)
    if lock_path and not w.take_lock():
        click.echo(f"gitexp worker: another worker holds {lock_path}; it runs the queue", err=True)
        return 0
    click.echo(f"gitexp worker: pid {w.identity['pid']}, {w.jobs} at a time"
               + (f", GPUs {gpus}" if gpu_ids else ""), err=True)
    code = w.run()
    click.echo(f"gitexp worker: exiting; started {w.started} experiment(s)", err=True)
    return code


@click.command()
@click.argument("idents", metavar="ID...", nargs=-1, required=True)
def cancel(idents: Tuple[str, ...]) -> None:
    """Drop queued experiments; stop running ones (recorded killed), wherever they run."""
    from ..operations.cancel import cancel as cancel_op

    repo, store = open_store()
    for cancelled in cancel_op(repo, store, idents):
        click.echo(cancelled.line)
