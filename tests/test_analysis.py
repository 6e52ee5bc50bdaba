"""Issue #12: plot, compare, report, time analysis, sparklines in log, and gitexp.log_norms.

The plots, the report and the comparisons are made from a sweep recorded by a real run of the
example training (examples/mlp, a NumPy MLP) through ``git exp run --sweep``; the weight-norm
API runs on a real PyTorch module (CPU) and on NumPy arrays.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Dict

import pytest

from conftest import ROOT, git, gitexp, make_repo

MLP = ROOT / "examples" / "mlp"
SWEEP = ("--sweep", "lr=0.05,0.5", "--sweep", "layers=1,2", "-p", "epochs=12", "--jobs", "2")


def hermetic(home: Path) -> Dict[str, str]:
    """The environment conftest's autouse fixture gives a test, for module-scoped fixtures."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("GITEXP_METRICS_FILE", "GITEXP_RUNS_DIR", "GITEXP_NOTES_INTERVAL", "CUDA_VISIBLE_DEVICES")}
    env.update({"HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "Test",
                "GIT_AUTHOR_EMAIL": "test@example.com", "GIT_COMMITTER_NAME": "Test",
                "GIT_COMMITTER_EMAIL": "test@example.com", "PYTHONPATH": str(ROOT), "GITEXP_KILL_GRACE": "3"})
    return env


