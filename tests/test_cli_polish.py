"""A new user's first hour (issue #8): pipes, help, the man page, dry runs, exit codes, the demo."""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import signal
from pathlib import Path
from typing import List

import pytest

from conftest import ROOT, git, gitexp, log_json, wait_for

gitexp_cli = gitexp  # for tests that import the gitexp package itself

TRIES = 20


def piped_into_head(repo: Path, *args: str) -> subprocess.CompletedProcess:
    """``git exp ARGS | head -n 1`` under ``pipefail``: the exit status is gitexp's unless it is 0."""
    command = " ".join(shlex.quote(a) for a in (sys.executable, "-m", "gitexp", *args))
    return subprocess.run(["bash", "-o", "pipefail", "-c", f"{command} | head -n 1 >/dev/null"],
                          cwd=repo, capture_output=True, text=True, timeout=120)


def assert_quiet_under_head(repo: Path, *args: str, tries: int = TRIES, note: str = "") -> None:
    """Exit 0 every time, nothing on stderr (but ``note``, a line the command prints after its
    output, which it cannot print once the pipe is gone): never an error or a traceback."""
    for attempt in range(tries):
        proc = piped_into_head(repo, *args)
        assert proc.returncode == 0 and proc.stderr in ("", note), (attempt, args[:3], proc.returncode, proc.stderr)


# -- item 1: a closed pipe ends any command quietly ----------------------------------------------
def test_metrics_into_head_ends_quietly(repo: Path) -> None:
    (repo / "long.py").write_text("import gitexp\nfor i in range(20000):\n    gitexp.log(step=i, val_err=1.0 / (i + 1))\n")
    (repo / "long.yaml").write_text("name: long\ncommand: python long.py\nmetrics:\n  val_err: {goal: minimize}\n")
    gitexp(repo, "run", "long.yaml")
    # the default is the summary curve (said on stderr); --full is every point, far more than a pipe holds
    assert "--full gives every point" in gitexp(repo, "metrics", "long").stderr
    assert len(gitexp(repo, "metrics", "long", "--full").stdout) > 200_000
    assert_quiet_under_head(repo, "metrics", "long", "--full")
    assert_quiet_under_head(repo, "metrics", "long", "--full", "--format", "jsonl")


def test_log_and_dry_run_into_head_end_quietly(repo: Path) -> None:
    values = ",".join(str(i) for i in range(1, 2001))
    gitexp(repo, "run", "config.yaml", "--queue", "--sweep", f"steps={values}")
    assert len(gitexp(repo, "log").stdout) > 100_000
    assert_quiet_under_head(repo, "log")
    values = ",".join(str(i) for i in range(100_000, 106_000))
    sweep = ("run", "config.yaml", "--dry-run", "--sweep", f"steps={values}")
    assert len(gitexp(repo, *sweep).stdout) > 200_000
    assert_quiet_under_head(repo, *sweep, tries=5, note="6000 experiment(s); nothing recorded (--dry-run)\n")


def test_usage_errors_point_at_help_that_works(repo: Path) -> None:
    """git turns `git exp --help` into `git help exp` (the man page); `-h` always reaches gitexp."""
    for args, path in ((["bogus"], "git exp"), (["run"], "git exp run"), (["log", "--bad"], "git exp log")):
        proc = gitexp(repo, *args, check=False)
        assert proc.returncode == 2
        assert f"Try '{path} -h' for help." in proc.stderr and "--help" not in proc.stderr, proc.stderr
        assert proc.stderr.strip().splitlines()[-1].startswith("error: ")
    proc = gitexp(repo, "-h")
    assert proc.returncode == 0 and proc.stdout.startswith("Usage: git exp")


# -- item 3: `git exp --help` (git help exp, man git-exp) finds a manual page ---------------------
MAN_PAGE = ROOT / "man" / "git-exp.1"


