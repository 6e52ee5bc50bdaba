"""Check gitexp's refs and notes for missing objects, and recover from them.

Objects go missing when ``git gc --prune=now`` (or ``git prune --expire=now``) runs beside a
writer: gc decides what is reachable, a writer then points a ref at objects it just wrote,
and gc deletes them. git itself calls that unsafe; gitexp keeps the window short (objects
are written right before the one ref transaction that makes them reachable, and an object
that already exists is freshened, as git does), and this module finds and repairs what such
a race leaves:

* a notes ref (``refs/notes/exps*``) whose tip, tree or notes are missing is reset to the
  newest entry of its reflog that is whole (git keeps reflogs of ``refs/notes/*``), and
  reflog entries naming missing objects are dropped;
* experiments whose summary note was lost get a new one rebuilt from their commit, status
  ``lost`` (so ``git exp queue --retry-lost`` can run them again);
* an experiment or queue ref whose commit is gone is deleted (its run directory is kept);
* on a run target, an inbox ref (``refs/exps-inbox/*``) older than :data:`INBOX_GRACE` is a
  submission no gitexp here took (its sender's connection dropped first): it is deleted (the
  sender's next pull says the experiments did not run; an agent that comes late refuses).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Set, Tuple

from .errors import GitExpError, MissingObjects
from .lifecycle import Status, restore
from .notes import EXP_PREFIX, INBOX_PREFIX, NOTES_REFS, QUEUE_PREFIX, SUMMARY_REF, Store, dump_json
from .repo import RefUpdate, Repo
from .values import short

INBOX_GRACE = 600  # seconds: an agent takes its inbox ref within seconds of the push


@dataclass
class Damage:
    """What a check found; each list holds human-readable lines."""

    notes: Dict[str, List[str]] = field(default_factory=dict)  # notes ref -> missing objects
    lost_commits: Dict[str, str] = field(default_factory=dict)  # ref -> missing commit
    incomplete: Dict[str, List[str]] = field(default_factory=dict)  # exp ref -> missing objects
    no_summary: Dict[str, str] = field(default_factory=dict)  # exp ref -> commit without a summary
    stray_notes: List[str] = field(default_factory=list)  # summaries of commits no ref names
    broken_reflogs: Dict[str, int] = field(default_factory=dict)  # notes ref -> reflog entries reaching missing objects
    leftover_inbox: Dict[str, str] = field(default_factory=dict)  # inbox ref -> its commit, never taken

    @property
    def clean(self) -> bool:
        return not (self.notes or self.lost_commits or self.incomplete or self.no_summary or self.stray_notes
                    or self.broken_reflogs or self.leftover_inbox)

    def lines(self) -> List[str]:
        out = []
        for ref, shas in self.notes.items():
            out.append(f"{ref}: {len(shas)} missing object(s), e.g. {short(shas[0], 12)}")
        for ref, sha in self.lost_commits.items():
            out.append(f"{ref}: its commit {short(sha, 12)} is missing")
        for ref, shas in self.incomplete.items():
            out.append(f"{ref}: the commit is there but {len(shas)} of its files/trees are missing, "
                       f"e.g. {short(shas[0], 12)} (it cannot run again)")
        for ref, sha in self.no_summary.items():
            out.append(f"{ref}: no summary note for {short(sha, 12)}")
        for sha in self.stray_notes:
            out.append(f"{short(sha, 12)}: a summary note, but no experiment ref names this commit")
        for ref, count in self.broken_reflogs.items():
            out.append(f"{ref}: {count} reflog entr{'y' if count == 1 else 'ies'} reach missing objects "
                       "(git fsck fails on them)")
        for ref in self.leftover_inbox:
            out.append(f"{ref}: experiments pushed by a run --on whose connection dropped before gitexp here "
                       "took them (nothing ran); --repair deletes it")
        return out


def check(repo: Repo) -> Damage:
    damage = Damage()
    ours = repo.refs(EXP_PREFIX, QUEUE_PREFIX, *NOTES_REFS)
    absent = set(repo.missing(ours.values()))
    for ref, sha in sorted(ours.items()):
        if sha in absent:
            if ref in NOTES_REFS:
                damage.notes[ref] = [sha]
            else:
                damage.lost_commits[ref] = sha
    for notes_ref in NOTES_REFS:
        tip = ours.get(notes_ref)
        if tip and tip not in absent:
            missing = repo.missing_reachable([tip])
            if missing:
                damage.notes[notes_ref] = missing
    exclude = ["--branches", "--tags"]
    tips = sorted({sha for ref, sha in ours.items() if ref.startswith(EXP_PREFIX) and sha not in absent})
    # One walk over every experiment; only if it finds something, one walk per experiment
    # to say which ones are damaged.
    if tips and repo.missing_reachable(tips, exclude):
        for ref, sha in sorted(ours.items()):
            if ref.startswith(EXP_PREFIX) and sha not in absent:
                missing = repo.missing_reachable([sha], exclude)
                if missing:
                    damage.incomplete[ref] = missing
    if SUMMARY_REF not in damage.notes:
        _check_pairing(Store(repo), ours, absent, damage)
    for notes_ref in NOTES_REFS:
        if notes_ref not in damage.notes:
            broken = _broken_reflog_entries(repo, notes_ref)
            if broken:
                damage.broken_reflogs[notes_ref] = len(broken)
    damage.leftover_inbox = _leftover_inbox(repo)
    return damage


def _leftover_inbox(repo: Repo) -> Dict[str, str]:
    """Inbox refs older than INBOX_GRACE (by their commit's time; a missing commit: at once)."""
    found = {}
    for ref, sha in sorted(repo.refs(INBOX_PREFIX).items()):
        try:
            when = repo.commit_object(sha).commit_time
        except (MissingObjects, KeyError, ValueError):
            when = 0
        if time.time() - when > INBOX_GRACE:
            found[ref] = sha
    return found


def _check_pairing(store: Store, ours: Dict[str, str], absent: Set[str], damage: Damage) -> None:
    """Every experiment ref has a summary note, and every summary note an experiment ref."""
    summaries = store.notes_index(SUMMARY_REF)
    named = {sha for ref, sha in ours.items() if ref.startswith(EXP_PREFIX)}
    # Earlier attempts of an experiment (retries, resumes) keep their notes: its chain names them.
    tips = sorted(sha for sha in named if sha in summaries and sha not in absent)
    for summary in store.read_notes_json(tips).values():
        chain = summary.get("chain")
        if isinstance(chain, list):
            named.update(c for c in chain if isinstance(c, str))
    for ref, sha in sorted(ours.items()):
        if ref.startswith(EXP_PREFIX) and sha not in absent and sha not in summaries:
            damage.no_summary[ref] = sha
    damage.stray_notes = sorted(sha for sha in summaries if sha not in named)


def repair(repo: Repo, store: Store, damage: Damage) -> List[str]:
    """Fix what :func:`check` found; returns one line per action taken."""
    done: List[str] = []
    for notes_ref in damage.notes:
        done.append(_rewind_notes(repo, notes_ref))
    for notes_ref, count in damage.broken_reflogs.items():
        _drop_broken_reflog_entries(repo, notes_ref)
        done.append(f"dropped {count} reflog entr{'y' if count == 1 else 'ies'} of {notes_ref} that reached "
                    "missing objects")
    current = repo.refs(EXP_PREFIX)
    for ref, missing in damage.incomplete.items():
        if ref in current:
            done.append(_mend_experiment(repo, store, ref, current[ref], missing))
    for ref, sha in damage.leftover_inbox.items():
        # With its old value: an agent that takes it meanwhile wins, and this deletes nothing.
        if repo.update_refs([RefUpdate(ref, None, sha)], "gitexp fsck: drop a submission never taken"):
            done.append(f"deleted {ref}: a submission no gitexp here took (nothing of it ran)")
    for ref, sha in damage.lost_commits.items():
        if not repo.update_refs([RefUpdate(ref, None, sha)], "gitexp fsck: drop ref to a missing commit"):
            raise GitExpError(f"{ref} changed while repairing", "run git exp fsck --repair again")
        done.append(f"deleted {ref} (its commit {short(sha, 12)} is gone; nothing can bring it back)")
    # Rewinding notes and dropping refs change which refs and summaries pair up: check again.
    pairing = Damage()
    _check_pairing(store, repo.refs(EXP_PREFIX, QUEUE_PREFIX), set(), pairing)
    if pairing.no_summary:
        done += _rebuild_summaries(repo, store)
    if pairing.stray_notes:
        store.write({(ref, sha): None for sha in pairing.stray_notes for ref in NOTES_REFS},
                    message="gitexp fsck: remove notes of removed experiments")
        done.append(f"removed the notes of {len(pairing.stray_notes)} commit(s) that no experiment ref names")
    return done


def record_kept_ends(repo: Repo, store: Store) -> List[str]:
    """Record the ends of runs whose executor kept them in the run directory (a full disk) and
    is gone (:mod:`gitexp.endstate`); one line each."""
    from .endstate import settle_all

    return settle_all(repo, store)


def _restore_from_worktree(repo: Repo, missing: List[str]) -> int:
    """Write back missing blobs whose content is still a file in the working tree."""
    listed = repo.run(["ls-files", "-z", "-co", "--exclude-standard"]).stdout.decode(errors="replace")
    paths = [p for p in listed.split("\0") if p and os.path.isfile(os.path.join(repo.root, p))]
    if not paths:
        return 0
    shas = repo.out(["hash-object", "--stdin-paths"], input="".join(p + "\n" for p in paths).encode()).split()
    wanted = set(missing)
    found = [path for path, sha in zip(paths, shas) if sha in wanted]
    if found:
        repo.run(["hash-object", "-w", "--stdin-paths"], input="".join(p + "\n" for p in found).encode())
    return len(found)


def _mend_experiment(repo: Repo, store: Store, ref: str, sha: str, missing: List[str]) -> str:
    """Make an experiment whose snapshot lost objects whole again, keeping its results.

    First from the working tree (a file that has not changed since has the very blob); what
    is still missing leaves the snapshot, and the experiment is recorded anew as a commit
    without it (its notes move along, ``recovered_from`` names the old commit), because a
    ref that reaches missing objects makes `git gc` and `git fsck` fail for good.
    """
    restored = _restore_from_worktree(repo, missing)
    if not repo.missing_reachable([sha], ["--branches", "--tags"]):
        return f"{ref}: wrote back {restored} missing file(s) from the working tree; it is whole again"
    old = repo.commit_object(sha)
    tree, lost = repo.salvage_tree(old.tree.decode())
    message = old.message.decode(errors="replace").rstrip("\n") + f"\nGitexp-Recovered-From: {sha}\n"
    new = repo.commit_tree(tree or repo.build_tree(None, {}), [p.decode() for p in old.parents], message)
    notes: Dict[Tuple[str, str], Optional[bytes]] = {}
    for notes_ref in NOTES_REFS:
        data = store.read_notes(notes_ref, [sha]).get(sha)
        notes[(notes_ref, sha)] = None
        if data is not None:
            notes[(notes_ref, new)] = data
    summary = store.summary(sha)
    if summary:
        summary["recovered_from"] = sha
        notes[(SUMMARY_REF, new)] = dump_json(summary)
    refs = [RefUpdate(ref, new, sha)]
    queued = repo.refs(QUEUE_PREFIX + sha).get(QUEUE_PREFIX + sha)
    if queued:
        refs += [RefUpdate(QUEUE_PREFIX + sha, None, queued), RefUpdate(QUEUE_PREFIX + new, new, None)]
    store.write(notes, refs, message=f"gitexp fsck: re-record {ref} without its missing objects")
    _move_run_dir(repo, sha, new)
    return (f"{ref}: {lost} missing file(s)/folder(s) left its snapshot; re-recorded as {short(new, 12)} "
            f"(was {short(sha, 12)}), its results kept")


def _move_run_dir(repo: Repo, old: str, new: str) -> None:
    from .paths import run_paths

    source, target = run_paths(repo, old).root, run_paths(repo, new).root
    if os.path.isdir(source) and not os.path.exists(target):
        try:
            os.rename(source, target)
        except OSError:
            pass


def _reflog_entries(repo: Repo, ref: str) -> List[List[str]]:
    """(old, new) of each entry of ``ref``'s reflog, newest first (index = ``ref@{index}``)."""
    path = os.path.join(repo.common_dir, "logs", ref)
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return []
    return [line.split(" ", 2)[:2] for line in reversed(lines) if len(line.split(" ", 2)) > 2]


def _reflog(repo: Repo, ref: str) -> List[str]:
    return [new for _old, new in _reflog_entries(repo, ref)]


def _broken_reflog_entries(repo: Repo, ref: str) -> List[int]:
    """Indexes of ``ref``'s reflog entries that name, or reach, a missing object.

    git fsck walks every reflog entry like a ref, so an entry whose commit is there but
    whose tree lost a subtree (a notes fan-out folder, say) fails it as surely as a
    missing commit does.
    """
    entries = _reflog_entries(repo, ref)
    shas = {sha for entry in entries for sha in entry if sha != "0" * 40}
    absent = set(repo.missing(shas))
    present = sorted(shas - absent)
    # One walk over every entry; only if it finds something, one walk per entry.
    if present and repo.missing_reachable(present):
        absent |= {sha for sha in present if repo.missing_reachable([sha])}
    return [i for i, entry in enumerate(entries) if absent & set(entry)]


def _drop_broken_reflog_entries(repo: Repo, ref: str) -> None:
    """Reflog entries naming missing objects would make `git fsck` complain forever."""
    for index in reversed(_broken_reflog_entries(repo, ref)):  # highest first: deleting one renumbers those after it
        repo.run(["reflog", "delete", f"{ref}@{{{index}}}"], check=False)


def _rewind_notes(repo: Repo, notes_ref: str) -> str:
    tip = repo.refs(notes_ref).get(notes_ref)
    good: Optional[str] = None
    for candidate in _reflog(repo, notes_ref):
        if candidate != "0" * 40 and candidate != tip and not repo.missing([candidate]) \
                and not repo.missing_reachable([candidate]):
            good = candidate
            break
    update = RefUpdate(notes_ref, good, tip) if good else RefUpdate(notes_ref, None, tip)
    if not repo.update_refs([update], "gitexp fsck: rewind to the newest whole notes commit"):
        raise GitExpError(f"{notes_ref} changed while repairing", "run git exp fsck --repair again")
    _drop_broken_reflog_entries(repo, notes_ref)
    if good:
        return f"reset {notes_ref} to {short(good, 12)}, its newest whole state (writes after it were lost)"
    return f"deleted {notes_ref}: no whole state of it was left"


def _rebuild_summaries(repo: Repo, store: Store) -> List[str]:
    """A new summary, status ``lost``, for every experiment whose summary note is gone."""
    names = store.experiment_refs()
    present = store.notes_index(SUMMARY_REF)
    done = []
    for name, sha in sorted(names.items()):
        if sha in present:
            continue
        summary = _summary_from_commit(store, name, sha)
        try:
            if not restore(store, sha, summary, message=f"gitexp fsck: rebuild {name}"):
                continue  # a note came meanwhile
        except MissingObjects:
            continue
        done.append(f"rebuilt the summary of {name} ({short(sha)}) from its commit; status lost "
                    "(git exp queue --retry-lost runs it again)")
    return done


def _summary_from_commit(store: Store, name: str, sha: str) -> Dict[str, object]:
    try:
        config = store.config_of(sha)
    except Exception:  # noqa: BLE001 - an unreadable config still gets a summary
        config = {}
    config = config if isinstance(config, dict) else {}
    params = config.get("params") if isinstance(config.get("params"), dict) else {}
    return {
        "schema": 1, "name": name, "group": config.get("group"), "params": params,
        "status": Status.LOST.value, "created": time.time(), "recovered": True,
        "reason": "its summary note was lost (objects deleted, e.g. by git gc --prune=now beside a writer); "
                  "rebuilt by git exp fsck --repair",
    }
