"""Format declarations: validates `float(...)`, `posit(...)`, `int(...)`, `fixed(...)`, `mx(...)`
parameters into IR formats, rejecting formats that cannot exist."""
from __future__ import annotations

from . import ast
from .ir import Format
from .values import Q, show

NAN_POLICIES = ("ieee", "single", "none")
OVERFLOW = ("inf", "saturate", "nan")  # a float never wraps: its codes are not a ring

# The format kernels hold every value of a format exactly in a float64 (codegen/numerics.py):
# its significand and exponent range bound the formats archc can simulate.
F64_EXP_BITS, F64_MAN_BITS = 11, 52
F64_MAX_EXP, F64_MIN_EXP = 1023, -1074  # largest power of two; lowest bit of a subnormal
# posits: maxpos = 2^((n-2) 2^es) with room left for the kernels' products of two values
MAX_POSIT_BITS, MAX_POSIT_SCALE = 32, 1000


def float_extremes(exp: int, man: int, bias: int, signed: bool, subnormals: bool, inf: bool,
                   nan: str) -> tuple[int, int, int]:
    """(high NaN codes, largest significand's extra fraction, largest biased exponent) of an
    IEEE-like format, as gfloat's FormatInfo counts them; ValueError if no value is finite."""
    t, w = man, exp
    if nan == "ieee":
        high_nans = (1 << t) - 1 if inf else 1 << t
    else:
        high_nans = 1 if nan == "single" else 0
    non_finites = high_nans + (1 if inf else 0)
    if non_finites == 1 << t:
        return high_nans, (1 << t) - 1, (1 << w) - 2
    if non_finites == 1 << (t + 1):
        return high_nans, (1 << t) - 1, (1 << w) - 3
    if non_finites >= 1 << t:
        raise ValueError("its infinities and NaNs take every code of the top exponent and more: "
                         "no value is finite")
    return high_nans, (1 << t) - 1 - non_finites, (1 << w) - 1


def float_exponents(exp: int, man: int, bias: int, signed: bool, subnormals: bool, inf: bool,
                    nan: str) -> tuple[int, int]:
    """(exponent of the largest finite value, exponent of the lowest bit of the smallest
    nonzero value): the powers of two the format's values span."""
    _, _, emax = float_extremes(exp, man, bias, signed, subnormals, inf, nan)
    has_zero = man > 0 or subnormals
    if subnormals:
        low = 1 - bias - man
    elif has_zero:
        low = -bias - man  # exponent field 0 is normal; its smallest significand is zero
    else:
        low = -bias
    return emax - bias, low
ROUNDING = ("rne", "rna", "rtz", "rup", "rdown", "stochastic")

_SIGNATURES = {
    "float": ("exp", "man", "bias", "subnormals", "inf", "nan", "overflow", "signed", "storage", "rounding"),
    "posit": ("n", "es", "rounding"),
    "int": ("bits", "signed", "overflow", "rounding"),
    "fixed": ("int", "frac", "signed", "overflow", "rounding"),
    "mx": ("elem", "block", "scale"),
}


_EXACT = ": archc's format kernels hold every value exactly in a float64"


