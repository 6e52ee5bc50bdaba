"""Share experiments through any git remote: ``git exp pull`` and ``git exp push``.

A remote is a named git remote (``origin``), a path or a URL (``ssh://``, ``host:path``,
``https://``, ``file://``). Nothing gitexp-specific has to run on the other side: a plain
git host works.

Namespace (declared in :mod:`gitexp.notes`): ``refs/exps-sync/<label>/notes/exps``, ``.../exps-metrics`` and
``.../exps-details`` keep the notes tips last fetched from a remote (``<label>``: the remote's
name, or ``_`` and a hash of its URL), a cache like ``refs/remotes/``. A pull lists the remote's
``refs/exps/*`` and ``refs/notes/exps*`` (one ``ls-remote``) and fetches, by commit id, only
what is new: experiment commits no local ref names, and notes tips that moved (nothing new,
no fetch). The user's branches, tags and remote-tracking branches are never touched. The
merge then writes the local ``refs/exps/*`` and ``refs/notes/exps*`` in one compare-and-swap
transaction per attempt, rebuilt and retried when a local writer got there first.

Merge rules (the pure parts live in :mod:`gitexp.merge`):

* experiment refs: a remote experiment whose commit we have under no name gets its name
  here; if that name is taken by another commit it gets ``<name>-2``, ``-3``, ... A local
  experiment ref is never moved or deleted; a remote experiment without a usable summary
  note is left out until it has one.
* notes of every experiment named here (remote notes of commits no experiment names are
  ignored): summaries and details merged field by field, metric histories united, see
  :mod:`gitexp.merge`. A remote note that fails the checks of :mod:`gitexp.summary` is skipped
  with one warning naming its commit and never replaces a local note.
* each merged notes commit has the local tip and the remote tips as parents, so it is a
  fast-forward of both: ``git exp push`` (and a plain ``git push``) can send it without force.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

from . import merge as rules
from . import summary as checks
from .errors import BadInput, DiskFull, GitFailed, MissingObjects, RefConflict
from .notes import (CONFIG_PATH, DETAILS_REF, EXP_PREFIX, METRICS_REF, NOTES_REFS, SUMMARY_REF, SYNC_PREFIX,
                    _note_paths, dump_json, free_name, jsonl)
from .repo import RefUpdate, Repo, cas_attempts

FETCH_ATTEMPTS = 8
MERGE_ATTEMPTS = 40
PUSH_ATTEMPTS = 5
HINT_TIMEOUT = 3.0
_SIMPLE_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
# What git says when a ref it wanted to write was being written by someone else, or when a
# commit it listed is no longer advertised: list and fetch again.
_FETCH_RACE = ("cannot lock ref", ".lock': File exists", "Unable to create", "but expected", "is at ",
               "not our ref", "unadvertised object", "couldn't find remote ref")
# What a push says when the other side changed under it: fetch, merge and push again.
_PUSH_RACE = ("stale info", "fetch first", "non-fast-forward", "atomic push failed", "atomic transaction failed",
              "cannot lock ref", "already exists", "failed to update ref", "but expected", "is at ")


# -- where to sync with ------------------------------------------------------------------------
@dataclass(frozen=True)
class Source:
    """A git remote as the user named it, what git is given, and its private namespace."""

    spec: str   # as typed: origin, ../hub.git, ssh://host/repo
    url: str    # passed to git: the remote's name (so its settings apply) or an absolute path/URL
    label: str  # component under refs/exps-sync/

    @property
    def namespace(self) -> str:
        return f"{SYNC_PREFIX}{self.label}/"

    def tracking(self, notes_ref: str) -> str:
        """Where the remote's tip of ``notes_ref`` (refs/notes/exps...) is kept here."""
        return self.namespace + notes_ref[len("refs/"):]


def git_remotes(repo: Repo) -> Dict[str, str]:
    """Named git remotes of the repository and their URLs (one ``git config`` call)."""
    proc = repo.run(["config", "--get-regexp", r"^remote\..*\.url$"], check=False)
    out: Dict[str, str] = {}
    for line in proc.stdout.decode(errors="replace").splitlines():
        key, _, url = line.partition(" ")
        out.setdefault(key[len("remote."):-len(".url")], url)
    return out


def _hashed(text: str) -> str:
    return "_" + hashlib.sha1(text.encode()).hexdigest()[:16]


def resolve(repo: Repo, spec: str, remotes: Optional[Mapping[str, str]] = None) -> Source:
    """A remote name, path or URL as a :class:`Source`; an unknown name is bad input."""
    remotes = git_remotes(repo) if remotes is None else remotes
    if spec in remotes:
        label = spec if _SIMPLE_LABEL.match(spec) and ".." not in spec and not spec.endswith(".lock") else _hashed(spec)
        return Source(spec, spec, label)
    if not spec or spec.startswith("-"):
        raise BadInput(f"{spec!r} is not a git remote, path or URL")
    if "://" in spec or re.match(r"^[^/]+:", spec):
        if not os.path.exists(spec):
            return Source(spec, spec, _hashed(spec))  # a URL, or git's scp-like host:path
    if os.path.exists(spec) or "/" in spec or spec.startswith((".", "~")):
        path = os.path.abspath(os.path.expanduser(spec))
        return Source(spec, path, _hashed(path))
    known = ", ".join(sorted(remotes)) or "none"
    raise BadInput(f"no git remote named '{checks.printable(spec)}' (known git remotes: {known})",
                   "add one with git remote add <name> <url>, or give a path or URL")


