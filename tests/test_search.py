"""`archc run --search`: the mapping search over tp/pp/dp, micro_batch, interleave and recompute."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from archc import __version__, api
from archc.cli import main
from archc.runtime.pipeline import run_analytic

pytestmark = pytest.mark.build

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
SMALL = {"layers": "4", "hidden": "1024", "heads": "16", "seq": "512", "vocab": "8192",
         "global_batch": "64", "micro_batch": "1", "tp": "2", "pp": "2", "dp": "8"}
SETS = [x for k, v in SMALL.items() for x in ("--set", f"{k}={v}")]


@pytest.fixture
def design(tmp_path):
    """The a100 workload sample, with the machine it imports next to it (--write-run rewrites
    the workload file; the imported machine is only read)."""
    p = tmp_path / "a100.arch"
    shutil.copy(SAMPLES / "a100.arch", p)
    (tmp_path / "machines").mkdir()
    shutil.copy(SAMPLES / "machines" / "a100.arch", tmp_path / "machines" / "a100.arch")
    return p


def _search(path, capsys, *extra):
    rc = main(["run", str(path), "--run", "gpt_train", "--search", "--trials", "40", "--seed", "3",
               *SETS, *extra])
    out = capsys.readouterr()
    return rc, out.out, out.err


def _latency(path, params: dict, run="gpt_train") -> float:
    r = dict(api.check(path, params, run).runs)[run]
    return run_analytic(r, __version__).latency_s


def test_search_deterministic_better_pareto_and_reproducible(design, capsys):
    rc, out1, err = _search(design, capsys, "--json")
    assert rc == 0, err
    rc, out2, _ = _search(design, capsys, "--json")
    assert rc == 0 and out1 == out2  # same seed, same output
    rc, text1, _ = _search(design, capsys)
    rc, text2, _ = _search(design, capsys)
    assert rc == 0 and text1 == text2 and "Pareto front" in text1 and "best" in text1
    res = json.loads(out1)
    start, best, front = res["start"], res["best"], res["pareto"]
    assert start["feasible"] and best["feasible"]
    assert best["latency_s"] <= start["latency_s"]
    # the chip count and global batch are kept
    for c in [best, *front]:
        p = c["params"]
        assert p["tp"] * p["pp"] * p["dp"] == 32
        assert p["recompute"] in ("none", "selective", "full")
    # the front is non-dominated, pairwise
    assert front
    for a in front:
        for b in front:
            if a is not b:
                assert not (b["latency_s"] <= a["latency_s"] and b["energy_j"] <= a["energy_j"]
                            and (b["latency_s"] < a["latency_s"] or b["energy_j"] < a["energy_j"]))
    # every reported candidate re-checks and re-runs to the same latency
    for c in [start, best, *front]:
        lat = _latency(design, {**SMALL, **{k: str(v) for k, v in c["params"].items()}})
        assert lat == pytest.approx(c["latency_s"], rel=1e-12)
    # infeasible candidates carry a reason
    assert all(c["reason"] for c in res["infeasible"])


def test_write_run_checks_and_reproduces_best(design, capsys):
    before = design.read_text()
    rc, out, err = _search(design, capsys, "--json", "--write-run", "gpt_best")
    assert rc == 0, err
    best = json.loads(out)["best"]
    text = design.read_text()
    assert text.startswith(before) and "run gpt_best(" in text[len(before):]
    assert main(["check", str(design)]) == 0
    assert _latency(design, {}, "gpt_best") == pytest.approx(best["latency_s"], rel=1e-12)
    # the same name again is refused, the file untouched
    rc, out, err = _search(design, capsys, "--write-run", "gpt_best")
    assert rc == 1 and "already declares 'gpt_best'" in err and "Traceback" not in err
    assert design.read_text() == text


@pytest.mark.parametrize("args, message", [
    (["--run", "no_such_run", "--search"], "no run named 'no_such_run'"),
    (["--run", "gpt_train", "--search", "--write-run", "gpt_train"], "already declares 'gpt_train'"),
    (["--run", "gpt_train", "--write-run", "x"], "need --search"),
    (["--run", "gpt_train", "--search", "--level", "event", "--trace", "t.json"], "writes no trace"),
])
def test_bad_usage_exits_1_without_traceback(design, args, message):
    before = design.read_text()
    p = subprocess.run([sys.executable, "-m", "archc", "run", str(design), *args],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1, p.stderr
    assert message in p.stderr and "Traceback" not in p.stderr
    assert design.read_text() == before
