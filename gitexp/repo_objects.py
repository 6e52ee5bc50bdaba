"""Objects gitexp writes itself, in process: note blobs, notes trees and commits, experiment
commits (no git process per object). Loose objects are read and written here (their format is
:mod:`gitexp.gitobjects`); dulwich reads packs and writes a batch's pack. Mixed into
:class:`gitexp.repo.Repo`, the one door to git; nothing else imports this.

Loose objects are written as git writes them (a private temporary file, then a link); inside
:meth:`ObjectWrites.batch` they are collected and written as one pack before any ref names them.
"""
from __future__ import annotations

import atexit
import errno
import os
import re
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Dict, Iterator, Mapping, Optional, Sequence, Tuple

if TYPE_CHECKING:  # dulwich is imported where it is used: packs (a run and `git exp log` do without it)
    from dulwich.object_store import DiskObjectStore

from . import gitobjects
from .errors import DiskFull, GitFailed, MissingObjects
from .gitobjects import GitObject

STALE_LOCK_SECONDS = 10.0
_OID = re.compile(rb"^[0-9a-f]{40}$")
PACKED_BY_GIT = 8  # packed objects a process reads with git before it loads dulwich to read them
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


def _dulwich_loaded() -> bool:
    return "dulwich.object_store" in sys.modules


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
    """Writing (and reading back) objects in process: loose objects here (the format is
    :mod:`gitexp.gitobjects`), packs through dulwich (a batch's pack, objects git packed),
    trees edited without an index, commits."""

    _odb: Optional[DiskObjectStore]
    _pending: Optional[Dict[bytes, GitObject]]
    _odb_pid: int
    _perm_pid: int  # the process that read core.sharedRepository into _shared
    _packed_asked: int  # packed objects read with git so far (see _packed)
    _shared: object
    _ident: Optional[Tuple[bytes, Optional[int], int]]
    _read_lock: threading.RLock

    def _objects_dir(self) -> str:
        return os.path.join(self.common_dir, "objects")

    def _loose_path(self, sha: bytes) -> str:
        text = sha.decode()
        return os.path.join(self.common_dir, "objects", text[:2], text[2:])

    def _shared_perm(self) -> object:
        """core.sharedRepository, parsed (None: not set): objects are written as git writes them
        (group-readable, setgid directories), so teammates can read what gitexp writes."""
        if self._perm_pid != os.getpid():
            shared = self.run(["config", "--get", "core.sharedRepository"], check=False).stdout.decode().strip()
            self._shared = None
            if shared:
                from dulwich.repo import parse_shared_repository  # heavy (dulwich.repo): only when set

                try:
                    self._shared = parse_shared_repository(shared)
                except ValueError:
                    pass
            self._perm_pid = os.getpid()
        return self._shared

    def _adjust_perm(self, path: str) -> None:
        perm = self._shared_perm()
        if perm is not None:
            from dulwich.file import adjust_shared_perm

            adjust_shared_perm(path, perm)  # type: ignore[arg-type]

    def _objects(self) -> DiskObjectStore:
        """dulwich's object store: packs (read, and a batch's written) and alternates. A forked
        child opens its own: its parent's pack files share their read offsets with it."""
        from dulwich.object_store import DiskObjectStore

        if self._odb is None or self._odb_pid != os.getpid():
            self._odb_pid = os.getpid()
            self._odb = DiskObjectStore(self._objects_dir())
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
            from dulwich.objects import ShaFile

            kinds = {b"blob": 3, b"tree": 2, b"commit": 1}
            objects = [ShaFile.from_raw_string(kinds[obj.kind], obj.body()) for obj in self._pending.values()]
            store = self._objects()
            store.shared_perm = self._shared_perm()  # type: ignore[assignment]
            try:
                store.add_objects([(obj, None) for obj in objects])
            except OSError as exc:
                raise storage_error(exc, os.path.join(self.common_dir, "objects", "pack")) from exc
            self._pending.clear()

    def _add(self, obj: GitObject) -> bytes:
        """Write one loose object the way git does: a private temporary file, then a link; its id.

        No lock files: two writers of the same object both succeed (the content is the same),
        a writer killed or stopped by a full disk leaves at most its own temporary file, which
        it removes when it can, and an object that already exists is only freshened (its mtime
        updated, so an age-based prune cannot take it before our ref names it).
        """
        body = obj.body()
        sha = gitobjects.object_id(obj.kind, body)
        if self._pending is not None:
            self._pending[sha] = obj
            return sha
        path = self._loose_path(sha)
        try:
            os.utime(path, None)
            return sha
        except FileNotFoundError:
            pass
        except PermissionError:
            pass  # someone else's object in a shared repository: write it anew to freshen it
        _remove_stale_lock(path + ".lock")  # an older gitexp's leftover; git never looks at it
        data = gitobjects.loose_bytes(obj.kind, body)
        for attempt in range(5):
            try:
                self._write_loose(data, path)
                return sha
            except FileNotFoundError:
                # `git prune` removes temporary object files (and empty folders) it finds:
                # write it again.
                if attempt == 4:
                    raise
        return sha

    def _write_loose(self, data: bytes, path: str) -> None:
        folder = os.path.dirname(path)
        try:
            self._make_object_dir(folder)
            import tempfile  # where objects are written: `git exp log` writes none

            fd, tmp = tempfile.mkstemp(prefix="tmp_obj_", dir=folder)
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise storage_error(exc, path) from exc
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.chmod(tmp, 0o444 & ~_umask())
            self._adjust_perm(tmp)
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
        try:
            os.mkdir(folder)
        except FileExistsError:
            return
        self._adjust_perm(folder)

    def _get(self, sha: bytes) -> GitObject:
        """The object ``sha``: written in this batch, loose, or from a pack or an alternate."""
        if self._pending and sha in self._pending:
            return self._pending[sha]
        if not _OID.match(sha):  # a full id, never a name git would resolve or a path
            raise MissingObjects([sha.decode(errors="replace")])
        try:
            with open(self._loose_path(sha), "rb") as handle:
                data = handle.read()
        except (FileNotFoundError, NotADirectoryError):
            data = b""
        except OSError as exc:
            raise MissingObjects([sha.decode()]) from exc
        try:
            if data:
                return gitobjects.parse(*gitobjects.parse_loose(data))
            return gitobjects.parse(*self._packed(sha))
        except KeyError:
            raise MissingObjects([sha.decode()]) from None
        except gitobjects.BadObject as exc:
            raise GitFailed(f"object {sha.decode()[:12]} is corrupt: {exc}") from None

    def _packed(self, sha: bytes) -> Tuple[bytes, bytes]:
        """(kind, body) of an object that is not loose: in a pack or an alternate (KeyError: none).

        The first few are asked of git, one ``cat-file`` each (~3 ms): `git exp log` reads one
        packed object, the notes commit, and importing dulwich would cost it ~30 ms. A process
        that reads more (fsck, a walk of the commit graph) then reads them with dulwich."""
        if self._packed_asked < PACKED_BY_GIT and not _dulwich_loaded():
            self._packed_asked += 1
            # --no-replace-objects: the object itself, as the loose read and dulwich give it
            proc = self.run(["--no-replace-objects", "cat-file", "--batch"], input=sha + b"\n", check=False)
            header, _, rest = proc.stdout.partition(b"\n")
            fields = header.split()
            if proc.returncode != 0 or len(fields) != 3 or not fields[2].isdigit():
                raise KeyError(sha)  # "<sha> missing"
            return fields[1], rest[:int(fields[2])]
        from dulwich.objects import ObjectID

        with self._read_lock:
            type_num, body = self._objects().get_raw(ObjectID(sha))
        return {3: b"blob", 2: b"tree", 1: b"commit"}.get(type_num, b"tag"), body

    def _has(self, sha: bytes) -> bool:
        if os.path.exists(self._loose_path(sha)):
            return True
        from dulwich.objects import ObjectID

        with self._read_lock:
            return ObjectID(sha) in self._objects()

    def hash_blob(self, data: bytes) -> str:
        return self._add(gitobjects.Blob(data)).decode()

    def build_tree(self, base: Optional[str], changes: Mapping[str, Optional[str]]) -> str:
        """A tree equal to ``base`` (a tree or commit sha; None: empty) with ``changes`` applied.

        ``changes`` maps a path to a blob sha, or to None to remove it (absent paths are
        fine). Only the subtrees on changed paths are rewritten, so a note written into a
        notes tree of 10,000 entries costs a few small objects.
        """
        encoded = {p.encode(): (s.encode() if s else None) for p, s in changes.items()}
        base_id = base.encode() if base else None
        if base_id is not None:
            obj = self._get(base_id)
            if isinstance(obj, gitobjects.Commit):
                base_id = obj.tree
        tree = self._edit_tree(base_id, encoded)
        if tree is None:
            return self._add(gitobjects.Tree()).decode()
        return tree.decode()

    def _tree(self, sha: bytes) -> gitobjects.Tree:
        obj = self._get(sha)
        if not isinstance(obj, gitobjects.Tree):
            raise GitFailed(f"{sha.decode()[:12]} is not a tree")
        return obj

    def _edit_tree(self, base: Optional[bytes], changes: Dict[bytes, Optional[bytes]]) -> Optional[bytes]:
        tree = gitobjects.Tree(self._tree(base).entries if base else None)
        nested: Dict[bytes, Dict[bytes, Optional[bytes]]] = {}
        for path, sha in changes.items():
            head, sep, rest = path.partition(b"/")
            if sep:
                nested.setdefault(head, {})[rest] = sha
            elif sha is None:
                if head in tree:
                    del tree[head]
            else:
                tree[head] = (gitobjects.FILE_MODE, sha)
        for head, sub in nested.items():
            current = tree[head] if head in tree else None
            sub_base = current[1] if current and current[0] == gitobjects.TREE_MODE else None
            if sub_base is None and all(v is None for v in sub.values()):
                continue
            child = self._edit_tree(sub_base, sub)
            if child is None:
                if head in tree:
                    del tree[head]
            else:
                tree[head] = (gitobjects.TREE_MODE, child)
        if not tree.entries:
            return None
        return self._add(tree)

    def salvage_tree(self, tree: str) -> Tuple[Optional[str], int]:
        """A copy of ``tree`` without the entries whose objects are missing, and how many went."""
        try:
            obj = self._get(tree.encode())
        except (MissingObjects, GitFailed):
            return None, 1
        if not isinstance(obj, gitobjects.Tree):
            return None, 1
        kept = gitobjects.Tree()
        lost = 0
        for entry in obj.items():
            sha = entry.sha.decode()
            if entry.mode == gitobjects.TREE_MODE:
                sub, sub_lost = self.salvage_tree(sha)
                lost += sub_lost
                if sub is not None:
                    kept[entry.path] = (entry.mode, sub.encode())
            elif entry.mode == gitobjects.GITLINK_MODE or self._has(entry.sha):
                kept[entry.path] = (entry.mode, entry.sha)
            else:
                lost += 1
        return self._add(kept).decode(), lost

    def commit_object(self, sha: str) -> gitobjects.Commit:
        obj = self._get(sha.encode())
        if not isinstance(obj, gitobjects.Commit):
            raise GitFailed(f"{sha[:12]} is not a commit")
        return obj

    def tree_of(self, commit: str) -> str:
        return self.commit_object(commit).tree.decode()

    def commit_tree(self, tree: str, parents: Sequence[str], message: str) -> str:
        ident, when, tz = self._identity()
        commit = gitobjects.Commit.make(tree.encode(), [p.encode() for p in parents], ident,
                                        int(time.time()) if when is None else when, tz, message.encode())
        return self._add(commit).decode()

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
