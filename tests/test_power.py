"""Clocks from the power limit, against the formulas worked out by hand.

Machine: 10 tiles of 1000 MAC/cycle at 1 GHz (20 TFLOP/s), 1 pJ per MAC (0.5 pJ/FLOP), no other
dynamic energy but HBM traffic (declared per case), idle 2 W, a power limit of 8 W: a GEMM at
full clock would draw 2 + 20e12 x 0.5e-12 = 12 W. No launch cost, no thread-block tiles: a
GEMM runs at the units' peak."""
from __future__ import annotations

import pytest

from archc import __version__
from archc.api import check
from archc.runtime.pipeline import run_analytic

pytestmark = pytest.mark.build

MACHINE = """
import std.formats
tile t {
  clock 1 GHz
  sram 1 MiB, bandwidth = 100 B/cycle, energy = 0 pJ/B
  matrix fp16 x fp16 -> fp32 : 1000 mac/cycle, energy = 1 pJ
  vector fp32 : 100 lanes, energy = 0 pJ
}
chip c {
  tiles 10 of t
  noc crossbar, bandwidth = 100 TB/s, energy = 0 pJ/B
  memory hbm, 100 GB, bandwidth = 1 TB/s, energy = HBM_ENERGY
  POWER
  idle 2 W
}
model mm(M, N, K) {
  input a : [M, K]
  input b : [K, N]
  return matmul(a, b)
}
model vadd(n) {
  input a : [n]
  input b : [n]
  return a + b
}
run gemm { model mm(1000, 1000, 1000); on c; precision fp16 }
run add { model vadd(1000000); on c; precision fp16 }
"""

T0 = 2 * 1000**3 / 20e12  # the GEMM at full clock: 100 us
E0 = 2 * 1000**3 * 0.5e-12  # its MAC energy at full clock: 1 mJ (10 W over 100 us)


def _run(tmp_path, name, power="power 8 W", hbm="0 pJ/B"):
    f = tmp_path / "m.arch"
    f.write_text(MACHINE.replace("POWER", power).replace("HBM_ENERGY", hbm))
    return run_analytic(check(f).run(name), __version__)


def test_cubic_law_holds_a_gemm_at_the_clock_the_limit_allows(tmp_path):
    # Voltage following the clock: energy per MAC ~ r^2, time ~ 1/r, so dynamic power ~ r^3:
    # 2 W + 10 W r^3 = 8 W  ->  r = 0.6^(1/3) = 0.8434
    r = _run(tmp_path, "gemm")
    ratio = 0.6 ** (1 / 3)
    assert r.ops[0].clock_hz == pytest.approx(1e9 * ratio, rel=1e-9)
    assert r.latency_s == pytest.approx(T0 / ratio, rel=1e-9)
    assert r.energy_j == pytest.approx(E0 * ratio**2 + 2 * T0 / ratio, rel=1e-9)
    assert r.power_w == pytest.approx(8.0, rel=1e-9)  # exactly at the limit, never over


def test_linear_law_at_fixed_voltage(tmp_path):
    # Fixed voltage: energy per MAC constant, power ~ r: 2 + 10 r = 8  ->  r = 0.6
    r = _run(tmp_path, "gemm", power="power 8 W, scaling = linear")
    assert r.ops[0].clock_hz == pytest.approx(0.6e9, rel=1e-9)
    assert r.latency_s == pytest.approx(T0 / 0.6, rel=1e-9)
    assert r.energy_j == pytest.approx(E0 + 2 * T0 / 0.6, rel=1e-9)


def test_no_limit_or_a_generous_one_leaves_the_clock_alone(tmp_path):
    for power in ("", "power 20 W"):
        r = _run(tmp_path, "gemm", power=power)
        assert r.ops[0].clock_hz == 1e9
        assert r.latency_s == pytest.approx(T0, rel=1e-12)


def test_a_memory_bound_op_keeps_its_clock(tmp_path):
    # 6 MB of fp16 at 1 TB/s = 6 us; 1e6 adds with no energy: it draws the idle 2 W only
    r = _run(tmp_path, "add")
    assert r.ops[0].clock_hz == 1e9
    assert r.latency_s == pytest.approx(6e-6, rel=1e-12)


def test_memory_energy_beyond_the_limit_stretches_the_op(tmp_path):
    # 1 nJ per byte of HBM: 6 MB take 6 mJ, over 6 us that is 1,000 W. No clock helps (the
    # energy is outside the tiles' clock domain): the op takes its energy over the 6 W left,
    # 1 ms, and its clock stays (the highest within 0.1% of that time).
    r = _run(tmp_path, "add", hbm="1 nJ/B")
    assert r.latency_s == pytest.approx(6e6 * 1e-9 / 6.0, rel=1e-9)
    assert r.power_w == pytest.approx(8.0, rel=1e-9)
    assert r.ops[0].clock_hz == 1e9


def test_the_report_says_what_the_limit_did(tmp_path):
    text = _run(tmp_path, "gemm").to_text()
    assert "clock       843 MHz time-weighted, derived: the 8 W limit holds 1 op below 1 GHz" in text
    assert "power ~ f^3" in text


def test_a_declared_sustained_clock_overrides_and_the_step_stays_within_the_limit(tmp_path):
    # sustained = 0.95 GHz is declared: the run takes it (no derivation), but at 0.95 GHz the
    # GEMM would draw 2 + 10 x 0.95 = 11.5 W (the declared clock carries the declared energy
    # per MAC): the step is held to the limit as a whole, r^3 = 6 / 9.5
    f = tmp_path / "m.arch"
    f.write_text(MACHINE.replace("POWER", "power 8 W").replace("HBM_ENERGY", "0 pJ/B")
                 .replace("  clock 1 GHz\n", "  clock 1 GHz, sustained = 0.95 GHz\n"))
    r = run_analytic(check(f).run("gemm"), __version__)
    ratio = (6 / 9.5) ** (1 / 3)
    assert r.latency_s == pytest.approx(T0 / 0.95 / ratio, rel=1e-9)
    assert r.power_w == pytest.approx(8.0, rel=1e-9)
    assert any("over the 8 W limit: the clock is held at" in n for n in r.notes)
    # the report shows the clock the limit derives beside the declared one: the held step's
    assert r.machine["clock_from_power_hz"] == pytest.approx(0.95e9 * ratio, rel=1e-9)
    assert "(declared; its power limit would give this step 815 MHz)" in r.to_text()
    # under a generous limit (20 W: r^3 = 18 / 9.5) the derivation would exceed the boost clock
    f.write_text(MACHINE.replace("POWER", "power 20 W").replace("HBM_ENERGY", "0 pJ/B")
                 .replace("  clock 1 GHz\n", "  clock 1 GHz, sustained = 0.95 GHz\n"))
    assert run_analytic(check(f).run("gemm"), __version__).machine["clock_from_power_hz"] == 1e9


def test_idle_at_or_over_the_limit_is_refused(tmp_path):
    from archc.dsl.diagnostics import ArchcError
    f = tmp_path / "m.arch"
    f.write_text(MACHINE.replace("POWER", "power 2 W").replace("HBM_ENERGY", "0 pJ/B"))
    with pytest.raises(ArchcError) as e:
        check(f)
    assert "the idle power (2 W) is not below the power limit (2 W)" in e.value.render()