def man_or_skip() -> str:
    found = shutil.which("man")
    if found is None and os.environ.get("CI") != "true":
        pytest.skip("`man` is not installed here (man-db); the page itself is tested above")
    assert found, "CI=true but `man` is missing (scripts/test.sh installs man-db as root)"
    return found


def test_committed_man_page_is_what_the_generator_makes() -> None:
    from gitexp.manpage import render

    assert render() == MAN_PAGE.read_text(encoding="utf-8"), \
        "man/git-exp.1 is out of date: run python -m gitexp.manpage -o man/git-exp.1"


def test_man_page_has_every_command_and_option() -> None:
    from gitexp.cli import cli
    from gitexp.manpage import roff

    text = MAN_PAGE.read_text(encoding="utf-8")
    assert text.startswith(".TH GIT\\-EXP 1 ") and "\n.SH NAME\ngit\\-exp \\- " in text and "\n.SH SYNOPSIS\n" in text
    ctx = cli.context_class(cli, info_name="git exp")
    for name in cli.list_commands(ctx):
        command = cli.get_command(ctx, name)
        assert f'.SS "git exp {name} ' in text, name
        assert roff(command.help.strip().split("\n")[0]) in text, name
        for param in command.params:
            if param.param_type_name == "option":
                assert roff(", ".join(param.opts)) in text, (name, param.opts)
    assert '.SS "git exp remote add [OPTIONS] NAME"' in text and '.SS "git exp queue retry ' in text
    assert "_exec" not in text  # hidden


def test_setup_installs_the_page_and_reads_the_one_version(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import runpy

    import setuptools

    import gitexp

    seen: dict = {}
    monkeypatch.setattr(setuptools, "setup", lambda **kwargs: seen.update(kwargs))
    monkeypatch.chdir("/")  # setup.py finds its files from its own location
    runpy.run_path(str(ROOT / "setup.py"))
    assert seen["data_files"] == [("share/man/man1", ["man/git-exp.1"]),
                                  ("share/bash-completion/completions", ["gitexp/completion/git-exp.bash"])]
    assert all((ROOT / path).is_file() for _where, paths in seen["data_files"] for path in paths)
    # item 8: the version is defined once, in gitexp/__init__.py
    assert seen["version"] == gitexp.__version__
    assert not re.search(r"""version\s*=\s*["']\d""", (ROOT / "setup.py").read_text(encoding="utf-8"))
    assert gitexp_cli(tmp_path, "--version").stdout == f"gitexp {gitexp.__version__}\n"  # not stale metadata


def test_installed_page_is_found_by_man_beside_the_prefix_on_path(tmp_path: Path, repo: Path) -> None:
    """What bootstrap.sh does for .venv (an editable install skips data_files): man looks in
    <prefix>/share/man for a <prefix>/bin on the PATH, with MANPATH unset."""
    prefix = tmp_path / "venv"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "bin" / "git-exp").write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m gitexp "$@"\n')
    (prefix / "bin" / "git-exp").chmod(0o755)
    subprocess.run([sys.executable, "-m", "gitexp.manpage", "--install", str(prefix)], check=True,
                   capture_output=True)
    page = prefix / "share" / "man" / "man1" / "git-exp.1"
    assert page.read_text(encoding="utf-8") == MAN_PAGE.read_text(encoding="utf-8")
    man = man_or_skip()
    env = {k: v for k, v in os.environ.items() if k not in ("MANPATH", "MANPAGER", "PAGER", "GIT_PAGER")}
    env.update(PATH=f"{prefix / 'bin'}:{os.environ['PATH']}", MANPAGER="cat", PAGER="cat", MANWIDTH="80")
    found = subprocess.run([man, "-w", "git-exp"], env=env, capture_output=True, text=True)
    assert found.returncode == 0 and found.stdout.strip() == str(page), found.stdout + found.stderr
    if shutil.which("nroff"):
        shown = subprocess.run(["git", "exp", "--help"], cwd=repo, env=env, capture_output=True, text=True)
        words = " ".join(shown.stdout.split())  # man justifies lines with extra spaces
        assert shown.returncode == 0 and "git-exp - run and track experiments" in words, shown.stderr
        assert "No manual entry" not in shown.stderr


