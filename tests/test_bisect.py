"""Issue #20: ``git exp bisect`` on real repositories, and results over seeds (``--over``).

The trainer is deterministic: it reads the level of its metric from a tracked file
(``level.txt``), adds a fixed offset per seed times the noise in ``noise.txt``, and crashes
where ``crash.txt`` exists. Commit 5 of 8 raises the level from 0.1 to 0.3.
"""
from __future__ import annotations

import json
import math
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

from conftest import all_refs, git, gitexp, log_json, wait_for
from sshd import ssh_host  # noqa: F401  (pytest fixture)
from test_ssh_remote import far_python  # noqa: F401  (pytest fixture)

TRAIN = textwrap.dedent('''
    import os, sys, time
    level = float(open("level.txt").read())
    noise = float(open("noise.txt").read())
    seed = int(sys.argv[1])
    if os.path.exists("crash.txt"):
        sys.exit("crash.txt says crash")
    time.sleep(float(os.environ.get("BISECT_TEST_DELAY", "0")))
    offset = [0.0, 1.0, -1.0, 0.5, -0.5][seed % 5]
    for step in range(1, 4):
        print(f"step {step} val_err={level + noise * offset + 0.01 * (3 - step):.6f}", flush=True)
''')

CONFIG = textwrap.dedent(f'''
    name: toy
    command: {sys.executable} train.py {{seed}}
    params:
      seed: 0
    metrics:
      val_err: {{regex: 'val_err=([0-9.eE+-]+)', goal: minimize}}
''')


def make_history(path: Path, crash_at: Optional[int] = None, noise: float = 0.0) -> Dict[str, Any]:
    """8 commits; commit 5 makes val_err worse; GOOD run on commit 1, BAD on commit 8."""
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    (path / "train.py").write_text(TRAIN)
    (path / "config.yaml").write_text(CONFIG)
    (path / "level.txt").write_text("0.1\n")
    (path / "noise.txt").write_text(f"{noise}\n")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "commit 1: the trainer")
    shas = {1: git(path, "rev-parse", "HEAD").strip()}
    for k in range(2, 9):
        (path / "history.txt").write_text(f"change {k}\n")
        if k == 5:
            (path / "level.txt").write_text("0.3\n")
        if crash_at == k:
            (path / "crash.txt").write_text("x\n")
        elif crash_at is not None and k == crash_at + 1:
            (path / "crash.txt").unlink()
        git(path, "add", "-A")
        git(path, "commit", "-q", "-m", f"commit {k}" + (": make it worse" if k == 5 else ""))
        shas[k] = git(path, "rev-parse", "HEAD").strip()
    git(path, "checkout", "-q", shas[1])
    good = gitexp(path, "run", "config.yaml", "--name", "good").stderr
    git(path, "checkout", "-q", "main")
    bad = gitexp(path, "run", "config.yaml", "--name", "bad").stderr
    assert "finished" in good and "finished" in bad, (good, bad)
    return {"path": path, "shas": shas, "group": f"bisect-{shas[1][:7]}-{shas[8][:7]}"}


