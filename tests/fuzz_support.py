"""Helpers of tests/test_fuzz.py: the seed corpus, its tokens, mutations, grammar-derived
designs, and the oracle every input goes through.

Every strategy here produces a `Case`: the bytes of one `.arch` file plus a short, readable
account of how they were made (`samples/h100.arch: number 14:9 '1.83' -> '1e308'`), which is
what Hypothesis prints as the falsifying example. `assert_checks_cleanly(case, directory)` is
the oracle: it runs `archc check` in-process on the file and fails on anything that is not
"exit 0" or "exit 1 with located, caret-marked diagnostics", or that takes too long.
`python tests/fuzz_support.py N [SEED]` surveys N inputs of every family and prints each
distinct failure once, with a minimal reproducer (see `survey`)."""
from __future__ import annotations

import contextlib
import functools
import io
import os
import re
import signal
import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable

from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from archc.dsl import units as U

# Hypothesis keeps caches (and, where enabled, its example database) in ./.hypothesis; the fuzz
# tests keep them out of the repository.
set_hypothesis_home_dir(os.environ.get("ARCHC_HYPOTHESIS_DIR") or Path(tempfile.gettempdir()) / "archc-hypothesis")

ROOT = Path(__file__).resolve().parent.parent
CORPUS_FILES = sorted(ROOT.glob("samples/*.arch")) + sorted(ROOT.glob("samples/machines/*.arch")) + \
    sorted(ROOT.glob("dsl/stdlib/*.arch"))
CORPUS: dict[str, str] = {p.relative_to(ROOT).as_posix(): p.read_text(encoding="utf-8") for p in CORPUS_FILES}

TIME_LIMIT = 20.0  # seconds: one `archc check` of one input


# ---- the case: bytes with a readable history ----------------------------------------------------

class Case:
    """One input file. `repr` is its recipe, not its (kilobytes of) text."""

    __slots__ = ("origin", "steps", "data")

    def __init__(self, origin: str, steps: tuple[str, ...], data: bytes):
        self.origin, self.steps, self.data = origin, steps, data

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")

    def __repr__(self) -> str:
        steps = "; ".join(self.steps) if self.steps else "unchanged"
        if len(self.data) <= 400:
            return f"Case({self.origin}: {steps}; text={self.data!r})"
        return f"Case({self.origin}: {steps}; {len(self.data):,} bytes)"

    def _repr_pretty_(self, p, cycle) -> None:  # Hypothesis's printer of falsifying examples
        p.text(repr(self))


