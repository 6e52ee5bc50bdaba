"""A tracked .gitexp.yaml is a claim, and the pre-push disk check cannot be talked out of its job.

* An ssh_config that comes with a pulled .gitexp.yaml runs nothing (ProxyCommand, Match exec,
  LocalCommand) in `hosts`, `log`, `pull`, `top` or the pre-push hook until the user trusts that
  version of the file with `git exp remote trust`; a later change needs trusting again.
* The hook knows a run target's repository in every spelling git accepts for it.
* An experiment whose requires.disk cannot be read refuses the push, one line naming it and the value.
* One bad target refuses only pushes to that target, with a line naming the hook and --no-verify.

Pushes are real `git push`es to repositories reached through the test sshd (tests/sshd.py).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterator, List, NamedTuple

import pytest

from conftest import ROOT, all_refs, git, gitexp
from sshd import SshHost, short_dir, ssh_host  # noqa: F401  (pytest fixture)

sys.path.insert(0, str(ROOT))

from gitexp.ssh_transport import SshTransport  # noqa: E402

HOOK = "gitexp pre-push hook"


class Far(NamedTuple):
    repo: Path  # this side
    path: Path  # the target's repository there
    python: str  # gitexp's python there


def push(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "push", "--quiet", *args], cwd=repo, capture_output=True, text=True, timeout=120)


def hook_lines(proc: subprocess.CompletedProcess) -> List[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith(HOOK)]


@pytest.fixture
def far(repo: Path, ssh_host: SshHost, tmp_path: Path,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> Iterator[Far]:
    """``repo`` with the hook installed, git's ssh set up by the user (core.sshCommand), and an
    empty repository there; ssh masters in a private directory, closed afterwards."""
    runtime = short_dir("gxt-")
    monkeypatch.setenv("XDG_RUNTIME_DIR", runtime)
    path = tmp_path / "far"
    git(tmp_path, "init", "-q", str(path))
    wrapper = tmp_path / "python"
    wrapper.write_text(f"#!/bin/sh\nPYTHONPATH={ROOT} exec {sys.executable} \"$@\"\n")
    wrapper.chmod(0o755)
    git(repo, "config", "core.sshCommand", f"ssh -F {ssh_host.config}")
    gitexp(repo, "hooks", "install")
    try:
        yield Far(repo, path, str(wrapper))
    finally:
        for config in (ssh_host.config, None):
            SshTransport(ssh_host.alias, ssh_config=config, control_dir=os.path.join(runtime, "gitexp-ssh")).close()
        shutil.rmtree(runtime, ignore_errors=True)


@pytest.fixture
def gpu3(far: Far, ssh_host: SshHost) -> Path:  # noqa: F811
    """Run target gpu3 (added by this user: its ssh_config is in their git config), set up there,
    and a git remote of the same name."""
    repo = far.repo
    gitexp(repo, "remote", "add", "gpu3", "--host", ssh_host.alias, "--ssh-config", ssh_host.config,
           "--path", str(far.path), "--python", far.python)
    gitexp(repo, "remote", "setup", "gpu3")
    git(repo, "remote", "add", "gpu3", f"{ssh_host.alias}:{far.path}")
    git(repo, "add", ".gitexp.yaml")
    git(repo, "commit", "-q", "-m", "target gpu3")
    return repo


def record(repo: Path, name: str, disk: str) -> str:
    (repo / f"{name}.yaml").write_text(f"name: {name}\ncommand: echo hi\nrequires: {{disk: {disk}}}\n")
    gitexp(repo, "run", f"{name}.yaml", "--queue")
    return git(repo, "rev-parse", f"refs/exps/{name}").strip()


# -- 6: a tracked ssh_config runs nothing until trusted ------------------------------------------------
EVIL_CONF = """Match exec "touch {marker}_match"
Host *
    PermitLocalCommand yes
    LocalCommand touch {marker}_local
    ProxyCommand sh -c "touch {marker}_proxy; exit 1"