def bisect_json(path: Path, *args: str, env: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    proc = gitexp(path, "bisect", "good", "bad", "--metric", "val_err", "--format", "json", *args, env=env,
                  timeout=300)
    return json.loads(proc.stdout)


@pytest.fixture
def history(tmp_path: Path) -> Dict[str, Any]:
    return make_history(tmp_path / "repo")


def test_bisect_finds_commit_5_in_three_probes_on_the_tracked_trees(history: Dict[str, Any]) -> None:
    path, shas = history["path"], history["shas"]
    (path / "level.txt").write_text("0.9\n")  # an uncommitted edit: no probe may see it
    proc = gitexp(path, "bisect", "good", "bad", "--metric", "val_err", timeout=300)
    assert f"first bad commit: {shas[5]}" in proc.stdout
    assert "commit 5: make it worse" in proc.stdout and "Test <test@example.com>" in proc.stdout
    assert "0.1 at" in proc.stdout and "0.3 at" in proc.stdout
    progress = [line for line in proc.stderr.splitlines() if line.startswith("gitexp: bisect: round")]
    assert 1 <= len(progress) <= 3, proc.stderr
    rows = [r for r in log_json(path) if r["group"] == history["group"]]
    assert len(rows) == len(progress) and all(r["status"] == "finished" for r in rows)
    probed = {git(path, "rev-parse", f"{r['id']}^").strip() for r in rows}
    assert probed <= {shas[k] for k in range(2, 8)}
    for row in rows:  # GOOD's config on the probed commit's own tree
        assert git(path, "show", f"{row['id']}:level.txt").strip() in ("0.1", "0.3")
        assert git(path, "diff", "--stat", f"{row['id']}^", row["id"], "--", ".", ":!.gitexp").strip() == ""
    result = bisect_json(path)  # again: every probe is reused, none run
    assert result["first_bad"]["sha"] == shas[5] and result["probes_run"] == 0
    assert all(p["reused"] for p in result["probes"])
    assert len([r for r in log_json(path) if r["group"] == history["group"]]) == len(rows)


def test_bisect_parallel_takes_fewer_rounds(history: Dict[str, Any]) -> None:
    result = bisect_json(history["path"], "--parallel", "3")
    assert result["first_bad"]["sha"] == history["shas"][5]
    assert result["rounds"] <= 2 < 3  # sequentially: 3 rounds of one probe
    assert max(len([p for p in result["probes"] if p["round"] == r]) for r in (1, 2)) == 3
    rows = [r for r in log_json(history["path"]) if r["group"] == history["group"]]
    assert len(rows) == len(result["probes"]) and all(r["status"] == "finished" for r in rows)


def test_bisect_with_a_crashing_commit_names_the_range(tmp_path: Path) -> None:
    h = make_history(tmp_path / "repo", crash_at=4)
    shas = h["shas"]
    proc = gitexp(h["path"], "bisect", "good", "bad", "--metric", "val_err", timeout=300)
    assert "first bad commit is one of these 2" in proc.stdout, proc.stdout
    assert shas[4][:10] in proc.stdout and shas[5][:10] in proc.stdout
    assert "skipped: failed" in proc.stdout
    result = bisect_json(h["path"])
    assert [c["sha"] for c in result["candidates"]] == [shas[4], shas[5]] and result["first_bad"] is None
    assert result["last_good"]["sha"] == shas[3]
    skipped = [p for p in result["probes"] if p["verdict"] == "skip"]
    assert [p["commit"]["sha"] for p in skipped] == [shas[4]]


def test_bisect_rerun_after_ctrl_c_reuses_recorded_probes(history: Dict[str, Any]) -> None:
    import os

    path, group = history["path"], history["group"]
    env = {**os.environ, "BISECT_TEST_DELAY": "1.5"}
    proc = subprocess.Popen([sys.executable, "-m", "gitexp", "bisect", "good", "bad", "--metric", "val_err"],
                            cwd=path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: [r for r in log_json(path) if r["group"] == group and r["status"] == "finished"],
                 timeout=120)
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    before = [r for r in log_json(path) if r["group"] == group]
    done = {r["id"] for r in before if r["status"] == "finished"}
    assert 1 <= len(done) < 3
    result = bisect_json(path)
    assert result["first_bad"]["sha"] == history["shas"][5]
    reused = [p for p in result["probes"] if p["reused"]]
    assert {p["runs"][0]["id"] for p in reused} == done
    after = [r for r in log_json(path) if r["group"] == group and r["status"] == "finished"]
    assert len(after) == len(result["probes"])  # no finished probe was run twice


def test_bisect_repeat_compares_means_and_says_when_sides_overlap(tmp_path: Path) -> None:
    quiet = make_history(tmp_path / "quiet", noise=0.05)
    result = bisect_json(quiet["path"], "--repeat", "3")
    assert result["first_bad"]["sha"] == quiet["shas"][5] and result["overlap"] is None
    for probe in result["probes"]:
        assert len(probe["runs"]) == 3 and len(probe["values"]) == 3
        assert math.isclose(probe["mean"], 0.1 if probe["verdict"] == "good" else 0.3, abs_tol=1e-6)
    seeds = {json.loads(gitexp(quiet["path"], "show", r["id"], "--format", "json").stdout)["params"]["seed"]
             for r in log_json(quiet["path"]) if r["group"] == quiet["group"]}
    assert seeds == {0, 1, 2}
    noisy = make_history(tmp_path / "noisy", noise=0.15)
    proc = gitexp(noisy["path"], "bisect", "good", "bad", "--metric", "val_err", "--repeat", "3", timeout=300)
    assert f"first bad commit: {noisy['shas'][5]}" in proc.stdout
    assert "the two sides overlap" in proc.stdout and "not trustworthy" in proc.stdout


def test_bisect_bad_input_is_one_line_exit_2_and_records_nothing(history: Dict[str, Any]) -> None:
    path = history["path"]
    other = path / "other.yaml"
    other.write_text(CONFIG.replace("train.py {seed}", "train.py {seed} --other"))
    git(path, "add", "other.yaml")
    git(path, "commit", "-q", "-m", "another config")
    gitexp(path, "run", "other.yaml", "--name", "other", check=False)
    refs = all_refs(path)
    cases: List[List[str]] = [
        ["good", "other", "--metric", "val_err"],  # different configs
        ["good", "good", "--metric", "val_err"],  # no commits between them
        ["bad", "good", "--metric", "val_err"],  # BAD not after GOOD
        ["good", "bad", "--metric", "nope"],  # a metric neither has
        ["good", "bad", "--metric", "val_err", "--threshold", "0.5"],  # wrong side of both
        ["good", "bad", "--metric", "val_err", "--threshold", "0.05"],
        ["good", "bad", "--metric", "val_err", "--repeat", "3", "--seed-param", "nope"],
        ["good", "bad", "--metric", "val_err", "--on", "somewhere", "--queue"],
        ["good", "bad", "--metric", "val_err", "--on", "nowhere"],
        ["good", "nobody", "--metric", "val_err"],
    ]
    expected = ["different configs", "no commits between", "not after", "neither GOOD nor BAD", "--threshold 0.5",
                "--threshold 0.05", "no whole-number param 'nope'", "--on somewhere with --queue",
                "no run target named 'nowhere'", "no experiment 'nobody'"]
    for args, text in zip(cases, expected):
        proc = gitexp(path, "bisect", *args, check=False)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2, (args, proc.stderr)
        assert len(lines) == 1 and lines[0].startswith("error:") and text in lines[0], (args, proc.stderr)
        assert all_refs(path) == refs, args


# -- results over seeds (--over) -----------------------------------------------------------------
SEEDED = textwrap.dedent('''
    import sys
    lr, seed = sys.argv[1], int(sys.argv[2])
    if seed == 3:
        sys.exit("seed 3 crashes")
    values = {"0.1": [1.0, 2.0, 3.0], "0.2": [3.0, 4.0, 5.0]}[lr]
    print(f"step 1 val_err={values[seed] + 1:.6f}", flush=True)
    print(f"step 2 val_err={values[seed]:.6f}", flush=True)
''')
SEEDED_CONFIG = textwrap.dedent(f'''
    name: seeded
    command: {sys.executable} t.py {{lr}} {{seed}}
    params: {{lr: 0.1, seed: 0}}
    metrics:
      val_err: {{regex: 'val_err=([0-9.]+)', goal: minimize}}
''')


@pytest.fixture
def seeded(tmp_path: Path) -> Path:
    path = tmp_path / "seeded"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    (path / "t.py").write_text(SEEDED)
    (path / "config.yaml").write_text(SEEDED_CONFIG)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "seeded")
    gitexp(path, "run", "config.yaml", "--sweep", "lr=0.1,0.2", "--sweep", "seed=0,1,2,3", "--jobs", "2",
           "--group", "seeds", check=False, timeout=300)
    return path


