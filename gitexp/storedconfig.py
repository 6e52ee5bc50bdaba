"""The one reader of a stored config: the resolved config an experiment commit holds.

Every experiment commit has its config at :data:`gitexp.notes.CONFIG_PATH`, checked when it
was recorded; this module reads and parses it (``stored=True``) for the executor, retries and
resumes, the worker, the live views and notifications. It sits just above config and notes,
so any of them may import it without reaching up.
"""
from __future__ import annotations

from typing import Optional, Type

from .config import ExperimentConfig, parse_config
from .errors import GitExpError
from .notes import CONFIG_PATH
from .repo import Repo
from .values import short


def stored_bytes(repo: Repo, sha: str) -> Optional[bytes]:
    """The stored config's bytes as the commit holds them; None when it holds none."""
    return repo.show_file(sha, CONFIG_PATH)


def parse_stored(raw: bytes, sha: str, errors: str = "strict") -> ExperimentConfig:
    """A stored config parsed and checked; errors name ``<sha>:<path>``."""
    return parse_config(raw.decode(errors=errors), source=f"{short(sha, 12)}:{CONFIG_PATH}", stored=True)


def load_experiment_config(repo: Repo, sha: str, errors: str = "strict",
                           missing: Type[GitExpError] = GitExpError) -> ExperimentConfig:
    """The config of experiment commit ``sha``; ``errors`` decodes its bytes (``replace`` for
    views that show what they can). A commit without one raises ``missing`` (a
    :class:`~gitexp.errors.BadInput` where the commit was named by the user)."""
    raw = stored_bytes(repo, sha)
    if raw is None:
        raise missing(f"commit {short(sha, 12)} is not an experiment (no {CONFIG_PATH})")
    return parse_stored(raw, sha, errors)
