"""Diagnostics: one table per error class, each row a source snippet and the FULL diagnostic it
must produce: `FILE:LINE:COL: error: MESSAGE`, the source line, a caret line under the culprit,
and any notes (each rendered the same way). Rows name the culprit by the text the caret must
underline (`at`), so the expected column and width are derived from the snippet itself."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from archc.api import check
from archc.dsl.check import DECL_KINDS
from archc.dsl.diagnostics import ArchcError
from archc.dsl.runs import RUN_SCHEMA

from conftest import run_cli, small_machine

# A small valid machine most semantic rows build on: 13 lines.
PRE = small_machine("std.formats", "std.blocks")
P = PRE.count("\n")  # lines before a snippet that uses PRE
assert P == 13


@dataclass(frozen=True)
class Note:
    line: int
    at: str | None
    message: str
    col: int | None = None
    width: int | None = None


@dataclass(frozen=True)
class Row:
    src: str
    message: str
    line: int
    at: str | None = None  # the text the caret underlines (first occurrence on the line)
    col: int | None = None  # or an explicit column ...
    width: int | None = None  # ... and caret width (default: len(at), or 1)
    pre: bool = False  # prepend PRE (then `line` counts from the top of the whole file)
    notes: tuple[Note, ...] = field(default=())

    @property
    def text(self) -> str:
        return (PRE if self.pre else "") + self.src


def R(id, src, message, line, at=None, *, col=None, width=None, pre=False, notes=()):
    return pytest.param(Row(src, message, line, at, col, width, pre, tuple(notes)), id=id)


def block(path: str, text: str, severity: str, message: str, line: int, at, col, width) -> str:
    """The expected rendering of one diagnostic (no tabs in these snippets)."""
    src_line = text.splitlines()[line - 1]
    if col is None:
        assert at is not None and at in src_line, (at, src_line)
        col = src_line.index(at) + 1
    if width is None:
        width = len(at) if at else 1
    # control characters would garble a terminal: archc shows them as U+FFFD
    shown = "".join(ch if ch.isprintable() or ch == "\t" else "\ufffd" for ch in src_line)
    return f"{path}:{line}:{col}: {severity}: {message}\n    {shown}\n    {' ' * (col - 1)}{'^' * width}"


def expected(path: str, row: Row) -> str:
    out = [block(path, row.text, "error", row.message, row.line, row.at, row.col, row.width)]
    for n in row.notes:
        out.append(block(path, row.text, "note", n.message, n.line, n.at, n.col, n.width))
    return "\n".join(out)


def write(tmp_path: Path, text: str, name: str = "design.arch") -> str:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return str(p)


def rendered_error(path, *args, **kwargs) -> str:
    with pytest.raises(ArchcError) as info:
        check(path, *args, **kwargs)
    text = info.value.render()
    assert "Traceback" not in text
    return text


def assert_row(tmp_path, row: Row):
    path = write(tmp_path, row.text)
    assert rendered_error(path) == expected(path, row)


# ---- syntax --------------------------------------------------------------------------------

SYNTAX = [
    # every human label of dsl/parser.py `_label`
    R("number-followed-by-name", "tile t {\n  clock 2 _ghz\n}\n",
      "a number is followed by name '_ghz'; separate values with ','", 2, "_ghz"),
    R("missing-comma-between-values", "tile t {\n  sram 1 MiB bandwidth = 64 GB/s\n}\n",
      "unexpected name 'bandwidth'; separate values with ',' and statements with a new line or ';'",
      2, "bandwidth"),
    R("missing-comma-in-list", "model m(n) {\n  input a : [n 4]\n  return a\n}\n",
      "unexpected number '4'; separate values with ','", 2, "4"),
    R("value-missing-before-paren", "tile t {\n  clock (1 + ) GHz\n}\n",
      "a value is missing before ')'", 2, ")"),
    R("value-missing-before-comma", "tile t {\n  sram 1 MiB, , bandwidth = 1 GB/s\n}\n",
      "a value is missing before ','", 2, col=15),  # the second comma
    R("brace-closes-open-paren", "tile t { clock (1 GHz }\n",
      "'}' closes a block while a '(' is still open; add ')'", 1, "}"),
    R("brace-closes-open-bracket", "model m(n) { input a : [n, 4 }\n",
      "'}' closes a block while a '[' is still open; add ']'", 1, "}"),
    R("equals-after-a-call", "tile t {\n  f(x) = 3\n}\n",
      "'=' must follow a single name (`name = value`)", 2, "="),
    R("unmatched-paren", "tile t {\n  clock 1 GHz)\n}\n", "unmatched ')'", 2, ")"),
    R("unmatched-bracket", "tile t {\n  clock 1 GHz]\n}\n", "unmatched ']'", 2, "]"),
    R("unmatched-brace", "tile t { clock 1 GHz }\n}\n", "unmatched '}'", 2, "}"),
    R("brace-on-next-line", "tile t\n{ clock 1 GHz }\n",
      "a '{' block must follow a declaration's name or arguments on the same line", 2, "{"),
    R("statement-starts-with-number", "tile t {\n  1 GHz\n}\n",
      "unexpected number '1'; a statement starts with a name", 2, "1"),
    # the fallback: what came and what was expected
    R("generic-unexpected-token", "tile t { clock (1, 2) }\n", "unexpected ','; expected ')'", 1, ","),
    # tokens
    R("unterminated-string", 'run r {\n  throughput 1, "items/s\n}\n',
      "unterminated string: a string ends with '\"' on the same line", 2, '"'),
    R("newline-inside-string", 'run r {\n  throughput 1, "items\n  per second"\n}\n',
      "unterminated string: a string ends with '\"' on the same line", 2, '"'),
    R("unterminated-comment", "tile t { clock 1 GHz }\n/* never closed\n",
      "unterminated comment: '/*' has no matching '*/'", 2, "/"),
    R("unexpected-character", "tile t { clock 1 GHz @ 2 }\n", "unexpected character '@'", 1, "@"),
    R("unexpected-control-character", "tile t { clock 1 GHz \x07 }\n",
      "unexpected character U+0007", 1, "\x07"),
    R("unclosed-brace-at-eof", "tile t {\n  clock 1 GHz\n",
      "unexpected end of file: a '{', '(' or '[' is not closed", 2, col=14),
    R("unclosed-paren-at-eof", "model m(n,\n",
      "unexpected end of file: a '{', '(' or '[' is not closed", 1, col=11),
    # the tile's '{' and 100 nested '[', one per line: the 100th '[' (on line 101) is the
    # 101st open bracket and is refused where it opens
    R("nesting-too-deep", "tile t {\n  x " + "[\n" * 100 + "1" + "]" * 100 + "\n}\n",
      "brackets nest deeper than 100 levels", 101, "["),
]


@pytest.mark.parametrize("row", SYNTAX)
def test_syntax_errors(tmp_path, row):
    assert_row(tmp_path, row)


def test_eof_after_an_operator_is_not_blamed_on_brackets(tmp_path):
    # Nothing is open here: the value after '*' is missing, which is what the message must say.
    path = write(tmp_path, "tile t {\n  clock 1 GHz\n}\nformat f = float(exp = 4, man = 3) *\n")
    text = rendered_error(path)
    assert text.startswith(f"{path}:4:"), text
    assert "is not closed" not in text, text


# ---- unknown names -------------------------------------------------------------------------

MODEL = """\
model m(n) {
  input a : [n, 4]
  return relu(a)
}
"""

UNKNOWN = [
    R("unknown-declaration-kind", "tyle t {\n  clock 1 GHz\n}\n",
      f"unknown declaration 'tyle'; expected one of {', '.join(DECL_KINDS)}; did you mean 'tile'?",
      1, "tyle"),
    R("unknown-format-in-matrix-unit",
      "tile u {\n  clock 1 GHz\n  sram 1 MiB, bandwidth = 64 GB/s\n  matrix bf17 x bf16 -> fp32 : 256 mac/cycle\n"
      "  vector fp32 : 16 lanes\n}\n",
      "unknown format 'bf17'; did you mean 'bf16'?", P + 4, "bf17", pre=True),
    R("unknown-tile-in-chip", "chip d {\n  tiles 4 of tt\n  noc crossbar, bandwidth = 1 TB/s\n}\n",
      "unknown tile 'tt'; did you mean 't'?", P + 2, "tt", pre=True),
    R("unknown-chip-in-system", "system s {\n  chips 8 of cc\n  network switch, bandwidth = 1 GB/s\n}\n",
      "unknown chip 'cc'; did you mean 'c'?", P + 2, "cc", pre=True),
    R("unknown-op-in-model",
      "model m(n) {\n  input a : [n, 4]\n  return reluu(a)\n}\nrun r {\n  model m(8)\n  on c\n  precision bf16\n}\n",
      "unknown op or block 'reluu'; did you mean 'relu'?", P + 3, "reluu", pre=True,
      notes=[Note(P + 6, "m(8)", "in model 'm' as instantiated here")]),
    R("unknown-block-in-model",
      "model m(n) {\n  input a : [n, 4]\n  return mlpp(a, 8)\n}\nrun r {\n  model m(8)\n  on c\n  precision bf16\n}\n",
      "unknown op or block 'mlpp'; did you mean 'mlp'?", P + 3, "mlpp", pre=True,
      notes=[Note(P + 6, "m(8)", "in model 'm' as instantiated here")]),
    R("unknown-run-property",
      MODEL + "run r {\n  model m(8)\n  on c\n  precision bf16\n  speed 3\n}\n",
      f"unknown property 'speed' in a run; a run has {', '.join(RUN_SCHEMA)}", P + 9, "speed", pre=True),
    R("unknown-model", MODEL + "run r {\n  model mm(8)\n  on c\n  precision bf16\n}\n",
      "unknown model 'mm'; did you mean 'm'?", P + 6, "mm", pre=True),
    R("unknown-machine-in-run", MODEL + "run r {\n  model m(8)\n  on cc\n  precision bf16\n}\n",
      "'on' names a chip or system; 'cc' is not one; did you mean 'c'?", P + 7, "cc", pre=True),
    R("unknown-precision-format", MODEL + "run r {\n  model m(8)\n  on c\n  precision bf61\n}\n",
      "unknown format 'bf61'; did you mean 'bf16'?", P + 8, "bf61", pre=True),
]


@pytest.mark.parametrize("row", UNKNOWN)
def test_unknown_names(tmp_path, row):
    assert_row(tmp_path, row)


# ---- duplicates ----------------------------------------------------------------------------

TILE_U = "tile t {\n  clock 2 GHz\n  sram 1 MiB, bandwidth = 64 GB/s\n  vector fp32 : 16 lanes\n}\n"

DUPLICATES = [
    R("duplicate-tile", TILE_U, "'t' is already declared as a tile", P + 1, col=6, pre=True,
      notes=[Note(3, None, "'t' was first declared here", col=6)]),
    R("duplicate-name-across-kinds",
      "block f(x) {\n  return relu(x)\n}\nmodel f(n) {\n  input a : [n]\n  return a\n}\n",
      "'f' is already declared as a block", 4, "f", notes=[Note(1, "f", "'f' was first declared here")]),
    R("property-given-twice",
      "tile u {\n  clock 1 GHz\n  sram 1 MiB, bandwidth = 64 GB/s\n  clock 2 GHz\n  vector fp32 : 16 lanes\n}\n",
      "'clock' is given twice", P + 4, "clock", pre=True,
      notes=[Note(P + 2, "clock 1 GHz", "first given here")]),
]


@pytest.mark.parametrize("row", DUPLICATES)
def test_duplicates(tmp_path, row):
    assert_row(tmp_path, row)


def test_duplicate_of_a_standard_library_name_points_into_the_library(tmp_path):
    path = write(tmp_path, PRE + "chip fp32 {\n  tiles 4 of t\n  noc crossbar, bandwidth = 1 TB/s\n}\n")
    text = rendered_error(path)
    lines = text.splitlines()
    assert lines[0] == f"{path}:{P + 1}:6: error: 'fp32' is already declared as a format"
    note = next(i for i, ln in enumerate(lines) if ": note: " in ln)
    assert re.fullmatch(r"<std\.formats>:\d+:\d+: note: 'fp32' was first declared here", lines[note])
    assert "format fp32 = float(" in lines[note + 1]
    # the caret starts under the name the note is about
    assert lines[note + 2].index("^") == lines[note + 1].index("fp32")


# ---- units ---------------------------------------------------------------------------------

def tile(*body: str, name="u") -> str:
    return f"tile {name} {{\n" + "".join(f"  {b}\n" for b in body) + "}\n"


UNITS = [
    # the B/cycle bandwidth needs the clock: a bad clock must not cause a second error there
    R("clock-given-a-bandwidth",
      tile("clock 400 GB/s", "sram 1 MiB, bandwidth = 64 B/cycle", "vector fp32 : 16 lanes"),
      "a clock must be a frequency (GHz), found a bandwidth (GB/s)", P + 2, "400 GB/s", pre=True),
    R("unknown-unit-with-hint", tile("clock 2 Ghz", "sram 1 MiB, bandwidth = 64 GB/s", "vector fp32 : 16 lanes"),
      "unknown unit 'Ghz'; did you mean 'GHz'?", P + 2, "2 Ghz", pre=True),
    R("capacity-given-a-bandwidth",
      "chip d {\n  tiles 4 of t\n  noc crossbar, bandwidth = 1 TB/s\n  memory hbm, 16 GB/s, bandwidth = 1 TB/s\n}\n",
      "a memory capacity must be a size (MiB), found a bandwidth (GB/s)", P + 4, "16 GB/s", pre=True),
    R("latency-given-a-size",
      "chip d {\n  tiles 4 of t\n  noc crossbar, bandwidth = 1 TB/s, latency = 5 MB\n}\n",
      "a latency must be a time (ns), found a size (MiB)", P + 3, "5 MB", pre=True),
]


@pytest.mark.parametrize("row", UNITS)
def test_wrong_units(tmp_path, row):
    assert_row(tmp_path, row)


# ---- impossible values -----------------------------------------------------------------------

VALUES = [
    R("zero-sram", tile("clock 1 GHz", "sram 0 MiB, bandwidth = 64 GB/s", "vector fp32 : 16 lanes"),
      "an SRAM size must be positive, found 0 MiB", P + 3, "0 MiB", pre=True),
    R("zero-clock", tile("clock 0 GHz", "sram 1 MiB, bandwidth = 64 GB/s", "vector fp32 : 16 lanes"),
      "a clock must be positive, found 0 GHz", P + 2, "0 GHz", pre=True),
    R("negative-tile-count", "chip d {\n  tiles -4 of t\n  noc crossbar, bandwidth = 1 TB/s\n}\n",
      "a count must be at least 1, found -4", P + 2, "-4", pre=True),
    R("fractional-grid", "chip d {\n  grid 18.5 x 20 of t\n  noc mesh, link = 64 GB/s\n}\n",
      "a row count must be a whole number, found 18.5", P + 2, "18.5", pre=True),
    R("efficiency-above-one",
      "chip d {\n  tiles 4 of t\n  noc crossbar, bandwidth = 1 TB/s\n  efficiency matmul = 1.5\n}\n",
      "the efficiency of matmul must be a fraction in (0, 1], found 1.5", P + 4, "1.5", pre=True),
    R("zero-model-dimension", MODEL + "run r {\n  model m(0)\n  on c\n  precision bf16\n}\n",
      "a dimension must be positive, found 0", P + 2, "n, 4]", width=1, pre=True,
      notes=[Note(P + 6, "m(0)", "in model 'm' as instantiated here")]),
]


@pytest.mark.parametrize("row", VALUES)
def test_impossible_values(tmp_path, row):
    assert_row(tmp_path, row)


def test_negative_size_is_shown_in_the_unit_written(tmp_path):
    # "found -1.04858e+06" would be the value in bytes with no unit: the user wrote -1 MiB.
    path = write(tmp_path, PRE + tile("clock 1 GHz", "sram -1 MiB, bandwidth = 64 GB/s", "vector fp32 : 16 lanes"))
    text = rendered_error(path)
    first = text.splitlines()[0]
    assert first.startswith(f"{path}:{P + 3}:8: error: an SRAM size must be positive, found "), text
    assert re.search(r"found (-1 MiB|-1\.04858e\+06 B\b|-1048576 B\b)", first), first


# ---- formats that cannot exist ---------------------------------------------------------------

FORMATS = [
    R("posit-es-too-large", "format p = posit(n = 8, es = 7)\n",
      "posit(8, 7): es must be at most n - 2 = 6", 1, "posit(n = 8, es = 7)"),
    R("float-exp-zero", "format f = float(exp = 0, man = 3)\n", "'exp' must be at least 1, found 0", 1, "0"),
    R("float-exp-too-wide", "format f = float(exp = 16, man = 3)\n",
      "'exp' = 16 is too large for a format (at most 11: archc's format kernels hold every value exactly in a float64)", 1, "16"),
    R("overflow-inf-without-inf", "format f = float(exp = 4, man = 3, inf = false, overflow = inf)\n",
      "overflow = inf needs a format with infinities (inf = true); use overflow = saturate or nan", 1,
      "float(exp = 4, man = 3, inf = false, overflow = inf)"),
    R("int-zero-bits", "format i = int(bits = 0)\n", "'bits' must be at least 1, found 0", 1, "0"),
    R("mx-of-a-posit", "format m = mx(elem = posit8, block = 32, scale = e8m0)\n",
      "an MX element must be a float, int or fixed format; 'posit8' is a posit", P + 1, "posit8", pre=True),
    R("unknown-format-kind", "format f = floating(exp = 4, man = 3)\n",
      "a format is `float(exp, man, ...)`, `posit(n, es)`, `int(bits)`, `fixed(int, frac)` or "
      "`mx(elem, block, scale)`", 1, "floating(exp = 4, man = 3)"),
]


@pytest.mark.parametrize("row", FORMATS)
def test_impossible_formats(tmp_path, row):
    assert_row(tmp_path, row)


# ---- shapes in models ------------------------------------------------------------------------

def model_run(*body: str, args="8", params="n") -> str:
    """A model `m(params)` with `body`, and a run r instantiating it on chip c (after PRE)."""
    return (f"model m({params}) {{\n" + "".join(f"  {b}\n" for b in body) + "}\n"
            f"run r {{\n  model m({args})\n  on c\n  precision bf16\n}}\n")


def instantiated(body_lines: int, args="8") -> list[Note]:
    # the run's `model m(...)` line: PRE, `model m {`, the body, `}`, `run r {`, then it
    return [Note(P + body_lines + 4, f"m({args})", "in model 'm' as instantiated here")]


SHAPES = [
    R("matmul-inner-dims", model_run("input a : [n, 4]", "input b : [5, 3]", "return matmul(a, b)"),
      "matmul shapes do not agree: [8, 4] x [5, 3] (inner dimensions 4 and 5)", P + 4, "matmul(a, b)",
      pre=True, notes=instantiated(3)),
    R("broadcast-failure", model_run("input a : [n, 4]", "input b : [3, 4]", "return a + b"),
      "shapes [8, 4] and [3, 4] do not broadcast (dimension -2: 8 vs 3)", P + 4, "a + b",
      pre=True, notes=instantiated(3)),
    R("heads-do-not-divide-width", model_run("input x : [2, n, 100]", "return attention(x, x, x, heads = 3)"),
      "attention: 3 heads do not divide the model width 100", P + 3, "attention(x, x, x, heads = 3)",
      pre=True, notes=instantiated(2)),
    R("repeat-changes-shape", model_run("input x : [n, 4]", "repeat 3 {", "  x = linear(x, 8)", "}", "return x"),
      "the repeated block changes the shape of 'x' from [8, 4] to [8, 8]; a repeat must keep shapes",
      P + 3, "repeat 3 {", pre=True, notes=instantiated(5)),
    R("reshape-element-count", model_run("input x : [n, 4]", "return reshape(x, [3, 11])"),
      "cannot reshape [8, 4] (32 elements) to [3, 11] (33 elements)", P + 3, "reshape(x, [3, 11])",
      pre=True, notes=instantiated(2)),
    R("conv-kernel-larger-than-image",
      model_run("input x : [n, 3, 4, 4]", "return conv2d(x, 8, kernel = 7, padding = 0)"),
      "conv2d: a kernel of 7 with padding 0 does not fit an input of 4", P + 3,
      "conv2d(x, 8, kernel = 7, padding = 0)", pre=True, notes=instantiated(2)),
]


@pytest.mark.parametrize("row", SHAPES)
def test_shape_mismatches(tmp_path, row):
    assert_row(tmp_path, row)


# ---- mappings that do not fit ----------------------------------------------------------------

def _fit_numbers(text: str):
    m = re.search(r"each chip needs ([\d.]+) (MB|GB) \((.*)\) but has ([\d.]+) (MB|GB) of (.*?); "
                  r"([\d.]+) (MB|GB) too much", text)
    assert m, text
    scale = {"MB": 1e6, "GB": 1e9}
    need = float(m.group(1)) * scale[m.group(2)]
    have = float(m.group(4)) * scale[m.group(5)]
    over = float(m.group(7)) * scale[m.group(8)]
    return need, have, over, m.group(3), m.group(6)


def test_mapping_that_does_not_fit_in_hbm_says_by_how_much(tmp_path):
    # one linear layer of 100,000 x 100,000 bf16 weights: 2e10 B = 20 GB, on a chip with 16 GB
    path = write(tmp_path, PRE + model_run("input x : [n, n]", "return linear(x, n)", args="100000"))
    text = rendered_error(path)
    first = text.splitlines()[0]
    assert first.startswith(f"{path}:{P + 5}:5: error: run 'r' does not fit: each chip needs "), text
    need, have, over, parts, where = _fit_numbers(first)
    assert "weights 20 GB" in parts
    assert have == 16e9 and "hbm" in where
    assert need > 20e9
    assert over == pytest.approx(need - have, rel=0.01, abs=0.01e9)


def test_mapping_that_does_not_fit_in_sram_says_by_how_much(tmp_path):
    # spatial: weights resident in SRAM. 4000 x 4000 bf16 = 32 MB against 4 tiles x 1 MiB.
    src = PRE + model_run("input x : [n, n]", "return linear(x, n)", args="4000")
    src = src.replace("  precision bf16\n}", "  precision bf16\n  strategy spatial\n}")
    path = write(tmp_path, src)
    first = rendered_error(path).splitlines()[0]
    assert f"{path}:{P + 5}:5: error: run 'r' does not fit: " in first
    need, have, over, parts, where = _fit_numbers(first)
    assert "weights 32 MB" in parts
    assert have == pytest.approx(4 * 2**20, rel=0.005)
    assert "SRAM" in where
    assert over == pytest.approx(need - have, rel=0.01)


def test_too_many_chips_for_the_machine(tmp_path):
    src = PRE + model_run("input x : [n, 4]", "return relu(x)")
    src = src.replace("  precision bf16\n}", "  precision bf16\n  strategy data, chips = 4\n}")
    path = write(tmp_path, src)
    text = rendered_error(path)
    assert text.splitlines()[0] == f"{path}:{P + 9}:3: error: run 'r' needs 4 chips but 'c' has 1; 3 too many"


# ---- absurd sizes ----------------------------------------------------------------------------

ABSURD = [
    R("tensor-beyond-2-53", model_run("input x : [n, n, n]", "return relu(x)", args="300000"),
      "a tensor of shape [300000, 300000, 300000] has 2.7e+16 elements; archc accepts at most 2^53",
      P + 2, "input x : [n, n, n]", pre=True, notes=instantiated(2, "300000")),
    R("repeat-count-absurd", model_run("input x : [n, 4]", "repeat 1e20 { x = relu(x) }", "return x"),
      "repeat count 100000000000000000000 is absurdly large", P + 3, "1e20", pre=True,
      notes=instantiated(3)),
    R("grid-absurd", "chip d {\n  grid 1e9 x 1e9 of t\n  noc mesh, link = 64 GB/s\n}\n",
      "1,000,000,000,000,000,000 members is absurdly many; archc accepts up to 100,000,000 tiles "
      "per chip or members per system", P + 2, "1e9 x 1e9", pre=True),
    R("tile-count-absurd", "chip d {\n  tiles 1e20 of t\n  noc crossbar, bandwidth = 1 TB/s\n}\n",
      "a count of 1e+20 is absurdly large", P + 2, "1e20", pre=True),
    R("number-overflows", tile("clock 1e999 GHz", "sram 1 MiB, bandwidth = 64 GB/s", "vector fp32 : 16 lanes"),
      "the number '1e999' is too large: archc computes in double precision, up to about 1.8e308", P + 2, "1e999 GHz", pre=True),
]


@pytest.mark.parametrize("row", ABSURD)
def test_absurd_sizes(tmp_path, row):
    assert_row(tmp_path, row)


# ---- --set -----------------------------------------------------------------------------------

SET_DESIGN = PRE + """\
model g(M, K) {
  input a : [M, K]
  input b : [K, M]
  return matmul(a, b)
}
run r(M = 64, K = 32, dtype = bf16) {
  model g(M, K)
  on c
  precision dtype
}
"""
SET_PRECISION_LINE = P + 9


@pytest.fixture
def set_design(tmp_path):
    return write(tmp_path, SET_DESIGN)


def test_set_valid_override_changes_the_run(set_design):
    base = check(set_design, None, "r").run("r")
    bigger = check(set_design, ["K=64"], "r").run("r")
    assert dict(base.params)["K"] == 32 and dict(bigger.params)["K"] == 64
    assert sum(o.matrix_flops for o in bigger.graph.ops) == 2 * sum(o.matrix_flops for o in base.graph.ops)


def test_set_unknown_parameter(set_design):
    text = rendered_error(set_design, ["KK=3"], "r")
    assert text == ("<--set KK>:1:1: error: run 'r' has no parameter 'KK'; "
                    "it has M, K, dtype; did you mean 'K'?\n    KK=3\n    ^^")


def test_set_value_of_the_wrong_kind(set_design):
    # a number where the default is a name (a format): reported at the --set the user typed
    text = rendered_error(set_design, ["dtype=7"], "r")
    assert text == ("<--set dtype>:1:7: error: run 'r' takes a name for 'dtype' (its default is bf16); "
                    "found 7\n    dtype=7\n          ^")


def test_set_unknown_format(set_design):
    text = rendered_error(set_design, ["dtype=bf61"], "r")
    assert text.splitlines()[0] == (f"{set_design}:{SET_PRECISION_LINE}:13: error: unknown format 'bf61'; "
                                    f"did you mean 'bf16'?")


def test_set_value_that_does_not_parse(set_design):
    text = rendered_error(set_design, ["M=1 +"], "r")
    first, shown = text.splitlines()[:2]
    assert first.startswith("<--set M>:1:"), text
    assert shown.strip() in ("M=1 +", "1 +"), "the value the user typed is shown, nothing else"
    assert "is not closed" not in text, "nothing is open in '1 +': a value is missing"


def test_set_quantity_where_a_count_is_needed(set_design):
    text = rendered_error(set_design, ["M=1 GHz"], "r")
    first = text.splitlines()[0]
    assert first == "<--set M>:1:3: error: run 'r' takes a plain number for 'M' (its default is 64); found 1 GHz"


def test_set_without_equals_sign(set_design):
    assert rendered_error(set_design, ["M"], "r") == \
        "<--set>:1:1: error: '--set M' needs the form KEY=VALUE\n    M\n    ^"


def test_set_key_that_is_not_a_name(set_design):
    assert rendered_error(set_design, ["1M=3"], "r") == \
        "<--set>:1:1: error: '1M' is not a parameter name\n    1M=3\n    ^^"


def test_unknown_run_name(set_design):
    assert rendered_error(set_design, None, "rr") == \
        "archc: error: no run named 'rr'; this design has r; did you mean 'r'?"


# ---- empty files and several errors ---------------------------------------------------------------

EMPTY = "the file is empty: declare at least a tile, a chip or a model"


def test_empty_file(tmp_path):
    path = write(tmp_path, "")
    assert rendered_error(path) == f"{path}:1:1: error: {EMPTY}"


@pytest.mark.parametrize("text", ["\n\n   \n", "// only a comment\n", "/* a\n block */\n// and a line\n"])
def test_file_with_nothing_declared_is_empty(tmp_path, text):
    path = write(tmp_path, text)
    assert rendered_error(path).splitlines()[0] == f"{path}:1:1: error: {EMPTY}"


def test_several_errors_are_reported_together(tmp_path):
    src = PRE + (
        "tile u {\n"
        "  clock 1 GHz\n"
        "  sram 1 MiB, bandwidth = 64 GHz\n"                     # P+3: wrong unit
        "  matrix bf16 x bf16 -> fp32 : 256 mac/cycle\n"
        "  vector fp33 : 16 lanes\n"                             # P+5: unknown format
        "}\n"
        "chip d {\n"
        "  tiles 4 of uu\n"                                      # P+8: unknown tile
        "  noc crossbar, bandwidth = 1 TB/s\n"
        "}\n"
        "format p = posit(n = 8, es = 7)\n"                      # P+11: impossible format
    )
    path = write(tmp_path, src)
    rows = [
        Row(src, "an SRAM bandwidth must be a bandwidth (GB/s), found a frequency (GHz)", P + 3, "64 GHz"),
        Row(src, "unknown format 'fp33'; did you mean 'fp32'?", P + 5, "fp33"),
        Row(src, "unknown tile 'uu'; did you mean 'u'?", P + 8, "uu"),
        Row(src, "posit(8, 7): es must be at most n - 2 = 6", P + 11, "posit(n = 8, es = 7)"),
    ]
    want = "\n".join(block(path, src, "error", r.message, r.line, r.at, None, None) for r in rows)
    assert rendered_error(path) == want + "\narchc: 4 errors; unable to continue"


def test_bad_clock_is_one_error_even_with_per_cycle_rates(tmp_path):
    # `mac/cycle` and `B/cycle` need the clock; when the clock is wrong, the clock is the one error.
    src = PRE + tile("clock 400 GB/s", "sram 1 MiB, bandwidth = 64 B/cycle",
                     "matrix bf16 x bf16 -> fp32 : 256 mac/cycle")
    path = write(tmp_path, src)
    assert rendered_error(path) == block(path, src, "error", "a clock must be a frequency (GHz), found a "
                                         "bandwidth (GB/s)", P + 2, "400 GB/s", None, None)


def test_invalid_matrix_unit_does_not_also_report_missing_compute(tmp_path):
    # The tile declares a matrix unit; that it is invalid is one error, not two.
    path = write(tmp_path, PRE + tile("clock 1 GHz", "sram 1 MiB, bandwidth = 64 GB/s",
                                      "matrix bf17 x bf16 -> fp32 : 256 mac/cycle"))
    text = rendered_error(path)
    assert "unknown format 'bf17'" in text
    assert "declares no compute" not in text, text


# ---- files that cannot be read ---------------------------------------------------------------

def test_missing_file(tmp_path):
    path = str(tmp_path / "nope.arch")
    assert rendered_error(path) == f"archc: error: {path}: no such file"


def test_directory_instead_of_a_file(tmp_path):
    assert rendered_error(tmp_path) == f"archc: error: {tmp_path}: is a directory, not a design file"


def test_file_that_is_not_utf8(tmp_path):
    p = tmp_path / "latin1.arch"
    p.write_bytes(b"tile t {\n  clock 1 GHz // caf\xe9\n}\n")
    text = rendered_error(p)
    first = text.splitlines()[0]
    assert first.startswith(f"{p}:2:"), text
    assert "not UTF-8" in first and "0xe9" in first, first
    assert "codec" not in first, "Python's codec jargon is not a user-facing message"


# ---- through the command line ----------------------------------------------------------------

CLI_ROWS = [SYNTAX[1], UNITS[0], SHAPES[0], DUPLICATES[0]]


@pytest.mark.parametrize("row", CLI_ROWS)
def test_cli_check_prints_the_same_diagnostic(tmp_path, row):
    path = write(tmp_path, row.text)
    r = run_cli("check", path)
    assert r.code == 1, r
    assert r.stdout == "", r
    assert r.stderr == expected(path, row) + "\n", r
    assert "Traceback" not in r.stderr + r.stdout


def test_cli_check_several_errors_exit_1(tmp_path):
    path = write(tmp_path, PRE + tile("clock 400 GB/s", "sram 0 MiB, bandwidth = 64 GB/s", "vector fp32 : 16 lanes"))
    r = run_cli("check", path)
    assert r.code == 1, r
    heads = [ln for ln in r.stderr.splitlines() if re.match(re.escape(path) + r":\d+:\d+: error: ", ln)]
    assert len(heads) == 2, r
    assert r.stderr.rstrip().endswith("archc: 2 errors; unable to continue")
    assert "Traceback" not in r.stderr


def test_cli_check_bad_set(tmp_path):
    path = write(tmp_path, SET_DESIGN)
    r = run_cli("check", path, "--run", "r", "--set", "KK=3")
    assert r.code == 1, r
    assert r.stderr.startswith("<--set KK>:1:1: error: run 'r' has no parameter 'KK'"), r
    assert "Traceback" not in r.stderr


def test_cli_check_set_needs_run(tmp_path):
    path = write(tmp_path, SET_DESIGN)
    r = run_cli("check", path, "--set", "K=3")
    assert r.code == 1, r
    assert r.stderr == "archc: error: --set needs --run NAME\n", r


def test_cli_check_valid_file(tmp_path):
    path = write(tmp_path, SET_DESIGN)
    r = run_cli("check", path)
    assert r.code == 0, r
    assert r.stderr == ""
    assert r.stdout.startswith(f"{path}: ok ("), r
    assert "1 run)" in r.stdout