def hand_stats(values: List[float]) -> Dict[str, float]:
    n = len(values)
    mean = sum(values) / n
    return {"n": n, "mean": mean, "std": math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))}


def test_log_over_seed_folds_runs_into_mean_std_and_counts_failures_apart(seeded: Path) -> None:
    rows = json.loads(gitexp(seeded, "log", "--over", "seed", "--format", "json").stdout)
    assert len(rows) == 2
    by_lr = {r["params"]["lr"]: r for r in rows}
    for lr, values in ((0.1, [1.0, 2.0, 3.0]), (0.2, [3.0, 4.0, 5.0])):
        row, hand = by_lr[lr], hand_stats(values)
        got = row["metrics"]["val_err"]
        assert got["n"] == hand["n"] == 3 and row["failed"] == 1 and row["in_progress"] == 0
        assert math.isclose(got["mean"], hand["mean"]) and math.isclose(got["std"], hand["std"])  # 1.0 each
        assert sorted(row["over"]["seed"]) == [0, 1, 2]
        assert row["duration"]["n"] == 3 and row["duration"]["min"] <= row["duration"]["max"]
    table = gitexp(seeded, "log", "--over", "seed", "--sort", "val_err").stdout
    lines = [line for line in table.splitlines() if "finished" in line]
    assert "lr=0.1" in lines[0] and "2 ± 1 (n=3)" in lines[0] and "4 ± 1 (n=3)" in lines[1]
    assert "3 finished, 1 failed" in lines[0]
    kept = json.loads(gitexp(seeded, "log", "--over", "seed", "-f", "val_err>3", "--format", "json").stdout)
    assert [r["params"]["lr"] for r in kept] == [0.2]  # the filter saw the mean (4), not a run's 3
    bad = gitexp(seeded, "log", "--over", "sed", check=False)
    assert bad.returncode == 2 and "did you mean 'seed'" in bad.stderr


