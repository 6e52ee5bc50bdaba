"""``git exp show``, ``git exp logs`` and ``git exp metrics``: one experiment in depth."""
from __future__ import annotations

import csv
import json
import os
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import click
import yaml
from tabulate import tabulate

from ..lifecycle import OPEN, Status
from .. import live as live_mod
from .. import timing as timing_mod
from ..attempts import chain_rows
from ..errors import BadInput
from ..metrics import finite_number, is_number
from ..status import live_status
from ..notes import Experiment, Store
from ..evidence import ran_here
from ..rundirs import list_outputs, recorded_outputs
from ..paths import run_paths
from ..repo import Repo
from ..runners import runner_for
from ..units import format_size
from ..values import Summary
from .common import (alert_lines, cell, fmt_duration, fmt_time, fmt_value, json_text, notify_lines, open_store,
                     output_format, print_json, record, resource_lines)


@click.command()
@click.argument("ident", metavar="[ID]", required=False)
@output_format("text", "json", default="text")
@click.option("--reach", "reach", multiple=True, metavar="METRIC=VALUE",
              help="Also say when METRIC first reached VALUE (step, seconds since the start); repeatable.")
def show(ident: Optional[str], fmt: str, reach: Tuple[str, ...] = ()) -> None:
    """Everything about one experiment (default: the latest): config, facts, metric summaries,
    time, outputs, log tail."""
    repo, store = open_store()
    exp = find_or_latest(store, ident)
    status, why = live_status(repo, exp)
    live_mod.refresh(repo, [exp], {exp.sha: status})  # a run in progress here: its points so far
    if why:
        exp.summary["reason"] = why
    details = store.details(exp.sha)
    config = store.config_of(exp.sha)
    # This machine's output directory, never a path named by the note: a note saying
    # outdir "/" must not make show walk the whole disk.
    outputs = list_outputs(run_paths(repo, exp.sha, exp.summary).outdir)
    where_outputs = None
    if not outputs and not ran_here(repo, exp.sha):  # ran elsewhere: what the note written there lists
        outputs, where_outputs = recorded_outputs(details), exp.summary.get("host")
    timing, reached = _timing(repo, store, exp, reach)
    chain = chain_rows(store, exp, status)
    if fmt == "json":
        data = record(exp, status)
        data.update({"config": config, "facts": details.get("facts", {}), "log_tail": details.get("log_tail", ""),
                     "checkpoints": exp.summary.get("checkpoints", []), "outputs": outputs,
                     "parent_dirty": exp.summary.get("parent_dirty"), "config_hash": exp.summary.get("config_hash"),
                     "outdir": exp.summary.get("outdir"), "run_dir": exp.summary.get("run_dir"),
                     "slurm": exp.summary.get("slurm"), "timing": timing, "attempts": chain,
                     "imported": exp.summary.get("imported"), "profile": details.get("profile"),
                     "reached": [{"metric": m, "what": w, **(hit or {"step": None, "seconds": None})}
                                 for m, w, hit in reached]})
        print_json(data)
        return
    _print_show(exp, status, config, details, outputs, timing_mod.lines(timing, reached), chain, where_outputs)


def find_or_latest(store: Store, ident: Optional[str], say: bool = False) -> Experiment:
    """The experiment ``ident`` names, or without one the newest (as ``plot`` takes the latest
    sweep); ``say``: name it on stderr, where it cannot mix with the output."""
    if ident:
        return store.find(ident)
    exps = store.experiments()
    if not exps:
        raise BadInput("no experiments here yet", "git exp run config.yaml records one")
    newest = max(exps, key=lambda e: (e.summary.get("created") if is_number(e.summary.get("created")) else 0, e.name))
    if say:
        click.echo(f"gitexp: the latest experiment, {fmt_value(newest.name)} ({newest.sha[:10]})", err=True)
    return newest


def _timing(repo: Repo, store: Store, exp: Experiment, reach: Sequence[str]
            ) -> Tuple[Dict[str, Any], List[Tuple[str, str, Optional[Dict[str, Any]]]]]:
    """Time facts from the history (:mod:`gitexp.timing`), when each goal metric reached its
    best, and when each --reach METRIC=VALUE was reached."""
    targets = [timing_mod.parse_reach(text, exp.summary) for text in reach]  # BadInput before reading
    history, summary = live_mod.timeline(repo, store, exp)  # a resumed run: the chain's, on one clock
    reached: List[Tuple[str, str, Optional[Dict[str, Any]]]] = []
    for name in sorted(summary.get("metrics") or {}):
        hit = timing_mod.time_to_best(history, summary, name)
        if hit is not None:
            reached.append((name, "best", hit))
    for name, value, goal, sign in targets:
        reached.append((name, f"{sign} {value:g}", timing_mod.time_to(history, summary, name, value, goal)))
    return timing_mod.analyze(history, summary), reached


