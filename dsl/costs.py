"""Arithmetic cost model per number format: energy and area of multipliers, adders and MACs,
anchored to Horowitz's 45 nm table (ISSCC 2014) and scaled by process node; owns the fitted
constants, the posit and MX overheads, and equal-silicon throughput comparisons."""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from .ir import Format

# ---- units --------------------------------------------------------------------------------
PJ = 1e-12  # J
UM2 = 1e-12  # m^2 (1 um^2)
REF_NODE_NM = 45.0  # the node of the anchor table

# ---- the anchor: Horowitz, "Computing's energy problem", ISSCC 2014, 45 nm, 0.9 V ------------
# (op, format) -> (energy pJ, area um^2). Used to fit the constants below and by fit_report().
HOROWITZ_45NM: dict[tuple[str, str], tuple[float, float]] = {
    ("add", "int8"): (0.03, 36.0),
    ("add", "int32"): (0.1, 137.0),
    ("mult", "int8"): (0.2, 282.0),
    ("mult", "int32"): (3.1, 3495.0),
    ("add", "fp16"): (0.4, 1360.0),
    ("add", "fp32"): (0.9, 4184.0),
    ("mult", "fp16"): (1.1, 1640.0),
    ("mult", "fp32"): (3.7, 7700.0),
}

# ---- fitted constants (energy in pJ, area in um^2, at 45 nm) --------------------------------
# Notation: n = integer width; p = significand bits including the hidden one (man + 1);
# e = exponent bits; lg(x) = max(1, log2 x) (so a 1-bit significand still pays one stage).
#
# Integer multiplier: n^2 partial-product array + n (final carry-propagate adder, registers).
#   E = a n^2 + c n, two unknowns, two entries (int8, int32): subtract 4x the int8 equation
#   (32 c = 4 * 8 c) to eliminate c: a = (3.1 - 4*0.2) / (1024 - 4*64) = 2.3/768,
#   c = (0.2 - 64 a) / 8. Same for area: a = (3495 - 4*282)/768 = 2367/768, c = (282 - 64 a)/8.
#   Exact: int8 and int32 multipliers are reproduced to 0.0% (energy and area).
K_IMUL_ARRAY_E = 2.3 / 768  # 2.995e-3 pJ per partial-product bit
K_IMUL_LIN_E = (0.2 - 64 * K_IMUL_ARRAY_E) / 8  # 1.042e-3 pJ per bit
K_IMUL_ARRAY_A = 2367 / 768  # 3.082 um^2 per partial-product bit
K_IMUL_LIN_A = (282 - 64 * K_IMUL_ARRAY_A) / 8  # 10.59 um^2 per bit
#
# Integer adder: a ripple/prefix adder, linear in width plus a constant (carry-in, flags).
#   E = a n + c: a = (0.1 - 0.03) / 24, c = 0.03 - 8 a; area a = (137 - 36)/24, c = 36 - 8 a.
#   Exact: int8 and int32 adders reproduced to 0.0%.
K_IADD_E = 0.07 / 24  # 2.917e-3 pJ per bit
K_IADD0_E = 0.03 - 8 * K_IADD_E  # 6.67e-3 pJ
K_IADD_A = 101 / 24  # 4.208 um^2 per bit
K_IADD0_A = 36 - 8 * K_IADD_A  # 2.33 um^2
#
# Float multiplier: p^2 significand array + (p + e) lg(p) exponent add, normalisation and
#   rounding. Two unknowns, two entries: fp16 (p=11, e=5: p^2 = 121, (p+e) lg p = 55.35) and
#   fp32 (p=24, e=8: 576, 146.72). Solving the 2x2 systems:
#     energy: 121 a + 55.35 b = 1.1, 576 a + 146.72 b = 3.7 -> a = 3.072e-3, b = 1.316e-2
#     area:   121 a + 55.35 b = 1640, 576 a + 146.72 b = 7700 -> a = 13.13, b = 0.916
#   Exact: fp16 and fp32 multipliers reproduced to 0.0% (energy and area).
#   Cross-check: the fitted float array energy per bit^2 (3.07e-3 pJ) is within 3% of the
#   integer array's (3.00e-3 pJ), as it should be; the table's float *areas* are 4.3x larger per
#   bit^2 than its integer ones (pipelined, full-IEEE units), which the separate fit absorbs.
_Q16, _Q32 = 16 * math.log2(11), 32 * math.log2(24)
_DET_FM = 121 * _Q32 - 576 * _Q16
K_FMUL_ARRAY_E = (1.1 * _Q32 - 3.7 * _Q16) / _DET_FM  # 3.072e-3 pJ per bit^2
K_FMUL_NORM_E = (121 * 3.7 - 576 * 1.1) / _DET_FM  # 1.316e-2 pJ per bit-stage
K_FMUL_ARRAY_A = (1640 * _Q32 - 7700 * _Q16) / _DET_FM  # 13.13 um^2 per bit^2
K_FMUL_NORM_A = (121 * 7700 - 576 * 1640) / _DET_FM  # 0.916 um^2 per bit-stage
#
# Float adder: (p + e)-wide datapath (significand add, rounding incrementer, exponent compare
#   and select) + p lg(p) alignment and normalisation shifters with leading-zero logic.
#     energy: 16 a + 38.05 b = 0.4, 32 a + 110.04 b = 0.9 -> a = 1.799e-2, b = 2.947e-3 (exact)
#     area: the exact solution has a < 0 (-17.6 um^2/bit: the table's adder areas grow faster
#       than p lg p, x3.08 from fp16 to fp32), so a = 0 and b is the least-squares (log) fit of
#       the shifter term alone: b = sqrt(1360/38.05 * 4184/110.04) = 36.86 um^2 per bit-stage.
#   fp16 and fp32 adders: energy exact (0.0%); area fp16 1403 um^2 (+3.1%), fp32 4056 um^2 (-3.0%).
_S16, _S32 = 11 * math.log2(11), 24 * math.log2(24)
K_FADD_BIT_E = (0.4 * _S32 - 0.9 * _S16) / (16 * _S32 - 32 * _S16)  # 1.799e-2 pJ per bit
K_FADD_SHIFT_E = (16 * 0.9 - 32 * 0.4) / (16 * _S32 - 32 * _S16)  # 2.947e-3 pJ per bit-stage
K_FADD_BIT_A = 0.0
K_FADD_SHIFT_A = math.sqrt(1360 / _S16 * 4184 / _S32)  # 36.86 um^2 per bit-stage
#
# Shifter stage (posit decode/encode, MX integer scaling): an n-bit barrel shifter with its
#   leading-zero/one counter or rounding logic, n lg(n) mux-bits. Calibrated, not fitted to the
#   table (the table has no posit entries): IEEE operators are reported 30-60% smaller and faster
#   than posit operators of equal width (Forget, Uguen, de Dinechin, "Comparing posit and
#   IEEE-754 hardware cost", 2021; docs/sources.md). A posit unit pays two
#   decodes and one encode, 3 K n lg(n); K is the value that keeps posit16 and posit32 multipliers
#   and adders furthest from both edges of +30..+60% (maximin over the four ratios):
#     energy K = 7.4e-4 pJ per mux-bit (about 1/4 of an integer adder bit, 2.9e-3: a 2:1 mux vs
#       a full adder) -> posit/IEEE energy: mult16 1.35, add16 1.53, mult32 1.36, add32 1.55
#     area   K = 2.07 um^2 per mux-bit (about 1/2 of an integer adder bit, 4.2) -> posit/IEEE
#       area: mult16 1.43, add16 1.41, mult32 1.49, add32 1.47
#   At 8 bits the codec is a larger share: posit8 vs fp8_e4m3 (same 4-bit significand) comes out
#   1.4-1.7x; vs fp8_e5m2 (3-bit significand) 1.6-2.9x.
K_SHIFTER_E = 7.4e-4  # pJ per mux-bit
K_SHIFTER_A = 2.07  # um^2 per mux-bit

