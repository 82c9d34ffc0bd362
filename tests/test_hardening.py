"""Issue 13's reproducers: each input here once ended in a crash, an internal error, an unsafe
file operation or a silently accepted mistake. Each must now be a located
`FILE:LINE:COL: error:` with a caret and exit 1 (or, where the issue says so, a warning)."""
from __future__ import annotations

import os
import pickle
import re
import stat

import pytest

from archc import cli
from archc.dsl import parser as parser_mod

from conftest import small_machine

MACHINE = small_machine("std.formats")
GEMM = MACHINE + """\
model g(M, N, K) {
  input a : [M, K]
  input b : [K, N]
  return matmul(a, b)
}
"""


def check(tmp_path, text: str, *extra: str, name: str = "t.arch"):
    """`archc check` in-process: (exit code, stdout, stderr)."""
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    import contextlib
    import io
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["check", str(p), *extra])
    return code, out.getvalue(), err.getvalue()


def located(err: str, line: int | None = None, col: int | None = None, source: str = r".+?") -> str:
    """Assert the first diagnostic is `SOURCE:LINE:COL: error:` with a caret; return its message."""
    assert "Traceback" not in err and "internal error" not in err, err
    lines = err.splitlines()
    m = re.match(rf"({source}):(\d+):(\d+): error: (.*)", lines[0])
    assert m, err
    if line is not None:
        assert int(m.group(2)) == line, err
    if col is not None:
        assert int(m.group(3)) == col, err
    assert len(lines) >= 3 and re.fullmatch(r"\s*\^+", lines[2]), err
    return m.group(4)


def refused(tmp_path, text: str, *extra: str, line=None, col=None) -> str:
    code, out, err = check(tmp_path, text, *extra)
    assert code == 1, (code, out, err)
    return located(err, line, col)


# ---- 1. the parser cache is never a pickle another user can write ---------------------------

@pytest.fixture
def fresh_parser(monkeypatch):
    parser_mod._parser.cache_clear()
    yield
    parser_mod._parser.cache_clear()


def test_no_parser_cache_in_a_shared_temporary_directory(tmp_path, monkeypatch, fresh_parser):
    # the cache directory cannot be created (its path runs through a regular file): parse with
    # no disk cache at all, never from a predictable name in the world-writable temp directory
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("ARCHC_CACHE_DIR", str(blocker / "cache"))
    grammar = parser_mod._grammar_text()
    assert parser_mod._cache_path(grammar) is None
    opened = []
    real_open = open

    def spy(path, *a, **k):
        opened.append(str(path))
        return real_open(path, *a, **k)
    monkeypatch.setattr("builtins.open", spy)
    parser_mod._parser()
    assert not any("pickle" in p for p in opened), opened


def test_a_planted_pickle_in_a_writable_directory_is_never_loaded(tmp_path, monkeypatch, fresh_parser):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # group- and world-writable, as /tmp is
    monkeypatch.setenv("ARCHC_CACHE_DIR", str(shared))
    assert parser_mod._cache_path(parser_mod._grammar_text()) is None
    # a private directory with a file another user could write: not loaded either
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    monkeypatch.setenv("ARCHC_CACHE_DIR", str(private))
    path = parser_mod._cache_path(parser_mod._grammar_text())
    assert path is not None and os.path.dirname(path) == str(private)
    with open(path, "wb") as f:
        pickle.dump("planted", f)
    os.chmod(path, 0o666)
    assert parser_mod._cache_path(parser_mod._grammar_text()) is None
    os.chmod(path, 0o600)  # our own file: used, and a corrupt one is parsed afresh, not fatal
    assert parser_mod._cache_path(parser_mod._grammar_text()) == path
    assert parser_mod._parser() is not None


def test_parser_cache_directory_is_created_private(tmp_path, monkeypatch, fresh_parser):
    monkeypatch.setenv("ARCHC_CACHE_DIR", str(tmp_path / "new"))
    path = parser_mod._cache_path(parser_mod._grammar_text())
    assert path is not None
    assert stat.S_IMODE(os.stat(tmp_path / "new").st_mode) & 0o077 == 0


