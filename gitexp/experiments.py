"""Experiments as commits: make them from a config, and tell their live status.

An experiment commit holds the working tree as it is now (tracked and untracked,
non-ignored files, uncommitted edits included) plus the resolved config at
``.gitexp/experiment.yaml``; its parent is ``HEAD``. It is built with a temporary index and
written without touching the user's index, working tree, ``HEAD`` or branches.
"""
from __future__ import annotations

import os
import socket
import sys
import time
import uuid
from .lifecycle import Status
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import yaml

from .config import ExperimentConfig
from .errors import BadInput
from . import lifecycle
from . import snapshot as snapshot_mod
from .notes import CONFIG_PATH, DETAILS_REF, Experiment, Store, dump_json, free_name
from .evidence import process_start_time, local_executor, local_program, process_alive as process_alive, ran_here, read_exec_info as read_exec_info
from .paths import SILENT_LOST_SECONDS, run_paths, runs_root
from .repo import RefUpdate, Repo

_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml when present: sweeps dump 1,000s


@dataclass
class Snapshot:
    """What every experiment made from the current working tree shares."""

    head: str
    tree: str
    dirty: bool
    submodules: Dict[str, str]  # path -> the commit recorded for it
    left_out: List[snapshot_mod.LeftOut] = field(default_factory=list)

    def details(self) -> Dict[str, Any]:
        """What the details note keeps about the snapshot (empty when nothing was left out)."""
        return {"snapshot": dict(snapshot_mod.details(self.left_out))} if self.left_out else {}


def _stderr(text: str) -> None:
    print(f"gitexp: warning: {text}", file=sys.stderr, flush=True)


def take_snapshot(repo: Repo, spec: Optional[snapshot_mod.SnapshotSpec] = None,
                  warn: Callable[[str], None] = _stderr) -> Snapshot:
    """Snapshot the working tree within ``spec``'s limits; ``warn`` hears what was left out."""
    head = repo.head()
    spec = replace(spec or snapshot_mod.SnapshotSpec())
    runs = runs_root(repo)
    if os.path.commonpath([os.path.abspath(runs), repo.root]) == repo.root and runs != repo.root:
        spec.never = [os.path.relpath(runs, repo.root).replace(os.sep, "/") + "/"]
    chosen: List[snapshot_mod.LeftOut] = []

    def choose(untracked: List[Tuple[str, int]]) -> List[str]:
        taken, left = snapshot_mod.choose(spec, untracked)
        chosen.extend(left)
        return taken

    tree, dirty = repo.snapshot(choose)
    message = snapshot_mod.warning(chosen)
    if message:
        warn(message)
    return Snapshot(head=head, tree=tree, dirty=dirty, submodules=repo.gitlinks(tree), left_out=chosen)


def check_files(repo: Repo, config: ExperimentConfig) -> None:
    for path in config.files:
        full = path if os.path.isabs(path) else os.path.join(repo.root, path)
        if not os.path.exists(full):
            raise BadInput(f"{config.where('files')}: file listed under 'files' does not exist: {path}",
                           "fix the path (relative to the repository root)")


def commit_message(config: ExperimentConfig, title: str = "", trailers: Sequence[str] = ()) -> str:
    """The message of a run commit; its ``Gitexp-Run`` trailer is random.

    Without it, two runs of one config from one tree in the same second would be the very
    same commit (same tree, parent, message and timestamp) and share a note and a run
    directory: every run must be a commit of its own, whatever the timing.
    """
    lines = [f"exp: {config.name}{title}", ""]
    lines += [f"{k} = {v}" for k, v in config.params.items()]
    lines += ["", f"Gitexp-Config-Hash: {config.config_hash()}", *trailers, f"Gitexp-Run: {uuid.uuid4().hex}"]
    return "\n".join(lines) + "\n"


def config_tree(repo: Repo, base_tree: str, config: ExperimentConfig) -> str:
    """``base_tree`` with the resolved config at CONFIG_PATH."""
    resolved = config.to_dict()
    resolved["source_root"] = repo.root
    text = yaml.dump(resolved, Dumper=_Dumper, sort_keys=False, default_flow_style=False)
    return repo.build_tree(base_tree, {CONFIG_PATH: repo.hash_blob(text.encode())})


def make_commit(repo: Repo, snap: Snapshot, config: ExperimentConfig) -> str:
    return repo.commit_tree(config_tree(repo, snap.tree, config), [snap.head], commit_message(config))


def initial_summary(config: ExperimentConfig, snap: Snapshot, status: str) -> Dict[str, Any]:
    return {
        "schema": 1,
        "name": config.name,
        "group": config.group,
        "description": config.description,
        "params": config.params,
        "config_hash": config.config_hash(),
        "goals": {n: m.goal for n, m in config.metrics.items()},
        "status": status,
        "created": time.time(),
        "parent": snap.head,
        "parent_dirty": snap.dirty,
        **({"submodules": snap.submodules} if snap.submodules else {}),
        **({"creator": creator_identity()} if status == Status.CREATED else {}),
    }


