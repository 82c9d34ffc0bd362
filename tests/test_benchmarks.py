"""The benchmark scripts run and print what they promise: benchmarks/calibration.py at the
event level on one fast entry (--only), benchmarks/simulator.py --quick, benchmarks/estimates.py
on one sample (and its peer's closed form by hand), benchmarks/formats.py quiet and loaded, and
benchmarks/wafer.py --quick."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"

NUM = r"[-+]?\d[\d.,]*(?:e[-+]?\d+)?"


def _run(script: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONIOENCODING="utf-8")
    return subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=str(ROOT))


@pytest.mark.build
def test_calibration_event_one_entry():
    p = _run("calibration.py", "--level", "event", "--only", "0")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert re.match(r"\s*#\s+machine\s+workload\s+measured\s+event\s+error\s+wall s\s+tasks\s+events", lines[0]), p.stdout
    # one row: index, machine, workload, measured, estimated, signed error %, wall s, tasks, events
    rows = [ln for ln in lines[1:] if re.match(r"\s*\d+ (?!entries)\S", ln)]
    assert len(rows) == 1, p.stdout
    m = re.match(rf"\s*0 (\S+)\s+(.+?)\s+({NUM})\s+({NUM})\s+([-+]\d+\.\d)%\s+({NUM})\s+({NUM})\s+({NUM})\s+\S",
                 rows[0])
    assert m, rows[0]
    measured, estimated, err = float(m[3]), float(m[4]), float(m[5])
    assert measured > 0 and estimated > 0
    assert abs((estimated - measured) / measured * 100 - err) < 0.2  # the error is (est - meas) / meas
    assert float(m[6]) >= 0  # wall time
    assert re.search(rf"^1 entries \(event level\): mean absolute error {NUM}%, max {NUM}%", p.stdout, re.M), p.stdout
    assert re.search(r"^event level wall time: total", p.stdout, re.M), p.stdout


@pytest.mark.build
def test_calibration_prints_the_caveat_of_an_entry_that_is_not_like_for_like():
    import json
    entries = json.loads((BENCH / "calibration.json").read_text())["measurements"]
    flagged = [i for i, e in enumerate(entries) if e["archc"].get("caveat")]
    clean = next(i for i, e in enumerate(entries) if not e["archc"].get("caveat"))
    assert flagged  # the BERT seq-512 entry: binned variable-length data against a padded run
    p = _run("calibration.py", "--only", f"{flagged[0]},{clean}")
    assert p.returncode == 0, p.stderr
    assert f"  [{flagged[0]}] " + entries[flagged[0]]["archc"]["caveat"][:40] in p.stdout, p.stdout
    assert f"  [{clean}] " not in p.stdout


@pytest.mark.build
def test_calibration_only_rejects_bad_index():
    p = _run("calibration.py", "--level", "event", "--only", "999")
    assert p.returncode != 0
    assert "--only 999" in (p.stderr + p.stdout)


@pytest.mark.build
def test_simulator_quick():
    p = _run("simulator.py", "--quick")
    assert p.returncode == 0, p.stderr + p.stdout
    assert re.search(r"^h100 gpt_train layers=1 dp=8\s+[\d,]+\s+[\d,]+\s+\d", p.stdout, re.M), p.stdout
    assert "ZigZag comparison skipped" in p.stdout


@pytest.mark.build
def test_estimates_prints_every_run_and_the_peer_ratio():
    p = _run("estimates.py", "--repeat", "1", "--no-processes", str(ROOT / "samples" / "groq.arch"))
    assert p.returncode == 0, p.stderr + p.stdout
    for run in ("gemm", "llm_decode"):  # the runs samples/groq.arch declares
        assert re.search(rf"^groq\.arch\s+{run}\s+{NUM}\s+{NUM}\s+{NUM}\s+{NUM}x$", p.stdout, re.M), p.stdout
    assert re.search(rf"^2 runs: median {NUM} ms per estimate", p.stdout, re.M), p.stdout


def test_estimates_peer_closed_form_by_hand():
    sys.path.insert(0, str(BENCH))
    try:
        from estimates import closed_form
    finally:
        sys.path.remove(str(BENCH))
    # one task: 2 TFLOP at 1 PFLOP/s = 2 ms against 1 GB at 1 TB/s = 1 ms -> 2 ms a micro-batch; a
    # 1 GB all-reduce over 4 chips on 100 GB/s links: 2 * 3/4 * 10 ms = 15 ms; 2 stages, 4
    # micro-batches: bubble (2 - 1) / 4 * 17 ms = 4.25 ms; 2 replicas exchange 0.5 GB of weights:
    # 2 * 1/2 * 0.5 GB / 100 GB/s = 5 ms. Step: 2 + 15 + 4.25 + 5 = 26.25 ms.
    x = dict(tasks=[(2e12, 1e9, 1.0, 1e9, 4, 0.5e9)], peak=1e15, bw=1e12, link=100e9, tp=1, pp=2, dp=2, m=4,
             params=1e9, train=True)
    got = closed_form(x)
    assert got["step_s"] == pytest.approx(26.25e-3)
    assert got["memory"] == pytest.approx(1e9 * 16 / 2)  # weights, gradients and Adam state over 2 stages


def test_llama3_goodput_runs_and_the_readme_matches():
    p = _run("llama3_goodput.py")
    assert p.returncode == 0, p.stderr
    out = p.stdout
    m = re.search(r"MTTI (\d+\.\d+) h: (\d[\d,]*) interruptions expected in 54 days \(reported: 466, 419 unexpected\)",
                  out)
    assert m, out
    # 2,048 nodes at 1/3,692 h: MTTI = 3,692 / 2,048 = 1.80 h, 54 x 24 / 1.80 = 719 interruptions
    assert float(m[1]) == pytest.approx(3692 / 2048, abs=0.005) and int(m[2].replace(",", "")) == 719
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Failures at scale: Llama 3", 1)[1].split("\n## ", 1)[0]
    for line in out.splitlines():  # every printed line is in the README's block, as printed
        assert line.strip() in section, line


def test_the_scale_document_is_what_its_script_prints():
    """docs/scale.md is benchmarks/scale.py's output (rerun the script after changing a machine
    or the model), and its weak-scaling claims hold on the table: the H100 cluster keeps at least
    90% of its per-GPU throughput from 8 to 16,384 GPUs once the exchange takes the tree."""
    p = _run("scale.py", "--check", timeout=600)
    assert p.returncode == 0, p.stderr + p.stdout
    doc = (ROOT / "docs" / "scale.md").read_text(encoding="utf-8")
    m = re.search(r"per-chip throughput at the largest size is (\d+)% of the\n  smallest's on H100", doc)
    assert m and int(m.group(1)) >= 90, doc
    for png in ("gpt_training.png", "llama_decode.png"):
        assert (ROOT / "docs" / "scale" / png).stat().st_size > 0


@pytest.mark.build
def test_formats_benchmark_quiet_and_loaded():
    """benchmarks/formats.py: both sections, every output the same as its baseline's, and the
    spinning process it starts for the loaded section stopped at the end."""
    p = _run("formats.py", "300000", "--repeat", "1", timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    out = p.stdout
    assert "\nquiet: 300,000 values" in out and "\nloaded (one core kept busy" in out, out
    rows = [ln for ln in out.splitlines() if re.match(r"  (bf16|fp8_e4m3|fp16|posit16) ", ln)]
    assert len(rows) == 2 * 14, out
    assert all(" yes " in ln for ln in rows), out
    m = re.search(r"spinner pid (\d+) stopped", out)
    assert m, out
    with pytest.raises(ProcessLookupError):
        os.kill(int(m[1]), 0)


@pytest.mark.build
def test_wafer_quick():
    """benchmarks/wafer.py --quick: both decodes, both ways, a row each with its tasks and
    phase times (ms: layouts, graph, finalize, engine, report; the total their sum) and the
    graph's time over the engine's; the bands' graph far smaller than every row's; the
    reports checked equal."""
    p = _run("wafer.py", "--quick", "--no-memory", timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    rows = {}
    for ln in p.stdout.splitlines():
        m = re.match(rf"(decode hidden [\d,]+)\s+(bands|every row)\s+({NUM})" + rf"\s+({NUM})" * 7, ln)
        if m:
            tasks = int(m[3].replace(",", ""))
            lay, graph, fin, engine, report, total, ratio = (float(m[k]) for k in range(4, 11))
            assert total == pytest.approx(lay + graph + fin + engine + report, abs=0.35)
            # the ratio is printed to 0.1 from unrounded times, the times to 0.1 ms
            assert ratio == pytest.approx(graph / engine, abs=0.05 + 0.05 / engine + 0.05 * graph / engine ** 2 + 1e-9)
            rows[m[1], m[2]] = tasks
    assert set(rows) == {(c, w) for c in ("decode hidden 1,024", "decode hidden 12,288")
                         for w in ("bands", "every row")}, p.stdout
    for c in ("decode hidden 1,024", "decode hidden 12,288"):
        assert rows[c, "bands"] * 100 < rows[c, "every row"]
    assert "reports of the two ways equal: yes" in p.stdout
