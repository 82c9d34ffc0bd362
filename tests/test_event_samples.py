"""Every run of every sample at the event level, as a user runs it: `archc run FILE --run NAME
--level event --trace T --out D`. The trace must load as Chrome trace JSON, the output
directory must hold the report, the per-op CSV and the plots, and where the event level's
step time differs from the analytic level's by more than 5% the report must name what
explains it (a pipeline bubble, link contention, or regions laid out smaller or larger than
the analytic sizes)."""
from __future__ import annotations

import csv
import json
import re

import pytest

from archc import __version__
from archc.api import check
from archc.runtime.pipeline import run_analytic

from conftest import SAMPLES, run_cli

pytestmark = pytest.mark.build


def _runs():
    out = []
    for f in sorted(SAMPLES.glob("*.arch")):
        for name in re.findall(r"^run (\w+)", f.read_text(), re.M):
            out.append(pytest.param(f.stem, name, id=f"{f.stem}-{name}"))
    return out


def _check_chrome_trace(path):
    data = json.loads(path.read_text())
    events = data["traceEvents"]
    assert isinstance(events, list) and events
    spans = [e for e in events if e.get("ph") == "X"]
    assert spans, "no timeline spans"
    for e in spans:
        assert isinstance(e["name"], str) and isinstance(e["pid"], int) and isinstance(e["tid"], int)
        assert e["ts"] >= 0 and e["dur"] >= 0
    assert all(e.get("ph") in ("X", "M", "C", "i", "B", "E") for e in events)


EXPLAINED = ("pipeline bubble", "link contention", "of the tiles the analytic level sizes them to")


@pytest.mark.parametrize("sample,run", _runs())
def test_sample_run_at_event_level(tmp_path, sample, run):
    trace, out = tmp_path / "trace.json", tmp_path / "out"
    r = run_cli("run", SAMPLES / f"{sample}.arch", "--run", run, "--level", "event", "--trace", trace,
                "--out", out, timeout=600)
    assert r.code == 0, r.stderr[-3000:]
    assert "event level" in r.stdout and "critical path" in r.stdout
    _check_chrome_trace(trace)
    rep = json.loads((out / "report.json").read_text())
    assert rep["level"] == "event" and rep["run"] == run and rep["latency_s"] > 0
    assert (out / "report.txt").read_text().startswith(f"run {run}:")
    rows = list(csv.DictReader((out / "ops.csv").open()))
    assert rows and {"name", "time_s", "bound_by"} <= set(rows[0])
    for stem in ("roofline", "utilisation", "links"):
        assert (out / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (out / f"{stem}.svg").read_text().lstrip().startswith(("<?xml", "<svg"))
    a = run_analytic(check(SAMPLES / f"{sample}.arch", None, run).run(run), __version__)
    if abs(rep["latency_s"] / a.latency_s - 1.0) > 0.05:
        text = (out / "report.txt").read_text()
        assert any(x in text for x in EXPLAINED), (rep["latency_s"], a.latency_s, rep["notes"])
