"""``git exp bisect``: find the commit that moved a metric (gitexp.bisect does the search)."""
from __future__ import annotations

import json
from typing import Optional

import click

from ..bisect import Launcher, Result, plan as make_plan, search
from ..errors import BadInput
from ..summary import json_safe
from .common import cell, fmt_value, open_store, render_table


@click.command()
@click.argument("good", metavar="GOOD")
@click.argument("bad", metavar="BAD")
@click.option("--metric", "-m", required=True, help="The metric that moved.")
@click.option("--threshold", type=float, help="Bad beyond this value (default: nearer BAD's value than GOOD's).")
@click.option("--last", is_flag=True, help="Compare each run's last value of the metric, not its best.")
@click.option("--repeat", type=int, default=1, show_default=True,
              help="Runs per probed commit, seeds seed+0..N-1; their mean is compared.")
@click.option("--seed-param", default="seed", show_default=True, help="The param --repeat varies.")
@click.option("--on", "on", metavar="TARGET", help="Run the probes on a run target (its pull brings results back).")
@click.option("--queue", "to_queue", is_flag=True, help="Run the probes through this machine's queue and worker.")
@click.option("--parallel", "-k", type=int, default=1, show_default=True,
              help="Probes per round, run at once (a k-ary search).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def bisect(good: str, bad: str, metric: str, threshold: Optional[float], last: bool, repeat: int,
           seed_param: str, on: Optional[str], to_queue: bool, parallel: int, fmt: str) -> int:
    """Find the first commit between GOOD's and BAD's commits that made METRIC bad.

    GOOD and BAD are experiments of the same config. Each probe runs GOOD's config and params
    on a commit's tracked tree, recorded in a group bisect-<good7>-<bad7>; a probe that fails
    is skipped (the answer may then be a range). Running it again reuses the probes recorded.
    """
    from .. import bisect_probes

    if on and to_queue:
        raise BadInput(f"--on {on} with --queue: the run target queues them itself", "drop --queue")
    if parallel < 1:
        raise BadInput(f"--parallel {parallel}: must be at least 1")
    repo, store = open_store()
    plan = make_plan(repo, store, good, bad, metric, threshold, last, repeat, seed_param)
    launcher: Launcher
    if on:
        launcher = bisect_probes.OnTarget(repo, store, on)
    elif to_queue:
        launcher = bisect_probes.Queued(repo, store, None)
    elif parallel > 1:
        launcher = bisect_probes.Queued(repo, store, parallel * repeat)
    else:
        launcher = bisect_probes.Foreground(repo, store)
    for note in plan.notes:
        click.echo(f"gitexp: bisect: {note}", err=True)
    n = len(plan.line) - 2
    click.echo(f"gitexp: bisect: {n} commit(s) to test between {plan.line[0].short} and {plan.line[-1].short} "
               f"by {metric} ({plan.good_value:.6g} good, {plan.bad_value:.6g} bad); probes in group {plan.group}",
               err=True)
    result = search(repo, store, plan, launcher, parallel, say=lambda text: click.echo(text, err=True))
    if fmt == "json":
        click.echo(json.dumps(json_safe(result.to_json()), indent=2))
    else:
        click.echo(describe(result))
    return 0


def describe(result: Result) -> str:
    p = result.plan
    which = "last" if p.use_last else "best"
    lines = []
    first = result.first_bad
    if first is not None:
        lines += [f"first bad commit: {first.sha}", f"  subject: {cell(first.subject)}", f"  author:  {cell(first.author)}"]
    else:
        lines.append(f"the first bad commit is one of these {len(result.candidates)} (probes of the ones marked "
                     "skipped failed, as git bisect skip):")
        tested = {x.commit.sha: x for x in result.probes}
        for commit in result.candidates:
            probe = tested.get(commit.sha)
            mark = f"skipped: {probe.why}" if probe is not None and probe.verdict == "skip" else \
                "bad" if commit.sha == p.line[-1].sha or probe is not None else "not tested"
            lines.append(f"  {commit.sha[:10]} {cell(commit.subject, 60)} ({cell(commit.author, 40)}) [{mark}]")
    hi = result.candidates[-1]
    lines.append(f"  {p.metric} ({which}): {fmt_value(result.last_good_value)} at {result.last_good.short} (good) -> "
                 f"{fmt_value(result.first_bad_value)} at {hi.short} (bad)")
    if result.overlap:
        lines.append(f"  warning: {result.overlap}")
    rows = []
    for x in result.probes:
        spread = f" (n={len(x.values)}: {', '.join(fmt_value(v) for v in x.values)})" if len(x.runs) > 1 else ""
        value = (fmt_value(x.mean) + spread) if x.mean is not None else x.why
        rows.append([str(x.round), x.commit.short, cell(x.commit.subject, 40), cell(value, 60), x.verdict,
                     "yes" if x.reused else "", cell(", ".join(e.name for e in x.runs), 60)])
    lines += ["", f"probes ({result.rounds} round(s); git exp log --group {p.group}):",
              render_table(["round", "commit", "subject", p.metric, "verdict", "reused", "experiments"], rows)]
    return "\n".join(lines)