def make_mlp_sweep(path: Path, env: Dict[str, str]) -> Dict[str, Any]:
    """A repository with the MLP example and a 2 x 2 sweep of it, really trained."""
    path.mkdir(parents=True)
    shutil.copy(MLP / "train.py", path / "train.py")
    # the interpreter running the tests (it has NumPy), whatever `python` is on the PATH
    config = (MLP / "config.yaml").read_text()
    assert "command: python train.py" in config
    (path / "config.yaml").write_text(config.replace("command: python ", f"command: {sys.executable} "))

    def run(*args: str) -> subprocess.CompletedProcess:
        proc = subprocess.run(args, cwd=path, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"{args}: {proc.stdout}\n{proc.stderr}"
        return proc

    run("git", "init", "-q", "-b", "main")
    run("git", "add", "-A")
    run("git", "commit", "-q", "-m", "mlp")
    run(sys.executable, "-m", "gitexp", "run", "config.yaml", *SWEEP)
    exps = json.loads(run(sys.executable, "-m", "gitexp", "log", "--format", "json").stdout)
    assert len(exps) == 4 and all(e["status"] == "finished" for e in exps), exps
    groups = {e["group"] for e in exps}
    assert len(groups) == 1
    return {"path": path, "exps": sorted(exps, key=lambda e: e["name"]), "group": groups.pop()}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    base = tmp_path_factory.mktemp("mlp-sweep")
    home = base / "home"
    home.mkdir()
    return make_mlp_sweep(base / "repo", hermetic(home))


def exp_named(sweep: Dict[str, Any], needle: str) -> Dict[str, Any]:
    return next(e for e in sweep["exps"] if needle in e["name"])


# -- git exp plot ---------------------------------------------------------------------------------------
def test_plot_draws_the_latest_sweep_in_the_terminal(sweep: Dict[str, Any]) -> None:
    proc = gitexp(sweep["path"], "plot", "val_err", "--width", "80", "--height", "16")
    out = proc.stdout
    assert "val_err" in out and "┌" in out and "step" in out
    for exp in sweep["exps"]:  # every run of the sweep in the key, with its own marker
        assert f"{exp['name']} ({exp['id'][:8]})" in out
    assert "\x1b[" not in out  # not a terminal: no colour codes
    # plotext drew points inside the frame (not only the frame and the key)
    body = [line for line in out.splitlines() if line.strip().startswith(("│", "0", "┤")) or "┤" in line]
    assert any(ch in "".join(body) for ch in "•+x*"), out


def test_plot_to_png_and_svg_with_options(sweep: Dict[str, Any], tmp_path: Path) -> None:
    a, b = sweep["exps"][0]["id"][:8], sweep["exps"][3]["id"][:8]
    png = tmp_path / "curves.png"
    proc = gitexp(sweep["path"], "plot", "val_err", "train_loss", a, b, "-o", str(png), "--x", "time",
                  "--log-y", "--smooth", "0.6")
    assert "wrote" in proc.stderr
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    from PIL import Image  # matplotlib's own dependency

    with Image.open(png) as image:
        colors = image.convert("RGB").getcolors(maxcolors=1_000_000) or []
    assert len(colors) > 50  # curves, text and axes, not a blank canvas
    svg = tmp_path / "curves.svg"
    gitexp(sweep["path"], "plot", "val_loss", "-o", str(svg), "--x", "step")
    text = svg.read_text()
    assert text.count("<path") > 10 and "val_loss" in text


def test_plot_txt_and_group_selection(sweep: Dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "c.txt"
    gitexp(sweep["path"], "plot", "train_loss", "-g", sweep["group"], "-o", str(out), "--width", "70",
           "--height", "12", "--smooth", "0.5")
    text = out.read_text()
    assert "train_loss (smoothed)" in text and text.count("(") >= 4
    assert all(len(line) <= 72 for line in text.splitlines()[:14])


def test_plot_bad_input_is_one_line_exit_2_and_writes_nothing(sweep: Dict[str, Any], tmp_path: Path) -> None:
    repo = sweep["path"]
    target = tmp_path / "x.png"
    cases = [
        (["plot", "val_er", "-o", str(target)], "did you mean 'val_err'"),
        (["plot", "accuracy", "-o", str(target)], "neither a metric nor an experiment id (metrics: train_loss, val_err, val_loss)"),
        (["plot", "val_err", "-o", str(tmp_path / "missing" / "x.png")], "does not exist"),
        (["plot", "val_err", "-o", "/dev/null/x.png"], "cannot write"),
        (["plot", "val_err", "-o", str(tmp_path)], "cannot"),
        (["plot", "val_err", "-o", str(tmp_path / "x.gif")], "cannot tell what to write"),
        (["plot", "val_err", "deadbeef", "-o", str(target)], "neither a metric nor an experiment id"),
        (["plot", "val_err", "-g", "nosuchgroup", "-o", str(target)], "no experiment in group 'nosuchgroup'"),
        (["plot", "val_err", "--x", "epoch", "-o", str(target)], "no selected experiment logged an epoch"),
        (["report", "-o", str(tmp_path / "missing" / "r.html")], "does not exist"),
        (["report", "-m", "nope", "-o", str(tmp_path / "r.html")], "no selected experiment has a metric 'nope' (they have: train_loss, val_err, val_loss)"),
        (["compare", sweep["exps"][0]["id"][:8], "zzzzzzzz"], "no experiment 'zzzzzzzz'"),
        (["compare", sweep["exps"][0]["id"][:8]], "at least two"),
    ]
    for args, said in cases:
        proc = gitexp(repo, *args, check=False)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and said in lines[0], (args, proc.stderr)
        assert lines[0].startswith("error: ")
    assert sorted(os.listdir(tmp_path)) == [], os.listdir(tmp_path)


def test_a_metric_only_other_experiments_have_is_refused(sweep: Dict[str, Any], tmp_path: Path) -> None:
    """Selected: one sweep run; the metric exists only outside the selection."""
    from gitexp import plots
    from gitexp.errors import BadInput
    from gitexp.notes import Experiment

    runs = [Experiment("a" * 40, "a", {"metrics": {"val_err": {"count": 3}}}),
            Experiment("b" * 40, "b", {"metrics": {"loss": {"count": 3}}, "goals": {"acc": "maximize"}})]
    with pytest.raises(BadInput) as caught:
        plots.check_metrics(runs[:1], ["loss"])
    assert "no selected experiment has a metric 'loss' (they have: val_err)" in str(caught.value)
    assert plots.known_metrics(runs) == ["val_err", "acc", "loss"]


def test_missing_drawing_libraries_say_what_to_install(sweep: Dict[str, Any], tmp_path: Path) -> None:
    shadow = tmp_path / "shadow"
    for name in ("matplotlib", "plotext"):
        (shadow / name).mkdir(parents=True)
        (shadow / name / "__init__.py").write_text(f"raise ImportError('no {name} here')\n")
    env = {"PYTHONPATH": f"{shadow}{os.pathsep}{ROOT}"}
    out = tmp_path / "out"
    out.mkdir()
    proc = gitexp(sweep["path"], "plot", "val_err", "-o", str(out / "c.png"), check=False, env=env)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "error: pictures (.png, .svg, .pdf) need matplotlib, which is not installed "
        "(pip install 'gitexp[plot]' (or: pip install matplotlib))"]
    proc = gitexp(sweep["path"], "plot", "val_err", check=False, env=env)
    assert proc.returncode == 2 and "needs plotext" in proc.stderr and "pip install" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    # the report needs neither
    gitexp(sweep["path"], "report", "-o", str(out / "r.html"), env=env)
    assert sorted(os.listdir(out)) == ["r.html"]


def test_plot_watch_follows_a_running_run_until_it_ends(repo: Path) -> None:
    (repo / "slow.py").write_text(textwrap.dedent('''
        import time, gitexp
        for step in range(1, 16):
            gitexp.log(step=step, val_err=1.0 / step)
            time.sleep(0.2)
    '''))
    (repo / "slow.yaml").write_text("name: slow\ncommand: python slow.py\nmetrics:\n  val_err: {goal: minimize}\n")
    sha = gitexp(repo, "run", "slow.yaml", "--detach").stdout.strip()
    start = time.time()
    proc = gitexp(repo, "plot", "val_err", sha[:8], "--watch", "--interval", "0.3", "--width", "60",
                  "--height", "10", timeout=90)
    assert proc.returncode == 0
    drawings = proc.stdout.count("slow (")  # the key line, once per drawing
    assert drawings >= 3, proc.stdout
    status = json.loads(gitexp(repo, "log", "--format", "json").stdout)[0]["status"]
    assert status == "finished" and time.time() - start < 80


# -- time analysis, sparklines ------------------------------------------------------------------------------
def test_show_has_the_time_analysis(sweep: Dict[str, Any]) -> None:
    exp = exp_named(sweep, "lr=0.5,layers=2")
    out = gitexp(sweep["path"], "show", exp["id"][:10], "--reach", "val_err=0.5").stdout
    assert "\ntime:\n" in out and "step time" in out and "steps/s" in out and "start-up" in out
    assert "steps 1..12 (12 with a time)" in out
    assert "val_err best: step" in out and "val_err <= 0.5: step" in out
    data = json.loads(gitexp(sweep["path"], "show", exp["id"][:10], "--format", "json").stdout)
    timing = data["timing"]
    assert timing["points"] == 12 and timing["first_step"] == 1 and timing["last_step"] == 12
    assert timing["steps_per_s"] > 0 and 0 < timing["step_time"] < 60
    assert timing["startup"] >= 0 and timing["span"] > 0
    best = next(r for r in data["reached"] if r["metric"] == "val_err")
    assert best["step"] == data["metrics"]["val_err"]["best_step"] and best["seconds"] > 0
    bad = gitexp(sweep["path"], "show", exp["id"][:10], "--reach", "acc=1", check=False)
    assert bad.returncode == 2 and "has no metric 'acc' (it has: train_loss, val_err, val_loss)" in bad.stderr


def test_timing_units() -> None:
    from gitexp import timing

    t0 = 1000.0
    history = [{"step": s, "time": t0 + 2 + s * 0.5, "loss": 1 / s, "epoch": (s - 1) // 4} for s in range(1, 13)]
    for record in history[6:]:
        record["time"] += 5  # a pause before step 7 (evaluation): the median ignores it, the mean does not
    facts = timing.analyze(history, {"started": t0, "duration": 20.0})
    assert facts["step_time"] == pytest.approx(0.5)
    assert facts["step_time_mean"] == pytest.approx(10.5 / 11)
    assert facts["steps_per_s"] == pytest.approx(11 / 10.5)
    assert facts["startup"] == pytest.approx(2.5) and facts["duration"] == 20.0
    # epochs end at t0+4, t0+11, t0+13: gaps 7 and 2
    assert facts["epochs"] == 3 and facts["epoch_time"] == pytest.approx(4.5)
    hit = timing.time_to(history, {"started": t0}, "loss", 0.2, "minimize")
    assert hit == {"step": 5, "seconds": pytest.approx(4.5), "value": 0.2}
    assert timing.time_to(history, {"started": t0}, "loss", 0.01, "minimize") is None
    assert timing.time_to(history, {}, "loss", 0.5, None)["step"] == 2  # no goal: crossing from above
    assert timing.analyze([], {})["points"] == 0


def test_log_sparkline_from_summaries_and_old_notes_show_nothing(sweep: Dict[str, Any], tmp_path: Path) -> None:
    out = gitexp(sweep["path"], "log", "-m", "val_err").stdout
    header = out.splitlines()[0]
    assert "val_err curve" in header
    for line in out.splitlines()[2:]:
        assert any(ch in line for ch in "▁▂▃▄▅▆▇█"), line
    assert "curve" not in gitexp(sweep["path"], "log", "-m", "val_err", "--no-spark").stdout
    # The summary holds the downsampled curve; listing reads no history note.
    note = json.loads(git(sweep["path"], "notes", "--ref=exps", "show", sweep["exps"][0]["id"]))
    spark = note["metrics"]["val_err"]["spark"]
    assert isinstance(spark, str) and len(spark.split(",")) == 12
    # Old notes (no spark): an empty cell, no error. Copy the repository and strip the field.
    old = tmp_path / "old"
    shutil.copytree(sweep["path"], old, symlinks=True)
    from gitexp.notes import Store
    from gitexp.repo import Repo

    store = Store(Repo.discover(str(old)))
    first = sweep["exps"][0]["id"]

    def strip(summary: Dict[str, Any]) -> Dict[str, Any]:
        for entry in summary["metrics"].values():
            entry.pop("spark", None)
        return summary
    store.update_summary(first, strip)
    lines = gitexp(old, "log", "-m", "val_err").stdout.splitlines()
    row = next(line for line in lines if line.startswith(first[:8]))
    assert not any(ch in row for ch in "▁▂▃▄▅▆▇█")
    assert sum(any(ch in line for ch in "▁▂▃▄▅▆▇█") for line in lines) == 3


def test_spark_series_is_small_and_safe() -> None:
    from gitexp.metrics import parse_spark, spark_series, spark_text, summarize

    values = [1.0 / (1 + i) for i in range(10_000)]
    series = spark_series(values)
    assert len(series) == 16 and series[0] > series[-1]
    text = spark_text(series)
    assert len(text) < 16 * 10 and parse_spark(text) == series
    assert spark_series([float("nan")] * 4 + [2.0] * 4, points=2) == [None, 2.0]
    assert parse_spark("1,,x") == [] and parse_spark(["1"]) == [] and parse_spark("9" * 5000) == []
    assert parse_spark("1,,inf") == [1.0, None, None]
    summary = summarize([{"step": i, "loss": float(i)} for i in range(1, 4)], {})
    assert summary["loss"]["spark"] == "1,2,3"


# -- git exp compare ---------------------------------------------------------------------------------------
def test_compare_experiments_that_differ_in_code_and_params(sweep: Dict[str, Any], tmp_path: Path) -> None:
    work = tmp_path / "work"
    shutil.copytree(sweep["path"], work, symlinks=True)
    train = work / "train.py"
    train.write_text(train.read_text().replace("N_CLASSES = 3\n", "N_CLASSES = 3\nLABEL_NOISE = 0.0  # new\n"))
    (work / "notes.txt").write_text("an extra file\n")
    other = gitexp(work, "run", "config.yaml", "-p", "lr=0.3", "-p", "epochs=6", "-p", "hidden=8")
    assert other.returncode == 0
    exps = json.loads(gitexp(work, "log", "--format", "json").stdout)
    new = next(e for e in exps if e["params"]["lr"] == 0.3)
    base = exp_named(sweep, "lr=0.5,layers=2")
    mid = exp_named(sweep, "lr=0.05,layers=2")
    out = gitexp(work, "compare", base["id"][:8], mid["id"][:8], new["id"][:8]).stdout
    assert f"A = {base['name']} ({base['id'][:10]})" in out and f"C = {new['name']}" in out
    lines = out.splitlines()
    lr_row = next(line for line in lines if line.startswith("lr "))
    assert lr_row.split() == ["lr", "0.5", "0.05", "0.3"]
    assert next(line for line in lines if line.startswith("hidden ")).split() == ["hidden", "32", "32", "8"]
    assert "same in all: layers=2" in out
    assert "code B vs A: identical" in out
    assert "code C vs A: 2 file(s) changed, +2 -0: notes.txt (+1 -0), train.py (+1 -0)" in out
    best_row = next(line for line in lines if line.startswith("val_loss best"))
    assert best_row.count("*") == 1
    data = json.loads(gitexp(work, "compare", base["id"][:8], new["id"][:8], "--format", "json").stdout)
    assert data["params"] == {"lr": [0.5, 0.3], "epochs": [12, 6], "hidden": [32, 8]}
    assert data["same_params"] == {"layers": 2}
    assert {f["path"] for f in data["code"][0]["files"]} == {"train.py", "notes.txt"}
    val = data["metrics"]["val_err"]["values"]
    assert val[0]["best"] == base["metrics"]["val_err"]["best"] and val[0]["best_step"] is not None
    assert val[1]["last_step"] == 6
    assert data["experiments"][0]["steps_per_s"] > 0


# -- git exp report -----------------------------------------------------------------------------------------
def test_report_of_a_sweep_is_one_offline_file(sweep: Dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    proc = gitexp(sweep["path"], "report", "--group", sweep["group"], "-o", str(out))
    assert "wrote" in proc.stderr and "4 experiment(s)" in proc.stderr
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    import re

    # nothing to fetch: no external src/href, no @import, no url(
    assert not re.search(r'(src|href)="(https?:)?//', page) and "@import" not in page and "url(" not in page
    assert page.count('<tr><td data-v="') == 4  # the table: one row per run
    for exp in sweep["exps"]:
        assert f'id="run-{exp["id"]}"' in page and f'href="#run-{exp["id"]}"' in page
    assert page.count('class="curve"') >= 4 * 3  # 3 metrics x 4 runs, plus the mini charts
    for section in ("Experiments", "Alerts", "Curves", "Time", "Resources", "Runs"):
        assert f">{section}</h2>" in page
    assert "time to best" in page and "steps/s" in page


def test_report_escapes_notes_and_shows_resources_and_alerts(tmp_path: Path) -> None:
    """Notes are untrusted: names, params, alerts and log tails are escaped. Resources and alerts
    in the notes (recorded by another part of gitexp) are shown as they are."""
    from gitexp import report
    from gitexp.notes import Experiment

    from gitexp.repo import Repo

    repo = Repo.discover(str(make_repo(tmp_path / "repo")))

    evil = "<script>alert(1)</script>"
    summary = {"name": "x", "status": "failed", "reason": evil, "created": 1.0e9, "group": "g",
               "params": {"opt": evil}, "goals": {"loss": "minimize"},
               "metrics": {"loss": {"best": 0.5, "last": float("nan"), "count": 3, "goal": "minimize", "best_step": 2}},
               "alerts": [{"level": "warning", "message": "GPU memory at 97% " + evil}, "disk nearly full"],
               "resources": {"peak_ram": 1.5e9, "gpu": {"util": 0.9},
                             "samples": [{"time": 1.0e9 + i, "cpu": i * 10.0} for i in range(5)]}}
    exp = Experiment("c" * 40, "x", summary)
    history = [{"step": 1, "time": 1.0e9 + 1, "loss": 1.0}, {"step": 2, "time": 1.0e9 + 2, "loss": 0.5},
               {"step": 3, "time": 1.0e9 + 3, "loss": float("nan")}]
    details = {"facts": {"hostname": "node1", "cpus": 8, "ram": 3.2e10, "gpus": ["A100"]}, "log_tail": evil + "\nend"}
    page = report.render(repo, [exp], {exp.sha: "failed"}, {exp.sha: history}, {exp.sha: details}, ["loss"],
                         "group g")
    assert evil not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "GPU memory at 97%" in page and "disk nearly full" in page
    assert "loss became NaN at step 3" in page and "failed" in page
    assert "node1" in page and "A100" in page and "peak_ram" in page and "gpu.util" in page
    assert ">cpu (%)</figcaption>" in page  # the samples drawn over time, in units
    assert page.count("<script>") == 1


# -- gitexp.log_norms -------------------------------------------------------------------------------------
def test_norms_of_numpy_arrays_by_layer() -> None:
    np = pytest.importorskip("numpy")
    from gitexp import norms

    weights = {"enc.w": np.full((3, 4), 2.0, dtype=np.float32), "enc.b": np.ones(4), "head": np.array([3.0, 4.0]),
               "big": np.full(10, 300.0, dtype=np.float16), "note": "not an array"}
    got = norms.norms(weights, grads={"enc.w": np.ones((3, 4))})
    assert got["weight_norm/enc"] == pytest.approx(np.sqrt(12 * 4 + 4))
    assert got["weight_norm/head"] == pytest.approx(5.0)
    assert got["weight_norm/big"] == pytest.approx(300 * np.sqrt(10))  # float16 squares would overflow
    assert got["weight_norm"] == pytest.approx(np.sqrt(52 + 25 + 900_000))
    assert got["grad_norm"] == pytest.approx(np.sqrt(12)) and got["grad_norm/enc"] == pytest.approx(np.sqrt(12))
    per_tensor = norms.norms(weights, by="tensor")
    assert per_tensor["weight_norm/enc.w"] == pytest.approx(np.sqrt(48))
    assert norms.norms([("a.w", [3.0, 4.0])], prefix="model/") == {"model/weight_norm": 5.0, "model/weight_norm/a": 5.0}
    with pytest.raises(TypeError):
        norms.norms(42)


def _need_torch() -> None:
    try:
        import torch  # noqa: F401
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("torch is not installed (scripts/bootstrap.sh installs the CPU build)")
        pytest.skip("torch is not installed here (scripts/bootstrap.sh installs the CPU build)")


TORCH_TRAIN = textwrap.dedent('''
    import json, os, torch, gitexp
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    expected = []
    for step in range(1, 6):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        got = gitexp.log_norms(model, step=step)
        gitexp.log(step=step, loss=loss.item())
        w0 = torch.cat([model[0].weight.detach().flatten(), model[0].bias.detach().flatten()]).norm().item()
        g2 = torch.cat([model[2].weight.grad.flatten(), model[2].bias.grad.flatten()]).norm().item()
        expected.append({"step": step, "w0": w0, "g2": g2, "got": got})
        opt.step()
    with open(os.path.join(gitexp.output_dir() or ".", "expected.json"), "w") as f:
        json.dump(expected, f)
''')


def test_log_norms_of_a_real_pytorch_module_are_stored_as_metrics(repo: Path) -> None:
    _need_torch()
    (repo / "torch_train.py").write_text(TORCH_TRAIN)
    (repo / "torch.yaml").write_text(f"name: tnorm\ncommand: {sys.executable} torch_train.py\n"
                                     "metrics:\n  loss: {goal: minimize}\n")
    gitexp(repo, "run", "torch.yaml", timeout=300)
    sha = json.loads(gitexp(repo, "log", "--format", "json").stdout)[0]["id"]
    history = json.loads(gitexp(repo, "metrics", sha[:8], "--format", "json").stdout)
    outdir = repo / ".git" / "gitexp" / "runs" / sha / "out"
    expected = json.loads((outdir / "expected.json").read_text())
    assert [r["step"] for r in history] == [1, 2, 3, 4, 5]
    for record, want in zip(history, expected):
        assert record["weight_norm/0"] == pytest.approx(want["w0"], rel=1e-5)
        assert record["grad_norm/2"] == pytest.approx(want["g2"], rel=1e-5)
        assert set(want["got"]) == {"weight_norm", "weight_norm/0", "weight_norm/2",
                                    "grad_norm", "grad_norm/0", "grad_norm/2"}
        assert record["weight_norm"] == pytest.approx(want["got"]["weight_norm"])
    summary = json.loads(git(repo, "notes", "--ref=exps", "show", sha))
    assert summary["metrics"]["grad_norm/0"]["count"] == 5
    out = gitexp(repo, "plot", "grad_norm/0", "weight_norm", "--width", "60", "--height", "10").stdout
    assert "grad_norm/0" in out and "weight_norm" in out


def test_log_norms_outside_gitexp_returns_values_and_records_nothing(tmp_path: Path) -> None:
    code = ("import sys, gitexp; print(sorted(m for m in ('numpy', 'torch') if m in sys.modules)); "
            "print(gitexp.log_norms([('a.w', [3.0, 4.0])], step=1))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=True)
    first, second = proc.stdout.splitlines()
    assert first == "[]"  # importing gitexp imports neither
    assert second == "{'weight_norm': 5.0, 'weight_norm/a': 5.0}"
    assert os.listdir(tmp_path) == []
