"""The one door to git: every git process gitexp starts is started here.

Higher layers (``notes.py`` for refs and notes, ``experiments.py`` for experiment commits) call
these typed helpers; nothing else in the package runs git or touches the object store.
Objects gitexp makes itself (note blobs, notes trees and commits, experiment commits) are
written in process (loose objects by :mod:`gitexp.repo_objects`, a sweep's pack by dulwich), so a
sweep of 1,000 points does not start 1,000 processes.  Reads are batched (one
``for-each-ref``, one ``ls-tree``, one ``cat-file --batch`` for many objects) and every ref
write goes through :meth:`Repo.update_refs`, a single atomic ``update-ref --stdin``
transaction whose lines carry the old value (compare-and-swap).
"""
from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

if TYPE_CHECKING:  # dulwich is imported where it is used (packs): a run and `git exp log` do without it
    from dulwich.object_store import DiskObjectStore

from .errors import BadInput, DiskFull, GitFailed, MissingObjects
from .gitenv import clean_env
from .gitobjects import Blob, Commit, GitObject, Tree
from .repo_objects import ObjectWrites
from .repo_worktree import WorkTree

ZERO_SHA = "0" * 40


@dataclass(frozen=True)
class RefUpdate:
    """One line of a ref transaction. ``old`` None = must not exist; ``new`` None = delete."""

    ref: str
    new: Optional[str]
    old: Optional[str]

    def line(self) -> str:
        old = self.old or ZERO_SHA
        if self.new is None:
            return f"delete {self.ref} {old}\n"
        return f"update {self.ref} {self.new} {old}\n"


def cas_attempts(limit: int, pause: Tuple[float, float] = (0.005, 0.05), growth: int = 8) -> Iterator[int]:
    """The attempts of a compare-and-swap retry loop: 0, 1, ... ``limit - 1``.

    Before each retry it sleeps a random pause (``pause`` times the retry's number, at most
    ``growth`` times), so writers that lost the same race do not meet again in lock-step. The
    caller leaves the loop when its write landed and raises its own error when the loop ends:
    every retried ref write (notes, experiment names, a pull's merge, a push) retries this way.
    """
    for n in range(limit):
        if n:
            import random  # here: most commands never retry

            time.sleep(random.uniform(*pause) * min(n, growth))
        yield n


@dataclass(frozen=True)
class TreeEntry:
    mode: str
    kind: str
    sha: str
    path: str


_NO_SPACE_TEXT = ("No space left on device", "Disk quota exceeded")


_FULL_SHA = re.compile(r"^[0-9a-f]{40}$")
_PER_WORKTREE = ("refs/bisect/", "refs/worktree/", "refs/rewritten/")  # kept in each worktree's git dir
LOOSE_REFS_LIMIT = 1000  # more loose experiment refs than this: maintain() packs them


