"""The arithmetic cost model (dsl/costs.py): the 45 nm anchor table, process scaling, posits,
MX, MACs and equal-silicon throughput, on the real std formats built by archc's checker."""
from __future__ import annotations

import math

import pytest

from archc.api import check
from archc.dsl import costs
from archc.dsl.ir import Format

PJ, UM2 = 1e-12, 1e-12

# Horowitz, ISSCC 2014, 45 nm, 0.9 V (docs/sources.md), written out here so
# the test does not trust the module's copy: (op, format) -> (pJ, um^2).
TABLE = {
    ("add", "int8"): (0.03, 36),
    ("add", "int32"): (0.1, 137),
    ("mult", "int8"): (0.2, 282),
    ("mult", "int32"): (3.1, 3495),
    ("add", "fp16"): (0.4, 1360),
    ("add", "fp32"): (0.9, 4184),
    ("mult", "fp16"): (1.1, 1640),
    ("mult", "fp32"): (3.7, 7700),
}
# The fit: both multipliers and the integer adders are exact (two constants, two entries each);
# the float adders are exact in energy and within 3.2% in area (the area fit is one constant,
# see dsl/costs.py). Tolerances with a little room for rounding:
TOL = {("mult", "fp16"): (0.10, 0.10), ("mult", "fp32"): (0.10, 0.10),  # required by the brief
       ("mult", "int8"): (0.01, 0.01), ("mult", "int32"): (0.01, 0.01),
       ("add", "int8"): (0.01, 0.01), ("add", "int32"): (0.01, 0.01),
       ("add", "fp16"): (0.01, 0.04), ("add", "fp32"): (0.01, 0.04)}

EXTRA = """\
format mx_b8 = mx(elem = fp8_e4m3, block = 8, scale = e8m0)
format mx_b16 = mx(elem = fp8_e4m3, block = 16, scale = e8m0)
format mx_b64 = mx(elem = fp8_e4m3, block = 64, scale = e8m0)
format mx_b256 = mx(elem = fp8_e4m3, block = 256, scale = e8m0)
format q4_4 = fixed(int = 3, frac = 4)
tile t { clock 1 GHz; sram 1 KiB, bandwidth = 1 B/cycle; vector fp32 : 1 lanes }
"""


@pytest.fixture(scope="module")
def F(tmp_path_factory) -> dict[str, Format]:
    """std.formats (and a few extra MX block sizes) as checked by archc."""
    p = tmp_path_factory.mktemp("costs") / "formats.arch"
    p.write_text("import std.formats\n" + EXTRA, encoding="utf-8")
    return dict(check(p).formats)


def rel(x, y):
    return x / y - 1


@pytest.mark.parametrize("key", list(TABLE))
def test_table_45nm(F, key):
    op, name = key
    e, a = TABLE[key]
    c = (costs.multiplier if op == "mult" else costs.adder)(F[name], 45)
    te, ta = TOL[key]
    assert abs(rel(c.energy_j, e * PJ)) <= te, (key, c.energy_j / PJ, e)
    assert abs(rel(c.area_m2, a * UM2)) <= ta, (key, c.area_m2 / UM2, a)


def test_parts_sum_to_energy(F):
    for name in ("fp16", "bf16", "posit16", "int8", "mxfp8_e4m3", "mxint8", "q4_4"):
        for c in (costs.multiplier(F[name], formats=F), costs.adder(F[name], formats=F),
                  costs.mac(F[name], F[name], F["fp32"], formats=F)):
            assert c.energy_j > 0 and c.area_m2 > 0
            assert math.isclose(sum(v for _, v in c.parts), c.energy_j, rel_tol=1e-12)
            assert all(isinstance(k, str) and v >= 0 for k, v in c.parts)
    p = costs.multiplier(F["posit16"])
    assert p.part("posit decode") > 0 and p.part("posit encode") > 0
    assert costs.mac(F["mxfp8_e4m3"], F["mxfp8_e4m3"], F["fp32"], formats=F).part("MX scaling") > 0


@pytest.mark.parametrize("node", [7, 3.5, 16, 90])
def test_node_scaling(F, node):
    for fn in (costs.multiplier, costs.adder):
        for name in ("fp32", "int8", "posit16", "mxfp4"):
            c45, cn = fn(F[name], 45, formats=F), fn(F[name], node, formats=F)
            assert math.isclose(cn.energy_j, c45.energy_j * node / 45, rel_tol=1e-12)
            assert math.isclose(cn.area_m2, c45.area_m2 * (node / 45) ** 2, rel_tol=1e-12)
            assert all(math.isclose(v, dict(c45.parts)[k] * node / 45, rel_tol=1e-12) for k, v in cn.parts)
    m45, m7 = costs.mac(F["bf16"], F["bf16"], F["fp32"]), costs.mac(F["bf16"], F["bf16"], F["fp32"], 7)
    assert math.isclose(m7.energy_j, m45.energy_j * 7 / 45) and math.isclose(m7.area_m2, m45.area_m2 * (7 / 45) ** 2)


