"""Attempts: an experiment runs again (retry, resume) as a new run commit on its branch.

The first run is attempt 1. ``git exp queue retry`` and ``--retry-lost`` (start over) and
``git exp resume`` (continue from a checkpoint) each make attempt *n+1*: a new commit whose
parent is the experiment's current run commit (the tree changes only when params do), with a
summary note of its own, and ``refs/exps/<name>`` moves to it with compare-and-swap. So every
attempt has its own id, run directory, output log, metric history, exit status and reason,
and nothing of an earlier attempt is overwritten. The summary of attempt *n* names the chain:

* ``attempt``: *n*; ``chain``: the earlier attempts' commits, oldest first; ``kind``:
  ``retry`` or ``resume``;
* ``resume``: the checkpoint it starts from (``checkpoint`` path, ``step``, ``attempt`` whose
  pointer it is, ``host``); ``outdir_of``: the commit whose ``out/`` it shares (a resume
  continues in the same output directory);
* ``param_changes``: ``{param: [old, new]}`` when ``-p`` changed params on resume.

An attempt that had not recorded an end (its executor died: ``lost``) is recorded ``lost``
when the next one starts, with whatever its run directory still holds (points, checkpoint
pointers) recovered into its notes. A new attempt never starts while an earlier attempt's
program is alive.
"""
from __future__ import annotations

import os
import re
import shlex
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple


from . import checkpoints as ckpt
from . import evidence
from . import metrics as metrics_mod
from .config import ExperimentConfig, Scalar
from .errors import BadInput
from .evidence import local_executor, local_program, process_alive
from .experiments import commit_message, config_tree, creator_identity
from .lifecycle import FINAL, Status, transition
from .notes import METRICS_REF, Experiment, Store, jsonl
from .paths import run_paths
from .repo import Repo
from .rundirs import leftovers
from .storedconfig import load_experiment_config
from .supervisor import describe
from .values import short

_SHA = re.compile(r"^[0-9a-f]{40}$")
# Fields of the summary an attempt inherits (what the experiment is, not how a run went;
# auto_resumes counts along the whole chain, so a manual resume does not reset it).
INHERITED = ("name", "group", "description", "config_hash", "goals", "parent", "parent_dirty", "submodules",
             "target", "runner", "auto_resumes")


def chain_shas(summary: Dict[str, Any], sha: str) -> List[str]:
    """The attempts up to ``sha``, oldest first (a note's chain is checked: only commit ids)."""
    chain = summary.get("chain")
    earlier = [c for c in chain if isinstance(c, str) and _SHA.match(c)] if isinstance(chain, list) else []
    return earlier + [sha]


def chain_of(store: Store, exp: Experiment) -> List[Tuple[str, Dict[str, Any]]]:
    """(sha, summary) of every attempt of ``exp``'s chain up to ``exp``, oldest first."""
    shas = [*evidence.verified_chain(store.repo, exp.sha, exp.summary), exp.sha]  # the note's chain is a claim
    notes = store.read_notes_json(shas[:-1]) if len(shas) > 1 else {}
    return [(sha, notes.get(sha, {})) for sha in shas[:-1]] + [(exp.sha, exp.summary)]


def chain_rows(store: Store, exp: Experiment, status: str) -> List[Dict[str, Any]]:
    """One row per attempt of ``exp``'s chain: where it stopped and why, what it resumed from
    (``show`` and the ui's run page)."""
    rows = []
    chain = chain_of(store, exp)
    for n, (sha, s) in enumerate(chain, 1):
        resume = s.get("resume") if isinstance(s.get("resume"), dict) else {}
        rows.append({"attempt": n, "id": sha,  # the chain's order is the attempts' order
                     "kind": s.get("kind") or ("run" if n == 1 else "retry"),
                     "status": status if sha == exp.sha else s.get("status", "?"), "reason": s.get("reason"),
                     "ended": s.get("ended"), "host": s.get("host"),
                     "resumed_from": {"checkpoint": resume.get("checkpoint"), "step": resume.get("step"),
                                      "attempt": resume.get("attempt")} if resume else None,
                     "param_changes": s.get("param_changes")})
    return rows


