"""Value types: commit ids, names and refs through their parsers; a summary note parsed once."""
from __future__ import annotations

import sys

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT))

from gitexp.config import check_name  # noqa: E402
from gitexp.errors import BadInput  # noqa: E402
from gitexp.lifecycle import Status  # noqa: E402
from gitexp.notes import EXP_PREFIX  # noqa: E402
from gitexp.values import Origin, Summary, name_in, parse_exp_name, parse_oid, ref_name, short  # noqa: E402

SHA = "0123456789abcdef0123456789abcdef01234567"


def test_a_commit_id_is_40_lower_case_hex_digits() -> None:
    assert parse_oid(SHA) == SHA
    for bad in (SHA.upper(), SHA[:39], SHA + "0", "HEAD", f"-{SHA[1:]}"):
        with pytest.raises(BadInput, match="not a commit id"):
            parse_oid(bad)


def test_short_ids_keep_the_lengths_shown_today() -> None:
    assert short(SHA) == SHA[:10] and short(SHA, 12) == SHA[:12]


def test_an_experiment_name_is_one_file_name_under_refs_exps() -> None:
    assert parse_exp_name("mlp-lr=0.1") == "mlp-lr=0.1"
    for bad in ("a/b", "-x", "x..y", "x.lock", "x" * 201, ""):
        with pytest.raises(BadInput, match="not usable"):
            parse_exp_name(bad)
    assert check_name("a/b") is not None  # config's check is the same rule


def test_ref_names_are_built_and_taken_apart_in_one_namespace() -> None:
    ref = ref_name(EXP_PREFIX, "mlp")
    assert ref == "refs/exps/mlp" and name_in(EXP_PREFIX, ref) == "mlp"
    assert name_in(EXP_PREFIX, "refs/heads/mlp") is None
    with pytest.raises(ValueError):
        ref_name("exps", "mlp")


def test_a_summary_is_parsed_once_with_its_schema_status_and_unknown_fields() -> None:
    note = {"schema": 2, "status": "finished", "name": "mlp", "params": {"lr": 0.1}, "started": 100,
            "ended": 160.5, "exit_code": 0, "chain": [SHA], "metrics": {"loss": {"best": 0.1, "last": 0.2}},
            "from_a_newer_gitexp": {"x": 1}}
    s = Summary.parse(note)
    assert (s.schema, s.status, s.final, s.origin) == (2, Status.FINISHED, True, Origin.HERE)
    assert (s.name, s.params, s.started, s.ended, s.exit_code) == ("mlp", {"lr": 0.1}, 100, 160.5, 0)
    assert s.started.__class__ is int  # as the note has it: JSON output stays the same
    assert s.attempt == 2 and s.chain == [SHA] and s.best() == {"loss": 0.1}
    assert s.extra == {"from_a_newer_gitexp": {"x": 1}} and s.get("from_a_newer_gitexp") == {"x": 1}
    frozen_field = "status"
    with pytest.raises(AttributeError):
        setattr(s, frozen_field, Status.FAILED)


def test_a_summary_that_failed_its_checks_reads_as_invalid() -> None:
    s = Summary.parse({"status": "invalid", "name": "x"}, Origin.FETCHED)
    assert s.status is None and s.status_text == "invalid" and not s.final and s.origin is Origin.FETCHED
    assert Summary.parse({}).status is Status.CREATED and Summary.parse({}).schema == 1
