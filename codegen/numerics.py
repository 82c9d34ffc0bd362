"""Number-format kernels: the exact constants of each declared format (largest value, code
points of NaN and infinities, quire range) and the rendering of formats.pyx.j2."""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from archc.dsl.diagnostics import CodegenError
from archc.dsl.formats import float_extremes
from archc.dsl.ir import Format

from .mangle import comment, number
from .render import environment

ROUNDINGS = ("rne", "rna", "rtz", "rup", "rdown", "stochastic")
TEMPLATE_VERSION = "1"
# Products inside the exact accumulator's 768 bits: inputs whose values lie within 2^+-EXACT_RANGE.
EXACT_RANGE = 200


def code(c: int) -> str:
    """A code point as a C unsigned 64-bit literal (Cython would make a large int a Python object)."""
    return f"{c:#x}ULL"


@dataclass(frozen=True)
class FormatInfo:
    """What the kernels and the Python API need to know of one format."""

    index: int
    name: str
    kind: str  # float | posit | fixed | mx
    bits: int  # bits of one code point (MX: of one element)
    max: float
    min_normal: float
    min_subnormal: float
    eps: float
    has_nan: bool
    has_inf: bool
    signed: bool
    consts: tuple[tuple[str, object], ...]  # the template's view
    min_exp: int  # exponent of the smallest nonzero value (for the quire)
    max_exp: int

    def c(self, key):
        return dict(self.consts)[key]


def float_info(f: Format, index: int) -> FormatInfo:
    p_ = dict(f.params)
    exp, man, bias, signed = p_["exp"], p_["man"], p_["bias"], p_["signed"]
    has_sub, inf, nan, overflow = p_["subnormals"], p_["inf"], p_["nan"], p_["overflow"]
    # the checker (dsl/formats.py) admits only formats whose every value a float64 holds
    k, t, p, w = exp + man + int(signed), man, man + 1, exp
    high_nans, isig, emax = float_extremes(exp, man, bias, signed, has_sub, inf, nan)
    has_nz, has_zero = signed, p > 1 or has_sub
    num_nans = high_nans if not signed else (0 if has_nz else 1) + 2 * high_nans
    posinfs = 1 if inf else 0
    # largest finite value (gfloat's FormatInfo.max)
    maxv = math.ldexp((1 << t) + isig, emax - bias - t)
    if has_sub:
        min_normal = math.ldexp(1.0, 1 - bias)
    elif has_zero:
        min_normal = math.ldexp((1 << t) + 1, -bias - t)
    else:
        min_normal = math.ldexp(1.0, -bias)
    smallest_sub = math.ldexp(1.0, -(bias + t - 1)) if has_sub else min_normal
    if not math.isfinite(maxv) or smallest_sub == 0:
        raise CodegenError(f"format '{f.name}' does not fit in float64", f.span)
    nan_code = (1 << k) - 1 if high_nans else (1 << (k - 1) if (signed and not has_nz) else 0)
    max_code = (1 << (k - int(signed))) - 1 - high_nans - posinfs
    if inf:
        posinf_code, neginf_code = (1 << (k - int(signed))) - 1 - high_nans, (1 << k) - 1 - high_nans
    elif num_nans:
        posinf_code = neginf_code = nan_code
    else:
        posinf_code, neginf_code = max_code, (1 << k) - high_nans - posinfs - 1
    consts = dict(p=p, bias=bias, has_sub=int(has_sub), signed=int(signed), has_nz=int(has_nz),
                  extended=int(inf), has_nan=int(num_nans > 0), sat=int(overflow == "saturate"),
                  max=number(maxv), k=k, t=t, w=w, has_zero=int(has_zero), nan_code=code(nan_code),
                  posinf_code=code(posinf_code), neginf_code=code(neginf_code), max_code=code(max_code),
                  min_code=code((1 << k) - high_nans - posinfs - 1), smallest_sub=number(smallest_sub),
                  num_high_nans=high_nans)
    consts["fast"] = _fast_path(p, bias, has_sub, maxv, min_normal, signed)
    if consts["fast"] is not None:
        # float32's range and specials exactly: the carry trick holds for every float32 input
        consts["fast"]["whole32"] = (exp == 8 and bias == 127 and has_sub and inf and nan == "ieee"
                                     and overflow == "inf" and signed and consts["fast"]["f32"])
    return FormatInfo(index, f.name, "float", k, maxv, min_normal, smallest_sub, math.ldexp(1.0, -t),
                      num_nans > 0, inf, signed, tuple(consts.items()),
                      math.frexp(smallest_sub)[1] - 1, math.frexp(maxv)[1] - 1)


