"""All reads and writes of experiment refs and notes: batched reads, atomic CAS writes.

Namespaces (each declared once, here):

* ``refs/exps/<name>``        the experiment's branch; its tip is the run commit.
* ``refs/notes/exps``         summary note per run commit (small JSON: status, params,
                              metric summaries, times); the only thing ``log`` reads.
* ``refs/notes/exps-metrics`` metric history per run commit (JSON lines, one per point).
* ``refs/notes/exps-details`` facts about the environment, log tail, batch script (JSON).
* ``refs/exps-queue/<sha>``   a queued experiment (its value is the run commit).
* ``refs/exps-inbox/<id>``    on a run target: experiments pushed there (the parents of one
                              commit), until its agent records them.
* ``refs/exps-outbox/<id>``   here: a submission to a run target on another host, until its
                              outcome is known (:mod:`gitexp.runners.outbox`).
* ``refs/exps-sync/<label>/`` the notes tips last fetched from a git remote (:mod:`gitexp.sync`).

Notes trees use git's 2/38 fan-out, so ``git notes --ref=exps show <sha>`` reads them.  A write
builds the new notes commits from the current ones and applies every ref change in one
``update-ref --stdin`` transaction with old values; if another writer got there first, the
write is rebuilt on top of theirs and retried, so concurrent writers never lose a note.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

from . import summary as checks
from . import summary_cache
from .errors import BadInput, DiskFull, MissingObjects, RefConflict
from .repo import RefUpdate, Repo, cas_attempts

EXP_PREFIX = "refs/exps/"
QUEUE_PREFIX = "refs/exps-queue/"
INBOX_PREFIX = "refs/exps-inbox/"  # experiments pushed to a run target, until its agent records them
OUTBOX_PREFIX = "refs/exps-outbox/"  # here: a submission to a run target, until its outcome is known
SYNC_PREFIX = "refs/exps-sync/"  # notes tips last fetched from a git remote, one folder per remote
SUMMARY_REF = "refs/notes/exps"
METRICS_REF = "refs/notes/exps-metrics"
DETAILS_REF = "refs/notes/exps-details"
NOTES_REFS = (SUMMARY_REF, METRICS_REF, DETAILS_REF)
CONFIG_PATH = ".gitexp/experiment.yaml"
MAX_ATTEMPTS = 60
IN_PROCESS_READS = 16  # notes of up to this many commits are read in process, more with one cat-file


@dataclass
class Experiment:
    sha: str
    name: str
    summary: Dict[str, Any]
    previous: Optional[str] = None  # a new attempt: the run commit its ref moves from (gitexp.attempts)

    @property
    def ref(self) -> str:
        return EXP_PREFIX + self.name

    @property
    def status(self) -> str:
        return str(self.summary.get("status", "created"))

    @property
    def attempt(self) -> int:
        """Which run of the experiment this is (1: the first; see gitexp.attempts)."""
        n = self.summary.get("attempt")
        if isinstance(n, int) and not isinstance(n, bool) and n > 0:
            return n
        chain = self.summary.get("chain")
        return 1 + (len(chain) if isinstance(chain, list) else 0)


def free_name(base: str, taken: Set[str]) -> str:
    """``base``, or ``base-2``, ``base-3``, ...: the first name not in ``taken``, which it joins.

    The one rule for a name that is taken, wherever a new experiment gets its name: recorded
    here, fetched by a pull, pushed to a remote, recorded by a target's agent or by an outbox.
    """
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}-{n}"
    taken.add(name)
    return name


def _note_paths(sha: str) -> Tuple[str, ...]:
    """Every path git may have stored a note for ``sha`` under (fan-out 0, 1 or 2)."""
    return (f"{sha[:2]}/{sha[2:]}", sha, f"{sha[:2]}/{sha[2:4]}/{sha[4:]}")


def _sha_from_path(path: str) -> str:
    return path.replace("/", "")


class Store:
    """The experiment database: refs and notes of one repository."""

    def __init__(self, repo: Repo) -> None:
        self.repo = repo

    # -- reads ----------------------------------------------------------------------------
    def experiment_refs(self) -> Dict[str, str]:
        """name -> run commit sha, from one ``for-each-ref``."""
        return {ref[len(EXP_PREFIX):]: sha for ref, sha in self.repo.refs(EXP_PREFIX).items()}

    def notes_index(self, notes_ref: str) -> Dict[str, str]:
        """annotated sha -> note blob sha, from one ``ls-tree`` of the notes commit."""
        if not self.repo.ref_values(notes_ref).get(notes_ref):
            return {}
        return {_sha_from_path(e.path): e.sha for e in self.repo.ls_tree(notes_ref) if e.kind == "blob"}

    def experiments(self) -> List[Experiment]:
        """Every experiment with its summary: at most three git processes whatever the count,
        one when no summary changed since the last listing (``gitexp.summary_cache``)."""
        names = self.experiment_refs()
        shas = list(names.values())
        # Only the notes that changed since the last listing are read and checked (summary_cache).
        summaries = summary_cache.summaries(self.repo, SUMMARY_REF, shas, lambda: self.notes_index(SUMMARY_REF),
                                            lambda sha, data: checks.load_summary(sha, data, SUMMARY_REF))
        return [Experiment(sha, name, summary) for (name, sha), summary in zip(names.items(), summaries)]

    def read_notes(self, notes_ref: str, shas: Sequence[str]) -> Dict[str, bytes]:
        """Notes of ``shas`` under ``notes_ref`` (absent ones left out), one cat-file call."""
        tip = self.repo.ref_values(notes_ref).get(notes_ref)
        if not tip:
            return {}
        if len(shas) <= IN_PROCESS_READS:  # a few notes: read in process, no git process
            paths = {p: sha for sha in shas for p in _note_paths(sha)}
            here = self.repo.read_paths(tip, list(paths))
            if here is not None:
                by_sha: Dict[str, bytes] = {}
                for path, data in here.items():
                    by_sha.setdefault(paths[path], data)
                return by_sha
        keys = {f"{tip}:{p}": sha for sha in shas for p in _note_paths(sha)}
        # The tip and its tree ride along in the same call: a note that is absent and a
        # notes commit that is missing (gc beside a writer) must not look the same.
        found = self.repo.cat_blobs([tip, f"{tip}^{{tree}}", *keys])
        if tip not in found or f"{tip}^{{tree}}" not in found:
            raise MissingObjects([tip], f"the tip of {notes_ref} or its tree")
        found = {key: data for key, data in found.items() if key in keys}
        out: Dict[str, bytes] = {}
        for key, data in found.items():
            out.setdefault(keys[key], data)
        return out

    def read_notes_json(self, shas: Sequence[str], notes_ref: str = SUMMARY_REF) -> Dict[str, Dict[str, Any]]:
        """Checked notes (``summary.py``): a bad summary reads as status ``invalid``, bad details as {}."""
        load = checks.load_summary if notes_ref == SUMMARY_REF else checks.load_details
        return {sha: load(sha, data, notes_ref) for sha, data in self.read_notes(notes_ref, shas).items()}

    def summary(self, sha: str) -> Dict[str, Any]:
        return checks.load_summary(sha, self.read_notes(SUMMARY_REF, [sha]).get(sha), SUMMARY_REF)

    def details(self, sha: str) -> Dict[str, Any]:
        return checks.load_details(sha, self.read_notes(DETAILS_REF, [sha]).get(sha), DETAILS_REF)

    def history(self, sha: str) -> List[Dict[str, Any]]:
        return checks.load_history(sha, self.read_notes(METRICS_REF, [sha]).get(sha, b""), METRICS_REF)

    def config_of(self, sha: str) -> Dict[str, Any]:
        """The experiment's resolved config; {} with a warning when the commit's copy is unusable."""
        return checks.load_config(sha, self.repo.show_file(sha, CONFIG_PATH), CONFIG_PATH)

    def find(self, ident: str) -> Experiment:
        """An experiment by name, or by an unambiguous prefix of its run commit's sha."""
        names = self.experiment_refs()
        if ident in names:
            sha = names[ident]
            return Experiment(sha, ident, self.summary(sha))
        matches = {(n, s) for n, s in names.items() if len(ident) >= 4 and s.startswith(ident.lower())}
        if len({s for _, s in matches}) == 1:
            name, sha = sorted(matches)[0]
            return Experiment(sha, name, self.summary(sha))
        if matches:
            listed = ", ".join(sorted(n for n, _ in matches)[:5])
            raise BadInput(f"id {ident!r} is ambiguous: it matches {listed}", "give more characters of the sha")
        earlier = self._find_attempt(ident, names) if len(ident) >= 4 else None
        if earlier is not None:
            return earlier
        hint = "see `git exp log` (and git exp log --attempts) for ids and names"
        if 0 < len(ident) < 4:
            hint = "give at least 4 characters of the sha, or the name"
        raise BadInput(f"no experiment {ident!r} in {self.repo.root}", hint)

    def _find_attempt(self, ident: str, names: Mapping[str, str]) -> Optional[Experiment]:
        """An earlier attempt (not a ref's tip) by a prefix of its commit: it must have a summary
        note and be named by the chain of the experiment its note names (notes are untrusted)."""
        hits = [sha for sha in self.notes_index(SUMMARY_REF) if sha.startswith(ident.lower())]
        if len(hits) > 1:
            raise BadInput(f"id {ident!r} is ambiguous: it matches {len(hits)} attempts", "give more characters")
        if not hits:
            return None
        summary = self.summary(hits[0])
        name = summary.get("name")
        tip = names.get(name) if isinstance(name, str) else None
        if tip is None:
            return None
        chain = self.summary(tip).get("chain")
        if not isinstance(chain, list) or hits[0] not in chain:
            return None
        return Experiment(hits[0], str(name), summary)

    # -- writes ---------------------------------------------------------------------------
    def write(
        self,
        notes: Mapping[Tuple[str, str], Optional[bytes]],
        refs: Sequence[RefUpdate] = (),
        message: str = "gitexp",
    ) -> None:
        """Set (bytes) or remove (None) notes, plus ref updates, in one atomic transaction."""

        def attempt() -> Optional[List[RefUpdate]]:
            return self._notes_updates(notes, message)

        self._commit_with_retry(attempt, refs, message)

    def update_summary(
        self,
        sha: str,
        change: Callable[[Dict[str, Any]], Optional[Dict[str, Any]]],
        extra: Optional[Mapping[Tuple[str, str], Optional[bytes]]] = None,
        refs: Sequence[RefUpdate] = (),
        message: str = "gitexp: update",
        patience: float = 0.0,
        moves_status: bool = False,
    ) -> Dict[str, Any]:
        """Read-modify-write of one summary note under CAS; ``change`` may return None to abort.

        A change of ``status`` is refused here: runs change state only through
        :func:`gitexp.lifecycle.transition` (which passes ``moves_status``).

        ``patience``: seconds to keep retrying while the disk is full (the executor's final
        write waits for space rather than lose a result it knows).
        """
        result: Dict[str, Any] = {}

        touched = {SUMMARY_REF, *(ref for ref, _sha in (extra or {}))}

        def attempt() -> Optional[List[RefUpdate]]:
            # Read the note from the same tips the new commits are built on: if another
            # writer moves a tip after this read, our compare-and-swap fails and we re-read.
            tips = self.repo.ref_values(*sorted(touched))
            current = self._summary_at(tips.get(SUMMARY_REF), sha)
            new = change(dict(current))
            if new is None:
                return None
            if not moves_status and current and new.get("status") != current.get("status"):
                raise ValueError(f"a status change ({current.get('status')} -> {new.get('status')}) outside "
                                 "gitexp.lifecycle.transition")
            result.clear()
            result.update(new)
            notes: Dict[Tuple[str, str], Optional[bytes]] = {(SUMMARY_REF, sha): dump_json(new)}
            notes.update(extra or {})
            return self._notes_updates(notes, message, tips)

        deadline = time.monotonic() + patience
        while True:
            try:
                self._commit_with_retry(attempt, refs, message)
                return result
            except DiskFull:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(min(2.0, max(0.1, deadline - time.monotonic())))

    def create(self, base_name: str, sha: str, summary: Dict[str, Any],
               extra_refs: Sequence[RefUpdate] = (),
               extra_notes: Optional[Mapping[Tuple[str, str], Optional[bytes]]] = None,
               by_lifecycle: bool = False) -> str:
        """Record a new experiment under ``refs/exps/<name>``; a taken name gets -2, -3, ...

        Only through :func:`gitexp.lifecycle.record_one` (which passes ``by_lifecycle``), so the
        first status of every run is announced.
        """
        _check_by_lifecycle(by_lifecycle)
        taken = set(self.experiment_refs())
        for _ in cas_attempts(MAX_ATTEMPTS, pause=(0.001, 0.02)):
            name = free_name(base_name, set(taken))
            summary["name"] = name
            notes: Dict[Tuple[str, str], Optional[bytes]] = {(SUMMARY_REF, sha): dump_json(summary)}
            notes.update(extra_notes or {})
            updates = self._notes_updates(notes, f"gitexp: create {name}")
            refs = [RefUpdate(EXP_PREFIX + name, sha, None), *extra_refs]
            if self.repo.update_refs(updates + refs, f"gitexp: create {name}"):
                return name
            taken = set(self.experiment_refs())  # lost a race: for the name, or for the notes ref
        raise RefConflict(f"could not find a free name for {base_name}")

    def create_batch(self, exps: Sequence[Experiment],
                     extra_refs_for: Optional[Callable[[Experiment], List[RefUpdate]]] = None,
                     extra_notes: Optional[Mapping[Tuple[str, str], Optional[bytes]]] = None,
                     by_lifecycle: bool = False) -> None:
        """Record many new experiments (names already chosen) in one atomic transaction.

        Only through :func:`gitexp.lifecycle.record` (which passes ``by_lifecycle``).
        """
        _check_by_lifecycle(by_lifecycle)
        refs: List[RefUpdate] = []
        for exp in exps:
            exp.summary["name"] = exp.name
            refs.append(RefUpdate(exp.ref, exp.sha, exp.previous))
            if extra_refs_for:
                refs.extend(extra_refs_for(exp))
        notes: Dict[Tuple[str, str], Optional[bytes]] = {(SUMMARY_REF, e.sha): dump_json(e.summary) for e in exps}
        notes.update(extra_notes or {})
        for _ in cas_attempts(MAX_ATTEMPTS):
            updates = self._notes_updates(notes, f"gitexp: create {len(exps)} experiments")
            if self.repo.update_refs(updates + refs, "gitexp: create experiments"):
                self.repo.maintain()
                return
            now = self.experiment_refs()
            taken = {e.name for e in exps if e.name in now and now[e.name] != e.previous}
            moved = sorted(e.name for e in exps if e.previous and e.name in taken)
            if moved:  # another retry or resume of the same attempt got there first
                raise RefConflict(f"{', '.join(moved)} got a new attempt from another command meanwhile; "
                                  "nothing was recorded", "see git exp log --attempts")
            if taken:
                raise RefConflict(f"experiment names were taken while writing: {', '.join(sorted(taken))}",
                                  "nothing was recorded; run the command again")
        raise RefConflict(f"gave up recording {len(exps)} experiments after {MAX_ATTEMPTS} attempts")

    def remove(self, exp: Experiment, attempts: Sequence[str] = ()) -> None:
        """Delete the experiment's ref, its notes and its queue entry, atomically.

        ``attempts``: the earlier attempts whose notes go too. The caller passes what the commit
        graph confirms (``gitexp.evidence.verified_chain``), never a note's ``chain`` as it is:
        a pulled note could list another experiment's commits there.
        """
        notes = {(ref, sha): None for ref in NOTES_REFS for sha in [*attempts, exp.sha]}
        refs = [RefUpdate(exp.ref, None, exp.sha)]
        queued = self.repo.refs(QUEUE_PREFIX + exp.sha).get(QUEUE_PREFIX + exp.sha)
        if queued:
            refs.append(RefUpdate(QUEUE_PREFIX + exp.sha, None, queued))
        self.write(notes, refs, f"gitexp: rm {exp.name}")

    def _summary_at(self, tip: Optional[str], sha: str) -> Dict[str, Any]:
        if not tip:
            return {}
        found = self.repo.read_paths(tip, _note_paths(sha))
        if found is None:
            found = self.repo.cat_blobs(f"{tip}:{p}" for p in _note_paths(sha))
        return _load_json(next(iter(found.values()), None))

    def _notes_updates(self, notes: Mapping[Tuple[str, str], Optional[bytes]], message: str,
                       tips: Optional[Mapping[str, str]] = None) -> List[RefUpdate]:
        """New commits for each touched notes ref, as CAS updates from ``tips`` (default: now)."""
        by_ref: Dict[str, Dict[str, Optional[bytes]]] = {}
        for (notes_ref, sha), data in notes.items():
            by_ref.setdefault(notes_ref, {})[sha] = data
        if tips is None:
            tips = self.repo.ref_values(*by_ref)
        updates = []
        for notes_ref, items in by_ref.items():
            old = tips.get(notes_ref)
            changes: Dict[str, Optional[str]] = {}
            for sha, data in items.items():
                for path in _note_paths(sha):
                    changes[path] = None
                if data is not None:  # a WrittenBlob is in git already: stored by its id, never read
                    changes[_note_paths(sha)[0]] = data.sha if isinstance(data, WrittenBlob) else self.repo.hash_blob(data)
            try:
                tree = self.repo.build_tree(old, changes)
            except MissingObjects as exc:
                raise MissingObjects(exc.shas, f"the notes in {notes_ref}") from None
            commit = self.repo.commit_tree(tree, [old] if old else [], message)
            updates.append(RefUpdate(notes_ref, commit, old))
        return updates

    def _commit_with_retry(
        self, attempt: Callable[[], Optional[List[RefUpdate]]], refs: Sequence[RefUpdate], message: str
    ) -> None:
        for _ in cas_attempts(MAX_ATTEMPTS):
            updates = attempt()
            if updates is None:
                return
            if self.repo.update_refs(updates + list(refs), message):
                return
            if refs and not self._refs_at(refs):
                raise RefConflict(f"{refs[0].ref} changed while writing; nothing was written", "retry the command")
        raise RefConflict(f"gave up writing notes after {MAX_ATTEMPTS} attempts under contention")

    def _refs_at(self, refs: Sequence[RefUpdate]) -> bool:
        current = self.repo.refs(*(r.ref for r in refs))
        return all(current.get(r.ref) == r.old for r in refs)


