"""Issue 21: experiments from a spreadsheet, TensorBoard event files as metrics, a profiler."""
from __future__ import annotations

import csv
import io
import json
import os
import struct
import sys
import textwrap
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

from conftest import ROOT, all_refs, gitexp, log_json, wait_for


def bad_input(repo: Path, *args: str, expected: str) -> None:
    """One line, exit 2, nothing recorded."""
    before = all_refs(repo)
    proc = gitexp(repo, *args, check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], proc.stderr
    assert all_refs(repo) == before


# -- 2. experiments from a spreadsheet -----------------------------------------------------------
THREE_ROWS = "lr,steps,name\n0.1,2,slow\n1,,\n0.25,4,\n"


def test_three_row_csv_gives_three_experiments_with_exactly_those_params(repo: Path, tmp_path: Path) -> None:
    (tmp_path / "exps.csv").write_text(THREE_ROWS)
    proc = gitexp(repo, "run", "config.yaml", "--sweep-file", str(tmp_path / "exps.csv"))
    rows = log_json(repo)
    assert {r["status"] for r in rows} == {"finished"} and len(rows) == 3, proc.stderr
    got = {r["name"]: r["params"] for r in rows}
    # the empty cell keeps the config's steps: 5; `1` in a float column is the float 1.0
    assert got == {"slow": {"lr": 0.1, "steps": 2}, "toy-lr=1": {"lr": 1.0, "steps": 5},
                   "toy-lr=0.25,steps=4": {"lr": 0.25, "steps": 4}}
    assert isinstance(got["toy-lr=1"]["lr"], float) and isinstance(got["slow"]["steps"], int)
    assert len({r["group"] for r in rows}) == 1


def test_tsv_and_xlsx_rows_give_the_same_params(repo: Path, tmp_path: Path) -> None:
    openpyxl = pytest.importorskip("openpyxl")
    (tmp_path / "exps.tsv").write_text(THREE_ROWS.replace(",", "\t"))
    book = openpyxl.Workbook()
    for row in csv.reader(io.StringIO(THREE_ROWS)):
        book.active.append([_xlsx_cell(c) for c in row])
    book.save(tmp_path / "exps.xlsx")
    for name in ("exps.tsv", "exps.xlsx"):
        out = gitexp(repo, "run", "config.yaml", "--sweep-file", str(tmp_path / name), "--queue").stdout
        shas = out.split()
        assert len(shas) == 3
        rows = [r for r in log_json(repo) if r["id"] in shas]
        assert sorted((r["params"]["lr"], r["params"]["steps"]) for r in rows) == [(0.1, 2), (0.25, 4), (1.0, 5)]
        assert {r["status"] for r in rows} == {"queued"}


def _xlsx_cell(text: str) -> object:
    """Numbers as a spreadsheet app stores them (floats), names as text, empty cells empty."""
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        return text


def test_dry_run_of_a_sweep_file_lists_rows_and_records_nothing(repo: Path, tmp_path: Path) -> None:
    (tmp_path / "exps.csv").write_text(THREE_ROWS)
    before = all_refs(repo)
    proc = gitexp(repo, "run", "config.yaml", "--sweep-file", str(tmp_path / "exps.csv"), "--dry-run")
    assert "slow" in proc.stdout and "toy-lr=0.25,steps=4" in proc.stdout and "3 experiment(s)" in proc.stderr
    assert all_refs(repo) == before


def test_log_csv_of_a_sweep_edited_and_fed_back(repo: Path, tmp_path: Path) -> None:
    gitexp(repo, "run", "config.yaml", "--sweep", "lr=0.1,0.2", "--queue")
    exported = gitexp(repo, "log", "--format", "csv").stdout
    table: List[List[str]] = list(csv.reader(io.StringIO(exported)))
    header = table[0]
    assert header[:4] == ["id", "name", "group", "status"] and "lr" in header
    for row in table[1:]:  # edit: a new lr, a new name
        row[header.index("lr")] = str(float(row[header.index("lr")]) * 10)
        row[header.index("name")] = "again-" + row[header.index("name")]
    with open(tmp_path / "again.csv", "w", newline="") as handle:
        csv.writer(handle).writerows(table)
    shas = gitexp(repo, "run", "config.yaml", "--sweep-file", str(tmp_path / "again.csv"), "--queue").stdout.split()
    rows = {r["name"]: r["params"] for r in log_json(repo) if r["id"] in shas}
    assert rows == {"again-toy-lr=0.1": {"lr": 1.0, "steps": 5}, "again-toy-lr=0.2": {"lr": 2.0, "steps": 5}}


