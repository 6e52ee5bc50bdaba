"""The store under attack: identical runs at one instant, gc beside writers, missing objects,
stale locks, a full disk, group-shared repositories, bare repositories and submodules."""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, assert_fsck_clean, git, gitexp, log_json, make_repo, mounted_tmpfs

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
IN_CI = os.environ.get("CI") == "true"


def _exp_refs(repo: Path) -> dict:
    out = git(repo, "for-each-ref", "--format=%(refname) %(objectname)", "refs/exps/")
    return dict(line.split(" ") for line in out.splitlines())


def test_identical_runs_at_the_same_instant_are_separate_commits(repo: Path) -> None:
    """25 runs of one config, one tree, one (frozen) second: 25 commits, notes, run dirs."""
    (repo / "coin.py").write_text(
        "import os, sys\ncode = os.getpid() % 2\nprint('exiting with', code, flush=True)\nsys.exit(code)\n")
    (repo / "coin.yaml").write_text("name: coin\ncommand: python coin.py\n")
    env = dict(os.environ, GIT_COMMITTER_DATE="2026-01-01T00:00:00Z", GIT_AUTHOR_DATE="2026-01-01T00:00:00Z")
    procs = [subprocess.Popen([sys.executable, "-m", "gitexp", "run", "coin.yaml"], cwd=repo, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for _ in range(25)]
    errors = [p.communicate(timeout=300)[1].decode() for p in procs]
    assert not [e for e in errors if "Traceback" in e], errors
    refs = _exp_refs(repo)
    assert len(refs) == 25 and len(set(refs.values())) == 25
    rows = log_json(repo)
    assert len(rows) == 25 and len({r["id"] for r in rows}) == 25
    runs = repo / ".git" / "gitexp" / "runs"
    for row in rows:
        log = (runs / row["id"] / "output.log").read_text()
        assert log.count("exiting with") == 1, log  # its own run directory, nobody else's output
        code = int(log.split("exiting with")[1].split()[0])
        assert row["exit_code"] == code
        assert row["status"] == ("finished" if code == 0 else "failed")
    assert_fsck_clean(repo)


def test_bare_repository_is_refused_with_what_is_wrong(tmp_path: Path) -> None:
    bare = tmp_path / "hub.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    proc = gitexp(bare, "log", check=False)
    assert proc.returncode == 2
    assert "bare repository" in proc.stderr and "working tree" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_group_shared_repository_gets_group_readable_objects(tmp_path: Path) -> None:
    repo = tmp_path / "shared"
    repo.mkdir()
    git(repo, "init", "-q", "--shared=group", "-b", "main")
    make_repo(repo)
    script = f"umask 077 && {sys.executable} -m gitexp run config.yaml"
    subprocess.run(["bash", "-c", script], cwd=repo, check=True, capture_output=True)
    objects = repo / ".git" / "objects"
    written = [p for p in objects.glob("??/*")] + list((objects / "pack").glob("*"))
    assert written
    for path in written:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o040, f"{path} is {oct(mode)}: the group cannot read it"
    for folder in objects.glob("??"):
        mode = folder.stat().st_mode
        assert mode & stat.S_ISGID and stat.S_IMODE(mode) & 0o070 == 0o070, f"{folder} is {oct(mode)}"


def test_missing_objects_give_one_clear_line_and_fsck_repairs(repo: Path) -> None:
    gitexp(repo, "run", "config.yaml", "-p", "steps=1")
    first = log_json(repo)[0]
    gitexp(repo, "run", "config.yaml", "-p", "steps=1")
    refs = _exp_refs(repo)
    tip = git(repo, "rev-parse", "refs/notes/exps").strip()
    second = refs["refs/exps/toy-2"]
    for sha in (tip, second):  # what `git gc --prune=now` beside a writer can leave
        (repo / ".git" / "objects" / sha[:2] / sha[2:]).unlink()
    for args in (["log"], ["show", "toy"], ["run", "config.yaml", "-p", "steps=1"], ["queue"]):
        proc = gitexp(repo, *args, check=False)
        assert proc.returncode == 4, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
        assert "missing" in proc.stderr and "git exp fsck" in proc.stderr
    assert _exp_refs(repo) == refs  # the failed run wrote no ref
    check = gitexp(repo, "fsck", check=False)
    assert check.returncode == 1 and "refs/notes/exps" in check.stdout and "refs/exps/toy-2" in check.stdout
    fixed = gitexp(repo, "fsck", "--repair")
    assert "reset refs/notes/exps" in fixed.stdout and "deleted refs/exps/toy-2" in fixed.stdout
    assert gitexp(repo, "fsck").returncode == 0
    rows = log_json(repo)
    assert [(r["id"], r["status"]) for r in rows] == [(first["id"], "finished")]
    assert_fsck_clean(repo)
    gitexp(repo, "run", "config.yaml", "-p", "steps=1")  # the store works again


def test_lost_summary_is_rebuilt_as_lost_and_retryable(repo: Path) -> None:
    gitexp(repo, "run", "config.yaml", "-p", "steps=1")
    sha = log_json(repo)[0]["id"]
    git(repo, "notes", "--ref=exps", "remove", sha)  # as a write lost to a race leaves it
    git(repo, "notes", "--ref=exps", "add", "-m", "{}", git(repo, "rev-parse", "HEAD").strip())  # a stray note
    check = gitexp(repo, "fsck", check=False)
    assert check.returncode == 1 and "no summary note" in check.stdout and "no experiment ref" in check.stdout
    gitexp(repo, "fsck", "--repair")
    assert gitexp(repo, "fsck").returncode == 0
    rows = {r["id"]: r for r in log_json(repo)}
    assert rows[sha]["status"] == "lost" and "fsck" in rows[sha]["reason"]
    gitexp(repo, "queue", "--retry-lost")
    gitexp(repo, "worker", "--until-empty")
    [row] = log_json(repo)  # one row per experiment: its new attempt
    assert row["status"] == "finished" and row["attempt"] == 2 and row["id"] != sha


def _delete_object(repo: Path, sha: str) -> None:
    (repo / ".git" / "objects" / sha[:2] / sha[2:]).unlink()


def test_experiment_with_lost_files_is_mended_and_keeps_its_results(repo: Path) -> None:
    (repo / "scratch.txt").write_text("an untracked file that will change\n")
    (repo / "keep.txt").write_text("an untracked file that stays as it is\n")
    gitexp(repo, "run", "config.yaml", "-p", "steps=2")
    [before] = log_json(repo)
    sha = before["id"]
    scratch = git(repo, "rev-parse", f"{sha}:scratch.txt").strip()
    keep = git(repo, "rev-parse", f"{sha}:keep.txt").strip()
    (repo / "scratch.txt").write_text("changed since\n")
    for blob in (scratch, keep):  # what a prune racing the snapshot can leave
        _delete_object(repo, blob)
    check = gitexp(repo, "fsck", check=False)
    assert check.returncode == 1 and "refs/exps/toy" in check.stdout and "missing" in check.stdout
    fixed = gitexp(repo, "fsck", "--repair").stdout
    assert "re-recorded as" in fixed and "results kept" in fixed
    assert gitexp(repo, "fsck").returncode == 0
    [after] = log_json(repo)
    assert after["id"] != sha and after["name"] == "toy" and after["status"] == "finished"
    assert after["metrics"] == before["metrics"]
    assert json.loads(git(repo, "notes", "--ref=exps", "show", after["id"]))["recovered_from"] == sha
    assert git(repo, "show", f"{after['id']}:keep.txt") == "an untracked file that stays as it is\n"
    assert git(repo, "cat-file", "-e", f"{after['id']}:scratch.txt", check=False) == ""
    assert len(json.loads(gitexp(repo, "metrics", "toy", "--format", "json").stdout)) == 2
    assert_fsck_clean(repo)


def test_reflog_entry_reaching_a_missing_subtree_is_found_and_dropped(repo: Path) -> None:
    """What a prune racing a notes write left in CI: the tip whole, an older reflog entry's
    commit present but one of its subtrees gone, so git fsck failed and git exp fsck said clean."""
    gitexp(repo, "run", "config.yaml", "-p", "steps=1")
    tip = git(repo, "rev-parse", "refs/notes/exps").strip()
    blob = git(repo, "hash-object", "-w", "--stdin", input="x\n").strip()
    sub = git(repo, "mktree", input=f"100644 blob {blob}\tnote\n").strip()
    top = git(repo, "mktree", input=f"040000 tree {sub}\tab\n").strip()
    side = git(repo, "commit-tree", top, "-p", tip, "-m", "a notes commit with a fan-out folder").strip()
    git(repo, "update-ref", "-m", "side", "refs/notes/exps", side, tip)
    git(repo, "update-ref", "-m", "back", "refs/notes/exps", tip, side)
    _delete_object(repo, sub)
    assert subprocess.run(["git", "fsck", "--no-progress"], cwd=repo, capture_output=True).returncode != 0
    check = gitexp(repo, "fsck", check=False)
    assert check.returncode == 1 and "reflog" in check.stdout and "refs/notes/exps" in check.stdout
    fixed = gitexp(repo, "fsck", "--repair").stdout
    assert "dropped" in fixed and "reflog" in fixed
    assert gitexp(repo, "fsck").returncode == 0
    assert git(repo, "rev-parse", "refs/notes/exps").strip() == tip  # the whole tip is kept
    assert log_json(repo)[0]["status"] == "finished"
    assert_fsck_clean(repo)


def test_gc_prune_now_beside_writers_never_crashes_and_fsck_recovers(repo: Path) -> None:
    (repo / "quick.yaml").write_text("command: echo val_err={i}\nparams: {i: 0}\n"
                                     "metrics:\n  val_err: {regex: 'val_err=([0-9]+)'}\n")
    stop = time.time() + 20
    gc = subprocess.Popen(["bash", "-c", f"while [ $(date +%s) -lt {int(stop)} ]; do "
                                         "git gc --prune=now --quiet 2>/dev/null; done"], cwd=repo)
    outputs = []
    try:
        for i in range(20):
            proc = gitexp(repo, "run", "quick.yaml", "-p", f"i={i}", check=False)
            outputs.append(proc.stderr)
    finally:
        gc.kill()
        gc.wait()
    assert not [o for o in outputs if "Traceback" in o or "KeyError" in o], outputs
    gitexp(repo, "fsck", "--repair", check=False)
    assert gitexp(repo, "fsck").returncode == 0
    proc = gitexp(repo, "log", check=False)
    assert proc.returncode == 0, proc.stderr
    assert_fsck_clean(repo)


def test_stale_object_lock_from_a_dead_writer_is_removed(repo: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from dulwich.objects import Blob

    from gitexp.repo import Repo

    data = b"a note nobody has written yet\n"
    sha = Blob.from_string(data).id.decode()
    folder = repo / ".git" / "objects" / sha[:2]
    folder.mkdir(exist_ok=True)
    lock = folder / (sha[2:] + ".lock")
    lock.write_bytes(b"half an object")
    old = time.time() - 3600
    os.utime(lock, (old, old))
    started = time.monotonic()
    assert Repo.discover(str(repo)).hash_blob(data) == sha
    assert time.monotonic() - started < 5 * 60  # sanity bound only: it used to spin ~13 s then fail
    assert not lock.exists()
    assert git(repo, "cat-file", "-p", sha) == data.decode()


@pytest.fixture
def small_disk(tmp_path: Path):
    yield from mounted_tmpfs(tmp_path / "small", "20m")


def _fill(path: Path) -> Path:
    filler = path / "filler"
    with open(filler, "wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError:
            pass
    return filler


def test_full_disk_gives_one_line_keeps_results_and_leaves_no_lock(small_disk: Path) -> None:
    repo = make_repo(small_disk / "repo")
    gitexp(repo, "run", "config.yaml", "-p", "steps=2")
    before = log_json(repo)
    filler = _fill(small_disk)
    for args in (["run", "config.yaml", "-p", "steps=2"], ["rm", before[0]["id"][:8]],
                 ["run", "config.yaml", "--sweep", "steps=1,2"]):
        proc = gitexp(repo, *args, check=False)
        assert proc.returncode != 0, args
        assert "Traceback" not in proc.stderr, proc.stderr
        assert "no space left" in proc.stderr, proc.stderr
    assert log_json(repo) == before  # nothing recorded is lost; reading still works
    filler.unlink()
    assert not list((repo / ".git" / "objects").glob("*/*.lock"))
    started = time.monotonic()
    gitexp(repo, "rm", before[0]["id"][:8])
    assert time.monotonic() - started < 60
    assert log_json(repo) == []
    assert_fsck_clean(repo)


def _submodule_repo(tmp_path: Path) -> Path:
    lib = make_repo(tmp_path / "lib", {"weights.txt": "from the submodule\n"})
    repo = make_repo(tmp_path / "main")
    git(repo, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(lib), "lib")
    git(repo, "commit", "-q", "-m", "add lib")
    nested = make_repo(repo / "vendor", {"tool.txt": "from a nested repository\n"})
    assert nested.exists()
    (repo / "cat.yaml").write_text("command: cat lib/weights.txt vendor/tool.txt\n")
    return repo


def test_submodules_and_nested_repositories_reach_the_run(tmp_path: Path) -> None:
    repo = _submodule_repo(tmp_path)
    proc = gitexp(repo, "run", "cat.yaml")
    assert "from the submodule" in proc.stdout and "from a nested repository" in proc.stdout
    [row] = log_json(repo)
    assert row["status"] == "finished"
    note = json.loads(git(repo, "notes", "--ref=exps", "show", row["id"]))
    lib_head = git(repo / "lib", "rev-parse", "HEAD").strip()
    assert note["submodules"]["lib"] == lib_head
    assert set(note["submodules"]) == {"lib", "vendor"}


def test_submodule_whose_commit_is_gone_fails_with_one_clear_reason(tmp_path: Path) -> None:
    repo = _submodule_repo(tmp_path)
    (repo / "lib" / "weights.txt").write_text("changed\n")
    git(repo / "lib", "commit", "-q", "-am", "local commit")
    (repo / "fail.yaml").write_text("command: cat lib/weights.txt && false\n")
    assert "changed" in gitexp(repo, "run", "fail.yaml", check=False).stdout
    git(repo / "lib", "reset", "-q", "--hard", "HEAD~1")
    git(repo / "lib", "reflog", "expire", "--expire=now", "--all")
    git(repo / "lib", "gc", "-q", "--prune=now")
    for run_dir in (repo / ".git" / "gitexp" / "runs").iterdir():  # its files go; exec.json says it ran here
        for part in ("wt", "out"):
            shutil.rmtree(run_dir / part, ignore_errors=True)
    sha = log_json(repo)[0]["id"]
    gitexp(repo, "queue", "retry", sha[:8], check=False)
    proc = gitexp(repo, "worker", "--until-empty", check=False)
    row = {r["name"]: r for r in log_json(repo)}["fail"]
    assert row["status"] == "failed" and row["id"] != sha, (row, proc.stderr)
    assert "submodule lib" in (row["reason"] or "")


def test_full_disk_at_the_end_of_a_run_keeps_its_exit_code(small_disk: Path) -> None:
    repo = make_repo(small_disk / "repo")
    barrier = small_disk / "go"
    (repo / "late.yaml").write_text(
        f"command: while [ ! -e {barrier} ]; do sleep 0.1; done; echo done; exit 1\n")
    proc = subprocess.Popen([sys.executable, "-m", "gitexp", "run", "late.yaml"], cwd=repo,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, GITEXP_FULL_DISK_WAIT="120"))
    deadline = time.time() + 60
    while time.time() < deadline and not [r for r in log_json(repo) if r["status"] == "running"]:
        time.sleep(0.2)
    filler = _fill(small_disk)
    os.close(os.open(barrier, os.O_CREAT | os.O_WRONLY))  # an empty file needs an inode, not a block
    time.sleep(3)  # the program has exited; the executor now waits for space to record it
    assert proc.poll() is None
    filler.unlink()
    out, err = proc.communicate(timeout=120)
    assert "Traceback" not in err, err
    [row] = log_json(repo)
    assert row["status"] == "failed" and row["exit_code"] == 1, row
    assert proc.returncode == 1
    assert_fsck_clean(repo)
