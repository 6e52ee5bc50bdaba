"""Experiments from a spreadsheet: ``git exp run config.yaml --sweep-file experiments.csv``.

One experiment per row. The header names params of the config; an empty cell keeps the
config's value; an optional ``name`` column names the row's experiment. Cells are typed like
the config's defaults exactly as ``-p`` types them (``config.coerce_value``), and a cell that
does not fit is one line naming its row and column. ``.csv``, ``.tsv``, and ``.xlsx`` with the
``gitexp[xlsx]`` extra (openpyxl).

A ``git exp log --format csv`` export can be edited and fed back: when the header starts with
``id`` (an export), its columns that are not params (``id``, ``group``, ``status``, the
``<metric>_best``/``<metric>_last`` pairs, ``duration_s``, ``created``, ``exit_code``,
``host``) are left out.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .config import ExperimentConfig, Scalar, check_name, closest, coerce_value
from .errors import BadInput
from .sweep import point_name, sweep_id

SUFFIXES = (".csv", ".tsv", ".xlsx")
NAME_COLUMN = "name"
# The columns `git exp log --format csv` writes beside the params and metric pairs.
LOG_CSV_COLUMNS = ("id", "group", "status", "duration_s", "created", "exit_code", "host")
LOG_CSV_METRIC_SUFFIXES = ("_best", "_last")
XLSX_HINT = "pip install 'gitexp[xlsx]'"


@dataclass
class Row:
    number: int  # as a spreadsheet numbers it: the header is row 1
    params: Dict[str, Scalar]
    name: Optional[str]


def read_table(path: str) -> List[List[str]]:
    """The file's rows as text cells, header first."""
    if not os.path.isfile(path):
        raise BadInput(f"--sweep-file {path}: no such file")
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in SUFFIXES:
        raise BadInput(f"--sweep-file {path}: expected a .csv, .tsv or .xlsx file")
    if suffix == ".xlsx":
        return _read_xlsx(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            return [list(r) for r in csv.reader(handle, delimiter="\t" if suffix == ".tsv" else ",")]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise BadInput(f"--sweep-file {path}: cannot read it as {suffix[1:]}: {exc}") from None


def _read_xlsx(path: str) -> List[List[str]]:
    try:
        import openpyxl  # type: ignore[import-untyped]
    except ImportError:
        raise BadInput(f"--sweep-file {path}: reading .xlsx needs openpyxl", XLSX_HINT) from None
    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many kinds for a damaged workbook
        raise BadInput(f"--sweep-file {path}: cannot read the workbook: {exc}") from None
    try:
        sheet = book.worksheets[0]
        return [[_xlsx_text(cell) for cell in row] for row in sheet.iter_rows(values_only=True)]
    finally:
        book.close()


def _xlsx_text(cell: Any) -> str:
    """A workbook cell as the text a CSV would hold (a whole-number float as written: 3.0 -> 3)."""
    if cell is None:
        return ""
    if isinstance(cell, bool):
        return "true" if cell else "false"
    if isinstance(cell, float) and cell.is_integer():
        return str(int(cell))
    return str(cell)


def parse_rows(config: ExperimentConfig, path: str, table: Sequence[Sequence[str]],
               fixed: Sequence[str] = ()) -> List[Row]:
    """Validated rows: every header a param (or ``name``, or an export's own column), every cell
    typed like its param. ``fixed`` are params given with ``-p``, which a column may not repeat."""
    base = os.path.basename(path)
    if not table or not any(cell.strip() for cell in table[0]):
        raise BadInput(f"--sweep-file {path}: no header row", "the first row names the params, e.g. lr,layers")
    columns = _columns(config, base, [c.strip() for c in table[0]], fixed)
    rows = []
    for index, cells in enumerate(table[1:], start=2):
        if not any(str(c).strip() for c in cells):
            continue  # a blank line between blocks of rows
        if len(cells) > len(columns) and any(c.strip() for c in cells[len(columns):]):
            raise BadInput(f"{base} row {index}: {len(cells)} cells, but the header names {len(columns)} columns")
        rows.append(_row(config, base, index, columns, cells))
    if not rows:
        raise BadInput(f"--sweep-file {path}: no rows under the header", "add one row per experiment")
    return rows


def _columns(config: ExperimentConfig, base: str, header: List[str], fixed: Sequence[str]) -> List[Optional[str]]:
    """Each column's param (``name`` for the name column, None for a column left out)."""
    export = header[0] == "id"
    seen: Dict[str, int] = {}
    columns: List[Optional[str]] = []
    for number, title in enumerate(header, start=1):
        if title in seen:
            raise BadInput(f"{base} row 1: column {title!r} appears twice (columns {seen[title]} and {number})")
        seen[title] = number
        if title == NAME_COLUMN or title in config.params:
            if title in fixed:
                raise BadInput(f"-p {title}: '{title}' is also a column of {base}", "drop one of them")
            columns.append(title)
        elif export and (title in LOG_CSV_COLUMNS or title.endswith(LOG_CSV_METRIC_SUFFIXES)):
            columns.append(None)
        elif not title:
            raise BadInput(f"{base} row 1, column {number}: no name", "name every column after a param")
        else:
            raise BadInput(f"{base} row 1: column {title!r} is not a param of {config.source}",
                           closest(title, list(config.params) or ["(no params)"]))
    return columns


def _row(config: ExperimentConfig, base: str, index: int, columns: List[Optional[str]],
         cells: Sequence[str]) -> Row:
    params: Dict[str, Scalar] = {}
    name = None
    for column, raw in zip(columns, cells):
        text = str(raw).strip()
        if column is None or not text:
            continue
        where = f"{base} row {index}, column {column}"
        if column == NAME_COLUMN:
            problem = check_name(text)
            if problem:
                raise BadInput(f"{where}: {text!r} is not usable as an experiment name: {problem}")
            name = text
        else:
            params[column] = coerce_value(text, config.params[column], where)
    return Row(index, params, name)


def expand(config: ExperimentConfig, rows: Sequence[Row], group: Optional[str] = None) -> List[ExperimentConfig]:
    """One config per row, all in one group (as a sweep's points): named by the row's ``name``,
    else after the params its cells set."""
    group = group or config.group or sweep_id(config, [r.params for r in rows])
    out = []
    for row in rows:
        child = config.with_params(row.params, name=row.name or point_name(config.name, row.params))
        child.group = group
        child.sweep = None
        out.append(child)
    return out


def configs_from_file(config: ExperimentConfig, path: str, fixed: Sequence[str],
                      group: Optional[str]) -> Tuple[List[ExperimentConfig], List[Row]]:
    rows = parse_rows(config, path, read_table(path), fixed)
    return expand(config, rows, group), rows
