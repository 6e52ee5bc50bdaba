"""Issue 17 (1-5, 22): right answers for unmodified trainers that gitexp only reads.

The trainers here behave like public PyTorch trainers: they never import gitexp, print their
metrics (``step N | loss X``), evaluate every K steps, save one checkpoint file in place with
the same name, restart their step counter at 0 on ``--resume``, and handle no signal.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any, Dict, List

from conftest import ROOT, git, gitexp, log_json, make_repo, wait_for

sys.path.insert(0, str(ROOT))

# Trains a "model" whose weight w counts the steps it has seen; loss = 10 / (1 + w).
# Prints every step, evaluates every EVAL steps, saves out/model.pt in place when the
# test loss improves (open(..., "wb") truncates the same file, as torch.save does),
# and on --resume loads it and restarts its step counter at 0.
TRAINER = """\
import json, os, sys, time
args = sys.argv[1:]
def arg(name, default):
    return args[args.index(name) + 1] if name in args else default
steps = int(arg("--steps", "30"))
every = int(os.environ.get("EVAL", "10"))
pause = float(os.environ.get("PAUSE", "0.25"))
out = arg("--out", "out")
w = 0
if "--resume" in args:
    with open(arg("--resume", "")) as handle:
        w = json.load(handle)["w"]
    print(f"resumed with w={w}", flush=True)
os.makedirs(out, exist_ok=True)
best = None
for step in range(steps):
    w += 1
    print(f"step {step} | loss {10.0 / (1 + w):.5f}", flush=True)
    if step % every == 0:
        test = 10.0 / (1 + w) + 0.01
        print(f"eval step {step} | test_loss {test:.5f}", flush=True)
        if best is None or test < best:
            best = test
            time.sleep(0.05)  # evaluating and saving take a while
            with open(os.path.join(out, "model.pt"), "w") as handle:
                json.dump({"w": w, "step": step, "pad": "x" * (100 + w)}, handle)
            time.sleep(0.05)
    if os.environ.get("DIE_AT") == str(step) and "--resume" not in args:
        os._exit(3)
    time.sleep(pause)
print("done", flush=True)
"""

CONFIG = """\
name: tiny
command: python train.py --steps {steps}
resume: python train.py --steps {steps} --resume {checkpoint}
params: {steps: 30}
checkpoints: ["out/model.pt"]
metrics:
  loss: {regex: '^step \\d+ \\| loss ([0-9.]+)', step: {regex: '^step (\\d+)'}, goal: minimize}
  test_loss: {regex: 'test_loss ([0-9.]+)', step: {regex: 'eval step (\\d+)'}, goal: minimize}
"""


def note(repo: Path, sha: str, ref: str = "exps") -> Any:
    return json.loads(git(repo, "notes", f"--ref={ref}", "show", sha))


def metrics_json(repo: Path, *args: str) -> List[Dict[str, Any]]:
    return json.loads(gitexp(repo, "metrics", *args, "--format", "json").stdout)


def newest(repo: Path) -> str:
    return log_json(repo)[0]["id"]


# -- 1: diagnostics see regex metrics as they see API metrics ---------------------------------------
SERIES = [3.37, 3.1, 2.9, 2.95, 519.0, 300.0, 450.0, 120.0, 500.0, 410.0, 333.0, 222.0, "nan"]

REGEX_TRAINER = f"""\
import time
for step, loss in enumerate({SERIES!r}):
    print(f"step {{step}} | loss {{loss}}", flush=True)
    time.sleep(0.01)
time.sleep(1.5)
"""

API_TRAINER = f"""\
import time
import gitexp
for step, loss in enumerate({SERIES!r}):
    gitexp.log(step=step, loss=float(loss))
    time.sleep(0.01)
time.sleep(1.5)
"""

DIAGNOSTICS = """\
diagnostics:
  nan: warn
  divergence: {factor: 10, min_points: 3}
  plateau: {patience: 5}
