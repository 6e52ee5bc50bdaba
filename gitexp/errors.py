"""Exceptions of the core. The CLI's ``main`` turns them into one line and an exit code."""
from __future__ import annotations

from typing import Optional


class GitExpError(Exception):
    """A failure the user should read about; ``exit_code`` is what the CLI exits with."""

    exit_code = 1

    def __init__(self, message: str, hint: Optional[str] = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} ({self.hint})"
        return self.message


class BadInput(GitExpError):
    """Wrong config, argument or id: nothing was written. Exit code 2."""

    exit_code = 2


class GitFailed(GitExpError):
    """A git command failed; carries git's own message."""


class NotReady(GitExpError):
    """A precondition (disk, RAM, GPU memory) does not hold now: nothing was run. Exit code 3."""

    exit_code = 3


class RefConflict(GitExpError):
    """A compare-and-swap ref update lost the race more times than the retry budget."""


class DiskFull(GitExpError):
    """A write failed for lack of space (ENOSPC, EDQUOT). What was recorded before stays."""

    def __init__(self, path: str) -> None:
        super().__init__(f"no space left on the device holding {path}",
                         "free some space (df -h shows how much is left) and run the command again; "
                         "results already recorded are intact")


class MissingObjects(GitExpError):
    """Objects that refs or notes point at are not in the repository (e.g. `git gc --prune=now`
    ran beside a writer). Exit code 4."""

    exit_code = 4

    def __init__(self, shas: "list[str]", what: str = "") -> None:
        self.shas = list(shas)
        listed = ", ".join(s[:12] if len(s) == 40 else s for s in self.shas[:5]) + (" ..." if len(self.shas) > 5 else "")
        super().__init__(f"the repository is missing object(s) {listed}{' (' + what + ')' if what else ''}",
                         "run `git exp fsck` to see what is damaged and `git exp fsck --repair` to recover")
