"""Diagnostic rules: real training scripts that go NaN, diverge, plateau, stall or hiccup trigger
exactly the expected rule and action; resource rules on given samples; bad rules are bad input."""
from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

from conftest import all_refs, git, gitexp, make_repo

SCRIPTS = {
    # loss 1/step, NaN at step 8, then goes on for 3 s unless stopped
    "nan": "loss = float('nan') if step >= 8 else 1.0 / step",
    # falls to 0.1, then jumps to 5.0 at step 10
    "diverge": "loss = 5.0 if step >= 10 else 1.0 / step",
    # improves for 5 steps, then flat
    "plateau": "loss = 1.0 / min(step, 5)",
    # a healthy curve, with one slow step (step 25 takes 1.5 s)
    "hiccup": "loss = 1.0 / step\n    if step == 25: time.sleep(1.5)",
}
TRAIN = textwrap.dedent('''
    import sys, time, gitexp
    mode = sys.argv[1]
    for step in range(1, 41):
        {body}
        gitexp.log(step=step, loss=loss)
        time.sleep(0.08)
''')


def script(mode: str) -> str:
    if mode == "stall":
        return "import time, gitexp\ngitexp.log(step=1, loss=1.0)\nprint('loading', flush=True)\ntime.sleep(8)\n"
    return TRAIN.replace("{body}", SCRIPTS[mode])


def run_mode(tmp_path: Path, mode: str, diagnostics: Optional[str]) -> Dict[str, Any]:
    section = f"diagnostics:\n{textwrap.indent(diagnostics, '  ')}" if diagnostics else ""
    config = f"name: d\ncommand: python train.py {mode}\nmetrics:\n  loss: {{goal: minimize}}\n{section}"
    repo = make_repo(tmp_path / "repo", {"train.py": script(mode), "c.yaml": config})
    started = time.time()
    gitexp(repo, "run", "c.yaml", check=False)
    summary = json.loads(git(repo, "notes", "--ref=exps", "show", "refs/exps/d"))
    summary["_seconds"] = time.time() - started
    summary["_repo"] = repo
    return summary


def rules_of(summary: Dict[str, Any]) -> List[Any]:
    return [(a["rule"], a["action"]) for a in summary.get("alerts") or []]


def test_nan_stops_the_run_by_default(tmp_path: Path) -> None:
    s = run_mode(tmp_path, "nan", None)
    assert rules_of(s) == [("nan", "stop")]
    assert s["status"] == "stopped" and s["reason"] == "diagnostics: nan: loss became NaN at step 8"
    assert s["metrics"]["loss"]["count"] < 40  # stopped before the script's end
    shown = gitexp(s["_repo"], "show", "d").stdout
    assert "alerts (1):" in shown and "nan (stop): loss became NaN at step 8" in shown
    listed = gitexp(s["_repo"], "log").stdout
    assert "alerts" in listed.splitlines()[0] and "1: nan" in listed


def test_divergence_stops_when_configured(tmp_path: Path) -> None:
    s = run_mode(tmp_path, "diverge", "divergence: {action: stop, factor: 10}\nplateau: off\n")
    assert rules_of(s) == [("divergence", "stop")]
    assert s["status"] == "stopped" and "loss = 5 at step 10, above 10 x its best 0.1111" in s["reason"]


def test_plateau_warns_and_the_run_goes_on(tmp_path: Path) -> None:
    s = run_mode(tmp_path, "plateau", "plateau: {patience: 10}\n")
    assert rules_of(s) == [("plateau", "warn")]
    assert s["status"] == "finished" and s["metrics"]["loss"]["count"] == 40
    assert s["alerts"][0]["message"] == "loss has not improved on 0.2 in 10 evaluations at step 15"


def test_stall_stops_a_silent_program(tmp_path: Path) -> None:
    s = run_mode(tmp_path, "stall", "stall: {after: 2s, action: stop}\n")
    assert rules_of(s) == [("stall", "stop")]
    assert s["status"] == "stopped" and "no output and no metric for" in s["reason"]
    assert s["_seconds"] < 8  # the 8 s sleep did not run out


def test_one_slow_step_is_an_outlier(tmp_path: Path) -> None:
    s = run_mode(tmp_path, "hiccup", "step_time: {factor: 5}\n")
    assert rules_of(s) == [("step_time", "warn")]
    assert s["status"] == "finished" and s["alerts"][0]["step"] == 25


