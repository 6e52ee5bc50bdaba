"""Nothing lost: many writers at once all land, and git fsck stays clean."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import ROOT, assert_fsck_clean, gitexp, log_json, wait_for


def test_twenty_experiments_finishing_at_once_all_land(repo: Path) -> None:
    barrier = repo.parent / "go"
    (repo / "wait.yaml").write_text(
        f"command: while [ ! -e {barrier} ]; do sleep 0.05; done; echo val_err={{i}}\n"
        "params: {i: 0}\nmetrics:\n  val_err: {regex: 'val_err=([0-9.]+)'}\n")
    for i in range(20):
        gitexp(repo, "run", "wait.yaml", "-p", f"i={i}", "--detach")
    wait_for(lambda: len([r for r in log_json(repo) if r["status"] == "running"]) == 20, timeout=120)
    barrier.write_text("")
    rows = wait_for(lambda: (lambda rs: rs if all(r["status"] == "finished" for r in rs) else None)(log_json(repo)),
                    timeout=120)
    assert len(rows) == 20
    assert sorted(r["metrics"]["val_err"]["last"] for r in rows) == list(range(20))
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
