"""The lowering, case by case: each `[case]` of tests/data/*.test is a small .arch design whose
runs must lower to the printed plan under `[out]` (codegen/plan.py's Plan.dump: the mapping,
one line per task with what it computes and moves, the collectives' steps). The machines are
tiny so a reader can check every figure by hand; `--update-golden` rewrites the `[out]`
sections and fails, so the diff is read before committing."""
from __future__ import annotations

from pathlib import Path

import pytest

from archc.api import check
from archc.codegen.lower import lower
from archc.dsl.diagnostics import ArchcError

from data_cases import check_cases

DATA = Path(__file__).resolve().parent / "data"
FILES = sorted(DATA.glob("plan-*.test"))


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_plan_cases(path, tmp_path, update_golden):
    def run_case(name: str, text: str) -> str:
        f = tmp_path / f"{name}.arch"
        f.write_text(text, encoding="utf-8")
        try:
            design = check(f)
        except ArchcError as e:  # a case may show an error; the path is the case's name
            return e.render().replace(str(f), f"{name}.arch") + "\n"
        return "\n".join(lower(r).dump() for _, r in design.runs)
    check_cases(path, run_case, update_golden)


def test_every_plan_file_has_cases():
    assert FILES, "tests/data/plan-*.test holds the lowering's golden cases"