def _brief(s: str, n: int = 40) -> str:
    return repr(s if len(s) <= n else s[: n // 2] + "…" + s[-n // 2:])


# ---- tokens ----------------------------------------------------------------------------------------

_TOKEN = re.compile(r"""
   (?P<ws>[ \t\f\r]+|\\\r?\n)
  |(?P<nl>\n)
  |(?P<comment>//[^\n]*|/\*.*?\*/)
  |(?P<string>"(?:[^"\\\n]|\\.)*")
  |(?P<number>(?:\d[\d_]*(?:\.\d[\d_]*)?|\.\d[\d_]*)(?:[eE][+-]?\d+)?)
  |(?P<name>[A-Za-z_][A-Za-z0-9_]*)
  |(?P<op>\*\*|->|==|!=|<=|>=|[-+*/%<>=(){}\[\],;:.])
  |(?P<other>.)
""", re.X | re.S)
_UNIT_TAIL = re.compile(r"(?:/[A-Za-z][A-Za-z0-9]*)*")
SPACE = frozenset({"ws", "nl", "comment"})
_WORDS = frozenset({"of", "x", "or", "and", "not", "if", "else"})  # keywords, not units, after a number


def tokenize(text: str) -> list[tuple[str, str]]:
    """(kind, text) pairs whose texts concatenate back to `text`. A name right after a number
    (spaces allowed) is a `unit`, with its `/part`s: `3.35 TB/s` -> number, ws, unit."""
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        kind, tok = m.lastgroup, m.group()
        if kind == "name":
            prev = [k for k, _ in out[-2:]]
            if (prev[-1:] == ["number"] or prev == ["number", "ws"]) and tok not in _WORDS:
                kind = "unit"
                tail = _UNIT_TAIL.match(text, m.end()).group()
                tok += tail
        out.append((kind, tok))
        pos += len(tok)
    return out


def _join(tokens) -> str:
    return "".join(t for _, t in tokens)


def _where(tokens, i: int) -> str:
    """line:col of token i."""
    before = _join(tokens[:i])
    return f"{before.count(chr(10)) + 1}:{len(before) - (before.rfind(chr(10)) + 1) + 1}"


# ---- vocabularies --------------------------------------------------------------------------------

DECL_KINDS = ("tile", "chip", "system", "format", "model", "block", "run", "import")
STDLIB = ("std.formats", "std.blocks", "std.models")
KEYWORDS = ("repeat", "if", "else", "return", "input", "of", "x", "not", "and", "or", "true", "false")
# every spelling archc knows, compound units the samples use, and near misses
UNIT_SPELLINGS = tuple(sorted(U.UNITS)) + (
    "GB/s", "TB/s", "Gb/s", "MB/s", "B/cycle", "B/clk", "mac/cycle", "flop/cycle", "ops/cycle", "pJ/B",
    "pJ/bit", "pJ/flop", "pJ/mac", "B/mac", "pJ/bit/hop", "J/s", "W/mm2", "GB/s/s", "s/s", "Hz/Hz",
    "B/B/B/B", "cycles/cycle", "flop/s", "TFLOPS/W", "x/x", "lanes/cycle", "Ghz", "gb", "MHZ", "Mhz", "kb",
    "GIB", "sec", "nS", "parsec", "e", "E", "inf", "nan", "of", "x", "B/0x", "_")
NUMBER_EDGES = (
    "0", "-0", "0.0", "-0.0", "00", "0_0", "0e0", ".0", "1", "-1", "0.5", "1.", ".5", "1_000_000", "1__0",
    "1e308", "-1e308", "1.7976931348623157e308", "1.7976931348623159e308", "1e309", "1e-320", "5e-324",
    "1e-400", "2.2250738585072014e-308", "1e15", "1e16", "1e30", "1e31",
    "10**400", "10 ** 308", "10 ** 309", "10 ** -400", "2**53", "2**53 + 1", "2**63", "2**63 - 1", "-(2**63)",
    "2**64", "2**1024", "2.0 ** 1024", "2 ** -1074", "2 ** -1075", "2 ** 10000", "1e308 * 10", "1e308 * 1e308",
    "-1e308 - 1e308", "1e308 * 10 - 1e308 * 10", "(1e308 * 10) / (1e308 * 10)", "0 * (1e308 * 10)",
    "1" + "0" * 308, "1" + "0" * 309, "9" * 400, "1" + "0" * 4300, "9" * 5000, "0" * 5000 + "1",
    "1." + "0" * 5000 + "1", "1e" + "9" * 20, "1e-" + "9" * 20,
    "nan", "NaN", "-nan", "inf", "-inf", "Infinity", "1e999", "-1e999",
    "0 ** -1", "0 ** 0", "0.0 ** -1", "(-8) ** 0.5", "(-1) ** 0.5", "(-8) ** (1/3)", "(-2) ** 2000",
    "1 / 0", "0 / 0", "1 % 0", "1e308 % 1e-320", "-7 % 3", "1 / 1e-320",
    "log2(0)", "log2(-1)", "sqrt(-1)", "sqrt(1e-320)", "log2(1e308 * 10)", "ceil(1e308 * 10)",
    "floor(0 - 1e308 * 10)", "round(1e308 * 10)", "round(1e308)", "ceil(nan)", "abs(-0)", "max()", "min()",
    "max([])", "min(1)", "round(2.5)", "round(-0.5)", "ceil(2 ** 63)", "floor(1e300)", "dim(1, 0)",
)
FUNCS = ("ceil", "floor", "min", "max", "sqrt", "log2", "round", "abs", "dim")
OPS = ("linear", "matmul", "conv2d", "maxpool", "avgpool", "global_avgpool", "attention", "embedding", "gather",
       "layernorm", "rmsnorm", "batchnorm", "softmax", "relu", "gelu", "silu", "sigmoid", "tanh", "exp", "dropout",
       "scale", "add", "sub", "mul", "div", "reduce_sum", "reduce_mean", "reduce_max", "reshape", "flatten",
       "cross_entropy", "allreduce", "allgather", "reduce_scatter")
BLOCKS = ("transformer", "encoder", "self_attention", "mlp", "swiglu", "llama_layer", "bottleneck")
FORMAT_CTORS = ("float", "posit", "int", "fixed", "mx")
FORMATS = ("fp64", "fp32", "tf32", "fp16", "bf16", "fp8_e4m3", "fp8_e5m2", "fp6_e2m3", "fp4_e2m1", "e8m0",
           "posit8", "posit16", "int8", "int32", "int4", "mxfp8_e4m3", "mxfp4", "mxint8", "cfp8_143", "amp")
SYMBOLS = ("true", "false", "mesh", "torus", "ring", "crossbar", "alltoall", "switch", "fat_tree", "tree",
           "mesh2d", "train", "infer", "single", "data", "parallel", "spatial", "weight_streaming", "none",
           "selective", "full", "one_f_one_b", "gpipe", "adjacent", "raster", "serpentine", "adam", "adamw", "lamb",
           "sgd", "elementwise", "epilogue", "sustained", "boost", "ieee", "single", "saturate", "wrap", "rne",
           "rna", "rtz", "rup", "rdown", "stochastic", "hbm", "std")
VARS = ("x", "y", "a", "b", "h", "M", "N", "K", "d", "n", "batch", "seq", "layers", "heads", "tp", "pp", "dp",
        "chips", "tokens", "t", "c", "node", "pod", "g", "net")
KWARGS = ("bandwidth", "latency", "energy", "sustained", "link", "hop", "allreduce", "efficiency", "exp", "man",
          "bias", "inf", "nan", "overflow", "signed", "storage", "rounding", "subnormals", "n", "es", "bits",
          "int", "frac", "elem", "block", "scale", "tp", "pp", "dp", "chips", "micro_batch", "global_batch",
          "recompute", "interleave", "seq_parallel", "overlap_dp", "bucket", "schedule", "region_rows",
          "placement", "accumulate_in_gemm", "heads", "kv_heads", "causal", "cache", "flash", "vocab", "d",
          "rate", "by", "axis", "kernel", "stride", "padding", "groups", "tied", "ff", "matmul", "attention",
          "conv", "analog", "dac", "adc", "noise", "program_noise", "array", "sram", "image")
PROPS = {
    "tile": ("clock", "sram", "matrix", "vector"),
    "chip": ("tiles", "grid", "noc", "memory", "process", "power", "idle", "launch", "efficiency", "wave", "bsp"),
    "system": ("chips", "nodes", "systems", "grid", "network", "memory"),
    "run": ("model", "on", "mode", "strategy", "precision", "optimizer", "throughput", "fuse", "clock", "accuracy"),
}
INSERTABLE = ("{", "}", "(", ")", "[", "]", ",", ";", ":", "=", "->", "**", ".", "+", "-", "*", "/", "%", "==",
              "<", '"', "\n", " x ", " of ", "not ", " and ", "//", "/*", "*/", "\\\n", "\t", "\r", "\f", "µ",
              "1", "0", "-1", "1e400", " GHz", " GB/s", " mac/cycle") + DECL_KINDS + KEYWORDS


# ---- expressions from the grammar ------------------------------------------------------------------

SMALL_NUMBERS = ("1", "2", "4", "8", "64", "128", "0.5", "1.5", "1024")


@functools.lru_cache(maxsize=None)  # one strategy object: Hypothesis validates it once
def numbers(long_digits: bool = True) -> st.SearchStrategy[str]:
    """Number literals and numeric expressions, ordinary to degenerate; with `long_digits`,
    integers of 300 to 6000 digits too (around float's 309 and Python's 4301-digit limits)."""
    ordinary = st.one_of(st.sampled_from(SMALL_NUMBERS), st.integers(-(2**70), 2**70).map(str),
                         st.floats().map(repr))
    edges = st.sampled_from(NUMBER_EDGES)
    if not long_digits:
        return st.one_of(ordinary, edges)
    return st.one_of(ordinary, edges,
                     st.sampled_from((308, 309, 310, 4299, 4300, 4301, 4302, 5000)).map(lambda n: "1" + "0" * (n - 1)),
                     st.integers(1, 6000).map(lambda n: "7" * n))


@functools.lru_cache(maxsize=None)  # one strategy object: Hypothesis validates it once
def quantities(long_digits: bool = True) -> st.SearchStrategy[str]:
    n = numbers(long_digits)
    return st.one_of(n, st.tuples(n, st.sampled_from(("", " ")), st.sampled_from(UNIT_SPELLINGS)).map("".join))


@functools.lru_cache(maxsize=None)  # one strategy object: Hypothesis validates it once
def _atoms() -> st.SearchStrategy[str]:
    return st.one_of(
        quantities(long_digits=False),  # NUMBER_EDGES has a few long ones; more would make megabyte files
        st.sampled_from(VARS + SYMBOLS + FORMATS),
        st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters='"\\\n'), max_size=8)
        .map(lambda s: f'"{s}"'),
        st.sampled_from(('""', '"\\""', '"\\\\"', '"a\\nb"', '"µ/s ✓"')),
    )