def _git_message(stderr: bytes) -> str:
    """The line of git's stderr that says what went wrong."""
    lines = [line.strip() for line in stderr.decode(errors="replace").splitlines()
             if line.strip() and not line.startswith(("warning:", "hint:"))]
    return re.sub(r"^(fatal|error):\s*", "", lines[0]) if lines else "git gave no reason"


def _interactive_env() -> Dict[str, str]:
    """Let git and ssh ask for a password when a person is at the terminal."""
    return {"GIT_TERMINAL_PROMPT": "1"} if sys.stdin is not None and sys.stdin.isatty() else {}


# -- fetch ---------------------------------------------------------------------------------------
@dataclass
class Fetched:
    """What one remote had: its experiments and notes tips (their objects are here after :func:`fetch`)."""

    source: Source
    exps: Dict[str, str]                # name -> commit
    tips: Dict[str, Optional[str]]      # local notes ref name (refs/notes/exps...) -> remote tip
    names: Set[str] = field(default_factory=set)  # every experiment name there, usable or not

    @property
    def empty(self) -> bool:
        return not self.exps and not any(self.tips.values())


def list_remote(repo: Repo, source: Source) -> Fetched:
    """The remote's experiment refs and notes tips (one ``ls-remote``); bad input if it does not answer."""
    proc = repo.run(["ls-remote", "--refs", "--", source.url, EXP_PREFIX + "*", SUMMARY_REF + "*"],
                    check=False, env=_interactive_env())
    if proc.returncode != 0:
        _fetch_failed(repo, source, proc.stderr)
    exps: Dict[str, str] = {}
    tips: Dict[str, Optional[str]] = {ref: None for ref in NOTES_REFS}
    for line in proc.stdout.decode(errors="replace").splitlines():
        sha, _, ref = line.partition("\t")
        if not re.match(r"^[0-9a-f]{40}$", sha):
            continue
        if ref.startswith(EXP_PREFIX) and len(ref) > len(EXP_PREFIX):
            exps[ref[len(EXP_PREFIX):]] = sha
        elif ref in tips:
            tips[ref] = sha
    return Fetched(source, exps, tips, set(exps))


def _fetch_failed(repo: Repo, source: Source, stderr: bytes) -> None:
    err = stderr.decode(errors="replace")
    if any(text in err for text in ("No space left on device", "Disk quota exceeded")):
        raise DiskFull(repo.common_dir)
    raise BadInput(f"cannot fetch experiments from {checks.printable(source.spec)}: "
                   f"{checks.printable(_git_message(stderr))}")


def fetch(repo: Repo, source: Source) -> Fetched:
    """The remote's experiments and notes, with the objects this repository lacks.

    One ``ls-remote``, then one ``git fetch`` by commit id of what is new: experiment commits
    that no local experiment ref names (no ref is written for them: the merge names them) and
    notes tips that moved (kept under ``refs/exps-sync/<label>/notes/``). Nothing new, no
    fetch. Writing a ref per remote experiment would cost a file each; the merge writes the
    ones that are taken, in one transaction.
    """
    for attempt in cas_attempts(FETCH_ATTEMPTS, pause=(0.02, 0.2), growth=FETCH_ATTEMPTS):
        listed = list_remote(repo, source)
        local = repo.refs(EXP_PREFIX, source.namespace)
        named = {sha for ref, sha in local.items() if ref.startswith(EXP_PREFIX)}
        lines = sorted({sha for sha in listed.exps.values() if sha not in named})
        for ref, tip in listed.tips.items():
            if tip and local.get(source.tracking(ref)) != tip:
                lines.append(f"+{tip}:{source.tracking(ref)}")
        if not lines:
            return listed
        proc = repo.run(["fetch", "--quiet", "--no-tags", "--atomic", "--no-write-fetch-head", "--no-recurse-submodules",
                         "--no-auto-maintenance", "--refmap=", "--stdin", "--", source.url],
                        input="".join(line + "\n" for line in lines).encode(), check=False, env=_interactive_env())
        if proc.returncode == 0:
            return listed
        err = proc.stderr.decode(errors="replace")
        # The remote moved between the listing and the fetch (an old server refuses commits
        # it no longer advertises), or another pull of this remote held a ref: list again.
        if attempt + 1 < FETCH_ATTEMPTS and any(text in err for text in _FETCH_RACE):
            continue
        _fetch_failed(repo, source, proc.stderr)
    raise AssertionError("unreachable")