SHEET_BAD = {
    "unknown column": ("lr,stpes\n0.1,2\n", [], "column 'stpes' is not a param", "did you mean 'steps'?"),
    "bad number cell": ("lr,steps\n0.1,2\n0.2,many\n", [], "exps.csv row 3, column steps: 'many' is not a number", ""),
    "bad name cell": ("lr,name\n0.1,a b\n", [], "exps.csv row 2, column name: 'a b' is not usable", ""),
    "too many cells": ("lr\n0.1,7\n", [], "exps.csv row 2: 2 cells", ""),
    "header only": ("lr,steps\n", [], "no rows under the header", ""),
    "column also given with -p": ("lr\n0.1\n", ["-p", "lr=0.3"], "-p lr: 'lr' is also a column", ""),
    "with --sweep": ("lr\n0.1\n", ["--sweep", "steps=1,2"], "--sweep-file with --sweep", ""),
    "export column outside an export": ("lr,status\n0.1,x\n", [], "column 'status' is not a param", ""),
}


@pytest.mark.parametrize("case", sorted(SHEET_BAD))
def test_sweep_file_bad_input(case: str, repo: Path, tmp_path: Path) -> None:
    text, extra, expected, hint = SHEET_BAD[case]
    (tmp_path / "exps.csv").write_text(text)
    bad_input(repo, "run", "config.yaml", "--sweep-file", str(tmp_path / "exps.csv"), *extra, expected=expected)
    if hint:
        proc = gitexp(repo, "run", "config.yaml", "--sweep-file", str(tmp_path / "exps.csv"), check=False)
        assert hint in proc.stderr


def test_sweep_file_of_another_kind_or_missing(repo: Path, tmp_path: Path) -> None:
    (tmp_path / "exps.json").write_text("{}")
    bad_input(repo, "run", "config.yaml", "--sweep-file", str(tmp_path / "exps.json"), expected=".csv, .tsv or .xlsx")
    bad_input(repo, "run", "config.yaml", "--sweep-file", str(tmp_path / "nope.csv"), expected="no such file")


def test_xlsx_without_openpyxl_names_the_extra(repo: Path, tmp_path: Path) -> None:
    (tmp_path / "exps.xlsx").write_bytes(b"PK\x03\x04")
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "openpyxl.py").write_text("raise ImportError('hidden for the test')\n")
    before = all_refs(repo)
    proc = gitexp(repo, "run", "config.yaml", "--sweep-file", str(tmp_path / "exps.xlsx"), check=False,
                  env={"PYTHONPATH": f"{blocker}{os.pathsep}{os.environ['PYTHONPATH']}"})
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "pip install 'gitexp[xlsx]'" in proc.stderr
    assert all_refs(repo) == before


# -- 1. TensorBoard event files as a metric source ---------------------------------------------
TB_TRAIN_PY = textwrap.dedent('''
    import os, sys, time
    from tensorboardX import SummaryWriter
    release = sys.argv[1]
    writer = SummaryWriter(os.path.join(os.environ["GITEXP_OUTPUT_DIR"], "tb"), flush_secs=1)
    for step in range(0, 50, 10):
        writer.add_scalar("Loss/test", 1.0 / (step + 2), step)
        writer.add_scalar("Accuracy", step / 100, step)
        print(f"step {step} train loss {2.0 / (step + 1):.4f}", flush=True)
    writer.flush()
    while not os.path.exists(release):
        time.sleep(0.05)
    writer.add_scalar("Loss/test", 0.001, 100)
    writer.close()
''')