def resolve_format(ck, name: str, kw: ast.Kwarg) -> Format | None:
    call = kw.value
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id in _SIGNATURES):
        ck.diag.error(call.span, "a format is `float(exp, man, ...)`, `posit(n, es)`, `int(bits)`, "
                                 "`fixed(int, frac)` or `mx(elem, block, scale)`")
        return None
    kind = call.func.id
    names = _SIGNATURES[kind]
    args: dict[str, ast.Expr] = {}
    pos = [a for a in call.args if not isinstance(a, ast.Kwarg)]
    if len(pos) > 2:
        ck.diag.error(call.span, f"{kind}(...) takes at most two values by position")
        return None
    for n, a in zip(names, pos):
        args[n] = a
    for a in call.args:
        if isinstance(a, ast.Kwarg):
            if a.name not in names:
                ck.diag.error(a.span, f"{kind}(...) has no parameter '{a.name}'; it takes {', '.join(names)}")
                return None
            if a.name in args:
                ck.diag.error(a.span, f"'{a.name}' is given twice")
                return None
            args[a.name] = a.value

    def whole(key, lo, hi, default=None, why=""):
        if key not in args:
            if default is None:
                ck.diag.error(call.span, f"{kind}(...) needs '{key}'")
            return default
        n = ck.count(args[key], f"'{key}'", minimum=lo)
        if n is not None and n > hi:
            ck.diag.error(args[key].span, f"'{key}' = {n} is too large for a format (at most {hi}{why})")
            return None
        return n

    def flag(key, default):
        if key not in args:
            return default
        v = ck.value(args[key])
        if not isinstance(v, bool):
            ck.diag.error(args[key].span, f"'{key}' must be true or false, found {show(v) if v is not None else '?'}")
            return None
        return v

    def choice(key, options, default):
        if key not in args:
            return default
        return ck.symbol(args[key], options, f"'{key}'")

    rounding = choice("rounding", ROUNDING, "rne")
    if kind == "float":
        exp, man = whole("exp", 1, F64_EXP_BITS, why=_EXACT), whole("man", 0, F64_MAN_BITS, why=_EXACT)
        signed = flag("signed", True)
        if exp is None or man is None or signed is None:
            return None
        default_bias = (1 << (exp - 1)) - 1
        bias = default_bias
        if "bias" in args:
            v = ck.value(args["bias"])
            if not (isinstance(v, Q) and v.dim.dimensionless and float(v.value).is_integer()):
                ck.diag.error(args["bias"].span, f"'bias' must be a whole number, found {show(v) if v is not None else '?'}")
                return None
            bias = int(v.value)
            if abs(bias) > 1 << 15:
                ck.diag.error(args["bias"].span, f"bias {bias} is absurd for a {exp}-bit exponent")
                return None
        bits = exp + man + (1 if signed else 0)
        if bits > 128:
            ck.diag.error(call.span, f"a float of {bits} bits cannot be represented")
            return None
        storage = whole("storage", bits, 128, bits)
        p = (("exp", exp), ("man", man), ("bias", bias), ("signed", signed),
             ("subnormals", flag("subnormals", True)), ("inf", flag("inf", True)),
             ("nan", choice("nan", NAN_POLICIES, "ieee")), ("overflow", choice("overflow", OVERFLOW, "inf")),
             ("rounding", rounding))
        if any(v is None for _, v in p) or storage is None:
            return None
        if dict(p)["overflow"] == "inf" and not dict(p)["inf"]:
            ck.diag.error(call.span, "overflow = inf needs a format with infinities (inf = true); "
                                     "use overflow = saturate or nan")
            return None
        if man == 0 and dict(p)["inf"] and dict(p)["nan"] == "ieee" and exp < 2:
            ck.diag.error(call.span, "a 1-bit exponent with IEEE Inf/NaN leaves no finite values")
            return None
        q = dict(p)
        try:
            top, low = float_exponents(exp, man, bias, signed, q["subnormals"], q["inf"], q["nan"])
        except ValueError as e:
            ck.diag.error(call.span, f"float(exp = {exp}, man = {man}): {e}")
            return None
        where = args["bias"].span if "bias" in args else call.span
        if top > F64_MAX_EXP:
            ck.diag.error(where, f"with bias {bias}, the largest value is about 2^{top}, beyond float64's "
                                 f"2^{F64_MAX_EXP}{_EXACT}; raise the bias to at least {bias + top - F64_MAX_EXP}")
            return None
        if low < F64_MIN_EXP:
            ck.diag.error(where, f"with bias {bias}, the smallest value is 2^{low}, below float64's smallest "
                                 f"2^{F64_MIN_EXP}{_EXACT}; lower the bias to at most {bias - (F64_MIN_EXP - low)}")
            return None
        return Format(name, "float", storage, p, span=kw.span)
    if kind == "posit":
        n, es = whole("n", 2, MAX_POSIT_BITS, why=_EXACT), whole("es", 0, 32, 2)
        if n is None or es is None:
            return None
        if es > n - 2 and n > 2:
            ck.diag.error(call.span, f"posit({n}, {es}): es must be at most n - 2 = {n - 2}")
            return None
        if (n - 2) << es > MAX_POSIT_SCALE:
            ck.diag.error(call.span, f"posit({n}, {es}) spans 2^-{(n - 2) << es} to 2^{(n - 2) << es}; archc's "
                                     f"kernels hold posits up to 2^{MAX_POSIT_SCALE}{_EXACT}")
            return None
        return Format(name, "posit", n, (("n", n), ("es", es), ("rounding", rounding)), span=kw.span)
    if kind == "int":
        bits = whole("bits", 1, 64)
        signed = flag("signed", True)
        ov = choice("overflow", ("saturate", "wrap"), "saturate")
        if None in (bits, signed, ov):
            return None
        return Format(name, "int", bits, (("bits", bits), ("signed", signed), ("overflow", ov),
                                          ("rounding", rounding)), span=kw.span)
    if kind == "fixed":
        i, f = whole("int", 0, 64) if "int" in args else None, whole("frac", 0, 64)
        if "int" not in args:
            ck.diag.error(call.span, "fixed(...) needs 'int'")
        signed = flag("signed", True)
        ov = choice("overflow", ("saturate", "wrap"), "saturate")
        if None in (i, f, signed, ov):
            return None
        bits = i + f + (1 if signed else 0)
        if bits < 1 or bits > 64:
            ck.diag.error(call.span, f"fixed({i}, {f}) has {bits} bits; archc supports 1 to 64")
            return None
        return Format(name, "fixed", bits, (("int", i), ("frac", f), ("signed", signed), ("overflow", ov),
                                            ("rounding", rounding)), span=kw.span)
    # mx
    elem_e, scale_e = args.get("elem"), args.get("scale")
    block = whole("block", 1, 1 << 16, 32)
    if elem_e is None:
        ck.diag.error(call.span, "mx(...) needs 'elem', the element format")
        return None
    elem = ck.format_name(elem_e, "an element format")
    scale = ck.format_name(scale_e, "a scale format") if scale_e is not None else "e8m0"
    if elem is None or scale is None or block is None:
        return None
    ef = ck.formats[elem]
    if ef.kind not in ("float", "int", "fixed"):
        ck.diag.error(elem_e.span, f"an MX element must be a float, int or fixed format; '{elem}' is a {ef.kind}")
        return None
    if scale not in ck.formats:
        ck.diag.error(call.span, "mx(...) needs the scale format 'e8m0' (import std.formats)")
        return None
    return Format(name, "mx", ef.bits, (("elem", elem), ("block", block), ("scale", scale),
                                       ("scale_bits", ck.formats[scale].bits)), span=kw.span)