# -- reading and checking notes -----------------------------------------------------------------
_KINDS = {SUMMARY_REF: "summary", METRICS_REF: "metric-history", DETAILS_REF: "details"}
_warned: Set[Tuple[str, str]] = set()


def _parse(notes_ref: str, data: bytes) -> Tuple[Any, Optional[str]]:
    """(value, None) for a usable note, (None, problem) otherwise; histories give record lists."""
    if notes_ref == METRICS_REF:
        return _parse_history(data)
    value, problem = checks.parse_json(data)
    if problem is None:
        problem = checks.summary_problem(value) if notes_ref == SUMMARY_REF else checks.details_problem(value)
    return (None, problem) if problem else (value, None)


class _History:
    """A parsed metric history; canonical texts are computed only when it is merged."""

    def __init__(self, records: List[Dict[str, Any]], whole: bool) -> None:
        self.records = records
        self.whole = whole  # False: a torn last line was left out
        self._keyed: Optional[List[Tuple[str, Dict[str, Any]]]] = None

    @property
    def keyed(self) -> List[Tuple[str, Dict[str, Any]]]:
        if self._keyed is None:
            self._keyed = [(rules.canonical(record), record) for record in self.records]
        return self._keyed

    @property
    def texts(self) -> List[str]:
        return [text for text, _record in self.keyed]


_SCALAR_TYPES = (str, int, float, bool, type(None))


def _parse_history(data: bytes) -> Tuple[Any, Optional[str]]:
    """The checks of :func:`gitexp.summary.load_history`, but a bad record rejects the whole note."""
    lines = [line for line in data.splitlines() if line.strip()]
    records: List[Dict[str, Any]] = []
    whole = True
    loads = json.loads
    for number, line in enumerate(lines, 1):
        try:
            value = loads(line)
        except RecursionError:
            return None, f"record {number}: it is nested too deeply"
        except ValueError as exc:
            if number == len(lines):
                whole = False  # a torn last line (a crash mid-write): the rest is good
                break
            return None, f"record {number}: it is not valid JSON ({str(exc)[:80]})"
        if value.__class__ is not dict:
            return None, f"record {number}: it is not a JSON object"
        for item in value.values():
            if not isinstance(item, _SCALAR_TYPES):
                return None, f"record {number}: a value is not a string, number, true/false or null"
        records.append(value)
    return _History(records, whole), None


def _warn_remote(source: Source, notes_ref: str, sha: str, blob: str, problem: str, local: bool) -> None:
    if (source.spec, notes_ref + sha) in _warned:
        return
    _warned.add((source.spec, notes_ref + sha))
    kept = "the local note is kept" if local else "not taken"
    print(checks.printable(f"warning: skipping the {_KINDS[notes_ref]} note of {sha[:10]} from {source.spec}: "
                           f"{problem[:200]}; {kept} (see git cat-file -p {blob})"), file=sys.stderr, flush=True)


# -- the merge -----------------------------------------------------------------------------------
@dataclass
class MergeReport:
    added: List[Tuple[str, str, str]] = field(default_factory=list)  # (local name, remote name, remote spec)
    forwarded: List[str] = field(default_factory=list)  # experiments resumed or retried there: moved to that attempt
    updated: int = 0                                                    # experiments here whose notes changed
    left_out: int = 0                                                   # remote experiments without a usable summary
    empty: List[str] = field(default_factory=list)                      # remotes without any experiments

    @property
    def changed(self) -> bool:
        return bool(self.added) or bool(self.updated) or bool(self.forwarded)

    def lines(self, spec: str) -> List[str]:
        """What a person reads: one line, plus one per experiment that got another name."""
        if not self.changed:
            out = [f"up to date with {spec}"]
        else:
            parts = []
            if self.added:
                parts.append(f"{len(self.added)} new experiment{'s' if len(self.added) != 1 else ''}")
            if self.forwarded:
                parts.append(f"{len(self.forwarded)} with a new attempt there")
            if self.updated:
                parts.append(f"notes of {self.updated} experiment{'s' if self.updated != 1 else ''} merged")
            out = [f"pulled from {spec}: {', '.join(parts)}"]
        if self.left_out:
            out[0] += f" ({self.left_out} without a usable summary note there left out)"
        for local, remote, where in self.added:
            if local != remote:
                why = "a name taken here" if _valid_name(remote, "0" * 40) == remote else "not a valid name here"
                out.append(checks.printable(f"  {local}: named {remote} on {where}, {why}"))
        return out