@functools.lru_cache(maxsize=None)  # one strategy object: Hypothesis validates it once
def expressions(max_leaves: int = 10) -> st.SearchStrategy[str]:
    """Expressions built from the grammar's productions: every operator level, calls, indexing,
    attributes, lists, keyword arguments; operands bracketed or not (so precedence is fuzzed too)."""
    binops = ("of", ":", "->", "or", "and", "==", "!=", "<", "<=", ">", ">=", "x", "+", "-", "*", "/", "%", "**")

    def extend(child):
        operand = st.tuples(child, st.booleans()).map(lambda t: f"({t[0]})" if t[1] else t[0])
        arg = st.one_of(child, st.tuples(st.sampled_from(KWARGS), child).map(lambda t: f"{t[0]} = {t[1]}"))
        args = st.lists(arg, max_size=4).map(", ".join)
        return st.one_of(
            st.tuples(operand, st.sampled_from(binops), operand).map(lambda t: f"{t[0]} {t[1]} {t[2]}"),
            st.tuples(st.sampled_from(("-", "+", "not ", "- ")), operand).map("".join),
            child.map(lambda s: f"({s})"),
            st.tuples(st.sampled_from(FUNCS + OPS + BLOCKS + FORMAT_CTORS + VARS), args).map(
                lambda t: f"{t[0]}({t[1]})"),
            st.tuples(operand, args).map(lambda t: f"{t[0]}[{t[1]}]"),
            st.tuples(operand, st.sampled_from(VARS + KWARGS)).map(lambda t: f"{t[0]}.{t[1]}"),
            args.map(lambda s: f"[{s}]"),
        )
    return st.recursive(_atoms(), extend, max_leaves=max_leaves)


@functools.lru_cache(maxsize=None)
def _arg_lists(max_pos: int, max_kw: int):
    return (st.lists(expressions(6), max_size=max_pos),
            st.lists(st.tuples(st.sampled_from(KWARGS), expressions(6)), max_size=max_kw))


def _args(draw, max_pos=3, max_kw=3) -> str:
    pos, kws = _arg_lists(max_pos, max_kw)
    return ", ".join(draw(pos) + [f"{k} = {v}" for k, v in draw(kws)])


# ---- grammar-derived designs ---------------------------------------------------------------------

TILE_NAMES, CHIP_NAMES, SYSTEM_NAMES = ("t", "u"), ("c", "d"), ("node", "pod")
MODEL_NAMES, FORMAT_NAMES = ("g", "net", "gemm"), ("f8", "p", "q", "bf16")


@st.composite
def _body(draw, kind: str) -> list[str]:
    lines = []
    for _ in range(draw(st.integers(0, 8))):
        prop = draw(often(st.sampled_from(PROPS[kind]), st.sampled_from(DECL_KINDS + KEYWORDS + VARS), 4))
        lines.append(f"{prop} {_args(draw)}".rstrip())
    return lines


@st.composite
def _model_body(draw, params: list[str]) -> list[str]:
    names = list(params) or ["x"]
    lines = []
    for p in draw(st.lists(st.sampled_from(names), max_size=2, unique=True)):
        dims = draw(st.lists(st.one_of(st.sampled_from(names), expressions(4)), max_size=4))
        lines.append(f"input {p} : {draw(st.sampled_from(('', 'int32', 'bf16', 'fp32')))}[{', '.join(dims)}]")
    for _ in range(draw(st.integers(0, 5))):
        target = draw(st.sampled_from(("x", "y", "h") + tuple(names)))
        op = draw(st.sampled_from(OPS + BLOCKS + FUNCS))
        args = ", ".join(draw(st.lists(st.one_of(st.sampled_from(names + ["x", "y", "h"]), expressions(4)),
                                       min_size=1, max_size=3)))
        kws = draw(st.lists(st.tuples(st.sampled_from(KWARGS), expressions(4)), max_size=2))
        stmt = f"{target} = {op}({', '.join([args] + [f'{k} = {v}' for k, v in kws])})"
        wrap = draw(st.sampled_from(("", "repeat", "if", "if-else")))
        if wrap == "repeat":
            stmt = f"repeat {draw(expressions(3))} {{\n    {stmt}\n  }}"
        elif wrap:
            stmt = f"if {draw(expressions(3))} {{\n    {stmt}\n  }}"
            stmt += " else {\n    y = x\n  }" if wrap == "if-else" else ""
        lines.append(stmt)
    if draw(st.booleans()) or not lines:
        lines.append(f"return {draw(st.one_of(st.sampled_from(names + ['x', 'y', 'h']), expressions(5)))}")
    return lines


@st.composite
def _declaration(draw, kind: str) -> str:
    if kind == "import":
        return f"import {draw(st.sampled_from(STDLIB + ('std.nothing', 'std', 'x.y.z')))}"
    if kind == "format":
        ctor = draw(st.sampled_from(FORMAT_CTORS + FORMATS))
        value = ctor if draw(st.booleans()) and ctor in FORMATS else f"{ctor}({_args(draw, max_pos=2, max_kw=5)})"
        return f"format {draw(st.sampled_from(FORMAT_NAMES))} = {value}"
    if kind in ("model", "block", "run"):
        name = draw(st.sampled_from(MODEL_NAMES if kind != "run" else ("r", "s", "gemm")))
        if kind == "run":
            names = draw(st.lists(st.sampled_from(VARS), max_size=4, unique=True))
            params = [f"{p} = {draw(expressions(4))}" for p in names]
            args = ", ".join(draw(st.lists(expressions(4), max_size=4)))
            body = [f"model {draw(st.sampled_from(MODEL_NAMES))}({args})",
                    f"on {draw(st.sampled_from(CHIP_NAMES + SYSTEM_NAMES + TILE_NAMES))}"]
            body = draw(st.lists(st.sampled_from(body), max_size=2, unique=True)) + draw(_body("run"))
        else:
            raw = draw(st.lists(st.sampled_from(VARS), max_size=4, unique=True))
            params = [p if draw(st.booleans()) else f"{p} = {draw(expressions(3))}" for p in raw]
            body = draw(_model_body(raw))
        head = f"{name}({', '.join(params)})" if params or draw(st.booleans()) else name
        return f"{kind} {head} {{\n" + "".join(f"  {ln}\n" for ln in body) + "}"
    names = {"tile": TILE_NAMES, "chip": CHIP_NAMES, "system": SYSTEM_NAMES}[kind]
    body = draw(_body(kind))
    return f"{kind} {draw(st.sampled_from(names))} {{\n" + "".join(f"  {ln}\n" for ln in body) + "}"


