"""`archc compare`: a wafer run and a GPU cluster run of the same model (GPT 1.7B training, the
samples' gpt_train on the WSE-3 and on the H100 cluster) side by side. Every cell is computed
here from the two runs' own `archc run --json` reports: throughput per chip, per kW and per
million USD of the chips a run uses, energy, power, memory, bottleneck and the top 3 ops. The
samples declare no cost ("not declared"); copies that declare one (on a chip, and on a system
over its members') give the normalisation by cost. The language's `cost` is checked by unit."""
from __future__ import annotations

import json
import re

import pytest

from archc import api
from archc.runtime.report import si
from conftest import ROOT, run_cli, sample_text

pytestmark = pytest.mark.build

A, B = "samples/wse3.arch:gpt_train", "samples/h100.arch:gpt_train"


def _has_row(text: str, *cells: str) -> bool:
    """Whether `text` has a line of exactly these cells (columns padded to align)."""
    return re.search("^ +" + " {2,}".join(re.escape(c) for c in cells) + "$", text, re.M) is not None


def _report(target: str, cwd=ROOT) -> dict:
    path, run = target.split(":")
    r = run_cli("run", path, "--run", run, "--json", cwd=cwd)
    assert r.code == 0, r
    return json.loads(r.stdout)


def _top(rep: dict, i: int) -> str:
    op = sorted(rep["ops"], key=lambda o: (-o["time_s"], o["name"]))[i]
    return f"{op['name']} {op['share'] * 100:.0f}% {op['bound_by']}"


def test_a_wafer_and_a_gpu_cluster_side_by_side(tmp_path):
    a, b = _report(A), _report(B)
    r = run_cli("compare", A, B, "--out", tmp_path / "cmp", cwd=ROOT)
    assert r.code == 0, r
    out = r.stdout
    assert out.startswith("compare: 2 runs, analytic level\n\n")
    assert _has_row(out, A, B)
    assert _has_row(out, "system", "cs3_cluster (1 chip)", f"h100_cluster ({b['chips']} chips)")
    assert _has_row(out, "model", "gpt", "gpt")
    assert _has_row(out, "latency", f"{si(a['latency_s'], 's')} per step", f"{si(b['latency_s'], 's')} per step")
    unit = "sequences/s"
    assert a["throughput"]["unit"] == b["throughput"]["unit"] == unit
    ta, tb = a["throughput"]["value"], b["throughput"]["value"]
    assert _has_row(out, "throughput", si(ta, unit), si(tb, unit))
    assert _has_row(out, "per chip", si(ta / a["chips"], unit), si(tb / b["chips"], unit))
    assert _has_row(out, "per kW", si(ta / a["power_w"] * 1e3, unit), si(tb / b["power_w"] * 1e3, unit))
    assert _has_row(out, "per million USD", "not declared", "not declared")
    assert _has_row(out, "cost", "not declared", "not declared")
    assert _has_row(out, "energy per step", si(a["energy_j"], "J"), si(b["energy_j"], "J"))
    per_item = [si(x["energy_j"] / (x["throughput"]["value"] * x["latency_s"]), "J") for x in (a, b)]
    assert _has_row(out, "energy per item", *per_item)
    assert _has_row(out, "power", si(a["power_w"], "W"), si(b["power_w"], "W"))
    assert _has_row(out, "memory per chip", *(f"{si(x['memory']['total'], 'B')} of {si(x['memory']['capacity'], 'B')}"
                                              for x in (a, b)))
    assert _has_row(out, "utilisation", *(f"{x['utilization'] * 100:.1f}% of peak" for x in (a, b)))
    assert _has_row(out, "bottleneck", a["bottleneck"], b["bottleneck"])
    assert (a["bottleneck"], b["bottleneck"]) == ("sram", "compute")  # the wafer streams weights; the GPUs compute
    for i in range(3):
        assert _has_row(out, f"top op {i + 1}", _top(a, i), _top(b, i))
    # the files: the same table, the figures in JSON and CSV, and the plot
    d = tmp_path / "cmp"
    assert out == (d / "compare.txt").read_text() + f"wrote compare.txt, compare.json, compare.csv, compare.png, compare.svg to {d}\n"
    runs = json.loads((d / "compare.json").read_text())["runs"]
    assert [x["label"] for x in runs] == [A, B]
    assert runs[1]["throughput_per_chip"] == pytest.approx(tb / b["chips"], rel=1e-12)
    assert runs[0]["cost_usd"] is None and runs[0]["throughput_per_usd"] is None
    assert (d / "compare.csv").read_text().splitlines()[0].startswith("label,file,run,system,model,chips,latency_s,")
    assert (d / "compare.png").read_bytes().startswith(b"\x89PNG")
    svg = (d / "compare.svg").read_text()
    assert "throughput per million USD" in svg and "not declared" in svg


