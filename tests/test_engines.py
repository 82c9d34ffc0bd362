"""Matrix engines with geometry: a GEMM's utilisation derived from a GPU's thread-block tiles
and from systolic arrays, against hand calculations written out here; a declared efficiency
overriding the derivation; and the checker's refusals of a geometry that cannot be.

GPU machine: 4 SMs of 1000 MAC/cycle at 1 GHz (2 TFLOP/s each, 8 TFLOP/s per chip), a 4 TB/s
crossbar (1 TB/s per SM) with 100 ns latency, HBM 1 TB/s, 1 us launch, thread-block tile
100 x 100 with K steps of 100, tensor-core fragment 10 x 10 x 10.
Systolic machine: 2 tiles of 512 MAC/cycle as 16 x 16 arrays (2 per tile, 4 in the chip) at
1 GHz, HBM 1 TB/s, no launch cost."""
from __future__ import annotations

import pytest

from archc import __version__
from archc.api import check
from archc.dsl.diagnostics import ArchcError
from archc.runtime.pipeline import run_analytic

pytestmark = pytest.mark.build

GPU = """
import std.formats
tile sm {
  clock 1 GHz
  sram 1 MiB, bandwidth = 100 B/cycle
  matrix fp16 x fp16 -> fp32 : 1000 mac/cycle, fragment = 10 x 10 x 10
  vector fp32 : 100 lanes
}
chip g {
  tiles 4 of sm
  noc crossbar, bandwidth = XBAR, latency = 100 ns
  memory hbm, 100 GB, bandwidth = 1 TB/s
  launch 1 us
  wave 100 x 100 x 100
  EFFICIENCY
}
model mm(M, N, K) {
  input a : [M, K]
  input b : [K, N]
  return matmul(a, b)
}
run r(M = 400, N = 200, K = 1000) { model mm(M, N, K); on g; precision fp16 }
"""

SYSTOLIC = """
import std.formats
tile core {
  clock 1 GHz
  sram 16 MiB, bandwidth = 1000 B/cycle
  matrix fp16 x fp16 -> fp32 : 512 mac/cycle, array = 16 x 16, dataflow = FLOW
  vector fp32 : 16 lanes
}
chip s {
  tiles 2 of core
  noc crossbar, bandwidth = 100 TB/s
  memory hbm, 100 GB, bandwidth = 1 TB/s
}
model mm(M, N, K) {
  input a : [M, K]
  input b : [K, N]
  return matmul(a, b)
}
run r(M = 100, N = 40, K = 20) { model mm(M, N, K); on s; precision fp16 }
"""


def _gpu(tmp_path, xbar="4 TB/s", efficiency="", **params):
    f = tmp_path / "g.arch"
    f.write_text(GPU.replace("XBAR", xbar).replace("EFFICIENCY", efficiency))
    return run_analytic(check(f, {k: str(v) for k, v in params.items()}, "r").run("r"), __version__)


def _systolic(tmp_path, flow, **params):
    f = tmp_path / "s.arch"
    f.write_text(SYSTOLIC.replace("FLOW", flow))
    return run_analytic(check(f, {k: str(v) for k, v in params.items()}, "r").run("r"), __version__)


def test_gpu_tile_with_its_prologue_and_epilogue(tmp_path):
    # 400 x 200 output in 100 x 100 tiles: 4 x 2 = 8 tiles = 2 waves over 4 SMs.
    # A tile's main loop: K = 1000 in 10 steps of 100.
    #   compute per step  2 * 100 * 100 * 100 FLOP / 2 TFLOP/s          = 1 us
    #   feed per step     (100 + 100) * 100 * 2 B / 1 TB/s              = 40 ns (hidden)
    #   prologue          100 ns latency + the first step's 40 ns feed
    #   epilogue          100 * 100 * 2 B / 1 TB/s                      = 20 ns
    #   tile              0.1 + 0.04 + 9 * 1 + 1 + 0.02                 = 10.16 us
    # Rivals: 50 x 100 tiles (16 tiles, 4 waves of 0.1 + 0.03 + 5 * 0.5 + 0.01... = 5.14 us)
    # = 20.56 us; split-K in 2 (4 waves of 5.18 us, plus the reduction and its launch): slower.
    r = _gpu(tmp_path)
    tile = 0.1e-6 + 0.04e-6 + 9 * 1e-6 + 1e-6 + 0.02e-6
    ideal = 2 * 400 * 200 * 1000 / 8e12  # 20 us
    assert r.latency_s == pytest.approx(2 * tile + 1e-6, rel=1e-12)
    assert r.ops[0].utilisation == pytest.approx(ideal / (2 * tile), rel=1e-12)
    assert r.ops[0].efficiency is None
    assert "geometry keeps 98.4% of their peak busy (derived)" in r.bottleneck_reason