class Repo(ObjectWrites, WorkTree):
    """A git repository found from a directory inside its working tree."""

    def __init__(self, root: str, git_dir: str, common_dir: str) -> None:
        self.root = root
        self.git_dir = git_dir
        self.common_dir = common_dir
        self._odb: Optional[DiskObjectStore] = None
        self._pending: Optional[Dict[bytes, GitObject]] = None
        self.settings: Dict[str, str] = {}  # values read once per process (e.g. the runs root)
        self._ident: Optional[Tuple[bytes, Optional[int], int]] = None
        # In-process reads (refs, small object reads): one at a time, since dulwich's pack files
        # are read with seek + read; the owner pid keeps a forked child off its parent's files.
        self._read_lock = threading.RLock()
        self._odb_pid = 0
        self._perm_pid = 0  # core.sharedRepository not read yet
        self._packed_asked = 0
        self._shared: object = None
        self._packed_refs: Tuple[Tuple[int, int, int], Dict[str, str]] = ((0, 0, 0), {})

    # -- discovery -------------------------------------------------------------------
    @classmethod
    def discover(cls, path: str = ".") -> "Repo":
        path = os.path.abspath(path)
        # The usual case (a working tree) in one git process; anything else is told apart below.
        try:
            both = subprocess.run(["git", "rev-parse", "--is-bare-repository", "--absolute-git-dir",
                                   "--git-common-dir", "--show-toplevel"],
                                  cwd=path, env=clean_env(), capture_output=True, text=True)
        except FileNotFoundError:
            raise BadInput("git is not installed or not on PATH", "install git and retry") from None
        lines = both.stdout.splitlines()
        if both.returncode == 0 and len(lines) == 4 and lines[0] == "false" and all(lines[1:]):
            return cls._found(path, lines[1], lines[2], lines[3])
        try:
            proc = subprocess.run(
                ["git", "rev-parse", "--is-bare-repository", "--absolute-git-dir", "--git-common-dir"],
                cwd=path, env=clean_env(), capture_output=True, text=True,
            )
        except FileNotFoundError:
            raise BadInput("git is not installed or not on PATH", "install git and retry") from None
        if proc.returncode != 0:
            raise BadInput(
                f"not a git repository: {path}",
                "run gitexp inside a git repository (git init, then commit your code)",
            )
        bare, git_dir, common = (proc.stdout.splitlines() + ["", "", ""])[:3]
        if bare == "true" or not git_dir:
            raise BadInput(f"{git_dir or path} is a bare repository: it has no working tree to snapshot",
                           "clone it (git clone <path>) and run gitexp in the clone")
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=path, env=clean_env(),
                             capture_output=True, text=True)
        if top.returncode != 0 or not top.stdout.strip():
            raise BadInput(f"{path} is inside the git directory {git_dir}, not in a working tree",
                           "run gitexp from the repository's working tree")
        return cls._found(path, git_dir, common, top.stdout.strip())

    @classmethod
    def _found(cls, path: str, git_dir: str, common: str, top: str) -> "Repo":
        if not os.path.isabs(common):
            common = os.path.normpath(os.path.join(path, common))
        return cls(top, git_dir, common)

    # -- process plumbing -------------------------------------------------------------
    def run(
        self,
        args: Sequence[str],
        input: Optional[bytes] = None,
        env: Optional[Mapping[str, str]] = None,
        check: bool = True,
        cwd: Optional[str] = None,
        timeout: Optional[float] = None,
    ) -> subprocess.CompletedProcess[bytes]:
        # Its own session: Ctrl-C at the terminal is gitexp's to handle (stop runs, record
        # them); a git killed by it halfway would turn an orderly stop into an error.
        # ``timeout``: subprocess.TimeoutExpired once git has run that long (it is killed).
        proc = subprocess.run(
            ["git", *args], cwd=cwd or self.root, env=clean_env(env), input=input,
            capture_output=True, start_new_session=True, timeout=timeout,
        )
        if check and proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip()
            if any(text in err for text in _NO_SPACE_TEXT):
                raise DiskFull(self.common_dir)
            raise GitFailed(f"git {' '.join(args[:3])} failed: {err}")
        return proc

    def out(self, args: Sequence[str], **kw: object) -> str:
        return self.run(args, **kw).stdout.decode(errors="replace")  # type: ignore[arg-type]

    # -- reads ------------------------------------------------------------------------
    def head(self) -> str:
        proc = self.run(["rev-parse", "--verify", "-q", "HEAD^{commit}"], check=False)
        if proc.returncode != 0:
            raise BadInput(
                f"the repository {self.root} has no commits yet",
                "commit your code first (git add -A && git commit -m init)",
            )
        return proc.stdout.decode().strip()

    def is_dirty(self) -> bool:
        return bool(self.out(["status", "--porcelain", "--untracked-files=normal"]).strip())

    def resolve(self, rev: str) -> Optional[str]:
        proc = self.run(["rev-parse", "--verify", "-q", f"{rev}^{{commit}}"], check=False)
        return proc.stdout.decode().strip() if proc.returncode == 0 else None

    def refs(self, *patterns: str) -> Dict[str, str]:
        """Map of ref name to the sha it points at, for refs under the given prefixes."""
        text = self.out(["for-each-ref", "--format=%(objectname) %(refname)", *patterns])
        result: Dict[str, str] = {}
        for line in text.splitlines():
            sha, _, ref = line.partition(" ")
            result[ref] = sha
        return result

    def ls_tree(self, treeish: str, recursive: bool = True) -> List[TreeEntry]:
        args = ["ls-tree", "-z", "--full-tree"] + (["-r"] if recursive else []) + [treeish]
        proc = self.run(args, check=False)
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace")
            if re.search(r"not a tree object|bad object|could not read|unable to read|bad tree", err, re.I):
                raise MissingObjects(re.findall(r"[0-9a-f]{40}", err) or [treeish], f"reading {treeish}")
            self.run(args)  # raises GitFailed with git's message
        raw = proc.stdout.decode(errors="replace")
        entries = []
        for item in raw.split("\0"):
            if not item:
                continue
            meta, _, path = item.partition("\t")
            mode, kind, sha = meta.split(" ")
            entries.append(TreeEntry(mode, kind, sha, path))
        return entries

    def cat_blobs(self, shas: Iterable[str]) -> Dict[str, bytes]:
        """Read many objects with one ``git cat-file --batch`` process."""
        wanted = list(dict.fromkeys(shas))
        if not wanted:
            return {}
        # One pipe only (stderr to /dev/null), so the output is read in large blocks, not polled.
        proc = subprocess.run(["git", "cat-file", "--batch"], cwd=self.root, env=clean_env(), start_new_session=True,
                              input="".join(s + "\n" for s in wanted).encode(), stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL)
        if proc.returncode != 0:
            raise GitFailed(f"git cat-file --batch failed with exit code {proc.returncode}")
        data = proc.stdout
        result: Dict[str, bytes] = {}
        pos = 0
        for sha in wanted:
            end = data.index(b"\n", pos)
            header = data[pos:end].split()
            pos = end + 1
            if len(header) < 3 or header[1] == b"missing":
                continue
            size = int(header[2])
            result[sha] = data[pos:pos + size]
            pos += size + 1
        return result

    def missing(self, shas: Iterable[str]) -> List[str]:
        """Which of ``shas`` are not in the object store (one ``cat-file --batch-check``)."""
        wanted = list(dict.fromkeys(shas))
        if not wanted:
            return []
        proc = self.run(["cat-file", "--batch-check=%(objectname)"], input="".join(s + "\n" for s in wanted).encode(),
                        check=False)
        lines = proc.stdout.decode(errors="replace").splitlines()
        return [sha for sha, line in zip(wanted, lines) if line.endswith(" missing")]

    def missing_reachable(self, tips: Sequence[str], exclude: Sequence[str] = ()) -> List[str]:
        """Objects reachable from ``tips`` (all present themselves) that are missing."""
        if not tips:
            return []
        args = ["rev-list", "--objects", "--missing=print", *(["--not", *exclude] if exclude else []), "--stdin"]
        # Tips on stdin (thousands of experiments would not fit a command line); on stdin
        # they are positive whatever --not said before.
        proc = self.run(args, check=False, input="".join(t + "\n" for t in tips).encode())
        text = proc.stdout.decode(errors="replace")
        found = [line[1:41] for line in text.splitlines() if line.startswith("?")]
        if proc.returncode != 0 and not found:
            err = proc.stderr.decode(errors="replace")
            found = re.findall(r"([0-9a-f]{40})", err) or list(tips)
        return found

    def show_file(self, rev: str, path: str) -> Optional[bytes]:
        found = self.read_paths(rev, [path]) if _FULL_SHA.match(rev) else None
        if found is not None:  # a commit id, read in process
            return found.get(path)
        proc = self.run(["cat-file", "blob", f"{rev}:{path}"], check=False)
        return proc.stdout if proc.returncode == 0 else None

    # -- in-process reads: no git process for a ref's value or a few small objects ----------
    # A command's fixed cost is mostly git processes (a few ms each): a run reads its summary
    # note, its config and the notes tips a dozen times. These read what git wrote, in
    # process, and answer None ("ask git") for anything they do not handle, so the callers
    # fall back to the git commands and their behaviour (errors included) stays git's.
    def ref_values(self, *names: str) -> Dict[str, str]:
        """name -> sha of each of ``names`` (full ref names) that exists, as ``for-each-ref``
        reports them (also a ref whose object is missing): a loose ref file, else
        ``packed-refs``; git itself for anything else (reftable, symbolic refs)."""
        try:
            with self._read_lock:
                found = self._ref_values_here(names)
        except (OSError, ValueError, AssertionError):
            found = None
        if found is None:
            listed = self.refs(*names)
            found = {name: listed[name] for name in names if name in listed}
        return found

    def _ref_values_here(self, names: Sequence[str]) -> Optional[Dict[str, str]]:
        if os.path.exists(os.path.join(self.common_dir, "reftable")):
            return None
        out: Dict[str, str] = {}
        for name in names:
            if not name.startswith("refs/") or name.startswith(_PER_WORKTREE) or ".." in name:
                return None
            try:
                with open(os.path.join(self.common_dir, *name.split("/")), "rb") as handle:
                    text = handle.read(128).decode("ascii", "replace").strip()
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                text = self._packed_refs_now().get(name, "")
            if not text:
                continue
            if not _FULL_SHA.match(text):
                return None  # symbolic or unexpected: git's own reading
            out[name] = text
        return out

    def _packed_refs_now(self) -> Dict[str, str]:
        """``packed-refs`` as name -> sha, parsed again only when the file changed."""
        path = os.path.join(self.common_dir, "packed-refs")
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return {}
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        if self._packed_refs[0] != stamp:
            refs: Dict[str, str] = {}
            with open(path, "rb") as handle:
                for line in handle.read().decode("utf-8", "replace").splitlines():
                    if line and line[0] not in "#^":
                        sha, _, name = line.partition(" ")
                        refs[name] = sha
            self._packed_refs = (stamp, refs)
        return self._packed_refs[1]

    def read_paths(self, commit: str, paths: Sequence[str]) -> Optional[Dict[str, bytes]]:
        """path -> content of the blobs at ``paths`` in ``commit``'s tree (absent paths left
        out), read in process; None when that cannot say (an object it cannot find or read,
        something that is not a blob): ask git then."""
        try:
            top = self._get(commit.encode())
            if not isinstance(top, Commit):
                return None
            root = self._get(top.tree)
            out: Dict[str, bytes] = {}
            for path in paths:
                obj: GitObject = root
                for part in path.encode().split(b"/"):
                    if not isinstance(obj, Tree) or part not in obj:
                        break
                    obj = self._get(obj[part][1])
                else:
                    if not isinstance(obj, Blob):
                        return None
                    out[path] = obj.data
            return out
        except Exception:  # noqa: BLE001 - missing, unreadable, a pack that went: git decides
            return None

    def gitlinks(self, treeish: str) -> Dict[str, str]:
        """path -> commit of every submodule or nested repository recorded in ``treeish``."""
        return {e.path: e.sha for e in self.ls_tree(treeish) if e.mode == "160000"}

    # -- ref writes ---------------------------------------------------------------------
    def update_refs(self, updates: Sequence[RefUpdate], message: str = "gitexp") -> bool:
        """Apply all updates atomically; False if any ref was not at its expected old value."""
        self.flush_objects()  # refs may only point at objects that are on disk
        body = "start\n" + "".join(u.line() for u in updates) + "prepare\ncommit\n"
        proc = self.run(["update-ref", "-m", message, "--stdin"], input=body.encode(), check=False)
        if proc.returncode == 0:
            return True
        err = proc.stderr.decode(errors="replace")
        lost_race = ("but expected" in err or "cannot lock ref" in err or "reference already exists" in err
                     or "unable to resolve reference" in err or "is at" in err)
        if lost_race:
            return False
        if any(text in err for text in _NO_SPACE_TEXT):
            raise DiskFull(self.common_dir)
        missing = re.findall(r"nonexistent object ([0-9a-f]{40})", err)
        if missing:
            raise MissingObjects(missing, "a ref update names them")
        raise GitFailed(f"git update-ref failed: {err.strip()}")

    def maintain(self) -> None:
        """Let git pack loose objects and refs when there are many (``git gc --auto``).

        Thousands of experiments leave thousands of loose notes blobs and ref files; packed,
        ``git exp log`` reads them several times faster. git decides whether anything is
        due; it runs detached so no command waits for it (its ref locks are retried by our
        compare-and-swap loop like any other writer's).
        """
        commands = [["git", "gc", "--auto", "--quiet"]]
        # gc --auto counts loose objects, not refs: 10,000 experiments leave 10,000 ref files,
        # and every listing (log, a TAB) reads them all (0.38 s against 0.02 s packed).
        if self._loose_refs(LOOSE_REFS_LIMIT) >= LOOSE_REFS_LIMIT:
            commands.append(["git", "pack-refs", "--all"])
        for argv in commands:
            try:
                subprocess.Popen(argv, cwd=self.root, env=clean_env(), stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            except OSError:
                pass

    def _loose_refs(self, limit: int) -> int:
        """How many loose experiment refs there are, counting up to ``limit``."""
        count = 0
        for _folder, _dirs, files in os.walk(os.path.join(self.common_dir, "refs", "exps")):
            count += len(files)
            if count >= limit:
                break
        return count

    def version(self) -> str:
        return self.out(["--version"]).strip()

    # -- sync: fetch/push (used by sync.py) ---------------------------------------------
    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        """Whether commit ``ancestor`` is reachable from ``descendant`` (or is it)."""
        proc = self.run(["merge-base", "--is-ancestor", ancestor, descendant], check=False)
        if proc.returncode not in (0, 1):
            raise MissingObjects([ancestor, descendant], "comparing notes histories")
        return proc.returncode == 0

    def ls_remote(self, remote: str, patterns: Sequence[str], timeout: float) -> Optional[Dict[str, str]]:
        """Refs of ``remote`` matching ``patterns``; None if it does not answer within ``timeout``.

        Never prompts: no terminal prompt, and ssh in batch mode unless the user set an ssh
        command of their own.
        """
        env = {"GIT_TERMINAL_PROMPT": "0"}
        if not (os.environ.get("GIT_SSH_COMMAND") or os.environ.get("GIT_SSH")
                or self.run(["config", "--get", "core.sshCommand"], check=False).stdout.strip()):
            env["GIT_SSH_COMMAND"] = f"ssh -o BatchMode=yes -o ConnectTimeout={max(1, int(timeout))}"
        try:
            proc = subprocess.Popen(["git", "ls-remote", "--refs", "--", remote, *patterns], cwd=self.root,
                                    env=clean_env(env), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.DEVNULL, start_new_session=True)
        except OSError:
            return None
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, 9)  # git and the ssh it started: their own process group
            except OSError:
                pass
            proc.communicate()
            return None
        if proc.returncode != 0:
            return None
        refs: Dict[str, str] = {}
        for line in out.decode(errors="replace").splitlines():
            sha, _, ref = line.partition("\t")
            refs[ref] = sha
        return refs