def _print_chain(rows: List[Dict[str, Any]]) -> None:
    if len(rows) < 2:
        return
    click.echo("\nattempts:")
    for row in rows:
        line = f"  {fmt_value(row['attempt'])}. {row['id'][:10]} {fmt_value(row['kind'])}: {fmt_value(row['status'])}"
        if row.get("reason"):
            line += f" ({cell(str(row['reason']), 120)})"
        if row.get("resumed_from"):
            point = row["resumed_from"]
            line += f"; resumed from step {fmt_value(point.get('step'))} of {fmt_value(str(point.get('attempt'))[:10])}"
        if isinstance(row.get("param_changes"), dict) and row["param_changes"]:
            line += "; changed " + ", ".join(f"{fmt_value(k)}: {fmt_value(v[0] if isinstance(v, list) and v else v)}"
                                             f" -> {fmt_value(v[1] if isinstance(v, list) and len(v) > 1 else v)}"
                                             for k, v in row["param_changes"].items())
        click.echo(line)


def _print_show(exp: Experiment, status: str, config: Dict[str, Any], details: Dict[str, Any],
                outputs: List[Dict[str, Any]], time_lines: Sequence[str] = (),
                chain: Optional[List[Dict[str, Any]]] = None, where_outputs: Optional[str] = None) -> None:
    """The text view. Every value from notes goes through fmt_value/cell: control characters
    are escaped, so a note cannot drive the terminal."""
    s = exp.summary
    info = Summary.parse(s)
    echo = click.echo
    echo(f"experiment {fmt_value(exp.name)}  {exp.sha}")
    echo(f"status     {status_text(status, s)}")
    if info.group:
        echo(f"group      {fmt_value(info.group)}")
    echo(f"parent     {fmt_value(s.get('parent', ''))}" + (" (with uncommitted changes)" if s.get("parent_dirty") else ""))
    echo(f"created    {fmt_time(info.created)}")
    imported = s.get("imported") if isinstance(s.get("imported"), dict) else None
    if imported:  # git exp import tensorboard: no run of ours, its times are the events'
        echo(f"imported   from {fmt_value(imported.get('from'))} (TensorBoard event files; "
             f"events from {fmt_time(info.started)} to {fmt_time(info.ended)})")
    if info.started and not imported:
        target = f", run target {fmt_value(info.target)}" if info.target else ""
        echo(f"started    {fmt_time(info.started)} on {fmt_value(s.get('host', '?'))} "
             f"({fmt_value(s.get('runner', 'local'))}{target})")
    if info.duration is not None:
        echo(f"duration   {fmt_duration(info.duration)}")
    for key in ("slurm", "sge"):  # a scheduler's job handle
        job = s.get(key)
        if isinstance(job, dict):
            task = f"_{fmt_value(job['task'])}" if job.get("task") is not None else ""
            where = job.get("remote") or s.get("target") or "this machine"
            echo(f"{key:<10} job {fmt_value(job.get('job'))}{task} on run target {fmt_value(where)}; "
                 f"script {fmt_value(job.get('script'))}")
    echo("\nconfig:")
    echo(_block(_yaml_text(config), "  "))
    _print_metrics(dict(info.metrics))
    for line in time_lines:
        echo(line)

    for line in alert_lines(s) + resource_lines(s) + notify_lines(s) + profile_lines(details.get("profile")):
        echo(line)
    _print_facts(details.get("facts") or {})
    _print_checkpoints(s.get("checkpoints"))
    _print_chain(chain or [])
    there = f" on {fmt_value(where_outputs)}, as its run recorded them" if where_outputs else ""
    echo(f"\noutputs ({fmt_value(s.get('outdir', ''))}{there}):")
    for item in outputs[:50] or [{"path": "(empty)", "size": None}]:
        echo(f"  {cell(item['path'], 200)}" + (f"  {format_size(item['size'])}" if item.get("size") is not None else ""))
    tail = details.get("log_tail")
    if tail:
        echo("\nlog tail:")
        echo(_block(tail.rstrip(), "  "))