def test_gpu_tile_waits_for_its_operands_when_the_crossbar_is_slow(tmp_path):
    # A 0.08 TB/s crossbar: 20 GB/s per SM. A 100 x 100 tile's step now waits for its operands:
    #   feed per step     40 kB / 20 GB/s = 2 us > 1 us of compute
    #   tile              0.1 + 2 (prologue) + 9 * 2 + 1 + 20 kB / 20 GB/s (1 us)  = 22.1 us
    #   2 waves                                                                    = 44.2 us
    # Rivals: 50 x 100 tiles feed 30 kB per step (1.5 us) for half the work: 4 waves of
    # 0.1 + 1.5 + 9 * 1.5 + 0.5 + 0.5 = 16.1 us = 64.4 us; split-K in 2: 4 waves of
    # 0.1 + 2 + 4 * 2 + 1 + 2 (fp32 partial sums out) = 13.1 us = 52.4 us, and a reduction.
    r = _gpu(tmp_path, xbar="0.08 TB/s")
    assert r.latency_s == pytest.approx(44.2e-6 + 1e-6, rel=1e-12)
    assert r.ops[0].utilisation == pytest.approx(20e-6 / 44.2e-6, rel=1e-12)
    assert r.ops[0].bound_by == "compute"


def test_gpu_pads_every_dimension_to_the_fragment_and_k_to_its_step(tmp_path):
    # M = 395, N = 195, K = 995: padded to the 10 x 10 x 10 fragment they are 400 x 200 x 1000,
    # the same tiles and steps as test_gpu_tile_with_its_prologue_and_epilogue: the same time
    # for fewer FLOPs.
    padded = _gpu(tmp_path)
    r = _gpu(tmp_path, M=395, N=195, K=995)
    assert r.latency_s == pytest.approx(padded.latency_s, rel=1e-12)
    assert r.ops[0].utilisation == pytest.approx(padded.ops[0].utilisation * 395 * 195 * 995 / (400 * 200 * 1000),
                                                 rel=1e-12)


def test_gpu_splits_k_when_the_tiles_are_too_few(tmp_path):
    # M = N = 100, K = 8000: one 100 x 100 tile for 4 SMs. Split-K in s slices of K / s:
    #   s = 1: 0.1 + 0.04 + 79 * 1 + 1 + 0.02                                    = 80.16 us
    #   s = 4: one wave of 4 tiles, 20 steps each: 0.1 + 0.04 + 19 + 1 + 0.04 (fp32 out)
    #          = 20.18 us; the reduction reads 4 fp32 partial sums and writes fp16:
    #          (4 * 4 + 2) * 100 * 100 B / 1 TB/s = 0.18 us, plus a 1 us launch  = 21.36 us
    #   s = 8: 2 waves of 10 steps: 2 * 10.18 + 0.34 + 1                         = 21.70 us
    #   s = 2: 40.18 + 0.1 + 1 = 41.28 us; 50 x 100 tiles (2 tiles) and split 2: 4 tiles of
    #          40 steps of 0.5 us: 0.1 + 0.03 + 39 * 0.5 + 0.5 + 0.02 + 0.1 + 1      = 21.25 us
    #          50 x 50 tiles (4 tiles) at s = 1: 0.1 + 0.02 + 79 * 0.25 + 0.25 + 0.005 = 20.125 us
    #          50 x 50 tiles, s = 2: 2 waves of 0.1 + 0.02 + 39 * 0.25 + 0.25 + 0.01 = 2 * 10.13
    #          + (2 * 4 + 2) * 1e4 / 1e12 + 1 us: slower. 25 x 50 (8 tiles, 2 waves): 2 * (0.1 +
    #          0.015 + 79 * 0.125 + 0.125 + 0.0025) = 20.23 us. 25 x 100 / 100 x 25: as 50 x 50
    #          in work, more feed: 0.1 + 0.025 + 79 * 0.25 + 0.25 + 0.005 = 20.13 us.
    # The best: 50 x 50 tiles, no split: 20.125 us.
    r = _gpu(tmp_path, M=100, N=100, K=8000)
    best = 0.1e-6 + 0.02e-6 + 79 * 0.25e-6 + 0.25e-6 + 0.005e-6
    assert r.latency_s == pytest.approx(best + 1e-6, rel=1e-12)