def tb_config(release: Path) -> str:
    return textwrap.dedent(rf'''
        name: tb
        command: {sys.executable} tb_train.py {release}
        step: {{regex: 'step (\d+)'}}
        metrics:
          train_loss: {{regex: 'train loss ([0-9.]+)'}}
          test_loss: {{tfevents: 'tb/**/events.out.tfevents.*', tag: 'Loss/test', goal: minimize}}
          Accuracy: {{tfevents: 'tb/events.out.tfevents.*', goal: maximize}}
    ''')


def f32(value: float) -> float:
    """What the program logged, as a float32 holds it and the reader gives it back (shortest form)."""
    raw = struct.pack("<f", value)
    return next(float(f"{v:.{d}g}") for d in range(1, 10) for v in [struct.unpack("<f", raw)[0]]
                if struct.pack("<f", float(f"{v:.{d}g}")) == raw)


def test_tensorboard_scalars_of_a_real_program_are_exact_live_and_in_the_notes(repo: Path, tmp_path: Path) -> None:
    pytest.importorskip("tensorboardX")
    release = tmp_path / "release"
    (repo / "tb_train.py").write_text(TB_TRAIN_PY)
    (repo / "tb.yaml").write_text(tb_config(release))
    sha = gitexp(repo, "run", "tb.yaml", "--detach").stdout.strip()
    expected = {s: f32(1.0 / (s + 2)) for s in range(0, 50, 10)}
    try:
        def live() -> Any:  # within 2 s of the writer's flush, long before a progress note
            records = json.loads(gitexp(repo, "metrics", sha, "--format", "json").stdout)
            got = {r["step"]: r["test_loss"] for r in records if "test_loss" in r}
            return records if len(got) == 5 else None
        records = wait_for(live, timeout=60, interval=0.3)
        assert {r["step"]: r["test_loss"] for r in records if "test_loss" in r} == expected
        assert {r["step"]: r["Accuracy"] for r in records if "Accuracy" in r} == {s: f32(s / 100) for s in expected}
        assert {r["step"]: r["train_loss"] for r in records if "train_loss" in r} == {
            s: float(f"{2.0 / (s + 1):.4f}") for s in expected}  # both sources on one step axis
    finally:
        release.touch()
    wait_for(lambda: [r for r in log_json(repo) if r["id"] == sha and r["status"] == "finished"], timeout=60)
    summary = next(r for r in log_json(repo) if r["id"] == sha)["metrics"]["test_loss"]
    assert summary["best"] == f32(0.001) and summary["best_step"] == 100 and summary["count"] == 6
    assert summary["step_source"] == "file"
    noted = json.loads(gitexp(repo, "metrics", sha, "--format", "json").stdout)
    assert [r["time"] for r in noted if "test_loss" in r][0] > 1e9  # the events' wall times


def tb_file(folder: Path, tags: Dict[str, List[Tuple[int, float]]]) -> Path:
    """A finished event file written by tensorboardX."""
    from tensorboardX import SummaryWriter
    writer = SummaryWriter(str(folder))
    for tag, points in tags.items():
        for step, value in points:
            writer.add_scalar(tag, value, step)
    writer.close()
    return next(folder.glob("events.out.tfevents.*"))


def test_event_file_read_while_written_gives_each_scalar_once(tmp_path: Path) -> None:
    pytest.importorskip("tensorboardX")
    from gitexp import tfevents
    full = tb_file(tmp_path / "full", {"loss": [(i, i / 7) for i in range(40)]}).read_bytes()
    growing = tmp_path / "events.out.tfevents.growing"
    reader = tfevents.EventFiles(warn=lambda text: pytest.fail(text))
    seen = []
    with open(growing, "wb") as handle:
        for start in range(0, len(full), 13):  # chunks that cut headers, data and checksums
            handle.write(full[start:start + 13])
            handle.flush()
            now = reader.scalars(str(growing))
            assert now[:len(seen)] == seen  # only ever grows
            seen = now
    assert [(s.step, s.value) for s in seen if s.tag == "loss"] == [(i, f32(i / 7)) for i in range(40)]