def find_attempt(store: Store, ident: str) -> Tuple[Experiment, Experiment]:
    """(the attempt ``ident`` names, the experiment's current attempt). ``ident``: a name, or a
    prefix of any attempt's commit."""
    exp = store.find(ident)
    tip = store.experiment_refs().get(exp.name)
    if tip is None or tip == exp.sha:
        return exp, exp
    return exp, Experiment(tip, exp.name, store.summary(tip))


def join_histories(histories: Sequence[List[Dict[str, Any]]]) -> List[Dict[str, Any]]:
    """One curve across a chain of histories (oldest first), steps as logged: where a later
    attempt has points, they replace the earlier ones from its first step on."""
    return join_chain(histories, [("", {}) for _ in histories]).history


@dataclass
class Joined:
    history: List[Dict[str, Any]]
    attempt_of: List[int]  # per record, the index of the attempt that logged it
    warnings: List[Tuple[str, str]] = field(default_factory=list)  # (attempt sha, text)


def _steps(history: Sequence[Dict[str, Any]]) -> List[float]:
    return [r["step"] for r in history if metrics_mod.is_number(r.get("step"))]


def join_chain(histories: Sequence[List[Dict[str, Any]]], chain: Sequence[Tuple[str, Dict[str, Any]]],
               rule: str = "continue") -> Joined:
    """One curve across a chain (oldest attempt first; ``chain`` holds each attempt's sha and
    summary): a later attempt's points replace the earlier ones from its first step on (a
    resume repeats the steps after its checkpoint; a retry starts over).

    A resumed program that restarted its step counter (its first step is below the step of the
    checkpoint it resumed from) would wipe the curve that way. Under ``rule`` ``continue`` (the
    config's ``checkpoints: {resume_steps: continue}``, the default) its steps are moved on so
    that its first point comes right after the checkpoint's step (when the checkpoint's step is
    unknown: after the curve's last step), and the same holds for later attempts resumed from
    its checkpoints; under ``as_logged`` they stay as logged and replace the earlier points.
    Either way a warning says so (``metrics --raw`` gives each attempt's own points).
    """
    combined: List[Tuple[int, Dict[str, Any]]] = []
    offsets: Dict[str, float] = {}
    firsts: Dict[str, float] = {}
    warnings: List[Tuple[str, str]] = []
    for n, (history, (sha, summary)) in enumerate(zip(histories, chain)):
        steps = _steps(history)
        offset = 0.0
        if n and steps and summary.get("kind") == "resume":
            offset = _offset(n, sha, summary, min(steps), combined, offsets, firsts, chain, rule, warnings)
        offsets[sha], firsts[sha] = offset, min(steps) if steps else 0
        moved = [r if not offset or not metrics_mod.is_number(r.get("step")) else {**r, "step": _plus(r["step"], offset)}
                 for r in history]
        if steps:
            cut = min(steps) + offset
            combined = [(i, r) for i, r in combined if not (metrics_mod.is_number(r.get("step")) and r["step"] >= cut)]
        combined.extend((n, r) for r in moved)
    return Joined([r for _i, r in combined], [i for i, _r in combined], warnings)


def _plus(step: Any, offset: float) -> Any:
    moved = step + offset
    return int(moved) if float(moved).is_integer() else moved


def _offset(n: int, sha: str, summary: Dict[str, Any], first: float, combined: List[Tuple[int, Dict[str, Any]]],
            offsets: Dict[str, float], firsts: Dict[str, float], chain: Sequence[Tuple[str, Dict[str, Any]]],
            rule: str, warnings: List[Tuple[str, str]]) -> float:
    """How far the steps of resumed attempt ``n`` move (see :func:`join_chain`)."""
    given = summary.get("resume")
    resume: Dict[str, Any] = given if isinstance(given, dict) else {}
    named = resume.get("attempt")
    source: str = named if isinstance(named, str) and named in offsets else chain[n - 1][0]
    base = offsets.get(source, 0.0)
    at = resume.get("step") if metrics_mod.is_number(resume.get("step")) else None
    restarted = first < at if at is not None else first <= firsts.get(source, 0)
    if not restarted:
        return base
    said = f"from step {at:g}" if at is not None else "from a checkpoint without a step"
    head = (f"attempt {n + 1} ({short(sha)}) resumed {said} but restarted its step counter at {first:g}: ")
    if rule == "as_logged":
        hidden = sum(1 for _i, r in combined if metrics_mod.is_number(r.get("step")) and r["step"] >= first + base)
        warnings.append((sha, head + f"its points replace {hidden} earlier point(s) from step {first + base:g} on "
                         "(checkpoints: {resume_steps: as_logged}); git exp metrics --raw gives each attempt's own"))
        return base
    offset: float
    if at is not None:
        offset = base + at + 1 - first
    else:
        last = max([r["step"] for _i, r in combined if metrics_mod.is_number(r.get("step"))], default=first - 1)
        offset = last + 1 - first
    warnings.append((sha, head + f"its steps are shown from {first + offset:g} on, continuing the curve "
                     "(checkpoints: {resume_steps: as_logged} keeps them as logged); "
                     "git exp metrics --raw gives each attempt's own"))
    return offset


