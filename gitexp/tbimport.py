"""``git exp import tensorboard LOGDIR``: a finished run made before gitexp, recorded as an
experiment from its TensorBoard event files.

The experiment is a commit of the working tree as it is now (the code that made the run is not
known) with the config (``--config``, else a minimal one naming the import), status
``finished``, ``imported: {from: LOGDIR}`` in its summary, its times from the events' wall
times, and every scalar tag as a metric: a tag a ``tfevents:`` metric of the config names gets
that metric's name and goal; other tags are recorded under their own names, without a goal.
Written in one transaction: the ref, the summary, the metric history and the details.
"""
from __future__ import annotations

import os
import re
import sys
from typing import Any, Dict, List, Optional, Tuple

from . import experiments, lifecycle, metrics, tfevents
from .config import ExperimentConfig, check_name, parse_config
from .errors import BadInput
from .notes import DETAILS_REF, METRICS_REF, Experiment, Store, dump_json, jsonl
from .repo import Repo


def default_name(logdir: str) -> str:
    base = os.path.basename(os.path.normpath(os.path.abspath(logdir)))
    name = re.sub(r"[^A-Za-z0-9._=,+-]", "_", base).lstrip("._=,+-").replace("..", "_").rstrip(".")
    return name[:100] if name and not check_name(name) else "imported"


def minimal_config(name: str) -> ExperimentConfig:
    return parse_config(f"name: {name}\ncommand: 'true'\n", "<import>")


def read_logdir(logdir: str, warn: Any = None) -> Tuple[List[str], List[tfevents.Scalar]]:
    """The event files under ``logdir`` and all their scalars (corrupt records skipped with a warning)."""
    if not os.path.isdir(logdir):
        raise BadInput(f"{logdir}: not a directory", "give the TensorBoard log directory of the run")
    files = tfevents.logdir_files(logdir)
    if not files:
        raise BadInput(f"{logdir}: no TensorBoard event files ({tfevents.PATTERN_HINT}) under it")
    problems: List[str] = []
    reader = tfevents.EventFiles(problems.append)
    scalars = [s for path in files for s in reader.scalars(path)]
    if not scalars:  # one line: why, with the first problem met
        why = f" ({problems[0].replace('gitexp: warning: ', '')})" if problems else ""
        raise BadInput(f"{logdir}: its {len(files)} event file(s) hold no scalars{why}")
    for problem in problems:
        (warn or _stderr)(problem)
    return files, scalars


def _stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def history_of(config: ExperimentConfig, scalars: List[tfevents.Scalar]
               ) -> Tuple[List[Dict[str, Any]], Dict[str, str]]:
    """The history, every tag a metric (renamed where a ``tfevents:`` metric of the config maps it)."""
    renamed = {(spec.tag or name): name for name, spec in config.metrics.items() if spec.tfevents}
    records = [metrics.captured_record(renamed.get(s.tag, s.tag), s.value, s.step, s.wall_time, "file")
               for s in scalars]
    return metrics.build_history([], records)


def import_logdir(repo: Repo, store: Store, logdir: str, config: Optional[ExperimentConfig] = None,
                  name: Optional[str] = None, warn: Any = None) -> Tuple[Experiment, List[str]]:
    """Record ``logdir`` as a finished, imported experiment; it and the event files read."""
    if name is not None and check_name(name):
        raise BadInput(f"--name {name!r} is not usable as an experiment name", check_name(name))
    files, scalars = read_logdir(logdir, warn)
    config = config or minimal_config(name or default_name(logdir))
    if name:
        config = config.with_params({}, name=name)
    repo.head()  # a repository with no commits is bad input, before anything is written
    history, sources = history_of(config, scalars)
    times = [s.wall_time for s in scalars if s.wall_time > 0]
    started, ended = (min(times), max(times)) if times else (None, None)
    snap = experiments.take_snapshot(repo, config.snapshot)
    sha = experiments.make_commit(repo, snap, config)
    summary = experiments.initial_summary(config, snap, lifecycle.Status.FINISHED)
    summary.update({"metrics": metrics.summarize(history, config.metrics, sources), "exit_code": 0,
                    "imported": {"from": os.path.abspath(logdir), "files": len(files)},
                    "started": started, "ended": ended,
                    "duration": (ended - started) if started is not None and ended is not None else None})
    details = {**snap.details(), "imported": {"from": os.path.abspath(logdir),
                                              "files": [os.path.relpath(f, logdir) for f in files]}}
    notes = {(METRICS_REF, sha): jsonl(history), (DETAILS_REF, sha): dump_json(details)}
    recorded = lifecycle.record_one(store, config.name, sha, summary, (), extra_notes=notes)
    return Experiment(sha, recorded, summary), files