def test_truncated_and_corrupt_event_files_skip_with_one_warning(tmp_path: Path) -> None:
    pytest.importorskip("tensorboardX")
    from gitexp import tfevents
    full = tb_file(tmp_path / "full", {"loss": [(i, float(i)) for i in range(10)]}).read_bytes()
    (tmp_path / "cut.tfevents").write_bytes(full[:-7])  # the last record torn
    warnings: List[str] = []
    reader = tfevents.EventFiles(warn=warnings.append)
    assert [s.step for s in reader.scalars(str(tmp_path / "cut.tfevents"))] == list(range(9))
    assert warnings == []  # a torn end is a record still being written
    value_at = full.index(struct.pack("<f", 5.0))  # flip the value of step 5: its data checksum fails
    corrupt = bytearray(full)
    corrupt[value_at] ^= 0xFF
    length_at = full.rfind(struct.pack("<f", 7.0))  # and garble a length header further on
    header = full.rfind(b"\x00" * 4, 0, length_at)
    corrupt[header - 4] ^= 0x55
    (tmp_path / "bad.tfevents").write_bytes(bytes(corrupt))
    steps = [s.step for s in reader.scalars(str(tmp_path / "bad.tfevents"))]
    assert 5 not in steps and {0, 1, 2, 3, 4, 8, 9} <= set(steps)
    assert len(warnings) == 1 and "bad.tfevents" in warnings[0] and "\n" not in warnings[0]


def test_import_of_a_finished_logdir_records_every_tag_as_a_finished_experiment(repo: Path, tmp_path: Path) -> None:
    pytest.importorskip("tensorboardX")
    logdir = tmp_path / "old run"
    tb_file(logdir / "first", {"Loss/test": [(0, 0.5), (1, 0.25)], "lr": [(0, 0.1)]})
    tb_file(logdir / "restart", {"Loss/test": [(2, 0.125)]})  # a second file: the run restarted
    proc = gitexp(repo, "import", "tensorboard", str(logdir))
    sha = proc.stdout.strip()
    row = next(r for r in log_json(repo) if r["id"] == sha)
    assert row["name"] == "old_run" and row["status"] == "finished"
    shown = json.loads(gitexp(repo, "show", sha, "--format", "json").stdout)
    assert shown["imported"] == {"from": str(logdir), "files": 2}
    assert row["metrics"]["Loss/test"]["last"] == 0.125 and row["metrics"]["Loss/test"]["count"] == 3
    history = json.loads(gitexp(repo, "metrics", sha, "--format", "json").stdout)
    assert [(r["step"], r["Loss/test"]) for r in history if "Loss/test" in r] == [(0, 0.5), (1, 0.25), (2, 0.125)]
    (repo / "map.yaml").write_text("name: mapped\ncommand: 'true'\nparams: {lr: 0.1}\nmetrics:\n"
                                   "  test_loss: {tfevents: 'x/events.out.tfevents.*', tag: 'Loss/test'}\n")
    sha2 = gitexp(repo, "import", "tensorboard", str(logdir), "--config", "map.yaml", "--name", "old-mapped").stdout.strip()
    row = next(r for r in log_json(repo) if r["id"] == sha2)
    assert row["name"] == "old-mapped" and row["params"] == {"lr": 0.1}
    assert row["metrics"]["test_loss"]["best"] == 0.125 and row["metrics"]["test_loss"]["best_step"] == 2
    assert "lr" in row["metrics"] and "Loss/test" not in row["metrics"]
    assert f"imported   from {logdir}" in gitexp(repo, "show", sha2).stdout


