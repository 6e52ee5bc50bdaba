"""Issue #17, targets on other machines: what the config says wins over the far side's shell files."""
from __future__ import annotations

import os
import subprocess
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


def test_remote_setup_install_puts_this_gitexp_there_without_an_index(
        laptop: Path, ssh_host: Any, tmp_path: Path) -> None:  # noqa: F811
    """A Python there without gitexp or its dependencies: --install sends wheels built here."""
    bare = "/root/.pyenv/versions/3.11.7/bin/python3"
    if not os.path.exists(bare):
        bare = "python3"
    far = tmp_path / "far"
    gitexp(laptop, "remote", "add", "bare", "--host", ssh_host.alias, "--ssh-config", ssh_host.config,
           "--path", str(far), "--python", bare)
    missing = gitexp(laptop, "remote", "setup", "bare", check=False)
    assert missing.returncode == 2 and "git exp remote setup bare --install" in missing.stderr, missing.stderr
    assert not far.exists()
    venv = tmp_path / "farenv"
    proc = gitexp(laptop, "remote", "setup", "bare", "--install", "--install-dir", str(venv), timeout=300)
    assert "installed gitexp" in proc.stdout and "ready" in proc.stdout, proc.stdout + proc.stderr
    python = git(laptop, "config", "exp.remote.bare.python").strip()
    assert python == f"{venv}/venv/bin/python"
    out = subprocess.run([python, "-c", "import gitexp, sys; print(gitexp.__file__)"], capture_output=True,
                         text=True, cwd=tmp_path, env={"PATH": os.environ["PATH"], "HOME": os.environ["HOME"]})
    assert out.returncode == 0 and str(venv) in out.stdout, out.stderr
    sha = gitexp(laptop, "run", "config.yaml", "--on", "bare").stdout.strip()
    [row] = far_finished(far, 1)
    assert row["id"] == sha


def test_show_of_a_run_on_a_target_names_it_and_lists_its_outputs_there(
        laptop: Path, ssh_host: Any, tmp_path: Path, far_python: str) -> None:  # noqa: F811
    far = tmp_path / "far"
    add_target(laptop, ssh_host, "vmbox", far, far_python)
    gitexp(laptop, "remote", "setup", "vmbox")
    (laptop / "o.yaml").write_text("name: saver\ncommand: echo weights > {outdir}/model.pt\n")
    git(laptop, "add", "o.yaml")
    git(laptop, "commit", "-q", "-m", "o")
    gitexp(laptop, "run", "o.yaml", "--on", "vmbox")
    far_finished(far, 1)
    gitexp(laptop, "pull", "vmbox")
    out = gitexp(laptop, "show", "saver").stdout
    assert "run target vmbox" in out, out
    assert "model.pt" in out and "(empty)" not in out, out


def test_ui_on_a_target_serves_its_experiments_through_the_shared_connection(
        laptop: Path, ssh_host: Any, tmp_path: Path, far_python: str) -> None:  # noqa: F811
    """git exp ui --on: the server runs there, its port forwarded here through the ssh master."""
    import json
    import signal
    import sys
    import urllib.request

    far = tmp_path / "far"
    add_target(laptop, ssh_host, "uibox", far, far_python)
    gitexp(laptop, "remote", "setup", "uibox")
    sha = gitexp(laptop, "run", "config.yaml", "--on", "uibox").stdout.strip()
    far_finished(far, 1)
    proc = subprocess.Popen([sys.executable, "-m", "gitexp", "ui", "--on", "uibox"], cwd=laptop,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), (url, proc.stderr.read() if proc.poll() is not None else "")
        base = url.split("/?", 1)[0]
        with urllib.request.urlopen(base + "/api/experiments", timeout=30) as answer:
            listed = json.loads(answer.read())
        assert sha in json.dumps(listed)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