def test_diagnostics_off_records_nothing(tmp_path: Path) -> None:
    s = run_mode(tmp_path, "nan", "nan: off\n")
    assert rules_of(s) == [] and s["status"] == "finished"


# -- resource rules, fed samples directly ------------------------------------------------------------
class Ctx:
    def __init__(self, samples: List[Dict[str, float]], time_limit: Optional[int] = None) -> None:
        from gitexp.config import Requires

        self.started = 1000.0
        self.last_output = 1000.0
        self.alerts: List[Dict[str, Any]] = []
        self.stopped: List[str] = []
        self.config = type("C", (), {"requires": Requires(time=time_limit)})()
        self.paths = type("P", (), {"log": "/nonexistent/output.log"})()
        self.monitor = type("M", (), {"recent": lambda _self: samples})()

    def alert(self, rule: str, message: str, action: str = "warn", **data: Any) -> None:
        self.alerts.append({"rule": rule, "message": message, "action": action, **data})

    def stop(self, reason: str) -> None:
        self.stopped.append(reason)


def diagnose(samples: List[Dict[str, float]], rules: Optional[Dict[str, Any]] = None, now: float = 1300.0,
             time_limit: Optional[int] = None) -> Ctx:
    from gitexp import diagnostics

    parsed = diagnostics.parse({"stall": "off", **(rules or {})}, lambda k, m, h: ValueError(m))
    ctx = Ctx(samples, time_limit)
    diagnostics.Diagnostics(ctx, parsed, {}).on_tick(now)  # type: ignore[arg-type]
    return ctx


def test_ram_and_gpu_memory_near_the_limit_warn_once_each() -> None:
    sample = {"time": 1300.0, "ram_used": 97e9, "ram_total": 100e9, "rss": 60e9, "disk_free": 1e12,
              "gpu0_mem": 50e9, "gpu0_mem_total": 80e9, "gpu1_mem": 79.5e9, "gpu1_mem_total": 80e9}
    ctx = diagnose([sample])
    assert [(a["rule"], a.get("gpu")) for a in ctx.alerts] == [("ram", None), ("gpu_mem", "1")]
    assert ctx.alerts[0]["message"].startswith("host RAM 97% in use (97.0GB of 100.0GB)")
    assert not ctx.stopped
    stop = diagnose([sample], {"ram": {"above": "99%"}, "gpu_mem": "stop"})
    assert [a["rule"] for a in stop.alerts] == ["gpu_mem"] and stop.stopped


def test_disk_filling_before_the_time_limit_warns() -> None:
    # 1 GB/s lost, 100 GB left: full in 100 s; the run has 1 h left
    samples = [{"time": 1200.0 + i * 10, "disk_free": 200e9 - i * 10e9} for i in range(11)]
    ctx = diagnose(samples, time_limit=3600)
    assert [a["rule"] for a in ctx.alerts] == ["disk"]
    assert "full in 1m40s" in ctx.alerts[0]["message"] or "full in 100s" in ctx.alerts[0]["message"]
    slow = [{"time": 1200.0 + i * 10, "disk_free": 200e9 - i * 1e6} for i in range(11)]
    assert diagnose(slow, time_limit=3600).alerts == []


@pytest.mark.parametrize("section, message", [
    ("diagnostics: {nann: stop}", "unknown diagnostic rule 'nann'"),
    ("diagnostics: {nan: explode}", "action 'explode' is not warn, stop or off"),
    ("diagnostics: {plateau: {patience: -3}}", "diagnostics.plateau.patience must be a whole number >= 0"),
    ("diagnostics: {divergence: {factor: 0.5}}", "diagnostics.divergence.factor must be a number > 1"),
    ("diagnostics: {stall: {after: 10}}", "diagnostics.stall.after"),
    ("diagnostics: {ram: {above: 150%}}", "diagnostics.ram.above must be a fraction"),
    ("diagnostics: {plateau: {patiance: 3}}", "unknown setting 'patiance' of rule 'plateau'"),
    ("diagnostics: 5", "'diagnostics' must be a mapping"),
])
def test_bad_rules_are_one_line_exit_2_nothing_written(tmp_path: Path, section: str, message: str) -> None:
    repo = make_repo(tmp_path / "repo", {"train.py": "print(1)\n",
                                          "c.yaml": f"command: python train.py\n{section}\n"})
    before = all_refs(repo)
    proc = gitexp(repo, "run", "c.yaml", check=False)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert proc.stderr.startswith("error: c.yaml:2: ")
    assert all_refs(repo) == before