def test_tensorboard_bad_input(repo: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    bad_input(repo, "import", "tensorboard", str(tmp_path / "nope"), expected="not a directory")
    bad_input(repo, "import", "tensorboard", str(tmp_path / "empty"), expected="no TensorBoard event files")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "events.out.tfevents.1").write_bytes(b"not a record file at all")
    bad_input(repo, "import", "tensorboard", str(tmp_path / "junk"), expected="hold no scalars")
    bad_input(repo, "import", "tensorboard", str(tmp_path / "junk"), "--name", "a b", expected="--name 'a b'")
    for metric, expected in (("{tag: 'Loss/test'}", "'tag' of metric 'm' applies to tfevents metrics only"),
                             ("{tfevents: 'x/*', regex: 'l=(.*)'}", "has both 'regex' and 'tfevents'"),
                             ("{tfevents: [1]}", "tfevents of metric 'm' must be a string")):
        (repo / "bad.yaml").write_text(f"command: 'true'\nmetrics:\n  m: {metric}\n")
        bad_input(repo, "run", "bad.yaml", expected=expected)


# -- 3. profiler ---------------------------------------------------------------------------------
HOT_PY = textwrap.dedent('''
    import time

    def hot_inner_loop(n):
        total = 0
        for i in range(n):
            total += i * i % 7
        return total

    def lukewarm(n):
        return sum(range(n))

    def main():
        end = time.time() + 2.5
        while time.time() < end:
            hot_inner_loop(300000)
            lukewarm(20000)

    main()
''')


def test_profiled_program_shows_its_hot_function_first(repo: Path, tmp_path: Path) -> None:
    pytest.importorskip("psutil")
    (repo / "hot.py").write_text(HOT_PY)
    (repo / "hot.yaml").write_text(f"name: hot\ncommand: {sys.executable} hot.py\n")
    proc = gitexp(repo, "run", "hot.yaml", "--profile")
    assert "profile" not in proc.stderr, proc.stderr  # nothing to say: it worked
    shown = json.loads(gitexp(repo, "show", "--format", "json").stdout)
    profile = shown["profile"]
    assert profile["top_self"][0][0].startswith("hot_inner_loop (hot.py:"), profile
    assert profile["top_self"][0][1] > 0.5 and profile["samples"] > 50
    assert any(f.startswith("main (hot.py:") for f, _ in profile["top_total"][:3])  # on every stack
    folder = Path(profile["folder"])
    assert (folder / "flamegraph.svg").read_text().startswith("<svg") and "hot_inner_loop" in (
        folder / "flamegraph.svg").read_text()
    assert "hot_inner_loop" in (folder / "samples.txt").read_text()
    text = gitexp(repo, "show").stdout
    assert "by own time: hot_inner_loop (hot.py:" in text
    report = tmp_path / "r.html"
    gitexp(repo, "report", "-o", str(report))
    assert '<h2 id="profile">Profile</h2>' in report.read_text() and "hot_inner_loop" in report.read_text()
    # ... and the UI's run page (git exp ui) gets the same top functions, checked
    sys.path.insert(0, str(ROOT))
    from gitexp.repo import Repo
    from gitexp.ui.api import Api
    from gitexp.ui.runs import run_page

    page = run_page(Api(Repo.discover(str(repo))), shown["id"])
    assert page["profile"]["top_self"][0][0].startswith("hot_inner_loop (hot.py:")


def test_profile_of_a_program_that_is_not_python_is_one_line_and_the_run_goes_on(repo: Path) -> None:
    (repo / "sh.yaml").write_text("name: sh\nprofile: true\ncommand: 'for i in 1 2 3; do echo $i; sleep 0.3; done'\n")
    proc = gitexp(repo, "run", "sh.yaml")
    said = [line for line in proc.stderr.splitlines() if "profile" in line]
    assert len(said) == 1 and "no Python process" in said[0] and "the run goes on" in said[0], proc.stderr
    assert log_json(repo)[0]["status"] == "finished"
    assert "profile: none (no Python process" in gitexp(repo, "show").stdout


def test_profile_bad_input(repo: Path) -> None:
    (repo / "bad.yaml").write_text("command: 'true'\nprofile: 3\n")
    bad_input(repo, "run", "bad.yaml", expected="'profile' must be true or false")