class _Merger:
    """Merges fetched remotes into the local refs; remote data is read once, local data per attempt."""

    def __init__(self, repo: Repo, fetched: Sequence[Fetched]) -> None:
        self.repo = repo
        self.fetched = [f for f in fetched if not f.empty]
        self._indexes: Dict[str, Dict[str, str]] = {}         # notes commit -> {annotated sha: blob}
        self._blobs: Dict[str, bytes] = {}
        self._parsed: Dict[Tuple[str, str], Tuple[Any, Optional[str]]] = {}
        self._ancestor: Dict[Tuple[str, str], bool] = {}
        self._ran_here: Dict[str, bool] = {}

    # reads, cached: commits and blobs never change
    def index(self, tip: Optional[str]) -> Dict[str, str]:
        if not tip:
            return {}
        if tip not in self._indexes:
            self._indexes[tip] = {e.path.replace("/", ""): e.sha for e in self.repo.ls_tree(tip) if e.kind == "blob"}
        return self._indexes[tip]

    def load(self, blobs: Iterable[str]) -> None:
        wanted = [b for b in set(blobs) if b not in self._blobs]
        if wanted:
            found = self.repo.cat_blobs(wanted)
            missing = [b for b in wanted if b not in found]
            if missing:
                raise MissingObjects(missing, "notes being merged")
            self._blobs.update(found)

    def parsed(self, notes_ref: str, blob: str) -> Tuple[Any, Optional[str]]:
        key = (notes_ref, blob)
        if key not in self._parsed:
            self._parsed[key] = _parse(notes_ref, self._blobs[blob])
        return self._parsed[key]

    def attempts_between(self, old: str, new: str) -> List[str]:
        """Commits on the first-parent line from ``new`` back to ``old`` (both ends excluded)."""
        proc = self.repo.run(["rev-list", "--first-parent", f"{old}..{new}"], check=False)
        return [line for line in proc.stdout.decode().split() if line != new]

    def ran_here(self, sha: str) -> bool:
        if sha not in self._ran_here:
            from .evidence import ran_here  # psutil: only when a note of ours is merged

            self._ran_here[sha] = ran_here(self.repo, sha)
        return self._ran_here[sha]

    def graph_problem(self, sha: str, summary: Mapping[str, Any]) -> Optional[str]:
        """Why a remote summary's chain, attempt or outdir_of contradict the commit graph."""
        if not any(key in summary for key in ("chain", "attempt", "outdir_of")):
            return None
        from .evidence import chain_problem

        return chain_problem(self.repo, sha, summary)

    def _graph_rejected(self, sha: str, blob: str) -> bool:
        self.load([blob])
        value, problem = self.parsed(SUMMARY_REF, blob)
        return problem is None and self.graph_problem(sha, value) is not None

    def only_params_changed(self, old: str, new: str) -> bool:
        """Whether every attempt from ``old`` to ``new`` keeps the code: only the config differs.

        A later attempt of one of our experiments moves our ref; one whose tree changes code
        is not an attempt (resuming it would run that code here), whatever its note says.
        """
        line = [new, *self.attempts_between(old, new), old]
        for child, parent in zip(line, line[1:]):
            proc = self.repo.run(["diff-tree", "-r", "--name-only", "--no-commit-id", parent, child], check=False)
            changed = [p for p in proc.stdout.decode(errors="replace").splitlines() if p]
            if proc.returncode != 0 or any(p != CONFIG_PATH for p in changed):
                return False
        return True

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        key = (ancestor, descendant)
        if key not in self._ancestor:
            self._ancestor[key] = self.repo.is_ancestor(ancestor, descendant)
        return self._ancestor[key]

    # one attempt: read local state, compute every change, apply it in one transaction
    def attempt(self, message: str, report: MergeReport) -> Optional[List[RefUpdate]]:
        local = self.repo.refs(EXP_PREFIX, *NOTES_REFS)
        local_exps = {ref[len(EXP_PREFIX):]: sha for ref, sha in local.items() if ref.startswith(EXP_PREFIX)}
        local_tips = {ref: local.get(ref) for ref in NOTES_REFS}

        # Which remote experiments are new here, and under which names.
        known = set(local_exps.values())
        candidates: List[Tuple[str, str, Fetched]] = []  # (remote name, sha, from)
        forward: List[Tuple[str, str, str]] = []  # (name, remote sha, local sha): a later attempt there
        earlier: Set[str] = set()  # remote tips that are earlier attempts of ours (we resumed here)
        seen: Set[str] = set()
        for f in self.fetched:
            for name, sha in sorted(f.exps.items()):
                if sha in known or sha in seen:
                    continue
                mine = local_exps.get(name)
                if mine is not None and self.is_ancestor(sha, mine):
                    earlier.add(sha)
                    continue
                seen.add(sha)
                if mine is not None and self.is_ancestor(mine, sha) and not any(n == name for n, _s, _m in forward):
                    if not self.only_params_changed(mine, sha):
                        _warn_forward(f.source, name, sha)
                        continue
                    forward.append((name, sha, mine))
                else:
                    candidates.append((name, sha, f))
        # Attempts made there between our tip and theirs come with their notes.
        between = {c for _name, sha, mine in forward for c in self.attempts_between(mine, sha)}
        named = known | seen | earlier | between

        # A notes ref whose remote tips are the local tip holds the same notes: with no new
        # experiment, nothing there can change (no ls-tree, no reads). Any other tip is merged
        # whole, even one already in the local history: the merge is of states, not of changes.
        def same(ref: str) -> bool:
            return all(not f.tips[ref] or f.tips[ref] == local_tips[ref] for f in self.fetched)

        active = [ref for ref in NOTES_REFS if candidates or forward or not same(ref)]
        if not active:
            report.added, report.updated, report.left_out = [], 0, 0
            return []
        read = set(active) | ({SUMMARY_REF} if DETAILS_REF in active else set())  # details follow summaries
        local_idx = {ref: self.index(local_tips[ref]) if ref in read else {} for ref in NOTES_REFS}
        remote_idx = [{ref: self.index(f.tips[ref]) if ref in read else {} for ref in NOTES_REFS}
                      for f in self.fetched]

        # Read every note that differs between the sides (or exists on one remote side only).
        todo: Dict[str, List[str]] = {ref: [] for ref in NOTES_REFS}
        for ref in active:
            shas = []
            for sha in named:
                here = local_idx[ref].get(sha)
                there = {idx[ref][sha] for idx in remote_idx if sha in idx[ref]}
                if there and there != {here}:
                    shas.append(sha)
            todo[ref] = shas
        self.load(blob for ref, shas in todo.items() for sha in shas
                  for blob in [local_idx[ref].get(sha), *(idx[ref].get(sha) for idx in remote_idx)] if blob)

        changes: Dict[str, Dict[str, str]] = {ref: {} for ref in NOTES_REFS}
        usable_summary: Set[str] = set(sha for sha in named if local_idx[SUMMARY_REF].get(sha))
        with self.repo.batch():
            for ref in (SUMMARY_REF, METRICS_REF, DETAILS_REF):
                for sha in todo[ref]:
                    blob = self._merge_note(ref, sha, local_idx[ref].get(sha),
                                            [(f, idx[ref].get(sha)) for f, idx in zip(self.fetched, remote_idx)],
                                            local_idx, remote_idx)
                    if blob is None:
                        continue
                    if ref == SUMMARY_REF:
                        usable_summary.add(sha)
                    if blob != local_idx[ref].get(sha):
                        changes[ref][sha] = blob
            # A new experiment comes only with a usable summary; its other notes only with it.
            added: List[Tuple[str, str, str]] = []
            refs: List[RefUpdate] = []
            taken = set(local_exps)
            left_out = 0
            for name, sha, f in candidates:
                if sha not in usable_summary:
                    left_out += 1
                    for ref in NOTES_REFS:
                        changes[ref].pop(sha, None)
                    continue
                local_name = free_name(_valid_name(name, sha), taken)
                added.append((local_name, name, f.source.spec))
                refs.append(RefUpdate(EXP_PREFIX + local_name, sha, None))
            for name, sha, mine in forward:  # resumed or retried there: our ref moves to the later attempt
                if sha not in usable_summary:
                    left_out += 1
                    continue
                refs.append(RefUpdate(EXP_PREFIX + name, sha, mine))
                report.forwarded.append(name)
            for ref in NOTES_REFS:
                update = self._notes_update(ref, local_tips[ref], changes[ref],
                                            [f.tips[ref] for f in self.fetched], message)
                if update:
                    refs.append(update)
        report.added = added
        report.updated = len({sha for ref in NOTES_REFS for sha in changes[ref]} & known)
        report.left_out = left_out
        return refs

    def _merge_note(self, ref: str, sha: str, here: Optional[str], there: List[Tuple[Fetched, Optional[str]]],
                    local_idx: Mapping[str, Mapping[str, str]],
                    remote_idx: Sequence[Mapping[str, Mapping[str, str]]]) -> Optional[str]:
        """The blob to keep for one note; None when no side has a usable one.

        A run this machine executed (its run directory is here) keeps this machine's note:
        a remote note of it is a claim and never replaces the record made where it ran.
        """
        if here and self.ran_here(sha):
            return here
        versions: List[Tuple[str, Any, Optional[Any]]] = []  # (blob, value, its summary)
        for i, (f, blob) in enumerate([(None, here), *there]):
            if not blob:
                continue
            value, problem = self.parsed(ref, blob)
            if problem is None and f is not None and ref == SUMMARY_REF:
                problem = self.graph_problem(sha, value)
            if problem is not None:
                if f is not None:
                    _warn_remote(f.source, ref, sha, blob, problem, bool(here))
                continue
            if f is not None and ref != SUMMARY_REF:
                idx = remote_idx[i - 1]
                summary_blob = idx[SUMMARY_REF].get(sha)
                if summary_blob and self._graph_rejected(sha, summary_blob):
                    continue  # its summary did not match the commit graph: none of its notes are taken
            summary = None
            if ref == DETAILS_REF:
                idx = local_idx if f is None else remote_idx[i - 1]
                summary = self._usable_summary(idx[SUMMARY_REF].get(sha))
            versions.append((blob, value, summary))
        if not versions:
            return None
        if len(versions) == 1 and (ref != METRICS_REF or versions[0][1].whole):
            return versions[0][0]  # one usable note: kept as it is, the same blob on both sides
        if ref == SUMMARY_REF:
            merged: Any = versions[0][1]
            for _blob, value, _s in versions[1:]:
                merged = rules.merge_summary(merged, value)
            same = [b for b, v, _s in versions if rules.canonical(v) == rules.canonical(merged)]
            data = dump_json(merged)
        elif ref == DETAILS_REF:
            merged, merged_summary = versions[0][1], versions[0][2] or {}
            for _blob, value, summary in versions[1:]:
                merged = rules.merge_details(merged, value, merged_summary, summary or {})
                merged_summary = rules.merge_summary(merged_summary, summary or {})
            same = [b for b, v, _s in versions if rules.canonical(v) == rules.canonical(merged)]
            data = dump_json(merged)
        else:
            keyed = rules.merge_keyed_history(*(v.keyed for _b, v, _s in versions))
            texts = [text for text, _record in keyed]
            same = [b for b, v, _s in versions if v.whole and v.texts == texts]
            data = jsonl(record for _text, record in keyed)
        # A side that already holds the result keeps its bytes (the smallest blob id when
        # both do, so both sides converge on one blob); otherwise the merged note is new.
        return min(same) if same else self.repo.hash_blob(data)

    def _usable_summary(self, blob: Optional[str]) -> Dict[str, Any]:
        if not blob:
            return {}
        self.load([blob])
        value, problem = self.parsed(SUMMARY_REF, blob)
        return value if problem is None else {}

    def _notes_update(self, ref: str, local_tip: Optional[str], changes: Mapping[str, str],
                      remote_tips: Sequence[Optional[str]], message: str) -> Optional[RefUpdate]:
        """The new tip of one notes ref: unchanged, fast-forwarded, or a merge commit of all tips."""
        extra: List[str] = []
        for tip in remote_tips:
            if tip and tip != local_tip and tip not in extra and not (local_tip and self.is_ancestor(tip, local_tip)):
                extra.append(tip)
        if not changes and not extra:
            return None
        if len(extra) == 1 and (local_tip is None or self.is_ancestor(local_tip, extra[0])) \
                and {**self.index(local_tip), **changes} == self.index(extra[0]):
            return RefUpdate(ref, extra[0], local_tip)  # the remote holds exactly these notes: fast-forward
        edits: Dict[str, Optional[str]] = {}
        for sha, blob in changes.items():
            for path in _note_paths(sha):
                edits[path] = None
            edits[_note_paths(sha)[0]] = blob
        if edits or not local_tip:
            tree = self.repo.build_tree(local_tip, edits)
        else:
            tree = self.repo.tree_of(local_tip)
        parents = ([local_tip] if local_tip else []) + extra
        return RefUpdate(ref, self.repo.commit_tree(tree, parents, message), local_tip)


