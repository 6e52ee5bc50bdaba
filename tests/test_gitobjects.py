"""Objects gitexp writes and reads in process (gitexp/gitobjects.py, repo_objects) are git's own:
the same ids as `git hash-object`/`mktree`/`commit-tree`, read back by git, accepted by
`git fsck --strict`, and git's packed objects are read too."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

from conftest import ROOT, git

sys.path.insert(0, str(ROOT))
from gitexp import gitobjects  # noqa: E402
from gitexp.errors import MissingObjects  # noqa: E402
from gitexp.repo import Repo  # noqa: E402


def hash_object(repo: Path, kind: str, body: bytes) -> str:
    return subprocess.run(["git", "hash-object", "-t", kind, "--stdin"], cwd=repo, input=body,
                          capture_output=True, check=True).stdout.decode().strip()


def test_tree_entries_are_in_gits_order_and_hash_as_git_does(repo: Path) -> None:
    blob = gitobjects.Blob(b"x\n")
    assert blob.id.decode() == hash_object(repo, "blob", b"x\n")
    sub = gitobjects.Tree({b"f": (gitobjects.FILE_MODE, blob.id)})
    # a subtree sorts as "a/" (after "a.b", "/" > "."); a file "a" would sort before "a.b"
    tree = gitobjects.Tree({b"a": (gitobjects.TREE_MODE, sub.id), b"a.b": (gitobjects.FILE_MODE, blob.id),
                            b"Z": (gitobjects.FILE_MODE, blob.id)})
    assert [e.path for e in tree.items()] == [b"Z", b"a.b", b"a"]
    made = Repo.discover(str(repo))
    for obj in (blob, sub, tree):
        assert made._add(obj) == obj.id
    listing = f"100644 blob {blob.id.decode()}\tZ\n100644 blob {blob.id.decode()}\ta.b\n" \
              f"040000 tree {sub.id.decode()}\ta\n"
    mktree = subprocess.run(["git", "mktree"], cwd=repo, input=listing.encode(), capture_output=True, check=True)
    assert mktree.stdout.decode().strip() == tree.id.decode()
    assert git(repo, "cat-file", "-p", tree.id.decode()).splitlines()[2].endswith("\ta")
    assert gitobjects.Tree.parse(tree.body()).entries == tree.entries


def test_commits_written_here_are_read_by_git_and_pass_fsck(repo: Path) -> None:
    made = Repo.discover(str(repo))
    head = git(repo, "rev-parse", "HEAD").strip()
    tree = made.build_tree(head, {"notes/a.json": made.hash_blob(b'{"a": 1}\n')})
    commit = made.commit_tree(tree, [head], "a message\n\nwith a body, ünïcode\n")
    assert git(repo, "rev-parse", f"{commit}^{{tree}}").strip() == tree
    assert git(repo, "rev-parse", f"{commit}^").strip() == head
    assert git(repo, "log", "-1", "--format=%B", commit).strip() == "a message\n\nwith a body, ünïcode"
    assert git(repo, "show", f"{commit}:notes/a.json") == '{"a": 1}\n'
    assert set(git(repo, "ls-tree", "--name-only", tree).split()) == \
        set(git(repo, "ls-tree", "--name-only", head).split()) | {"notes"}  # the base's entries kept
    git(repo, "update-ref", "refs/heads/made", commit)
    fsck = subprocess.run(["git", "fsck", "--strict", "--no-dangling"], cwd=repo, capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    read = made.commit_object(commit)
    assert read.tree.decode() == tree and [p.decode() for p in read.parents] == [head]
    assert read.message.decode() == "a message\n\nwith a body, ünïcode\n"
    assert abs(read.commit_time - int(git(repo, "log", "-1", "--format=%ct", commit))) == 0


@pytest.mark.parametrize("asked_of_git", [0, 100])
def test_packed_objects_and_a_signed_commit_are_read(repo: Path, asked_of_git: int,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """After `git gc` everything is in a pack: read with git (the first few) or dulwich (then),
    parsed here. A commit with a multi-line header (a signature) keeps its message and parents."""
    from gitexp import repo_objects

    monkeypatch.setattr(repo_objects, "PACKED_BY_GIT", asked_of_git)
    monkeypatch.setattr(repo_objects, "_dulwich_loaded", lambda: False)  # as in `git exp log`
    asked: List[str] = []
    run = Repo.run
    monkeypatch.setattr(Repo, "run", lambda self, args, *a, **k: asked.extend(args[:2]) or run(self, args, *a, **k))
    head = git(repo, "rev-parse", "HEAD").strip()
    tree = git(repo, "rev-parse", "HEAD^{tree}").strip()
    body = (f"tree {tree}\nparent {head}\nauthor A <a@x> 1700000000 +0100\ncommitter A <a@x> 1700000000 -0230\n"
            "gpgsig -----BEGIN PGP SIGNATURE-----\n \n abc\n -----END PGP SIGNATURE-----\n\nsigned\n").encode()
    signed = hash_object(repo, "commit", body)
    subprocess.run(["git", "hash-object", "-w", "-t", "commit", "--stdin"], cwd=repo, input=body, check=True,
                   capture_output=True)
    git(repo, "update-ref", "refs/heads/signed", signed)
    git(repo, "gc", "-q", "--prune=now")
    assert not list((repo / ".git" / "objects").glob("??/*"))  # no loose objects left
    made = Repo.discover(str(repo))
    read = made.commit_object(signed)
    assert read.parents == [head.encode()] and read.message == b"signed\n" and read.commit_time == 1700000000
    assert read.body() == body  # the signature's continuation lines come back as they were
    assert made.read_paths(head, ["train.py"]) == {"train.py": (repo / "train.py").read_bytes()}
    with pytest.raises(MissingObjects):
        made.commit_object("0" * 40)
    assert asked.count("cat-file") == (5 if asked_of_git else 0)  # 2 commits, a tree, a blob, the missing one


def test_a_corrupt_loose_object_is_not_taken_for_a_good_one() -> None:
    with pytest.raises(gitobjects.BadObject):
        gitobjects.parse_loose(b"not zlib")
    good = gitobjects.loose_bytes(b"blob", b"abc")
    assert gitobjects.parse_loose(good) == (b"blob", b"abc")
    import zlib

    with pytest.raises(gitobjects.BadObject):  # the size in the header disagrees with the body
        gitobjects.parse_loose(zlib.compress(b"blob 5\0abc"))
    with pytest.raises(gitobjects.BadObject):
        gitobjects.Tree.parse(b"100644 name\0short")


def test_objects_follow_core_shared_repository(repo: Path) -> None:
    """With core.sharedRepository=group, objects gitexp writes are readable by the group (its
    folders group-writable and setgid), as git's own are, whatever the writer's umask."""
    import os
    import stat

    git(repo, "config", "core.sharedRepository", "group")
    old = os.umask(0o077)
    try:
        made = Repo.discover(str(repo))
        sha = made.hash_blob(b"a note for the team " + str(os.getpid()).encode())
    finally:
        os.umask(old)
    path = repo / ".git" / "objects" / sha[:2] / sha[2:]
    assert stat.S_IMODE(path.stat().st_mode) & 0o040
    folder = stat.S_IMODE(path.parent.stat().st_mode)
    assert folder & 0o070 == 0o070 and folder & stat.S_ISGID
    assert git(repo, "cat-file", "-p", sha).startswith("a note for the team")


@pytest.mark.parametrize("asked_of_git", [0, 100])
def test_a_packed_read_gives_the_object_itself_never_a_replacement_or_a_name(
        repo: Path, asked_of_git: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """git cat-file would follow refs/replace and resolve names (HEAD, short ids); the object
    store gives the object the id names, whichever way it is read."""
    from gitexp import repo_objects

    monkeypatch.setattr(repo_objects, "PACKED_BY_GIT", asked_of_git)
    monkeypatch.setattr(repo_objects, "_dulwich_loaded", lambda: False)
    first = git(repo, "rev-parse", "HEAD").strip()
    (repo / "train.py").write_text("print('second')\n")
    git(repo, "commit", "-q", "-am", "second")
    second = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "replace", second, first)
    git(repo, "gc", "-q", "--prune=now")
    made = Repo.discover(str(repo))
    assert made.commit_object(second).message == b"second\n"
    for name in ("HEAD", second[:12], f"{second}:train.py", "../../config"):
        with pytest.raises(MissingObjects):
            made.commit_object(name)