# ---- 4. numbers beyond float64 -----------------------------------------------------------------

@pytest.mark.parametrize("digits", [309, 400, 4300, 4301, 10_000])
def test_huge_integers_are_located_errors(tmp_path, digits):
    text = MACHINE.replace("16 lanes", "1" + "0" * (digits - 1) + " lanes")
    msg = refused(tmp_path, text, line=6)
    assert ("large" in msg or "between 1 and 100000000, found 1000" in msg) and len(msg) < 200


def test_a_308_digit_integer_is_a_number_not_a_crash(tmp_path):
    text = MACHINE.replace("16 lanes", "1" + "0" * 307 + " lanes")
    msg = refused(tmp_path, text, line=6)  # a valid float, refused as an absurd vector width
    assert "lanes" in msg or "vector" in msg


@pytest.mark.parametrize("digits", [309, 5000])
def test_huge_integers_through_set(tmp_path, digits):
    text = GEMM + "run r(M = 64) {\n  model g(M, M, M)\n  on c\n  precision bf16\n}\n"
    code, out, err = check(tmp_path, text, "--run", "r", "--set", "M=1" + "0" * (digits - 1))
    assert code == 1
    located(err)
    # in the --set itself (309+ digits: not a number), or in the model with a note naming it
    assert err.startswith("<--set M>:1:3: error: the number '1000") or "`--set M=1000" in err


# ---- 5. division by zero and domain errors -----------------------------------------------------

@pytest.mark.parametrize("expr, words", [
    ("0 ** -1", "zero raised to a negative power"),
    ("0.0 ** -1.5", "zero raised to a negative power"),
    ("(-0.0) ** -1", "zero raised to a negative power"),
    ("log2(0)", "'log2' needs a positive number"),
    ("log2(-1)", "'log2' needs a positive number"),
    ("sqrt(-1)", "'sqrt' needs a number ≥ 0"),
    ("(-8) ** 0.5", "not a real number"),
])
def test_arithmetic_faults_are_located_errors(tmp_path, expr, words):
    text = MACHINE.replace("16 lanes", f"({expr}) * 16 lanes")
    assert words in refused(tmp_path, text, line=6)


@pytest.mark.parametrize("value, words", [("0**-1", "zero raised"), ("log2(0)", "'log2' needs"),
                                          ("sqrt(-1)", "'sqrt' needs")])
def test_arithmetic_faults_through_set(tmp_path, value, words):
    text = GEMM + "run r(M = 64) {\n  model g(M, M, M)\n  on c\n  precision bf16\n}\n"
    code, out, err = check(tmp_path, text, "--run", "r", "--set", f"M={value}")
    assert code == 1
    assert words in located(err, source="<--set M>")


# ---- 13. every --set error names the --set; an override that changes nothing is refused ------

RUN_LAYERS = GEMM + """\
block lin(x, d) {
  return linear(x, d, bias = false)
}
model deep(layers, d) {
  input x : [8, d]
  repeat layers {
    x = lin(x, d)
  }
  return x
}
run r(layers = 2, d = 64, spare = 1) {
  model deep(layers, d)
  on c
  precision bf16
}
"""


def test_set_of_a_name_where_a_number_is_expected_points_at_the_set(tmp_path):
    code, out, err = check(tmp_path, RUN_LAYERS, "--run", "r", "--set", "layers=abc")
    assert code == 1
    msg = located(err, 1, 8, source="<--set layers>")
    assert msg == "run 'r' takes a plain number for 'layers' (its default is 2); found the name 'abc'"
    assert "std.models" not in err and "repeat" not in err


def test_set_of_an_unused_parameter_is_refused(tmp_path):
    code, out, err = check(tmp_path, RUN_LAYERS, "--run", "r", "--set", "spare=5")
    assert code == 1
    assert located(err, 1, 1, source="<--set spare>") == (
        "run 'r' does not use its parameter 'spare': `--set spare=5` would change nothing")
    # the default itself changes nothing either, and is accepted (a sweep may set it everywhere)
    assert check(tmp_path, RUN_LAYERS, "--run", "r", "--set", "spare=1")[0] == 0


