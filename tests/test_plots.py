"""Report plots (runtime/plots.py): `archc run --out` writes them, byte-stable, with content."""
from __future__ import annotations

import xml.etree.ElementTree as ET

import matplotlib
import pytest

from conftest import H100, run_cli, sample_text

pytestmark = pytest.mark.build

SMALL_GPT = ["layers=2", "hidden=256", "heads=4", "seq=128", "vocab=1024", "global_batch=8",
             "micro_batch=1", "dp=8"]


def _sets(values):
    return [a for v in values for a in ("--set", v)]


def _svg_text(path) -> str:
    root = ET.fromstring(path.read_bytes())  # parses as XML
    assert root.tag.endswith("svg")
    return "".join(root.itertext())


def test_run_out_writes_roofline_byte_stable(tmp_path):
    outs = []
    for name in ("a", "b"):
        r = run_cli("run", H100, "--run", "gemm", "--out", tmp_path / name)
        assert r.code == 0, r
        outs.append(tmp_path / name)
    a, b = outs
    for f in ("roofline.png", "roofline.svg"):
        assert (a / f).stat().st_size > 1000
        assert (a / f).read_bytes() == (b / f).read_bytes(), f"{f} differs between two runs"
    assert (a / "roofline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"Software" not in (a / "roofline.png").read_bytes()
    svg = (a / "roofline.svg").read_text()
    assert "<dc:date>" not in svg
    text = _svg_text(a / "roofline.svg")
    assert "gemm" in text
    assert "arithmetic intensity (FLOP/byte)" in text
    assert "achieved FLOP/s per chip" in text
    assert "compute-bound" in text or "memory-bound" in text
    assert "peak" in text
    # the output directory holds no leftover temporary directory
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".archc-")]
    # the analytic level draws no event-level plots
    assert not (a / "utilisation.png").exists() and not (a / "links.png").exists()


def test_event_level_plots_in_process(tmp_path):
    """The heatmaps from the event level's builder and result, twice: byte-identical."""
    from archc import __version__, api
    from archc.runtime import event_level as el
    from archc.runtime.execute import make_report
    from archc.runtime.pipeline import simulate_run
    from archc.runtime.plots import write_plots

    run = api.check(str(H100), SMALL_GPT, "gpt_train").runs[0][1]
    plan, R, b, result = simulate_run(run, __version__)
    rep = make_report(plan, el.event_R(plan, R, b, result), el.step_figures(plan, b, result), "event")
    salt = matplotlib.rcParams["svg.hashsalt"]
    files = {}
    for name in ("a", "b"):
        d = tmp_path / name
        d.mkdir()
        written = write_plots(d, rep, run, (b, result))
        assert sorted(p.name for p in written) == sorted(
            f"{s}.{e}" for s in ("roofline", "utilisation", "links") for e in ("png", "svg"))
        files[name] = {p.name: p.read_bytes() for p in written}
    assert files["a"] == files["b"]
    assert matplotlib.rcParams["svg.hashsalt"] == salt  # no rcParams leak out of the plots
    u = _svg_text(tmp_path / "a" / "utilisation.svg")
    assert "gpt_train" in u and "busy fraction" in u and "8 of" in u  # 8 chips on the system grid
    links = _svg_text(tmp_path / "a" / "links.svg")
    assert "gpt_train" in links and "busy fraction of the makespan" in links
    assert "member" in links  # link names label the bars


def test_event_level_cli_out(tmp_path):
    d = tmp_path / "ev"
    r = run_cli("run", H100, "--run", "gpt_train", "--level", "event", *_sets(SMALL_GPT), "--out", d)
    assert r.code == 0, r
    assert (d / "report.json").exists() and (d / "roofline.svg").exists() and (d / "roofline.png").exists()
    assert "event level" in _svg_text(d / "roofline.svg")
    for f in ("utilisation.png", "utilisation.svg", "links.png", "links.svg"):
        assert (d / f).exists(), f
    _svg_text(d / "utilisation.svg")


def test_wafer_heatmaps_have_the_grid_geometry(tmp_path, monkeypatch):
    """A tile-granular run on a 16 x 16 wafer: the utilisation heatmap is the tile grid (each
    cell a tile's busy fraction, where it is), the link heatmap its east-west links; the
    hottest link is the one the simulation found busiest. A band's rows, simulated as its top
    row, show as every row simulated does (el.REGION_EVERY_ROW)."""
    import numpy as np

    from archc import __version__
    from archc.api import check
    from archc.runtime import event_level as el
    from archc.runtime.execute import make_report
    from archc.runtime.pipeline import simulate_run
    from archc.runtime.plots import utilisation_grid, wafer_link_grid, write_plots

    text = sample_text("wse2").replace("grid 757 x 996 of wse2_core", "grid 16 x 16 of wse2_core")
    f = tmp_path / "w.arch"
    f.write_text(text)
    sets = {"layers": "1", "hidden": "256", "heads": "4", "kv_heads": "2", "ffn": "512", "vocab": "1024",
            "context": "64"}
    run = check(f, sets, "llm_decode").run("llm_decode")
    plan, R, b, r = simulate_run(run, __version__)
    grid, what = utilisation_grid(run, b, r)
    assert grid.shape == (16, 16) and "per tile" in what
    links, lwhat = wafer_link_grid(b, r)
    assert links.shape == (16, 15) and "east-west" in lwhat
    monkeypatch.setattr(el, "REGION_EVERY_ROW", True)
    _, _, bf, rf = simulate_run(run, __version__)
    W = bf.wafer
    assert W.bands is None and b.wafer.bands is not None
    util = rf.utilization()
    full, _ = utilisation_grid(run, bf, rf)
    assert full[3, 5] == util[W.res0 + 3 * 16 + 5]
    assert np.array_equal(grid, full)
    lu = rf.link_utilization()
    full_links, _ = wafer_link_grid(bf, rf)
    assert full_links.max() == max(lu[W.e0:W.e0 + 16 * 15].max(), lu[W.w0:W.w0 + 16 * 15].max())
    assert np.array_equal(links, full_links)
    rep = make_report(plan, el.event_R(plan, R, b, r), el.step_figures(plan, b, r), "event")
    write_plots(tmp_path, rep, run, (b, r))
    assert "east-west links" in _svg_text(tmp_path / "links.svg")
    assert "per tile (16 x 16" in _svg_text(tmp_path / "utilisation.svg")
