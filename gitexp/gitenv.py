"""The environment every git process gitexp starts runs with (:mod:`gitexp.repo`)."""
from __future__ import annotations

import os
from typing import Dict, Mapping, Optional


def clean_env(extra: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    env = dict(os.environ)
    # A hook or the user's shell may export these; our plumbing must not inherit them.
    for key in ("GIT_INDEX_FILE", "GIT_WORK_TREE", "GIT_PREFIX"):
        env.pop(key, None)
    env["GIT_TERMINAL_PROMPT"] = "0"
    # gitexp reads git's messages (a lost compare-and-swap race, a full disk): under a
    # translated git they would not match, and a race to retry would become an error.
    env["LC_ALL"] = "C"
    env.pop("LANGUAGE", None)
    if extra:
        env.update(extra)
    return env