def test_an_error_a_set_value_causes_downstream_names_the_set(tmp_path):
    code, out, err = check(tmp_path, RUN_LAYERS, "--run", "r", "--set", "layers=-3")
    assert code == 1
    msg = located(err, line=23, col=10)  # the repeat in the model
    assert "positive" in msg
    assert "note: the run's parameter 'layers' is set by `--set layers=-3`" in err


# ---- 14. repeat counts; a duplicate name is reported once ----------------------------------------

def test_a_negative_repeat_count_must_be_positive(tmp_path):
    text = GEMM + "model m {\n  input x : [8, 8]\n  repeat -3 {\n    x = relu(x)\n  }\n  return x\n}\n" \
                  "run r {\n  model m\n  on c\n  precision bf16\n}\n"
    assert refused(tmp_path, text, line=20, col=10) == "a repeat count must be a positive whole number, found -3"


def test_a_duplicate_name_is_reported_once(tmp_path):
    text = GEMM + """\
model c(M) {
  input x : [M, M]
  return relu(x)
}
system c { chips 2 of c; network switch, bandwidth = 100 GB/s }
run r {
  model c(64)
  on c
  precision bf16
}
"""
    code, out, err = check(tmp_path, text)
    assert code == 1
    errors = [l for l in err.splitlines() if ": error: " in l]
    assert len(errors) == 2, err  # the model and the system, each where it is declared again
    assert all("is already declared as a chip" in l for l in errors), err


def test_a_system_of_a_refused_chip_says_nothing_more(tmp_path):
    text = MACHINE.replace("noc crossbar, bandwidth = 1 TB/s", "noc crossbar, bandwidth = 1 GHz") + \
        "system s { chips 2 of c; network switch, bandwidth = 100 GB/s }\n"
    code, out, err = check(tmp_path, text)
    assert code == 1
    errors = [l for l in err.splitlines() if ": error: " in l]
    assert len(errors) == 1 and "bandwidth" in errors[0], err


# ---- 6. a format the kernels cannot represent is refused by the checker ---------------------------

@pytest.mark.parametrize("decl, words", [
    # exponent field 2046 - bias 1 = 2^2045: beyond float64's 2^1023
    ("float(exp = 11, man = 52, bias = 1)", "with bias 1, the largest value is about 2^2045, beyond float64's "
                                            "2^1023: archc's format kernels hold every value exactly in a "
                                            "float64; raise the bias to at least 1023"),
    ("float(exp = 11, man = 52, bias = -100)", "the largest value is about 2^2146"),
    # lowest bit 2^(1 - 1200 - 10) = 2^-1209: below float64's smallest subnormal 2^-1074
    ("float(exp = 5, man = 10, bias = 1200)", "the smallest value is 2^-1209, below float64's smallest 2^-1074"),
    ("float(exp = 12, man = 3)", "'exp' = 12 is too large for a format (at most 11: archc's format kernels"),
    ("float(exp = 8, man = 53)", "'man' = 53 is too large for a format (at most 52"),
    ("posit(n = 64, es = 2)", "'n' = 64 is too large for a format (at most 32"),
    ("posit(n = 32, es = 6)", "posit(32, 6) spans 2^-1920 to 2^1920"),
    ("float(exp = 4, man = 3, overflow = wrap)", "'overflow' must be one of inf, saturate, nan; found 'wrap'"),
])
def test_formats_the_kernels_cannot_hold_are_refused(tmp_path, decl, words):
    text = f"import std.formats\nformat w = {decl}\n"
    assert words in refused(tmp_path, text, line=2)