def test_bootstrapped_venv_has_the_man_page() -> None:
    venv = ROOT / ".venv"
    if not (venv / "bin" / "git-exp").exists():
        pytest.skip("no .venv here (scripts/bootstrap.sh makes it)")
    page = venv / "share" / "man" / "man1" / "git-exp.1"
    assert page.is_file(), "scripts/bootstrap.sh did not install the man page"
    if shutil.which("man"):
        env = {k: v for k, v in os.environ.items() if k != "MANPATH"}
        env["PATH"] = f"{venv / 'bin'}:{os.environ['PATH']}"
        assert subprocess.run(["man", "-w", "git-exp"], env=env, capture_output=True, text=True).stdout.strip() \
            == str(page)


# -- item 5: --dry-run shows what the real run does; Ctrl-C exits 130; show says things once ------
def dry_run_names(repo: Path, *args: str) -> List[str]:
    out = gitexp(repo, "run", *args, "--dry-run").stdout.splitlines()
    assert out[0].split()[:3] == ["name", "params", "group"]
    return [line.split()[0] for line in out[2:]]


def test_dry_run_shows_the_names_the_real_run_gets(repo: Path) -> None:
    gitexp(repo, "run", "config.yaml", "-p", "steps=1")
    assert dry_run_names(repo, "config.yaml", "-p", "steps=1") == ["toy-2"]
    gitexp(repo, "run", "config.yaml", "-p", "steps=1")
    assert sorted(r["name"] for r in log_json(repo)) == ["toy", "toy-2"]
    sweep = ("config.yaml", "--sweep", "steps=1,2", "--name", "s")
    gitexp(repo, "run", *sweep)
    planned = dry_run_names(repo, *sweep)
    assert planned == ["s-steps=1-2", "s-steps=2-2"]
    gitexp(repo, "run", *sweep)
    assert set(planned) <= {r["name"] for r in log_json(repo)}


def test_dry_run_skips_what_skip_done_skips(repo: Path) -> None:
    gitexp(repo, "run", "config.yaml", "--sweep", "steps=1,2", "--name", "s")
    sweep = ("config.yaml", "--sweep", "steps=1,2,3", "--name", "s", "--skip-done")
    planned = gitexp(repo, "run", *sweep, "--dry-run")
    assert [line.split()[0] for line in planned.stdout.splitlines()[2:]] == ["s-steps=3"]
    assert "skipping 2 point(s) already finished" in planned.stderr
    before = {r["name"] for r in log_json(repo)}
    gitexp(repo, "run", *sweep)
    assert {r["name"] for r in log_json(repo)} - before == {"s-steps=3"}
    everything = gitexp(repo, "run", *sweep, "--dry-run")
    assert everything.stdout == "" and "every point already finished; nothing to do" in everything.stderr


