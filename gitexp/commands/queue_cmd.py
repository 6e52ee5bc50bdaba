"""``git exp queue``, ``git exp worker`` and ``git exp cancel``: the durable local queue."""
from __future__ import annotations

import socket
import time
from typing import List, Optional, Tuple

import click

from ..errors import BadInput, GitExpError
from ..remotes import get_remote
from ..notes import Store
from ..remotes import Remote
from ..repo import Repo
from ..runners.slurm import SlurmRunner, job_of
from ..status import is_gitexp_process, live_status, live_statuses
from ..facts import gpu_models
from ..notes import Experiment
from ..queue import CLAIMED, QUEUED, Queue
from ..runners.local import LocalRunner
from ..worker import Worker
from .common import fmt_time, fmt_value, open_store, output_format, print_json, render_table

ACTIVE = ("pending", "starting", "running")
RETRYABLE = ("lost", "failed", "killed", "cancelled", "timeout")


@click.group(name="queue", invoke_without_command=True)
@click.option("--all", "show_all", is_flag=True, help="Also list every finished experiment, not just the last 10.")
@click.option("--retry-lost", is_flag=True, help="Queue again every experiment whose run was lost.")
@click.option("--on", help="Only experiments submitted to this remote, with its scheduler's state.")
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
    if on:
        get_remote(repo, on)
    exps = store.experiments()
    if on:
        exps = [e for e in exps if (e.summary.get("slurm") or {}).get("remote") == on]
    live = live_statuses(repo, exps)
    statuses = {sha: status for sha, (status, _w) in live.items()}
    for exp in exps:
        if live[exp.sha][1]:
            exp.summary["reason"] = live[exp.sha][1]
    queued = Queue(repo, store).items(exps)
    in_queue = {e.sha for e in queued}  # listed once, in the queue (even if its note says otherwise)
    active = [e for e in exps if statuses[e.sha] in ACTIVE and e.sha not in in_queue]
    ended = [e for e in exps if statuses[e.sha] not in ACTIVE + (QUEUED, "created") and e.sha not in in_queue]
    done = sorted(ended,
                  key=lambda e: e.summary.get("ended") or e.summary.get("created") or 0, reverse=True)
    if not show_all:
        done = done[:10]
    if fmt == "json":
        print_json({"queued": [_item(e, statuses[e.sha], i + 1) for i, e in enumerate(queued)],
                    "running": [_item(e, statuses[e.sha]) for e in active],
                    "done": [_item(e, statuses[e.sha]) for e in done]})
        return
    rows = [_row(e, statuses[e.sha], str(i + 1)) for i, e in enumerate(queued)]
    rows += [_row(e, statuses[e.sha], "") for e in active + done]
    if not rows:
        click.echo("the queue is empty (git exp run config.yaml --queue)", err=True)
        return
    click.echo(render_table(["#", "id", "name", "status", "prio", "params", "where / why"], rows))


def _item(exp: Experiment, status: str, position: Optional[int] = None) -> dict:
    s = exp.summary
    return {"position": position, "id": exp.sha, "name": exp.name, "status": status,
            "priority": (s.get("queue") or {}).get("priority", 0), "params": s.get("params") or {},
            "wait_reason": s.get("wait_reason"), "host": s.get("host"), "reason": s.get("reason"),
            "enqueued": (s.get("queue") or {}).get("enqueued"), "group": s.get("group")}


def _row(exp: Experiment, status: str, position: str) -> List[str]:
    s = exp.summary
    params = " ".join(f"{k}={fmt_value(v)}" for k, v in (s.get("params") or {}).items())
    if status == QUEUED:
        why = s.get("wait_reason") or f"queued {fmt_time((s.get('queue') or {}).get('enqueued'))}"
    elif status in ACTIVE and s.get("runner") == "slurm":
        why = s.get("reason") or ""
    elif status in ACTIVE:
        why = f"{s.get('host') or (s.get('worker') or {}).get('host', '')} since {fmt_time(s.get('started') or s.get('claimed'))}"
    else:
        why = s.get("reason") or fmt_time(s.get("ended"))
    return [position, exp.sha[:8], exp.name, status, str((s.get("queue") or {}).get("priority", "")), params, why or ""]


@queue.command(name="retry")
@click.argument("idents", metavar="[ID]...", nargs=-1)
@click.option("--lost", is_flag=True, help="Every experiment whose run was lost.")
@click.option("--priority", type=int, help="Queue them with this priority.")
@click.pass_context
def retry(ctx: click.Context, idents: Tuple[str, ...], lost: bool, priority: Optional[int]) -> None:
    """Queue ended experiments again (lost, failed, killed, cancelled): the same commit runs."""
    _retry(ctx, idents, lost, priority)


def _retry(ctx: click.Context, idents: Tuple[str, ...], lost: bool, priority: Optional[int] = None) -> None:
    repo, store = open_store()
    if not idents and not lost:
        raise BadInput("name the experiments to retry, or pass --lost", "e.g. git exp queue retry --lost")
    targets = [store.find(i) for i in idents]
    if lost:
        everything = store.experiments()
        live = live_statuses(repo, everything)
        targets += [e for e in everything if live[e.sha][0] == "lost" and e.summary.get("runner") != "slurm"]
    live = live_statuses(repo, targets)
    for exp in targets:
        status = live[exp.sha][0]
        if status not in RETRYABLE:
            raise BadInput(f"{exp.name} is {status}; only {', '.join(RETRYABLE)} experiments can be retried")
        if exp.summary.get("runner") == "slurm":
            raise BadInput(f"{exp.name} ran on Slurm; the local queue does not take it",
                           "submit its config again with git exp run ... --on <remote>")
    q = Queue(repo, store)
    for exp in targets:
        q.requeue(exp, priority)
        click.echo(f"queued {exp.name} ({exp.sha[:10]}) again")
    if not targets:
        click.echo("no lost experiments", err=True)


