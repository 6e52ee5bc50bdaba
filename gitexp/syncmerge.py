"""Merging what ``git exp pull`` fetched into the local experiment refs and notes.

:func:`merge_fetched` takes the :class:`Fetched` listing of each remote (their objects are here
already, see :mod:`gitexp.sync`) and writes the local ``refs/exps/*`` and ``refs/notes/exps*`` in
one compare-and-swap transaction per attempt, rebuilt and retried when a local writer got there
first. The merge rules for one note are :mod:`gitexp.merge`; every remote note is checked
(:mod:`gitexp.summary`) before it is used, and one that fails is skipped with a warning.
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

from . import merge as rules
from . import summary as checks
from .errors import MissingObjects, RefConflict
from .notes import (CONFIG_PATH, DETAILS_REF, EXP_PREFIX, METRICS_REF, NOTES_REFS, SUMMARY_REF, SYNC_PREFIX,
                    _note_paths, dump_json, free_name, jsonl)
from .repo import RefUpdate, Repo, cas_attempts

MERGE_ATTEMPTS = 40


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


# -- reading and checking notes -----------------------------------------------------------------
_KINDS = {SUMMARY_REF: "summary", METRICS_REF: "metric-history", DETAILS_REF: "details"}
_warned: Set[Tuple[str, str]] = set()


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
            self._parsed[key] = rules.parse_note(notes_ref, self._blobs[blob])
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
        known = set(local_exps.values())
        candidates, forward, named = self._classify(local_exps)

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
        todo = self._differing(active, named, local_idx, remote_idx)
        with self.repo.batch():
            changes, usable_summary = self._merged_notes(todo, named, local_idx, remote_idx)
            refs, left_out = self._experiment_refs(candidates, forward, usable_summary, changes, local_exps, report)
            for ref in NOTES_REFS:
                update = self._notes_update(ref, local_tips[ref], changes[ref],
                                            [f.tips[ref] for f in self.fetched], message)
                if update:
                    refs.append(update)
        report.updated = len({sha for ref in NOTES_REFS for sha in changes[ref]} & known)
        report.left_out = left_out
        return refs

    def _classify(self, local_exps: Mapping[str, str]) -> Tuple[List[Tuple[str, str, Fetched]],
                                                                List[Tuple[str, str, str]], Set[str]]:
        """Which remote experiments are new here, which are later attempts of ours, and every
        commit whose notes the merge reads."""
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
        return candidates, forward, known | seen | earlier | between

    def _differing(self, active: Sequence[str], named: Set[str], local_idx: Mapping[str, Mapping[str, str]],
                   remote_idx: Sequence[Mapping[str, Mapping[str, str]]]) -> Dict[str, List[str]]:
        """Every note that differs between the sides (or exists on one remote side only), read."""
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
        return todo

    def _merged_notes(self, todo: Mapping[str, Sequence[str]], named: Set[str],
                      local_idx: Mapping[str, Mapping[str, str]],
                      remote_idx: Sequence[Mapping[str, Mapping[str, str]]]) -> Tuple[Dict[str, Dict[str, str]],
                                                                                       Set[str]]:
        """The notes that change here (ref -> {sha: blob}) and the commits with a usable summary."""
        changes: Dict[str, Dict[str, str]] = {ref: {} for ref in NOTES_REFS}
        usable_summary: Set[str] = set(sha for sha in named if local_idx[SUMMARY_REF].get(sha))
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
        return changes, usable_summary

    def _experiment_refs(self, candidates: Sequence[Tuple[str, str, Fetched]], forward: Sequence[Tuple[str, str, str]],
                         usable_summary: Set[str], changes: Dict[str, Dict[str, str]], local_exps: Mapping[str, str],
                         report: MergeReport) -> Tuple[List[RefUpdate], int]:
        """The experiment refs to write (new names, moved attempts) and how many were left out.

        A new experiment comes only with a usable summary; its other notes only with it."""
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
        report.added = added
        return refs, left_out

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
        return self._merged_blob(ref, versions)

    def _merged_blob(self, ref: str, versions: List[Tuple[str, Any, Optional[Any]]]) -> str:
        """The blob of several usable versions of one note merged (by the rules of its ref)."""
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


