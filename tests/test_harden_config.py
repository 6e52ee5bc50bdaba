"""Issue #7, config part: hostile params, paths, YAML and names are refused or made harmless.

* A param value never runs as shell code, wherever its placeholder stands, and reaches the
  program exactly (item 6).
* ``files`` may not climb out of the repository (item 7).
* A config that is not UTF-8, or has duplicate keys, is one line of bad input (item 15).
* A YAML alias bomb is refused before it is built (item 8).
* Sweep point names are always valid experiment names, and names have a length limit
  (items 5 and 16).
"""
from __future__ import annotations

import json
import re
import subprocess
import textwrap
from pathlib import Path
from typing import Dict, Sequence

import pytest
import yaml

from conftest import all_refs, git, gitexp, log_json
from gitexp.config import (MAX_NAME_LEN, MAX_YAML_NODES, ExperimentConfig, check_name, coerce_value, load_yaml,
                           parse_config)
from gitexp.errors import BadInput
from gitexp.sweep import point_name, sweep_id


def assert_bad_input(repo: Path, args: Sequence[str], expected: str) -> None:
    """Exit 2, one line naming the problem, and nothing written."""
    before = all_refs(repo)
    objects_before = git(repo, "count-objects")
    proc = gitexp(repo, *args, check=False, timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert expected in lines[0], lines[0]
    assert all_refs(repo) == before
    assert git(repo, "count-objects") == objects_before


# -- A: placeholders in shell commands ----------------------------------------------------
POSITIONS = {
    "bare": ("printf '%s' {p} > {outdir}/got", "{v}"),
    "double quotes": ('printf \'%s\' "<{p}>" > {outdir}/got', "<{v}>"),
    "single quotes": ("printf '%s' '<{p}>' > {outdir}/got", "<{v}>"),
    "command substitution": (": $(printf '%s' {p} > {outdir}/got)", "{v}"),
    "command substitution in double quotes": (': "$(printf \'%s\' {p} > {outdir}/got)"', "{v}"),
    "single quotes in command substitution": (": $(printf '%s' '<{p}>' > {outdir}/got)", "<{v}>"),
    "backquotes": (": `printf '%s' {p} > {outdir}/got`", "{v}"),
    "backquotes in double quotes": (': "`printf \'%s\' \\"<{p}>\\" > {outdir}/got`"', "<{v}>"),
    "ANSI-C quotes": ("printf '%s' $'<\\t{p}>' > {outdir}/got", "<\t{v}>"),
    "parameter default": ('unset X; printf \'%s\' "${{X:-{p}}}" > {outdir}/got', "{v}"),
    "here-document": ("cat > {outdir}/got <<EOF\n<{p}>\nEOF", "<{v}>\n"),
    "after a comment with a quote": ("# it's here\nprintf '%s' '<{p}>' > {outdir}/got", "<{v}>"),
    "variable assignment": ("x={p}; printf '%s' \"$x\" > {outdir}/got", "{v}"),
}


def payloads(marker: Path) -> Dict[str, str]:
    m = str(marker)
    return {
        "semicolon": f"a;touch {m}",
        "pipe": f"a|touch {m}",
        "backticks": f"`touch {m}`",
        "dollar-paren": f"$(touch {m})",
        "single quote": f"a';touch {m};'",
        "double quote": f'a";touch {m};"',
        "both quotes": f"'\"$(touch {m})\"'",
        "newline": f"a\ntouch {m}\nb",
        "dollar HOME": "$HOME and ${HOME}",
        "backslash": "a\\b\\",
        "backslash quote": f"\\'; touch {m}; \\'",
        "star": "*",
        "spaces": "  two  spaces  ",
        "dash": "-n",
        "empty": "",
        "unicode": "é中 ✓",
    }


def run_rendered(config: ExperimentConfig, outdir: Path) -> None:
    command = config.render_command({"outdir": str(outdir), "name": config.name, "run_dir": str(outdir)})
    assert isinstance(command, str)
    subprocess.run(["bash", "-c", command], cwd=outdir, check=False, timeout=30,
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.parametrize("position", sorted(POSITIONS))
def test_a_param_value_never_runs_and_arrives_exactly(position: str, tmp_path: Path) -> None:
    template, expected = POSITIONS[position]
    marker = tmp_path / "PWNED"
    for label, value in payloads(marker).items():
        outdir = tmp_path / f"out-{len(label)}-{abs(hash(label))}"
        outdir.mkdir()
        config = parse_config(yaml.safe_dump({"command": template, "params": {"p": "x"}}))
        config = config.with_params({"p": value})
        config.check_command()
        run_rendered(config, outdir)
        assert not marker.exists(), f"{position} / {label}: the value ran a command"
        assert not (outdir / "touch").exists()
        got = (outdir / "got").read_bytes()
        assert got == expected.replace("{v}", value).encode(), f"{position} / {label}: {got!r}"


def test_format_specs_still_work_and_are_passed_the_same_way(tmp_path: Path) -> None:
    config = parse_config("command: printf '%s|%s|%s' {lr:.0e} '{lr:.3f}' \"{lr}\" > {outdir}/got\n"
                          "params: {lr: 0.001}\n")
    config.check_command()
    run_rendered(config, tmp_path)
    assert (tmp_path / "got").read_text() == "1e-03|0.001|0.001"


def test_numbers_in_arithmetic_work(tmp_path: Path) -> None:
    config = parse_config("command: 'printf %s $(( {n} * 2 )) > {outdir}/got; (( {n} > 1 )) && echo ok >> {outdir}/got'\n"
                          "params: {n: 21}\n")
    run_rendered(config, tmp_path)
    assert (tmp_path / "got").read_text() == "42ok\n"


@pytest.mark.parametrize("template", [
    "[[ {p} -eq 1 ]]", "echo $(( {p} + 1 ))", "(( {p} ))", "a[{p}]=1", "echo ${{a[{p}]}}", "echo ${{X:{p}}}",
    "let x={p}", "echo `echo $(( {p} ))`", "for (( i=0; i<{p}; i++ )); do :; done", "[[ -v {p} ]]",
])
def test_a_string_where_bash_evaluates_arithmetic_is_bad_input(template: str, tmp_path: Path) -> None:
    # In arithmetic, bash runs the $(...) of an array subscript inside the *value*.
    marker = tmp_path / "PWNED"
    config = parse_config(yaml.safe_dump({"command": template, "params": {"p": f"a[$(touch {marker})]"}}))
    with pytest.raises(BadInput, match="plain number"):
        config.check_command()
    assert not marker.exists()


@pytest.mark.parametrize("template, expected", [
    ("echo ${p}", "right after '$'"),
    ("echo \\{p}", "right after a backslash"),
    ("cat <<'EOF'\n{p}\nEOF", "quoted here-document"),
    ("cat <<{p}\nx\n", "here-document delimiter"),
])
def test_placeholders_that_cannot_be_filled_safely_are_bad_input(template: str, expected: str) -> None:
    config = parse_config(yaml.safe_dump({"command": template, "params": {"p": "v"}}))
    with pytest.raises(BadInput, match=re.escape(expected)):
        config.check_command()


def test_nul_in_a_value_is_bad_input() -> None:
    config = parse_config("command: echo {p}\nparams: {p: \"a\\0b\"}\n")
    with pytest.raises(BadInput, match="NUL"):
        config.check_command()


def test_bad_format_spec_is_still_bad_input() -> None:
    config = parse_config("command: echo {lr:.3f}\nparams: {lr: fast}\n")
    with pytest.raises(BadInput, match="cannot fill the placeholders"):
        config.check_command()


def test_argv_command_gets_the_value_as_one_argument() -> None:
    config = parse_config("command: [printf, '%s', '{p}', '{lr:.1e}']\nparams: {p: x, lr: 0.5}\n")
    assert config.render_command({}) == ["printf", "%s", "x", "5.0e-01"]
    value = "$(touch X); 'q' \"d\""
    assert config.with_params({"p": value}).render_command({})[2] == value


def test_a_command_without_placeholders_is_unchanged() -> None:
    config = parse_config("command: echo hi; echo 'it''s'\n")
    assert config.render_command({"outdir": "/o", "name": "n", "run_dir": "/r"}) == config.command


def test_cli_run_passes_a_hostile_value_exactly_and_runs_nothing(repo: Path, tmp_path: Path) -> None:
    """End to end through ``git exp run`` and the executor."""
    got = tmp_path / "got"
    marker = tmp_path / "PWNED"
    (repo / "e.yaml").write_text(textwrap.dedent(f"""\
        command: >-
          printf '%s|' {{opt}} "{{opt}}" '{{opt}}' "$(printf '%s' {{opt}})" > {got}
        params: {{opt: x}}
    """))
    value = f"x$(touch {marker})'\"`touch {marker}`;touch {marker}"
    gitexp(repo, "run", "e.yaml", "-p", f"opt={value}")
    assert not marker.exists() and not (repo / "PWNED").exists()
    assert got.read_text() == "|".join([value] * 4) + "|"


# -- B: files may not leave the repository -------------------------------------------------
@pytest.mark.parametrize("path", ["../../../../victim", "a/../../x", "./../x", ".."])
def test_files_leaving_the_repository_are_bad_input(repo: Path, path: str) -> None:
    (repo / "c.yaml").write_text(f"command: echo hi\nfiles:\n  - data\n  - {json.dumps(path)}\n")
    (repo / "data").mkdir()
    assert_bad_input(repo, ["run", "c.yaml"], f"c.yaml:4: 'files' entry {path!r} leads outside the repository")


def test_files_inside_or_absolute_are_fine(repo: Path, tmp_path: Path) -> None:
    outside = tmp_path / "shared-data"
    outside.mkdir()
    (outside / "x.txt").write_text("abs\n")
    (repo / "data").mkdir()
    (repo / "data" / "y.txt").write_text("rel\n")
    (repo / "c.yaml").write_text(f"command: cat shared-data/x.txt data/y.txt\nfiles: [{outside}, data/../data]\n")
    proc = gitexp(repo, "run", "c.yaml")
    assert "abs" in proc.stdout and "rel" in proc.stdout


# -- C: encoding and duplicate keys --------------------------------------------------------
def test_config_that_is_not_utf8(repo: Path) -> None:
    (repo / "c.yaml").write_bytes(b"command: echo hi\nname: caf\xe9\n")
    assert_bad_input(repo, ["run", "c.yaml"], "c.yaml:2: the config is not UTF-8 text")


@pytest.mark.parametrize("text, expected", [
    ("command: echo {lr}\nparams: {lr: 1}\nparams: {lr: 2}\n", "c.yaml:3: duplicate key 'params' (also on line 2)"),
    ("command: echo {lr}\nparams:\n  lr: 1\n  lr: 2\n", "c.yaml:4: duplicate key 'lr' (also on line 3)"),
    ("command: echo {lr}\nparams: {lr: 1, lr: 2}\n", "c.yaml:2: duplicate key 'lr'"),
    ("command: echo\nmetrics:\n  x: {goal: minimize, goal: maximize}\n", "c.yaml:3: duplicate key 'goal'"),
])
def test_duplicate_keys_are_bad_input(repo: Path, text: str, expected: str) -> None:
    (repo / "c.yaml").write_text(text)
    assert_bad_input(repo, ["run", "c.yaml"], expected)


def test_merge_keys_still_work() -> None:
    data = load_yaml("base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  x: 3\n")
    assert data["other"] == {"x": 3, "y": 2}


def test_control_character_names_its_line(repo: Path) -> None:
    (repo / "c.yaml").write_text("command: echo hi\nname: a\x07b\n")
    assert_bad_input(repo, ["run", "c.yaml"], "c.yaml:2: malformed YAML")


# -- D: alias bombs --------------------------------------------------------------------------
def billion_laughs(levels: int = 9) -> str:
    lines = ["a: &a [x,x,x,x,x,x,x,x,x]"]
    names = "abcdefghijklmnop"
    for i in range(1, levels):
        ref = ",".join([f"*{names[i - 1]}"] * 9)
        lines.append(f"{names[i]}: &{names[i]} [{ref}]")
    return "\n".join(lines) + "\ncommand: echo hi\n"


def test_alias_bomb_config_is_bad_input_and_fast(repo: Path) -> None:
    (repo / "c.yaml").write_text(billion_laughs())
    assert_bad_input(repo, ["run", "c.yaml"], "expands to more than")


def test_alias_bomb_in_a_stored_config_is_bad_input() -> None:
    with pytest.raises(BadInput, match="expands to more than"):
        parse_config(billion_laughs(), source="abc:.gitexp/experiment.yaml", stored=True)


def test_recursive_alias_and_deep_nesting_are_bad_input() -> None:
    with pytest.raises(BadInput, match="contains it"):
        parse_config("command: echo\nx: &a [*a]\n")
    with pytest.raises(BadInput, match="nested too deeply"):
        parse_config("command: " + "[" * 5000 + "]" * 5000 + "\n")


def test_moderate_aliases_and_big_lists_still_load() -> None:
    values = ", ".join(str(i) for i in range(5000))
    config = parse_config(f"command: echo {{i}}\nparams: {{i: 0}}\nsweep:\n  i: [{values}]\n")
    assert len(config.sweep["i"]) == 5000
    assert MAX_YAML_NODES >= 100_000


def test_p_values_still_parse_and_a_bomb_stays_a_string() -> None:
    assert coerce_value("0.5", 1.0, "-p lr") == 0.5
    assert coerce_value("[1, 2]", "s", "-p s") == "[1, 2]"
    small = "[" + ",".join(["&a [x,x,x,x,x,x,x,x,x,x]"] + ["*a"] * 20) + "]"
    assert coerce_value(small, "s", "-p s") == small  # a list: kept as the string
    levels = ["&l0 [x,x,x,x,x,x,x,x,x]"] + [f"&l{i} [{','.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
    bomb = "[" + ", ".join(levels) + "]"
    assert coerce_value(bomb, "s", "-p s") == bomb  # refused as YAML, so the string itself
    assert coerce_value("a: 1\na: 2", "s", "-p s") == "a: 1\na: 2"


# -- E: names ----------------------------------------------------------------------------------
def test_unicode_sweep_gives_valid_names_and_exact_params(repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "values"
    (repo / "u.yaml").write_text(f"command: printf '%s\\n' {{opt}} >> {out}\nparams: {{opt: a}}\n")
    gitexp(repo, "run", "u.yaml", "--sweep", "opt=é,中,a b,a_b", timeout=90)
    rows = log_json(repo)
    assert len(rows) == 4
    assert all(check_name(r["name"]) is None for r in rows)
    assert len({r["name"] for r in rows}) == 4
    assert sorted(r["params"]["opt"] for r in rows) == sorted(["é", "中", "a b", "a_b"])
    assert all(r["status"] == "finished" for r in rows), rows
    assert sorted(out.read_text(encoding="utf-8").splitlines()) == sorted(["é", "中", "a b", "a_b"])


def test_point_names() -> None:
    assert point_name("mlp", {"lr": 0.1, "layers": 2}) == "mlp-lr=0.1,layers=2"
    assert point_name("mlp", {"opt": "é"}).startswith("mlp-opt=e_")
    assert point_name("mlp", {"opt": "é"}) != point_name("mlp", {"opt": "e"})
    assert point_name("mlp", {"opt": "a/b"}) != point_name("mlp", {"opt": "a_b"})
    for value in ["..", "a.lock", "x" * 1000, "中" * 300, ".", "-", ""]:
        name = point_name("b" * MAX_NAME_LEN, {"v": value})
        assert check_name(name) is None, name
        assert len(name) <= MAX_NAME_LEN
    long_a = point_name("m", {"v": "x" * 300 + "a"})
    long_b = point_name("m", {"v": "x" * 300 + "b"})
    assert long_a != long_b


def test_sweep_with_long_values_and_long_base_name(repo: Path) -> None:
    base = "n" * (MAX_NAME_LEN - 5)
    (repo / "l.yaml").write_text(f"name: {base}\ncommand: echo {{v}}\nparams: {{v: a}}\n")
    sweep = ["run", "l.yaml", "--sweep", f"v={'y' * 300},{'y' * 299}z"]
    gitexp(repo, *sweep, timeout=90)
    rows = log_json(repo)
    assert len(rows) == 2 and all(r["status"] == "finished" for r in rows), rows
    assert all(len(r["name"]) <= MAX_NAME_LEN for r in rows)
    assert check_name(rows[0]["group"]) is None
    gitexp(repo, *sweep, timeout=90)  # the same names again: they get -2, past the limit, and still run
    rows = log_json(repo)
    assert len(rows) == 4 and all(r["status"] == "finished" for r in rows), rows
    assert sum(r["name"].endswith("-2") for r in rows) == 2


def test_sweep_id_fits() -> None:
    config = parse_config(f"name: {'g' * MAX_NAME_LEN}\ncommand: echo\n")
    assert check_name(sweep_id(config, [{}])) is None


def test_too_long_names_are_bad_input(repo: Path) -> None:
    assert_bad_input(repo, ["run", "config.yaml", "--name", "x" * 251], "--name")
    assert_bad_input(repo, ["run", "config.yaml", "--name", "x" * (MAX_NAME_LEN + 1)], "the most is 200")
    (repo / "c.yaml").write_text(f"name: {'x' * 300}\ncommand: echo\n")
    assert_bad_input(repo, ["run", "c.yaml"], "c.yaml:1: name")


def test_stored_configs_keep_their_names() -> None:
    long = "s" * (MAX_NAME_LEN + 20)
    assert parse_config(f"name: {long}\ncommand: echo\n", stored=True).name == long