def parse_gpus(text: Optional[str]) -> Optional[List[int]]:
    if text is None:
        return None
    try:
        ids = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise BadInput(f"--gpus {text!r}: expected GPU indices like 0,1")
    if not ids or any(i < 0 for i in ids) or len(set(ids)) != len(ids):
        raise BadInput(f"--gpus {text!r}: expected distinct GPU indices like 0,1")
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
def worker(jobs: int, gpus: Optional[str], until_empty: bool, group: Optional[str]) -> int:
    """Run the queue on this machine: at most --jobs at a time, one GPU each with --gpus."""
    if jobs < 1:
        raise BadInput(f"--jobs {jobs}: must be at least 1", "e.g. --jobs 2")
    gpu_ids = parse_gpus(gpus)
    repo, store = open_store()
    from ..executor import settings_problems

    problems = settings_problems()
    if problems:
        raise BadInput("; ".join(problems))
    w = Worker(repo, store, jobs=jobs, gpus=gpu_ids, until_empty=until_empty, group=group)
    click.echo(f"gitexp worker: pid {w.identity['pid']}, {w.jobs} at a time"
               + (f", GPUs {gpus}" if gpu_ids else ""), err=True)
    code = w.run()
    click.echo(f"gitexp worker: exiting; started {w.started} experiment(s)", err=True)
    return code


@click.command()
@click.argument("idents", metavar="ID...", nargs=-1, required=True)
def cancel(idents: Tuple[str, ...]) -> None:
    """Drop queued experiments; stop running ones (recorded killed)."""
    repo, store = open_store()
    exps = [store.find(i) for i in idents]
    q = Queue(repo, store)
    for exp in exps:
        click.echo(_cancel_one(repo, store, q, exp))


def _cancel_one(repo: Repo, store: Store, q: Queue, exp: Experiment) -> str:
    status = live_status(repo, exp)[0]
    if exp.summary.get("runner") == "slurm":
        if status not in ("pending", "starting", "running"):
            raise BadInput(f"{exp.name} is {status}, not pending or running: nothing to cancel")
        if not _slurm_runner(repo, store, exp).cancel(exp):
            raise BadInput(f"{exp.name} has no usable Slurm job id recorded; nothing was cancelled",
                           f"see git notes --ref=exps show {exp.sha}")
        for _ in range(100):
            if store.summary(exp.sha).get("status") not in ("pending", "running"):
                break
            time.sleep(0.1)
        return f"cancelled {exp.name} (scancel; {store.summary(exp.sha).get('status')})"
    if status == QUEUED and q.cancel_queued(exp):
        return f"cancelled {exp.name} (was queued)"
    deadline = time.time() + 10
    while status in (QUEUED, CLAIMED) and time.time() < deadline:  # a worker is just starting it
        time.sleep(0.2)
        exp.summary = store.summary(exp.sha)
        status = live_status(repo, exp)[0]
    if status != "running":
        raise BadInput(f"{exp.name} is {status}, not queued or running: nothing to cancel")
    if exp.summary.get("host") != socket.gethostname():
        raise GitExpError(f"{exp.name} runs on {fmt_value(exp.summary.get('host'))}, not here; cancel it there")
    if not is_gitexp_process(exp.summary.get("pid"), exp.summary.get("pid_started")) \
            or not LocalRunner(repo, store).cancel(exp):
        raise GitExpError(f"{exp.name}: pid {fmt_value(exp.summary.get('pid'))} is not its gitexp executor; "
                          "nothing was signalled")
    for _ in range(100):
        if store.summary(exp.sha).get("status") != "running":
            break
        time.sleep(0.1)
    return f"stopped {exp.name} ({store.summary(exp.sha).get('status')})"


def _slurm_runner(repo: Repo, store: Store, exp: Experiment) -> SlurmRunner:
    remote_name = (exp.summary.get("slurm") or {}).get("remote") or "slurm"
    return SlurmRunner(repo, store, Remote(str(remote_name), "slurm"))


def stop_removed(repo: Repo, store: Store, exp: Experiment) -> str:
    """Stop the run of an experiment just removed (``rm --force``), writing no note.

    Without this its executor would go on running and write its results for a commit that
    no ref names. What was done is returned as a line for the user.
    """
    s = exp.summary
    if s.get("runner") == "slurm":
        ref = job_of(s)
        if ref is None:
            return "no usable Slurm job id was recorded: cancel its job by hand"
        try:
            _slurm_runner(repo, store, exp).scancel(ref)
        except GitExpError as exc:
            return f"could not cancel Slurm job {ref.spec}: {exc}"
        return f"cancelled Slurm job {ref.spec}"
    if s.get("host") and s.get("host") != socket.gethostname():
        return f"it runs on {fmt_value(s.get('host'))}: stop its executor there"
    if s.get("pid") is None:
        return "its executor had not started yet; nothing to stop"
    if not is_gitexp_process(s.get("pid"), s.get("pid_started")) or not LocalRunner(repo, store).cancel(exp):
        return f"its executor (pid {fmt_value(s.get('pid'))}) is not running here; nothing to stop"
    return f"stopped its executor (pid {s['pid']})"
