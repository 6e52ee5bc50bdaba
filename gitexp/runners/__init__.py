"""Runners decide where and when the one executor (``git exp _exec <sha>``) starts.

The registry: a runner's name (as recorded in a summary's ``runner``) names its class, and the
summary's ``target`` names the run target it was submitted to. :func:`runner_for` gives the
runner that speaks for an experiment: the target's runner, reached over ssh
(:class:`~gitexp.runners.ssh.SshRunner`) when the target is on another host. Commands, status,
the queue and the executor dispatch through here; nothing else compares runner names.

The table of runner names and classes is :mod:`gitexp.runners.registry` (re-exported here);
classes are imported on first use: ``git exp log`` should not import the executor.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Dict, List, Mapping, Optional, Sequence, Tuple

from .registry import DEFAULT, RUNNERS, runner_class

if TYPE_CHECKING:
    from ..notes import Experiment, Store
    from ..repo import Repo
    from ..targets import Target
    from .base import Runner
    from .ssh import SshRunner

__all__ = ["DEFAULT", "RUNNERS", "group", "runner_class", "runner_for", "runner_for_target", "target_of"]


def runner_for_target(repo: "Repo", store: "Store", target: "Target") -> "Runner":
    """The runner that submits to ``target`` from here."""
    if target.host:
        from .ssh import SshRunner

        return SshRunner(repo, store, target)
    return runner_class(target.runner)(repo, store, target)


def far_runner(repo: "Repo", store: "Store", target: "Target", hint: Optional[str] = None) -> "SshRunner":
    """The runner of ``target`` on another host, which answers ``--on`` questions (its queue,
    its processes, its ui) in one ssh round trip; BadInput when ``target`` is this machine."""
    if not target.host:
        from ..errors import BadInput

        raise BadInput(f"run target {target.name!r} is not on another host", hint)
    from .ssh import SshRunner

    return SshRunner(repo, store, target)


def target_of(summary: Mapping[str, object], targets: Mapping[str, "Target"]) -> "Target":
    """The run target a summary names (``target``; older Slurm notes: ``slurm.remote``).

    A target not defined here (a colleague's, or removed) is rebuilt from the note: its runner
    on this machine, which judges the run from its note alone.
    """
    from ..targets import Target

    name = summary.get("target")
    if not isinstance(name, str):
        slurm = summary.get("slurm")
        name = slurm.get("remote") if isinstance(slurm, dict) else None
    runner = summary.get("runner")
    runner = runner if isinstance(runner, str) and runner in RUNNERS else DEFAULT
    if isinstance(name, str) and name in targets:
        return targets[name]
    return Target(name if isinstance(name, str) else "", runner)


def runner_for(repo: "Repo", store: "Store", exp: "Experiment",
               targets: "Optional[Mapping[str, Target]]" = None) -> "Runner":
    """The runner that speaks for a recorded experiment."""
    if targets is None:
        targets = _targets(repo)
    return runner_for_target(repo, store, target_of(exp.summary, targets))


def group(repo: "Repo", store: "Store", exps: "Sequence[Experiment]") -> "List[Tuple[Runner, List[Experiment]]]":
    """Experiments grouped by the runner that answers for them, one runner per batch key."""
    targets = _targets(repo) if any(e.summary.get("target") or e.summary.get("slurm") for e in exps) else {}
    groups: Dict[Tuple[str, ...], Tuple[Runner, List[Experiment]]] = {}
    made: Dict[Tuple[str, str], Runner] = {}
    for exp in exps:
        target = target_of(exp.summary, targets)
        key = (target.name, target.runner)
        runner = made.get(key)
        if runner is None:
            runner = made[key] = runner_for_target(repo, store, target)
        groups.setdefault(runner.batch_key(), (runner, []))[1].append(exp)
    return list(groups.values())


def _targets(repo: "Repo") -> "Dict[str, Target]":
    from ..errors import BadInput
    from ..targets import load_targets

    try:
        return load_targets(repo)
    except BadInput:
        return {}  # a broken .gitexp.yaml must not stop log/queue: runs are judged by their notes
