"""The points of a run in progress on this machine, read from its run directory.

The executor writes notes at start, every ``GITEXP_NOTES_INTERVAL`` seconds and at the end;
in between, the points are in the run directory: ``metrics.jsonl`` (the Python API, flushed
each second), ``captured.jsonl`` (regex points, appended as the output arrives) and the
metrics files in ``out/``. For a run that is running (or starting) here, ``log``, ``show``
and ``metrics`` build its history from those files exactly as the executor builds the notes
(:func:`gitexp.metrics.build_history`, :func:`gitexp.metrics.summarize`), so they show the
points printed a moment ago; for every other run they read the notes.

Cost: only runs whose note says running/starting on this host are looked at, and only those
whose executor (named in ``exec.json``) is alive have files read, so listing 10,000 ended
experiments reads no file.
"""
from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional

from . import metrics as metrics_mod
from .config import MetricSpec, parse_config
from .errors import GitExpError
from .experiments import effective_status, process_alive, read_exec_info
from . import summary as checks
from .notes import CONFIG_PATH, METRICS_REF, Experiment, Store
from .paths import run_paths
from .repo import Repo

OPEN = ("running", "starting")


@dataclass
class LiveRun:
    history: List[Dict[str, Any]]
    metrics: Dict[str, Dict[str, Any]]  # summaries, as the executor would write them


def _ours(exp: Experiment, status: str, host: str) -> bool:
    """Whether the note says this run is open on this host (no file is read to say so)."""
    if status not in OPEN:
        return False
    summary = exp.summary
    worker = summary.get("worker")
    if status == "starting" and isinstance(worker, dict) and worker.get("host"):
        return worker.get("host") == host  # claimed by a queue worker (or a local run's executor)
    return summary.get("host") == host


def read(repo: Repo, exp: Experiment, status: Optional[str] = None,
         host: Optional[str] = None) -> Optional[LiveRun]:
    """The run's history and summaries from its run directory, or None when it is not a run
    in progress on this machine (then the notes have what there is)."""
    host = host or socket.gethostname()
    if status is None:
        status = effective_status(repo, exp, host) if exp.status in OPEN else exp.status
    if not _ours(exp, status, host):
        return None
    paths = run_paths(repo, exp.sha, exp.summary)  # this machine's directory, never a path from the note
    info = read_exec_info(paths.exec_info)
    # The executor removes a previous attempt's files before it names itself in exec.json:
    # with it alive, what the directory holds is this attempt's.
    if not info or info.get("host") != host or not process_alive(info.get("pid"), info.get("pid_started")):
        return None
    specs = _specs(repo, exp)
    try:
        records = metrics_mod.read_captured(paths.captured)
        records += metrics_mod.file_records(specs, paths.outdir)
        history, sources = metrics_mod.build_history(metrics_mod.read_points(paths.metrics), records)
    except (OSError, ValueError, TypeError, RecursionError):
        return None  # a file being replaced or unreadable: the notes still answer
    return LiveRun(history, metrics_mod.summarize(history, specs, sources))


def refresh(repo: Repo, exps: Iterable[Experiment], statuses: Mapping[str, str]) -> None:
    """Give each run in progress on this machine its live metric summaries (in its summary)."""
    host = socket.gethostname()
    for exp in exps:
        status = statuses.get(exp.sha, exp.status)
        if not _ours(exp, status, host):
            continue
        run = read(repo, exp, status, host)
        if run is not None:
            exp.summary["metrics"] = run.metrics


def history(repo: Repo, exp: Experiment, store: Store, raw: bool = False) -> List[Dict[str, Any]]:
    """The whole history so far: live for a run in progress here, else the note's; across
    the attempts of its chain (see :func:`gitexp.attempts.join_histories`) unless ``raw``."""
    from .attempts import chain_shas, join_histories

    run = read(repo, exp)
    own = run.history if run is not None else store.history(exp.sha)
    earlier = chain_shas(exp.summary, exp.sha)[:-1]
    if raw or not earlier:
        return own
    notes = store.read_notes(METRICS_REF, earlier)
    return join_histories([checks.load_history(sha, notes.get(sha, b""), METRICS_REF) for sha in earlier] + [own])


def step_notes(metrics: Mapping[str, Any]) -> List[str]:
    """Lines for ``show`` saying whose steps are not the program's own (match counts)."""
    counted = sorted(name for name, entry in metrics.items()
                     if isinstance(entry, dict) and "count" in str(entry.get("step_source") or "").split("+"))
    if not counted:
        return []
    from .commands.common import cell

    names = ", ".join(cell(name) for name in counted)
    return [f"steps: match count for {names} (the n-th match is step n; "
            "give the config a step: {regex: ...} or step: latest for the program's steps)"]


def _specs(repo: Repo, exp: Experiment) -> Dict[str, MetricSpec]:
    """The metrics part of the run's config (goals, metrics files); {} when unreadable."""
    try:
        raw = repo.show_file(exp.sha, CONFIG_PATH)
        if raw is None:
            return {}
        return dict(parse_config(raw.decode(errors="replace"), source=f"{exp.sha[:12]}:{CONFIG_PATH}",
                                 stored=True).metrics)
    except GitExpError:
        return {}
