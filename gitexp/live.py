"""The points of a run in progress on this machine, read from its run directory; and the
curve of a resumed experiment across its chain of attempts.

The executor writes notes at start, every ``GITEXP_NOTES_INTERVAL`` seconds and at the end;
in between, the points are in the run directory: ``metrics.jsonl`` (the Python API, flushed
each second), ``captured.jsonl`` (regex points, appended as the output arrives) and the
metrics files in ``out/``. For a run that is running (or starting) here, ``log``, ``show``
and ``metrics`` build its history from those files exactly as the executor builds the notes
(:func:`gitexp.metrics.build_history`, :func:`gitexp.metrics.summarize`), so they show the
points printed a moment ago; so they do for a run found ``lost`` here (its executor died
before it wrote its last notes: the directory still holds every point). For every other run
they read the notes.

An experiment that was resumed or retried is one curve across its attempts
(:func:`gitexp.attempts.join_chain`): :func:`history`, :func:`refresh` and
:func:`histories` give every view (``metrics``, ``log``, ``show``, ``plot``, ``report``,
``compare``) the chain's curve and its summaries (best over the chain), :func:`timeline` the
same on a clock that leaves out the time between attempts.

Cost: only runs whose note says running/starting on this host are looked at, and only those
whose executor (named in ``exec.json``) is alive, or found dead, have files read, so listing
10,000 ended experiments reads no file; a resumed experiment's earlier attempts are read from
their notes, in one batch per command.
"""
from __future__ import annotations

import math
import socket
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

from .errors import GitExpError
from .evidence import process_alive, read_exec_info
from . import summary as checks
from .lifecycle import JUDGED_HERE, LIVE, Status
from .notes import METRICS_REF, Experiment, Store
from .numbers import finite_number
from .paths import run_paths
from .repo import Repo

if TYPE_CHECKING:
    from .config import MetricSpec

# Light to import: the metric capture, the config and the liveness judgement (yaml, psutil)
# load inside the functions that read a run's files or its chain, so `git exp log` asks
# refresh() about every listing and a listing of ended runs loads none of them.

OPEN = LIVE  # the name ui/api reads


@dataclass
class LiveRun:
    history: List[Dict[str, Any]]
    metrics: Dict[str, Dict[str, Any]]  # summaries, as the executor would write them


def _ours(exp: Experiment, status: str, host: str) -> bool:
    """Whether the note says this run is open on this host (no file is read to say so)."""
    if status not in LIVE:
        return False
    summary = exp.summary
    worker = summary.get("worker")
    if status == Status.STARTING and isinstance(worker, dict) and worker.get("host"):
        return worker.get("host") == host  # claimed by a queue worker (or a local run's executor)
    return summary.get("host") == host


def read(repo: Repo, exp: Experiment, status: Optional[str] = None,
         host: Optional[str] = None) -> Optional[LiveRun]:
    """The run's history and summaries from its run directory, or None when it is not a run
    in progress on this machine (then the notes have what there is)."""
    from . import metrics as metrics_mod

    host = host or socket.gethostname()
    if status is None and exp.status in LIVE:
        from .experiments import effective_status

        status = effective_status(repo, exp, host)
    elif status is None:
        status = exp.status
    lost = status == Status.LOST and exp.status in JUDGED_HERE  # a note that recorded no end yet
    if not lost and not _ours(exp, status, host):
        return None
    paths = run_paths(repo, exp.sha, exp.summary)  # this machine's directory, never a path from the note
    info = read_exec_info(paths.exec_info)
    # The executor removes a previous attempt's files before it names itself in exec.json:
    # with it alive (or dead, before any other executor took the directory), what the
    # directory holds is this attempt's.
    if not info or info.get("host") != host or process_alive(info.get("pid"), info.get("pid_started")) == lost:
        return None
    specs = _specs(repo, exp)
    try:
        history, sources = metrics_mod.run_dir_history(paths, specs)
    except (OSError, ValueError, TypeError, RecursionError):
        return None  # a file being replaced or unreadable: the notes still answer
    if lost and not history:
        return None
    return LiveRun(history, metrics_mod.summarize(history, specs, sources))


def refresh(repo: Repo, exps: Iterable[Experiment], statuses: Mapping[str, str]) -> None:
    """Give each run in progress on this machine its live metric summaries (in its summary)."""
    host = socket.gethostname()
    for exp in exps:
        status = statuses.get(exp.sha, exp.status)
        if not _ours(exp, status, host) and status != Status.LOST:
            continue
        run = read(repo, exp, status, host)
        if run is not None:
            exp.summary["metrics"] = run.metrics
    chained = [exp for exp in exps if _earlier(exp)]
    if chained:
        store = Store(repo)
        for exp in chained:
            view = chain_view(repo, store, exp, statuses.get(exp.sha), quiet=True)  # a listing: no warnings
            exp.summary["metrics"] = view.fields["metrics"]


def history(repo: Repo, exp: Experiment, store: Store, raw: bool = False, full: bool = False) -> List[Dict[str, Any]]:
    """The whole history so far: live for a run in progress (or lost) here, else the note's
    (its summary curve when it has one, unless ``full``: :mod:`gitexp.history_file`); across the
    attempts of its chain (see :func:`gitexp.attempts.join_chain`) unless ``raw``."""
    if raw or not _earlier(exp):
        return _own_history(repo, store, exp, full=full)
    return chain_view(repo, store, exp).history


def _own_history(repo: Repo, store: Store, exp: Experiment, status: Optional[str] = None,
                 full: bool = False) -> List[Dict[str, Any]]:
    from .history_file import read_histories

    run = read(repo, exp, status)
    return run.history if run is not None else read_histories(store, [exp], full=full)[exp.sha]


