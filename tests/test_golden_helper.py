"""The golden-file helper of conftest.py behaves as golden tests rely on."""
from __future__ import annotations

import pytest

from conftest import GOLDEN, check_golden, golden_path

Failed = pytest.fail.Exception


def test_identical_text_passes(tmp_path):
    g = tmp_path / "same.txt"
    g.write_text("a\nb\n")
    check_golden(g, "a\nb\n", False)
    check_golden(g, "a\nb\n", True)  # nothing to rewrite: passes, file untouched
    assert g.read_text() == "a\nb\n"


def test_missing_golden_fails_and_says_how_to_create_it(tmp_path):
    g = tmp_path / "missing.txt"
    with pytest.raises(Failed) as info:
        check_golden(g, "text\n", False)
    assert "missing" in str(info.value) and "--update-golden" in str(info.value)
    assert not g.exists()


def test_mismatch_fails_with_a_diff(tmp_path):
    g = tmp_path / "old.txt"
    g.write_text("line one\nline two\n")
    with pytest.raises(Failed) as info:
        check_golden(g, "line one\nline 2\n", False)
    msg = str(info.value)
    assert "-line two" in msg and "+line 2" in msg
    assert g.read_text() == "line one\nline two\n"


def test_update_rewrites_and_still_fails(tmp_path):
    g = tmp_path / "sub" / "new.txt"
    with pytest.raises(Failed) as info:
        check_golden(g, "fresh\r\nbytes\n", True)
    assert "golden file rewritten: review the diff" in str(info.value)
    assert g.read_bytes() == b"fresh\r\nbytes\n"
    check_golden(g, "fresh\r\nbytes\n", False)  # and now it matches, byte for byte
    with pytest.raises(Failed, match="golden file rewritten"):
        check_golden(g, "changed\n", True)
    assert g.read_text() == "changed\n"


def test_relative_paths_live_under_tests_golden():
    assert golden_path("x/y.txt") == GOLDEN / "x" / "y.txt"
    assert GOLDEN.name == "golden" and GOLDEN.parent.name == "tests"


def test_update_golden_fixture_reflects_the_option(request, update_golden):
    assert update_golden is bool(request.config.getoption("--update-golden"))
