"""``git exp show``, ``git exp logs`` and ``git exp metrics``: one experiment in depth."""
from __future__ import annotations

import csv
import os
import sys
import time
from typing import Any, Dict, List

import click
import yaml
from tabulate import tabulate

from ..status import live_status
from ..notes import Experiment, Store
from ..paths import run_paths
from ..repo import Repo
from ..units import format_duration, format_size
from .common import fmt_time, fmt_value, open_store, output_format, print_json
from .log import record


@click.command()
@click.argument("ident", metavar="ID")
@output_format("text", "json", default="text")
def show(ident: str, fmt: str) -> None:
    """Everything about one experiment: config, facts, metric summaries, outputs, log tail."""
    repo, store = open_store()
    exp = store.find(ident)
    status, why = live_status(repo, exp)
    if why:
        exp.summary["reason"] = why
    details = store.details(exp.sha)
    config = store.config_of(exp.sha)
    outputs = _list_outputs(exp.summary.get("outdir") or run_paths(repo, exp.sha).outdir)
    if fmt == "json":
        data = record(exp, status)
        data.update({"config": config, "facts": details.get("facts", {}), "log_tail": details.get("log_tail", ""),
                     "checkpoints": exp.summary.get("checkpoints", []), "outputs": outputs,
                     "parent_dirty": exp.summary.get("parent_dirty"), "config_hash": exp.summary.get("config_hash"),
                     "outdir": exp.summary.get("outdir"), "run_dir": exp.summary.get("run_dir"),
                     "slurm": exp.summary.get("slurm")})
        print_json(data)
        return
    _print_show(exp, status, config, details, outputs)


def _print_show(exp: Experiment, status: str, config: Dict[str, Any], details: Dict[str, Any],
                outputs: List[Dict[str, Any]]) -> None:
    s = exp.summary
    echo = click.echo
    echo(f"experiment {exp.name}  {exp.sha}")
    echo(f"status     {status}" + (f" (exit code {s['exit_code']})" if s.get("exit_code") not in (None, 0) else "")
         + (f": {s['reason']}" if s.get("reason") and status != "finished" else ""))
    if s.get("group"):
        echo(f"group      {s['group']}")
    echo(f"parent     {s.get('parent', '')}" + (" (with uncommitted changes)" if s.get("parent_dirty") else ""))
    echo(f"created    {fmt_time(s.get('created'))}")
    if s.get("started"):
        echo(f"started    {fmt_time(s.get('started'))} on {s.get('host', '?')} ({s.get('runner', 'local')})")
    if s.get("duration") is not None:
        echo(f"duration   {format_duration(s['duration'])}")
    if s.get("slurm"):
        slurm = s["slurm"]
        task = f"_{slurm['task']}" if slurm.get("task") is not None else ""
        echo(f"slurm      job {slurm.get('job')}{task} on remote {slurm.get('remote')}; script {slurm.get('script')}")
    echo("\nconfig:")
    echo("  " + yaml.safe_dump(config, sort_keys=False).rstrip().replace("\n", "\n  "))
    metrics = s.get("metrics") or {}
    if metrics:
        rows = [[n, m.get("goal") or "", fmt_value(m.get("best")), m.get("best_step", ""), fmt_value(m.get("last")),
                 m.get("last_step", ""), m.get("count", 0)] for n, m in sorted(metrics.items())]
        echo("\nmetrics:")
        echo(tabulate(rows, headers=["metric", "goal", "best", "at step", "last", "at step", "points"],
                      disable_numparse=True))
    facts = details.get("facts") or {}
    if facts:
        echo("\nfacts:")
        for key in ("hostname", "user", "platform", "python", "git", "cpus", "ram", "gpus"):
            value = facts.get(key)
            if key == "ram" and value:
                value = format_size(value)
            echo(f"  {key:<9}{value}")
        echo(f"  packages {len(facts.get('packages') or [])} installed (git exp show --format json lists them)")
    if s.get("checkpoints"):
        echo("\ncheckpoints:")
        for ckpt in s["checkpoints"]:
            size = format_size(ckpt["size"]) if ckpt.get("size") else "?"
            echo(f"  step {ckpt.get('step')}  {ckpt.get('host')}:{ckpt.get('path')}  {size}")
    echo(f"\noutputs ({s.get('outdir', '')}):")
    for item in outputs[:50] or [{"path": "(empty)", "size": None}]:
        echo(f"  {item['path']}" + (f"  {format_size(item['size'])}" if item.get("size") is not None else ""))
    tail = details.get("log_tail")
    if tail:
        echo("\nlog tail:")
        echo("  " + tail.rstrip().replace("\n", "\n  "))


def _list_outputs(outdir: str) -> List[Dict[str, Any]]:
    found = []
    if not os.path.isdir(outdir):
        return found
    for base, _dirs, files in os.walk(outdir):
        for name in sorted(files):
            full = os.path.join(base, name)
            try:
                size = os.path.getsize(full)
            except OSError:
                size = None
            found.append({"path": os.path.relpath(full, outdir), "size": size})
    return sorted(found, key=lambda f: f["path"])


@click.command()
@click.argument("ident", metavar="ID")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new output while it runs.")
def logs(ident: str, follow: bool) -> None:
    """The program's output (from this machine's run directory, else the recorded tail)."""
    repo, store = open_store()
    exp = store.find(ident)
    path = run_paths(repo, exp.sha).log
    if not os.path.exists(path):
        tail = store.details(exp.sha).get("log_tail")
        if tail is None:
            click.echo(f"no output recorded for {exp.name} yet ({path} does not exist)", err=True)
            return
        click.echo(tail)
        return
    out = sys.stdout.buffer
    with open(path, "rb") as handle:
        while True:
            chunk = handle.read(65536)
            if chunk:
                out.write(chunk)
                out.flush()
                continue
            if not follow or not _still_running(repo, store, exp):
                break
            time.sleep(0.25)
        rest = handle.read()
        if rest:
            out.write(rest)
            out.flush()


def _still_running(repo: Repo, store: Store, exp: Experiment) -> bool:
    exp.summary = store.summary(exp.sha)
    return live_status(repo, exp)[0] in ("running", "created", "queued", "starting", "pending")


@click.command()
@click.argument("ident", metavar="ID")
@output_format("csv", "json", "jsonl", default="csv")
def metrics(ident: str, fmt: str) -> None:
    """Export the full metric histories: one record per step."""
    repo, store = open_store()
    exp = store.find(ident)
    history = store.history(exp.sha)
    if fmt == "json":
        print_json(history)
        return
    if fmt == "jsonl":
        import json

        for rec in history:
            click.echo(json.dumps(rec, sort_keys=True))
        return
    keys: Dict[str, None] = {"step": None, "time": None}
    for rec in history:
        for key in rec:
            keys.setdefault(key, None)
    writer = csv.DictWriter(sys.stdout, fieldnames=list(keys))
    writer.writeheader()
    for rec in history:
        writer.writerow(rec)