def _warn_forward(source: Source, name: str, sha: str) -> None:
    print(checks.printable(f"warning: not moving {name} to {sha[:10]} from {source.spec}: it claims to be a later "
                           "attempt of this experiment but changes its code (an attempt changes only the config); "
                           f"see git diff {sha[:10]}~1 {sha[:10]}"), file=sys.stderr, flush=True)


def _valid_name(name: str, sha: str) -> str:
    """The remote's name if it is a valid experiment name here, else a cleaned one."""
    from .config import MAX_NAME_LEN, check_name  # only when names are chosen: config.py is slow to import

    if check_name(name) is None:
        return name
    cleaned = re.sub(r"[^A-Za-z0-9._=,+-]+", "-", name).lstrip("._=,+-").replace("..", ".")
    cleaned = cleaned[:MAX_NAME_LEN - 10].rstrip(".")
    if cleaned.endswith(".lock"):
        cleaned = cleaned[:-5]
    return cleaned if cleaned and check_name(cleaned) is None else f"exp-{sha[:10]}"


def _only_commits(repo: Repo, fetched: Sequence[Fetched]) -> None:
    """Drop remote experiment refs and notes tips that do not name a commit (one warning each).

    A remote ref may name a tree, a blob or a tag: as an experiment or a notes parent it
    would break every reader here. Only what is new is checked (one ``cat-file``).
    """
    local = repo.refs(EXP_PREFIX, *NOTES_REFS)
    known = set(local.values())
    check = {sha for f in fetched for sha in f.exps.values() if sha not in known}
    check |= {tip for f in fetched for tip in f.tips.values() if tip and tip not in known}
    if not check:
        return
    wanted = sorted(check)
    proc = repo.run(["cat-file", "--batch-check=%(objectname) %(objecttype)"],
                    input="".join(sha + "\n" for sha in wanted).encode(), check=False)
    types = dict(zip(wanted, (line.rpartition(" ")[2] for line in proc.stdout.decode(errors="replace").splitlines())))

    def bad(sha: str, what: str, source: Source) -> bool:
        kind = types.get(sha, "commit" if sha in known else "missing")
        if kind == "commit":
            return False
        print(checks.printable(f"warning: skipping {what} of {source.spec}: it names a {kind} object "
                               f"{sha[:10]}, not a commit"), file=sys.stderr, flush=True)
        return True

    for f in fetched:
        f.exps = {name: sha for name, sha in f.exps.items() if not bad(sha, f"{EXP_PREFIX}{name}", f.source)}
        f.tips = {ref: (None if tip and bad(tip, ref, f.source) else tip) for ref, tip in f.tips.items()}


