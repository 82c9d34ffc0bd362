"""`archc test DIR`: the samples' expectations pass (this is how CI runs them), and in temporary
directories a machine figure edited in a copy drifts with the exact table lines, `--update`
rewrites, a run without an expectation, a vanished run and a design with a syntax error fail.

The small design is conftest's EASY_MACHINE with one element-wise run: two 1e6-element fp16
inputs read and one written (6 MB) at 1 TB/s is 6 us, plus 1 us per op: 7 us, and its 1e6
FLOP in 7 us are 142.857 GFLOP/s. HBM at 500 GB/s makes it 12 + 1 = 13 us and 76.923 GFLOP/s."""
from __future__ import annotations

import json
import re
import shutil

import pytest

from archc.runtime import regress
from conftest import EASY_MACHINE, ROOT, SAMPLES, run_cli

pytestmark = pytest.mark.build

VADD = "run vadd { model vadd(1000000); on c; precision fp16 }\n"
FAST, SLOW = "bandwidth = 1 TB/s\n  launch", "bandwidth = 500 GB/s\n  launch"


def _has_row(text: str, *cells: str) -> bool:
    """Whether `text` has a table row of exactly these cells (columns are padded to align)."""
    return re.search("^" + " +".join(re.escape(c) for c in cells) + "$", text, re.M) is not None


def _design(tmp_path, runs: str = VADD, name: str = "m.arch"):
    f = tmp_path / name
    f.write_text(EASY_MACHINE + runs)
    return f


def _updated(tmp_path, runs: str = VADD):
    """A design in tmp_path and its expectation file, written by --update."""
    f = _design(tmp_path, runs)
    r = run_cli("test", ".", "--update", cwd=tmp_path)
    assert r.code == 0, r
    assert "wrote m.expected.json\n" in r.stdout
    return f


# ---- the samples, as CI runs them ----------------------------------------------------------

def test_samples_expected_pass_and_cover_every_sample():
    files = sorted((SAMPLES / "expected").glob("*.expected.json"))
    sources = {regress.read(p).source.resolve() for p in files}
    assert sources == {p.resolve() for p in SAMPLES.glob("*.arch")}, "every sample has its expectations"
    r = run_cli("test", "samples/expected", cwd=ROOT)
    assert r.code == 0, r
    runs = sum(len(json.loads(p.read_text())["runs"]) for p in files)
    assert r.stdout.endswith(f"\nok: {len(files)} files, {runs} runs, {5 * runs} figures within tolerance\n"), r
    for p in files:
        assert f"ok     samples/{p.name.split('.')[0]}.arch (samples/expected/{p.name}): " in r.stdout


def test_a_changed_machine_figure_in_a_copy_of_a_sample_fails_with_a_table(tmp_path):
    # the samples' layout copied (the workload, the machine and model files it imports, its expectations),
    # and the H100's HBM3 at 3 TB/s instead of 3.35: the memory-bound runs drift, the GEMM does not
    (tmp_path / "expected").mkdir()
    (tmp_path / "machines").mkdir()
    shutil.copy(SAMPLES / "h100.arch", tmp_path)
    shutil.copytree(SAMPLES / "models", tmp_path / "models")
    text = (SAMPLES / "machines" / "h100.arch").read_text()
    assert "bandwidth = 3.35 TB/s" in text
    (tmp_path / "machines" / "h100.arch").write_text(text.replace("bandwidth = 3.35 TB/s", "bandwidth = 3 TB/s"))
    shutil.copy(SAMPLES / "expected" / "h100.expected.json", tmp_path / "expected")
    r = run_cli("test", "expected", cwd=tmp_path)
    assert r.code == 6, r
    lines = r.stdout.splitlines()
    runs = len(json.loads((SAMPLES / "expected" / "h100.expected.json").read_text())["runs"])
    assert lines[0].startswith(f"FAIL   h100.arch (expected/h100.expected.json): {runs} runs, {5 * runs} figures, "
                               f"analytic; ")
    assert re.match(r"file +run +metric +expected +got +change +status$", lines[2])
    assert re.search(r"^h100\.arch +llm_decode +latency_s +[\d.]+ ms +[\d.]+ ms +\+[\d.]+% +DRIFT$", r.stdout, re.M)
    assert not re.search(r"^h100\.arch +gemm ", r.stdout, re.M)
    assert "FAILED: " in r.stdout and "`archc test --update` accepts the new figures" in r.stdout


# ---- in a temporary directory --------------------------------------------------------------

