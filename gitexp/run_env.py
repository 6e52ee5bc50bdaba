"""The program's environment and command: GITEXP_* variables, the resume point, the command as
the user wrote it (with its values) and as it runs."""
from __future__ import annotations

import json
import os
import shutil
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

from .config import ExperimentConfig
from .paths import RunPaths
from .supervisor import MARK_VAR


def shell_argv(command: str) -> List[str]:
    """The program's shell. ``--norc``: over ssh (SSH_CLIENT set) bash would read ``~/.bashrc``
    first, whose PATH (pyenv, conda) would beat the config's ``env:``; what the config says wins."""
    bash = shutil.which("bash")
    return [bash, "--norc", "-c", command] if bash else ["/bin/sh", "-c", command]


def resume_point(attempt: Optional[Mapping[str, Any]]) -> Optional[Dict[str, Any]]:
    """The checkpoint a resumed attempt starts from (its summary's ``resume``), or None."""
    point = (attempt or {}).get("resume")
    return point if isinstance(point, dict) and isinstance(point.get("checkpoint"), str) else None


def environment(config: ExperimentConfig, sha: str, paths: RunPaths, mark: str,
                point: Optional[Mapping[str, Any]], extra: Mapping[str, str]) -> Dict[str, str]:
    """The program's environment: ours, the config's ``env:``, the GITEXP_* variables, the resume
    point (GITEXP_RESUME_FROM/STEP only on a resumed attempt), then the runner's extras."""
    env = dict(os.environ)
    env.update(config.env)
    env.update({
        "GITEXP_EXP_ID": sha,
        "GITEXP_EXP_NAME": config.name,
        "GITEXP_RUN_DIR": paths.root,
        "GITEXP_OUTPUT_DIR": paths.outdir,
        "GITEXP_METRICS_FILE": paths.metrics,
        "GITEXP_CHECKPOINTS_FILE": paths.checkpoints,
        "GITEXP_PARAMS": json.dumps(config.params),
        "GITEXP_STOP_FILE": paths.stop_file,
        MARK_VAR: mark,
        "PYTHONUNBUFFERED": env.get("PYTHONUNBUFFERED", "1"),
    })
    env.pop("GITEXP_RESUME_FROM", None)
    env.pop("GITEXP_RESUME_STEP", None)
    if point:
        env["GITEXP_RESUME_FROM"] = point["checkpoint"]
        if point.get("step") is not None:
            env["GITEXP_RESUME_STEP"] = str(point["step"])
    env.update(extra)
    return env


def command(config: ExperimentConfig, paths: RunPaths, point: Optional[Mapping[str, Any]]
            ) -> Tuple[Union[str, List[str]], str]:
    """(what runs: a shell line or an argv, the command as written with its values): a resumed
    attempt runs the config's ``resume:`` when it has one, else its command (with
    GITEXP_RESUME_FROM set)."""
    builtins = {"outdir": paths.outdir, "name": config.name, "run_dir": paths.root}
    if point and config.resume is not None:
        step = point.get("step")
        filled = {**builtins, "checkpoint": point["checkpoint"], "step": "" if step is None else str(step)}
        return config.render_resume(filled), config.command_text(filled, resume=True)
    return config.render_command(builtins), config.command_text(builtins)
