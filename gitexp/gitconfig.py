"""Reading git config: the one place its output is parsed.

Keys gitexp reads are named here; values come back as text (``None`` when the key is not
set), and ``-z`` output is parsed so a value holding a space or a newline stays whole.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

from .repo import Repo

RUNS_DIR = "exp.runsDir"                  # where run directories go (GITEXP_RUNS_DIR wins)
TRUSTED_TARGETS = "exp.trustedTargets"    # fingerprints of trusted versions of .gitexp.yaml
TARGET_PREFIX = "exp.remote."             # exp.remote.<target>.<setting>: per-user target settings
REMOTE_URLS = r"^remote\..*\.url$"        # git's own remotes


def get(repo: Repo, key: str) -> Optional[str]:
    """The value of ``key`` (the last one when it is set more than once), or None."""
    proc = repo.run(["config", "-z", "--get", key], check=False)
    if proc.returncode != 0:
        return None
    return proc.stdout.decode(errors="replace").rstrip("\0")


def get_all(repo: Repo, key: str) -> List[str]:
    """Every value of ``key``, in order ([] when it is not set)."""
    proc = repo.run(["config", "-z", "--get-all", key], check=False)
    return [value for value in proc.stdout.decode(errors="replace").split("\0") if value] if proc.returncode == 0 else []


def matching(repo: Repo, pattern: str) -> List[Tuple[str, str]]:
    """(key, value) of every setting whose key matches the regular expression ``pattern``.

    Keys come back as git gives them: section and variable names in lower case.
    """
    proc = repo.run(["config", "-z", "--get-regexp", pattern], check=False)
    out = []
    for entry in proc.stdout.decode(errors="replace").split("\0"):
        if entry:
            key, _, value = entry.partition("\n")
            out.append((key, value))
    return out


__all__ = ["RUNS_DIR", "TRUSTED_TARGETS", "TARGET_PREFIX", "REMOTE_URLS", "get", "get_all", "matching"]