@st.composite
def grammar_designs(draw) -> Case:
    """Whole files of declarations generated from the grammar: any kind, any property, any
    arguments, names drawn from small pools so that references resolve some of the time."""
    decls = []
    for m in draw(st.lists(st.sampled_from(STDLIB), max_size=3, unique=True)):
        decls.append(f"import {m}")
    kinds = draw(st.lists(st.sampled_from(DECL_KINDS + ("tile", "chip", "run")), min_size=1, max_size=7))
    for k in kinds:
        decls.append(draw(_declaration(k)))
    sep = draw(st.sampled_from(("\n", "\n", "\r\n", "; ")))
    text = sep.join(d if sep == "\n" else d.replace("\n", sep) for d in decls) + "\n"
    return Case("grammar", (f"{len(kinds)} declarations: {' '.join(kinds)}",), text.encode())


# A valid design that uses most of the language; every «value» is a hole a strategy may fill.
TEMPLATE = """\
import std.formats
import std.blocks
format my8 = float(exp = «4», man = «3», bias = «7», inf = «false», nan = «single», overflow = «saturate», rounding = «rne»)
format wide = float(exp = «11», man = «52», subnormals = «true», storage = «64»)
format p12 = posit(n = «12», es = «1»)
format q8 = fixed(int = «3», frac = «4»)
format i6 = int(bits = «6», signed = «true», overflow = «wrap»)
format mx6 = mx(elem = «fp6_e2m3», block = «32», scale = «e8m0»)
tile t {
  clock «1.5 GHz», sustained = «1.2 GHz»
  sram «1 MiB», bandwidth = «64 B/cycle», latency = «30 cycles», energy = «0.1 pJ/B»
  matrix «bf16» x «bf16» -> «fp32» : «256 mac/cycle», energy = «1 pJ», sram = «0 B/mac»
  matrix «int8» x «int8» -> «int32» : «0.5 mm2»
  matrix «my8» x «my8» -> «fp32» : «4096 mac/cycle», analog = «true», dac = «7», adc = «9», noise = «0.06», array = «256» x «256»
  vector «fp32» : «16 lanes», energy = «0.4 pJ»
  vector «p12» : «64 flop/cycle»
}
chip c {
  tiles «16» of «t»
  noc «mesh», link = «8 B/cycle», hop = «1 cycles», energy = «0.5 pJ/B»
  memory hbm, «16 GB», bandwidth = «1 TB/s», efficiency = «0.9», latency = «100 ns», energy = «30 pJ/B»
  process «7 nm»
  power «300 W»
  idle «50 W»
  launch «2 us»
  efficiency matmul = «0.8», attention = «0.6»
  wave «128» x «128»
  bsp «false»
}
chip w {
  grid «4» x «4» of «t»
  noc «torus», bandwidth = «2 TB/s»
}
system node { chips «4» of «c»; network «switch», bandwidth = «100 GB/s», latency = «1 us», allreduce = «tree» }
system pod {
  grid «2» x «2» of «node»
  network «torus», bandwidth = «50 GB/s», latency = «5 us», allreduce = «mesh2d»
  memory pool, «1 TB», bandwidth = «100 GB/s»
}
block ffn(x, ff) {
  h = «gelu»(linear(x, «ff»))
  return linear(h, «dim(x, -1)»)
}
model net(batch = «8», seq = «64», d = «128», layers = «2», heads = «4») {
  input tokens : int32[«batch», «seq»]
  x = embedding(tokens, vocab = «1000», d = «d»)
  repeat «layers» {
    x = x + ffn(layernorm(x), «4 * d»)
  }
  if «layers > 1» {
    x = transformer(x, «heads», causal = «true», flash = «false»)
  } else {
    x = «relu»(x)
  }
  y = attention(x, x, x, heads = «heads», causal = «true»)
  return cross_entropy(linear(y, «1000», bias = «false»))
}
model mm(M, N, K) {
  input a : [«M», «K»]
  input b : [«K», «N»]
  return matmul(a, b)
}
model cnn(batch = «2», image = «32») {
  input img : [«batch», «3», «image», «image»]
  x = conv2d(img, «16», kernel = «3», stride = «1», padding = «1»)
  x = maxpool(x, kernel = «2», stride = «2»)
  return reduce_mean(flatten(x), axis = «-1»)
}
run train(batch = «8», tp = «2», dp = «2», micro = «2») {
  model net(batch = «micro», seq = «64», d = «128»)
  on «pod»
  mode «train»
  strategy «parallel», tp = «tp», dp = «dp», micro_batch = «micro», global_batch = «batch», recompute = «full», overlap_dp = «true», bucket = «25 MiB»
  precision «amp»
  optimizer «adam»
  fuse «elementwise»
  throughput «batch», «"samples/s"»
  accuracy batch = «2», micro = «1»
}
run g(M = «64», N = «64», K = «64») {
  model mm(«M», «N», «K»)
  on «c»
  precision «bf16»
  clock «sustained»
}
run conv(batch = «4») {
  model cnn(«batch»)
  on «w»
  strategy «spatial», chips = «1», region_rows = «0», placement = «serpentine»
  precision «bf16»
}
"""
_HOLE = re.compile(r"«([^»]*)»")
TEMPLATE_PARTS = _HOLE.split(TEMPLATE)  # text, hole, text, hole, ...
TEMPLATE_HOLES = TEMPLATE_PARTS[1::2]
VALID_TEMPLATE = _HOLE.sub(r"\1", TEMPLATE)
# the files mutated_corpus starts from: the corpus and the template's valid design
SEEDS: dict[str, str] = {**CORPUS, "template": VALID_TEMPLATE}


def _hole_line(i: int) -> int:
    return "".join(TEMPLATE_PARTS[: 2 * i + 1]).replace("«", "").replace("»", "").count("\n") + 1


@st.composite
def _unit_swapped(draw, value: str) -> str:
    toks = tokenize(value)
    units = [i for i, (k, _) in enumerate(toks) if k == "unit"]
    if not units:
        return value + " " + draw(st.sampled_from(UNIT_SPELLINGS))
    i = draw(st.sampled_from(units))
    toks[i] = ("unit", draw(st.sampled_from(UNIT_SPELLINGS)))
    return _join(toks)