def test_posit_vs_ieee(F):
    # calibrated to Forget, Uguen, de Dinechin 2021: IEEE 30-60% cheaper -> posit 1.3-1.6x, in
    # both energy and area, for multipliers and adders at 16 and 32 bits
    for p, f in (("posit16", "fp16"), ("posit32", "fp32")):
        for fn in (costs.multiplier, costs.adder):
            a, b = fn(F[p]), fn(F[f])
            print(f"{fn.__name__} {p}/{f}: energy {a.energy_j / b.energy_j:.2f}x area {a.area_m2 / b.area_m2:.2f}x")
            assert 1.30 <= a.energy_j / b.energy_j <= 1.60
            assert 1.30 <= a.area_m2 / b.area_m2 <= 1.60
    # 8 bits: the decode/encode logic is a bigger share of a small unit, so posit8 costs more
    # than fp8 E4M3 (the same 4-bit significand) by at least as much: 1.4-1.7x in the model
    for fn in (costs.multiplier, costs.adder):
        a, b = fn(F["posit8"]), fn(F["fp8_e4m3"])
        assert 1.30 <= a.energy_j / b.energy_j <= 2.0
        assert 1.30 <= a.area_m2 / b.area_m2 <= 2.0


def test_fp8_mac_costlier_than_int8(F):
    fp8 = costs.mac(F["fp8_e4m3"], F["fp8_e4m3"], F["fp32"])
    i8 = costs.mac(F["int8"], F["int8"], F["int32"])
    # the model: 3.9x energy, 10.2x area (the fp32 accumulator adder dominates the FP8 MAC)
    print(f"FP8 MAC / INT8 MAC: energy {fp8.energy_j / i8.energy_j:.2f}x, area {fp8.area_m2 / i8.area_m2:.2f}x")
    assert 3.5 < fp8.energy_j / i8.energy_j < 4.5
    assert 9 < fp8.area_m2 / i8.area_m2 < 11.5
    # E5M2 too
    assert costs.mac(F["fp8_e5m2"], F["fp8_e5m2"], F["fp32"]).energy_j > i8.energy_j


def test_mac_order_and_composition(F):
    bf16 = costs.mac(F["bf16"], F["bf16"], F["fp32"])
    fp32 = costs.mac(F["fp32"], F["fp32"], F["fp32"])
    fp64 = costs.mac(F["fp64"], F["fp64"], F["fp64"])
    assert bf16.energy_j < fp32.energy_j < fp64.energy_j
    assert bf16.area_m2 < fp32.area_m2 < fp64.area_m2
    # mac(f, f, acc) = multiplier(f) + adder(acc)
    for f, acc in (("fp16", "fp32"), ("int8", "int32"), ("posit16", "posit16"), ("fp32", "fp32")):
        m, mu, ad = costs.mac(F[f], F[f], F[acc]), costs.multiplier(F[f]), costs.adder(F[acc])
        assert math.isclose(m.energy_j, mu.energy_j + ad.energy_j, rel_tol=1e-12)
        assert math.isclose(m.area_m2, mu.area_m2 + ad.area_m2, rel_tol=1e-12)
    # a mixed product pa x pb sits between the two squares
    mix = costs.mac(F["bf16"], F["fp32"], F["fp32"])
    assert bf16.energy_j < mix.energy_j < fp32.energy_j


def test_fixed_and_int_are_integer_arithmetic(F):
    # fixed(3, 4) is 8 bits signed: the same arithmetic as int8
    for fn in (costs.multiplier, costs.adder):
        assert math.isclose(fn(F["q4_4"]).energy_j, fn(F["int8"]).energy_j)
        assert math.isclose(fn(F["q4_4"]).area_m2, fn(F["int8"]).area_m2)
    assert costs.multiplier(F["int4"]).energy_j < costs.multiplier(F["int8"]).energy_j


def test_mx_overhead_shrinks_with_block(F):
    fp32, elem = F["fp32"], F["fp8_e4m3"]
    base = costs.mac(elem, elem, fp32)
    over = []
    for name in ("mx_b8", "mx_b16", "mxfp8_e4m3", "mx_b64", "mx_b256"):
        c = costs.mac(F[name], F[name], fp32, formats=F)
        assert math.isclose(c.energy_j - base.energy_j, c.part("MX scaling"), rel_tol=1e-9)
        over.append((F[name].param("block"), c.part("MX scaling"), c.area_m2 - base.area_m2))
    print("MX per-MAC scaling energy (J) by block:", [(b, f"{e:.3g}") for b, e, _ in over])
    for (b1, e1, a1), (b2, e2, a2) in zip(over, over[1:]):
        assert b1 < b2 and e1 > e2 > 0 and a1 > a2 > 0
        assert math.isclose(e1 * b1, e2 * b2, rel_tol=1e-9)  # exactly (scale cost) / block
    # the multiplier and adder of an MX format: the element's plus the amortised scaling
    for fn in (costs.multiplier, costs.adder):
        assert fn(F["mx_b8"], formats=F).energy_j > fn(F["mx_b64"], formats=F).energy_j > fn(elem).energy_j
    # int elements (MXINT8) scale by shifting; still amortised
    mi = costs.mac(F["mxint8"], F["mxint8"], F["int32"], formats=F)
    assert 0 < mi.part("MX scaling") < 0.05 * mi.energy_j