def profile_lines(profile: Any, n: int = 5) -> List[str]:
    """``git exp run --profile``'s result (details note, untrusted): top functions, where the
    flame graph is, or why nothing was profiled."""
    if not isinstance(profile, dict):
        return []
    if profile.get("error"):
        return [f"\nprofile: none ({fmt_value(profile['error'])})"]
    lines = [f"\nprofile ({fmt_value(profile.get('samples'))} samples at {fmt_value(profile.get('rate'))}/s; "
             f"flame graph {fmt_value(os.path.join(str(profile.get('folder', '')), 'flamegraph.svg'))}):"]
    for key, what in (("top_self", "own time"), ("top_total", "total time")):
        tops = [t for t in profile.get(key) or [] if isinstance(t, list) and len(t) == 2 and is_number(t[1])]
        if tops:
            lines.append(f"  by {what}: " + ", ".join(f"{cell(str(f), 80)} {p:.0%}" for f, p in tops[:n]))
    return lines


def status_text(status: str, summary: Dict[str, Any]) -> str:
    """``failed (exit code 1)``, ``killed (killed by signal 15)``, then the reason when it adds
    something (``failed (exit code 1): exit code 1`` said it twice)."""
    code, reason = summary.get("exit_code"), summary.get("reason")
    said = ""
    if code not in (None, 0):
        signalled = isinstance(code, int) and not isinstance(code, bool) and code < 0
        said = f"killed by signal {-code}" if signalled else f"exit code {fmt_value(code)}"
    text = fmt_value(status) + (f" ({said})" if said else "")
    if reason and status != Status.FINISHED and fmt_value(reason) != said:
        text += f": {fmt_value(reason)}"
    return text


def _block(text: str, indent: str) -> str:
    """Multi-line text indented, each line with its control characters escaped (tabs, \\r too)."""
    return "\n".join(indent + fmt_value(line) for line in text.split("\n"))


def _yaml_text(config: Dict[str, Any]) -> str:
    try:
        return yaml.safe_dump(config, sort_keys=False).rstrip()
    except (yaml.YAMLError, RecursionError, ValueError) as exc:
        return f"(cannot print: {exc})"


def _print_metrics(metrics: Dict[str, Any]) -> None:
    if not metrics:
        return
    rows = [[cell(n), cell(m.get("goal")), cell(m.get("best")), cell(m.get("best_step")), cell(m.get("last")),
             cell(m.get("last_step")), cell(m.get("count", 0))] for n, m in sorted(metrics.items())]
    click.echo("\nmetrics:")
    click.echo(tabulate(rows, headers=["metric", "goal", "best", "at step", "last", "at step", "points"],
                        disable_numparse=True))
    for line in _step_notes(metrics):
        click.echo(line)


def _step_notes(metrics: Dict[str, Any]) -> List[str]:
    """Lines saying whose steps are not the program's own (match counts)."""
    counted = sorted(name for name, entry in metrics.items()
                     if isinstance(entry, dict) and "count" in str(entry.get("step_source") or "").split("+"))
    if not counted:
        return []
    names = ", ".join(cell(name) for name in counted)
    return [f"steps: match count for {names} (the n-th match is step n; "
            "give the config a step: {regex: ...} or step: latest for the program's steps)"]


def _print_facts(facts: Dict[str, Any]) -> None:
    if not facts:
        return
    click.echo("\nfacts:")
    for key in ("hostname", "user", "platform", "python", "git", "cpus", "ram", "gpus"):
        value = facts.get(key)
        if key == "ram" and isinstance(value, (int, float)) and value:
            value = format_size(value)
        elif key == "gpus" and isinstance(value, list):
            value = ", ".join(str(g) for g in value) or "none"
        click.echo(f"  {key:<9}{cell(value, 200)}")
    packages = facts.get("packages")
    click.echo(f"  packages {len(packages) if isinstance(packages, list) else 0} installed "
               "(git exp show --format json lists them)")