@st.composite
def template_designs(draw) -> Case:
    """The valid TEMPLATE with one to four holes refilled: a generated expression, a degenerate
    number, a quantity, or the same value in another unit (and sometimes an extra line)."""
    parts = list(TEMPLATE_PARTS)
    steps = []
    for i in draw(st.lists(st.integers(0, len(TEMPLATE_HOLES) - 1), min_size=1, max_size=4, unique=True)):
        old = TEMPLATE_HOLES[i]
        new = draw(st.one_of(quantities(), _unit_swapped(old), expressions(),
                             st.sampled_from(SYMBOLS + FORMATS + VARS)))
        parts[2 * i + 1] = new
        steps.append(f"line {_hole_line(i)}: {_brief(old)} -> {_brief(new)}")
    text = "".join(parts)
    if draw(st.integers(0, 3)) == 0:  # an extra property or statement in some block
        lines = text.split("\n")
        at = draw(st.integers(1, len(lines) - 1))
        kind = draw(st.sampled_from(tuple(PROPS)))
        extra = f"  {draw(st.sampled_from(PROPS[kind] + KWARGS + OPS))} {_args(draw)}"
        lines.insert(at, extra)
        steps.append(f"insert line {at + 1}: {_brief(extra)}")
        text = "\n".join(lines)
    return Case("template", tuple(steps), text.encode())


# Op calls that are valid on the tensors of model_designs (x: [batch, seq, d], w: [d, d],
# tokens: int32[batch, seq], img: [batch, 3, 16, 16]): (form, input kind, output kind).
OP_FORMS = (
    ("linear({x}, {n})", "x", "x"), ("linear({x}, {n}, bias = {b}, tied = {b})", "x", "x"),
    ("matmul({x}, w)", "x", "x"),
    ("layernorm({x})", "x", "x"), ("rmsnorm({x})", "x", "x"), ("softmax({x})", "x", "x"), ("relu({x})", "x", "x"),
    ("gelu({x})", "x", "x"), ("silu({x})", "x", "x"), ("sigmoid({x})", "x", "x"), ("tanh({x})", "x", "x"),
    ("exp({x})", "x", "x"), ("dropout({x}, rate = {f})", "x", "x"), ("scale({x}, by = {n})", "x", "x"),
    ("add({x}, {x})", "x", "x"), ("{x} + {x}", "x", "x"), ("mul({x}, {x})", "x", "x"), ("{x} * {x}", "x", "x"),
    ("sub({x}, {x})", "x", "x"), ("{x} / {x}", "x", "x"),
    ("attention({x}, {x}, {x}, heads = {h}, causal = {b}, flash = {b})", "x", "x"),
    ("attention({x}, {x}, {x}, heads = {h}, kv_heads = {h}, cache = {n})", "x", "x"),
    ("transformer({x}, {h})", "x", "x"), ("encoder({x}, {h}, ff = {n})", "x", "x"), ("mlp({x}, {n})", "x", "x"),
    ("swiglu({x}, {n})", "x", "x"), ("self_attention({x}, {h}, causal = {b})", "x", "x"),
    ("llama_layer({x}, {h}, {h}, {n})", "x", "x"), ("ffn({x}, {n})", "x", "x"),
    ("gather({x}, positions = {n})", "x", "x"), ("allreduce({x})", "x", "x"), ("allgather({x})", "x", "x"),
    ("reduce_scatter({x})", "x", "x"), ("reduce_sum({x}, axis = {axis})", "x", "r"),
    ("reduce_mean({x}, axis = {axis})", "x", "r"), ("reduce_max({x}, {axis})", "x", "r"),
    ("reshape({x}, [batch, seq * d])", "x", "r"), ("reshape({x}, [{n}, {n}])", "x", "r"), ("flatten({x})", "x", "r"),
    ("cross_entropy({x})", "x", "r"), ("dim({x}, {axis})", "x", "n"),
    ("embedding(tokens, vocab = {n}, d = d)", "tok", "x"), ("embedding(tokens, {n}, d)", "tok", "x"),
    ("conv2d({img}, {n}, kernel = {k}, stride = {k}, padding = {k})", "img", "img"),
    ("conv2d({img}, {n}, kernel = {k}, groups = {g}, bias = {b})", "img", "img"),
    ("maxpool({img}, kernel = {k}, stride = {k})", "img", "img"), ("avgpool({img}, {k}, padding = {k})", "img", "img"),
    ("global_avgpool({img})", "img", "r"), ("batchnorm({img})", "img", "img"), ("relu({img})", "img", "img"),
    ("bottleneck({img}, {n}, {n}, stride = {k})", "img", "img"),
)
_SANE = {"n": ("d", "d", "d", "64", "2 * d", "d / 2", "128"), "h": ("4", "2", "1", "8"), "b": ("true", "false"),
         "f": ("0.1", "0.5", "0"), "k": ("1", "2", "3"), "g": ("1", "3"), "axis": ("-1", "0", "1", "2"),
         "dim": ("2", "4", "8", "16", "64")}


