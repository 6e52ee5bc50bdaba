"""Submissions to a run target on another host whose outcome is not known here yet.

``run --on`` writes what it is about to send as an *outbox* record before it pushes anything:
``refs/exps-outbox/<id>`` names a commit whose parents are the experiment commits (so they
stay reachable) and whose tree holds ``submission.json`` (the target, the summaries and details
notes to record here, when it was sent). ``<id>`` is also the id of the inbox ref pushed there,
``refs/exps-inbox/<id>``. When the far side's reply comes (a record or a refusal) the record
goes; when the reply is lost (the connection dropped, no answer in time) it stays, and the
next ``pull``, ``queue --on`` or ``run --on`` of that target settles it with one
``git ls-remote`` there (:func:`settle`):

* the inbox ref is still there: no gitexp there ever took it (the agent claims it first, by
  deleting it with a compare-and-swap), so nothing ran: it is deleted there (with a lease, so
  a late agent and this never both win) and the experiments are reported not run;
* the experiments are under ``refs/exps/*`` there: they were recorded there, and are recorded
  here now (``pending``, with the target), once;
* taken but not recorded: the far side may still be recording them, until two round-trip
  timeouts have passed since they were sent (the agent refuses to record past its request's
  deadline); then they are reported not run.

Never twice (nothing is sent again by itself), never silently lost (each outcome is a line).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ..errors import GitExpError, RefConflict
from ..lifecycle import record
from ..notes import DETAILS_REF, EXP_PREFIX, INBOX_PREFIX, OUTBOX_PREFIX, Experiment, free_name
from ..repo import RefUpdate, Repo
from ..summary import printable

if TYPE_CHECKING:
    from .ssh import SshRunner

FILE = "submission.json"
GRACE = 30.0  # seconds beyond two round-trip timeouts before a taken, unrecorded submission is given up


@dataclass
class Submission:
    """One outbox record: what was sent to ``target`` as ``inbox``, and how to record it here."""

    ref: str
    tip: str
    target: str
    inbox: str
    sent: float
    timeout: float
    exps: List[Dict[str, Any]]  # {"sha", "name", "summary", "previous"?}
    details: Dict[str, str]  # sha -> details note (JSON text)

    def names(self, shas: Optional[Sequence[str]] = None) -> str:
        chosen = [e for e in self.exps if shas is None or e["sha"] in shas]
        listed = ", ".join(str(e["name"]) for e in chosen[:5])
        return listed + (f" and {len(chosen) - 5} more" if len(chosen) > 5 else "")


def open_submission(repo: Repo, target: str, inbox: str, exps: Sequence[Experiment],
                    details: Mapping[Tuple[str, str], bytes], timeout: float) -> Submission:
    """Record, before anything is sent, what goes to ``target`` under ``inbox``."""
    sub = Submission("", "", target, inbox, time.time(), timeout,
                     [{"sha": e.sha, "name": e.name, "summary": e.summary,
                       **({"previous": e.previous} if e.previous else {})} for e in exps],
                     {sha: data.decode() for (ref, sha), data in details.items() if ref == DETAILS_REF})
    body = json.dumps({"target": sub.target, "inbox": sub.inbox, "sent": sub.sent, "timeout": sub.timeout,
                       "exps": sub.exps, "details": sub.details}, sort_keys=True, default=str).encode()
    tree = repo.build_tree(None, {FILE: repo.hash_blob(body)})
    sub.tip = repo.commit_tree(tree, [e.sha for e in exps],
                               f"gitexp: {len(exps)} experiment(s) sent to run target {target}, outcome unknown\n")
    sub.ref = OUTBOX_PREFIX + inbox[len(INBOX_PREFIX):]
    if not repo.update_refs([RefUpdate(sub.ref, sub.tip, None)], f"gitexp: sending to {target}"):
        raise RefConflict(f"{sub.ref} exists already")
    return sub


def close_submission(repo: Repo, sub: Submission) -> None:
    """Its outcome is known (recorded here, or refused there): the record goes."""
    repo.update_refs([RefUpdate(sub.ref, None, sub.tip)], "gitexp: submission settled")


def unsettled(repo: Repo, target: str) -> List[Submission]:
    """The outbox records of ``target``, oldest first (none: no git process beyond one listing)."""
    found = []
    for ref, tip in repo.refs(OUTBOX_PREFIX).items():
        raw = repo.show_file(tip, FILE)
        try:
            data = json.loads(raw or b"")
            if data["target"] != target:
                continue
            found.append(Submission(ref, tip, target, str(data["inbox"]), float(data["sent"]),
                                    float(data["timeout"]), list(data["exps"]), dict(data.get("details") or {})))
        except (ValueError, KeyError, TypeError):
            continue  # not ours to judge: written by hand
    return sorted(found, key=lambda s: s.sent)


def settle(runner: "SshRunner") -> List[str]:
    """Settle the target's unsettled submissions (see the module docstring); lines to show."""
    subs = unsettled(runner.repo, runner.target.name)
    if not subs:
        return []
    name = runner.target.name
    with runner.git_env():
        there = runner.repo.ls_remote(runner.git_url(), [EXP_PREFIX + "*", *(s.inbox for s in subs)],
                                      timeout=runner.timeout)
    if there is None:
        return [f"{name}: {len(subs)} earlier submission(s) whose reply was lost are not settled yet "
                f"({runner.host} did not answer); the next pull, queue --on or run --on asks again"]
    named = {sha: ref[len(EXP_PREFIX):] for ref, sha in there.items() if ref.startswith(EXP_PREFIX)}
    lines = []
    for sub in subs:
        try:
            lines += _settle_one(runner, sub, named, there.get(sub.inbox))
        except GitExpError as exc:
            lines.append(f"{name}: could not settle the submission of {sub.names()}: {exc}")
    return [printable(line) for line in lines]