def test_a_declared_efficiency_overrides_the_derivation_and_the_report_shows_both(tmp_path):
    r = _gpu(tmp_path, efficiency="efficiency matmul = 0.5")
    assert r.latency_s == pytest.approx(2 * 400 * 200 * 1000 / (8e12 * 0.5) + 1e-6, rel=1e-12)
    op = r.ops[0]
    assert op.efficiency == 0.5
    tile = 0.1e-6 + 0.04e-6 + 9 * 1e-6 + 1e-6 + 0.02e-6
    assert op.utilisation == pytest.approx(20e-6 / (2 * tile), rel=1e-12)
    assert "efficiency is declared 50% (the matrix engines' geometry derives 98.4%)" in r.bottleneck_reason


def test_weight_stationary_array_folds_fill_and_drain(tmp_path):
    # C[100 x 40] = A[100 x 20] B[20 x 40] on four 16 x 16 weight-stationary arrays (SCALE-Sim):
    # B is cut into ceil(20 / 16) x ceil(40 / 16) = 2 x 3 = 6 folds; each takes
    # 2 * 16 + 16 + 100 - 2 = 146 cycles (load 16 rows, stream the 100 rows of A, skew);
    # 6 folds on 4 arrays = 2 waves = 292 cycles = 292 ns at 1 GHz (no launch cost).
    # Ideal: 100 * 40 * 20 MACs / (4 * 256 MAC/cycle) = 78.125 cycles.
    r = _systolic(tmp_path, "weight_stationary")
    assert r.latency_s == pytest.approx(292e-9, rel=1e-12)
    assert r.ops[0].utilisation == pytest.approx(78.125 / 292, rel=1e-12)


def test_output_stationary_array_folds_the_output(tmp_path):
    # The same GEMM, output stationary: C is cut into ceil(100 / 16) x ceil(40 / 16) = 7 x 3 = 21
    # folds of 2 * 16 + 16 + 20 - 2 = 66 cycles (K = 20 streams); 21 on 4 arrays = 6 waves =
    # 396 cycles.
    r = _systolic(tmp_path, "output_stationary")
    assert r.latency_s == pytest.approx(396e-9, rel=1e-12)
    assert r.ops[0].utilisation == pytest.approx(78.125 / 396, rel=1e-12)


def test_too_few_folds_stream_in_pieces_on_every_array(tmp_path):
    # C[1000 x 16] = A[1000 x 16] B[16 x 16], weight stationary: one fold for four arrays. Cut
    # the 1000 streamed rows into s pieces, each on its own array with the fold loaded:
    #   s = 1: 48 + 1000 - 2 = 1046; s = 2: 48 + 500 - 2 = 546; s = 4: 48 + 250 - 2 = 296
    # (s = 8 would leave arrays no fewer pieces than waves: not tried). Ideal 1000 * 16 * 16 /
    # 1024 = 250 cycles. Memory: (1000 * 16 * 2 + 16 * 16 + 1000 * 16) * 2 B at 1 TB/s = 96.5 ns.
    r = _systolic(tmp_path, "weight_stationary", M=1000, N=16, K=16)
    assert r.latency_s == pytest.approx(296e-9, rel=1e-12)
    assert r.ops[0].utilisation == pytest.approx(250 / 296, rel=1e-12)


