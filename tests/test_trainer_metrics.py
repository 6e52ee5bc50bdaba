"""Issue 17 (1-5, 22): right answers for unmodified trainers that gitexp only reads.

The trainers here behave like public PyTorch trainers: they never import gitexp, print their
metrics (``step N | loss X``), evaluate every K steps, save one checkpoint file in place with
the same name, restart their step counter at 0 on ``--resume``, and handle no signal.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Dict, List

from conftest import ROOT, git, gitexp, log_json, make_repo

sys.path.insert(0, str(ROOT))

# Trains a "model" whose weight w counts the steps it has seen; loss = 10 / (1 + w).
# Prints every step, evaluates every EVAL steps, saves out/model.pt in place when the
# test loss improves (open(..., "wb") truncates the same file, as torch.save does),
# and on --resume loads it and restarts its step counter at 0.
TRAINER = """\
import json, os, sys, time
args = sys.argv[1:]
steps = int(os.environ.get("STEPS", "40"))
every = int(os.environ.get("EVAL", "10"))
pause = float(os.environ.get("PAUSE", "0.02"))
w = 0
if "--resume" in args:
    with open(args[args.index("--resume") + 1]) as handle:
        w = json.load(handle)["w"]
    print(f"resumed with w={w}", flush=True)
os.makedirs("out", exist_ok=True)
best = None
for step in range(steps):
    w += 1
    print(f"step {step} | loss {10.0 / (1 + w):.5f}", flush=True)
    if step % every == 0:
        test = 10.0 / (1 + w) + 0.01
        print(f"eval step {step} | test_loss {test:.5f}", flush=True)
        if best is None or test < best:
            best = test
            time.sleep(0.05)  # evaluation and saving take a while
            with open("out/model.pt", "w") as handle:
                json.dump({"w": w, "step": step, "pad": "x" * (100 + w)}, handle)
            time.sleep(0.05)
    if os.environ.get("DIE_AT") == str(step) and "--resume" not in args:
        os._exit(3)
    time.sleep(pause)
print("done", flush=True)
"""

CONFIG = """\
name: tiny
command: python train.py
resume: python train.py --resume {checkpoint}
params: {lr: 0.1}
checkpoints: ["out/model.pt"]
metrics:
  loss: {regex: 'step \\d+ \\| loss ([0-9.]+)', step: {regex: '^step (\\d+)'}, goal: minimize}
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
