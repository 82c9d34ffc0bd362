"""The estimate API (`archc.load(path).runs[NAME].estimate(**params)`, `estimate_many`) and the
caches behind it (dsl/check.py keeps a file's checked declarations and its model instances by
arguments; dsl/parser.py keeps `--set` values): every estimate equals the one a fresh check of
the file with the same parameters gives, in any order, and errors and warnings are what a fresh
check reports."""
from __future__ import annotations

import pytest

import archc
from archc.dsl import check as check_mod
from archc.dsl.diagnostics import ArchcError
from archc.runtime import pipeline

from conftest import EASY_MACHINE, SAMPLES

H100 = SAMPLES / "h100.arch"
SMALL = {"layers": "2", "seq": "256", "hidden": "512", "heads": "8", "vocab": "1024"}


def fresh(path, params: dict, run: str) -> dict:
    """The reference: the file read, parsed, linked and checked with nothing kept from before."""
    saved = check_mod._PREPARED_MAX
    check_mod._PREPARED.clear()
    check_mod._PREPARED_MAX = 0  # nothing kept: every check rebuilds declarations and models
    try:
        r = pipeline.check(path, params, run).run(run)
        return pipeline.execute(r, "analytic").report.to_dict()
    finally:
        check_mod._PREPARED_MAX = saved


def test_estimates_equal_fresh_checks_in_any_order():
    h = archc.load(H100).runs["gpt_train"]
    points = [{**SMALL, "dp": "8"}, {**SMALL, "dp": "16", "global_batch": "256"},
              {**SMALL, "layers": "4", "dp": "8"},  # a model argument changed: the model is built anew
              {**SMALL, "dp": "8"}]  # the first point again, after the others
    got = [h.estimate(**p).to_dict() for p in points]
    want = [fresh(H100, p, "gpt_train") for p in points]
    assert got == want
    assert got[0] == got[3]
    # the points differ where they should: 8 vs 16 replicas, 2 vs 4 layers
    assert got[0]["chips"] == 8 and got[1]["chips"] == 16
    assert got[2]["flops"] > 1.9 * got[0]["flops"]


def test_estimate_many_is_estimate_in_order():
    h = archc.load(H100).runs["llm_decode"]
    points = [{"chips": c} for c in (1, 2, 4, 8)]
    many = [r.to_dict() for r in h.estimate_many(points)]
    assert many == [h.estimate(**p).to_dict() for p in points]
    assert [r["chips"] for r in many] == [1, 2, 4, 8]


def test_python_values_are_taken_as_set_values():
    h = archc.load(H100).runs["gpt_train"]
    a = h.estimate(**{**SMALL, "flash": False}).to_dict()
    b = fresh(H100, {**SMALL, "flash": "false"}, "gpt_train")
    assert a == b


def test_a_bad_point_raises_located_and_the_next_point_works():
    h = archc.load(H100).runs["gpt_train"]
    with pytest.raises(ArchcError) as e:
        h.estimate(**SMALL, dp=3)  # 512 sequences do not split over 3 replicas
    text = str(e.value)
    assert "dp" in text
    with pytest.raises(ArchcError) as e:
        h.estimate(nonsense=1)
    assert "has no parameter 'nonsense'" in str(e.value)
    assert h.estimate(**SMALL).to_dict() == fresh(H100, SMALL, "gpt_train")


def test_declaration_warnings_survive_the_kept_checker(tmp_path):
    # a capacity written in bits is accepted with a warning (dsl/check.py _bits_for_bytes)
    text = EASY_MACHINE.replace("memory hbm, 100 GB,", "memory hbm, 800 Gb,") + """
run r(M = 128) {
  model mm(M, 128, 128)
  on c
  precision fp16
}
"""
    f = tmp_path / "w.arch"
    f.write_text(text)
    source, linked = pipeline.link_file(f)
    for m in ("128", "256", "128"):
        d = pipeline.check_linked(source, linked, {"M": m}, "r")
        assert [w.message for w in d.warnings] == \
            ["a memory capacity in bits: 800 Gb is 100 GB; for bytes write 800 GB"], m


def test_declaration_errors_are_reported_every_time(tmp_path):
    f = tmp_path / "bad.arch"
    f.write_text(EASY_MACHINE.replace("clock 1 GHz", "clock 0 GHz") + "run r(M = 8) {\n  model mm(M, 8, 8)\n  on c\n  precision fp16\n}\n")
    source, linked = pipeline.link_file(f)
    for m in ("8", "16"):
        with pytest.raises(ArchcError) as e:
            pipeline.check_linked(source, linked, {"M": m}, "r")
        assert "clock" in str(e.value)


def test_the_documented_many_estimates_example_prints_what_the_doc_says(tmp_path):
    import re
    import subprocess
    import sys
    from conftest import ROOT
    doc = (ROOT / "docs" / "python.md").read_text(encoding="utf-8")
    part = doc[doc.index("## Many estimates in one process"):]
    code = re.search(r"```python\n(.*?)```", part, re.S).group(1)
    printed = re.search(r"It prints:\n\n```\n(.*?)```", part, re.S).group(1)
    script = tmp_path / "many.py"
    script.write_text(code)
    r = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert r.stdout == printed