"""


def markers(tmp_path: Path) -> List[str]:
    return sorted(p.name for p in tmp_path.glob("PWNED*"))


def colleague_commits_evil_target(far: Far, ssh_host: SshHost, tmp_path: Path) -> None:  # noqa: F811
    """A colleague's clone adds run target gpu3 with their ssh config to .gitexp.yaml and pushes; we pull."""
    hub, theirs = tmp_path / "hub.git", tmp_path / "theirs"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(hub))
    git(far.repo, "remote", "add", "origin", str(hub))
    git(far.repo, "push", "-q", "--no-verify", "origin", "main")
    git(tmp_path, "clone", "-q", str(hub), str(theirs))
    (theirs / "evil.conf").write_text(EVIL_CONF.format(marker=tmp_path / "PWNED"))
    (theirs / ".gitexp.yaml").write_text(
        f"targets:\n  gpu3:\n    runner: local\n    host: {ssh_host.alias}\n    path: {far.path}\n"
        f"    python: {far.python}\n    ssh_config: evil.conf\n")
    git(theirs, "add", "evil.conf", ".gitexp.yaml")
    git(theirs, "commit", "-q", "-m", "a handy target")
    git(theirs, "push", "-q", "origin", "main")
    git(far.repo, "pull", "-q", "--no-rebase", "origin", "main")
    assert (far.repo / "evil.conf").exists()


def test_a_pulled_ssh_config_runs_nothing_in_inspecting_commands_or_the_hook(
        far: Far, ssh_host: SshHost, tmp_path: Path) -> None:  # noqa: F811
    colleague_commits_evil_target(far, ssh_host, tmp_path)
    repo = far.repo
    git(repo, "remote", "add", "gpu3", f"{ssh_host.alias}:{far.path}")  # the user's own git remote
    record(repo, "small", "1MB")

    hosts = gitexp(repo, "hosts")  # contacts every target by itself
    assert markers(tmp_path) == []
    [line] = [x for x in hosts.stdout.splitlines() if x.startswith("gpu3")]
    assert line.startswith("gpu3: not contacted:") and "git exp remote trust" in line
    assert gitexp(repo, "log").returncode == 0
    for command in (["hosts", "--on", "gpu3"], ["pull", "gpu3"], ["top", "--on", "gpu3", "--once"],
                    ["queue", "--on", "gpu3"]):
        proc = gitexp(repo, *command, check=False)
        assert proc.returncode == 2, (command, proc.stdout, proc.stderr)
        [line] = proc.stderr.strip().splitlines()
        assert "ssh_config 'evil.conf' comes from the tracked .gitexp.yaml" in line
        assert "git exp remote trust" in line, line
    proc = push(repo, "gpu3", "refs/exps/small:refs/exps/small")
    assert proc.returncode == 0, proc.stderr
    [line] = hook_lines(proc)
    assert "no disk check of run target gpu3" in line and "git exp remote trust" in line
    assert markers(tmp_path) == []

    # trusted on purpose: now it is used (ssh starts with it and runs its commands)
    assert "trusted this version of .gitexp.yaml" in gitexp(repo, "remote", "trust").stdout
    gitexp(repo, "hosts", "--on", "gpu3", check=False)
    assert "PWNED_match" in markers(tmp_path) and "PWNED_proxy" in markers(tmp_path)

    # a later change to the ssh config file (or to .gitexp.yaml) needs trusting again
    for name in markers(tmp_path):
        (tmp_path / name).unlink()
    with open(repo / "evil.conf", "a", encoding="utf-8") as handle:
        handle.write("# changed by the next pull\n")
    proc = gitexp(repo, "hosts", "--on", "gpu3", check=False)
    assert proc.returncode == 2 and "git exp remote trust" in proc.stderr
    assert gitexp(repo, "hosts").returncode == 0
    assert markers(tmp_path) == []


def test_remote_add_keeps_ssh_config_out_of_the_shared_file(gpu3: Path, ssh_host: SshHost) -> None:  # noqa: F811
    out = gitexp(gpu3, "remote", "add", "gpu3", "--host", ssh_host.alias, "--ssh-config", ssh_host.config,
                 "--path", "/elsewhere").stdout
    assert "ssh_config in your git config" in out
    gitexp(gpu3, "remote", "add", "gpu3", "--host", ssh_host.alias, "--ssh-config", ssh_host.config,
           "--path", str(gpu3.parent / "far"), "--python", str(gpu3.parent / "python"))
    assert "ssh_config" not in (gpu3 / ".gitexp.yaml").read_text()
    assert git(gpu3, "config", "exp.remote.gpu3.ssh-config").strip() == ssh_host.config
    proc = gitexp(gpu3, "hosts", "--on", "gpu3")  # the user's own setting needs no trust
    assert proc.stdout.startswith("gpu3")