def _earlier(exp: Experiment) -> bool:
    chain = exp.summary.get("chain")
    return isinstance(chain, list) and bool(chain)


@dataclass
class ChainView:
    history: List[Dict[str, Any]]  # the joined curve, steps continued, times as logged
    clocked: List[Dict[str, Any]]  # the same on the chain's running clock (time between attempts left out)
    fields: Dict[str, Any]  # the chain's summary fields: metrics (best over the chain), started, duration


_WARNED: Set[str] = set()  # one warning per attempt and process


def chain_view(repo: Repo, store: Store, exp: Experiment, status: Optional[str] = None,
               quiet: bool = False) -> ChainView:
    """The curve of ``exp``'s chain (its own points live when it runs here) and its summaries;
    how a restarted step counter was joined is said once per attempt unless ``quiet``."""
    from . import metrics as metrics_mod
    from .attempts import chain_of, join_chain
    from .checkpoints import spec_of

    chain = chain_of(store, exp)
    earlier = [sha for sha, _summary in chain[:-1]]
    notes = store.read_notes(METRICS_REF, earlier) if earlier else {}
    own = _own_history(repo, store, exp, status)
    histories = [checks.load_history(sha, notes.get(sha, b""), METRICS_REF) for sha in earlier] + [own]
    config = _config(repo, exp)
    specs = dict(config.metrics) if config is not None else {}
    rule = spec_of(config).resume_steps if config is not None else "continue"
    joined = join_chain(histories, chain, rule)
    for sha, text in [] if quiet else joined.warnings:
        if sha not in _WARNED:
            _WARNED.add(sha)
            print(f"gitexp: warning: {text}", file=sys.stderr, flush=True)
    sources = {name: str(entry.get("step_source")) for _sha, summary in chain
               for name, entry in (summary.get("metrics") or {}).items()
               if isinstance(entry, dict) and isinstance(entry.get("step_source"), str)}
    clocked, started, duration = _running_clock(joined.history, joined.attempt_of, chain)
    fields = {"metrics": metrics_mod.summarize(joined.history, specs, sources), "started": started,
              "duration": duration}
    return ChainView(joined.history, clocked, fields)


def _running_clock(history: List[Dict[str, Any]], attempt_of: List[int],
                   chain: Sequence[Tuple[str, Mapping[str, Any]]]) -> Tuple[List[Dict[str, Any]], Any, Any]:
    """The history with each attempt's times moved back by the time between the attempts
    before it (from one's end to the next one's start), the chain's start, and its duration
    (the attempts' durations added up; None while one is unknown)."""
    number = finite_number

    shifts: List[float] = []
    shift, end = 0.0, None
    durations: List[Optional[float]] = []
    for _sha, summary in chain:
        started, ended = number(summary.get("started")), number(summary.get("ended"))
        if started is not None and end is not None and started > end:
            shift += started - end
        shifts.append(shift)
        end = ended if ended is not None else end
        durations.append(number(summary.get("duration")))
    clocked = []
    for record, n in zip(history, attempt_of):
        when = finite_number(record.get("time"))
        clocked.append({**record, "time": when - shifts[n]} if when is not None and shifts[n] else record)
    first = number(chain[0][1].get("started"))
    total = None if any(d is None for d in durations) else math.fsum(d for d in durations if d is not None)
    return clocked, first, total


def timeline(repo: Repo, store: Store, exp: Experiment) -> Tuple[List[Dict[str, Any]], Dict[str, Any]]:
    """(history, summary) for time facts (``show``): a resumed experiment's curve on its running
    clock with the chain's start, duration and summaries, so no time mixes two attempts."""
    if not _earlier(exp):
        return history(repo, exp, store), exp.summary
    view = chain_view(repo, store, exp)
    return view.clocked, {**exp.summary, **view.fields}


def histories(repo: Repo, store: Store, exps: Sequence[Experiment],
              statuses: Mapping[str, str]) -> Dict[str, List[Dict[str, Any]]]:
    """sha -> history for the views that draw or compare curves (``plot``, ``report``,
    ``compare``): runs in progress (or lost) here from their run directory, the rest from their
    notes in one ``cat-file`` call; a resumed experiment's chain joined on its running clock,
    and its summary (``metrics``, ``started``, ``duration``) made the chain's."""
    out: Dict[str, List[Dict[str, Any]]] = {}
    for exp in exps:
        status = statuses.get(exp.sha, exp.status)
        if _earlier(exp):
            view = chain_view(repo, store, exp, status)
            out[exp.sha] = view.clocked
            exp.summary.update({k: v for k, v in view.fields.items() if v is not None})
        elif status in LIVE or status == Status.LOST:
            run = read(repo, exp, status)
            if run is not None:
                out[exp.sha] = run.history
    from .history_file import read_histories

    out.update(read_histories(store, [e for e in exps if e.sha not in out]))  # summary curves where kept
    return out


def _specs(repo: Repo, exp: Experiment) -> Dict[str, "MetricSpec"]:
    """The metrics part of the run's config (goals, metrics files); {} when unreadable."""
    config = _config(repo, exp)
    return dict(config.metrics) if config is not None else {}


def _config(repo: Repo, exp: Experiment) -> Any:
    """The run's stored config (an ExperimentConfig), or None when unreadable."""
    from .storedconfig import load_experiment_config

    try:
        return load_experiment_config(repo, exp.sha, errors="replace")
    except GitExpError:  # not an experiment commit, or a config that does not parse
        return None