# -- liveness and recovery -------------------------------------------------------------------
def live_program(repo: Repo, exp: Experiment) -> Optional[str]:
    """What of ``exp``'s run is still alive on this machine (executor or program), or None.

    Judged from this repository's run directory (``gitexp.evidence``), never from a pid in the
    note. The calling process does not count: an executor resubmitting its own ended run
    (``auto_resume``) is about to exit.
    """
    executor = local_executor(repo, exp.sha)
    if executor and executor[0] != os.getpid():
        return f"its executor (pid {executor[0]})"
    program = local_program(repo, exp.sha)
    if program:
        return f"its program (pid {program}), whose executor died"
    left = leftovers(repo, exp.sha)
    if left:
        return f"process(es) its program started ({describe(left)}), whose executor died"
    s = exp.summary
    worker = s.get("worker")
    if s.get("status") == Status.STARTING and isinstance(worker, dict) and worker.get("host") == socket.gethostname() \
            and process_alive(worker.get("pid"), worker.get("pid_started")):
        return f"the queue worker that claimed it (pid {worker.get('pid')})"
    return None


def recovered(repo: Repo, exp: Experiment) -> Tuple[Dict[str, Any], Dict[Tuple[str, str], Optional[bytes]]]:
    """What a dead executor had not written, from the run directory: summary fields and notes."""
    paths = run_paths(repo, exp.sha, exp.summary)
    specs: Dict[str, Any] = {}
    try:
        specs = dict(load_experiment_config(repo, exp.sha).metrics)
    except Exception:  # noqa: BLE001 - an unreadable config still keeps the API and regex points
        pass
    history, sources = metrics_mod.run_dir_history(paths, specs)  # as `show` and `metrics` read a lost run
    fields: Dict[str, Any] = {}
    notes: Dict[Tuple[str, str], Optional[bytes]] = {}
    if history:
        fields["metrics"] = metrics_mod.summarize(history, specs, sources)
        notes[(METRICS_REF, exp.sha)] = jsonl(history)
    pointers = metrics_mod.read_checkpoints(paths.checkpoints)
    if pointers:
        fields["checkpoints"] = pointers[-20:]
    return fields, notes


Recovered = Tuple[Dict[str, Any], Dict[Tuple[str, str], Optional[bytes]]]


def ensure_ended(repo: Repo, exp: Experiment, reach: bool = False) -> None:
    """Refuse (BadInput, nothing written) while anything of ``exp``'s run is alive or active."""
    alive = live_program(repo, exp)
    if alive:
        raise BadInput(f"{exp.name} is still running ({alive}); nothing was started",
                       f"wait for it, or stop it first: git exp cancel {short(exp.sha)}")
    if exp.status in FINAL:
        return
    from .status import live_status

    live, reason = live_status(repo, exp, reach=reach)
    if live != Status.LOST and live not in FINAL:
        raise BadInput(f"{exp.name} is {live}" + (f" ({reason})" if reason else "") + "; nothing was started",
                       f"wait for it to end, or stop it first: git exp cancel {short(exp.sha)}")


def supersede(repo: Repo, store: Store, exp: Experiment, why: str, found: Optional[Recovered] = None
              ) -> Dict[str, Any]:
    """The current attempt's summary once it has surely ended: a dead one is recorded ``lost``
    with what its run directory holds (``found``: that, already read). Refuses as ensure_ended."""
    ensure_ended(repo, exp)
    if exp.status in FINAL:
        return exp.summary
    fields, notes = found if found is not None else recovered(repo, exp)
    fields = {**fields, "ended": time.time(), "reason": f"its executor died without recording an end; {why}"}
    done = transition(store, exp.sha, Status.LOST, fields, extra=notes, message=f"gitexp: {exp.name} lost")
    return done or store.summary(exp.sha)