def merge_fetched(repo: Repo, fetched: Sequence[Fetched], message: str) -> MergeReport:
    """Merge what was fetched into the local experiment refs and notes (CAS, retried)."""
    report = MergeReport(empty=[f.source.spec for f in fetched if f.empty])
    _only_commits(repo, fetched)
    merger = _Merger(repo, fetched)
    if not merger.fetched:
        return report
    for _ in cas_attempts(MERGE_ATTEMPTS):  # a local writer got there first: merge again
        updates = merger.attempt(message, report)
        if not updates:
            return report
        if repo.update_refs(updates, message):
            repo.maintain()
            return report
    raise RefConflict(f"gave up merging after {MERGE_ATTEMPTS} attempts: the local notes kept changing",
                      "run the command again")


# -- the commands' cores ---------------------------------------------------------------------------
def pull(repo: Repo, specs: Sequence[str]) -> MergeReport:
    """Fetch every remote (all names checked first), then merge them all in one transaction."""
    remotes = git_remotes(repo)
    if not specs:
        specs = [default_remote(remotes)]
    sources = [resolve(repo, spec, remotes) for spec in dict.fromkeys(specs)]
    fetched = [fetch(repo, source) for source in sources]
    names = " ".join(s.spec for s in sources)
    return merge_fetched(repo, fetched, f"gitexp: pull {names}")


