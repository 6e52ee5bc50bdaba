"""Issue #21 (4): shell completion, driven through bash with git's own completion loaded."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

from conftest import ROOT, git, gitexp, make_repo

GIT_COMPLETION = "/usr/share/bash-completion/completions/git"


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    """A `git-exp` on PATH (git runs `git exp` as git-exp) that runs this checkout."""
    folder = tmp_path / "bin"
    folder.mkdir()
    script = folder / "git-exp"
    script.write_text(f"#!/bin/sh\nPYTHONPATH={ROOT} exec {sys.executable} -m gitexp \"$@\"\n")
    script.chmod(0o755)
    return folder


def complete(repo: Path, bin_dir: Path, line: str) -> List[str]:
    """What bash offers for `line` (completed at its end) with git's completion and ours loaded."""
    if not os.path.exists(GIT_COMPLETION):
        if os.environ.get("CI") == "true":
            raise AssertionError(f"{GIT_COMPLETION} (Debian's git package) is missing")
        pytest.skip(f"{GIT_COMPLETION} is not installed (git's bash completion)")
    driver = f"""
source {GIT_COMPLETION}
source <(git exp completion bash)
COMP_LINE={line!r}; COMP_POINT=${{#COMP_LINE}}
read -ra COMP_WORDS <<< "$COMP_LINE"
case "$COMP_LINE" in *" ") COMP_WORDS+=("") ;; esac
COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1))
COMPREPLY=()
__git_wrap__git_main
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    proc = subprocess.run([shutil.which("bash") or "bash", "-c", driver], cwd=repo, capture_output=True, text=True,
                          env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return [line for line in proc.stdout.splitlines() if line]


def test_git_exp_tab_completes_commands_ids_names_targets_params_and_metrics(tmp_path: Path, bin_dir: Path) -> None:
    repo = make_repo(tmp_path / "r", {"c.yaml": "name: alpha\ncommand: echo 'loss 0.5'\nparams: {lr: 0.1, seed: 1}\n"
                                                "metrics:\n  loss: {regex: 'loss ([0-9.]+)'}\n"})
    gitexp(repo, "run", "c.yaml")
    gitexp(repo, "remote", "add", "gpu3", "--runner", "local", "--jobs", "2")
    sha = git(repo, "rev-parse", "refs/exps/alpha").strip()
    assert complete(repo, bin_dir, "git exp ru") == ["run"]
    assert complete(repo, bin_dir, f"git exp show {sha[:5]}") == [sha[:8]]
    assert complete(repo, bin_dir, "git exp show al") == ["alpha"]
    assert complete(repo, bin_dir, "git exp resume alpha --o") == ["--on"]
    assert complete(repo, bin_dir, "git exp run c.yaml --on ") == ["gpu3"]
    assert complete(repo, bin_dir, "git exp run c.yaml -p ") == ["lr=", "seed="]
    assert complete(repo, bin_dir, "git exp log --metric ") == ["loss"]
    assert complete(repo, bin_dir, "git exp log --format j") == ["json"]
    assert complete(repo, bin_dir, "git exp queue re") == ["retry"]
    assert complete(repo, bin_dir, "git exp run c.") == ["c.yaml"]
    assert complete(repo, bin_dir, "git exp completion z") == ["zsh"]


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_prints_a_script_for_each_shell_and_refuses_others(repo: Path, shell: str) -> None:
    text = gitexp(repo, "completion", shell).stdout
    assert "_complete" in text
    if shell == "bash":
        assert subprocess.run(["bash", "-n"], input=text, text=True).returncode == 0
    bad = gitexp(repo, "completion", "powershell", check=False)
    assert bad.returncode == 2 and "powershell" in bad.stderr
