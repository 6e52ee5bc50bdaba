"""Where an experiment's files live on this machine, outside any throwaway worktree.

``<runs root>/<sha>/`` holds ``output.log``, ``metrics.jsonl`` (the Python API's points),
``captured.jsonl`` (points the metric regexes found in the output), ``checkpoints.jsonl``,
``exec.json`` (pid, host, heartbeat), the throwaway worktree ``wt/`` and the persistent
output directory ``out/`` (``{outdir}``, ``GITEXP_OUTPUT_DIR``).

Every attempt of an experiment is a run commit of its own, so it has its own directory:
nothing of an earlier attempt is overwritten. A resumed attempt shares ``out/`` with the
attempt it continues (its summary's ``outdir_of`` names the commit whose ``out/`` it uses),
so a program that saves ``{outdir}/model.pt`` and resumes from it works unchanged.
The root is ``<git common dir>/gitexp/runs`` unless ``GITEXP_RUNS_DIR`` or git config
``exp.runsDir`` say otherwise.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from . import gitconfig
from .repo import Repo


_SHA = re.compile(r"^[0-9a-f]{40}$")
# A live executor touches its exec.json this often (the heartbeat) ...
HEARTBEAT_SECONDS = 5.0
# ... and a running run on another host whose exec.json (on a shared file system) has not been
# touched for this long is lost: twelve heartbeats, for clocks that differ between hosts and
# file systems that cache mtimes.
SILENT_LOST_SECONDS = 60.0


@dataclass(frozen=True)
class RunPaths:
    root: str
    shared_out: Optional[str] = None  # another attempt's out/, along a resume chain

    @property
    def log(self) -> str:
        return os.path.join(self.root, "output.log")

    @property
    def metrics(self) -> str:
        return os.path.join(self.root, "metrics.jsonl")

    @property
    def captured(self) -> str:
        """Regex-captured points, appended by the executor as the output arrives (JSON lines)."""
        return os.path.join(self.root, "captured.jsonl")

    @property
    def checkpoints(self) -> str:
        return os.path.join(self.root, "checkpoints.jsonl")

    @property
    def exec_info(self) -> str:
        return os.path.join(self.root, "exec.json")

    @property
    def stop_file(self) -> str:
        """Created when the runner warns that the time limit is near (GITEXP_STOP_FILE)."""
        return os.path.join(self.root, "stop-requested")

    @property
    def worktree(self) -> str:
        return os.path.join(self.root, "wt")

    @property
    def outdir(self) -> str:
        return self.shared_out or os.path.join(self.root, "out")


def runs_root(repo: Repo) -> str:
    """Asked once per Repo: the worker's loop and every run directory lookup call this."""
    if "runs_root" in repo.settings:
        return repo.settings["runs_root"]
    configured = os.environ.get("GITEXP_RUNS_DIR")
    if not configured:
        configured = (gitconfig.get(repo, gitconfig.RUNS_DIR) or "").strip()
    root = os.path.abspath(os.path.expanduser(configured)) if configured else \
        os.path.join(repo.common_dir, "gitexp", "runs")
    repo.settings["runs_root"] = root
    return root


def run_paths(repo: Repo, sha: str, summary: Optional[Mapping[str, Any]] = None) -> RunPaths:
    """This machine's directory of run ``sha``; with its summary, the ``out/`` it shares.

    Only a commit id from the note is used (never a path from it: notes are untrusted).
    """
    root = runs_root(repo)
    owner = (summary or {}).get("outdir_of")
    shared = os.path.join(root, owner, "out") if isinstance(owner, str) and _SHA.match(owner) and owner != sha \
        else None
    return RunPaths(os.path.join(root, sha), shared)