def default_remote(remotes: Mapping[str, str]) -> str:
    if "origin" in remotes:
        return "origin"
    if len(remotes) == 1:
        return next(iter(remotes))
    known = ", ".join(sorted(remotes)) or "none"
    raise BadInput(f"name the git remote to use (known git remotes: {known})",
                   "e.g. git exp pull origin, or a path or URL")


@dataclass
class PushReport:
    pulled: MergeReport
    pushed: List[Tuple[str, str]] = field(default_factory=list)  # (local name, name there)
    notes: List[str] = field(default_factory=list)              # notes refs updated there
    attempts: int = 1


def push(repo: Repo, spec: str, attempts: int = PUSH_ATTEMPTS) -> PushReport:
    """Fetch, merge, then push new experiments and the merged notes with leases; retried on a race.

    Every ref is pushed with ``--force-with-lease``: experiment refs must not exist there
    (a name taken there by another commit gets a free name, never overwritten), notes refs
    must still be at the tips just fetched (the merged commits descend from them). With
    ``--atomic`` the other side takes all or nothing.
    """
    source = resolve(repo, spec)
    message = f"gitexp: push {spec}"
    for n in cas_attempts(attempts, pause=(0.05, 0.3), growth=attempts):
        attempt = n + 1
        fetched = fetch(repo, source)
        pulled = merge_fetched(repo, [fetched], message)
        report = PushReport(pulled, attempts=attempt)
        local = repo.refs(EXP_PREFIX, *NOTES_REFS)
        args, leases = _experiment_refspecs(local, fetched, report, repo.is_ancestor)
        for ref in NOTES_REFS:
            tip, remote_tip = local.get(ref), fetched.tips.get(ref)
            if tip and tip != remote_tip:
                args.append(f"{tip}:{ref}")
                leases.append(f"--force-with-lease={ref}:{remote_tip or ''}")
                report.notes.append(ref)
        if not report.pushed and not report.notes:
            return report
        outcome = _git_push(repo, source, leases, args)
        if outcome is None:
            return report
        if attempt == attempts:
            raise RefConflict(f"{spec} kept changing while pushing ({outcome}); nothing more was pushed",
                              "run git exp push again")
    raise AssertionError("unreachable")


GLOB_FROM = 100  # pushing more new experiments than this: one glob refspec, not one refspec each