def test_equal_area_throughput(F):
    pairs = [(F["fp64"], F["fp64"], F["fp64"]), (F["bf16"], F["bf16"], F["fp32"]),
             (F["fp32"], F["fp32"], F["fp32"]), (F["int8"], F["int8"], F["int32"])]
    r = costs.equal_area_throughput(pairs, 7)
    assert list(r) == ["fp64 x fp64 -> fp64", "bf16 x bf16 -> fp32", "fp32 x fp32 -> fp32", "int8 x int8 -> int32"]
    first = r["fp64 x fp64 -> fp64"]
    assert first["ratio"] == 1.0
    for row in r.values():
        assert math.isclose(row["macs_per_m2"], 1 / row["mac_area_m2"])
        assert math.isclose(row["ratio"], row["macs_per_m2"] / first["macs_per_m2"])
    ratio = r["bf16 x bf16 -> fp32"]["ratio"]
    mult_ratio = costs.multiplier(F["fp64"]).area_m2 / costs.multiplier(F["bf16"]).area_m2
    add_ratio = costs.adder(F["fp64"]).area_m2 / costs.adder(F["fp32"]).area_m2
    print(f"equal silicon bf16 x bf16 -> fp32 vs fp64: {ratio:.1f}x MACs (multipliers alone {mult_ratio:.1f}x, "
          f"adders alone {add_ratio:.1f}x; theory ~64x, real chips 15-32x)")
    # A MAC's area ratio is a weighted mean of its multiplier and adder ratios, so it lies between
    # them. The multipliers alone approach the p^2 theory, (53/8)^2 = 44 (less the exponent logic);
    # the MAC ratio is well below the real-chip 15-32x because the model pays a full IEEE fp32
    # adder (82% of the bf16 MAC's area) per MAC, where tensor cores share alignment and
    # normalisation across a dot product: the model gives 9.8x.
    assert add_ratio < ratio < mult_ratio
    assert 35 < mult_ratio < 64
    assert 8 < ratio < 12
    # independent of the node
    r45 = costs.equal_area_throughput(pairs, 45)
    assert math.isclose(r45["bf16 x bf16 -> fp32"]["ratio"], ratio)
    assert math.isclose(r45["fp64 x fp64 -> fp64"]["macs_per_mm2"], first["macs_per_mm2"] * (7 / 45) ** 2)


def test_derived_rate(F):
    a, b, acc = F["bf16"], F["bf16"], F["fp32"]
    one = costs.mac(a, b, acc, 7).area_m2
    assert math.isclose(costs.derived_rate(1000 * one, a, b, acc, 7), 1000)
    # 1 mm^2 at 7 nm holds (45/7)^2 times what it holds at 45 nm
    assert math.isclose(costs.derived_rate(1e-6, a, b, acc, 7), costs.derived_rate(1e-6, a, b, acc, 45) * (45 / 7) ** 2)
    with pytest.raises(ValueError, match="area"):
        costs.derived_rate(0, a, b, acc, 7)
    with pytest.raises(ValueError, match="area"):
        costs.derived_rate(float("nan"), a, b, acc, 7)


def test_errors(F):
    bogus = Format("weird", "logfloat", 8, (("base", 2),))
    with pytest.raises(ValueError, match="unknown kind 'logfloat'"):
        costs.multiplier(bogus)
    with pytest.raises(ValueError, match="weird"):
        costs.mac(bogus, F["fp16"], F["fp32"])
    with pytest.raises(ValueError, match="'man'"):
        costs.adder(Format("nofrac", "float", 8, (("exp", 4),)))
    with pytest.raises(ValueError, match="element format 'fp5'"):
        costs.multiplier(Format("mx5", "mx", 5, (("elem", "fp5"), ("block", 32), ("scale", "e8m0"))))
    with pytest.raises(ValueError, match="posit"):
        costs.multiplier(Format("mxp", "mx", 8, (("elem", "posit8"), ("block", 32))), formats=F)
    for node in (0, -7, float("inf"), "seven"):
        with pytest.raises(ValueError, match="node"):
            costs.multiplier(F["fp16"], node)
    with pytest.raises(ValueError, match="at least one"):
        costs.equal_area_throughput([], 7)
    with pytest.raises(ValueError, match="no such format"):
        costs.multiplier("fp7", formats=F)


def test_names_resolve_only_through_the_formats_given(F):
    # a format name (or an MX element name) is looked up in the formats passed; without them
    # it is an error that says so (the cost model does not reach back into the checker)
    assert costs.multiplier("fp16", formats=F) == costs.multiplier(F["fp16"])
    with pytest.raises(ValueError, match="pass formats="):
        costs.multiplier("fp16")
    with pytest.raises(ValueError, match="element format 'fp4_e2m1' is not known here"):
        costs.mac(F["mxfp4"], F["mxfp4"], F["fp32"])
