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
