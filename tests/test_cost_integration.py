"""The cost model inside machine descriptions: units declared by silicon area get their rate
from it, units declared without an energy get it derived, declared figures win, and reports
list what was derived."""
from __future__ import annotations

import pytest

from archc import __version__
from archc.api import check
from archc.dsl import costs
from archc.dsl.check import standard_formats
from archc.runtime.pipeline import run_analytic

TILE = """
import std.formats
import std.models
tile t {{
  clock 1 GHz
  sram 1 MiB, bandwidth = 64 B/cycle
  {units}
  vector fp32 : 16 lanes{vector_energy}
}}
chip c {{ tiles 10 of t; noc crossbar, bandwidth = 10 TB/s; memory hbm, 80 GB, bandwidth = 2 TB/s{process} }}
run g(dtype = {dtype}) {{ model gemm(1024, 1024, 1024); on c; precision dtype }}
"""


def design(tmp_path, units: str, process: str = "; process 7 nm", vector_energy: str = "", dtype: str = "bf16"):
    f = tmp_path / "c.arch"
    f.write_text(TILE.format(units=units, process=process, vector_energy=vector_energy, dtype=dtype))
    return check(f)


def tile_of(d):
    return d.run("g").machine.tile


def test_area_declared_units_get_the_cost_models_rate(tmp_path):
    d = design(tmp_path, "matrix bf16 x bf16 -> fp32 : 2 mm2\n  matrix fp64 x fp64 -> fp64 : 2 mm2")
    bf16, fp64 = tile_of(d).matrix
    std = standard_formats()
    expect = costs.derived_rate(2e-6, std["bf16"], std["bf16"], std["fp32"], 7)
    assert bf16.flops_per_cycle == pytest.approx(2 * expect, rel=1e-12)
    ratio = bf16.flops_per_cycle / fp64.flops_per_cycle
    table = costs.equal_area_throughput([(std["bf16"], std["bf16"], std["fp32"]), (std["fp64"], std["fp64"], std["fp64"])], 7)
    assert ratio == pytest.approx(list(table.values())[0]["macs_per_m2"] / list(table.values())[1]["macs_per_m2"])
    assert ratio > 1
    assert any("MAC/cycle from 2 mm2 (cost model, 7 nm)" in n for n in tile_of(d).derived)


def test_declared_energy_wins_and_missing_energy_is_derived(tmp_path):
    d = design(tmp_path, "matrix bf16 x bf16 -> fp32 : 512 mac/cycle, energy = 0.5 pJ\n"
                         "  matrix fp16 x fp16 -> fp32 : 512 mac/cycle", vector_energy=", energy = 1 pJ")
    bf16, fp16 = tile_of(d).matrix
    assert bf16.energy_per_flop == pytest.approx(0.25e-12) and not bf16.energy_derived
    std = standard_formats()
    assert fp16.energy_per_flop == pytest.approx(costs.mac(std["fp16"], std["fp16"], std["fp32"], 7).energy_j / 2)
    assert fp16.energy_derived
    assert tile_of(d).vector[0].energy_per_flop == pytest.approx(0.5e-12)  # declared per FMA
    notes = tile_of(d).derived
    assert any(n.startswith("fp16 x fp16 -> fp32:") for n in notes)
    assert not any(n.startswith("bf16 x bf16") for n in notes)


def test_without_a_process_node_the_45nm_table_is_used_and_said(tmp_path):
    d = design(tmp_path, "matrix bf16 x bf16 -> fp32 : 512 mac/cycle", process="")
    assert any("45 nm, no process declared" in n for n in tile_of(d).derived)


def test_node_scaling_reaches_the_derived_energy(tmp_path):
    e7 = tile_of(design(tmp_path, "matrix bf16 x bf16 -> fp32 : 512 mac/cycle")).matrix[0].energy_per_flop
    e45 = tile_of(design(tmp_path, "matrix bf16 x bf16 -> fp32 : 512 mac/cycle", process="")).matrix[0].energy_per_flop
    assert e7 == pytest.approx(e45 * 7 / 45)


def test_analog_units_get_converter_energy(tmp_path):
    d = design(tmp_path, "matrix int8 x int8 -> fp32 : 4096 mac/cycle, analog = true, dac = 7, adc = 9, "
                         "array = 256 x 256", dtype="int8")
    u = tile_of(d).matrix[0]
    assert u.analog.adc_bits == 9 and u.analog.rows == 256
    # by hand: ADC 20 fJ x 2^9 / 256 rows + DAC 2 fJ x 2^7 / 256 cols + 1 fJ cell = 42 fJ per MAC
    assert u.energy_per_flop * 2 == pytest.approx((20 * 512 / 256 + 2 * 128 / 256 + 1) * 1e-15)


@pytest.mark.build
def test_reports_list_derived_figures(tmp_path):
    d = design(tmp_path, "matrix bf16 x bf16 -> fp32 : 1 mm2")
    rep = run_analytic(d.run("g"), __version__)
    assert rep.machine["derived"] and "derived" in rep.to_text()
    assert all(op.energy_j > 0 for op in rep.ops)


@pytest.mark.build
@pytest.mark.parametrize("sample", ["h100", "a100", "wse2", "wse3", "dojo", "gc200"])
def test_every_sample_reports_energy_per_op(sample):
    from conftest import SAMPLES
    d = check(SAMPLES / f"{sample}.arch", run="gemm")
    rep = run_analytic(d.run("gemm"), __version__)
    assert rep.energy_j > 0
    assert all(op.energy_j > 0 for op in rep.ops), [(op.name, op.energy_j) for op in rep.ops]


def test_analog_options_need_analog_true(tmp_path):
    from archc.dsl.diagnostics import ArchcError
    with pytest.raises(ArchcError, match="add `analog = true`"):
        design(tmp_path, "matrix int8 x int8 -> fp32 : 4096 mac/cycle, adc = 9")
