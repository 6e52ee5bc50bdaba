"""git exp hooks install/uninstall and the pre-push disk check, with real git pushes; the pushes to a
run target go to a repository reached through the real test sshd (tests/sshd.py)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from conftest import ROOT, all_refs, git, gitexp
from sshd import SshHost, short_dir, ssh_host  # noqa: F401  (pytest fixture)

sys.path.insert(0, str(ROOT))

from gitexp.ssh_transport import SshTransport  # noqa: E402

FOREIGN = "#!/bin/sh\n# someone else's hook\necho \"foreign hook saw $1\" >&2\ncat > \"$(dirname \"$0\")/../foreign-stdin\"\n"


def hook_path(repo: Path) -> Path:
    return repo / ".git" / "hooks" / "pre-push"


def push(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "push", "--quiet", *args], cwd=repo, capture_output=True, text=True, timeout=120)


# -- installing without ever overwriting ------------------------------------------------------------
def test_install_writes_an_executable_hook_and_uninstall_removes_it(repo: Path) -> None:
    assert "installed the gitexp pre-push hook" in gitexp(repo, "hooks", "install").stdout
    hook = hook_path(repo)
    assert os.access(hook, os.X_OK) and "# gitexp pre-push hook" in hook.read_text()
    gitexp(repo, "hooks", "install")  # again: still one hook, nothing chained
    assert not (hook.parent / "pre-push.gitexp-chained").exists()
    assert "removed" in gitexp(repo, "hooks", "uninstall").stdout
    assert not hook.exists()


def test_an_existing_hook_is_chained_runs_first_and_comes_back(repo: Path, tmp_path: Path) -> None:
    hook = hook_path(repo)
    hook.parent.mkdir(parents=True, exist_ok=True)
    hook.write_text(FOREIGN)
    hook.chmod(0o755)
    out = gitexp(repo, "hooks", "install").stdout
    assert "runs your previous hook first" in out
    gitexp(repo, "hooks", "install")
    assert (hook.parent / "pre-push.gitexp-chained").read_text() == FOREIGN
    bare = tmp_path / "plain.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    proc = push(repo, str(bare), "main")
    assert proc.returncode == 0, proc.stderr
    assert f"foreign hook saw {bare}" in proc.stderr
    assert "refs/heads/main" in (repo / ".git" / "foreign-stdin").read_text()  # it got git's stdin too
    # a refusal of the chained hook stands
    (hook.parent / "pre-push.gitexp-chained").write_text("#!/bin/sh\necho no >&2\nexit 1\n")
    git(repo, "commit", "-q", "--allow-empty", "-m", "more")
    assert push(repo, str(bare), "main").returncode != 0
    (hook.parent / "pre-push.gitexp-chained").write_text(FOREIGN)
    assert "your previous hook is back" in gitexp(repo, "hooks", "uninstall").stdout
    assert hook.read_text() == FOREIGN and os.access(hook, os.X_OK)


def test_uninstall_leaves_a_hook_that_is_not_ours(repo: Path) -> None:
    hook = hook_path(repo)
    hook.parent.mkdir(parents=True, exist_ok=True)
    hook.write_text(FOREIGN)
    proc = gitexp(repo, "hooks", "uninstall", check=False)
    assert proc.returncode == 2 and "no gitexp pre-push hook" in proc.stderr
    assert hook.read_text() == FOREIGN


def test_core_hooks_path_is_honoured(repo: Path) -> None:
    git(repo, "config", "core.hooksPath", "githooks")
    gitexp(repo, "hooks", "install")
    assert (repo / "githooks" / "pre-push").exists() and not hook_path(repo).exists()


# -- the disk check on a push to a run target -----------------------------------------------------------
@pytest.fixture
def target_repo(repo: Path, ssh_host: SshHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:  # noqa: F811
    """``repo`` with run target gpu3 (a repository over ssh), a git remote of the same name and
    our hook installed."""
    runtime = short_dir("gxh-")
    monkeypatch.setenv("XDG_RUNTIME_DIR", runtime)
    far = tmp_path / "far side"
    wrapper = tmp_path / "python"
    wrapper.write_text(f"#!/bin/sh\nPYTHONPATH={ROOT} exec {sys.executable} \"$@\"\n")
    wrapper.chmod(0o755)
    gitexp(repo, "remote", "add", "gpu3", "--host", ssh_host.alias, "--ssh-config", ssh_host.config,
           "--path", str(far), "--python", str(wrapper))
    gitexp(repo, "remote", "setup", "gpu3")
    git(repo, "remote", "add", "gpu3", f"{ssh_host.alias}:{far}")
    git(repo, "config", "core.sshCommand", f"ssh -F {ssh_host.config}")
    git(repo, "add", ".gitexp.yaml")
    git(repo, "commit", "-q", "-m", "target")
    gitexp(repo, "hooks", "install")
    try:
        yield repo
    finally:
        SshTransport(ssh_host.alias, ssh_config=ssh_host.config,
                     control_dir=os.path.join(runtime, "gitexp-ssh")).close()
        shutil.rmtree(runtime, ignore_errors=True)


def record(repo: Path, name: str, disk: str) -> None:
    (repo / f"{name}.yaml").write_text(f"name: {name}\ncommand: echo hi\nrequires: {{disk: {disk}}}\n")
    gitexp(repo, "run", f"{name}.yaml", "--queue")


def test_a_push_that_does_not_fit_there_is_refused_with_the_numbers(target_repo: Path, tmp_path: Path) -> None:
    record(target_repo, "big", "900TB")
    far = tmp_path / "far side"
    proc = push(target_repo, "gpu3", "refs/exps/big:refs/exps/big")
    assert proc.returncode != 0
    assert "refusing the push to run target gpu3" in proc.stderr
    assert "900.0TB needed (1 experiment(s): requires.disk 900.0TB + margin 1.0GB)" in proc.stderr
    assert "free on gitexp-test at" in proc.stderr and "--no-verify" in proc.stderr
    assert "refs/exps/big" not in all_refs(far)
    proc = push(target_repo, "--no-verify", "gpu3", "refs/exps/big:refs/exps/big")
    assert proc.returncode == 0, proc.stderr
    assert "refs/exps/big" in all_refs(far)


def test_a_push_that_fits_goes_through_and_the_url_is_recognised_too(target_repo: Path, tmp_path: Path) -> None:
    record(target_repo, "small", "1MB")
    proc = push(target_repo, "gpu3", "refs/exps/small:refs/exps/small")
    assert proc.returncode == 0, proc.stderr
    record(target_repo, "huge", "900TB")
    url = git(target_repo, "remote", "get-url", "gpu3").strip()
    proc = push(target_repo, url, "refs/exps/huge:refs/exps/huge")  # by URL, no git remote name
    assert proc.returncode != 0 and "run target gpu3" in proc.stderr


def test_the_margin_is_configurable_and_checked_for_any_push_there(target_repo: Path) -> None:
    gitexp(target_repo, "remote", "add", "gpu3", "--user", "--disk-margin", "900TB")
    proc = push(target_repo, "gpu3", "main")  # a branch: no experiment, the margin alone
    assert proc.returncode != 0 and "margin 900.0TB" in proc.stderr


def test_a_push_elsewhere_is_not_checked(target_repo: Path, tmp_path: Path) -> None:
    record(target_repo, "big", "900TB")
    bare = tmp_path / "hub.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    proc = push(target_repo, str(bare), "refs/exps/big:refs/exps/big")
    assert proc.returncode == 0, proc.stderr


def test_run_on_makes_the_same_check_before_it_pushes(target_repo: Path, tmp_path: Path) -> None:
    (target_repo / "big.yaml").write_text("name: big\ncommand: echo hi\nrequires: {disk: 900TB}\n")
    here_before, far_before = all_refs(target_repo), all_refs(tmp_path / "far side")
    proc = gitexp(target_repo, "run", "big.yaml", "--on", "gpu3", check=False)
    assert proc.returncode == 3, proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert "not sent to run target gpu3" in line and "requires.disk 900.0TB" in line
    assert all_refs(target_repo) == here_before and all_refs(tmp_path / "far side") == far_before
    objects = git(tmp_path / "far side", "count-objects", "-v").splitlines()
    assert "count: 0" in objects and "in-pack: 0" in objects  # the check came before the push
