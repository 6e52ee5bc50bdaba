"""The working tree as gitexp reads and writes it: the snapshot of what a run starts from (a
tree written through a private index, the user's index untouched) and commits checked out into
a run directory, submodules included. Mixed into :class:`gitexp.repo.Repo`.
"""
from __future__ import annotations

import os
import subprocess
from typing import Callable, List, Mapping, Optional, Tuple

from .errors import GitFailed
from .gitenv import clean_env
from .repo_objects import RepoPart, storage_error


def _checkout_tree(source: str, commit: str, target: str, depth: int) -> None:
    """Files of ``commit`` (an object of the repository at ``source``) under ``target``."""
    if depth > 8:
        raise GitFailed(f"submodules nested more than 8 deep under {source}")
    import tempfile  # here: only runs check out

    fd, index = tempfile.mkstemp(prefix="gitexp-index-")
    os.close(fd)
    os.unlink(index)
    env = clean_env({"GIT_INDEX_FILE": index})
    try:
        for args in (["read-tree", commit], ["checkout-index", "-a", "-f", f"--prefix={os.path.join(target, '')}"]):
            proc = subprocess.run(["git", *args], cwd=source, env=env, capture_output=True)
            if proc.returncode != 0:
                err = proc.stderr.decode(errors="replace").strip()
                git_dir = subprocess.run(["git", "rev-parse", "--absolute-git-dir"], cwd=source, env=clean_env(),
                                         capture_output=True, text=True).stdout.strip()
                raise GitFailed(f"cannot check out {commit[:12]} from {git_dir or source}: {err}")
        listing = subprocess.run(["git", "ls-tree", "-r", "-z", commit], cwd=source, env=env,
                                 capture_output=True).stdout.decode(errors="replace")
    finally:
        if os.path.exists(index):
            os.unlink(index)
    for item in listing.split("\0"):
        meta, _, path = item.partition("\t")
        if not meta.startswith("160000 "):
            continue
        sub_commit = meta.split(" ")[2]
        sub_source = os.path.join(source, path)
        if not os.path.exists(os.path.join(sub_source, ".git")):
            raise GitFailed(f"submodule {path}: no repository at {sub_source} to take its commit "
                            f"{sub_commit[:12]} from", f"run git submodule update --init {path}")
        present = subprocess.run(["git", "cat-file", "-e", f"{sub_commit}^{{commit}}"], cwd=sub_source,
                                 env=clean_env(), capture_output=True)
        if present.returncode != 0:
            raise GitFailed(f"submodule {path}: its recorded commit {sub_commit[:12]} is not in {sub_source}",
                            f"fetch it there (git -C {path} fetch) or run git submodule update {path}")
        _checkout_tree(sub_source, sub_commit, os.path.join(target, path), depth + 1)


class WorkTree(RepoPart):
    """Snapshots of the working tree and checkouts of a commit elsewhere."""

    def snapshot_tree(self, choose: Optional[Callable[[List[Tuple[str, int]]], List[str]]] = None) -> str:
        """Tree of the working tree as it is now: tracked files, and untracked, non-ignored ones.

        ``choose`` gets the untracked ``(path, size)`` entries (a nested repository's path
        ends in '/') and returns the paths to take; without it all are taken. Starts from a
        copy of the user's index for speed (its stat data lets ``git add`` skip unchanged
        files); the copy is written, the user's index is not.
        """
        return self.snapshot(choose)[0]

    def snapshot(self, choose: Optional[Callable[[List[Tuple[str, int]]], List[str]]] = None) -> Tuple[str, bool]:
        """:meth:`snapshot_tree`, and whether the working tree differs from ``HEAD`` (``git
        status`` has anything to say), told by the one ``status`` that lists the untracked
        files for ``choose`` (without ``choose``: False, not asked)."""
        import tempfile

        fd, index = tempfile.mkstemp(prefix="gitexp-index-", dir=self.git_dir)
        os.close(fd)
        env = {"GIT_INDEX_FILE": index, "GIT_LITERAL_PATHSPECS": "1"}
        dirty = False
        try:
            user_index = os.path.join(self.git_dir, "index")
            if os.path.exists(user_index):
                # copy2: the copy keeps the index's mtime. git trusts an entry's stat data only
                # when the file is older than the index (racy-git); a fresh mtime would make a
                # same-size edit made in the second of the last `git add` look unchanged, and
                # the snapshot would take the committed content instead of the edit.
                import shutil  # here: a snapshot is the only user

                shutil.copy2(user_index, index)
            else:
                os.unlink(index)
            if choose is None:
                self.run(["add", "-A", "--", "."], env=env)
            else:
                untracked, dirty = self._status(env)  # on the copy, before any add: as the user sees it
                self.run(["add", "-u", "--", "."], env=env)  # tracked files: always in
                wanted = choose(untracked)
                if wanted:
                    self.run(["add", "--pathspec-from-file=-", "--pathspec-file-nul"], env=env,
                             input=b"".join(os.fsencode(p.rstrip("/")) + b"\0" for p in wanted))
            return self.out(["write-tree"], env=env).strip(), dirty
        except OSError as exc:
            raise storage_error(exc, index) from exc
        finally:
            if os.path.exists(index):
                os.unlink(index)

    def _status(self, env: Mapping[str, str]) -> Tuple[List[Tuple[str, int]], bool]:
        """Untracked, non-ignored files with their sizes (a nested repository as 'path/', 0),
        and whether ``git status`` shows anything at all, from one ``git status``."""
        raw = self.run(["status", "--porcelain", "-z", "--untracked-files=all"], env=env).stdout
        found = []
        items = raw.split(b"\0")
        skip = False
        for item in items:
            if skip or not item:  # a rename's or copy's source path follows it
                skip = False
                continue
            code, path = item[:2], os.fsdecode(item[3:])
            skip = b"R" in code or b"C" in code
            if code != b"??":
                continue
            if path.endswith("/"):
                found.append((path, 0))
                continue
            try:
                found.append((path, os.lstat(os.path.join(self.root, path)).st_size))
            except OSError:
                continue  # deleted meanwhile
        return found, bool(raw.strip(b"\0"))

    def checkout_to(self, commit: str, target: str) -> None:
        """Write the files of ``commit`` under ``target`` with a private index.

        Unlike ``git archive`` this ignores export-ignore/export-subst attributes: the run
        sees exactly the committed files. Submodules and nested repositories (gitlinks) get
        the files of the commit the experiment recorded for them, read from their own
        repository in this working tree.
        """
        _checkout_tree(self.root, commit, os.path.abspath(target), depth=0)
