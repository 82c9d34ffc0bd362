"""The analytic level against hand calculations on a small machine whose numbers are easy.

Machine: 10 tiles of 1000 MAC/cycle at 1 GHz = 20 TFLOP/s per chip; 100 FMA lanes per tile =
2 TFLOP/s vector; HBM 1 TB/s (efficiency 1); 1 us per op; 100 x 100 output blocks per tile;
4 chips on a switch at 100 GB/s per chip and direction, 1 us per step."""
from __future__ import annotations

import pytest

from archc import __version__
from archc.api import check
from archc.dsl.diagnostics import ArchcError
from archc.runtime.pipeline import run_analytic
from conftest import EASY_MACHINE

pytestmark = pytest.mark.build

MACHINE = EASY_MACHINE
PEAK = 10 * 2000 * 1e9  # FLOP/s per chip
MEM = 1e12
LAUNCH = 1e-6


def _run(tmp_path, body: str, name: str = "r"):
    f = tmp_path / "m.arch"
    f.write_text(MACHINE + body)
    return run_analytic(check(f).run(name), __version__)


def test_whole_tiles_are_compute_bound(tmp_path):
    # 1000 x 1000 output = 10 x 10 thread-block tiles of 100 x 100 = 10 whole waves over 10
    # tiles (SMs). Each tile's main loop takes K in 10 steps of 100: 2*100*100*100 FLOP at
    # 2 TFLOP/s = 1 us each; a step's operands, (100 + 100) x 100 fp16 = 40 kB, arrive at the
    # SM's share of the 100 TB/s crossbar (10 TB/s) in 4 ns, hidden behind the compute except
    # the first (prologue); the 100 x 100 fp16 outputs leave in 2 ns (epilogue). Gpu_factor's
    # model is tested in depth in test_engines.py.
    r = _run(tmp_path, "run r { model mm(1000, 1000, 1000); on c; precision fp16 }")
    flops = 2 * 1000 * 1000 * 1000
    assert r.flops == flops
    per_wave = 4e-9 + 10 * 1e-6 + 2e-9
    assert r.latency_s == pytest.approx(10 * per_wave + LAUNCH, rel=1e-12)
    assert r.bottleneck == "compute"
    assert r.ops[0].utilisation == pytest.approx(flops / PEAK / (10 * per_wave), rel=1e-12)


def test_elementwise_is_memory_bound(tmp_path):
    # two 1e6-element fp16 inputs read, one written: 6 MB at 1 TB/s = 6 us; 1e6 adds on
    # 2 TFLOP/s of vector units = 0.5 us
    r = _run(tmp_path, "run r { model vadd(1000000); on c; precision fp16 }")
    assert r.latency_s == pytest.approx(6e-6 + LAUNCH, rel=1e-12)
    assert r.ops[0].bound_by == "memory"
    assert r.bottleneck == "memory"


@pytest.mark.parametrize("fuse, written", [
    # h = x W, g = gelu(h), r = g + x over n x d fp16 elements (E bytes each tensor) and a
    # d x d weight (W bytes). Unfused: linear reads x, W, writes h; gelu reads h, writes g;
    # add reads g and x, writes r.
    ("none", lambda E, W: (E + W + E) + (E + E) + (E + E + E)),
    # elementwise: gelu and add run as one kernel (g never reaches memory), but the GEMM's h
    # is written and read back, as Megatron's fused bias-GELU / bias-dropout-add kernels do
    ("elementwise", lambda E, W: (E + W + E) + E + (E + E)),
    # epilogue: gelu and add run in the GEMM's kernel: h and g stay on chip
    ("epilogue", lambda E, W: (E + W) + 0 + (E + E)),
])
def test_fusion_modes_move_the_bytes_written_out_by_hand(tmp_path, fuse, written):
    n, d = 4096, 256
    fuse_line = "" if fuse == "none" else f"fuse {fuse}"
    r = _run(tmp_path, f"""model lg(n, d) {{
      input x : [n, d]
      h = linear(x, d, bias = false)
      return gelu(h) + x
    }}
    run r {{ model lg({n}, {d}); on c; precision fp16; {fuse_line} }}""")
    E, W = n * d * 2, d * d * 2
    assert [o.kind for o in r.ops] == ["linear", "gelu", "add"]
    assert sum(o.bytes for o in r.ops) == pytest.approx(written(E, W), rel=1e-12)