def test_pass_then_drift_when_the_hbm_bandwidth_is_edited(tmp_path):
    f = _updated(tmp_path)
    r = run_cli("test", ".", cwd=tmp_path)
    assert r.code == 0, r
    assert r.stdout == ("ok     m.arch (m.expected.json): 1 run, 5 figures, analytic\n"
                        "\nok: 1 file, 1 run, 5 figures within tolerance\n")
    f.write_text(f.read_text().replace(FAST, SLOW))
    r = run_cli("test", ".", cwd=tmp_path)
    assert r.code == 6, r
    assert r.stdout == (
        "FAIL   m.arch (m.expected.json): 1 run, 5 figures, analytic; 1 failing\n"
        "\n"
        "file    run   metric              expected               got  change  status\n"
        "m.arch  vadd  latency_s               7 us             13 us  +85.7%  DRIFT\n"
        "m.arch  vadd  throughput  142.8571 GFLOP/s  76.92308 GFLOP/s  -46.2%  DRIFT\n"
        "\n"
        "FAILED: 2 figures drifted, 0 runs vanished, 0 runs without expectations, 0 errors (1 file, 1 run); "
        "`archc test --update` accepts the new figures\n")
    # -v lists the figures that held too (energy does not follow bandwidth: no HBM energy declared)
    r = run_cli("test", ".", "-v", cwd=tmp_path)
    assert re.search(r"^m\.arch +vadd +energy_per_step_j +2\.3 uJ +2\.3 uJ +\S+% +ok$", r.stdout, re.M), r


def test_tolerances_per_metric_and_rtol(tmp_path):
    f = _updated(tmp_path)
    f.write_text(f.read_text().replace(FAST, SLOW))
    exp = tmp_path / "m.expected.json"
    data = json.loads(exp.read_text())
    data["rtol_per_metric"] = {"latency_s": 0.9}
    exp.write_text(json.dumps(data))
    r = run_cli("test", ".", cwd=tmp_path)
    assert r.code == 6, r
    assert " latency_s " not in r.stdout and " throughput " in r.stdout
    # --rtol loosens the rest; below the throughput's 46.2% it still fails
    assert run_cli("test", ".", "--rtol", "0.5", cwd=tmp_path).code == 0
    assert run_cli("test", ".", "--rtol", "0.4", cwd=tmp_path).code == 6
    bad = run_cli("test", ".", "--rtol", "-1", cwd=tmp_path)
    assert bad.code == 2 and "a relative tolerance is a number >= 0" in bad.stderr


def test_update_rewrites_deterministically_and_keeps_the_settings(tmp_path):
    f = _updated(tmp_path)
    exp = tmp_path / "m.expected.json"
    data = json.loads(exp.read_text())
    assert data["schema"] == "archc.expected/1" and data["level"] == "analytic" and data["rtol"] == 1e-6
    assert data["runs"]["vadd"] == {"latency_s": 7e-6, "throughput": 142857140000.0, "throughput_unit": "FLOP/s",
                                    "energy_per_step_j": 2.3e-06, "energy_per_item_j": 2.3e-12,
                                    "memory_per_chip_b": 6000000}
    assert exp.read_text() == json.dumps(data, indent=2, sort_keys=True) + "\n"
    data["rtol"] = 1e-3
    data["rtol_per_metric"] = {"energy_per_step_j": 0.0}
    exp.write_text(json.dumps(data))
    f.write_text(f.read_text().replace(FAST, SLOW))
    r = run_cli("test", ".", "--update", cwd=tmp_path)
    assert r.code == 0, r
    assert "wrote m.expected.json\n" in r.stdout and r.stdout.endswith(
        "updated: 1 of 1 expectation files rewritten (1 run)\n")
    new = json.loads(exp.read_text())
    assert new["rtol"] == 1e-3 and new["rtol_per_metric"] == {"energy_per_step_j": 0.0}
    # rounded to 6 digits (tolerance 1e-3: at least 6), the energy to 17 (its tolerance is 0)
    assert new["runs"]["vadd"]["latency_s"] == 1.3e-05 and new["runs"]["vadd"]["throughput"] == 76923100000.0
    assert run_cli("test", ".", cwd=tmp_path).code == 0
    again = run_cli("test", ".", "--update", cwd=tmp_path)
    assert again.code == 0 and "wrote" not in again.stdout
    assert again.stdout.endswith("updated: 0 of 1 expectation files rewritten (1 run)\n")
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")], "no temporary file left"


def test_a_run_without_an_expectation_fails(tmp_path):
    f = _updated(tmp_path)
    f.write_text(f.read_text() + "run vadd2 { model vadd(2000000); on c; precision fp16 }\n")
    r = run_cli("test", ".", cwd=tmp_path)
    assert r.code == 6, r
    assert _has_row(r.stdout, "m.arch", "vadd2", "-", "-", "-", "-", "NO EXPECTATION: no expected figures for this run")
    assert "0 figures drifted, 0 runs vanished, 1 run without expectations, 0 errors" in r.stdout
    # a design in DIR without any expectation file: every run, and --update creates the file
    _design(tmp_path, VADD, "n.arch")
    r = run_cli("test", ".", cwd=tmp_path)
    assert r.code == 6 and "FAIL   n.arch (n.expected.json (none yet)): 1 run, 0 figures" in r.stdout, r


