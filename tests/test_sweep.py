"""`archc sweep`: a 3 x 4 grid on the local process pool and on a Dask LocalCluster (threads and
processes) gives the same rows, each equal to the figures of the same run made alone; the points
that fail (more chips than the machine has, memory that does not fit) are reported with their
located errors while the rest complete; a second sweep into the same directory computes no
point and writes the same bytes; an interrupted sweep resumes from what it finished; a changed
design is computed again; and a results file archc did not write is refused.

The design is conftest's EASY_MACHINE (4 chips of 100 GB on a switch) with a data-parallel run
of two 1024 x 1024 linear layers: chips=8 needs more chips than the node has, and a batch of
10^8 rows needs 410 GB per chip."""
from __future__ import annotations

import csv
import io
import json

import pytest

from archc import api
from archc.runtime import sweep as S
from conftest import EASY_MACHINE, run_cli

pytestmark = pytest.mark.build

RUN = """
run mlp(batch = 64, d = 1024, layers = 2, chips = 1) {
  model stack(batch, d, layers)
  on node
  strategy data, chips = chips, micro_batch = batch, global_batch = batch * chips
  precision fp16
}
"""
BATCHES, CHIPS = ("64", "128", "100000000"), ("1", "2", "4", "8")
GRID = ["--grid", f"batch={','.join(BATCHES)}", "--grid", f"chips={','.join(CHIPS)}"]


@pytest.fixture
def design(tmp_path):
    f = tmp_path / "m.arch"
    f.write_text(EASY_MACHINE + RUN)
    return f


def _rows(out) -> list[dict]:
    return json.loads((out / "sweep.json").read_text())["points"]


def _expected(f, batch: str, chips: str) -> dict:
    """The point's figures from the run made alone, in this process."""
    return S.figures(api.load(f).run("mlp", batch=int(batch), chips=int(chips)))


def test_a_3x4_sweep_reports_failed_points_and_the_rest_match_single_runs(design, tmp_path):
    out = tmp_path / "out"
    r = run_cli("sweep", "m.arch", *GRID, "--out", "out", "--workers", "2", cwd=tmp_path)
    assert r.code == 0, r
    lines = r.stdout.splitlines()
    assert lines[0] == "sweep of run mlp in m.arch, analytic level"
    head = lines[2].split()
    assert head == ["batch", "chips", "latency", "throughput", "util", "energy/item", "power", "memory/chip",
                    "bottleneck", "status"]
    assert "failed points:" in lines
    assert "  batch=64, chips=8: m.arch:39:3: error: run 'mlp' needs 8 chips but 'node' has 4; 4 too many" in lines
    assert ("  batch=100000000, chips=1: m.arch:36:5: error: run 'mlp' does not fit: each chip needs 410 GB "
            "(weights 4.19 MB, activations 410 GB) but has 100 GB of hbm (c); 310 GB too much") in lines
    assert "12 of 12 points: 6 ok, 6 failed; 12 computed, 0 reused" in lines
    # progress on stderr, whole lines (not a terminal), ending with every point
    assert r.stderr.splitlines()[-1].startswith("archc: sweep 12 of 12 points (6 failed), ")
    rows = _rows(out)
    assert [(p["params"]["batch"], p["params"]["chips"]) for p in rows] == [(b, c) for b in BATCHES for c in CHIPS]
    for p in rows:
        b, c = p["params"]["batch"], p["params"]["chips"]
        if c == "8" or b == "100000000":
            assert p["status"] == "error" and p["latency_s"] is None, p
            continue
        assert p["status"] == "ok" and p["error"] == ""
        want = _expected(design, b, c)
        assert {k: p[k] for k in want} == want
        assert f"{b:<9}  {c:<5}  " + S.si(want["latency_s"], "s").rjust(7) in r.stdout
    # the CSV holds the same rows, figures to 10 digits
    table = list(csv.DictReader(io.StringIO((out / "sweep.csv").read_text())))
    assert [t["status"] for t in table] == [p["status"] for p in rows]
    ok = next(t for t in table if t["status"] == "ok")
    assert float(ok["latency_s"]) == pytest.approx(_expected(design, ok["batch"], ok["chips"])["latency_s"], rel=1e-9)
    for key, _, _ in S.METRICS:  # a plot per metric, PNG and SVG
        assert (out / f"{key}.png").read_bytes().startswith(b"\x89PNG")
        assert b"<svg" in (out / f"{key}.svg").read_bytes()[:400]

    # a second sweep into the directory computes nothing and writes the same bytes
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    again = run_cli("sweep", "m.arch", *GRID, "--out", "out", cwd=tmp_path)
    assert again.code == 0, again
    assert "12 of 12 points: 6 ok, 6 failed; 0 computed, 12 reused" in again.stdout
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before

    # a grid that adds a value computes only the new points
    more = run_cli("sweep", "m.arch", "--grid", "batch=64,128,100000000,256", "--grid", "chips=1,2,4,8",
                   "--out", "out", cwd=tmp_path)
    assert more.code == 0, more
    assert "16 of 16 points: 9 ok, 7 failed; 4 computed, 12 reused" in more.stdout