"""


def _alerts(repo: Path) -> List[Any]:
    summary = note(repo, newest(repo))
    return sorted((a["rule"], a["message"], a.get("metric")) for a in summary.get("alerts", [])
                  if a["rule"] in ("nan", "divergence", "plateau"))


def test_regex_metrics_get_the_same_alerts_as_api_metrics(tmp_path: Path) -> None:
    regex_cfg = ("name: rx\ncommand: python train.py\nmetrics:\n"
                 "  loss: {regex: 'loss ([0-9.]+|nan)', step: {regex: 'step (\\d+)'}, goal: minimize}\n" + DIAGNOSTICS)
    api_cfg = "name: api\ncommand: python train.py\nmetrics:\n  loss: {goal: minimize}\n" + DIAGNOSTICS
    by_regex = make_repo(tmp_path / "rx", {"train.py": REGEX_TRAINER, "c.yaml": regex_cfg})
    by_api = make_repo(tmp_path / "api", {"train.py": API_TRAINER, "c.yaml": api_cfg})
    gitexp(by_regex, "run", "c.yaml")
    gitexp(by_api, "run", "c.yaml")
    regex_alerts, api_alerts = _alerts(by_regex), _alerts(by_api)
    assert {a[0] for a in regex_alerts} == {"nan", "divergence", "plateau"}, regex_alerts
    assert regex_alerts == api_alerts
    assert ("nan", "loss became NaN at step 12", "loss") in regex_alerts  # the metric is named


# -- 22: a rule naming an unknown metric --------------------------------------------------------------
def test_diagnostics_naming_an_unknown_metric_is_refused(tmp_path: Path) -> None:
    cfg = CONFIG + "diagnostics:\n  plateau: {metrics: [nosuch]}\n"
    repo = make_repo(tmp_path / "r", {"train.py": TRAINER, "c.yaml": cfg})
    proc = gitexp(repo, "run", "c.yaml", check=False)
    assert proc.returncode == 2, proc.stderr
    assert "nosuch" in proc.stderr and "loss, test_loss" in proc.stderr, proc.stderr
    assert git(repo, "for-each-ref", "refs/exps") == ""  # nothing recorded


# -- 3, 4: checkpoint files saved in place: their steps, their own copies, verified -----------------
def test_checkpoints_saved_in_place_keep_their_step_and_their_own_content(tmp_path: Path) -> None:
    cfg = CONFIG.replace('checkpoints: ["out/model.pt"]', 'checkpoints: {files: ["out/model.pt"], keep: 5}')
    repo = make_repo(tmp_path / "r", {"train.py": TRAINER, "c.yaml": cfg})
    proc = gitexp(repo, "run", "c.yaml")
    assert "cannot keep checkpoint" not in proc.stdout + proc.stderr
    sha = newest(repo)
    pointers = note(repo, sha)["checkpoints"]
    # Saved at the evaluations of steps 0, 10 and 20, whatever step the scan saw later.
    assert [p["step"] for p in pointers] == [0, 10, 20], pointers
    for p in pointers:  # each pointer keeps the weights of its own step, not the newest
        assert json.loads(Path(p["path"]).read_text())["w"] == p["step"] + 1
        data = Path(p["path"]).read_bytes()
        assert p["size"] == len(data) and p["sha256"] == hashlib.sha256(data).hexdigest()
        assert isinstance(p["mtime"], float)
    kept = Path(pointers[0]["path"]).parent
    assert not [f for f in os.listdir(kept) if ".tmp" in f]  # no link or copy left behind
    assert len({p["path"] for p in pointers}) == 3

    # A kept file that no longer matches is refused before anything starts.
    Path(pointers[1]["path"]).write_text(json.dumps({"w": 999}))
    before = log_json(repo)
    proc = gitexp(repo, "resume", "tiny", "--from", "10", check=False)
    assert proc.returncode == 2, proc.stderr
    assert "no longer holds what was saved" in proc.stderr and pointers[1]["path"] in proc.stderr
    assert log_json(repo) == before


# -- 2 (and 3 across attempts): a resumed program that restarts its step counter ----------------------
OUTDIR_CONFIG = CONFIG.replace('checkpoints: ["out/model.pt"]', 'checkpoints: ["{outdir}/model.pt"]\nenv: {DIE_AT: "25"}') \
    .replace("--steps {steps}", "--steps {steps} --out {outdir}")


def _loss(step: int) -> float:
    return round(10.0 / (2 + step), 5)  # the uninterrupted run's curve: w = step + 1


def test_a_restarted_step_counter_continues_the_chains_curve_in_every_view(tmp_path: Path) -> None:
    from gitexp import plots
    from gitexp.notes import Store
    from gitexp.repo import Repo

    repo = make_repo(tmp_path / "r", {"train.py": TRAINER, "c.yaml": OUTDIR_CONFIG})
    gitexp(repo, "run", "c.yaml", check=False)  # dies at step 25 after saving at 0, 10, 20
    first = newest(repo)
    assert [p["step"] for p in note(repo, first)["checkpoints"]] == [0, 10, 20]
    kept = Path(note(repo, first)["checkpoints"][0]["path"]).parent
    assert len(os.listdir(kept)) == 1  # by default the latest (here also the best) copy only
    gitexp(repo, "resume", "tiny")  # from step 20 (w=21); the program counts from 0 again
    second = newest(repo)
    # The model.pt attempt 1 left in the shared out/ is not recorded again (no blank step).
    assert [p["step"] for p in note(repo, second)["checkpoints"]] == [0, 10, 20]
    # Attempt 2 overwrote out/model.pt in place three times: attempt 1's pointer still holds its own.
    assert json.loads(Path(note(repo, first)["checkpoints"][-1]["path"]).read_text())["w"] == 21
    gitexp(repo, "resume", "tiny", "-p", "steps=5")  # from attempt 2's step 20 (w=42)
    third = newest(repo)

    proc = gitexp(repo, "metrics", "--format", "json")
    curve = json.loads(proc.stdout)
    assert [r["step"] for r in curve if "loss" in r] == list(range(47))
    assert all(r["loss"] == _loss(r["step"]) for r in curve if "loss" in r)
    assert [r["step"] for r in curve if "test_loss" in r] == [0, 10, 20, 21, 31, 41, 42]
    assert proc.stderr.count("restarted its step counter") == 2, proc.stderr
    assert [r["step"] for r in metrics_json(repo, "--raw")] == [0, 1, 2, 3, 4]

    shown = json.loads(gitexp(repo, "show", "tiny", "--format", "json").stdout)
    assert shown["metrics"]["loss"]["count"] == 47 and shown["metrics"]["loss"]["best_step"] == 46
    assert shown["metrics"]["test_loss"]["best_step"] == 42
    assert all(r["seconds"] is None or r["seconds"] >= 0 for r in shown["reached"]), shown["reached"]
    assert shown["timing"]["startup"] is not None and shown["timing"]["startup"] < 30
    row = log_json(repo)[0]
    assert row["id"] == third and row["metrics"]["loss"]["best"] == _loss(46) and row["metrics"]["loss"]["count"] == 47

    # plot, report and compare read their curves and summaries through plots.histories.
    store = Store(Repo.discover(str(repo)))
    exp = store.find(third)
    hist = plots.histories(Repo.discover(str(repo)), store, [exp], {third: "finished"})[third]
    assert [r["step"] for r in hist if "loss" in r] == list(range(47))
    assert exp.summary["metrics"]["loss"]["best_step"] == 46
    starts = [note(repo, sha)["started"] for sha in (first, second, third)]
    assert exp.summary["started"] == starts[0]
    times = [r["time"] for r in hist if "loss" in r]
    assert times == sorted(times) and times[-1] - times[0] < sum(note(repo, s)["duration"] for s in (first, second, third))


# -- 5: a run whose executor was killed keeps its points --------------------------------------------
def test_a_lost_runs_points_show_before_any_resume(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"train.py": TRAINER, "c.yaml": CONFIG.replace("{steps: 30}", "{steps: 400}")})
    sha = gitexp(repo, "run", "--detach", "c.yaml", env={"PAUSE": "0.01"}).stdout.split()[0]
    run_dir = repo / ".git" / "gitexp" / "runs" / sha
    # 60 loss points (captured.jsonl holds the other metrics' records too)
    wait_for(lambda: (run_dir / "captured.jsonl").exists()
             and sum(json.loads(line).get("metric") == "loss"
                     for line in (run_dir / "captured.jsonl").read_text().splitlines()
                     if line.endswith("}")) >= 60, timeout=60)
    info = json.loads((run_dir / "exec.json").read_text())
    os.kill(info["pid"], signal.SIGKILL)  # as the OOM killer would; the program dies of the broken pipe
    wait_for(lambda: log_json(repo)[0]["status"] == "lost", timeout=60)
    captured = [json.loads(line) for line in (run_dir / "captured.jsonl").read_text().splitlines() if line]
    losses = sorted({r["step"] for r in captured if r["metric"] == "loss"})

    shown = json.loads(gitexp(repo, "show", sha, "--format", "json").stdout)
    assert shown["status"] == "lost" and shown["metrics"]["loss"]["count"] == len(losses) >= 60
    assert [r["step"] for r in metrics_json(repo, sha) if "loss" in r] == losses
    assert log_json(repo)[0]["metrics"]["loss"]["count"] == len(losses)