def _experiment_refspecs(local: Mapping[str, str], fetched: Fetched, report: PushReport,
                         is_ancestor: Optional[Callable[[str, str], bool]] = None) -> Tuple[List[str], List[str]]:
    """Refspecs and leases for the local experiments the remote lacks (by commit).

    A name the remote has for another commit is never overwritten: the experiment goes under
    the first free ``name-N``. Every new ref carries a lease that it must not exist there.
    Many new experiments go with one glob (thousands of explicit refspecs make ``git push``
    slow, quadratically): those the remote has under the same name are up to date, new ones
    are created under the bare ``--force-with-lease`` (no remote-tracking ref: must not
    exist), and the rest are left out with negative refspecs.
    """
    there = set(fetched.exps.values())
    taken = set(fetched.exps) | fetched.names
    mine = {ref[len(EXP_PREFIX):]: sha for ref, sha in sorted(local.items()) if ref.startswith(EXP_PREFIX)}
    keep: List[str] = []
    left_out: List[str] = []
    renamed: List[Tuple[str, str]] = []
    forwarded: List[Tuple[str, str, str]] = []  # (name, ours, theirs): a later attempt here
    for name, sha in mine.items():  # first the ones that keep their names, so renames avoid them
        if fetched.exps.get(name) == sha:
            continue  # up to date there
        theirs = fetched.exps.get(name)
        if theirs and is_ancestor is not None and is_ancestor(theirs, sha):
            forwarded.append((name, sha, theirs))
            continue
        if sha in there or name in taken:
            left_out.append(name)
            if sha not in there:
                renamed.append((name, sha))
            continue
        taken.add(name)
        there.add(sha)
        keep.append(name)
    # A forwarded ref needs a lease on its old value, which a negative refspec would drop.
    glob = len(keep) + len(renamed) > GLOB_FROM and not forwarded
    if glob:
        taken.update(left_out)  # a negative refspec also drops an explicit push to its name
    args: List[str] = []
    leases: List[str] = []
    if glob:
        args += [f"{EXP_PREFIX}*:{EXP_PREFIX}*"] + [f"^{EXP_PREFIX}{name}" for name in left_out]
        leases.append("--force-with-lease")
    else:
        for name in keep:
            args.append(f"{mine[name]}:{EXP_PREFIX}{name}")
            leases.append(f"--force-with-lease={EXP_PREFIX}{name}:")
    report.pushed = [(name, name) for name in keep]
    for name, sha, theirs in forwarded:
        args.append(f"{sha}:{EXP_PREFIX}{name}")
        leases.append(f"--force-with-lease={EXP_PREFIX}{name}:{theirs}")
        report.pushed.append((name, name))
    for name, sha in renamed:
        if sha in there:
            continue  # the same commit under two local names: once is enough
        free = free_name(name, taken)
        there.add(sha)
        args.append(f"{sha}:{EXP_PREFIX}{free}")
        leases.append(f"--force-with-lease={EXP_PREFIX}{free}:")
        report.pushed.append((name, free))
    return args, leases


def _git_push(repo: Repo, source: Source, leases: List[str], refspecs: List[str]) -> Optional[str]:
    """None when pushed; the reason when the other side changed meanwhile (retry); raises otherwise."""
    base = ["push", "--porcelain", "--no-recurse-submodules", "--quiet"]
    for atomic in (["--atomic"], []):
        proc = repo.run([*base, *atomic, *leases, "--", source.url, *refspecs], check=False, env=_interactive_env())
        if proc.returncode == 0:
            return None
        out = proc.stdout.decode(errors="replace")
        err = proc.stderr.decode(errors="replace")
        if atomic and "does not support --atomic" in err:
            continue  # an old server: every ref still carries its lease
        rejected = [line for line in out.splitlines() if line.startswith("!")]
        reasons = " ".join(line.split("\t")[-1] for line in rejected)
        if rejected and all(any(text in line for text in _PUSH_RACE) for line in rejected):
            return reasons.strip() or "a ref changed there"
        if any(text in err for text in ("No space left on device", "Disk quota exceeded")):
            raise GitFailed(f"cannot push to {source.spec}: {_git_message(proc.stderr)}")
        detail = reasons.strip() or _git_message(proc.stderr)
        raise GitFailed(f"cannot push to {checks.printable(source.spec)}: {checks.printable(detail)}")
    raise AssertionError("unreachable")


# -- for `git exp log` in a fresh clone --------------------------------------------------------------
def hint_when_empty(repo: Repo) -> Optional[str]:
    """When this repository has no experiments but a git remote has: how to get them.

    Cheap when there are experiments (one ``for-each-ref``). Otherwise looks at the refs a
    previous fetch left, then asks the remotes (``origin`` first) with ``ls-remote``, never
    prompting for a password and giving up after a few seconds.
    """
    if repo.refs(EXP_PREFIX):
        return None
    remotes = git_remotes(repo)
    if not remotes:
        return None
    order = sorted(remotes, key=lambda name: (name != "origin", name))
    for name in order:
        source = resolve(repo, name, remotes)
        if repo.refs(source.namespace + "notes/"):
            return _hint(name)
    deadline = time.monotonic() + HINT_TIMEOUT
    for name in order[:3]:
        left = deadline - time.monotonic()
        if left <= 0.2:
            break
        found = repo.ls_remote(name, [EXP_PREFIX + "*", SUMMARY_REF], timeout=left)
        if found:
            return _hint(name)
    return None


def _hint(name: str) -> str:
    return f"{name} has experiments: fetch them with `git exp pull {name}`"
