"""Formats a design declares get kernels too (archc.load(path).formats[NAME]); checked against
gfloat definitions written from the same parameters, and hand calculations."""
from __future__ import annotations

import numpy as np
import pytest

gfloat = pytest.importorskip("gfloat")
from gfloat import Domain, FormatInfo, RoundMode, round_ndarray  # noqa: E402
from gfloat.block import BlockFormatInfo, compute_scale_amax, quantize_block  # noqa: E402
from gfloat.formats import format_info_ocp_e8m0  # noqa: E402

import archc  # noqa: E402

pytestmark = pytest.mark.build

DESIGN = """
import std.formats
import std.models
format my8 = float(exp = 4, man = 3, bias = 9, inf = false, nan = none, overflow = saturate)
format e5m2_ieee = float(exp = 5, man = 2)
format p12 = posit(n = 12, es = 1)
format q3_4 = fixed(int = 3, frac = 4)
format u8 = int(bits = 8, signed = false, overflow = wrap)
format mx16 = mx(elem = my8, block = 16)
tile t { clock 1 GHz; sram 1 MiB, bandwidth = 64 B/cycle; matrix my8 x my8 -> fp32 : 512 mac/cycle; vector fp32 : 16 lanes }
chip c { tiles 4 of t; noc crossbar, bandwidth = 1 TB/s; memory hbm, 8 GB, bandwidth = 1 TB/s }
run g { model gemm(64, 64, 64); on c; precision my8 }
"""
MY8 = FormatInfo("my8", 8, 4, bias=9, is_signed=True, domain=Domain.Finite, has_nz=True, num_high_nans=0,
                 has_subnormals=True, is_twos_complement=False)


@pytest.fixture(scope="module")
def design(tmp_path_factory):
    f = tmp_path_factory.mktemp("fmt") / "f.arch"
    f.write_text(DESIGN)
    return archc.load(f)


def test_declared_float_matches_gfloat(design):
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.standard_normal(100_000) * 2.0 ** rng.integers(-12, 9, 100_000), [1e9, -1e9, 0.0]])
    for mode, rnd in (("rne", RoundMode.TiesToEven), ("rtz", RoundMode.TowardZero), ("rup", RoundMode.TowardPositive)):
        assert np.array_equal(design.formats["my8"].quantize(x, rounding=mode), round_ndarray(MY8, x, rnd, True))
    assert design.formats["my8"].max == MY8.max == 120.0  # 2^(15 - 9) x 1.875


def test_declared_posit_by_hand(design):
    p = design.formats["p12"]
    # posit(12, 1): useed = 4; maxpos = 4^10 = 2^20; 1.0 = 0b010000000000; 3 = 2^1 x 1.5
    assert p.max == 2.0**20 and p.min_subnormal == 2.0**-20
    assert list(p.encode([1.0, 3.0, -1.0])) == [0b010000000000, 0b010110000000, 0b110000000000]
    # near 1 the posit has 12 - 1 - 2 - 1 = 8 fraction bits: 1 + 2^-9 is a tie, rounds to even (1.0)
    assert list(p.quantize([1 + 2.0**-9, 1 + 3 * 2.0**-9])) == [1.0, 1 + 2 * 2.0**-8]


def test_declared_fixed_and_int_by_hand(design):
    q = design.formats["q3_4"]
    # signed 3.4: steps of 1/16 over [-8, 8 - 1/16]; 1 + 1/32 is a tie to the even step 1.0
    assert list(q.quantize([1.03125, 1.09375, 100.0, -9.0])) == [1.0, 1.125, 7.9375, -8.0]
    u = design.formats["u8"]
    assert list(u.quantize([3.5, 4.5, 255.0])) == [4.0, 4.0, 255.0]
    assert list(u.quantize([257.0])) == [1.0]  # wraps modulo 256


def test_declared_mx_matches_gfloat_quantize_block(design):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((300, 16)) * np.exp2(rng.integers(-20, 20, (300, 1)))
    ref = np.stack([quantize_block(BlockFormatInfo("mx16", MY8, 16, format_info_ocp_e8m0), r,
                                   compute_scale_amax) for r in x])
    assert np.array_equal(design.formats["mx16"].quantize(x), ref)


def test_declared_formats_dot_and_std_formats_share_one_module(design):
    f = design.formats
    a = f["my8"].quantize(np.linspace(-3, 3, 33))
    assert f.dot(a, a, acc="fp32") == pytest.approx(float(np.dot(a, a)), rel=1e-6)
    assert set(["bf16", "posit16", "mxfp4"]) <= set(f)