def test_a_users_own_ssh_config_wins_over_an_untrusted_tracked_one(
        far: Far, ssh_host: SshHost, tmp_path: Path) -> None:  # noqa: F811
    colleague_commits_evil_target(far, ssh_host, tmp_path)
    git(far.repo, "config", "exp.remote.gpu3.ssh-config", ssh_host.config)
    gitexp(far.repo, "remote", "setup", "gpu3")
    assert gitexp(far.repo, "hosts", "--on", "gpu3").returncode == 0
    assert markers(tmp_path) == []


def test_trust_with_nothing_to_trust_and_revoke(repo: Path) -> None:
    assert "nothing to trust" in gitexp(repo, "remote", "trust").stdout
    assert "no version of .gitexp.yaml is trusted" in gitexp(repo, "remote", "trust", "--revoke").stdout


# -- 10: every spelling of the target's URL is checked ---------------------------------------------
SPELLINGS = ["{host}:{path}", "{host}:{path}/", "{host}:{path}/.git", "{host}:{parent}//far",
             "{user}@{host}:{path}", "ssh://{host}{path}", "ssh://{user}@{host}:{port}{path}/",
             "git+ssh://{host}{path}/.git"]


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_every_spelling_of_the_targets_url_is_checked(gpu3: Path, ssh_host: SshHost, tmp_path: Path,  # noqa: F811
                                                     spelling: str) -> None:
    far_path = tmp_path / "far"
    url = spelling.format(host=ssh_host.alias, path=far_path, parent=tmp_path, user=ssh_host.user,
                          port=ssh_host.port)
    record(gpu3, "huge", "900TB")
    proc = push(gpu3, url, "refs/exps/huge:refs/exps/huge")
    assert proc.returncode != 0, (url, proc.stderr)
    assert "refusing the push to run target gpu3" in proc.stderr and "900.0TB needed" in proc.stderr
    assert "refs/exps/huge" not in all_refs(far_path)


def test_another_repository_on_the_same_host_is_not_checked(gpu3: Path, ssh_host: SshHost,  # noqa: F811
                                                           tmp_path: Path) -> None:
    other = tmp_path / "far-other"
    git(tmp_path, "init", "-q", "--bare", str(other))
    record(gpu3, "huge", "900TB")
    proc = push(gpu3, f"{ssh_host.alias}:{other}", "refs/exps/huge:refs/exps/huge")
    assert proc.returncode == 0, proc.stderr
    assert hook_lines(proc) == []


def test_url_spellings_name_one_repository() -> None:
    from gitexp.giturls import location, parse, same_repository

    target = location("me@gpu3", "/scratch/r1")
    for url in ["gpu3:/scratch/r1", "gpu3:/scratch/r1/", "gpu3:/scratch/r1/.git", "gpu3:/scratch//r1",
                "root@gpu3:/scratch/r1", "ssh://gpu3/scratch/r1", "ssh://root@GPU3:22/scratch/r1.git",
                "ssh+git://gpu3/scratch/./r1", "[gpu3:22]:/scratch/r1", "root@[gpu3]:/scratch/r1"]:
        assert same_repository(url, target), url
    for url in ["gpu3:/scratch/r2", "gpu4:/scratch/r1", "/scratch/r1", "file:///scratch/r1",
                "https://gpu3/scratch/r1", "./gpu3:/scratch/r1"]:
        assert not same_repository(url, target), url
    home = location("gpu3", "~/exps/p")
    assert all(same_repository(u, home) for u in ["gpu3:exps/p", "gpu3:~/exps/p/", "ssh://gpu3/~/exps/p"])
    assert not same_repository("ssh://gpu3:2222/scratch/r1", location("gpu3", "/scratch/r1", 22))
    assert parse("ssh://[::1]:22/r") == ("::1", "22", "/r")