def test_ring_allreduce_of_gradients(tmp_path):
    # data parallel over 4 chips: the gradients (fp32 main gradients in mixed precision,
    # 4 B per parameter) are all-reduced in a ring: 2(p-1)/p * S / B + 2(p-1) * latency
    d, layers = 1024, 2
    r = _run(tmp_path, f"""run r {{ model stack(8, {d}, {layers}); on node; mode train
      strategy data, chips = 4, micro_batch = 8; precision fp16 }}""")
    size = d * d * layers * 4
    expected = 2 * 3 / 4 * size / 100e9 + 2 * 3 * 1e-6 + LAUNCH
    assert r.breakdown["gradient exchange"] == pytest.approx(expected, rel=1e-12)



def test_gradients_accumulate_per_micro_batch(tmp_path):
    # 2 layers of 1024 x 1024 weights, 4 micro-batches of 8 per step. After each layer's
    # backward its fp16 weight gradient (2 B) is added into the fp32 gradient buffer (4 B read,
    # 4 B written): 10 B per parameter, 10.49 MB = 10.49 us at 1 TB/s, plus a 1 us launch, per
    # layer per micro-batch; the optimizer zeroes the buffer (4 B per parameter) once per step.
    d, layers, m = 1024, 2, 4
    r = _run(tmp_path, f"""run r {{ model stack(8, {d}, {layers}); on c; mode train
      strategy data, chips = 1, micro_batch = 8, global_batch = {8 * m}; precision fp16 }}""")
    acc = next(o for o in r.ops if o.name == "gradient accumulation")
    assert acc.kind == "accumulation" and acc.bound_by == "memory"
    per_layer = d * d * (2 + 4 + 4)
    assert acc.bytes == pytest.approx(m * layers * per_layer, rel=1e-12)
    assert acc.time_s == pytest.approx(m * layers * (per_layer / MEM + LAUNCH), rel=1e-12)
    # one micro-batch: fp16 gradients are still added into the fp32 buffer; fp32 ones are the
    # buffer already (a tile with fp32 matrix units), so nothing is added
    f = tmp_path / "fp32.arch"
    f.write_text(MACHINE.replace("matrix fp16", "matrix fp32 x fp32 -> fp32 : 250 mac/cycle\n  matrix fp16") +
                 f"""run r(p = fp16) {{ model stack(8, {d}, {layers}); on c; mode train
                 strategy data, chips = 1, micro_batch = 8, global_batch = 8; precision p }}""")
    names = {p: [o.name for o in run_analytic(check(f, {"p": p}).run("r"), __version__).ops]
             for p in ("fp16", "fp32")}
    assert "gradient accumulation" in names["fp16"] and "gradient accumulation" not in names["fp32"]
    opt = {o.name: o.bytes for o in r.ops}["optimizer step"]
    # Adam over fp16 weights: reads and writes the 16 B of master weights and moments and the
    # 2 B weights, reads the 4 B gradient (2 x 18 - 4 = 32 B), and zeroes the gradient (4 B)
    assert opt == pytest.approx(d * d * layers * (32 + 4), rel=1e-12)



def test_gradients_accumulate_in_the_gemm_with_accumulate_in_gemm(tmp_path):
    # 2 layers of 1024 x 1024 weights, 4 micro-batches of 2048 rows, with the weight-gradient
    # GEMM adding into the fp32 buffer (Megatron-LM's gradient accumulation fusion): no pass of
    # its own; the backward reads and writes the buffer (4 + 4 B per parameter) instead of
    # writing the fp16 gradient (2 B) that the pass read back (2 + 4 + 4 B): 4 B per parameter
    # fewer. The backward stays compute-bound (0.43 ms of GEMMs against 23 us of memory), so
    # the step saves the whole pass, 10 B per parameter at 1 TB/s and a launch, per layer per
    # micro-batch.
    d, layers, m, b = 1024, 2, 4, 2048

    def run(opt):
        return _run(tmp_path, f"""run r {{ model stack({b}, {d}, {layers}); on c; mode train
          strategy data, chips = 1, micro_batch = {b}, global_batch = {b * m}{opt}; precision fp16 }}""")
    sep, fused = run(""), run(", accumulate_in_gemm = true")
    assert "gradient accumulation" not in [o.name for o in fused.ops]
    assert "accumulate_in_gemm" in fused.to_text() and "accumulate_in_gemm" not in sep.to_text()
    assert [o.bound_by for o in fused.ops if o.kind == "linear"] == ["compute"]
    assert sum(o.bytes for o in sep.ops) - sum(o.bytes for o in fused.ops) == pytest.approx(m * layers * d * d * 4, rel=1e-12)
    assert sep.latency_s - fused.latency_s == pytest.approx(m * layers * (d * d * 10 / MEM + LAUNCH), rel=1e-9)