def test_the_widest_exact_formats_still_check(tmp_path):
    text = ("format a = float(exp = 11, man = 52, bias = 1023)\nformat b = float(exp = 11, man = 10, bias = 1030)\n"
            "format c = float(exp = 5, man = 10, bias = 1065)\nformat d = posit(n = 32, es = 5)\n"
            "tile t {\n  clock 1 GHz\n  sram 1 MiB, bandwidth = 64 GB/s\n  vector a : 1 lanes\n}\n")
    code, out, err = check(tmp_path, text)
    assert code == 0, err
    from archc.api import check as api_check
    from archc.codegen.numerics import render_formats
    _, scalar, _ = render_formats(dict(api_check(tmp_path / "t.arch").formats), "t", "0")
    assert {"a", "b", "c", "d"} <= set(scalar)  # every one gets its kernel
    assert scalar["a"].max == 1.7976931348623157e308 and scalar["c"].min_subnormal == 5e-324


def test_formats_command_on_the_limits(tmp_path):
    # what once passed `check` and crashed `archc formats` / `compile --emit pyx`
    p = tmp_path / "w.arch"
    p.write_text("import std.formats\nformat w = float(exp = 11, man = 52, bias = 1)\n")
    import contextlib
    import io
    for argv in (["formats", str(p)], ["compile", str(p), "--emit", "pyx"]):
        err = io.StringIO()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            assert cli.main(argv) == 1
        located(err.getvalue(), line=2)


# ---- 11. formats defined in terms of themselves ------------------------------------------------------

def test_an_mx_format_of_itself_is_a_cycle(tmp_path):
    text = "import std.formats\nformat uf = mx(elem = uf, block = 16)\n"
    assert refused(tmp_path, text, line=2, col=8) == "format 'uf' is defined in terms of itself: uf -> uf"


def test_mutually_recursive_formats_are_one_error(tmp_path):
    text = "import std.formats\nformat a = mx(elem = b)\nformat b = mx(elem = a)\nformat c = mx(elem = a)\n"
    code, out, err = check(tmp_path, text)
    assert code == 1
    errors = [l for l in err.splitlines() if ": error: " in l]
    assert len(errors) == 1 and errors[0].endswith("format 'a' is defined in terms of itself: a -> b -> a"), err


def test_an_mx_format_may_name_a_format_declared_after_it(tmp_path):
    # declaration order does not matter: an MX of an MX is refused for what it is, not dropped
    text = "import std.formats\nformat m = mx(elem = n)\nformat n = mx(elem = fp8_e4m3)\n"
    assert refused(tmp_path, text, line=2) == "an MX element must be a float, int or fixed format; 'n' is a mx"
    text = "import std.formats\nformat m = mx(elem = e)\nformat e = float(exp = 4, man = 3)\n"
    assert check(tmp_path, text)[0] == 0


# ---- 7. every whole number written into generated code fits its C type ---------------------------

def test_a_wave_block_beyond_a_c_int_is_refused(tmp_path):
    text = MACHINE.replace("  memory hbm,", "  wave 2**31 x 2**32\n  memory hbm,")
    code, out, err = check(tmp_path, text)
    assert code == 1
    assert "a wave block height must be at most 65,536, found 2,147,483,648" in located(err, line=11)
    assert "a wave block width must be at most 65,536, found 4,294,967,296" in err


def test_nested_systems_beyond_the_chip_limit_are_refused(tmp_path):
    text = MACHINE + ("system a { chips 10000 x 10000 of c; network switch, bandwidth = 1 GB/s }\n"
                      "system b { systems 2 of a; network switch, bandwidth = 1 GB/s }\n")
    msg = refused(tmp_path, text, line=14)
    assert msg == "system 'b' holds 200,000,000 chips; archc accepts up to 100,000,000 chips in a machine"


def test_render_refuses_a_constant_beyond_its_c_type():
    from archc.codegen.render import c_int
    assert c_int(65536, "wave M") == 65536
    with pytest.raises(AssertionError, match="does not fit a C int"):
        c_int(2**31, "wave M")


# ---- 12. quantities outside any plausible machine ------------------------------------------------

