"""Nothing lost: many writers at once all land, and git fsck stays clean."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import ROOT, assert_fsck_clean, git, gitexp, log_json, wait_for


def test_fifty_experiments_finishing_at_once_beside_a_pull_all_land(repo: Path, tmp_path: Path) -> None:
    barrier = repo.parent / "go"
    (repo / "wait.yaml").write_text(
        f"command: while [ ! -e {barrier} ]; do sleep 0.05; done; echo val_err={{i}}\n"
        "params: {i: 0}\nmetrics:\n  val_err: {regex: 'val_err=([0-9.]+)'}\n")
    other = tmp_path / "colleague"
    git(tmp_path, "clone", "-q", str(repo), str(other))
    for i in range(3):  # a colleague's results, pulled while ours finish
        gitexp(other, "run", "config.yaml", "-p", "steps=1", "--name", f"theirs-{i}")
    for i in range(50):
        gitexp(repo, "run", "wait.yaml", "-p", f"i={i}", "--detach")
    wait_for(lambda: len([r for r in log_json(repo) if r["status"] == "running"]) == 50, timeout=300)
    pull = subprocess.Popen([sys.executable, "-m", "gitexp", "pull", str(other)], cwd=repo,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    barrier.write_text("")
    out, err = pull.communicate(timeout=300)
    assert pull.returncode == 0, err
    rows = wait_for(lambda: (lambda rs: rs if sum(r["status"] == "finished" for r in rs) == 53 else None)(
        log_json(repo)), timeout=300)
    assert len(rows) == 53
    assert sorted(r["metrics"]["val_err"]["last"] for r in rows if r["name"].startswith("wait")) == list(range(50))
    assert sorted(r["name"] for r in rows if r["name"].startswith("theirs")) == ["theirs-0", "theirs-1", "theirs-2"]
    assert_fsck_clean(repo)


def test_concurrent_note_writers_on_one_store_lose_nothing(repo: Path) -> None:
    """20 processes each write 5 summaries into the same notes ref at the same moment."""
    script = textwrap.dedent(f'''
        import sys, hashlib
        sys.path.insert(0, {str(ROOT)!r})
        from gitexp.notes import Store, SUMMARY_REF, dump_json
        from gitexp.repo import Repo
        store = Store(Repo.discover("."))
        worker = int(sys.argv[1])
        for k in range(5):
            fake = hashlib.sha1(f"{{worker}}-{{k}}".encode()).hexdigest()
            store.write({{(SUMMARY_REF, fake): dump_json({{"worker": worker, "k": k}})}})
    ''')
    (repo.parent / "writer.py").write_text(script)
    procs = [subprocess.Popen([sys.executable, str(repo.parent / "writer.py"), str(w)], cwd=repo) for w in range(20)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    listed = subprocess.run(["git", "notes", "--ref=exps", "list"], cwd=repo, capture_output=True, text=True).stdout
    assert len(listed.splitlines()) == 100
    assert_fsck_clean(repo)


def test_concurrent_read_modify_write_of_one_summary_loses_no_update(repo: Path) -> None:
    script = textwrap.dedent(f'''
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        from gitexp.notes import Store
        from gitexp.repo import Repo
        store = Store(Repo.discover("."))
        sha = sys.argv[1]
        for _ in range(20):
            store.update_summary(sha, lambda s: {{**s, "count": s.get("count", 0) + 1}})
    ''')
    (repo.parent / "inc.py").write_text(script)
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    procs = [subprocess.Popen([sys.executable, str(repo.parent / "inc.py"), sha], cwd=repo) for _ in range(6)]
    assert all(p.wait(timeout=300) == 0 for p in procs)
    note = subprocess.run(["git", "notes", "--ref=exps", "show", sha], cwd=repo, capture_output=True, text=True).stdout
    assert json.loads(note)["count"] == 120
    assert_fsck_clean(repo)
