"""Results independent of how finely a chip is described: one uniform chip written as 1, 16 or
64 tiles of proportionally smaller units (MACs, vector lanes, SRAM and its bandwidth; a mesh's
links in proportion to a tile's side) gives the same estimate of a GEMM, a BERT layer and a
one-token decode at both levels, on a crossbar and on a mesh, with off-chip memory and without
(weights then resident in the tiles' SRAM, so only activations cross the network).

The chip: 64,000 bf16 MAC/cycle and 6,400 vector lanes at 1 GHz, 256 MiB of SRAM at 6,400
B/cycle; a 10 TB/s crossbar, or a mesh of 512 / side B/cycle links (1 cycle a hop); 2 TB/s of
HBM or none; 1 us per op."""
from __future__ import annotations

import pytest

from archc import __version__
from archc.api import check
from archc.runtime.pipeline import run_analytic, run_event

pytestmark = pytest.mark.build

SIDE = {1: 1, 16: 4, 64: 8}
RUNS = """
run gemm { model gemm(4096, 4096, 4096); on c; precision bf16 }
run bert { model bert(1, 1024, 16, 512, 8); on c; precision bf16 }
run decode { model llama_decode(2, 2048, 16, 8, 5632, 8000, 1024); on c; precision bf16 }
"""


def machine(n: int, noc: str, hbm: bool) -> str:
    s = SIDE[n]
    tiles = f"tiles {n} of t" if noc == "crossbar" else f"grid {s} x {s} of t"
    net = ("noc crossbar, bandwidth = 10 TB/s, latency = 100 ns" if noc == "crossbar"
           else f"noc mesh, link = {512 // s} B/cycle, hop = 1 cycles")
    return f"""import std.formats
import std.models
tile t {{
  clock 1 GHz
  sram {256 // n} MiB, bandwidth = {6400 // n} B/cycle, energy = 0.1 pJ/B
  matrix bf16 x bf16 -> fp32 : {64000 // n} mac/cycle, energy = 0.5 pJ
  vector fp32 : {6400 // n} lanes, energy = 1 pJ
}}
chip c {{
  {tiles}
  {net}
  {"memory hbm, 80 GB, bandwidth = 2 TB/s, energy = 30 pJ/B" if hbm else ""}
  launch 1 us
}}
""" + RUNS


@pytest.mark.parametrize("noc", ["crossbar", "mesh"])
@pytest.mark.parametrize("hbm", [True, False], ids=["hbm", "sram"])
@pytest.mark.parametrize("run", ["gemm", "bert", "decode"])
def test_the_estimate_does_not_depend_on_the_tile_count(tmp_path, noc, hbm, run):
    got = {}
    for n in SIDE:
        f = tmp_path / f"c{n}.arch"
        f.write_text(machine(n, noc, hbm))
        r = check(f).run(run)
        got[n] = (run_analytic(r, __version__).latency_s, run_event(r, __version__).latency_s)
    for level in (0, 1):
        base = got[1][level]
        for n in (16, 64):
            assert got[n][level] == pytest.approx(base, rel=0.02), (n, level, got)