@pytest.mark.parametrize("old, new, words", [
    ("clock 1 GHz", "clock 1e-300 Hz", "a clock must be between 1 MHz and 100 GHz, found 1e-300 Hz"),
    ("clock 1 GHz", "clock 1 GHz % 3", "a clock must be between 1 MHz and 100 GHz, found 1 GHz % 3"),
    ("clock 1 GHz", "clock 1e300 GHz", "'1e300 GHz' is too large: archc computes in double precision"),
    ("clock 1 GHz", "clock 1e100 GHz", "a clock must be between 1 MHz and 100 GHz, found 1e100 GHz"),
    ("256 mac/cycle", "1e-300 mac/cycle", "a matrix throughput must be between 0.001 GFLOPS and 10000 PFLOPS, "
                                          "found 1e-300 mac/cycle"),
    ("sram 1 MiB", "sram 1e-3 B", "an SRAM size must be between 1 B and 1 TB, found 1e-3 B"),
    ("bandwidth = 64 GB/s", "bandwidth = 1e25 GB/s", "an SRAM bandwidth must be between"),
    ("16 GB, bandwidth", "1e30 GB, bandwidth", "a memory capacity must be between 1 kB and 1e+09 TB"),
])
def test_implausible_quantities_quote_their_range(tmp_path, old, new, words):
    text = MACHINE.replace(old, new, 1)
    assert words in refused(tmp_path, text)


def test_every_sample_is_within_the_ranges():
    from pathlib import Path

    from archc.api import check as api_check
    for f in sorted(Path(__file__).resolve().parent.parent.joinpath("samples").glob("*.arch")):
        api_check(f)  # raises on any refused figure


# ---- 10. units: only the documented spellings; sizes in bits are said to be bits ----------------

@pytest.mark.parametrize("unit, words", [
    ("kb", "unknown unit 'kb'; did you mean 'kB' (bytes) or 'KB' (bytes) or 'Kb' (bits)?"),
    ("Kib", "unknown unit 'Kib'; did you mean 'KiB'?"),
    ("mb", "unknown unit 'mb'; did you mean 'MB' (bytes) or 'Mb' (bits)?"),
    ("bytes", "unknown unit 'bytes'; did you mean 'B'?"),
    ("byte", "unknown unit 'byte'; did you mean 'B'?"),
    ("bits", "unknown unit 'bits'; did you mean 'bit'?"),
])
def test_undocumented_unit_spellings_are_refused_with_the_intended_unit(tmp_path, unit, words):
    text = MACHINE.replace("sram 1 MiB", f"sram 48 {unit}")
    assert refused(tmp_path, text, line=4, col=8) == words


def test_a_capacity_in_bits_is_a_warning_with_the_fix(tmp_path):
    code, out, err = check(tmp_path, MACHINE.replace("sram 1 MiB", "sram 48 Kb"))
    assert code == 0
    assert err.splitlines()[0].endswith(":4:8: warning: an SRAM size in bits: 48 Kb is 6 kB; for bytes write 48 KB")
    assert err.splitlines()[2].strip() == "^^^^^"
    assert "ok" in out


def test_the_documented_units_are_exactly_the_table():
    """docs/language.md's unit table lists every size unit archc accepts, and no other."""
    from pathlib import Path

    from archc.dsl import units as U
    doc = Path(__file__).resolve().parent.parent.joinpath("docs", "language.md").read_text()
    row = next(line for line in doc.splitlines() if line.startswith("| size |"))
    documented = set(row.split("`")[1].split())
    accepted = {u for u, (_, d) in U.UNITS.items() if d == U.BYTES}
    assert documented == accepted


# ---- 15. an op with nowhere to run -----------------------------------------------------------------

def test_vector_work_on_a_tile_without_a_vector_unit_is_refused(tmp_path):
    text = GEMM.replace("  vector fp32 : 16 lanes\n", "") + """\
model act(n) {
  input x : [n, n]
  y = softmax(x)
  return gelu(y)
}
run r {
  model act(4096)
  on c
  precision bf16
}
"""
    msg = refused(tmp_path, text, line=19, col=7)
    assert msg == ("op 'y' (softmax) does vector work but tile 't' has no vector unit; add one, e.g. "
                   "`vector fp32 : 16 lanes`")