def _settle_one(runner: "SshRunner", sub: Submission, named: Mapping[str, str], inbox_tip: Optional[str]) -> List[str]:
    name, when = runner.target.name, time.strftime("%Y-%m-%d %H:%M", time.localtime(sub.sent))
    shas = [e["sha"] for e in sub.exps]
    recorded = [sha for sha in shas if sha in named]
    if inbox_tip is not None:  # never taken by a gitexp there: take it back
        try:
            runner._git_push([f":{sub.inbox}"], what="take back " + sub.inbox, lease=(sub.inbox, inbox_tip))
        except GitExpError:
            return [f"{name}: the submission of {sub.names()} ({when}) is being taken there now; ask again later"]
        close_submission(runner.repo, sub)
        return [f"{name}: {len(shas)} experiment(s) sent {when} never reached gitexp there and did not run: "
                f"{sub.names()}; nothing is recorded for them (run them again if you want them)"]
    if len(recorded) < len(shas) and time.time() - sub.sent < 2 * sub.timeout + GRACE:
        return [f"{name}: the submission of {sub.names()} ({when}) may still be being recorded there; "
                f"the next pull, queue --on or run --on asks again"]
    lines = []
    if recorded:
        adopted = _record_here(runner, sub, recorded, named)
        lines.append(f"{name}: {len(recorded)} experiment(s) sent {when} whose reply was lost were recorded "
                     f"there: recorded here now ({adopted}); results: git exp pull {name}")
    else:
        close_submission(runner.repo, sub)
    left = [sha for sha in shas if sha not in recorded]
    if left:
        lines.append(f"{name}: {len(left)} experiment(s) sent {when} were not recorded there and did not run: "
                     f"{sub.names(left)} (run them again if you want them)")
    return lines


def _record_here(runner: "SshRunner", sub: Submission, recorded: Sequence[str], named: Mapping[str, str]) -> str:
    """Record the experiments there here, as a reply would have (once: with the record's removal)."""
    store, repo = runner.store, runner.repo
    here = store.experiment_refs()
    known = set(here.values())
    taken = set(here)
    exps = []
    for item in sub.exps:
        sha = item["sha"]
        if sha not in recorded or sha in known:  # a pull may have brought it meanwhile
            continue
        wanted, previous = str(item["name"]), item.get("previous")
        follows = isinstance(previous, str) and here.get(wanted) == previous
        chosen = wanted if follows else free_name(wanted, taken)
        summary = dict(item["summary"])
        if named[sha] != chosen:
            summary["name_there"] = named[sha]
        exps.append(Experiment(sha, chosen, summary, previous=previous if follows else None))
    drop = [RefUpdate(sub.ref, None, sub.tip)]
    if not exps:
        repo.update_refs(drop, "gitexp: submission settled")
        return "already here"
    notes = {(DETAILS_REF, e.sha): sub.details[e.sha].encode() for e in exps if sub.details.get(e.sha)}
    try:
        record(store, exps, extra_refs_for=lambda e: drop if e is exps[0] else [], extra_notes=notes)
    except RefConflict:
        if sub.ref in repo.refs(sub.ref):
            raise
        return "by another command meanwhile"  # it settled this record: recorded once
    return ", ".join(e.name for e in exps)


__all__ = ["OUTBOX_PREFIX", "Submission", "open_submission", "close_submission", "unsettled", "settle"]