# -- 11: a requires.disk that cannot be read refuses the push --------------------------------------------
def forge_disk(repo: Path, sha: str, disk_yaml: str) -> str:
    """A copy of experiment ``sha`` whose stored config says ``requires: {disk: <disk_yaml>}``,
    made with plain git as anyone could."""
    config = git(repo, "show", f"{sha}:.gitexp/experiment.yaml")
    lines = [line for line in config.splitlines() if not line.startswith(("requires", "  disk"))]
    text = "\n".join(lines) + f"\nrequires:\n  disk: {disk_yaml}\n"
    blob = git(repo, "hash-object", "-w", "--stdin", input=text).strip()
    env_index = repo / ".git" / "forge-index"
    env = {**os.environ, "GIT_INDEX_FILE": str(env_index)}
    subprocess.run(["git", "read-tree", sha], cwd=repo, env=env, check=True)
    subprocess.run(["git", "update-index", "--add", "--cacheinfo", f"100644,{blob},.gitexp/experiment.yaml"],
                   cwd=repo, env=env, check=True)
    tree = subprocess.run(["git", "write-tree"], cwd=repo, env=env, check=True, capture_output=True,
                          text=True).stdout.strip()
    env_index.unlink()
    return git(repo, "commit-tree", tree, "-p", f"{sha}^", "-m", "forged").strip()


BAD_DISKS = [("1e999TB", "'1e999TB'"), ("-5GB", "'-5GB'"), ("NaN", "NaN"), ("inf GB", "'inf GB'"),
             ("0x10GB", "'0x10GB'"), ("'1GB; touch x'", "'1GB; touch x'"),
             ("100000000000000000000000PB", "'100000000000000000000000PB'"),
             ("100000000000000000000000TB", "'100000000000000000000000TB'"),
             ("1e999", "inf"), ("-5", "-5"), (".nan", "nan"), ("[1, 2]", "[1, 2]")]


@pytest.mark.parametrize("written,shown", BAD_DISKS)
def test_an_unreadable_requires_disk_refuses_the_push_naming_experiment_and_value(
        gpu3: Path, tmp_path: Path, written: str, shown: str) -> None:
    forged = forge_disk(gpu3, record(gpu3, "bad", "1MB"), written)
    proc = push(gpu3, "gpu3", f"{forged}:refs/exps/bad")
    assert proc.returncode != 0, proc.stderr
    [line] = hook_lines(proc)
    assert "refusing the push to run target gpu3: experiment bad (" in line
    assert f"requires.disk {shown}" in line or f"requires.disk '{shown}'" in line, line
    assert "git push --no-verify" in line
    assert "refs/exps/bad" not in all_refs(tmp_path / "far")
    assert not (gpu3 / "x").exists()


# -- 12: one bad target refuses only pushes to itself -------------------------------------------------------
def test_a_bad_target_refuses_only_pushes_to_it_and_says_whose_refusal_it_is(
        gpu3: Path, ssh_host: SshHost, tmp_path: Path) -> None:  # noqa: F811
    broken = tmp_path / "broken"
    git(tmp_path, "init", "-q", "--bare", str(broken))
    with open(gpu3 / ".gitexp.yaml", "a", encoding="utf-8") as handle:
        handle.write(f"  broken:\n    host: {ssh_host.alias}\n    path: {broken}\n    disk_margin: -5GB\n")
    git(gpu3, "remote", "add", "broken", f"{ssh_host.alias}:{broken}")
    hub = tmp_path / "hub.git"
    git(tmp_path, "init", "-q", "--bare", str(hub))
    small = record(gpu3, "small", "1MB")

    proc = push(gpu3, str(hub), "main", "refs/exps/small:refs/exps/small")  # an unrelated remote
    assert proc.returncode == 0 and hook_lines(proc) == [], proc.stderr
    proc = push(gpu3, "gpu3", "refs/exps/small:refs/exps/small")  # the good target
    assert proc.returncode == 0 and hook_lines(proc) == [], proc.stderr
    for url in ("broken", f"ssh://{ssh_host.alias}{broken}/"):
        proc = push(gpu3, url, "main")
        assert proc.returncode != 0
        [line] = hook_lines(proc)
        assert "refusing the push to run target broken" in line and "disk_margin" in line
        assert "-5GB" in line and "git push --no-verify" in line
    assert push(gpu3, "--no-verify", "broken", "main").returncode == 0
    assert small in all_refs(hub)


def test_an_unreadable_targets_file_warns_and_never_blocks_a_push(gpu3: Path, tmp_path: Path) -> None:
    (gpu3 / ".gitexp.yaml").write_text("targets: [unclosed\n")
    hub = tmp_path / "hub.git"
    git(tmp_path, "init", "-q", "--bare", str(hub))
    proc = push(gpu3, str(hub), "main")
    assert proc.returncode == 0, proc.stderr
    [line] = hook_lines(proc)
    assert ".gitexp.yaml" in line and "not checked" in line