def test_a_gemm_needs_no_vector_unit_but_training_does(tmp_path):
    base = GEMM.replace("  vector fp32 : 16 lanes\n", "")
    infer = base + "run r {\n  model g(64, 64, 64)\n  on c\n  precision bf16\n}\n"
    assert check(tmp_path, infer)[0] == 0
    train = infer.replace("  precision bf16\n", "  precision bf16\n  mode train\n")
    assert "training runs the adam optimizer's update on the vector unit" in refused(tmp_path, train)


def test_every_op_class_the_models_make_is_lowered():
    """Each class an op of the registry (dsl/ops.py) can have is one the lowering numbers (an
    unknown one is a bug, refused in codegen/lower.py, never costed as elementwise): the specs'
    classes and any class a rule sets on its output (Out(shape, "view"))."""
    import ast as pyast
    from pathlib import Path

    from archc.dsl.ops import OPS
    from archc.dsl.vocab import OpClass
    CLASSES = OpClass.words()
    src = Path(__file__).resolve().parent.parent.joinpath("dsl", "ops.py").read_text()
    made = {n.args[1].value for n in pyast.walk(pyast.parse(src)) if isinstance(n, pyast.Call)
            and getattr(n.func, "id", "") == "Out" and len(n.args) > 1 and isinstance(n.args[1], pyast.Constant)}
    assert "view" in made
    made |= {spec.cls for spec in OPS.values()}
    assert made - {"view", None} <= set(CLASSES), made - set(CLASSES)


# ---- 16. every declaration is checked, used by a run or not -------------------------------------

def test_a_model_no_run_uses_is_checked(tmp_path):
    text = MACHINE + "model m(n) {\n  input x : [n, n]\n  return zqxjv(x)\n}\n"
    assert refused(tmp_path, text, line=15, col=10) == "unknown op or block 'zqxjv'"


@pytest.mark.parametrize("body, words, line", [
    ("  input x : [n, n]\n  return relu(y)\n", "unknown name 'y' in model 'm'", 15),
    ("  input x : [n, n]\n  return linear(x, 8, biass = false)\n", "op 'linear' has no argument 'biass'; "
                                                                      "did you mean 'bias'?", 15),
    ("  input x : [n, n]\n  loop 3 {\n  }\n  return x\n", "unknown statement 'loop' in a model", 15),
])
def test_unused_models_are_checked_statically(tmp_path, body, words, line):
    text = MACHINE + "model m(n) {\n" + body + "}\n"
    msg = refused(tmp_path, text, line=line)
    assert msg.startswith(words), msg


def test_an_unused_model_with_defaults_is_built(tmp_path):
    text = MACHINE + "model m(n = 8) {\n  input x : [n, n]\n  input y : [3, n]\n  return matmul(x, y)\n}\n"
    assert "matmul shapes do not agree" in refused(tmp_path, text, line=16)


def test_an_unused_block_is_checked(tmp_path):
    text = MACHINE + "block b(x) {\n  return zqxjv(x)\n}\n"
    assert refused(tmp_path, text, line=14) == "unknown op or block 'zqxjv'"


# ---- 3. user strings reach the terminal without escapes --------------------------------------------

def test_terminal_escapes_in_user_strings_are_neutralised(tmp_path):
    from conftest import run_cli
    esc = "\x1b[2J\r\x9b31m\u202e"
    p = tmp_path / "esc.arch"
    p.write_text(GEMM + f'run r {{\n  model g(64, 64, 64)\n  on c\n  precision bf16\n'
                        f'  throughput 1, "items{esc}/s"\n}}\n', encoding="utf-8")
    r = run_cli("run", p, "--run", "r")
    assert r.code == 0, r
    assert "items\ufffd[2J\ufffd\ufffd31m\ufffd/s" in r.stdout
    bad = tmp_path / "bad.arch"
    bad.write_text(f"import std.formats{esc}x\n", encoding="utf-8")
    r = run_cli("check", bad)
    assert r.code == 1
    for text in (r.stdout, r.stderr):
        assert not any(ch in text for ch in "\x1b\r\x9b\u202e"), repr(text)
