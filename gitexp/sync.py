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

Merge rules (the merge is :mod:`gitexp.syncmerge`, its pure parts :mod:`gitexp.merge`):

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
import os
import re
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from . import gitconfig
from . import summary as checks
from .errors import BadInput, DiskFull, GitFailed, RefConflict
from .notes import EXP_PREFIX, NOTES_REFS, SUMMARY_REF, free_name
from .repo import Repo, cas_attempts
# The merge of what was fetched; Source, Fetched, MergeReport, merge_fetched and _valid_name are
# used from here too.
from .syncmerge import Fetched as Fetched, MergeReport as MergeReport, Source as Source, _valid_name as _valid_name, merge_fetched as merge_fetched  # noqa: F401

FETCH_ATTEMPTS = 8
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


def git_remotes(repo: Repo) -> Dict[str, str]:
    """Named git remotes of the repository and their URLs (one ``git config`` call)."""
    out: Dict[str, str] = {}
    for key, url in gitconfig.matching(repo, gitconfig.REMOTE_URLS):
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
