"""Issue 21: experiments from a spreadsheet, TensorBoard event files as metrics, a profiler."""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import List

import pytest

from conftest import all_refs, gitexp, log_json


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