def test_compare_over_seed_is_welch_t_test_checked_by_hand(seeded: Path) -> None:
    data = json.loads(gitexp(seeded, "compare", "--group", "seeds", "--over", "seed", "--format", "json").stdout)
    assert "Welch" in data["method"]
    (item,) = data["comparisons"]
    a, b = hand_stats([1.0, 2.0, 3.0]), hand_stats([3.0, 4.0, 5.0])
    if item["a"]["params"]["lr"] == 0.2:
        a, b = b, a
    va, vb = a["std"] ** 2 / a["n"], b["std"] ** 2 / b["n"]
    t = (a["mean"] - b["mean"]) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (a["n"] - 1) + vb ** 2 / (b["n"] - 1))
    assert df == 4.0
    # Student's t with 4 degrees of freedom: F(x) = 1/2 + 3/8 u (1 - u^2/12 ... ) in closed form
    x = abs(t)
    cdf = 0.5 + 3 / 8 * x / math.sqrt(1 + x * x / 4) * (1 - x * x / (12 * (1 + x * x / 4)))
    p = 2 * (1 - cdf)
    assert math.isclose(item["test"]["t"], t) and math.isclose(item["test"]["df"], df)
    assert math.isclose(item["test"]["p"], p, rel_tol=1e-9) and math.isclose(p, 0.0704840, rel_tol=1e-5)
    assert item["differ"] is False
    text = gitexp(seeded, "compare", "--group", "seeds", "--over", "seed").stdout
    assert "within their spread" in text and "2 ± 1 (n=3)" in text and "1 failed" in text