@pytest.mark.parametrize("mode, strategy, message", [
    ("train", "spatial, chips = 2", "adds weight gradients into a gradient buffer in the GEMM; "
                                    "a spatial run keeps no such buffer"),
    ("infer", "data, chips = 2", "adds weight gradients in the GEMM; this run does not train (`mode train`)"),
])
def test_accumulate_in_gemm_needs_a_gradient_buffer(tmp_path, mode, strategy, message):
    f = tmp_path / "m.arch"
    f.write_text(MACHINE + f"""run r {{ model stack(4, 512, 8); on node; mode {mode}
      strategy {strategy}, accumulate_in_gemm = true; precision fp16 }}""")
    with pytest.raises(ArchcError) as e:
        check(f)
    msg = e.value.render()
    assert f"{f}:36:" in msg and "error: 'accumulate_in_gemm' " + message in msg and "^" in msg


def test_two_equal_transfers_take_twice_one(tmp_path):
    # doubling the gradient bytes doubles the bandwidth term of the exchange
    def exchange(d):
        rep = _run(tmp_path, f"""run r {{ model stack(8, {d}, 1); on node; mode train
          strategy data, chips = 4, micro_batch = 8; precision fp16 }}""")
        return rep.breakdown["gradient exchange"] - 2 * 3 * 1e-6 - LAUNCH
    assert exchange(2048) == pytest.approx(4 * exchange(1024), rel=1e-12)  # 4x the parameters


@pytest.mark.parametrize("pp,m", [(2, 1), (2, 4), (4, 4), (4, 16)])
def test_pipeline_bubble(tmp_path, pp, m):
    # p equal stages and m micro-batches: the step is (m + p - 1) stage times, of which
    # (p - 1) are the bubble: (p-1)/(m+p-1) of the step (GPipe / 1F1B)
    r = _run(tmp_path, f"""run r {{ model stack(4, 512, 8); on node
      strategy parallel, pp = {pp}, micro_batch = 4, global_batch = {4 * m}; precision fp16 }}""")
    assert r.breakdown["pipeline bubble"] / r.latency_s == pytest.approx((pp - 1) / (m + pp - 1), rel=1e-12)


def test_mapping_that_does_not_fit_says_by_how_much(tmp_path):
    # 8 layers of 100000 x 100000 fp16 weights = 160 GB on one chip of 100 GB: 60 GB too much
    f = tmp_path / "m.arch"
    f.write_text(MACHINE + "run big { model stack(1, 100000, 8); on c; precision fp16 }")
    with pytest.raises(ArchcError) as e:
        check(f)
    msg = e.value.render()
    assert "run 'big' does not fit: each chip needs 160 GB (weights 160 GB" in msg
    assert "but has 100 GB of hbm (c); 60 GB too much" in msg


def test_column_parallel_ops_sharing_an_input_all_reduce_its_gradient_once(tmp_path):
    # tp = 2: q, k and v are column-parallel linears of the same x. In backward each gives a
    # partial dx; the three are summed locally and all-reduced once (as Megatron's fused QKV
    # does), not three times: one ring all-reduce of x, 2(p-1)/p * S / B + 2(p-1) * latency.
    b, d = 64, 512
    model = f"""model qkv(b, d) {{
      input x : [b, d]
      q = linear(x, d, bias = false)
      k = linear(x, d, bias = false)
      v = linear(x, d, bias = false)
      return q + k + v
    }}
    run r {{ model qkv({b}, {d}); on node; mode train; strategy parallel, tp = 2, micro_batch = {b}
      precision fp16 }}"""
    r = _run(tmp_path, model)
    size = b * d * 2  # the fp16 activation gradient of x
    assert sum(op.comm_bytes for op in r.ops) == size
    # q (first in forward order, last to finish backward) carries it; k and v are alike but for it
    t = {op.name: op.time_s for op in r.ops}
    assert t["k"] == t["v"]
    assert t["q"] - t["k"] == pytest.approx(2 * 1 / 2 * size / 100e9 + 2 * 1 * 1e-6, rel=1e-9)


def _sustained(clock_line: str) -> str:
    return MACHINE.replace("  clock 1 GHz\n", f"  {clock_line}\n")