# -- making an attempt ---------------------------------------------------------------------------
def make_attempt(repo: Repo, store: Store, current: Experiment, kind: str, status: Status,
                 overrides: Optional[Dict[str, Scalar]] = None,
                 resume: Optional[Dict[str, Any]] = None) -> Tuple[Experiment, ExperimentConfig]:
    """The next attempt's commit and summary (not recorded: see :func:`record`)."""
    config = load_experiment_config(repo, current.sha)
    changes = {k: [config.params.get(k), v] for k, v in (overrides or {}).items() if config.params.get(k) != v}
    tree = repo.commit_object(current.sha).tree.decode()
    if changes:  # else the tree stays the very same
        config = config.with_params({k: v for k, (_old, v) in changes.items()})
        tree = config_tree(repo, tree, config)
    n = current.attempt + 1
    what = f"resume from step {resume.get('step')}" if resume else "retry"
    message = commit_message(config, f" (attempt {n}: {what})",
                             [f"Gitexp-Attempt: {n}", f"Gitexp-Continues: {current.sha}"])
    sha = repo.commit_tree(tree, [current.sha], message)
    summary: Dict[str, Any] = {k: current.summary[k] for k in INHERITED if k in current.summary}
    summary.update(schema=2, params=config.params, config_hash=config.config_hash(), status=status.value,
                   created=time.time(), attempt=n, kind=kind, chain=chain_shas(current.summary, current.sha))
    if changes:
        summary["param_changes"] = changes
    if resume:
        summary["resume"] = resume
        owner = current.summary.get("outdir_of")  # only an earlier attempt of this very chain
        own_line = evidence.verified_chain(repo, current.sha, current.summary)
        summary["outdir_of"] = owner if isinstance(owner, str) and owner in own_line else current.sha
    if status is Status.CREATED:
        summary["creator"] = creator_identity()
    exp = Experiment(sha, current.name, summary, previous=current.sha)
    return exp, config


def resume_point(repo: Repo, store: Store, chain: Sequence[Tuple[str, Dict[str, Any]]], step: Optional[int],
                 here: bool = True, given: Optional[str] = None) -> Dict[str, Any]:
    """The checkpoint to resume from: the newest of the chain, or the one at ``step``.

    Pointers come from notes, which may have been pulled: on this machine one is followed
    only when local evidence backs it (:func:`trusted_checkpoint`). ``given``: a path the
    user named on the command line (``--checkpoint``), used as it is.
    """
    name = chain[-1][1].get("name") or short(chain[-1][0])
    if given is not None:
        if not os.path.isfile(given):
            raise BadInput(f"--checkpoint {given}: no such file on this machine; nothing was started",
                           "give the path of a checkpoint file")
        return {"checkpoint": os.path.abspath(given), "step": step, "attempt": chain[-1][0],
                "host": socket.gethostname(), "given": True}
    candidates = ckpt.chain_checkpoints(chain)
    if not candidates:
        raise BadInput(f"{name} recorded no checkpoint to resume from; nothing was started",
                       "record them with gitexp.checkpoint(path, step=...) or `checkpoints:` in the config, "
                       "or start it over: git exp resume --from-scratch")
    if here:
        shas = [sha for sha, _summary in chain]
        untrusted = [c for c in candidates if not trusted_checkpoint(repo, shas, c["path"])]
        candidates = [c for c in candidates if c not in untrusted]
        bad = next((c for c in untrusted if step is None or c["step"] == step), None)
        if bad is not None and (not candidates or (step is not None and not any(c["step"] == step
                                                                               for c in candidates))):
            raise BadInput(f"the checkpoint {bad['path']} (step {bad['step']}) of {name} was not recorded on this "
                           "machine for this experiment (a pulled note names it); nothing was started",
                           f"if you trust that file, name it yourself: git exp resume {short(chain[-1][0])} "
                           f"--checkpoint {shlex.quote(bad['path'])}")
    chosen = ckpt.choose(candidates, step)
    if chosen is None:
        raise BadInput(f"{name} has no checkpoint at step {step}; nothing was started",
                       f"steps with a checkpoint: {ckpt.describe_steps(candidates)}")
    if here and chosen.get("host") not in (None, socket.gethostname()):
        raise BadInput(f"the checkpoint {chosen['path']} is on {chosen['host']}, not this machine; nothing was started",
                       f"resume it there: git exp resume {short(chain[-1][0])} --on <the target on {chosen['host']}>")
    if here and not os.path.isfile(chosen["path"]):
        raise BadInput(f"the checkpoint {chosen['path']} (step {chosen['step']}) no longer exists on this machine; "
                       "nothing was started", "pick another with --from STEP "
                       f"(steps: {ckpt.describe_steps(candidates)}), or --from-scratch")
    wrong = ckpt.mismatch(chosen) if here else None
    if wrong:
        raise BadInput(f"the checkpoint {chosen['path']} (step {chosen['step']}) no longer holds what was saved: "
                       f"{wrong}; nothing was started", "pick another with --from STEP "
                       f"(steps: {ckpt.describe_steps(candidates)}), name a file with --checkpoint PATH, "
                       "or --from-scratch")
    return {"checkpoint": chosen["path"], "step": chosen["step"], "attempt": chosen["attempt"],
            "host": chosen.get("host")}