def test_a_declared_cost_normalises_per_million_usd(tmp_path):
    # illustrative prices, not list prices: the samples declare none (docs/language.md says why)
    (tmp_path / "h100.arch").write_text(sample_text("h100").replace("  launch 3 us\n", "  launch 3 us\n  cost 30000 USD\n"))
    wse3 = sample_text("wse3")
    assert "system cs3_cluster {\n" in wse3
    (tmp_path / "wse3.arch").write_text(wse3.replace("system cs3_cluster {\n", "system cs3_cluster {\n  cost 160000000 USD\n"))
    a, b = _report("wse3.arch:gpt_train", tmp_path), _report("h100.arch:gpt_train", tmp_path)
    r = run_cli("compare", "wse3.arch:gpt_train", "h100.arch:gpt_train", cwd=tmp_path)
    assert r.code == 0, r
    # the wafer run uses 1 of the cluster's 64 chips; the GPU run 32 of 576 x 8 (each node 8 x 30,000 USD)
    cost_a, cost_b = 160e6 / 64, 32 * 30000.0
    unit = "sequences/s"
    assert _has_row(r.stdout, "cost", "2,500,000 USD", "960,000 USD")
    assert _has_row(r.stdout, "per million USD", si(a["throughput"]["value"] / cost_a * 1e6, unit),
                    si(b["throughput"]["value"] / cost_b * 1e6, unit))
    assert ("  cost of wse3.arch:gpt_train: 1 of the 64 chips of cs3_cluster, which costs 160,000,000 USD "
            "(declared)\n") in r.stdout
    assert ("  cost of h100.arch:gpt_train: 32 of the 4608 chips of h100_cluster, which costs 138,240,000 USD "
            "(576 x dgx_h100 at 240,000 USD (8 x h100 at 30,000 USD))\n") in r.stdout


def test_cost_is_checked_by_unit_and_a_system_adds_up_its_members(tmp_path):
    from conftest import EASY_MACHINE
    f = tmp_path / "m.arch"
    f.write_text(EASY_MACHINE.replace("  launch 1 us\n", "  launch 1 us\n  cost 1000 USD\n")
                 + "system rack { nodes 2 of node; network switch, bandwidth = 50 GB/s }\n"
                 + "system priced { nodes 2 of node; network switch, bandwidth = 50 GB/s; cost 5 USD }\n")
    d = api.check(f)
    systems = dict(d.systems)
    assert dict(d.chips)["c"].cost_usd == 1000.0
    assert (systems["node"].cost_usd, systems["node"].cost_basis) == (4000.0, "4 x c at 1,000 USD")
    assert (systems["rack"].cost_usd, systems["rack"].cost_basis) == (8000.0, "2 x node at 4,000 USD (4 x c at 1,000 USD)")
    assert (systems["priced"].cost_usd, systems["priced"].cost_basis) == (5.0, "declared")
    f.write_text(EASY_MACHINE)
    assert dict(api.check(f).systems)["node"].cost_usd is None
    for written, message in [("cost 1000", "the cost must be an amount of money (USD), found a plain number"),
                             ("cost 1000 W", "the cost must be an amount of money (USD), found a power (W)"),
                             ("cost 1e15 USD", "the cost must be between 0.01 USD and 1e+12 USD, found 1e15 USD"),
                             ("cost -3 USD", "the cost must be positive, found -3 USD")]:
        f.write_text(EASY_MACHINE.replace("  launch 1 us\n", f"  launch 1 us\n  {written}\n"))
        r = run_cli("check", f)
        assert r.code == 1 and f"m.arch:15:8: error: {message}\n" in r.stderr, r