def often(usual: st.SearchStrategy, odd: st.SearchStrategy, one_in: int = 20) -> st.SearchStrategy:
    """`usual`, and about once in `one_in` draws `odd` (shrinking towards `usual`). Not
    st.one_of(usual, usual, ..., odd): one_of drops repeated branches, and picks uniformly."""
    return st.tuples(st.integers(0, one_in - 1), usual, odd).map(lambda t: t[2] if t[0] == one_in // 2 else t[1])


@functools.lru_cache(maxsize=None)
def _hole(kind: str) -> st.SearchStrategy[str]:
    """A value for a hole of `kind`: usually a sane one, sometimes degenerate or generated."""
    return often(st.sampled_from(_SANE[kind]),
                 st.one_of(numbers(long_digits=False), expressions(3), st.sampled_from(VARS + SYMBOLS)))


@st.composite
def model_designs(draw) -> Case:
    """The template's machines with a generated model run on them: inputs of sane (sometimes
    degenerate) shapes, then a chain of op and block calls (OP_FORMS) whose numeric arguments
    are usually sane and sometimes degenerate, some in `repeat` or `if`; a run maps it with a
    random mode, precision and strategy."""
    pool = {"x": ["x"], "img": ["img"], "tok": ["tokens"]}
    lines = [f"input x : [batch, seq, d]", "input w : [d, d]", "input tokens : int32[batch, seq]",
             f"input img : [batch, {draw(_hole('dim'))}, 16, {draw(_hole('dim'))}]"]
    last = "x"
    for k in range(draw(st.integers(1, 6))):
        form, kin, kout = draw(st.sampled_from(OP_FORMS))

        def fill(m, kin=kin):
            key = m.group(1)
            if key in ("x", "img"):
                return draw(st.sampled_from(pool[key][::-1]))
            return draw(_hole(key))
        stmt = f"v{k} = " + re.sub(r"\{(\w+)\}", fill, form)
        wrap = draw(st.sampled_from(("", "", "", "", "repeat", "if")))
        if wrap == "repeat":
            stmt = f"repeat {draw(_hole('k'))} {{\n    {stmt}\n  }}"
        elif wrap == "if":
            stmt = f"if {draw(_hole('b'))} {{\n    {stmt}\n  }} else {{\n    v{k} = {pool[kin][-1]}\n  }}"
        lines.append(stmt)
        if kout in pool:
            pool[kout].append(f"v{k}")
        if kout != "n":
            last = f"v{k}"
    lines.append(f"return {last}")
    params = {p: draw(_hole("dim")) for p in ("batch", "seq", "d")}
    head = ", ".join(f"{k} = {v}" for k, v in params.items())
    model = f"model z({head}) {{\n" + "".join(f"  {ln}\n" for ln in lines) + "}\n"
    mode = draw(st.sampled_from(("infer", "train")))
    strategy = draw(st.sampled_from(("single", "data, chips = 4", "parallel, tp = 2, dp = 2, micro_batch = 1",
                                     "parallel, pp = 2, micro_batch = 1, global_batch = 4", "spatial",
                                     "weight_streaming, micro_batch = 1")))
    on = draw(st.sampled_from(("c", "w", "node", "pod")))
    prec = draw(st.sampled_from(("bf16", "amp", "fp32", "my8", "int8")))
    run = f"run rz() {{\n  model z()\n  on {on}\n  mode {mode}\n  strategy {strategy}\n  precision {prec}\n}}\n"
    return Case("model", (f"model z({_brief(head, 60)}): {len(lines) - 5} ops; {mode} on {on}, {strategy}, {prec}",),
                (VALID_TEMPLATE + model + run).encode())


# ---- mutations of the corpus -----------------------------------------------------------------------

def _pick(draw, tokens, kinds=None) -> int | None:
    idx = [i for i, (k, _) in enumerate(tokens) if (k in kinds if kinds else k not in SPACE)]
    if not idx:
        return None
    return idx[draw(st.integers(0, len(idx) - 1))]


def _m_delete(draw, toks):
    i = _pick(draw, toks)
    if i is None:
        return toks, "delete nothing"
    n = draw(st.integers(1, 4))
    j = min(len(toks), i + n)
    gone = _join(toks[i:j])
    return toks[:i] + toks[j:], f"delete {_brief(gone)} at {_where(toks, i)}"


def _m_duplicate(draw, toks):
    i = _pick(draw, toks)
    if i is None:
        return toks, "duplicate nothing"
    j = min(len(toks), i + draw(st.integers(1, 4)))
    times = draw(st.sampled_from((1, 1, 2, 10)))
    return toks[:j] + toks[i:j] * times + toks[j:], f"repeat {_brief(_join(toks[i:j]))} at {_where(toks, i)} x{times}"


def _m_swap_tokens(draw, toks):
    i, j = _pick(draw, toks), _pick(draw, toks)
    if i is None or i == j:
        return toks, "swap nothing"
    out = list(toks)
    out[i], out[j] = toks[j], toks[i]
    return out, f"swap {_brief(toks[i][1])} at {_where(toks, i)} with {_brief(toks[j][1])} at {_where(toks, j)}"


def _m_lines(draw, toks):
    lines = _join(toks).split("\n")
    i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
    how = draw(st.sampled_from(("swap", "delete", "duplicate", "move")))
    if how == "swap":
        lines[i], lines[j] = lines[j], lines[i]
    elif how == "delete":
        del lines[i]
    elif how == "duplicate":
        lines.insert(j, lines[i])
    else:
        lines.insert(j, lines.pop(i))
    return tokenize("\n".join(lines)), f"{how} line {i + 1}" + (f" and line {j + 1}" if how != "delete" else "")


def _m_insert(draw, toks):
    i = draw(st.integers(0, len(toks)))
    what = draw(st.one_of(st.sampled_from(INSERTABLE), st.sampled_from(VARS + SYMBOLS + FORMATS),
                          expressions(4).map(lambda s: f" {s} ")))
    return toks[:i] + [("other", what)] + toks[i:], f"insert {_brief(what)} at {_where(toks, i)}"


def _m_number(draw, toks):
    i = _pick(draw, toks, {"number"})
    if i is None:
        return toks, "no number"
    new = draw(numbers())
    out = list(toks)
    out[i] = ("number", new)
    return out, f"number {_where(toks, i)} {_brief(toks[i][1])} -> {_brief(new)}"


def _m_unit(draw, toks):
    i = _pick(draw, toks, {"unit"})
    if i is None:
        return toks, "no unit"
    new = draw(st.sampled_from(UNIT_SPELLINGS))
    out = list(toks)
    out[i] = ("unit", new)
    return out, f"unit {_where(toks, i)} {_brief(toks[i][1])} -> {_brief(new)}"


NEST_DEPTHS = st.one_of(st.sampled_from((1, 2, 3, 99, 100, 101, 199, 200, 201, 1999, 2000, 2001, 5000)),
                        st.integers(1, 3000))
_NESTINGS: dict[str, Callable[[str, int], str]] = {
    "paren": lambda t, n: "(" * n + t + ")" * n,
    "bracket": lambda t, n: "[" * n + t + "]" * n,
    "brace": lambda t, n: "x {" * n + t + "}" * n,
    "call": lambda t, n: "abs(" * n + t + ")" * n,
    "minus": lambda t, n: "-" * n + t,
    "spaced_minus": lambda t, n: "- " * n + t,
    "plus": lambda t, n: "+" * n + t,
    "not": lambda t, n: "not " * n + t,
    "power": lambda t, n: "2 ** " * n + t,
    "power_paren": lambda t, n: "(2 ** " * n + t + ")" * n,
    "sum": lambda t, n: t + " + 1" * n,
    "times": lambda t, n: t + " * 1" * n,
    "cross": lambda t, n: t + " x 1" * n,
    "compare": lambda t, n: t + " < 1" * n,
    "attr": lambda t, n: t + ".a" * n,
    "index": lambda t, n: t + "[0]" * n,
    "calls": lambda t, n: t + "()" * n,
    "unclosed": lambda t, n: "(" * n + t,
    "unopened": lambda t, n: t + ")" * n,
    "mixed": lambda t, n: "([" * n + t + "])" * n,
}


def _m_nest(draw, toks):
    i = _pick(draw, toks, {"number", "name", "string"})
    if i is None:
        return toks, "nothing to nest"
    how = draw(st.sampled_from(tuple(_NESTINGS)))
    n = draw(NEST_DEPTHS)
    out = list(toks)
    # a number keeps its unit outside the nesting only when the nesting closes before it
    out[i] = ("other", _NESTINGS[how](toks[i][1], n))
    return out, f"nest {_brief(toks[i][1])} at {_where(toks, i)} in {how} x{n}"


def _m_expression(draw, toks):
    i = _pick(draw, toks, {"number", "name", "string", "unit"})
    if i is None:
        return toks, "no value"
    new = draw(expressions())
    out = list(toks)
    out[i] = ("other", new)
    return out, f"replace {_brief(toks[i][1])} at {_where(toks, i)} by {_brief(new)}"


def _m_truncate(draw, toks):
    text = _join(toks)
    n = draw(st.integers(0, len(text)))
    return tokenize(text[:n]), f"truncate at character {n}"


TEXT_MUTATIONS = {
    "delete": _m_delete, "duplicate": _m_duplicate, "swap": _m_swap_tokens, "lines": _m_lines,
    "insert": _m_insert, "number": _m_number, "unit": _m_unit, "nest": _m_nest, "expression": _m_expression,
    "truncate": _m_truncate,
}


def _byte_mutation(draw, data: bytes) -> tuple[bytes, str]:
    how = draw(st.sampled_from(("insert", "overwrite", "truncate")))
    at = draw(st.integers(0, len(data)))
    if how == "truncate":
        return data[:at], f"truncate at byte {at}"
    junk = draw(st.one_of(st.binary(min_size=1, max_size=8),
                          st.sampled_from((b"\x00", b"\xff", b"\xc3", b"\xe2\x82", b"\xef\xbb\xbf", b"\x0c",
                                           b"\x0b", b"\r", b"\x1c", b"\x85", b"\xc2\x85", b"\xe2\x80\xa8",
                                           b"\x1b[31m", b"\x7f", b"\xed\xa0\x80"))))
    if how == "insert":
        return data[:at] + junk + data[at:], f"insert bytes {junk!r} at byte {at}"
    return data[:at] + junk + data[at + len(junk):], f"overwrite bytes at {at} with {junk!r}"


@st.composite
def mutated_corpus(draw, mutations: tuple[str, ...] = tuple(TEXT_MUTATIONS), max_steps: int = 4,
                   byte_level: bool = True) -> Case:
    """A seed file (samples/*.arch, dsl/stdlib/*.arch, the template) after 1..max_steps `mutations`,
    then, with `byte_level`, sometimes one raw byte-level edit."""
    origin = draw(st.sampled_from(tuple(SEEDS)))
    toks = tokenize(SEEDS[origin])
    steps = []
    for _ in range(draw(st.integers(1, max_steps))):
        how = draw(st.sampled_from(mutations))
        toks, step = TEXT_MUTATIONS[how](draw, toks)
        steps.append(step)
    data = _join(toks).encode("utf-8")
    if byte_level and draw(st.integers(0, 4)) == 0:
        data, step = _byte_mutation(draw, data)
        steps.append(step)
    return Case(origin, tuple(steps), data)


# ---- the oracle ------------------------------------------------------------------------------------

class Hang(BaseException):
    """Raised by SIGALRM inside archc; a BaseException so no `except Exception` in archc eats it."""


@contextlib.contextmanager
def time_limit(seconds: float):
    """Interrupt the (pure-Python) work in this thread after `seconds` with Hang, showing where."""
    def on_alarm(signum, frame):
        where = "".join(traceback.format_stack(frame)[-4:])
        raise Hang(f"archc check took more than {seconds:g} s; it was at:\n{where}")
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def run_archc_check(path: Path, limit: float = TIME_LIMIT) -> tuple[int, str, str]:
    """`archc check -I samples PATH` in this process: (exit code, stdout, stderr); `-I samples`
    lets a mutated workload sample find its machine (`import "machines/h100.arch"`). ARCHC_DEBUG
    is set, so an internal error propagates as its own exception with its traceback instead of
    exit 70."""
    from archc.cli import main
    out, err = io.StringIO(), io.StringIO()
    old = os.environ.get("ARCHC_DEBUG")
    os.environ["ARCHC_DEBUG"] = "1"
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), time_limit(limit):
            code = main(["check", "-I", str(ROOT / "samples"), str(path)])
    finally:
        if old is None:
            os.environ.pop("ARCHC_DEBUG", None)
        else:
            os.environ["ARCHC_DEBUG"] = old
    return code, out.getvalue(), err.getvalue()


