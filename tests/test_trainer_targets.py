"""Issue #17, targets on other machines: what the config says wins over the far side's shell files."""
from __future__ import annotations

import os
from pathlib import Path

from conftest import gitexp, make_repo


def test_config_env_wins_over_bashrc_read_because_of_ssh(tmp_path: Path) -> None:
    """Over ssh (SSH_CLIENT set) bash reads ~/.bashrc before the command; its PATH and exports
    must not beat the config's env: (it put pyenv's python ahead of the venv's)."""
    home = Path(os.environ["HOME"])
    (home / ".bashrc").write_text("export WHICH=bashrc\nexport PATH=/from-bashrc:$PATH\n")
    repo = make_repo(tmp_path / "r", {"c.yaml": "name: envtest\ncommand: echo \"which=$WHICH path=$PATH\"\n"
                                                "env: {WHICH: config}\n"})
    env = {"SSH_CLIENT": "10.0.0.1 5555 22", "SSH_CONNECTION": "10.0.0.1 5555 10.0.0.2 22", "SHLVL": "0"}
    out = gitexp(repo, "run", "c.yaml", env=env).stdout
    assert "which=config" in out, out
    assert "/from-bashrc" not in out, out
