"""Every bad input: one clear line, exit code 2, and nothing written."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import all_refs, git, gitexp, make_repo

CASES = {
    "missing config": (None, ["run", "nope.yaml"], "config file not found: nope.yaml"),
    "malformed yaml": ("command: [unclosed\nparams: {a: 1\n", ["run", "c.yaml"], "c.yaml:"),
    "unknown key": ("comand: echo hi\n", ["run", "c.yaml"], "c.yaml:1: unknown key 'comand' (did you mean 'command'?)"),
    "unknown nested key": ("command: echo\nmetrics:\n  x: {gaol: minimize}\n", ["run", "c.yaml"],
                           "c.yaml:3: unknown key 'metrics.x.gaol' (did you mean 'goal'?)"),
    "wrong type": ("command: echo {a}\nparams: [1, 2]\n", ["run", "c.yaml"], "c.yaml:2: 'params' must be a mapping"),
    "bad size": ("command: echo\nrequires:\n  disk: lots\n", ["run", "c.yaml"], "c.yaml:3: requires.disk: 'lots' is not a size"),
    "bad goal": ("command: echo\nmetrics:\n  x: {goal: lowest}\n", ["run", "c.yaml"], "use minimize or maximize"),
    "placeholder without param": ("command: echo {lr}\n", ["run", "c.yaml"],
                                  "c.yaml:1: placeholder {lr} in 'command' has no param"),
    "unknown -p": ("command: echo {lr}\nparams: {lr: 0.1}\n", ["run", "c.yaml", "-p", "lx=1"],
                   "-p lx: no param 'lx' in c.yaml (did you mean 'lr'?)"),
    "-p wrong type": ("command: echo {lr}\nparams: {lr: 0.1}\n", ["run", "c.yaml", "-p", "lr=fast"],
                      "-p lr: 'fast' is not a number"),
    "-p without =": ("command: echo {lr}\nparams: {lr: 0.1}\n", ["run", "c.yaml", "-p", "lr"], "expected NAME=VALUE"),
    "missing command": ("params: {a: 1}\n", ["run", "c.yaml"], "missing 'command'"),
    "missing files entry": ("command: echo\nfiles: [data/nothere]\n", ["run", "c.yaml"], "does not exist: data/nothere"),
    "unknown id": (None, ["show", "deadbeef"], "no experiment 'deadbeef'"),
    "unknown id for metrics": (None, ["metrics", "nosuch"], "no experiment 'nosuch'"),
    "bad filter": (None, ["log", "--filter", "lr<<"], "--filter 'lr<<'"),
    "--name with ..": (None, ["run", "config.yaml", "--name", "x..y"], "--name 'x..y' is not usable"),
    "--name ending in .": (None, ["run", "config.yaml", "--name", "foo."], "--name 'foo.' is not usable"),
    "--name with a space": (None, ["run", "config.yaml", "--name", "a b"], "--name 'a b' is not usable"),
    "config name ending in .": ("name: foo.\ncommand: echo\n", ["run", "c.yaml"], "c.yaml:1: name 'foo.' is not usable"),
    "date param": ("command: echo {d}\nparams: {d: 2020-01-01}\n", ["run", "c.yaml"],
                   "c.yaml:2: param 'd' must be a number, string or true/false"),
    "metric file not a string": ("command: echo\nmetrics:\n  x: {file: 123}\n", ["run", "c.yaml"],
                                 "file of metric 'x' must be a string"),
    "format spec for a string": ("command: echo {lr:.3f}\nparams: {lr: fast}\n", ["run", "c.yaml"],
                                 "cannot fill the placeholders"),
    "bad remote setting": (None, ["remote", "add", "r", "--runner", "slurm", "--cpus", "0"],
                           "cpus must be a whole number of at least 1"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_exits_2_with_one_line_and_writes_nothing(case: str, repo: Path) -> None:
    text, args, expected = CASES[case]
    if text is not None:
        (repo / "c.yaml").write_text(text)
    before = all_refs(repo)
    objects_before = git(repo, "count-objects")
    proc = gitexp(repo, *args, check=False)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert expected in lines[0]
    assert all_refs(repo) == before
    assert git(repo, "count-objects") == objects_before  # no objects left behind either


def test_malformed_remotes_file(repo: Path) -> None:
    (repo / ".gitexp.yaml").write_text("remotes:\n  r: {runner: slurm, cpus: [1]}\n")
    proc = gitexp(repo, "run", "config.yaml", "--on", "r", check=False)
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1
    assert "remote r: cpus must be a single value" in proc.stderr


def test_numbers_and_times_as_people_write_them(repo: Path) -> None:
    (repo / "n.yaml").write_text("command: echo lr={lr}\nparams: {lr: 1e-3}\nrequires: {time: 12:00:00}\n")
    proc = gitexp(repo, "run", "n.yaml", "-p", "lr=1e-4")
    assert "lr=0.0001" in proc.stdout
    stored = json.loads(gitexp(repo, "show", "n", "--format", "json").stdout)["config"]
    assert stored["params"] == {"lr": 0.0001} and stored["requires"] == {"time": "43200s"}


def test_run_outside_a_git_repository(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("command: echo hi\n")
    proc = gitexp(tmp_path, "run", "c.yaml", check=False)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: not a git repository") and len(proc.stderr.splitlines()) == 1


def test_run_in_a_repository_without_commits(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    (tmp_path / "c.yaml").write_text("command: echo hi\n")
    proc = gitexp(tmp_path, "run", "c.yaml", check=False)
    assert proc.returncode == 2
    assert "has no commits yet" in proc.stderr and len(proc.stderr.splitlines()) == 1
    assert git(tmp_path, "for-each-ref") == ""


def test_unknown_metric_in_log_suggests(repo: Path) -> None:
    gitexp(repo, "run", "config.yaml", "-p", "steps=1")
    proc = gitexp(repo, "log", "--metric", "val_er", check=False)
    assert proc.returncode == 2 and "did you mean 'val_err'?" in proc.stderr


def test_ambiguous_or_short_id(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r")
    proc = gitexp(repo, "show", "ab", check=False)
    assert proc.returncode == 2 and "at least 4 characters" in proc.stderr