@pytest.mark.parametrize("processes", [False, True], ids=["threads", "processes"])
def test_a_dask_cluster_gives_the_rows_of_the_local_pool(design, tmp_path, processes):
    from dask.distributed import LocalCluster
    grid = S.parse_grid([GRID[1], GRID[3]])
    local = S.sweep(design, "mlp", grid, workers=2)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=processes, dashboard_address=None) as cluster:
        remote = S.sweep(design, "mlp", grid, scheduler=cluster.scheduler_address)
    assert remote.computed == local.computed == 12 and remote.failed == local.failed == 6
    assert remote.rows == local.rows
    assert remote.to_csv() == local.to_csv() and remote.to_json() == local.to_json()


def test_an_interrupted_sweep_resumes_from_the_points_it_finished(design, tmp_path):
    grid = S.parse_grid([GRID[1], GRID[3]])
    out = tmp_path / "out"
    seen = []

    def stop_after_five(done, total, point, row, computed):
        seen.append(point)
        if len(seen) == 5:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        S.sweep(design, "mlp", grid, out=out, workers=1, on_point=stop_after_five, checkpoint_s=3600)
    kept = _rows(out)
    assert sorted(p["key"] for p in kept) == sorted(p.key for p in seen)
    resumed = S.sweep(design, "mlp", grid, out=out, workers=1)
    assert (resumed.reused, resumed.computed) == (5, 7)
    assert resumed.rows == S.sweep(design, "mlp", grid, workers=1).rows


def test_a_changed_design_or_set_value_is_computed_again(design, tmp_path):
    out = tmp_path / "out"
    assert run_cli("sweep", "m.arch", "--grid", "chips=1,2", "--out", "out", cwd=tmp_path).code == 0
    r = run_cli("sweep", "m.arch", "--grid", "chips=1,2", "--set", "layers=3", "--out", "out", cwd=tmp_path)
    assert "2 of 2 points: 2 ok, 0 failed; 2 computed, 0 reused" in r.stdout, r
    design.write_text(design.read_text().replace("bandwidth = 1 TB/s", "bandwidth = 2 TB/s"))
    r = run_cli("sweep", "m.arch", "--grid", "chips=1,2", "--set", "layers=3", "--out", "out", cwd=tmp_path)
    assert "2 of 2 points: 2 ok, 0 failed; 2 computed, 0 reused" in r.stdout, r
    assert {p["params"]["chips"] for p in _rows(out)} == {"1", "2"}


def test_results_archc_did_not_write_are_refused_and_left_alone(design, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "sweep.json").write_text('{"mine": true}\n')
    r = run_cli("sweep", "m.arch", "--grid", "chips=1,2", "--out", "out", cwd=tmp_path)
    assert r.code == 1, r
    assert r.stderr == ("archc: error: cannot write out/sweep.json: it is not the results of an archc sweep (no "
                        "\"schema\": \"archc.sweep/1\" with a list of points); archc replaces only its own: choose "
                        "another --out or move the file away\n")
    assert (out / "sweep.json").read_text() == '{"mine": true}\n'
    assert sorted(p.name for p in out.iterdir()) == ["sweep.json"]


@pytest.mark.parametrize("args, message", [
    (["--grid", "chips"], "<--grid>:1:1: error: '--grid chips' needs the form KEY=V1,V2,..."),
    (["--grid", "chips=1,,2"], "<--grid>:1:9: error: '--grid chips=1,,2' has an empty value; values are "
                               "separated by commas"),
    (["--grid", "chips=1,1"], "<--grid>:1:9: error: '1' is given twice for 'chips'"),
    (["--grid", "chips=1", "--grid", "chips=2"], "<--grid>:1:1: error: 'chips' is swept by two --grid options"),
    (["--grid", "chips=1,2", "--set", "chips=4"], "<--grid>:1:1: error: 'chips' is both swept (--grid) and set"),
    (["--grid", "width=1,2"], "<--set width>:1:1: error: run 'mlp' has no parameter 'width'"),
    (["--run", "nope", "--grid", "chips=1,2"], "archc: error: no run named 'nope'; this design has mlp"),
    ([], "archc: error: archc sweep needs at least one --grid KEY=V1,V2,..."),
])
def test_command_line_mistakes_stop_before_any_point(design, tmp_path, args, message):
    r = run_cli("sweep", "m.arch", *args, "--out", "out", cwd=tmp_path)
    assert r.code == 1, r
    assert r.stderr.startswith(message), r
    assert r.stdout == "" and not (tmp_path / "out").exists()


def test_run_pays_for_neither_dask_nor_rich():
    import subprocess
    import sys

    from conftest import ROOT
    code = ("import sys, contextlib, io\nfrom archc.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n    main(['run', 'samples/h100.arch', '--run', 'gemm'])\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed', 'rich')))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "[]\n"
