"""The far side is a claim too (issue 16, items 7-9), against the REAL test sshd.

* A reply lost after the far side recorded the experiments (its connection dropped) is settled
  by the next ``pull``, ``queue --on`` or ``run --on``: recorded here once, never run twice.
* A far ``--python`` whose answer is not gitexp's (the wrong shape, 50 MB, 100,000 nested
  lists, an experiment that was never sent) or that never answers is refused within the
  target's ``ssh_timeout``, with nothing recorded here and the inbox ref gone there.
* ``remote add`` refuses control characters in every value; a failed ``remote setup`` leaves
  nothing there; ``fsck`` removes inbox refs nobody took.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import List

import pytest

from conftest import ROOT, all_refs, git, gitexp, log_json, make_repo
from sshd import SshHost, ssh_host  # noqa: F401  (pytest fixture)
from test_ssh_remote import far_finished, far_log, far_python, laptop  # noqa: F401  (pytest fixtures)

# A far "python" that answers _agent requests as told by MODE, and is the real one otherwise.
EMIT = textwrap.dedent('''
    import json, os, subprocess, sys, time
    mode, marker, op = sys.argv[1], sys.argv[2], sys.argv[3]
    real = [sys.executable, "-m", "gitexp", "_agent", op]
    if op != "submit" and mode != "sleep":
        os.execv(sys.executable, real)
    request = sys.stdin.buffer.read()
    if mode == "shape":
        print(json.dumps({"x": 1}))
    elif mode == "deep":
        print("[" * 100000)
    elif mode == "huge":
        sys.stdout.write('{"exps": "' + "x" * (50 << 20) + '"}\\n')
    elif mode == "unsent":
        print(json.dumps({"exps": [{"sha": "f" * 40, "name": "x", "status": "pending"}]}))
    elif mode == "sleep":
        time.sleep(20)
    elif mode == "lost":  # record there for real, then the connection drops before the reply
        proc = subprocess.run(real, input=request, capture_output=True)
        if not os.path.exists(marker):
            open(marker, "w").close()
            os.kill(os.getppid(), 9)  # the sshd process of this connection: the link is gone
            time.sleep(5)
        sys.stdout.buffer.write(proc.stdout)
        sys.stderr.buffer.write(proc.stderr)
        sys.exit(proc.returncode)
''')


def fake_python(folder: Path, mode: str) -> str:
    (folder / "emit.py").write_text(EMIT)
    script = folder / f"python-{mode}"
    script.write_text(f"#!/bin/sh\nexport PYTHONPATH={ROOT}\n"
                      f"if [ \"$1\" = -m ] && [ \"$2\" = gitexp ] && [ \"$3\" = _agent ]; then\n"
                      f"  exec {sys.executable} {folder / 'emit.py'} {mode} {folder / 'dropped-once'} \"$4\"\nfi\n"
                      f"exec {sys.executable} \"$@\"\n")
    script.chmod(0o755)
    return str(script)


def far_repo(path: Path) -> Path:
    path.mkdir()
    git(path, "init", "-q")
    return path


def target(repo: Path, host: SshHost, name: str, far: Path, python: str, *extra: str) -> None:
    gitexp(repo, "remote", "add", name, "--host", host.alias, "--ssh-config", host.config, "--path", str(far),
           "--python", python, *extra)


def refs_under(repo: Path, prefix: str) -> List[str]:
    return git(repo, "for-each-ref", "--format=%(refname)", prefix).split()


# -- 8: replies that are not gitexp's ----------------------------------------------------------------------------
@pytest.mark.parametrize("mode, said", [
    ("shape", "no 'exps' in it"),
    ("deep", "nested more than 32 levels"),
    ("huge", "more than 32 MiB"),
    ("unsent", "which was not sent"),
])
def test_a_reply_that_is_not_gitexps_is_refused_and_nothing_is_recorded(
        mode: str, said: str, laptop: Path, ssh_host: SshHost, tmp_path: Path) -> None:  # noqa: F811
    far = far_repo(tmp_path / "far")
    target(laptop, ssh_host, "t", far, fake_python(tmp_path, mode))
    here_before, far_before = all_refs(laptop), all_refs(far)
    proc = gitexp(laptop, "run", "config.yaml", "--on", "t", check=False)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: run target t:") and said in lines[0], proc.stderr
    assert "did not answer submit as gitexp does" in lines[0] and "Traceback" not in proc.stderr
    assert all_refs(laptop) == here_before  # no pending experiment, no outbox record
    assert all_refs(far) == far_before  # the inbox ref was taken back


def test_a_far_side_that_never_answers_is_given_up_after_ssh_timeout(
        laptop: Path, ssh_host: SshHost, tmp_path: Path) -> None:  # noqa: F811
    far = far_repo(tmp_path / "far")
    target(laptop, ssh_host, "t", far, fake_python(tmp_path, "sleep"), "--ssh-timeout", "3s")
    started = time.time()
    proc = gitexp(laptop, "queue", "--on", "t", check=False)
    assert proc.returncode == 1 and "did not answer queue within 3.0s" in proc.stderr, proc.stderr
    assert time.time() - started < 12
    started = time.time()
    proc = gitexp(laptop, "run", "config.yaml", "--on", "t", check=False)
    assert time.time() - started < 15
    assert proc.returncode == 1, proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert "did not answer submit within 3.0s" in line and "may have been recorded" in line
    assert "git exp pull t" in line and not log_json(laptop)
    [outbox] = refs_under(laptop, "refs/exps-outbox/")
    [inbox] = refs_under(far, "refs/exps-inbox/")  # never taken by a gitexp there
    assert outbox.rsplit("/", 1)[1] == inbox.rsplit("/", 1)[1]
    # The next pull settles it: the inbox was never taken, so nothing ran; said once.
    proc = gitexp(laptop, "pull", "t", check=False)
    assert "never reached gitexp there and did not run: toy" in proc.stderr, proc.stderr
    assert not refs_under(laptop, "refs/exps-outbox/") and not refs_under(far, "refs/exps-inbox/")
    assert not log_json(laptop)
    assert "did not run" not in gitexp(laptop, "pull", "t", check=False).stderr


def test_the_timeout_setting_is_checked_like_every_other(laptop: Path, ssh_host: SshHost, tmp_path: Path,  # noqa: F811
                                                          far_python: str) -> None:  # noqa: F811
    proc = gitexp(laptop, "remote", "add", "t", "--host", ssh_host.alias, "--path", str(tmp_path),
                  "--ssh-timeout", "soon", check=False)
    assert proc.returncode == 2 and "ssh_timeout" in proc.stderr and not (laptop / ".gitexp.yaml").exists()


# -- 7: the reply is lost after the far side recorded them -----------------------------------------------------------
@pytest.mark.parametrize("settle", ["pull", "queue --on", "run --on"])
def test_a_lost_reply_is_settled_once_by_the_next_command(settle: str, laptop: Path, ssh_host: SshHost,  # noqa: F811
                                                          tmp_path: Path) -> None:
    far = far_repo(tmp_path / "far")
    target(laptop, ssh_host, "t", far, fake_python(tmp_path, "lost"))
    proc = gitexp(laptop, "run", "config.yaml", "--on", "t", "--sweep", "lr=0.1,0.2", check=False)
    assert proc.returncode == 1, proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert "the connection to gitexp-test broke" in line and "may have been recorded and started there" in line
    assert "do not run them again" in line and not log_json(laptop)
    rows = far_finished(far, 2)  # they did run there, each once
    shas = {r["id"] for r in rows}
    if settle == "pull":
        proc = gitexp(laptop, "pull", "t")
    elif settle == "queue --on":
        proc = gitexp(laptop, "queue", "--on", "t")
    else:
        (laptop / "other.yaml").write_text("name: other\ncommand: echo other\n")
        proc = gitexp(laptop, "run", "other.yaml", "--on", "t")
    assert "2 experiment(s) sent" in proc.stderr and "recorded here now" in proc.stderr, proc.stderr
    mine = {r["id"]: r for r in log_json(laptop)}
    assert shas <= set(mine)
    for sha in shas:
        summary = json.loads(git(laptop, "notes", "--ref=exps", "show", sha))
        assert (summary["target"], summary["runner"]) == ("t", "local")
    assert not refs_under(laptop, "refs/exps-outbox/")
    # Never twice: later commands find nothing to settle, and nothing ran again there.
    again = gitexp(laptop, "pull", "t")
    assert "recorded here now" not in again.stderr
    assert len([r for r in log_json(laptop) if r["id"] in shas]) == 2
    assert {r["status"] for r in log_json(laptop) if r["id"] in shas} == {"finished"}
    assert len([r for r in far_log(far) if r["id"] in shas]) == 2


# -- 9: values with control characters, and remote setup ---------------------------------------------------------------
@pytest.mark.parametrize("option, value", [
    ("--path", "/srv/exps\nproj"),
    ("--path", "/srv/exps\tproj"),
    ("--host", "gpu3\x7f"),
    ("--host", "gpu3\x1b[31m"),
    ("--python", "/usr/bin/python3\n"),
    ("--setup", "source venv/bin/activate\nrm -rf ~"),
    ("--ssh-config", "conf\x85"),
])
@pytest.mark.parametrize("user", [False, True])
def test_remote_add_refuses_control_characters_and_writes_nothing(option: str, value: str, user: bool,
                                                                  repo: Path) -> None:
    args = ["--host", "gpu3", "--path", "/srv/p", "--runner", "slurm"]
    if option in args:
        args[args.index(option) + 1] = value
    else:
        args += [option, value]
    before = git(repo, "config", "--local", "--list")
    proc = gitexp(repo, "remote", "add", "t", *args, *(["--user"] if user else []), check=False)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "holds a control character" in lines[0], proc.stderr
    assert option.lstrip("-").replace("-", "_") in lines[0]
    assert "\n" not in lines[0] and "\x1b" not in proc.stderr and "\x7f" not in proc.stderr
    assert not (repo / ".gitexp.yaml").exists()
    assert git(repo, "config", "--local", "--list") == before


def test_a_failed_setup_leaves_nothing_there(laptop: Path, ssh_host: SshHost, tmp_path: Path) -> None:  # noqa: F811
    target(laptop, ssh_host, "t", tmp_path / "new" / "deeper", "/usr/bin/python3")
    proc = gitexp(laptop, "remote", "setup", "t", check=False)
    assert proc.returncode == 2 and "gitexp is not installed for /usr/bin/python3" in proc.stderr
    assert not (tmp_path / "new").exists()
    plain = tmp_path / "plain"
    plain.mkdir()
    target(laptop, ssh_host, "u", plain, "/usr/bin/python3")
    assert gitexp(laptop, "remote", "setup", "u", check=False).returncode == 2
    assert list(plain.iterdir()) == []


def test_fsck_removes_inbox_refs_nobody_took(repo: Path) -> None:
    head = git(repo, "rev-parse", "HEAD").strip()
    tree = git(repo, "hash-object", "-t", "tree", "-w", "--stdin", input="").strip()
    env = {**os.environ, "GIT_COMMITTER_DATE": "2020-01-01T00:00:00Z"}
    old = subprocess.run(["git", "commit-tree", tree, "-p", head, "-m", "inbox"], cwd=repo, env=env,
                         capture_output=True, text=True, check=True).stdout.strip()
    fresh = git(repo, "commit-tree", tree, "-p", head, "-m", "inbox").strip()
    git(repo, "update-ref", "refs/exps-inbox/old", old)
    git(repo, "update-ref", "refs/exps-inbox/fresh", fresh)  # an agent may be taking it right now
    proc = gitexp(repo, "fsck", check=False)
    assert proc.returncode == 1 and "refs/exps-inbox/old" in proc.stdout and "fresh" not in proc.stdout
    proc = gitexp(repo, "fsck", "--repair")
    assert "deleted refs/exps-inbox/old" in proc.stdout
    assert refs_under(repo, "refs/exps-inbox/") == ["refs/exps-inbox/fresh"]
    assert gitexp(repo, "fsck").stdout.strip() == "gitexp: refs and notes are whole"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo")


# -- the reply checks alone (no sshd needed) ----------------------------------------------------------------------------
SHA = "a" * 40


@pytest.mark.parametrize("op, stdout, said", [
    ("submit", b'{"x": 1}', "no 'exps'"),
    ("submit", b"[" * 100_000, "nested"),
    ("queue", b'{"states": ' + b'{"a": ' * 40 + b"1" + b"}" * 41, "nested more than 32"),
    ("submit", b'{"exps": "all"}', "'exps' is a str"),
    ("probe", b'{"version": "1", "protocol": true}', "'protocol' is a bool"),
    ("probe", b"banner\nnot json", "not JSON"),
    ("cancel", b"", "no answer"),
    ("submit", b'[{"exps": []}]', "not an object"),
])
def test_parse_reply_refuses_what_is_not_gitexps(op: str, stdout: bytes, said: str) -> None:
    from gitexp.runners.reply import parse_reply

    answer, problem = parse_reply(op, stdout)
    assert answer == {} and problem and said in problem


@pytest.mark.parametrize("exps, said", [
    ([], "accounts for 0 of the 1"),
    ([{"sha": SHA, "name": "a", "status": "pending"}] * 2, "already listed"),
    ([{"sha": "b" * 40, "name": "a", "status": "pending"}], "not sent"),
    ([{"sha": SHA, "name": "a", "status": "pwned"}], "status 'pwned'"),
    ([{"sha": SHA, "name": "a\x1b]0;x\x07", "status": "queued"}], "name"),
    ([{"sha": SHA, "name": "a", "status": "queued", "handle": "job 1"}], "'handle' is a str"),
])
def test_a_submit_reply_must_account_for_each_experiment_sent_once(exps: list, said: str) -> None:
    from gitexp.runners.reply import submitted_problem

    problem = submitted_problem({"exps": exps}, {SHA})
    assert problem and said in problem
    assert submitted_problem({"exps": [{"sha": SHA, "name": "a", "status": "queued", "reason": None}]}, {SHA}) is None