def creator_identity() -> Dict[str, Any]:
    """This process, as the ``creator`` of a run nobody has started yet (see effective_status)."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "pid_started": process_start_time(os.getpid())}


def create(repo: Repo, store: Store, config: ExperimentConfig, status: str = Status.CREATED,
           snap: Optional[Snapshot] = None, extra_refs: Sequence[RefUpdate] = (),
           warn: Callable[[str], None] = _stderr) -> Experiment:
    """Commit the experiment and record it under ``refs/exps/<name>`` with its first note."""
    check_files(repo, config)
    snap = snap or take_snapshot(repo, config.snapshot, warn)
    sha = make_commit(repo, snap, config)
    summary = initial_summary(config, snap, status)
    details = snap.details()
    extra = {(DETAILS_REF, sha): dump_json(details)} if details else {}
    name = lifecycle.record_one(store, config.name, sha, summary, extra_refs, extra_notes=extra)
    return Experiment(sha, name, summary)


def free_names(store: Store, bases: Sequence[str]) -> List[str]:
    """The names recording would give ``bases``: a taken name gets -2, -3, ... (as Store.create)."""
    taken = set(store.experiment_refs())
    return [free_name(base, taken) for base in bases]


def make_experiments(repo: Repo, store: Store, snap: Snapshot, configs: List[ExperimentConfig],
                     status: str) -> List[Experiment]:
    """Commits and first summaries for many configs, each with a free name (not yet recorded)."""
    exps = []
    for config, name in zip(configs, free_names(store, [c.name for c in configs])):
        config = config.with_params({}, name=name)
        sha = make_commit(repo, snap, config)
        exps.append(Experiment(sha, name, initial_summary(config, snap, status)))
    return exps


def create_many(repo: Repo, store: Store, configs: List[ExperimentConfig], status: str,
                extra_refs_for: Any = None, warn: Callable[[str], None] = _stderr) -> List[Experiment]:
    """Many experiments in one pack, one notes commit and one ref transaction (sweeps)."""
    for config in configs:
        check_files(repo, config)
    snap = take_snapshot(repo, configs[0].snapshot, warn)
    with repo.batch():
        exps = make_experiments(repo, store, snap, configs, status)
        details = snap.details()
        extra = {(DETAILS_REF, e.sha): dump_json(details) for e in exps} if details else {}
        lifecycle.record(store, exps, extra_refs_for, extra_notes=extra)
    return exps


# -- live status ------------------------------------------------------------------------------
def effective_status(repo: Repo, exp: Experiment, host: Optional[str] = None) -> str:
    """The recorded status, except that a run whose executor died silently is ``lost``.

    The local runner's judgement (``LocalRunner.states``): other runners judge their own runs
    (``gitexp.status`` asks each experiment's runner).
    """
    status = exp.status
    summary = exp.summary
    if status == Status.STARTING:  # claimed by a queue worker, executor not yet running
        worker = summary.get("worker") or {}
        if worker.get("host") == (host or socket.gethostname()):
            return status if process_alive(worker.get("pid"), worker.get("pid_started")) else Status.LOST
        return status
    if status == Status.CREATED:
        # Nothing said it started yet: it belongs to the executor named in exec.json (written
        # by run --detach and by the executor first thing), else to the process that recorded
        # it. When that process is gone on this host, the run was lost between the two.
        info = read_exec_info(run_paths(repo, exp.sha).exec_info)
        owner = info if info.get("pid") else (summary.get("creator") or {})
        if isinstance(owner, dict) and owner.get("pid") and owner.get("host") == (host or socket.gethostname()) \
                and not process_alive(owner.get("pid"), owner.get("pid_started")):
            return Status.LOST
        return status
    if status != lifecycle.Status.RUNNING:  # pending and queued runs: their scheduler or queue judges
        return status
    host = host or socket.gethostname()
    if summary.get("host") == host:
        # The note is a claim (it may have been pulled): only this repository's run directory
        # says whether the run is alive here. Its executor, or its program when the executor
        # died (SIGKILL, OOM killer) and the program lives on: not lost while it does, so no
        # retry or resume starts a second copy beside it.
        if local_executor(repo, exp.sha) or local_program(repo, exp.sha):
            return status
        # No run directory here: another repository's run (on this host), not ours to judge.
        return Status.LOST if ran_here(repo, exp.sha) else status
    info_path = run_paths(repo, exp.sha).exec_info
    try:
        age = time.time() - os.path.getmtime(info_path)
    except OSError:
        return status
    return status if age < SILENT_LOST_SECONDS else Status.LOST

