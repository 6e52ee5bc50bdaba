"""Lean snapshots: untracked files within limits, what is left out said and kept; tracked always in."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from conftest import all_refs, git, gitexp, log_json

CONFIG = "name: snap\ncommand: ls -R\n"


def _blob_sha(repo: Path, path: Path) -> str:
    return git(repo, "hash-object", str(path)).strip()


def _has_object(repo: Path, sha: str) -> bool:
    return subprocess.run(["git", "cat-file", "-e", sha], cwd=repo, capture_output=True).returncode == 0


def test_big_untracked_file_is_left_out_said_and_kept_in_details(repo: Path) -> None:
    (repo / "snap.yaml").write_text(CONFIG)
    big = repo / "dataset.bin"
    big.write_bytes(os.urandom(3_000_000))
    (repo / "small.txt").write_text("small and untracked\n")
    proc = gitexp(repo, "run", "snap.yaml")
    assert "dataset.bin" in proc.stderr and "left 1 untracked file(s) out" in proc.stderr
    [row] = log_json(repo)
    files = git(repo, "ls-tree", "-r", "--name-only", row["id"]).split()
    assert "small.txt" in files and "dataset.bin" not in files
    assert not _has_object(repo, _blob_sha(repo, big))  # the 3 MB never reached .git
    details = json.loads(git(repo, "notes", "--ref=exps-details", "show", row["id"]))
    assert details["snapshot"]["left_out"][0]["path"] == "dataset.bin"
    assert details["snapshot"]["left_out"][0]["size"] == 3_000_000
    assert "facts" in details  # the executor's details merged with the snapshot's


def test_tracked_files_are_always_in_whatever_their_size(repo: Path) -> None:
    (repo / "snap.yaml").write_text(CONFIG)
    (repo / "weights.bin").write_bytes(os.urandom(2_000_000))
    git(repo, "add", "weights.bin")
    git(repo, "commit", "-q", "-m", "big tracked file")
    (repo / "weights.bin").write_bytes(os.urandom(2_000_000))  # an uncommitted edit of it too
    proc = gitexp(repo, "run", "snap.yaml")
    assert "left" not in proc.stderr
    sha = log_json(repo)[0]["id"]
    assert git(repo, "rev-parse", f"{sha}:weights.bin").strip() == _blob_sha(repo, repo / "weights.bin")


def test_snapshot_section_includes_excludes_and_counts(repo: Path) -> None:
    (repo / "snap.yaml").write_text(CONFIG + "snapshot:\n  exclude: [out/, '*.pt']\n  include: [data/big.csv]\n"
                                    "  max_files: 3\n")
    (repo / "out").mkdir()
    (repo / "out" / "log.txt").write_text("from an earlier run\n")
    (repo / "model.pt").write_text("weights\n")
    (repo / "data").mkdir()
    (repo / "data" / "big.csv").write_bytes(b"1,2\n" * 400_000)  # 1.6 MB, but included by name
    for i in range(5):
        (repo / f"note{i}.txt").write_text(f"note {i}\n")
    proc = gitexp(repo, "run", "snap.yaml")
    sha = log_json(repo)[0]["id"]
    files = set(git(repo, "ls-tree", "-r", "--name-only", sha).split())
    assert "data/big.csv" in files
    assert not files & {"out/log.txt", "model.pt"}
    taken = sorted(f for f in files if f.startswith("note"))
    assert taken == ["note0.txt", "note1.txt", "note2.txt"]  # path order, then the count limit
    assert "excluded by snapshot.exclude" in proc.stderr and "max_files" in proc.stderr
    stored = git(repo, "show", f"{sha}:.gitexp/experiment.yaml")
    assert "max_files: 3" in stored  # the limits travel with the experiment


def test_run_directories_inside_the_working_tree_are_never_snapshotted(repo: Path) -> None:
    (repo / "snap.yaml").write_text(CONFIG)
    env = {"GITEXP_RUNS_DIR": str(repo / "runs")}
    gitexp(repo, "run", "snap.yaml", env=env)
    proc = gitexp(repo, "run", "snap.yaml", env=env)
    assert "runs/" not in proc.stderr
    for row in log_json(repo):
        files = git(repo, "ls-tree", "-r", "--name-only", row["id"]).split()
        assert not [f for f in files if f.startswith("runs/")], files


def test_bad_snapshot_section_is_bad_input_and_writes_nothing(repo: Path) -> None:
    before = all_refs(repo)
    for body, needle in (("snapshot:\n  max_file_size: lots\n", "snapshot.max_file_size"),
                         ("snapshot:\n  max_flies: 3\n", "unknown key 'snapshot.max_flies'"),
                         ("snapshot:\n  exclude: 5\n", "snapshot.exclude"),
                         ("snapshot: [out]\n", "'snapshot' must be a mapping")):
        (repo / "bad.yaml").write_text(CONFIG + body)
        proc = gitexp(repo, "run", "bad.yaml", check=False)
        assert proc.returncode == 2, proc.stderr
        assert needle in proc.stderr and "bad.yaml:" in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    assert all_refs(repo) == before


def test_git_runs_with_a_fixed_locale_whatever_the_users(monkeypatch) -> None:
    """gitexp parses git's messages (lost races, full disks): a translated git must not change them."""
    from gitexp.gitenv import clean_env

    monkeypatch.setenv("LC_ALL", "de_DE.UTF-8")
    monkeypatch.setenv("LANGUAGE", "de")
    env = clean_env()
    assert env["LC_ALL"] == "C" and "LANGUAGE" not in env


def test_a_same_size_edit_in_the_second_of_the_last_git_add_is_snapshotted(repo: Path) -> None:
    """Racy git: an edit that keeps the size and lands in the same second as the last `git add`
    has stat data equal to the index entry's (git compares whole seconds). git rechecks such
    entries only while the index is not newer than the file, so the snapshot's copy of the
    index must keep the index's mtime (it once took a fresh one, and the commit's content)."""
    import time

    (repo / "snap.yaml").write_text(CONFIG)
    for attempt in range(20):  # the add and the edit within one wall-clock second
        time.sleep(1.0 - time.time() % 1.0 + 0.01)
        second = int(time.time())
        (repo / "w.bin").write_bytes(b"a%d" % attempt * 2000)
        git(repo, "add", "w.bin")
        (repo / "w.bin").write_bytes(b"b%d" % attempt * 2000)
        if int(time.time()) == second:
            break
    time.sleep(1.1)  # the snapshot a second later: a fresh copy of the index would look newer than the edit
    gitexp(repo, "run", "snap.yaml")
    sha = log_json(repo)[0]["id"]
    assert git(repo, "rev-parse", f"{sha}:w.bin").strip() == _blob_sha(repo, repo / "w.bin")
