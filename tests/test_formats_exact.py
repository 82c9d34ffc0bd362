"""Bit-exact agreement of archc's generated format kernels with independent references:
gfloat (Graphcore) for IEEE-like, OCP and MX formats, softposit (posit_2) for posits, exact
rational arithmetic for quire dot products."""
from __future__ import annotations

import math
import re
from fractions import Fraction

import numpy as np
import pytest

gfloat = pytest.importorskip("gfloat")
from gfloat import Domain, FormatInfo, RoundMode, decode_ndarray, encode_ndarray, round_ndarray  # noqa: E402
from gfloat import formats as G  # noqa: E402

import archc.formats as F  # noqa: E402

# Values beyond a format's range are part of the test: numpy's and gfloat's overflow warnings
# on them are expected.
pytestmark = [pytest.mark.build, pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")]

# archc's standard names -> gfloat's own definitions (independent of archc's parameters), and
# the overflow behaviour the format declares (OCP formats saturate).
REFS = {
    "fp64": (G.format_info_binary64, False),
    "fp32": (G.format_info_binary32, False),
    "fp16": (G.format_info_binary16, False),
    "bf16": (G.format_info_bfloat16, False),
    "fp8_e4m3": (G.format_info_ocp_e4m3, True),
    "fp8_e5m2": (G.format_info_ocp_e5m2, True),
    "fp6_e2m3": (G.format_info_ocp_e2m3, True),
    "fp6_e3m2": (G.format_info_ocp_e3m2, True),
    "fp4_e2m1": (G.format_info_ocp_e2m1, True),
    "e8m0": (G.format_info_ocp_e8m0, True),
    # not in gfloat: NVIDIA TF32 (fp32 range, 10 fraction bits, 19-bit codes) and Tesla's
    # CFP8 with the biases std.formats gives them
    "tf32": (FormatInfo("tf32", 19, 11, bias=127, is_signed=True, domain=Domain.Extended, has_nz=True,
                        num_high_nans=2**10 - 1, has_subnormals=True, is_twos_complement=False), False),
    "cfp8_143": (FormatInfo("cfp8_143", 8, 4, bias=7, is_signed=True, domain=Domain.Finite, has_nz=True,
                            num_high_nans=0, has_subnormals=True, is_twos_complement=False), True),
    "cfp8_152": (FormatInfo("cfp8_152", 8, 3, bias=15, is_signed=True, domain=Domain.Finite, has_nz=True,
                            num_high_nans=0, has_subnormals=True, is_twos_complement=False), True),
}
MODES = {"rne": RoundMode.TiesToEven, "rna": RoundMode.TiesToAway, "rtz": RoundMode.TowardZero,
         "rup": RoundMode.TowardPositive, "rdown": RoundMode.TowardNegative}
N_VALUES = 1_000_000


def same(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal as values, NaN where NaN, and zeros of the same sign."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    nan = np.isnan(a)
    return bool(np.array_equal(nan, np.isnan(b)) and np.array_equal(a[~nan], b[~nan])
                and np.array_equal(np.signbit(a[~nan]), np.signbit(b[~nan])))


def first_difference(x, a, b) -> str:
    for xi, ai, bi in zip(np.ravel(x), np.ravel(a), np.ravel(b)):
        if not same(np.array([ai]), np.array([bi])):
            return f"input {xi!r} ({float(xi).hex()}): archc {ai!r}, reference {bi!r}"
    return "no difference"


def all_values(fi: FormatInfo) -> np.ndarray:
    """Every finite value of a format of at most 16 bits, sorted, from gfloat's decoder."""
    v = decode_ndarray(fi, np.arange(2**fi.k, dtype=np.uint64))
    v = np.unique(v[np.isfinite(v)])
    return v


def sample_values(name: str, fi: FormatInfo, rng: np.random.Generator) -> np.ndarray:
    """At least N_VALUES inputs: random magnitudes across and beyond the range, every tie and
    its neighbours, binade edges, subnormals, overflow, zeros, NaN and Inf."""
    parts = []
    if fi.k <= 16:
        grid = all_values(fi)
        pos = grid[grid > 0]
        mids = (grid[:-1] + grid[1:]) / 2  # exact ties (p + 1 bits fit a double)
        parts += [grid, mids, np.nextafter(mids, np.inf), np.nextafter(mids, -np.inf),
                  np.nextafter(grid, np.inf), np.nextafter(grid, -np.inf)]
        top = grid.max()
        ulp_top = top - grid[-2]
        parts.append(np.array([top + ulp_top / 2, top + ulp_top / 4, top + ulp_top, 2 * top,
                               pos.min() / 2, pos.min() / 4, pos.min() * 0.75, np.nextafter(pos.min() / 2, 0)]))
    else:
        # wide formats: ties of random significands at random exponents
        p = fi.precision
        e = rng.integers(-(fi.bias + p), fi.bias + 1, 50_000)
        m = rng.integers(2 ** (p - 1), 2**p, 50_000).astype(np.float64)
        if p < 53:
            parts += [np.ldexp(m + 0.5, e - p + 1), np.ldexp(m, e - p + 1)]
        maxv = fi.max
        parts.append(np.array([maxv, np.nextafter(maxv, np.inf), maxv * (1 + 2.0**-p), 2 * maxv,
                               np.ldexp(1.0, 1 - fi.bias - p + 1), np.ldexp(1.0, -fi.bias - p + 1)]))
    lo = math.log2(fi.smallest_subnormal if fi.has_subnormals else fi.smallest_normal) - 3
    hi = min(math.log2(fi.max) + 3, 1023)
    rest = N_VALUES - sum(len(x) for x in parts)
    parts.append(np.exp2(rng.uniform(lo, hi, max(rest // 2, 0))))
    parts.append(rng.standard_normal(max(rest - rest // 2, 0)) * 2.0 ** rng.integers(-8, 9, max(rest - rest // 2, 0)))
    powers = np.exp2(np.arange(math.floor(lo), math.ceil(hi)))
    parts += [powers, np.nextafter(powers, 0), np.nextafter(powers, np.inf)]
    parts.append(np.array([0.0, np.inf, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308]))
    x = np.concatenate(parts)
    if fi.is_signed:
        x = np.concatenate([x, -x, np.array([-0.0, -np.inf])])
    if fi.num_nans > 0:
        x = np.concatenate([x, np.array([np.nan])])
    if not fi.is_signed:
        x = np.abs(x)
    x = x[np.isfinite(x) | np.isinf(x) | np.isnan(x)]
    assert len(x) >= N_VALUES
    return x


@pytest.fixture(scope="module")
def rng():
    return np.random.default_rng(20261121)


@pytest.mark.parametrize("name", sorted(REFS))
def test_quantize_matches_gfloat_in_every_rounding_mode(name, rng):
    fi, sat = REFS[name]
    fmt = F.get(name)
    x = sample_values(name, fi, rng)
    for mode, rnd in MODES.items():
        ours = fmt.quantize(x, rounding=mode)
        ref = round_ndarray(fi, x, rnd, sat)
        assert same(ours, ref), f"{name} {mode}: {first_difference(x, ours, ref)}"


@pytest.mark.parametrize("name", sorted(REFS))
@pytest.mark.parametrize("width", [4, 13])
def test_stochastic_rounding_matches_gfloat_given_the_same_bits(name, width, rng):
    fi, sat = REFS[name]
    x = sample_values(name, fi, rng)[:200_000]
    x = x[~np.isnan(x)]
    bits = rng.integers(0, 2**width, x.size).astype(np.uint64)
    ours = F.get(name).quantize(x, rounding="stochastic", random_bits=bits, random_width=width)
    ref = round_ndarray(fi, x, RoundMode.Stochastic, sat, bits.astype(np.int64), width)
    assert same(ours, ref), f"{name}: {first_difference(x, ours, ref)}"


@pytest.mark.parametrize("name", [n for n in sorted(REFS) if REFS[n][0].k <= 16])
def test_every_encoding_decodes_as_gfloat_says(name):
    fi, _ = REFS[name]
    codes = np.arange(2**fi.k, dtype=np.uint64)
    assert same(F.get(name).decode(codes), decode_ndarray(fi, codes))


@pytest.mark.parametrize("name", [n for n in sorted(REFS) if REFS[n][0].k > 16])
def test_wide_codes_decode_as_gfloat_says(name, rng):
    # formats of more than 16 bits: random codes, and those around every special one
    fi, _ = REFS[name]
    k = fi.k
    t = fi.precision - 1
    top = ((1 << (k - 1 - t)) - 1) << t  # the all-ones exponent field
    near = [0, 1, 2, (1 << t) - 1, 1 << t, (1 << t) + 1, top - 1, top, top + 1, top + (1 << t) - 2,
            top + (1 << t) - 1]
    special = np.array(near, dtype=np.uint64)
    codes = np.concatenate([rng.integers(0, 2**k, N_VALUES, dtype=np.uint64, endpoint=False), special,
                            special | np.uint64(1 << (k - 1))])
    assert same(F.get(name).decode(codes), decode_ndarray(fi, codes))
    if k < 64:
        with pytest.raises(ValueError, match=f"code points of {name} have {k} bits"):
            F.get(name).decode(np.array([1, 2**k + 5], dtype=np.uint64))


@pytest.mark.parametrize("name", sorted(REFS))
def test_encoding_matches_gfloat(name, rng):
    fi, sat = REFS[name]
    x = sample_values(name, fi, rng)[::7]
    x = x[~np.isnan(x)]  # NaN payloads differ by design; NaN codes are checked in decode
    ref = encode_ndarray(fi, round_ndarray(fi, x, RoundMode.TiesToEven, sat))
    assert np.array_equal(F.get(name).encode(x), ref.astype(np.uint64))


def test_format_constants_agree_with_gfloat():
    for name, (fi, _) in REFS.items():
        f = F.get(name)
        assert f.max == fi.max, name
        assert f.eps == fi.eps, name
        assert f.min_normal == fi.smallest_normal, name
        assert f.min_subnormal == (fi.smallest_subnormal if fi.has_subnormals else fi.smallest_normal), name


# ---- posits: softposit's posit_2 (es = 2, the 2022 standard) ---------------------------------

sp = pytest.importorskip("softposit")


def softposit_round(x: np.ndarray, n: int) -> np.ndarray:
    return np.array([float(sp.posit_2(float(v), n)) for v in x])


def posit_values(n: int, rng, count: int) -> np.ndarray:
    top = (n - 2) * 4
    codes = np.arange(1, 2 ** (n - 1)) if n <= 16 else rng.integers(1, 2 ** (n - 1), 200_000)
    grid = np.unique(F.get(f"posit{n}").decode(codes.astype(np.uint64)))
    mids = (grid[:-1] + grid[1:]) / 2
    parts = [grid, mids, np.nextafter(mids, 0), np.nextafter(mids, np.inf),
             np.exp2(np.arange(-top - 6, top + 6, 0.25)),
             np.array([2.0**top * 1.5, 2.0 ** (-top) / 3, 1e300, 1e-300])]
    rest = count // 2 - sum(len(p) for p in parts)
    parts.append(np.exp2(rng.uniform(-top - 4, top + 4, max(rest, 0))))
    x = np.concatenate(parts)
    return np.concatenate([x, -x, np.array([0.0])])


@pytest.mark.parametrize("n,count", [(8, 300_000), (16, 1_000_000), (32, 300_000)])
def test_posit_quantize_matches_softposit(n, count, rng):
    x = posit_values(n, rng, count)
    ours = F.get(f"posit{n}").quantize(x)
    ref = softposit_round(x, n)
    assert same(ours, ref), f"posit{n}: {first_difference(x, ours, ref)}"


@pytest.mark.parametrize("n", [8, 16])
def test_every_posit_encoding_decodes_as_softposit_says(n):
    codes = np.arange(2**n, dtype=np.uint64)
    ours = F.get(f"posit{n}").decode(codes)
    ref = np.array([float(sp.posit_2(x=n, bits=int(c))) if c != 2 ** (n - 1) else np.nan for c in codes])
    assert same(ours, ref)
    # encoding is the inverse on every value but NaR
    back = F.get(f"posit{n}").encode(ours[~np.isnan(ours)])
    assert np.array_equal(back, codes[~np.isnan(ours)])


def test_posit_saturates_never_zero_or_nar():
    p = F.get("posit16")
    maxpos, minpos = 2.0**56, 2.0**-56
    assert list(p.quantize([1e300, -1e300, 1e-300, -1e-300])) == [maxpos, -maxpos, minpos, -minpos]
    assert np.isnan(p.quantize([np.inf, np.nan])).all()  # NaR


# ---- MX block formats: gfloat.quantize_block ------------------------------------------------

MX_REFS = {"mxfp8_e4m3": G.format_info_mxfp8_e4m3, "mxfp8_e5m2": G.format_info_mxfp8_e5m2,
           "mxfp6_e2m3": G.format_info_mxfp6_e2m3, "mxfp6_e3m2": G.format_info_mxfp6_e3m2,
           "mxfp4": G.format_info_mxfp4_e2m1, "mxint8": G.format_info_mxint8}


@pytest.mark.parametrize("name", sorted(MX_REFS))
def test_mx_quantize_matches_gfloat_quantize_block(name, rng):
    from gfloat import compute_scale_amax, quantize_block
    bfi = MX_REFS[name]
    blocks = 2048
    scale = np.exp2(rng.integers(-130, 130, (blocks, 1)))  # scales across E8M0's whole range
    x = rng.standard_normal((blocks, 32)) * scale
    x[::7] = np.round(x[::7] * 8) / 8  # ties and exact values
    x[::11, 3] = 0.0
    x[5] = 0.0  # an all-zero block
    x[9, 0] = 2.0 ** 200  # a huge outlier: the rest of its block flushes to zero
    ours = F.get(name).quantize(x)
    ref = np.stack([quantize_block(bfi, row, compute_scale_amax) for row in x])
    assert same(ours, ref), f"{name}: {first_difference(x, ours, ref)}"


def test_mx_keeps_sign_and_saturates_elements():
    f = F.get("mxfp4")
    x = np.array([[6.5, -6.5] + [0.1] * 30])  # amax 6.5: scale 2^(2 - 2) = 1; 6.5 saturates to 6
    assert list(f.quantize(x)[0, :2]) == [6.0, -6.0]


def test_mx_encode_decode_roundtrip(rng):
    f = F.get("mxfp8_e4m3")
    x = rng.standard_normal((4, 64))
    scales, codes = f.encode(x)
    assert scales.shape == (8,) and codes.shape == x.shape
    assert same(f.decode((scales, codes)), f.quantize(x))


# ---- dot products: exact quire and per-add rounding -----------------------------------------

def exact_sum_rounded(a, b, fmt: str) -> float:
    """The exact sum of products (Fractions), rounded once to fmt by gfloat / softposit."""
    s = sum((Fraction(float(x)) * Fraction(float(y)) for x, y in zip(a, b)), Fraction(0))
    # a double holds the exact sum's leading 53 bits; rounding that double again could round
    # twice, so compare the exact sum with the two neighbouring candidates instead
    q = F.get(fmt)
    d = float(s)
    lo = q.quantize([d], rounding="rdown")[0]
    hi = q.quantize([d], rounding="rup")[0]
    if lo == hi:
        return lo
    # ties to even on the code (posits and floats alike): compare exact distances
    dl, dh = s - Fraction(lo), Fraction(hi) - s
    if dl != dh:
        return lo if dl < dh else hi
    # the even one of two neighbouring codes (sign-magnitude floats and two's complement posits:
    # the low bit of the code is the parity of the last significand bit either way)
    return lo if int(q.encode([lo])[0]) % 2 == 0 else hi


@pytest.mark.parametrize("fmt", ["posit16", "posit32", "posit8", "fp32", "bf16"])
def test_quire_dot_product_is_the_exactly_rounded_sum(fmt, rng):
    q = F.get(fmt)
    fs = F.standard()
    for trial in range(40):
        n = int(rng.integers(1, 300))
        a = q.quantize(rng.standard_normal(n) * 2.0 ** rng.integers(-20, 20, n))
        b = q.quantize(rng.standard_normal(n) * 2.0 ** rng.integers(-20, 20, n))
        if trial % 5 == 0:  # massive cancellation: the exact sum is tiny
            a = np.concatenate([a, -a[:1], a[:1]])
            b = np.concatenate([b, b[:1] * 1.0, -b[:1] * 0.5])
            a, b = q.quantize(a), q.quantize(b)
        got = fs.dot(a, b, acc=fmt, exact=True)
        assert same(np.array([got]), np.array([exact_sum_rounded(a, b, fmt)])), (fmt, trial)


def test_accumulation_rounds_after_every_add():
    # in bf16 (8 bits), 256 + 1 is a tie that rounds back to 256: adding 1.0 forty times after
    # 256 leaves 256; exactly, the sum is 296 (which bf16 holds)
    fs = F.standard()
    a = np.array([256.0] + [1.0] * 40)
    b = np.ones_like(a)
    assert fs.dot(a, b, acc="bf16") == 256.0
    assert fs.dot(a, b, acc="fp32") == 296.0
    assert fs.dot(a, b, acc="bf16", exact=True) == 296.0


def test_accumulation_matches_a_step_by_step_reference(rng):
    # reference: exact sum of (acc + a*b) with Fractions, rounded once per step by gfloat
    fi = G.format_info_bfloat16
    fs = F.standard()
    a = F.get("bf16").quantize(rng.standard_normal(500))
    b = F.get("bf16").quantize(rng.standard_normal(500))
    for mode, rnd in MODES.items():
        acc = Fraction(0)
        for x, y in zip(a, b):
            exact = acc + Fraction(float(x)) * Fraction(float(y))
            # the exact value has few enough bits to be a double here (|terms| < 2^10, 16-bit products)
            assert Fraction(float(exact)) == exact
            acc = Fraction(float(gfloat.round_float(fi, float(exact), rnd, False)))
        assert fs.dot(a, b, acc="bf16", rounding=mode) == float(acc), mode


def test_stochastic_accumulation_is_reproducible(rng):
    fs = F.standard()
    a, b = rng.standard_normal(100), rng.standard_normal(100)
    bits = rng.integers(0, 2**16, 100).astype(np.uint64)
    r1 = fs.dot(a, b, acc="bf16", rounding="stochastic", random_bits=bits)
    r2 = fs.dot(a, b, acc="bf16", rounding="stochastic", random_bits=bits)
    assert r1 == r2


# ---- threads ---------------------------------------------------------------------------------

# More than 2 * 131072 values, so set_threads(2) splits every element-wise kernel over two
# threads (in chunks handed out dynamically), and not a multiple of the 32768-value chunk.
N_THREADED = 300_001


@pytest.fixture
def threads_reset():
    yield F.set_threads
    F.set_threads(None)


def by_threads(threads_reset, fn):
    """fn() with one thread and with two (checking that two are taken), as raw bytes."""
    out = []
    for n in (1, 2):
        threads_reset(n)
        assert F.get("bf16")._m.threads_for(N_THREADED) == n
        out.append(np.ascontiguousarray(fn()).tobytes())
    return out


@pytest.mark.parametrize("name", ["bf16", "fp8_e4m3", "fp16", "fp32", "fp4_e2m1", "tf32", "cfp8_152",
                                  "posit16", "posit32", "int8", "mxfp8_e4m3", "mxint8"])
def test_results_do_not_depend_on_the_thread_count(name, threads_reset, rng):
    # every kernel, every rounding mode; stochastic rounding reads each value's own random bits
    # (given by the caller from a seed), so it is reproducible whatever the thread count
    fmt = F.get(name)
    x = rng.standard_normal(N_THREADED) * np.exp2(rng.integers(-20, 20, N_THREADED))
    x[::997] = 0.0
    if fmt.has_nan:
        x[::1009] = np.nan
    bits = np.random.default_rng(7).integers(0, 2**13, N_THREADED).astype(np.uint64)
    for mode in ["rne", "rna", "rtz", "rup", "rdown", "stochastic"]:
        def q():
            return fmt.quantize(x, rounding=mode, random_bits=bits if mode == "stochastic" else None,
                                random_width=13)
        one, two = by_threads(threads_reset, q)
        assert one == two, f"{name} {mode}"
        if fmt.kind != "mx" and hasattr(fmt._m, f"quantize32_{fmt._info.index}"):
            x32 = x.astype(np.float32)
            one, two = by_threads(threads_reset, lambda: fmt.quantize32(
                x32, rounding=mode, random_bits=bits if mode == "stochastic" else None, random_width=13))
            assert one == two, f"{name} quantize32 {mode}"
    if fmt.kind == "mx":
        one, two = by_threads(threads_reset, lambda: np.concatenate([c.ravel().astype(np.float64)
                                                                     for c in fmt.encode(x.reshape(-1, 1))]))
        assert one == two
        return
    one, two = by_threads(threads_reset, lambda: fmt.encode(x))
    assert one == two
    codes = np.frombuffer(one, dtype=np.uint64)
    one, two = by_threads(threads_reset, lambda: fmt.decode(codes))
    assert one == two and np.array_equal(np.frombuffer(one), fmt.decode(codes), equal_nan=True)
    if hasattr(fmt._m, f"encode32_{fmt._info.index}"):
        one, two = by_threads(threads_reset, lambda: fmt.encode32(x.astype(np.float32)))
        assert one == two


@pytest.mark.parametrize("name", ["bf16", "fp8_e4m3", "fp16"])
def test_two_threads_match_gfloat(name, threads_reset, rng):
    # the split kernels against the independent reference (the tests above run with the default
    # threads, which on a busy machine may be one)
    fi, sat = REFS[name]
    threads_reset(2)
    x = sample_values(name, fi, rng)
    assert x.size >= 2 * 131072
    for mode, rnd in MODES.items():
        assert same(F.get(name).quantize(x, rounding=mode), round_ndarray(fi, x, rnd, sat)), mode
    bits = rng.integers(0, 2**13, x.size).astype(np.uint64)
    xs = x[~np.isnan(x)]
    ours = F.get(name).quantize(xs, rounding="stochastic", random_bits=bits[:xs.size], random_width=13)
    assert same(ours, round_ndarray(fi, xs, RoundMode.Stochastic, sat, bits[:xs.size].astype(np.int64), 13))
    ref = encode_ndarray(fi, round_ndarray(fi, xs, RoundMode.TiesToEven, sat))
    assert np.array_equal(F.get(name).encode(xs), ref.astype(np.uint64))


@pytest.mark.parametrize("name", ["bf16", "fp8_e4m3", "fp16", "fp32", "cfp8_152"])
def test_quantize_in_place(name, rng):
    # out may be x itself: the fast path copies the values it does not round, then rounds them
    fi, sat = REFS[name]
    fmt = F.get(name)
    x = sample_values(name, fi, rng)[:300_000]
    rng.shuffle(x)
    y = x.copy()
    getattr(fmt._m, f"quantize_{fmt._info.index}")(y, y, 0, np.zeros(1, dtype=np.uint64), 0)
    ref = round_ndarray(fi, x, RoundMode.TiesToEven, sat)
    assert same(y, ref), first_difference(x, y, ref)


def test_matmul_does_not_depend_on_the_thread_count(threads_reset, rng):
    fs = F.standard()
    a = F.get("bf16").quantize(rng.standard_normal((64, 80)))
    b = F.get("bf16").quantize(rng.standard_normal((80, 64)))  # 64 * 64 * 80 >= 2 * 131072
    for exact in (False, True):
        one, two = by_threads(threads_reset, lambda: fs.matmul(a, b, acc="bf16", exact=exact))
        assert one == two
        assert np.frombuffer(one)[5 * 64 + 7] == fs.dot(a[5], b[:, 7], acc="bf16", exact=exact)


def test_thread_settings(monkeypatch, threads_reset):
    from archc.runtime.numerics import ThreadsError
    for var in ("ARCHC_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    import os
    assert F.default_threads() == (len(os.sched_getaffinity(0)), True)
    monkeypatch.setenv("OMP_NUM_THREADS", "3,2")  # one count per nesting level: the first
    assert F.default_threads() == (3, True)
    monkeypatch.setenv("ARCHC_THREADS", "5")  # archc's own setting wins, and is exact
    assert F.default_threads() == (5, False)
    threads_reset(None)
    assert F.get("bf16")._m.get_threads() == (5, False)
    threads_reset(1)
    assert F.threads() == (1, False) and F.get("fp16")._m.get_threads() == (1, False)
    assert F.get("bf16")._m.threads_for(10**7) == 1
    threads_reset(4, adapt=True)
    assert F.get("bf16")._m.get_threads() == (4, True)
    assert 1 <= F.get("bf16")._m.threads_for(10**7) <= 4
    assert F.get("bf16")._m.threads_for(1000) == 1
    for bad in ("0", "two", "-1", "1.5"):
        monkeypatch.setenv("ARCHC_THREADS", bad)
        with pytest.raises(ThreadsError, match=rf"ARCHC_THREADS='{re.escape(bad)}': a thread count is a whole number"):
            F.default_threads()
    monkeypatch.delenv("ARCHC_THREADS")
    monkeypatch.setenv("OMP_NUM_THREADS", "many")
    with pytest.raises(ThreadsError, match="OMP_NUM_THREADS='many'"):
        F.default_threads()
    monkeypatch.delenv("OMP_NUM_THREADS")
    for bad in (0, 2.0, "2", True):
        with pytest.raises(ThreadsError, match="set_threads takes a whole number"):
            F.set_threads(bad)
    assert str(ThreadsError("x")).startswith("archc: error: x")


# ---- the API's errors ------------------------------------------------------------------------

def test_api_errors():
    with pytest.raises(ValueError, match="has no NaN"):
        F.get("fp4_e2m1").quantize([np.nan])
    with pytest.raises(ValueError, match="random bits"):
        F.get("bf16").quantize([1.0], rounding="stochastic")
    with pytest.raises(ValueError, match="unknown rounding 'rnd'"):
        F.get("bf16").quantize([1.0], rounding="rnd")
    with pytest.raises(KeyError, match="did you mean 'bf16'"):
        F.get("bf61")
