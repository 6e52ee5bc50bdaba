"""Issue #10: one typed lifecycle, attempts, checkpoints and `git exp resume`."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest

from conftest import ROOT, all_refs, assert_fsck_clean, git, gitexp, log_json, make_repo, wait_for

sys.path.insert(0, str(ROOT))

# A trainer that saves {outdir}/ckpt<step>.json every other step through the API, resumes
# from the file it is given (argv or GITEXP_RESUME_FROM), and can be told to die at a step.
TRAIN = """\
import json, os, sys, time
import gitexp
out = os.environ["GITEXP_OUTPUT_DIR"]
start = 0
ck = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("GITEXP_RESUME_FROM")
if ck:
    start = json.load(open(ck))["step"] + 1
    print("resumed at", start, flush=True)
steps = int(os.environ.get("STEPS", "8"))
for step in range(start, steps):
    print(f"step {step} loss {10.0 / (step + 1):.4f}", flush=True)
    gitexp.log(step=step, val=100 + step if ck else step)
    if step % 2 == 0:
        path = os.path.join(out, f"ckpt{step}.json")
        json.dump({"step": step}, open(path, "w"))
        gitexp.checkpoint(path, step=step)
    if os.environ.get("DIE_AT") == str(step) and not ck:
        sys.exit(3)
    time.sleep(float(os.environ.get("PAUSE", "0.01")))
"""

CONFIG = """\
name: toy
command: python train.py
resume: python train.py {checkpoint}
params: {lr: 0.1}
env: {DIE_AT: "5"}
metrics:
  loss: {regex: 'loss ([0-9.]+)', step: {regex: 'step (\\d+)'}, goal: minimize}