def _print_checkpoints(checkpoints: Any) -> None:
    """Checkpoint records come from the training script (any extra fields, any types): never trust a shape."""
    if not checkpoints or not isinstance(checkpoints, list):
        return
    click.echo("\ncheckpoints:")
    for ckpt in checkpoints:
        if not isinstance(ckpt, dict):
            click.echo(f"  {cell(ckpt)}")
            continue
        size = ckpt.get("size")
        shown = format_size(size) if isinstance(size, (int, float)) and not isinstance(size, bool) and size >= 0 \
            else cell(size, 20) or "?"
        where = f"{cell(ckpt.get('host'), 60)}:{cell(ckpt.get('path'), 200)}"
        click.echo(f"  step {cell(ckpt.get('step'), 20)}  {where}  {shown}")


@click.command()
@click.argument("ident", metavar="[ID]", required=False)
@click.option("--follow", "-f", is_flag=True, help="Keep printing new output while it runs.")
def logs(ident: Optional[str], follow: bool) -> Optional[int]:
    """The program's output (default: the latest experiment's), from this machine's run
    directory, from the run target it runs on over ssh, else the recorded tail."""
    repo, store = open_store()
    exp = find_or_latest(store, ident, say=True)
    path = run_paths(repo, exp.sha).log
    if not os.path.exists(path):
        code = runner_for(repo, store, exp).follow_log(exp, follow)  # it runs elsewhere: from there
        if code is not None:
            return code
    if not os.path.exists(path):
        tail = store.details(exp.sha).get("log_tail")
        if tail is None:
            click.echo(f"no output recorded for {exp.name} yet ({path} does not exist)", err=True)
            return None
        click.echo(_block(tail, ""))  # from a note, maybe someone else's: escape it
        return None
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
    return None


def _still_running(repo: Repo, store: Store, exp: Experiment) -> bool:
    exp.summary = store.summary(exp.sha)
    return live_status(repo, exp)[0] in OPEN


@click.command()
@click.argument("ident", metavar="[ID]", required=False)
@output_format("csv", "json", "jsonl", default="csv")
@click.option("--raw", is_flag=True, help="Only this attempt's own points, not the curve across its chain.")
@click.option("--full", is_flag=True, help="Every point, also of a run whose history is summarised by a curve "
              "(more than 2,000 points in a metric).")
def metrics(ident: Optional[str], fmt: str, raw: bool = False, full: bool = False) -> None:
    """Export the metric histories of one experiment (default: the latest): one record per
    step (across retries and resumes); csv adds elapsed_s, seconds since the run started.
    A run with more than 2,000 points in a metric gives its summary curve (first, last, lowest
    and highest of each stretch); --full gives every point."""
    repo, store = open_store()
    exp = find_or_latest(store, ident, say=True)
    history = live_mod.history(repo, exp, store, raw=raw, full=full)  # a run in progress here: the curve so far
    if exp.summary.get("curve") is True and not full:
        click.echo(f"gitexp: the summary curve ({len(history)} records); git exp metrics {exp.sha[:10]} --full "
                   "gives every point", err=True)
    if fmt == "json":
        print_json(history)
        return
    if fmt == "jsonl":  # one write: per-line echo and flush cost more than the encoding
        encode = json.JSONEncoder(sort_keys=True, default=str, allow_nan=False).encode  # made once

        def line(rec: Dict[str, Any]) -> str:
            try:
                return encode(rec)
            except (ValueError, TypeError, RecursionError):
                return json_text(rec, indent=None)  # NaN as null, deep nesting cut
        click.echo("".join(line(rec) + "\n" for rec in history), nl=False)
        return
    _write_csv(history, exp.summary)


def _write_csv(history: List[Dict[str, Any]], summary: Dict[str, Any]) -> None:
    """One row per record; ``elapsed_s`` beside ``time``: seconds since the run started (the
    first attempt's start for a chain, whose points began before the latest attempt)."""
    keys: Dict[str, None] = {"step": None, "time": None, "elapsed_s": None}
    for rec in history:
        for key in rec:
            keys.setdefault(key, None)
    times = [t for t in (finite_number(r.get("time")) for r in history) if t is not None]
    start = timing_mod.start_of(history, summary)
    if start is not None and times:
        start = min(start, min(times))
    writer = csv.DictWriter(sys.stdout, fieldnames=list(keys))
    writer.writeheader()
    for rec in history:
        when = finite_number(rec.get("time"))
        elapsed = round(when - start, 3) if when is not None and start is not None else None
        writer.writerow({**rec, "elapsed_s": elapsed} if "elapsed_s" not in rec else rec)