def test_welch_with_unequal_groups_matches_hand_values() -> None:
    from gitexp import seeds

    a, b = seeds.stat([1.0, 2.0, 3.0]), seeds.stat([4.0, 5.0, 6.0, 7.0])
    assert a is not None and b is not None
    result = seeds.welch(a, b)
    assert result is not None
    t = -3.5 / math.sqrt(1 / 3 + (5 / 3) / 4)
    df = (1 / 3 + 5 / 12) ** 2 / ((1 / 3) ** 2 / 2 + (5 / 12) ** 2 / 3)
    assert math.isclose(result.t, t) and math.isclose(result.df, df)
    # with df = 1, the t distribution is Cauchy: p = 1 - 2 atan(|t|) / pi
    assert math.isclose(seeds.t_two_sided_p(2.0, 1.0), 1 - 2 * math.atan(2.0) / math.pi, rel_tol=1e-12)
    assert 0.0095 < result.p < 0.0105


def test_plot_over_seed_draws_a_mean_curve_with_its_band(seeded: Path) -> None:
    out = gitexp(seeded, "plot", "val_err", "--group", "seeds", "--over", "seed", "--width", "80",
                 "--height", "12").stdout
    for lr in ("0.1", "0.2"):  # one mean curve per fold; the crashed seed counted apart, not averaged
        assert f"lr={lr} mean ± std (n=3; 1 failed: not averaged)" in out
    assert "+std" not in out and "-std" not in out  # a band, not two more curves
    shaded = sum(line.count("·") for line in out.splitlines()[:14])
    assert shaded > 20, out  # mean ± std (1 at both steps) is shaded between the edges
    bare = gitexp(seeded, "plot", "val_err", "--group", "seeds", "--width", "80", "--height", "12").stdout
    assert sum(line.count("·") for line in bare.splitlines()[:14]) == 0
    svg = seeded / "band.svg"
    gitexp(seeded, "plot", "val_err", "--group", "seeds", "--over", "seed", "-o", str(svg))
    assert len(re.findall(r'id="(?:FillBetween)?PolyCollection_', svg.read_text())) == 2  # fill_between, one per fold


def _points(text: str) -> List[List[float]]:
    return [[float(v) for v in p.split(",")] for p in text.split()]


def test_report_over_seed_folds_rows_and_draws_mean_curves_over_filled_bands(seeded: Path, tmp_path: Path) -> None:
    out = tmp_path / "over.html"
    gitexp(seeded, "report", "--group", "seeds", "--over", "seed", "-o", str(out))
    page = out.read_text()
    rows = re.findall(r'<tr data-fold="[0-9a-f]{8}">(.*?)</tr>', page)
    assert len(rows) == 2
    for row in rows:  # mean ± std of the finished runs' best val_err, the crashed seed counted apart
        lr = re.search(r"<td>lr=([0-9.]+)</td>", row).group(1)  # type: ignore[union-attr]
        hand = hand_stats([1.0, 2.0, 3.0] if lr == "0.1" else [3.0, 4.0, 5.0])
        cell = re.search(r'data-mean="([^"]+)" data-std="([^"]+)" data-n="(\d+)"', row)
        assert cell, row
        assert math.isclose(float(cell.group(1)), hand["mean"]) and math.isclose(float(cell.group(2)), hand["std"])
        assert int(cell.group(3)) == 3 and 'data-finished="3" data-apart="1"' in row and "1 failed" in row
    charts = page[page.index('<h2 id="curves">'):page.index('<h2 id="time">')]
    bands = re.findall(r'<polygon class="band" data-run="([0-9a-f]{8})"[^>]*points="([^"]+)"', charts)
    means = dict(re.findall(r'<polyline class="curve" data-run="([0-9a-f]{8})"[^>]*points="([^"]+)"', charts))
    assert len(bands) == 2 and all(run in means for run, _ in bands)
    for run, text in bands:
        # val_err is mean + 1 at step 1, mean at step 2 (std 1 at both): upper edge, then lower edge back
        (x1, hi1), (x2, hi2), (x2b, lo2), (x1b, lo1) = _points(text)
        (mx1, m1), (mx2, m2) = _points(means[run])
        assert (x1, x2) == (x1b, x2b) == (mx1, mx2)
        unit = m2 - m1  # one unit of val_err in pixels (y grows downwards)
        assert unit > 0
        assert math.isclose(lo1 - hi1, 2 * unit, rel_tol=0.02) and math.isclose(lo2 - hi2, 2 * unit, rel_tol=0.02)
        assert math.isclose((lo1 + hi1) / 2, m1, abs_tol=0.2) and math.isclose((lo2 + hi2) / 2, m2, abs_tol=0.2)
    assert "seeded-lr=0.1,seed=3" in page  # the crashed run keeps its own section
    from test_report_browser import browser, chromium

    dom = browser(chromium(), tmp_path / "profile", "--dump-dom", out.as_uri())
    check = re.search(r'data-curves="(\d+)" data-bands="(\d+)"', dom.stdout)
    assert check and check.group(2) == "2", dom.stdout[-500:]  # both bands laid out with an area