def test_a_vanished_run_fails(tmp_path):
    f = _updated(tmp_path, VADD + "run other { model vadd(10); on c; precision fp16 }\n")
    f.write_text(EASY_MACHINE + VADD)
    r = run_cli("test", ".", cwd=tmp_path)
    assert r.code == 6, r
    assert _has_row(r.stdout, "m.arch", "other", "-", "-", "-", "-", "VANISHED: the design has no run 'other'")
    assert "0 figures drifted, 1 run vanished" in r.stdout


def test_a_syntax_error_is_located_and_fails(tmp_path):
    f = _updated(tmp_path)
    lines = (EASY_MACHINE + VADD).splitlines()
    n = next(i for i, x in enumerate(lines) if x.startswith("run vadd"))
    lines[n] = "run vadd { model vadd(1000000) on c; precision fp16 }"  # the ';' after the model is gone
    f.write_text("\n".join(lines) + "\n")
    r = run_cli("test", ".", cwd=tmp_path)
    assert r.code == 1, r
    assert re.match(rf"m\.arch:{n + 1}:\d+: error: ", r.stderr), r
    assert "\n    run vadd { model vadd(1000000) on c; precision fp16 }\n" in r.stderr and "^" in r.stderr
    assert "Traceback" not in r.stderr
    assert r.stdout.startswith("ERROR  m.arch (m.expected.json): the design has errors\n")
    assert _has_row(r.stdout, "m.arch", "-", "-", "-", "-", "-", f"ERROR: {r.stderr.splitlines()[0]}")
    # --update leaves the expectation file of a design with errors as it is
    before = (tmp_path / "m.expected.json").read_text()
    assert run_cli("test", ".", "--update", cwd=tmp_path).code == 1
    assert (tmp_path / "m.expected.json").read_text() == before


def test_bad_expectation_files_are_located_and_never_overwritten(tmp_path):
    _design(tmp_path)
    exp = tmp_path / "m.expected.json"
    exp.write_text('{"schema": "archc.expected/1",\n "runs": {"vadd": {"latency": 1}},\n "rtol_per_metrics": {}}\n')
    r = run_cli("test", ".", cwd=tmp_path)
    assert r.code == 1, r
    assert r.stderr.startswith(
        'm.expected.json:2:20: error: run "vadd": no metric "latency"; the metrics are latency_s, throughput, '
        'energy_per_step_j, energy_per_item_j, memory_per_chip_b\n'
        '     "runs": {"vadd": {"latency": 1}},\n'
        '                       ^^^^^^^^^\n'
        'm.expected.json:3:2: error: unknown key "rtol_per_metrics"; an expectation file has schema, source, '
        'level, rtol, rtol_per_metric, runs\n'), r
    assert r.stdout.startswith("ERROR  m.expected.json: not usable (the errors are above)\n"), r
    assert "(1 file, 0 runs)" in r.stdout
    exp.write_text('{"schema": "archc.expected/1", "runs": {,}}\n')
    r = run_cli("test", ".", cwd=tmp_path)
    assert r.code == 1 and "m.expected.json:1:41: error: not valid JSON: Expecting property name" in r.stderr, r
    # a file that is not an expectation file is not replaced by --update
    exp.write_text('{"some": "other tool\'s file"}\n')
    r = run_cli("test", ".", "--update", cwd=tmp_path)
    assert r.code == 1, r
    assert "m.expected.json:1:1: error: has no \"schema\"; this archc reads \"archc.expected/1\"" in r.stderr
    assert exp.read_text() == '{"some": "other tool\'s file"}\n'
    # a source that is not there is located at the key that names it
    exp.write_text('{"schema": "archc.expected/1", "source": "../gone.arch", "runs": {}}\n')
    r = run_cli("test", ".", cwd=tmp_path)
    assert r.code == 1 and "m.expected.json:1:42: error: the design \"../gone.arch\" it names (../gone.arch) is missing\n" in r.stderr, r


def test_nothing_to_test_and_help(tmp_path):
    r = run_cli("test", tmp_path)
    assert r.code == 1 and r.stderr == f"archc: error: nothing to test in {tmp_path}: no *.expected.json and no *.arch files\n"
    r = run_cli("test", "--help")
    assert r.code == 0 and 'schema "archc.expected/1"' in r.stdout and "--update" in r.stdout and "--rtol" in r.stdout


def test_digits_follow_the_tolerance():
    assert [regress.digits_for(t) for t in (0.0, 1e-12, 1e-6, 1e-3, 0.05, 1.0)] == [17, 14, 8, 6, 6, 6]