def test_a_full_array_runs_at_its_peak_less_fill_and_drain(tmp_path):
    # M = 4096 rows through 64 x 64 / 16 = 4 x 4 = 16 folds of 48 + 4096 - 2 = 4142 cycles, on
    # 4 arrays: 4 waves = 16568 cycles against 16 * 4096 / 4 = 16384 ideal: 98.9%.
    r = _systolic(tmp_path, "weight_stationary", M=4096, N=64, K=64)
    assert r.ops[0].utilisation == pytest.approx(16384 / 16568, rel=1e-12)


def _buffered(tmp_path, **params):
    f = tmp_path / "b.arch"
    f.write_text(SYSTOLIC.replace("dataflow = FLOW", "dataflow = weight_stationary, double_buffered = true"))
    return run_analytic(check(f, {k: str(v) for k, v in params.items()}, "r").run("r"), __version__)


def test_a_double_buffered_array_loads_the_next_fold_while_one_streams(tmp_path):
    # The GEMM of test_weight_stationary_array_folds_fill_and_drain: 6 folds on 4 arrays, so an
    # array runs 2 folds in turn: the first load (16 cycles), 2 x max(100 rows, 16) of stream,
    # one drain of the skew (16 + 16 - 2): 16 + 200 + 30 = 246 cycles, against 2 x 146 = 292.
    r = _buffered(tmp_path)
    assert r.latency_s == pytest.approx(246e-9, rel=1e-12)
    assert r.ops[0].utilisation == pytest.approx(78.125 / 246, rel=1e-12)


def test_a_gemv_on_a_double_buffered_array_waits_for_its_weights(tmp_path):
    # One row through B[64 x 64]: 4 x 4 = 16 folds, 4 on each array in turn; one row streams in
    # 1 cycle but each fold's weights take 16 cycles to load: 16 + 4 x max(1, 16) + 30 = 110
    # cycles (without double buffering: 4 x (32 + 16 + 1 - 2) = 188). Memory: (64 + 4096 + 64)
    # x 2 B at 1 TB/s = 8.4 ns.
    r = _buffered(tmp_path, M=1, N=64, K=64)
    assert r.latency_s == pytest.approx(110e-9, rel=1e-12)
    plain = _systolic(tmp_path, "weight_stationary", M=1, N=64, K=64)
    assert plain.latency_s == pytest.approx(188e-9, rel=1e-12)


@pytest.mark.parametrize("unit, message", [
    ("matrix fp16 x fp16 -> fp32 : 500 mac/cycle, array = 16 x 16",
     "the unit's 500 MAC/cycle is not a whole number of 16 x 16 arrays (1.953)"),
    ("matrix fp16 x fp16 -> fp32 : 512 mac/cycle, dataflow = output_stationary",
     "'dataflow' describes a systolic array: add `array = ROWS x COLS`"),
    ("matrix fp16 x fp16 -> fp32 : 512 mac/cycle, array = 16 x 16, dataflow = row_stationary",
     "a dataflow must be one of weight_stationary, output_stationary; found 'row_stationary'"),
    ("matrix fp16 x fp16 -> fp32 : 512 mac/cycle, fragment = 16 x 8",
     "a tensor-core fragment is written `fragment = M x N x K`"),
    ("matrix fp16 x fp16 -> fp32 : 512 mac/cycle, array = 16",
     "a systolic array is written `array = ROWS x COLS`"),
    ("matrix fp16 x fp16 -> fp32 : 512 mac/cycle, double_buffered = true",
     "'double_buffered' describes a systolic array: add `array = ROWS x COLS`"),
])
def test_geometry_mistakes_are_reported(tmp_path, unit, message):
    f = tmp_path / "s.arch"
    f.write_text(SYSTOLIC.replace("matrix fp16 x fp16 -> fp32 : 512 mac/cycle, array = 16 x 16, dataflow = FLOW", unit))
    with pytest.raises(ArchcError) as e:
        check(f)
    assert message in e.value.render()


def test_an_analog_array_keeps_its_meaning(tmp_path):
    # `array` with `analog = true` is the analog crossbar's size, not a systolic array
    f = tmp_path / "s.arch"
    f.write_text(SYSTOLIC.replace("array = 16 x 16, dataflow = FLOW", "analog = true, array = 128 x 64"))
    (u,) = check(f).run("r").machine.tile.matrix
    assert (u.analog.rows, u.analog.cols) == (128, 64)
    assert u.engine is None