def _fast_path(p: int, bias: int, has_sub: bool, maxv: float, min_normal: float, signed: bool):
    """Bit masks of the nearest-even fast path over float64 (and float32 where every value of
    the format is a float32): inputs from the smallest normal of the format up to its largest
    value. None when the format has no such range (1-bit significands, unsigned formats)."""
    import struct
    if p < 2 or not signed or p > 53:
        return None
    t = p - 1

    def bits64(v):
        return struct.unpack("<Q", struct.pack("<d", v))[0]

    shift = 52 - t
    lo = min_normal if has_sub else math.ldexp(1.0, 1 - bias)
    fast = dict(shift64=shift, half64=code((1 << (shift - 1)) - 1) if shift else "0ULL",
                mask64=code(((1 << 64) - 1) ^ ((1 << shift) - 1)), lo64=code(bits64(lo)),
                hi64=code(bits64(maxv) | ((1 << shift) - 1)), max64=code(bits64(maxv)), f32=False,
                whole32=False)
    if shift == 0:
        return None
    f32_ok = t <= 23 and math.ldexp(1.0, -149) <= lo and maxv <= 3.4028234663852886e38
    if f32_ok:
        def bits32(v):
            return struct.unpack("<I", struct.pack("<f", v))[0]
        s32 = 23 - t
        if s32 == 0:
            return fast
        fast.update(f32=True, shift32=s32, half32=f"{(1 << (s32 - 1)) - 1:#x}U",
                    mask32=f"{((1 << 32) - 1) ^ ((1 << s32) - 1):#x}U", lo32=f"{bits32(lo):#x}U",
                    hi32=f"{bits32(maxv) | ((1 << s32) - 1):#x}U", max32=f"{bits32(maxv):#x}U")
    return fast


def posit_info(f: Format, index: int) -> FormatInfo:
    n, es = f.param("n"), f.param("es")
    top = (n - 2) * (1 << es)  # at most MAX_POSIT_SCALE: the checker refuses wider posits
    maxpos, minpos = math.ldexp(1.0, top), math.ldexp(1.0, -top)
    return FormatInfo(index, f.name, "posit", n, maxpos, minpos, minpos, math.ldexp(1.0, -max(0, n - 3 - es)),
                      True, False, True, tuple(dict(n=n, es=es).items()), -top, top)


def fixed_info(f: Format, index: int) -> FormatInfo:
    if f.kind == "int":
        frac, bits = 0, f.param("bits")
    else:
        frac, bits = f.param("frac"), f.bits
    signed = f.param("signed")
    hi = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1
    lsb = math.ldexp(1.0, -frac)
    consts = dict(frac=frac, bits=bits, signed=int(signed), wrap=int(f.param("overflow") == "wrap"),
                  code_mask=code((1 << bits) - 1))
    return FormatInfo(index, f.name, "fixed", bits, hi * lsb, lsb, lsb, lsb, False, False, signed,
                      tuple(consts.items()), -frac, math.frexp(hi * lsb)[1] - 1 if hi else -frac)


def infos(formats: dict[str, Format]) -> dict[str, FormatInfo]:
    """Every simulable scalar format of a design, indexed in name order."""
    out: dict[str, FormatInfo] = {}
    i = 0
    for name in sorted(formats):
        f = formats[name]
        make = {"float": float_info, "posit": posit_info, "int": fixed_info, "fixed": fixed_info}.get(f.kind)
        if make is None:
            continue
        out[name] = make(f, i)
        i += 1
    return out


def mx_view(f: Format, index: int, elem: FormatInfo) -> dict:
    view = dict(index=index, comment=comment(f"{f.name}: MX blocks of {f.param('block')} x {elem.name}, "
                                             f"E8M0 scale"), block=f.param("block"), elem_kind=elem.kind)
    view.update(dict(elem.consts))
    return view


def render_formats(formats: dict[str, Format], title: str, version: str) -> tuple[str, dict, dict]:
    """The .pyx text for a design's formats, the scalar infos and the MX element infos."""
    scalar = infos(formats)
    fviews = []
    for name, info in scalar.items():
        view = dict(info.consts)
        view.setdefault("fast", None)
        view.update(index=info.index, kind=info.kind, comment=comment(_describe(formats[name], info)))
        fviews.append(view)
    mx, mviews = {}, []
    for name in sorted(formats):
        f = formats[name]
        if f.kind == "mx" and f.param("elem") in scalar:
            mx[name] = scalar[f.param("elem")]
            mviews.append(mx_view(f, len(mviews), mx[name]))
    window = [i for i in scalar.values() if -EXACT_RANGE <= i.min_exp and i.max_exp <= EXACT_RANGE]
    quire_lsb = 2 * (min((i.min_exp for i in window), default=0) - 52)
    body = environment().get_template("formats.pyx.j2").render(
        title=comment(title), formats=fviews, mx=mviews, quire_lsb=quire_lsb)
    key = hashlib.sha256((TEMPLATE_VERSION + version + body).encode()).hexdigest()
    header = f"# Generated by archc {version}: do not edit.\n# content key: {key}\n"
    return header + body, scalar, mx


def _describe(f: Format, info: FormatInfo) -> str:
    if info.kind == "float":
        c = dict(info.consts)
        return (f"{f.name}: float, {c['w']} exponent and {c['t']} fraction bits, bias {c['bias']}, "
                f"max {info.max!r}, {'subnormals' if c['has_sub'] else 'no subnormals'}, "
                f"{'Inf' if info.has_inf else 'no Inf'}, {c['num_high_nans']} high NaN codes, "
                f"{'saturating' if c['sat'] else 'overflow to Inf/NaN'}")
    if info.kind == "posit":
        return f"{f.name}: posit({info.c('n')}, {info.c('es')}), maxpos {info.max!r}"
    return (f"{f.name}: {'signed' if info.signed else 'unsigned'} fixed point, {info.c('bits')} bits, "
            f"{info.c('frac')} fraction bits, {'wrapping' if info.c('wrap') else 'saturating'}")


def exact_window_ok(values_absmax: float, values_absmin: float) -> bool:
    """Whether values fit the exact accumulator's window."""
    return values_absmax < math.ldexp(1.0, EXACT_RANGE) and (values_absmin == 0 or
                                                             values_absmin >= math.ldexp(1.0, -EXACT_RANGE))