@pytest.mark.parametrize("run_clock, hz", [("", 0.8e9), ("clock sustained", 0.8e9), ("clock boost", 1e9)])
def test_a_tile_runs_at_its_sustained_clock_unless_the_run_says_boost(tmp_path, run_clock, hz):
    # 1000^3 in whole waves (10 x 10 tiles over 10 SMs, as in test_whole_tiles_are_compute_bound):
    # 10 waves of 10 main-loop steps of 2*100^3 FLOP at 2000 FLOP/cycle x the clock, plus each
    # tile's 4 ns prologue and 2 ns epilogue (the crossbar is declared in TB/s: not the clock's);
    # the sustained clock (0.8 GHz) is the default when declared
    f = tmp_path / "m.arch"
    f.write_text(_sustained("clock 1 GHz, sustained = 0.8 GHz")
                 + f"run r {{ model mm(1000, 1000, 1000); on c; precision fp16; {run_clock} }}")
    r = run_analytic(check(f).run("r"), __version__)
    assert r.latency_s == pytest.approx(10 * (10 * 2 * 100**3 / (2000 * hz) + 6e-9) + LAUNCH, rel=1e-12)
    assert r.machine["clock_hz"] == hz
    assert r.machine["clock"] == ("boost" if run_clock == "clock boost" else "sustained")


def test_sustained_clock_scales_the_sram_with_the_tile(tmp_path):
    # 100 B/cycle per tile: 100 GB/s at 1 GHz, 80 GB/s at 0.8 GHz
    f = tmp_path / "m.arch"
    f.write_text(_sustained("clock 1 GHz, sustained = 0.8 GHz") + "run r { model vadd(10); on c; precision fp16 }")
    tile = check(f).run("r").machine.tile
    assert (tile.clock_hz, tile.sram_bandwidth) == (0.8e9, pytest.approx(80e9))


@pytest.mark.parametrize("clock_line, run_clock, message", [
    ("clock 1 GHz", "clock sustained", "tile 't' declares no sustained clock"),
    ("clock 1 GHz, sustained = 1.2 GHz", "", "the sustained clock (1.2 GHz) is above the clock (1 GHz)"),
    ("clock 1 GHz, sustained = 0.8 GHz", "clock turbo", "the clock must be one of sustained, boost; found 'turbo'"),
])
def test_clock_mistakes_are_reported(tmp_path, clock_line, run_clock, message):
    f = tmp_path / "m.arch"
    f.write_text(_sustained(clock_line) + f"run r {{ model vadd(10); on c; precision fp16; {run_clock} }}")
    with pytest.raises(ArchcError) as e:
        check(f)
    assert message in e.value.render()


def test_sustained_clock_scales_the_chip_figures_written_in_cycles(tmp_path):
    # a NoC of 8 B/cycle per link with 2-cycle hops and a 1000-cycle launch: at 1 GHz 8 GB/s,
    # 2 ns and 1 us; at the 0.8 GHz sustained clock 6.4 GB/s, 2.5 ns and 1.25 us. The HBM
    # (in B/s) keeps its figure.
    f = tmp_path / "m.arch"
    f.write_text(_sustained("clock 1 GHz, sustained = 0.8 GHz")
                 .replace("noc crossbar, bandwidth = 100 TB/s", "noc mesh, link = 8 B/cycle, hop = 2 cycles")
                 .replace("launch 1 us", "launch 1000 cycles")
                 + "run r { model vadd(10); on c; precision fp16 }\n"
                 + "run b { model vadd(10); on c; precision fp16; clock boost }")
    d = check(f)
    for name, hz in (("r", 0.8e9), ("b", 1e9)):
        chip = d.run(name).machine.chip
        assert chip.noc.link_bandwidth == pytest.approx(8 * hz)
        assert chip.noc.latency_s == pytest.approx(2 / hz)
        assert chip.launch_s == pytest.approx(1000 / hz)
        assert chip.memory.bandwidth == 1e12


def test_a_refused_sustained_clock_is_reported_once(tmp_path):
    # the run asking for the sustained clock is not told again that the tile has none
    f = tmp_path / "m.arch"
    f.write_text(_sustained("clock 1 GHz, sustained = 1.2 GHz")
                 + "run r { model vadd(10); on c; precision fp16; clock sustained }")
    with pytest.raises(ArchcError) as e:
        check(f)
    msg = e.value.render()
    assert msg.count("error:") == 1 and "is above the clock (1 GHz)" in msg
