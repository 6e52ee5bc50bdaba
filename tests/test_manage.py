"""log options, export, rm, branch, diff, apply."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from conftest import all_refs, assert_fsck_clean, git, gitexp, log_json


def run_three(repo: Path) -> None:
    for lr in ("0.1", "1.0", "0.5"):
        gitexp(repo, "run", "config.yaml", "-p", f"lr={lr}", "--name", f"lr{lr}")


def test_log_filter_sort_limit_and_formats(repo: Path) -> None:
    run_three(repo)
    rows = log_json(repo, "--sort", "val_err")
    assert [r["params"]["lr"] for r in rows] == [1.0, 0.5, 0.1]  # best (lowest) first
    rows = log_json(repo, "--sort", "acc")  # maximize: best (highest) first
    assert [r["params"]["lr"] for r in rows] == [1.0, 0.5, 0.1]
    assert [r["params"]["lr"] for r in log_json(repo, "--filter", "lr<0.6", "--sort", "lr")] == [0.1, 0.5]
    assert len(log_json(repo, "-n", "2")) == 2
    assert log_json(repo, "--filter", "status=failed") == []
    assert len(log_json(repo, "--group", "g1")) == 3
    unknown = gitexp(repo, "log", "--group", "other", check=False)  # an unknown group says so (issue 17)
    assert unknown.returncode == 2 and "g1" in unknown.stderr
    table = gitexp(repo, "log", "--metric", "val_err").stdout
    assert "val_err best" in table and "val_err last" in table and "lr=0.5" in table
    text = gitexp(repo, "log", "--format", "csv", "--metric", "val_err", "--sort", "lr").stdout
    records = list(csv.DictReader(io.StringIO(text)))
    assert [r["lr"] for r in records] == ["0.1", "0.5", "1.0"]
    assert float(records[0]["val_err_best"]) == 1.0 / (1 + 0.1 * 5)


def test_metrics_export_csv_one_row_per_step(repo: Path) -> None:
    gitexp(repo, "run", "config.yaml")
    text = gitexp(repo, "metrics", "toy").stdout
    records = list(csv.DictReader(io.StringIO(text)))
    assert [int(r["step"]) for r in records] == [1, 2, 3, 4, 5]
    assert set(records[0]) >= {"step", "time", "val_err", "loss", "acc"}
    lines = gitexp(repo, "metrics", "toy", "--format", "jsonl").stdout.splitlines()
    assert json.loads(lines[-1])["step"] == 5


def test_rm_removes_ref_and_notes(repo: Path) -> None:
    run_three(repo)
    sha = log_json(repo, "--filter", "name=lr0.1")[0]["id"]
    gitexp(repo, "rm", sha[:8])
    assert sorted(r["name"] for r in log_json(repo)) == ["lr0.5", "lr1.0"]
    assert "refs/exps/lr0.1" not in all_refs(repo)
    assert git(repo, "notes", "--ref=exps", "show", sha, check=False) == ""
    assert_fsck_clean(repo)


def test_branch_makes_a_normal_branch(repo: Path) -> None:
    gitexp(repo, "run", "config.yaml")
    gitexp(repo, "branch", "toy", "best-run")
    assert git(repo, "rev-parse", "best-run").strip() == log_json(repo)[0]["id"]
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD").strip() == "main"
    proc = gitexp(repo, "branch", "toy", "best-run", check=False)
    assert proc.returncode == 2 and "already exists" in proc.stderr


def test_diff_shows_params_metrics_and_code(repo: Path) -> None:
    gitexp(repo, "run", "config.yaml", "--name", "a")
    (repo / "train.py").write_text((repo / "train.py").read_text() + "# tweak\n")
    gitexp(repo, "run", "config.yaml", "--name", "b", "-p", "lr=1.0")
    out = gitexp(repo, "diff", "a", "b").stdout
    rows = [line.split() for line in out.splitlines()]
    params = rows[rows.index(["param", "A", "B"]) + 2:]
    # -p lr=1 against a default of 0.5 is the float 1.0 (a value keeps the default's type, issue 17)
    assert params[0] == ["lr", "0.5", "1.0"] and params[1] == []  # steps is the same: not listed
    metrics = rows[rows.index(["metric", "(best)", "A", "B"]) + 2:]
    assert ["val_err", f"{1 / (1 + 0.5 * 5):.4g}", f"{1 / (1 + 1.0 * 5):.4g}"] in metrics[:3]
    assert ["loss", f"{2 / (1 + 0.5 * 5):.4g}", f"{2 / (1 + 1.0 * 5):.4g}"] in metrics[:3]
    assert "+# tweak" in out and "experiment.yaml" not in out


def test_apply_brings_files_into_working_tree(repo: Path) -> None:
    (repo / "train.py").write_text((repo / "train.py").read_text() + "# variant\n")
    gitexp(repo, "run", "config.yaml", "--name", "variant", "-p", "steps=1")
    git(repo, "checkout", "--", "train.py")
    assert "# variant" not in (repo / "train.py").read_text()
    gitexp(repo, "apply", "variant")
    assert "# variant" in (repo / "train.py").read_text()
    assert git(repo, "diff", "--cached") == ""  # index untouched
    assert gitexp(repo, "apply", "variant").returncode == 0  # again: nothing changes, nothing refused
    (repo / "train.py").write_text((repo / "train.py").read_text() + "# my own edit\n")
    proc = gitexp(repo, "apply", "variant", check=False)
    assert proc.returncode == 2 and "uncommitted changes" in proc.stderr and "train.py" in proc.stderr
    assert "# my own edit" in (repo / "train.py").read_text()
