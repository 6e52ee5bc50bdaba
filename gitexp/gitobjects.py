"""Git's object format for the objects gitexp writes and reads in process: blobs, trees, commits.

Bytes in, bytes out, no I/O: :mod:`gitexp.repo_objects` stores and finds them (loose objects
itself, packs through dulwich). The format is git's (``git cat-file -p`` shows the same
object, ``git fsck`` accepts it): ``<type> <size>\\0<body>``, its SHA-1 the object's id,
zlib-compressed on disk. A run writes a few notes and one commit, so this small module spares
it importing dulwich's object store (about 20-30 ms of every ``git exp run``).
"""
from __future__ import annotations

import zlib
from typing import Dict, Iterator, List, NamedTuple, Optional, Tuple

TREE_MODE = 0o040000
GITLINK_MODE = 0o160000
FILE_MODE = 0o100644
TYPES = (b"blob", b"tree", b"commit", b"tag")


class BadObject(ValueError):
    """Bytes that are not a well-formed object of the expected kind."""


class TreeEntry(NamedTuple):
    path: bytes
    mode: int
    sha: bytes  # 40 hex digits


def object_id(kind: bytes, body: bytes) -> bytes:
    """The object's id: 40 hex digits, as bytes."""
    import hashlib  # here: reading objects (`git exp log`) needs no hashing

    return hashlib.sha1(b"%s %d\0%s" % (kind, len(body), body)).hexdigest().encode()


def loose_bytes(kind: bytes, body: bytes) -> bytes:
    """What a loose object file holds (git writes it at compression level 1, as here)."""
    return zlib.compress(b"%s %d\0%s" % (kind, len(body), body), 1)


def parse_loose(data: bytes) -> Tuple[bytes, bytes]:
    """(kind, body) of a loose object file's bytes."""
    try:
        raw = zlib.decompress(data)
    except zlib.error as exc:
        raise BadObject(f"not a zlib stream: {exc}") from None
    header, sep, body = raw.partition(b"\0")
    kind, _, size = header.partition(b" ")
    if not sep or kind not in TYPES or not size.isdigit() or int(size) != len(body):
        raise BadObject("not a git object header")
    return kind, body


class GitObject:
    """An object as written or read: its kind, body and id."""

    kind = b""

    def body(self) -> bytes:
        raise NotImplementedError

    @property
    def id(self) -> bytes:
        return object_id(self.kind, self.body())


class Blob(GitObject):
    kind = b"blob"

    def __init__(self, data: bytes) -> None:
        self.data = data

    def body(self) -> bytes:
        return self.data


class Tree(GitObject):
    """A tree as a mapping name -> (mode, sha), serialised in git's order."""

    kind = b"tree"

    def __init__(self, entries: Optional[Dict[bytes, Tuple[int, bytes]]] = None) -> None:
        self.entries: Dict[bytes, Tuple[int, bytes]] = dict(entries or {})

    @classmethod
    def parse(cls, body: bytes) -> "Tree":
        entries: Dict[bytes, Tuple[int, bytes]] = {}
        at = 0
        while at < len(body):
            space = body.find(b" ", at)
            nul = body.find(b"\0", space + 1)
            if space < 0 or nul < 0 or nul + 21 > len(body):
                raise BadObject("a truncated tree entry")
            try:
                mode = int(body[at:space], 8)
            except ValueError:
                raise BadObject("a tree entry's mode is not octal") from None
            entries[body[space + 1:nul]] = (mode, body[nul + 1:nul + 21].hex().encode())
            at = nul + 21
        return cls(entries)

    def items(self) -> List[TreeEntry]:
        return [TreeEntry(name, mode, sha) for name, (mode, sha) in self._sorted()]

    def _sorted(self) -> List[Tuple[bytes, Tuple[int, bytes]]]:
        # git orders a subtree as if its name ended with "/"
        return sorted(self.entries.items(), key=lambda e: e[0] + b"/" if e[1][0] == TREE_MODE else e[0])

    def body(self) -> bytes:
        return b"".join(b"%o %s\0%s" % (mode, name, bytes.fromhex(sha.decode()))
                        for name, (mode, sha) in self._sorted())

    def __contains__(self, name: object) -> bool:
        return name in self.entries

    def __getitem__(self, name: bytes) -> Tuple[int, bytes]:
        return self.entries[name]

    def __setitem__(self, name: bytes, value: Tuple[int, bytes]) -> None:
        self.entries[name] = value

    def __delitem__(self, name: bytes) -> None:
        del self.entries[name]

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.entries)


def format_timezone(offset: int) -> bytes:
    sign = b"-" if offset < 0 else b"+"
    offset = abs(offset)
    return b"%s%02d%02d" % (sign, offset // 3600, (offset // 60) % 60)


class Commit(GitObject):
    """The fields gitexp writes and reads; other headers (a signature) are kept as read."""

    kind = b"commit"

    def __init__(self, tree: bytes, parents: List[bytes], author: bytes, committer: bytes, message: bytes,
                 extra: Optional[List[Tuple[bytes, bytes]]] = None) -> None:
        self.tree = tree
        self.parents = parents
        self.author = author          # "Name <email> <seconds> <tz>", as in the object
        self.committer = committer
        self.message = message
        self.extra = extra or []      # (name, value) of other headers, in order

    @classmethod
    def make(cls, tree: bytes, parents: List[bytes], ident: bytes, when: int, tz: int, message: bytes) -> "Commit":
        signed = b"%s %d %s" % (ident, when, format_timezone(tz))
        return cls(tree, parents, signed, signed, message, [(b"encoding", b"UTF-8")])

    @classmethod
    def parse(cls, body: bytes) -> "Commit":
        head, sep, message = body.partition(b"\n\n")
        if not sep and not body.endswith(b"\n"):
            raise BadObject("a commit without a header end")
        fields: List[Tuple[bytes, bytes]] = []
        for line in head.split(b"\n"):
            if line.startswith(b" ") and fields:  # a continued value (a signature)
                name, value = fields[-1]
                fields[-1] = (name, value + b"\n" + line[1:])
            elif line:
                name, _, value = line.partition(b" ")
                fields.append((name, value))
        tree = [v for n, v in fields if n == b"tree"]
        author = [v for n, v in fields if n == b"author"]
        committer = [v for n, v in fields if n == b"committer"]
        if len(tree) != 1 or len(committer) != 1:
            raise BadObject("a commit without one tree and one committer")
        return cls(tree[0], [v for n, v in fields if n == b"parent"], (author or committer)[0], committer[0],
                   message, [(n, v) for n, v in fields if n not in (b"tree", b"parent", b"author", b"committer")])

    @property
    def commit_time(self) -> int:
        try:
            return int(self.committer.rsplit(b" ", 2)[1])
        except (IndexError, ValueError):
            return 0

    def body(self) -> bytes:
        lines = [b"tree " + self.tree] + [b"parent " + p for p in self.parents]
        lines += [b"author " + self.author, b"committer " + self.committer]
        lines += [name + b" " + value.replace(b"\n", b"\n ") for name, value in self.extra]
        return b"\n".join(lines) + b"\n\n" + self.message


def parse(kind: bytes, body: bytes) -> GitObject:
    """The object of ``kind`` (a tag is not read by gitexp: its body stays a blob's)."""
    if kind == b"tree":
        return Tree.parse(body)
    if kind == b"commit":
        return Commit.parse(body)
    return Blob(body)


__all__ = ["BadObject", "Blob", "Commit", "GitObject", "Tree", "TreeEntry", "loose_bytes", "object_id",
           "parse", "parse_loose"]