# ---- process scaling ----------------------------------------------------------------------
# Energy ~ switched capacitance x V^2; capacitance scales linearly with the feature size and the
# voltage is held at the table's 0.9 V (an assumption: real nodes lowered V to ~0.7-0.75 V by
# 7 nm, which would make energies another ~0.6-0.7x lower). Area ~ node^2 (ideal scaling; real
# logic density improved less than (45/7)^2 = 41x). node_nm = 45 reproduces the table.


def energy_scale(node_nm: float) -> float:
    """Energy factor relative to 45 nm: node / 45 (linear, constant voltage)."""
    return _node(node_nm) / REF_NODE_NM


def area_scale(node_nm: float) -> float:
    """Area factor relative to 45 nm: (node / 45)^2."""
    return (_node(node_nm) / REF_NODE_NM) ** 2


def _node(node_nm) -> float:
    try:
        v = float(node_nm)
    except (TypeError, ValueError):
        raise ValueError(f"process node must be a number of nanometres, got {node_nm!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"process node must be a positive, finite number of nanometres, got {node_nm!r}")
    return v


# ---- costs --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Cost:
    """Energy per operation (J), silicon area (m^2) and where the energy goes (named parts, J;
    they sum to energy_j)."""

    energy_j: float
    area_m2: float
    parts: tuple[tuple[str, float], ...]

    def part(self, name: str) -> float:
        """Energy (J) of the named part, 0 if the cost has none."""
        return sum(v for k, v in self.parts if k == name)


class _Acc:
    """Accumulates named parts (pJ, um^2 at 45 nm) and turns them into a Cost at a node."""

    def __init__(self):
        self.e: dict[str, float] = {}
        self.a = 0.0

    def add(self, name: str, e_pj: float, a_um2: float, times: float = 1.0) -> _Acc:
        self.e[name] = self.e.get(name, 0.0) + e_pj * times
        self.a += a_um2 * times
        return self

    def merge(self, other: _Acc, times: float = 1.0) -> _Acc:
        for k, v in other.e.items():
            self.e[k] = self.e.get(k, 0.0) + v * times
        self.a += other.a * times
        return self

    def cost(self, node_nm: float) -> Cost:
        es, as_ = energy_scale(node_nm), area_scale(node_nm)
        parts = tuple((k, v * PJ * es) for k, v in self.e.items())
        return Cost(sum(v for _, v in parts), self.a * UM2 * as_, parts)


def _lg(x: float) -> float:
    return max(1.0, math.log2(x))


# -- primitives (45 nm, pJ and um^2) --
def _int_add(n: float) -> tuple[float, float]:
    return K_IADD_E * n + K_IADD0_E, K_IADD_A * n + K_IADD0_A


def _shifter(n: float) -> tuple[float, float]:
    s = n * _lg(n)
    return K_SHIFTER_E * s, K_SHIFTER_A * s


# ---- formats as arithmetic operands -------------------------------------------------------

@dataclass(frozen=True)
class _Operand:
    """What the arithmetic of one format looks like: an integer of p bits (e = 0, int-like) or
    a float core with a p-bit significand and an e-bit exponent; posit n > 0 adds a codec."""

    name: str
    int_like: bool
    p: int
    e: int
    posit_n: int = 0
    bits: int = 0  # storage width (int/fixed: the integer width)


@dataclass(frozen=True)
class _Mx:
    elem: _Operand
    block: int
    scale_bits: int


def _need(fmt: Format, key: str):
    v = fmt.param(key)
    if v is None or isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
        raise ValueError(f"cannot cost format '{fmt.name}' ({fmt.kind}): parameter '{key}' is "
                         f"missing or invalid ({v!r})")
    return int(v)


def posit_scale_bits(n: int, es: int) -> int:
    """Bits of a posit(n, es)'s binary scale, signed: its values span 2^-s .. 2^s with
    s = (n - 2) 2^es, so the core's exponent needs ceil(log2(s + 1)) + 1 bits."""
    return math.ceil(math.log2((n - 2) * 2 ** es + 1)) + 1 if n > 2 else 1


def _operand(fmt: Format) -> _Operand:
    kind = getattr(fmt, "kind", None)
    if kind == "float":
        return _Operand(fmt.name, False, _need(fmt, "man") + 1, _need(fmt, "exp"), bits=fmt.bits)
    if kind == "posit":
        n, es = _need(fmt, "n"), _need(fmt, "es")
        if n < 2:
            raise ValueError(f"cannot cost format '{fmt.name}': posit n = {n} must be at least 2")
        # the maximal significand: n - 1 (sign) - 2 (shortest regime) - es + 1 (hidden bit)
        return _Operand(fmt.name, False, max(1, n - es - 2), posit_scale_bits(n, es), posit_n=n, bits=n)
    if kind == "int":
        b = _need(fmt, "bits")
        return _Operand(fmt.name, True, b, 0, bits=b)
    if kind == "fixed":
        b = getattr(fmt, "bits", 0)
        if not isinstance(b, int) or b < 1:
            raise ValueError(f"cannot cost format '{fmt.name}': fixed width {b!r} is invalid")
        return _Operand(fmt.name, True, b, 0, bits=b)
    if kind == "mx":
        raise AssertionError("mx handled by _describe")
    raise ValueError(f"cannot cost format '{getattr(fmt, 'name', fmt)!s}': unknown kind {kind!r} "
                     f"(the cost model knows float, posit, int, fixed and mx)")


def _resolve(fmt, formats: Mapping[str, Format] | None) -> Format:
    if isinstance(fmt, str):
        if formats is None:
            raise ValueError(f"cannot cost format '{fmt}' by name without the formats it is one of "
                             f"(pass formats=dict(design.formats), or check.standard_formats())")
        if fmt not in formats:
            raise ValueError(f"cannot cost format '{fmt}': no such format in the given formats")
        return formats[fmt]
    if not hasattr(fmt, "kind") or not hasattr(fmt, "params"):
        raise ValueError(f"cannot cost {fmt!r}: not a format")
    return fmt


def _describe(fmt, formats) -> _Operand | _Mx:
    fmt = _resolve(fmt, formats)
    if fmt.kind != "mx":
        return _operand(fmt)
    elem_name = fmt.param("elem")
    if not isinstance(elem_name, str):
        raise ValueError(f"cannot cost MX format '{fmt.name}': it names no element format")
    table = formats or {}
    if elem_name not in table:
        raise ValueError(f"cannot cost MX format '{fmt.name}': its element format '{elem_name}' is not "
                         f"known here (pass formats=dict(design.formats))")
    elem = table[elem_name]
    if elem.kind not in ("float", "int", "fixed"):
        raise ValueError(f"cannot cost MX format '{fmt.name}': element '{elem_name}' is a {elem.kind}; "
                         f"MX elements are float, int or fixed")
    block = _need(fmt, "block")
    if block < 1:
        raise ValueError(f"cannot cost MX format '{fmt.name}': block {block} must be at least 1")
    scale_bits = fmt.param("scale_bits")
    if not isinstance(scale_bits, int) or isinstance(scale_bits, bool) or scale_bits < 1:
        scale_bits = 8  # E8M0, the only MX v1.0 scale
    return _Mx(_operand(elem), block, scale_bits)


# ---- units at 45 nm -------------------------------------------------------------------------

def _codec(acc: _Acc, ops: list[_Operand], out: _Operand | None) -> None:
    for o in ops:
        if o.posit_n:
            acc.add("posit decode", *_shifter(o.posit_n))
    if out is not None and out.posit_n:
        acc.add("posit encode", *_shifter(out.posit_n))


def _product(a: _Operand, b: _Operand) -> _Acc:
    """A multiplier of a's by b's significands (pa x pb generalises p^2), with posit codecs."""
    acc = _Acc()
    if a.int_like and b.int_like:
        acc.add("multiplier array", K_IMUL_ARRAY_E * a.p * b.p, K_IMUL_ARRAY_A * a.p * b.p)
        lin = (a.p + b.p) / 2
        acc.add("multiplier final adder", K_IMUL_LIN_E * lin, K_IMUL_LIN_A * lin)
    else:
        acc.add("multiplier array", K_FMUL_ARRAY_E * a.p * b.p, K_FMUL_ARRAY_A * a.p * b.p)
        p, e = (a.p + b.p) / 2, max(a.e, b.e)
        s = (p + e) * _lg(p)
        acc.add("multiplier exponent/normalisation", K_FMUL_NORM_E * s, K_FMUL_NORM_A * s)
    # the product is rounded back to the wider posit operand's format
    out = max((o for o in (a, b) if o.posit_n), key=lambda o: o.posit_n, default=None)
    _codec(acc, [a, b], out)
    return acc


def _sum(a: _Operand) -> _Acc:
    acc = _Acc()
    if a.int_like:
        acc.add("adder", *_int_add(a.p))
    else:
        acc.add("adder", K_FADD_BIT_E * (a.p + a.e), K_FADD_BIT_A * (a.p + a.e))
        s = a.p * _lg(a.p)
        acc.add("adder alignment/normalisation", K_FADD_SHIFT_E * s, K_FADD_SHIFT_A * s)
        _codec(acc, [a, a], a)
    return acc


def _scale_apply(out: _Operand) -> tuple[float, float]:
    """Applying a power-of-two scale to a value of format `out`: an exponent add for floats
    and posits (their exponent or scale width), a barrel shift for integers."""
    return _int_add(out.e) if not out.int_like else _shifter(out.bits or out.p)


def _mx_scaling(acc: _Acc, pair: bool, scale_bits: int, block: int, out: _Operand) -> None:
    """Per-element share of the shared-scale handling: one scale add per block pair (two
    scales of scale_bits -> scale_bits + 1) and one scale apply per block output, / block."""
    e_pj = a_um2 = 0.0
    if pair:
        e, a = _int_add(scale_bits + 1)
        e_pj, a_um2 = e_pj + e, a_um2 + a
    e, a = _scale_apply(out)
    acc.add("MX scaling", e_pj + e, a_um2 + a, times=1.0 / block)


def _product_format(a: _Operand, b: _Operand) -> _Operand:
    if a.int_like and b.int_like:
        return _Operand("product", True, a.p + b.p, 0, bits=a.p + b.p)
    return _Operand("product", False, a.p + b.p, max(a.e, b.e) + 1)


# ---- public API -------------------------------------------------------------------------

def multiplier(fmt: Format, node_nm: float = 45, *, formats: Mapping[str, Format] | None = None) -> Cost:
    """One multiplier for `fmt` x `fmt` at `node_nm` (a format name is looked up in `formats`,
    or in std.formats; `formats` also resolves MX element names)."""
    d = _describe(fmt, formats)
    if isinstance(d, _Mx):
        acc = _product(d.elem, d.elem)
        _mx_scaling(acc, True, d.scale_bits, d.block, _product_format(d.elem, d.elem))
        return acc.cost(node_nm)
    return _product(d, d).cost(node_nm)


def adder(fmt: Format, node_nm: float = 45, *, formats: Mapping[str, Format] | None = None) -> Cost:
    """One adder for `fmt` + `fmt` at `node_nm`. For MX: the element adder plus one scale compare
    and one scale apply per block, amortised over the block (re-aligning the elements of blocks
    with different scales is not modelled: MX sums are normally taken in the accumulator)."""
    d = _describe(fmt, formats)
    if isinstance(d, _Mx):
        acc = _sum(d.elem)
        _mx_scaling(acc, True, d.scale_bits, d.block, d.elem)
        return acc.cost(node_nm)
    return _sum(d).cost(node_nm)


# What the model gives for MACs (ratios hold at every node, scaling is uniform):
# - FP8 (E4M3) x FP8 -> FP32 vs INT8 x INT8 -> INT32: 3.9x the energy (1.16 vs 0.30 pJ at 45 nm)
#   and 10.2x the area. The FP8 multiplier alone is 1.3x INT8's energy (0.26 vs 0.20 pJ); the
#   full IEEE fp32 accumulator adder (0.9 pJ, 4056 um^2) is what makes FP8 MACs costlier
#   (docs/sources.md: "FP8 MACs are reported less efficient than INT8"). The gap is an upper end:
#   real FP8 units often accumulate in wider fixed point or share normalisation across a dot
#   product, which this per-MAC model does not credit.
# - Equal silicon, bf16 x bf16 -> fp32 vs fp64 x fp64 -> fp64: 9.8x the MACs per area. The
#   multipliers alone give 42x (~ (53/8)^2 = 44, the theoretical p^2 ratio; docs/sources.md's
#   "roughly 64x"); the fp32 adder, 82% of a bf16 MAC's area, pulls the MAC ratio down. Real
#   chips (15-32x, H100) sit between the two, because tensor cores amortise alignment and
#   normalisation over a dot-product tree instead of paying one full fp32 adder per MAC.
def mac(a: Format, b: Format, acc: Format, node_nm: float = 45, *,
        formats: Mapping[str, Format] | None = None) -> Cost:
    """One multiply-accumulate a x b + acc -> acc: a multiplier of a's by b's significands
    (pa x pb) and one adder in the accumulator format (mac(f, f, acc) = multiplier(f) +
    adder(acc) for non-MX f). MX operands multiply their elements and add the shared-scale
    handling of one block pair per block of products (the smaller block if both are MX)."""
    da, db, dc = (_describe(f, formats) for f in (a, b, acc))
    if isinstance(dc, _Mx):
        dc = dc.elem
    ea = da.elem if isinstance(da, _Mx) else da
    eb = db.elem if isinstance(db, _Mx) else db
    total = _product(ea, eb).merge(_sum(dc))
    mxs = [d for d in (da, db) if isinstance(d, _Mx)]
    if mxs:
        _mx_scaling(total, len(mxs) == 2, max(m.scale_bits for m in mxs), min(m.block for m in mxs), dc)
    return total.cost(node_nm)


def _label(f) -> str:
    return f if isinstance(f, str) else getattr(f, "name", str(f))


def equal_area_throughput(pairs: list[tuple[Format, Format, Format]], node_nm: float = 45, *,
                          formats: Mapping[str, Format] | None = None) -> dict:
    """MACs per unit of silicon for each (a, b, acc): 1 / mac area, and the ratio to the first.

    Returns {label "a x b -> acc": {"a", "b", "acc", "mac_area_m2", "mac_energy_j",
    "macs_per_m2", "macs_per_mm2", "ratio"}} in the order given (ratio 1.0 for the first)."""
    pairs = list(pairs)
    if not pairs:
        raise ValueError("equal_area_throughput needs at least one (a, b, acc) format triple")
    out: dict[str, dict] = {}
    first = None
    for t in pairs:
        if not (isinstance(t, (tuple, list)) and len(t) == 3):
            raise ValueError(f"equal_area_throughput takes (a, b, acc) format triples, got {t!r}")
        a, b, c = t
        cost = mac(a, b, c, node_nm, formats=formats)
        per_m2 = 1.0 / cost.area_m2
        if first is None:
            first = per_m2
        label = f"{_label(a)} x {_label(b)} -> {_label(c)}"
        out[label] = dict(a=_label(a), b=_label(b), acc=_label(c), mac_area_m2=cost.area_m2,
                          mac_energy_j=cost.energy_j, macs_per_m2=per_m2, macs_per_mm2=per_m2 * 1e-6,
                          ratio=per_m2 / first)
    return out


def derived_rate(area_m2: float, a: Format, b: Format, acc: Format, node_nm: float = 45, *,
                 formats: Mapping[str, Format] | None = None) -> float:
    """MACs per cycle that fit in `area_m2` of silicon (a matrix unit declared by its area):
    area / mac area. Not rounded down: the model's MAC area is an average over a large array."""
    try:
        area = float(area_m2)
    except (TypeError, ValueError):
        raise ValueError(f"silicon area must be a number of m^2, got {area_m2!r}") from None
    if not (math.isfinite(area) and area > 0):
        raise ValueError(f"silicon area must be positive and finite, got {area_m2!r} m^2")
    return area / mac(a, b, acc, node_nm, formats=formats).area_m2


def fit_report(formats: Mapping[str, Format]) -> list[tuple[str, str, float, float, float, float]]:
    """Each entry of the 45 nm table against the model: (op, format, table pJ, model pJ,
    table um^2, model um^2)."""
    rows = []
    for (op, name), (e, a) in HOROWITZ_45NM.items():
        c = (multiplier if op == "mult" else adder)(name, 45, formats=formats)
        rows.append((op, name, e, c.energy_j / PJ, a, c.area_m2 / UM2))
    return rows


# ---- analog in-memory MAC arrays ------------------------------------------------------------
# An analog array's energy is dominated by its converters: one ADC conversion per column and
# one DAC conversion per row per vector, shared by the rows x cols MACs of the array. A SAR
# ADC's Walden figure of merit is ~10-50 fJ per conversion step in recent designs (uncertain;
# Murmann's ADC survey); 20 fJ is taken, and DACs at a tenth of that per step. The cell's own
# energy (a conductance read) is ~1 fJ per MAC (uncertain). Converters barely scale with node.
ADC_FJ_PER_STEP = 20.0
DAC_FJ_PER_STEP = 2.0
CELL_FJ = 1.0


def analog_mac_energy(dac_bits: int, adc_bits: int, rows: int, cols: int) -> float:
    """J per MAC of an analog array: converters amortised over the array, plus the cell."""
    adc = ADC_FJ_PER_STEP * 2.0**adc_bits / rows  # one conversion per column, rows MACs each
    dac = DAC_FJ_PER_STEP * 2.0**dac_bits / cols  # one conversion per row, cols MACs each
    return (adc + dac + CELL_FJ) * 1e-15