CARET = re.compile(r"^\s*\^+$")


def expected_source_line(data: bytes, line: int) -> str | None:
    """The text of 1-based `line` as a diagnostic should show it (archc counts lines by '\\n';
    control characters show as U+FFFD, tabs expand to 4), or None if the file has no such line."""
    text = data.decode("utf-8", errors="replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.split("\n")
    if line > len(lines) or (line == len(lines) and not lines[-1]):
        return None
    raw = lines[line - 1]
    raw = raw[:-1] if raw.endswith("\r") else raw
    return "".join(ch if ch.isprintable() or ch == "\t" else "\ufffd" for ch in raw).expandtabs(4)


def check_outcome(path: Path, data: bytes, code: int, out: str, err: str) -> None:
    """The contract of `archc check`: exit 0 saying ok, or exit 1 with located diagnostics.

    The first diagnostic is located in the file, or (a mistake that surfaces inside a
    standard-library block or model, as test_robustness.py allows) in `<std.NAME>` with a note
    located in the file that says where it was used, or in a file it imports (a mutated
    `import "..."`) with a note located in the file at the import."""
    assert "internal error" not in err, f"archc reported an internal error:\n{err[-3000:]}"
    assert code in (0, 1), f"archc check exited {code}, not 0 or 1\nstdout: {out[-2000:]}\nstderr: {err[-3000:]}"
    if code == 0:
        assert out.startswith(f"{path}: ok ("), f"exit 0 without 'ok': {out[-2000:]!r}"
        return
    lines = err.splitlines()
    head = re.match(r"(.+?):(\d+):(\d+): error: \S", lines[0]) if lines else None
    where = head.group(1) if head else None
    std = re.fullmatch(r"<(std\.\w+)>", where or "")
    if std:
        assert any(re.match(re.escape(str(path)) + r":\d+:\d+: note: ", ln) for ln in lines), \
            f"exit 1 with an error in {where} and no note located in the file:\n{err[:3000]}"
        data = CORPUS[f"dsl/stdlib/{std.group(1)[4:]}.arch"].encode()
    elif where != str(path) and where is not None and \
            any(ln.startswith(f"{path}:") and ": note: " in ln and ln.endswith(" is imported here") for ln in lines):
        return  # inside an imported file, noted at the import (tests/test_user_imports.py checks those)
    else:
        assert where == str(path), \
            f"exit 1, but the first stderr line is not 'FILE:LINE:COL: error: ...':\n{err[:3000]}"
    line = int(head.group(2))
    shown = expected_source_line(data, line)
    if shown is None and len(lines) < 3:
        return  # located past the file's last line (the empty file): there is no line to show
    assert len(lines) >= 3 and CARET.match(lines[2]), \
        f"exit 1, but no caret line under the first diagnostic:\n{err[:3000]}"
    if shown is not None and len(shown) <= 120:
        assert lines[1] == "    " + shown, (
            f"the first diagnostic shows a line that is not line {line} of the file:\n"
            f"  shown:    {lines[1][4:]!r}\n  expected: {shown!r}\n{err[:3000]}")


def assert_checks_cleanly(case: Case, directory: Path, limit: float = TIME_LIMIT) -> tuple[int, str]:
    """The oracle: write `case` to a file and run `archc check` on it. Any exception other than
    the diagnostics family fails (with its own traceback), as does a run over `limit` seconds or
    an outcome that breaks the contract (check_outcome). Returns (exit code, stderr)."""
    path = directory / "fuzz.arch"
    path.write_bytes(case.data)
    t0 = time.monotonic()
    try:
        code, out, err = run_archc_check(path, limit)
    except Hang as e:
        raise AssertionError(str(e)) from None
    elapsed = time.monotonic() - t0
    assert elapsed < limit, f"archc check took {elapsed:.1f} s (limit {limit:g} s)"
    check_outcome(path, case.data, code, out, err)
    return code, err


# ---- shrinking a failing text by hand ------------------------------------------------------------

def failure_signature(exc: BaseException) -> tuple:
    """What makes two failures the same bug: the exception type and the innermost frame of archc
    (or, for a broken contract, the first line of the assertion's message)."""
    if isinstance(exc, AssertionError):
        return ("AssertionError", re.sub(r"\d+", "N", str(exc).split("\n", 1)[0].split(":", 1)[0])[:60])
    frames = traceback.extract_tb(exc.__traceback__)
    own = [f for f in frames if "/tests/" not in f.filename and "/hypothesis/" not in f.filename]
    archc = [f for f in own if "/site-packages/" not in f.filename or "/archc/" in f.filename]
    f = (archc or own or frames or [None])[-1]
    return (type(exc).__name__, f"{Path(f.filename).name}:{f.lineno} in {f.name}" if f else None)


def minimize(data: bytes, fails: Callable[[bytes], bool], budget_s: float = 10.0,
             max_tries: int = 4000) -> bytes:
    """Delta debugging: drop lines, then tokens, then characters, as long as `fails` still holds."""
    t_end = time.monotonic() + budget_s
    tries = 0

    def attempt(candidate: bytes) -> bool:
        nonlocal tries
        if tries >= max_tries or time.monotonic() > t_end:
            return False
        tries += 1
        return fails(candidate)

    def split(d: bytes, level: str) -> list[bytes]:
        if level == "lines":
            return d.splitlines(keepends=True)
        if level == "tokens":
            return [t.encode() for _, t in tokenize(d.decode("utf-8", errors="surrogateescape"))] \
                if _utf8(d) else [bytes([b]) for b in d]
        return [d[i:i + 1] for i in range(len(d))]

    for level in ("lines", "tokens", "chars"):
        parts = split(data, level)
        n = max(1, len(parts) // 2)
        while n >= 1 and parts:
            i, changed = 0, False
            while i < len(parts):
                cand = parts[:i] + parts[i + n:]
                if attempt(b"".join(cand)):
                    parts, changed = cand, True
                else:
                    i += n
            if not changed:
                n //= 2
        data = b"".join(parts)
    return data


def _utf8(d: bytes) -> bool:
    try:
        d.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


# ---- a survey: every distinct failure of a long run ---------------------------------------------

def strategies() -> dict[str, st.SearchStrategy[Case]]:
    """The input families of tests/test_fuzz.py, by name."""
    return {
        "mutated_corpus": mutated_corpus(),
        "degenerate_numbers": mutated_corpus(("number",), max_steps=3, byte_level=False),
        "unit_swaps": mutated_corpus(("unit",), max_steps=3, byte_level=False),
        "deep_nesting": mutated_corpus(("nest",), max_steps=2, byte_level=False),
        "truncation_and_raw_bytes": mutated_corpus(("truncate", "lines"), max_steps=1, byte_level=True),
        "grammar_designs": grammar_designs(),
        "template_designs": template_designs(),
        "model_designs": model_designs(),
    }


def survey(examples_per_strategy: int, directory: Path, seed: int | None = None, log=print) -> dict:
    """Run the oracle over every strategy without stopping at a failure; group the failures by
    failure_signature. Returns {signature: {"count", "case", "error", "strategy"}} (the first
    case of each), plus the counts under the key "_totals". For finding bugs, not for CI:
        python tests/fuzz_support.py 3000 [SEED]    # examples per strategy
    """
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed
    found: dict = {}
    totals = {"inputs": 0, "exit 0": 0, "exit 1": 0, "seconds": 0.0, "slowest": 0.0}
    t_start = time.monotonic()
    for name, strategy in strategies().items():
        @settings(max_examples=examples_per_strategy, database=None, deadline=None, phases=(Phase.generate,),
                  suppress_health_check=list(HealthCheck))
        @given(case=strategy)
        def body(case):
            totals["inputs"] += 1
            t0 = time.monotonic()
            try:
                code, _ = assert_checks_cleanly(case, directory)
                totals[f"exit {code}"] += 1
            except Exception as e:
                sig = failure_signature(e)
                entry = found.setdefault(sig, {"count": 0, "case": case, "strategy": name,
                                               "error": "".join(traceback.format_exception(e))})
                entry["count"] += 1
                if entry["count"] == 1:
                    log(f"[{name}] new failure {sig}: {case!r}"[:300])
            totals["slowest"] = max(totals["slowest"], time.monotonic() - t0)
        if seed is not None:
            body = hseed(seed)(body)
        t0 = time.monotonic()
        body()
        log(f"[{name}] {examples_per_strategy} examples in {time.monotonic() - t0:.0f} s")
    totals["seconds"] = time.monotonic() - t_start
    found["_totals"] = totals
    return found


if __name__ == "__main__":
    import sys
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else None
    d = Path(tempfile.mkdtemp(prefix="archc-fuzz-"))
    result = survey(n, d, seed, log=lambda s: print(s, flush=True))
    totals = result.pop("_totals")
    print(f"\n{totals['inputs']} inputs in {totals['seconds']:.0f} s (exit 0: {totals['exit 0']}, exit 1: "
          f"{totals['exit 1']}, slowest {totals['slowest']:.2f} s); {len(result)} distinct failures\n")
    for sig, entry in sorted(result.items(), key=lambda kv: -kv[1]["count"]):
        case = entry["case"]

        def same(data: bytes, sig=sig) -> bool:
            try:
                assert_checks_cleanly(Case("minimize", (), data), d)
            except Exception as again:
                return failure_signature(again) == sig
            return False
        small = minimize(case.data, same, budget_s=60) if "took more than" not in entry["error"] else case.data
        print(f"=== {sig}: {entry['count']} inputs (first in {entry['strategy']})\n{case!r}\n"
              f"minimal reproducer ({len(small)} bytes): {small!r}\n{entry['error'][-2500:]}\n", flush=True)
