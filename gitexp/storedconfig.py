"""The one reader of a stored config: the resolved config an experiment commit holds.

Every experiment commit has its config at :data:`gitexp.notes.CONFIG_PATH`, checked when it
was recorded; this module reads and parses it (``stored=True``) for the executor, retries and
resumes, the worker, the live views and notifications. It sits just above config and notes,
so any of them may import it without reaching up.
"""
from __future__ import annotations

from .config import ExperimentConfig, parse_config
from .errors import GitExpError
from .notes import CONFIG_PATH
from .repo import Repo


def load_experiment_config(repo: Repo, sha: str, errors: str = "strict") -> ExperimentConfig:
    """The config of experiment commit ``sha``; ``errors`` decodes its bytes (``replace`` for
    views that show what they can). A commit without one is a :class:`GitExpError`."""
    raw = repo.show_file(sha, CONFIG_PATH)
    if raw is None:
        raise GitExpError(f"commit {sha[:12]} is not an experiment (no {CONFIG_PATH})")
    return parse_config(raw.decode(errors=errors), source=f"{sha[:12]}:{CONFIG_PATH}", stored=True)