def test_bisect_through_the_local_queue_and_a_local_run_target(tmp_path: Path) -> None:
    queued = make_history(tmp_path / "queued")
    result = bisect_json(queued["path"], "--queue", "--parallel", "2")
    assert result["first_bad"]["sha"] == queued["shas"][5] and result["rounds"] <= 3
    rows = [r for r in log_json(queued["path"]) if r["group"] == queued["group"]]
    assert rows and all(r["status"] == "finished" for r in rows)
    target = make_history(tmp_path / "target")
    gitexp(target["path"], "remote", "add", "here", "--runner", "local", "--jobs", "2")
    result = bisect_json(target["path"], "--on", "here", "--parallel", "2")
    assert result["first_bad"]["sha"] == target["shas"][5]
    rows = [r for r in log_json(target["path"]) if r["group"] == target["group"]]
    assert rows and all(r["status"] == "finished" and r["runner"] == "local" for r in rows)


def test_bisect_on_an_ssh_target_runs_the_probes_there(tmp_path: Path, ssh_host: Any, far_python: str,  # noqa: F811
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The test sshd's far side runs each round's probes; the search asks it for their states
    (one round trip per wait) and pulls once they ended: commit 5 in at most 3 rounds."""
    import os
    import shutil
    import time

    from sshd import short_dir
    from test_ssh_remote import add_target

    from gitexp.ssh_transport import SshTransport

    runtime = short_dir("gxb-")
    monkeypatch.setenv("XDG_RUNTIME_DIR", runtime)
    try:
        hist = make_history(tmp_path / "laptop")
        path, far = hist["path"], tmp_path / "far"
        add_target(path, ssh_host, "box", far, far_python)
        gitexp(path, "remote", "setup", "box")
        start = time.monotonic()
        result = bisect_json(path, "--on", "box")
        took = time.monotonic() - start
        assert result["first_bad"]["sha"] == hist["shas"][5] and 1 <= result["rounds"] <= 3
        rows = [r for r in log_json(path) if r["group"] == hist["group"]]
        assert len(rows) == result["probes_run"] == result["rounds"]
        assert all(r["status"] == "finished" for r in rows)  # pulled back
        assert {json.loads(git(path, "notes", "--ref=exps", "show", r["id"]))["target"] for r in rows} == {"box"}
        there = json.loads(gitexp(far, "log", "--format", "json").stdout)
        assert {r["id"] for r in rows} <= {r["id"] for r in there}  # they ran there
        assert took < 90 * result["rounds"], took  # a loose bound: CI machines are busy (bench_bisect measures)
        again = bisect_json(path, "--on", "box")  # a rerun reuses every probe: nothing sent there
        assert again["probes_run"] == 0 and again["first_bad"]["sha"] == hist["shas"][5]
    finally:
        SshTransport(ssh_host.alias, ssh_config=ssh_host.config,
                     control_dir=os.path.join(runtime, "gitexp-ssh")).close()
        shutil.rmtree(runtime, ignore_errors=True)