def trusted_checkpoint(repo: Repo, chain: Sequence[str], path: str) -> bool:
    """Whether this machine has evidence that ``path`` is a checkpoint of this chain: it lies in
    the run directory of one of its attempts (``out/`` included), or that attempt's own
    ``checkpoints.jsonl`` here (written by its run on this machine) names it."""
    if evidence.inside(path, evidence.chain_run_dirs(repo, chain)):
        return True
    for sha in chain:
        if any(r["path"] == path for r in metrics_mod.read_checkpoints(run_paths(repo, sha).checkpoints)):
            return True
    return False


# -- automatic resume ---------------------------------------------------------------------------
def wants_auto_resume(summary: Dict[str, Any], status: str, ends: Sequence[str] = ("timeout", "preempted", "lost",
                                                                                   "sigkill")) -> bool:
    """Whether an end is one that ``auto_resume`` continues (``ends``: the config's
    ``auto_resume.ends``): the time limit, preemption, a lost node or executor, a program killed
    by SIGKILL (the OOM killer's signal, so counted like a crash), or any failure."""
    reason = str(summary.get("reason") or "").lower()
    code = summary.get("exit_code")
    kinds = {status} if status in (Status.TIMEOUT, Status.LOST) else set()
    if status == Status.KILLED and "preempt" in reason:
        kinds.add("preempted")
    if status == Status.FAILED:
        kinds.add("failed")
    if status == Status.FAILED and code == -9:  # recorded killed when gitexp or a scheduler stopped it
        kinds.add("sigkill")
    return bool(kinds & set(ends))


def auto_resume(repo: Repo, store: Store, exp: Experiment, status: Status
                ) -> Optional[Tuple[Experiment, ExperimentConfig]]:
    """The next attempt of a run that ``auto_resume: N`` lets continue (not recorded), or None.

    From the latest checkpoint of the chain that exists here; without one, from scratch (as a
    scheduler's requeue would). At most N automatic resumes along a chain.
    """
    if not evidence.ran_here(repo, exp.sha):
        return None  # only a run this repository executed continues itself (a note is a claim)
    try:
        config = load_experiment_config(repo, exp.sha)
    except Exception:  # noqa: BLE001 - an unreadable config never resumes itself
        return None
    done = exp.summary.get("auto_resumes")
    done = done if isinstance(done, int) and not isinstance(done, bool) else 0
    live = exp.status if exp.status in FINAL else Status.LOST  # its executor has ended without a word
    if not config.auto_resume or done >= config.auto_resume \
            or not wants_auto_resume(exp.summary, live, config.auto_resume_on):
        return None
    superseded = supersede(repo, store, exp, "auto_resume continues it")
    current = Experiment(exp.sha, exp.name, superseded)
    chain = chain_of(store, current)
    try:
        point: Optional[Dict[str, Any]] = resume_point(repo, store, chain, None)
    except BadInput:
        point = None
    new, new_config = make_attempt(repo, store, current, "resume" if point else "retry", status, None, point)
    new.summary["auto_resumes"] = done + 1
    return new, new_config
