"""Issue #17, targets on other machines: what the config says wins over the far side's shell files."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from conftest import git, gitexp, make_repo
from sshd import ssh_host  # noqa: F401  (pytest fixture)
from test_ssh_remote import add_target, far_finished, far_python, laptop  # noqa: F401  (fixtures)


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


def test_the_local_runner_on_an_ssh_target_has_its_own_setup_and_env(
        laptop: Path, ssh_host: Any, tmp_path: Path, far_python: str) -> None:  # noqa: F811
    far = tmp_path / "far"
    add_target(laptop, ssh_host, "box", far, far_python, "--setup", "export FROMSETUP=set-up",
               "--env", "FROMENV=target", "--env", "BOTH=target")
    gitexp(laptop, "remote", "setup", "box")
    (laptop / "e.yaml").write_text("name: envbox\ncommand: echo \"setup=$FROMSETUP env=$FROMENV both=$BOTH\"\n"
                                   "env: {BOTH: config}\n")
    git(laptop, "add", "e.yaml")
    git(laptop, "commit", "-q", "-m", "e")
    gitexp(laptop, "run", "e.yaml", "--on", "box")
    far_finished(far, 1)
    out = gitexp(far, "logs", "envbox").stdout
    assert "setup=set-up env=target both=config" in out, out
    bad = gitexp(laptop, "remote", "add", "b2", "--host", ssh_host.alias, "--path", str(far), "--env", "no equals",
                 check=False)
    assert bad.returncode == 2 and "KEY=VALUE" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
