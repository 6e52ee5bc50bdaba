"""Objects gitexp writes itself, in process with dulwich: note blobs, notes trees and commits,
experiment commits (no git process per object). Mixed into :class:`gitexp.repo.Repo`, the one
door to git; nothing else imports this.

Loose objects are written as git writes them (a private temporary file, then a link); inside
:meth:`ObjectWrites.batch` they are collected and written as one pack before any ref names them.
"""
from __future__ import annotations

import atexit
import errno
import os
import re
import subprocess
import tempfile
import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Dict, Iterator, Mapping, Optional, Sequence, Tuple

if TYPE_CHECKING:  # dulwich is imported where it is used: `git exp log` reads without it
    from dulwich.object_store import DiskObjectStore
    from dulwich.objects import Commit, ShaFile

from .errors import DiskFull, GitFailed, MissingObjects

STALE_LOCK_SECONDS = 10.0
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def storage_error(exc: OSError, path: str) -> Exception:
    """A full disk becomes :class:`DiskFull` (one clear line); other errors pass through."""
    if exc.errno in NO_SPACE:
        return DiskFull(path)
    return exc


def _umask() -> int:
    """The process umask, read without changing it (os.umask would race with threads)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _remove_stale_lock(lock: str) -> bool:
    """Remove ``lock`` if nobody has touched it for a while (its writer died); True if removed."""
    try:
        age = time.time() - os.path.getmtime(lock)
    except OSError:
        return False
    if age < STALE_LOCK_SECONDS:
        return False
    _unlink_quietly(lock)
    return True


class RepoPart:
    """What :class:`gitexp.repo.Repo` gives the halves mixed into it (for the type checker)."""

    if TYPE_CHECKING:  # what the Repo this is mixed into provides
        root: str
        git_dir: str
        common_dir: str

        def run(self, args: Sequence[str], input: Optional[bytes] = None, env: Optional[Mapping[str, str]] = None,
                check: bool = True, cwd: Optional[str] = None, timeout: Optional[float] = None
                ) -> subprocess.CompletedProcess[bytes]: ...

        def out(self, args: Sequence[str], **kw: object) -> str: ...


class ObjectWrites(RepoPart):
    """Writing (and reading back) objects in process: the object store, packs of a batch,
    trees edited without an index, commits."""

    _odb: Optional[DiskObjectStore]
    _pending: Optional[Dict[bytes, ShaFile]]
    _odb_pid: int
    _perm_known: bool
    _ident: Optional[Tuple[bytes, Optional[int], int]]
    _read_lock: threading.RLock

    @property
    def odb(self) -> DiskObjectStore:
        """The object store, ready to write into."""
        store = self._objects()
        if not self._perm_known:
            # Honour core.sharedRepository as git does (group-readable objects, setgid
            # directories), so teammates can read the objects gitexp writes.
            shared = self.run(["config", "--get", "core.sharedRepository"], check=False).stdout.decode().strip()
            store.shared_perm = None
            if shared:
                from dulwich.repo import parse_shared_repository  # heavy (dulwich.repo): only when set

                try:
                    store.shared_perm = parse_shared_repository(shared)
                except ValueError:
                    pass
            self._perm_known = True
        return store

    def _objects(self) -> DiskObjectStore:
        """The object store, to read from (a forked child opens its own: its parent's pack
        files share their read offsets with it)."""
        from dulwich.object_store import DiskObjectStore

        if self._odb is None or self._odb_pid != os.getpid():
            self._odb_pid = os.getpid()
            self._perm_known = False
            self._odb = DiskObjectStore(os.path.join(self.common_dir, "objects"))
            # Close its pack files before the interpreter tears down modules, or their
            # finalizers print noise ("sys.meta_path is None") on exit.
            atexit.register(self._odb.close)
        return self._odb

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Collect the objects written inside in memory; write them as one pack.

        The pack is written before any ref update (see :meth:`update_refs`) or on leaving
        the block; an error inside drops them, so a refused sweep leaves no objects behind.
        A 1,000-point sweep writes one pack instead of ~5,000 loose files.
        """
        self._pending = {}
        try:
            yield
            self.flush_objects()
        finally:
            self._pending = None

    def flush_objects(self) -> None:
        if self._pending:
            try:
                self.odb.add_objects([(obj, None) for obj in self._pending.values()])
            except OSError as exc:
                raise storage_error(exc, os.path.join(self.common_dir, "objects", "pack")) from exc
            self._pending.clear()

    def _add(self, obj: ShaFile) -> None:
        """Write one loose object the way git does: a private temporary file, then a link.

        No lock files: two writers of the same object both succeed (the content is the same),
        a writer killed or stopped by a full disk leaves at most its own temporary file, which
        it removes when it can, and an object that already exists is only freshened (its mtime
        updated, so an age-based prune cannot take it before our ref names it).
        """
        if self._pending is not None:
            self._pending[obj.id] = obj
            return
        path = self.odb._get_shafile_path(obj.id)
        try:
            os.utime(path, None)
            return
        except FileNotFoundError:
            pass
        except PermissionError:
            pass  # someone else's object in a shared repository: write it anew to freshen it
        _remove_stale_lock(path + ".lock")  # an older gitexp's leftover; git never looks at it
        for attempt in range(5):
            try:
                self._write_loose(obj, path)
                return
            except FileNotFoundError:
                # `git prune` removes temporary object files (and empty folders) it finds:
                # write it again.
                if attempt == 4:
                    raise

    def _write_loose(self, obj: ShaFile, path: str) -> None:
        from dulwich.file import adjust_shared_perm

        folder = os.path.dirname(path)
        try:
            self._make_object_dir(folder)
            fd, tmp = tempfile.mkstemp(prefix="tmp_obj_", dir=folder)
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise storage_error(exc, path) from exc
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(obj.as_legacy_object())
            os.chmod(tmp, 0o444 & ~_umask())
            adjust_shared_perm(tmp, self.odb.shared_perm)
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass  # a concurrent writer of the very same object got there first
            except OSError:
                os.replace(tmp, path)  # a filesystem without hard links
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise storage_error(exc, path) from exc
        finally:
            _unlink_quietly(tmp)

    def _make_object_dir(self, folder: str) -> None:
        from dulwich.file import adjust_shared_perm

        try:
            os.mkdir(folder)
        except FileExistsError:
            return
        adjust_shared_perm(folder, self.odb.shared_perm)

    def _get(self, sha: bytes) -> ShaFile:
        from dulwich.objects import ObjectID

        if self._pending and sha in self._pending:
            return self._pending[sha]
        try:
            with self._read_lock:
                return self._objects()[ObjectID(sha)]
        except KeyError:
            raise MissingObjects([sha.decode()]) from None

    def hash_blob(self, data: bytes) -> str:
        from dulwich.objects import Blob

        blob = Blob.from_string(data)
        self._add(blob)
        return blob.id.decode()

    def build_tree(self, base: Optional[str], changes: Mapping[str, Optional[str]]) -> str:
        """A tree equal to ``base`` (a tree or commit sha; None: empty) with ``changes`` applied.

        ``changes`` maps a path to a blob sha, or to None to remove it (absent paths are
        fine). Only the subtrees on changed paths are rewritten, so a note written into a
        notes tree of 10,000 entries costs a few small objects.
        """
        from dulwich.objects import Commit, Tree

        encoded = {p.encode(): (s.encode() if s else None) for p, s in changes.items()}
        base_id = base.encode() if base else None
        if base_id is not None:
            obj = self._get(base_id)
            if isinstance(obj, Commit):
                base_id = obj.tree
        tree = self._edit_tree(base_id, encoded)
        if tree is None:
            empty = Tree()
            self._add(empty)
            return empty.id.decode()
        return tree.decode()

    def _edit_tree(self, base: Optional[bytes], changes: Dict[bytes, Optional[bytes]]) -> Optional[bytes]:
        from dulwich.objects import ObjectID, Tree

        tree = Tree()
        if base:
            for entry in self._get(base).items():  # type: ignore[attr-defined]
                tree.add(entry.path, entry.mode, entry.sha)
        nested: Dict[bytes, Dict[bytes, Optional[bytes]]] = {}
        for path, sha in changes.items():
            head, sep, rest = path.partition(b"/")
            if sep:
                nested.setdefault(head, {})[rest] = sha
            elif sha is None:
                if head in tree:
                    del tree[head]
            else:
                tree[head] = (0o100644, ObjectID(sha))
        for head, sub in nested.items():
            current = tree[head] if head in tree else None
            sub_base = current[1] if current and current[0] == 0o040000 else None
            if sub_base is None and all(v is None for v in sub.values()):
                continue
            child = self._edit_tree(sub_base, sub)
            if child is None:
                if head in tree:
                    del tree[head]
            else:
                tree[head] = (0o040000, ObjectID(child))
        if not tree.items():
            return None
        self._add(tree)
        return tree.id

    def salvage_tree(self, tree: str) -> Tuple[Optional[str], int]:
        """A copy of ``tree`` without the entries whose objects are missing, and how many went."""
        from dulwich.objects import ObjectID, Tree

        try:
            obj = self._get(tree.encode())
        except MissingObjects:
            return None, 1
        if not isinstance(obj, Tree):
            return None, 1
        kept = Tree()
        lost = 0
        for entry in obj.items():
            sha = entry.sha.decode()
            if entry.mode == 0o040000:
                sub, sub_lost = self.salvage_tree(sha)
                lost += sub_lost
                if sub is not None:
                    kept.add(entry.path, entry.mode, ObjectID(sub.encode()))
            elif entry.mode == 0o160000 or entry.sha in self.odb:
                kept.add(entry.path, entry.mode, entry.sha)
            else:
                lost += 1
        self._add(kept)
        return kept.id.decode(), lost

    def commit_object(self, sha: str) -> Commit:
        from dulwich.objects import Commit

        obj = self._get(sha.encode())
        if not isinstance(obj, Commit):
            raise GitFailed(f"{sha[:12]} is not a commit")
        return obj

    def tree_of(self, commit: str) -> str:
        tree: bytes = self.commit_object(commit).tree
        return tree.decode()

    def commit_tree(self, tree: str, parents: Sequence[str], message: str) -> str:
        from dulwich.objects import Commit, ObjectID

        commit = Commit()
        commit.tree = ObjectID(tree.encode())
        commit.parents = [ObjectID(p.encode()) for p in parents]
        ident, when, tz = self._identity()
        commit.author = commit.committer = ident
        commit.author_time = commit.commit_time = int(time.time()) if when is None else when
        commit.author_timezone = commit.commit_timezone = tz
        commit.encoding = b"UTF-8"
        commit.message = message.encode()
        self._add(commit)
        return commit.id.decode()

    def _identity(self) -> Tuple[bytes, Optional[int], int]:
        """The committer git would use (``git var``), or a fixed one on a bare machine."""
        if self._ident is None:
            proc = self.run(["var", "GIT_COMMITTER_IDENT"], check=False)
            text = proc.stdout.decode().strip()
            match = re.match(r"^(.*>) (\d+) ([+-]\d{4})$", text)
            if proc.returncode == 0 and match:
                sign = -1 if match.group(3)[0] == "-" else 1
                tz = sign * (int(match.group(3)[1:3]) * 3600 + int(match.group(3)[3:5]) * 60)
                fixed = "GIT_COMMITTER_DATE" in os.environ
                self._ident = (match.group(1).encode(), int(match.group(2)) if fixed else None, tz)
            else:
                self._ident = (b"gitexp <gitexp@localhost>", None, 0)
        return self._ident