class WrittenBlob(bytes):
    """A note's content that is in git already (``git hash-object -w`` of a file, see
    :func:`gitexp.history_file.write_blob`): given where note bytes go, the note is stored by
    the blob's id, so a 200 MB history never becomes one Python string."""

    sha: str

    def __new__(cls, sha: str) -> "WrittenBlob":
        blob = super().__new__(cls, sha.encode())
        blob.sha = sha
        return blob


def _check_by_lifecycle(by_lifecycle: bool) -> None:
    if not by_lifecycle:
        raise ValueError("a run's first status recorded outside gitexp.lifecycle.record: its listeners "
                         "would not hear it")


def dump_json(data: Any) -> bytes:
    return (json.dumps(data, sort_keys=True, separators=(",", ":"), default=str) + "\n").encode()


def _load_json(data: Optional[bytes]) -> Dict[str, Any]:
    if not data:
        return {}
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):  # deep nesting makes json's decoder recurse out
        return {}
    return value if isinstance(value, dict) else {}


def parse_jsonl(data: bytes) -> List[Dict[str, Any]]:
    """Records of a JSON-lines blob; a torn last line (a crash mid-write) is skipped."""
    out = []
    for line in data.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            out.append(record)
    return out


def jsonl(records: Iterable[Mapping[str, Any]]) -> bytes:
    return "".join(json.dumps(r, sort_keys=True, default=str) + "\n" for r in records).encode()