def test_ctrl_c_exits_130_even_when_the_program_exits_1_on_it(repo: Path, tmp_path: Path) -> None:
    """A training script that catches KeyboardInterrupt, saves and exits 1: still 130 (docs/runners.md)."""
    ready = tmp_path / "ready"
    (repo / "h.py").write_text(
        "import sys, time\n"
        "try:\n"
        f"    open({str(ready)!r}, 'w').close()\n"
        "    time.sleep(60)\n"
        "except KeyboardInterrupt:\n"
        "    print('saving a checkpoint', flush=True)\n"
        "    sys.exit(1)\n")
    (repo / "h.yaml").write_text("name: h\ncommand: python h.py\n")
    proc = subprocess.Popen([sys.executable, "-m", "gitexp", "run", "h.yaml"], cwd=repo,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(ready.exists, timeout=60)
        wait_for(lambda: log_json(repo)[0]["status"] == "running", timeout=30)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "saving a checkpoint" in out and "Traceback" not in err
    [row] = log_json(repo)
    assert row["status"] == "killed" and row["exit_code"] == 1


def test_show_gives_the_reason_only_when_it_adds_something(repo: Path) -> None:
    def status_line(ident: str) -> str:
        [line] = [line for line in gitexp(repo, "show", ident).stdout.splitlines() if line.startswith("status ")]
        return line

    (repo / "fail.yaml").write_text("name: fail\ncommand: exit 3\n")
    assert gitexp(repo, "run", "fail.yaml", check=False).returncode == 3
    assert status_line("fail") == "status     failed (exit code 3)"  # was: (exit code 3): exit code 3
    (repo / "sig.yaml").write_text("name: sig\ncommand: kill -9 $$\n")
    assert gitexp(repo, "run", "sig.yaml", check=False).returncode == 137
    assert status_line("sig") == "status     failed (killed by signal 9)"
    # a reason that says more than the exit code is shown after it
    sha = log_json(repo, "--filter", "name=fail")[0]["id"]
    note = json.loads(git(repo, "notes", "--ref=exps", "show", sha))
    git(repo, "notes", "--ref=exps", "add", "-f", "-m", json.dumps({**note, "reason": "CUDA out of memory"}), sha)
    assert status_line("fail") == "status     failed (exit code 3): CUDA out of memory"


# -- items 2 and 4: the demo cannot fail by chance, CI runs it, it says how to reach git exp ------
def test_demo_runs_and_says_how_to_put_git_exp_on_the_path(tmp_path: Path) -> None:
    if not (ROOT / ".venv" / "bin" / "python").exists():
        pytest.skip("no .venv (scripts/bootstrap.sh makes it; the demo would install it from PyPI)")
    demo = tmp_path / "demo"
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "demo.sh"), str(demo)], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert ": 8 finished;" in proc.stdout and "step,time," in proc.stdout
    assert f"source {ROOT}/.venv/bin/activate" in proc.stdout  # `git exp` is not on the PATH otherwise
    assert (demo / ".git").is_dir()


def test_ci_runs_the_readme_test_command_which_runs_the_demo() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8").split("\n## ")[0]
    commands = [line.split("#")[0].strip() for line in readme.split("```")[1].strip().splitlines()]
    assert commands == ["./scripts/demo.sh", "./scripts/test.sh"]
    assert "source .venv/bin/activate" in readme and "not a git command" in readme
    assert "exec scripts/test.sh" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    test_sh = (ROOT / "scripts" / "test.sh").read_text(encoding="utf-8")
    assert test_sh.index("scripts/demo.sh \"$scratch/demo\"") < test_sh.index("-m pytest")


# -- item 6: slurm-up.sh uses a Slurm that already answers and touches nothing -------------------
def test_slurm_up_uses_a_working_slurm_as_it_is(tmp_path: Path) -> None:
    """Fake client commands say a Slurm answers; `id -u` says we are not root, so nothing could
    be written or started even by a script that tried (the old one gave up with exit 3)."""
    fake = tmp_path / "bin"
    fake.mkdir()
    scripts = {
        "scontrol": 'case "$1" in ping) echo "Slurmctld(primary) at elsewhere is UP";; *) exit 1;; esac',
        "sinfo": "echo idle",
        "sbatch": "exit 1",
        "id": '[ "$1" = -u ] && { echo 4242; exit 0; }; exec /usr/bin/id "$@"',
    }
    for name, body in scripts.items():
        (fake / name).write_text(f"#!/bin/sh\n{body}\n")
        (fake / name).chmod(0o755)
    conf = Path("/etc/slurm/slurm.conf")
    before = conf.stat().st_mtime if conf.exists() else None
    proc = subprocess.run([str(ROOT / "scripts" / "slurm-up.sh")], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1].startswith("slurm-up: ready")
    assert (conf.stat().st_mtime if conf.exists() else None) == before