"""


@pytest.fixture
def trainer(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "r", {"train.py": TRAIN, "c.yaml": CONFIG})


def note(repo: Path, sha: str) -> Dict[str, Any]:
    return json.loads(git(repo, "notes", "--ref=exps", "show", sha))


def metrics_json(repo: Path, *args: str) -> List[Dict[str, Any]]:
    return json.loads(gitexp(repo, "metrics", *args, "--format", "json").stdout)


# -- the lifecycle ---------------------------------------------------------------------------------
def test_transitions_enforce_legal_moves_and_announce_them(trainer: Path) -> None:
    from gitexp.lifecycle import Status, listen, transition
    from gitexp.notes import Store
    from gitexp.repo import Repo

    gitexp(trainer, "run", "c.yaml", check=False)
    sha = log_json(trainer)[0]["id"]
    store = Store(Repo.discover(str(trainer)))
    heard: List[Any] = []
    stop = listen(heard.append)
    try:
        before = note(trainer, sha)
        assert before["status"] == "failed" and before["schema"] == 2
        # A final state is never left: no write, nothing announced.
        assert transition(store, sha, Status.RUNNING, {"x": 1}) is None
        assert note(trainer, sha) == before and heard == []
        # Nor can a status change sneak past the one operation.
        with pytest.raises(ValueError, match="lifecycle.transition"):
            store.update_summary(sha, lambda s: {**s, "status": "running"})
        assert note(trainer, sha) == before
    finally:
        stop()
    # A legal move is written and announced once.
    gitexp(trainer, "run", "c.yaml", "--queue")
    queued = [r for r in log_json(trainer) if r["status"] == "queued"][0]["id"]
    stop = listen(heard.append)
    try:
        assert transition(store, queued, Status.CANCELLED, {"reason": "test"}) is not None
    finally:
        stop()
    assert [(c.sha, c.old, c.new) for c in heard] == [(queued, Status.QUEUED, Status.CANCELLED)]


def test_old_schema_1_notes_still_read_and_resume(trainer: Path) -> None:
    gitexp(trainer, "run", "c.yaml", check=False)
    sha = log_json(trainer)[0]["id"]
    old = note(trainer, sha)
    for key in ("attempt", "chain", "kind"):
        old.pop(key, None)
    old["schema"] = 1
    old["attempts"] = 1
    git(trainer, "notes", "--ref=exps", "add", "-f", "-m", json.dumps(old), sha)
    [row] = log_json(trainer)
    assert row["status"] == "failed" and row["attempt"] == 1
    gitexp(trainer, "resume", "toy")
    [row] = log_json(trainer)
    assert row["status"] == "finished" and row["attempt"] == 2


# -- resume ------------------------------------------------------------------------------------------
def test_resume_continues_from_the_latest_checkpoint_as_a_new_attempt(trainer: Path) -> None:
    assert gitexp(trainer, "run", "c.yaml", check=False).returncode == 3
    [first] = log_json(trainer)
    assert first["status"] == "failed"
    first_out = Path(note(trainer, first["id"])["outdir"])
    proc = gitexp(trainer, "resume", first["id"][:10])
    assert "resumed at 5" in proc.stdout  # the `resume:` command got {checkpoint}: ckpt4
    [row] = log_json(trainer)  # one row per experiment
    assert row["status"] == "finished" and row["attempt"] == 2 and row["id"] != first["id"]
    new = note(trainer, row["id"])
    assert new["chain"] == [first["id"]] and new["kind"] == "resume"
    assert new["resume"]["step"] == 4 and new["resume"]["checkpoint"] == str(first_out / "ckpt4.json")
    # A commit on the experiment's branch: parent is the run it continues, tree unchanged.
    assert git(trainer, "rev-parse", "refs/exps/toy").strip() == row["id"]
    assert git(trainer, "rev-parse", f"{row['id']}^").strip() == first["id"]
    assert git(trainer, "rev-parse", f"{row['id']}^{{tree}}") == git(trainer, "rev-parse", f"{first['id']}^{{tree}}")
    # The output directory is shared along the chain.
    assert Path(new["outdir"]) == first_out and (first_out / "ckpt6.json").exists()
    # One curve across the chain: the resumed points replace the old ones from step 5 on.
    curve = metrics_json(trainer, "toy")
    vals = [(r["step"], r.get("val")) for r in curve if "val" in r]
    assert vals == [(0, 0), (1, 1), (2, 2), (3, 3), (4, 4), (5, 105), (6, 106), (7, 107)]
    assert [r["step"] for r in curve if "loss" in r] == list(range(8))
    # The raw attempts stay readable, by either id.
    assert [r["step"] for r in metrics_json(trainer, first["id"][:10], "--raw") if "val" in r] == [0, 1, 2, 3, 4, 5]
    assert [r["step"] for r in metrics_json(trainer, row["id"][:10], "--raw") if "val" in r] == [5, 6, 7]
    rows = log_json(trainer, "--attempts")
    assert [(r["id"], r["attempt"], r["status"]) for r in rows] == [(first["id"], 1, "failed"),
                                                                     (row["id"], 2, "finished")]
    shown = gitexp(trainer, "show", "toy").stdout
    assert "attempts:" in shown and "resumed from step 4" in shown and "exit code 3" in shown
    # Each attempt has its own run directory and log.
    runs = trainer / ".git" / "gitexp" / "runs"
    assert "step 5" in (runs / first["id"] / "output.log").read_text()
    assert "resumed at 5" in (runs / row["id"] / "output.log").read_text()
    assert "resumed at 5" not in (runs / first["id"] / "output.log").read_text()
    assert_fsck_clean(trainer)
    assert gitexp(trainer, "fsck").returncode == 0  # earlier attempts' notes are not strays


def test_resume_with_a_changed_param_and_from_an_earlier_step(trainer: Path) -> None:
    gitexp(trainer, "run", "c.yaml", check=False)
    first = log_json(trainer)[0]["id"]
    gitexp(trainer, "resume", "toy", "--from", "2", "-p", "lr=0.05")
    [row] = log_json(trainer)
    new = note(trainer, row["id"])
    assert new["param_changes"] == {"lr": [0.1, 0.05]} and row["params"]["lr"] == 0.05
    assert new["resume"]["step"] == 2
    assert "lr: 0.05" in git(trainer, "show", f"{row['id']}:.gitexp/experiment.yaml")
    assert git(trainer, "rev-parse", f"{row['id']}^").strip() == first
    assert "changed lr: 0.1 -> 0.05" in gitexp(trainer, "show", "toy").stdout
    # Resuming the finished attempt is a third attempt; `rm` removes every attempt's notes.
    gitexp(trainer, "rm", "toy")
    assert git(trainer, "notes", "--ref=exps", "list").strip() == ""


def test_resume_bad_input_is_one_line_exit_2_and_writes_nothing(trainer: Path) -> None:
    (trainer / "nock.yaml").write_text("name: nock\ncommand: exit 1\n")
    gitexp(trainer, "run", "c.yaml", check=False)
    gitexp(trainer, "run", "nock.yaml", check=False)
    plain = git(trainer, "rev-parse", "HEAD").strip()
    cases = {
        "unknown id": (["resume", "nosuchexp"], "no experiment"),
        "not an experiment": (["resume", plain[:12]], "no experiment"),
        "no checkpoint at that step": (["resume", "toy", "--from", "3"], "steps with a checkpoint: 0, 2, 4"),
        "no checkpoint at all": (["resume", "nock"], "--from-scratch"),
        "both --from and --from-scratch": (["resume", "toy", "--from", "2", "--from-scratch"], "exclude"),
        "unknown param": (["resume", "toy", "-p", "nope=1"], "nope"),
        "unknown target": (["resume", "toy", "--on", "nowhere"], "nowhere"),
    }
    for what, (args, needle) in cases.items():
        before = all_refs(trainer)
        proc = gitexp(trainer, *args, check=False)
        assert proc.returncode == 2, (what, proc.stderr)
        assert needle in proc.stderr, (what, proc.stderr)
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) <= 2, (what, proc.stderr)
        assert all_refs(trainer) == before, what
    # A checkpoint whose file is gone: says so and offers the others.
    out = Path(note(trainer, log_json(trainer, "--filter", "name=toy")[0]["id"])["outdir"])
    (out / "ckpt4.json").unlink()
    before = all_refs(trainer)
    proc = gitexp(trainer, "resume", "toy", check=False)
    assert proc.returncode == 2 and "no longer exists" in proc.stderr and all_refs(trainer) == before
    # --from-scratch needs none.
    gitexp(trainer, "resume", "nock", "--from-scratch", check=False)
    rows = {r["name"]: r for r in log_json(trainer)}
    assert rows["nock"]["attempt"] == 2 and note(trainer, rows["nock"]["id"])["kind"] == "retry"


def test_resume_of_a_running_run_is_refused(trainer: Path) -> None:
    (trainer / "slow.yaml").write_text("name: slow\ncommand: sleep 30\n")
    sha = gitexp(trainer, "run", "slow.yaml", "--detach").stdout.strip()
    try:
        wait_for(lambda: log_json(trainer)[0]["status"] == "running")
        before = all_refs(trainer)
        proc = gitexp(trainer, "resume", "slow", "--from-scratch", check=False)
        assert proc.returncode == 2 and "still running" in proc.stderr and all_refs(trainer) == before
        proc = gitexp(trainer, "queue", "retry", "slow", check=False)
        assert proc.returncode == 2 and all_refs(trainer) == before
    finally:
        gitexp(trainer, "cancel", sha[:10], check=False)


# -- checkpoints the program cannot report ------------------------------------------------------------
def test_checkpoints_glob_records_files_in_the_worktree_and_keeps_them(tmp_path: Path) -> None:
    script = ("import os, sys, time\nos.makedirs('out', exist_ok=True)\n"
              "start = int(open(os.environ['GITEXP_RESUME_FROM']).read()) + 1 if os.environ.get('GITEXP_RESUME_FROM') "
              "else 0\nprint('start', start, flush=True)\n"
              "for epoch in range(start, 4):\n"
              "    open(f'out/epoch{epoch}.pt', 'w').write(str(epoch))\n"
              "    print(f'epoch {epoch}', flush=True)\n    time.sleep(1.3)\n"
              "    if epoch == 2 and not os.environ.get('GITEXP_RESUME_FROM'): sys.exit(1)\n")
    repo = make_repo(tmp_path / "r", {"plain.py": script,
                                      "p.yaml": "name: plain\ncommand: python plain.py\ncheckpoints: ['out/*.pt']\n"})
    gitexp(repo, "run", "p.yaml", check=False)
    [row] = log_json(repo)
    pointers = note(repo, row["id"])["checkpoints"]
    assert [p["step"] for p in pointers] == [0, 1, 2]
    for p in pointers:  # kept in out/.gitexp-checkpoints: the worktree is gone
        assert "/out/.gitexp-checkpoints/out/epoch" in p["path"] and Path(p["path"]).read_text() == str(p["step"])
    assert not (repo / ".git" / "gitexp" / "runs" / row["id"] / "wt").exists()
    # No `resume:` in the config: the command runs again with GITEXP_RESUME_FROM set.
    proc = gitexp(repo, "resume", "plain")
    assert "start 3" in proc.stdout
    assert log_json(repo)[0]["status"] == "finished"


def test_checkpoints_config_is_validated(trainer: Path) -> None:
    for bad, needle in (("checkpoints: ['../x/*.pt']\n", "checkpoints"), ("checkpoints: 5\n", "checkpoints"),
                        ("auto_resume: -1\n", "auto_resume"), ("auto_resume: yes\n", "auto_resume"),
                        ("resume: python train.py {nope}\n", "{nope}")):
        (trainer / "b.yaml").write_text(CONFIG.replace("resume: python train.py {checkpoint}\n", "") + bad)
        before = all_refs(trainer)
        proc = gitexp(trainer, "run", "b.yaml", check=False)
        assert proc.returncode == 2 and needle in proc.stderr, (bad, proc.stderr)
        assert all_refs(trainer) == before


# -- retries are attempts too -------------------------------------------------------------------------
def test_queue_retry_keeps_every_attempts_output_and_history(trainer: Path) -> None:
    gitexp(trainer, "run", "c.yaml", check=False)
    first = log_json(trainer)[0]["id"]
    first_history = metrics_json(trainer, first[:10], "--raw")
    gitexp(trainer, "queue", "retry", "toy")
    gitexp(trainer, "worker", "--until-empty")
    [row] = log_json(trainer)
    assert row["attempt"] == 2 and row["status"] == "failed" and note(trainer, row["id"])["kind"] == "retry"
    assert "outdir_of" not in note(trainer, row["id"])  # a retry starts over in its own out/
    assert metrics_json(trainer, first[:10], "--raw") == first_history  # untouched
    runs = trainer / ".git" / "gitexp" / "runs"
    assert (runs / first / "output.log").read_text().count("step 0 ") == 1
    assert (runs / row["id"] / "output.log").exists()
    # The curve across the chain is the retry's (it started over at step 0).
    assert [r["val"] for r in metrics_json(trainer, "toy") if "val" in r] == [0, 1, 2, 3, 4, 5]
    assert_fsck_clean(trainer)


# -- nothing lost, never two copies -------------------------------------------------------------------
def test_sigkilled_executor_is_not_lost_while_its_program_lives_and_no_second_copy_starts(trainer: Path) -> None:
    (trainer / "long.yaml").write_text(
        "name: long\ncommand: python long.py\n")
    (trainer / "long.py").write_text("import gitexp, os, time\nfor i in range(6):\n"
                                     "    gitexp.log(step=i, x=i); gitexp.flush(); time.sleep(1)\n"
                                     "open(os.path.join(os.environ['GITEXP_OUTPUT_DIR'], 'result.txt'), 'w').write('done')\n")
    sha = gitexp(trainer, "run", "long.yaml", "--detach").stdout.strip()
    wait_for(lambda: log_json(trainer)[0]["status"] == "running")
    time.sleep(2.5)
    pid = note(trainer, sha)["pid"]
    os.kill(pid, signal.SIGKILL)  # the executor only: its program lives on
    time.sleep(0.5)
    assert log_json(trainer)[0]["status"] == "running"  # not lost: its program lives
    before = all_refs(trainer)
    for args in (["queue", "--retry-lost"], ["queue", "retry", "long"], ["resume", "long", "--from-scratch"]):
        gitexp(trainer, *args, check=False)
    assert all_refs(trainer) == before  # no second copy was started or recorded
    out = trainer / ".git" / "gitexp" / "runs" / sha / "out"
    wait_for(lambda: (out / "result.txt").exists(), timeout=30)
    wait_for(lambda: log_json(trainer)[0]["status"] == "lost", timeout=30)
    gitexp(trainer, "queue", "--retry-lost")
    old = note(trainer, sha)
    assert old["status"] == "lost"  # written now that a new attempt supersedes it
    # What the dead executor had not written came back from the run directory.
    assert [r["step"] for r in metrics_json(trainer, sha[:10], "--raw")] == [0, 1, 2, 3, 4, 5]
    assert old["metrics"]["x"]["last"] == 5
    gitexp(trainer, "worker", "--until-empty")
    [row] = log_json(trainer)
    assert row["status"] == "finished" and row["attempt"] == 2
    assert_fsck_clean(trainer)


def test_random_sigkills_of_the_program_lose_no_point_and_resume_continues(trainer: Path) -> None:
    (trainer / "k.yaml").write_text(CONFIG.replace("name: toy", "name: k").replace('DIE_AT: "5"', 'PAUSE: "0.15", STEPS: "40"'))
    rng = random.Random(10)
    sha = None
    for attempt in range(20):
        args = ["run", "k.yaml", "--detach"] if attempt == 0 else ["resume", "k", "--detach"]
        proc = gitexp(trainer, *args, check=False)
        if proc.returncode == 2 and "no checkpoint" in proc.stderr:
            proc = gitexp(trainer, "resume", "k", "--from-scratch", "--detach")
        sha = proc.stdout.strip()
        info = trainer / ".git" / "gitexp" / "runs" / sha / "exec.json"
        wait_for(lambda info=info: info.exists() and json.loads(info.read_text()).get("child"), timeout=30,
                 interval=0.02)
        time.sleep(rng.uniform(0.2, 1.5))
        killed_at = time.time()
        try:
            os.killpg(json.loads(info.read_text())["child"], signal.SIGKILL)
        except ProcessLookupError:
            pass  # it finished first
        row = wait_for(lambda: [r for r in log_json(trainer) if r["status"] in ("failed", "killed", "finished")],
                       timeout=30)[0]
        if row["status"] == "finished":
            break
        # Every point logged more than a second before the kill is in the store.
        raw = metrics_json(trainer, sha[:10], "--raw")
        api = subprocess.run(["cat", str(info.parent / "metrics.jsonl")], capture_output=True, text=True).stdout
        early = [json.loads(line)["step"] for line in api.splitlines() if line.strip()
                 and json.loads(line)["time"] < killed_at - 1.0]
        assert set(early) <= {r["step"] for r in raw if "val" in r}, (early, raw)
    rows = log_json(trainer, "--attempts")
    assert len(rows) >= 2
    steps = [r["step"] for r in metrics_json(trainer, "k") if "val" in r]
    assert steps == sorted(steps) and len(steps) == len(set(steps))  # one curve, no step twice
    assert_fsck_clean(trainer)


def test_auto_resume_in_the_local_queue_after_a_lost_executor(trainer: Path) -> None:
    (trainer / "crash.py").write_text(
        "import json, os, signal, sys, time\nimport gitexp\nout = os.environ['GITEXP_OUTPUT_DIR']\n"
        "if os.environ.get('GITEXP_RESUME_FROM'):\n    print('resumed from', os.environ['GITEXP_RESUME_FROM'])\n"
        "    sys.exit(0)\npath = os.path.join(out, 'c7.json'); open(path, 'w').write('{}')\n"
        "gitexp.checkpoint(path, step=7)\nos.kill(os.getppid(), signal.SIGKILL)  # the node dies under us\n")
    (trainer / "a.yaml").write_text("name: auto\ncommand: python crash.py\nauto_resume: 2\n")
    gitexp(trainer, "run", "a.yaml", "--queue")
    gitexp(trainer, "worker", "--until-empty", timeout=120)
    rows = log_json(trainer, "--attempts")
    assert [r["status"] for r in rows] == ["lost", "finished"], rows
    new = note(trainer, rows[1]["id"])
    assert new["auto_resumes"] == 1 and new["resume"]["step"] == 7
    assert "resumed from" in (trainer / ".git" / "gitexp" / "runs" / rows[1]["id"] / "output.log").read_text()


def test_resume_from_api(monkeypatch: pytest.MonkeyPatch) -> None:
    import gitexp

    monkeypatch.delenv("GITEXP_RESUME_FROM", raising=False)
    assert gitexp.resume_from() is None
    monkeypatch.setenv("GITEXP_RESUME_FROM", "/x/ckpt12.pt")
    monkeypatch.setenv("GITEXP_RESUME_STEP", "12")
    assert gitexp.resume_from() == {"path": "/x/ckpt12.pt", "step": 12}
    monkeypatch.setenv("GITEXP_RESUME_STEP", "")
    assert gitexp.resume_from() == {"path": "/x/ckpt12.pt", "step": None}


def test_a_forged_chain_in_a_note_is_refused_not_followed(trainer: Path) -> None:
    gitexp(trainer, "run", "c.yaml", check=False)
    sha = log_json(trainer)[0]["id"]
    forged = {**note(trainer, sha), "chain": ["HEAD:../../etc/passwd" + "x" * 19]}
    git(trainer, "notes", "--ref=exps", "add", "-f", "-m", json.dumps(forged), sha)
    proc = gitexp(trainer, "log", "--format", "json")
    assert json.loads(proc.stdout)[0]["status"] == "invalid" and "chain" in proc.stderr
    proc = gitexp(trainer, "metrics", "toy", "--format", "json")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr


def test_attempts_travel_with_pull_and_push_as_fast_forwards(trainer: Path, tmp_path: Path) -> None:
    gitexp(trainer, "run", "c.yaml", check=False)
    first = log_json(trainer)[0]["id"]
    other = tmp_path / "other"
    git(tmp_path, "clone", "-q", str(trainer), str(other))
    gitexp(other, "pull", str(trainer))
    # The pulled pointer names a file outside this clone's run directories: it is a claim, so
    # the resume refuses it until the user names the file.
    refused = gitexp(other, "resume", "toy", check=False)
    assert refused.returncode == 2 and "--checkpoint" in refused.stderr
    latest = note(trainer, first)["checkpoints"][-1]
    gitexp(other, "resume", "toy", "--checkpoint", latest["path"], "--from", str(latest["step"]))  # attempt 2 there
    second = log_json(other)[0]["id"]
    proc = gitexp(trainer, "pull", str(other))
    assert "new attempt" in proc.stderr + proc.stdout
    rows = log_json(trainer)
    assert [(r["name"], r["id"], r["attempt"], r["status"]) for r in rows] == [("toy", second, 2, "finished")]
    assert [r["id"] for r in log_json(trainer, "--attempts")] == [first, second]
    gitexp(trainer, "resume", "toy", "--from", "2")  # attempt 3 here, pushed there
    third = log_json(trainer)[0]["id"]
    gitexp(trainer, "push", str(other))
    assert git(other, "rev-parse", "refs/exps/toy").strip() == third
    assert [r["attempt"] for r in log_json(other, "--attempts")] == [1, 2, 3]
    # Pulling an earlier attempt of ours changes nothing and never makes a "toy-2".
    proc = gitexp(trainer, "pull", str(other))
    assert [r["name"] for r in log_json(trainer)] == ["toy"]
    assert_fsck_clean(trainer)
    assert_fsck_clean(other)


def test_five_resumes_of_one_attempt_at_once_make_exactly_one_new_attempt(trainer: Path) -> None:
    gitexp(trainer, "run", "c.yaml", check=False)
    first = log_json(trainer)[0]["id"]
    env = {**os.environ}
    procs = [subprocess.Popen([sys.executable, "-m", "gitexp", "resume", "toy", "--queue"], cwd=trainer, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(5)]
    results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    assert sum(code == 0 for code, _ in results) == 1, results
    for code, err in results:
        if code != 0:
            # Lost the race on the ref, or came after the winner had recorded its attempt.
            assert "Traceback" not in err and ("got a new attempt from another command" in err
                                               or "toy is queued; nothing was started" in err), err
    rows = log_json(trainer, "--attempts")
    assert [r["attempt"] for r in rows] == [1, 2] and rows[0]["id"] == first
    assert len(git(trainer, "for-each-ref", "refs/exps-queue/").splitlines()) == 1
    assert_fsck_clean(trainer)


def test_a_hostile_checkpoint_path_reaches_the_program_as_one_exact_argument(trainer: Path) -> None:
    gitexp(trainer, "run", "c.yaml", check=False)
    sha = log_json(trainer)[0]["id"]
    weird = trainer.parent / "x'; touch PWNED; echo '$(touch PWNED2)`touch PWNED3`\nckpt.json"
    weird.write_text(json.dumps({"step": 4}))
    forged = note(trainer, sha)  # a note someone else wrote: its pointer names that file
    forged["checkpoints"] = [{"path": str(weird), "step": 4, "host": None, "time": 1.0}]
    git(trainer, "notes", "--ref=exps", "add", "-f", "-m", json.dumps(forged), sha)
    refused = gitexp(trainer, "resume", "toy", check=False)  # a pointer from a note alone is not followed
    assert refused.returncode == 2 and "not recorded on this machine" in refused.stderr
    proc = gitexp(trainer, "resume", "toy", "--checkpoint", str(weird), "--from", "4")  # named by the user
    assert "resumed at 5" in proc.stdout
    assert not list(trainer.parent.rglob("PWNED*")) and not list(Path.cwd().glob("PWNED*"))
    assert note(trainer, log_json(trainer)[0]["id"])["resume"]["checkpoint"] == str(weird)
