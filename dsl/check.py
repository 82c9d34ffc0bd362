"""Checking: AST -> IR. Resolves names, normalises units, validates every declaration and run,
and collects every problem before stopping."""
from __future__ import annotations

import copy
import math
import threading
from collections import OrderedDict
from dataclasses import replace
from functools import lru_cache
from importlib import resources

from . import ast
from . import units as U
from .diagnostics import CheckError, Collector
from .diagnostics import did_you_mean as _hint
from .ir import (ALLREDUCE, Analog, Callable_, Chip, Design, Engine, Format, Level, Machine, MatrixUnit, Memory, Network,
                 Param, Reliability, Run, Storage, System, Tile, VectorUnit)
from .imports import annotate, annotate_error, link, qualify
from .parser import parse
from .source import Source, Span
from .values import MAX_INT, EvalError, Evaluator, Q, Str, Sym, brief, fmt_q, show
from .vocab import OpClass, Topology

DECL_KINDS = ("import", "format", "tile", "chip", "system", "model", "block", "run")
STDLIB = ("std.formats", "std.blocks", "std.models")
TOPOLOGIES = Topology.words()
MAX_MEMBERS = 10**8  # tiles per chip, members per system: 100x a wafer, and C ints stay safe
# Plausible ranges (SI, with the dimension they are shown in): a figure outside its range is a
# typo or a unit slip, not a machine. Wide on purpose: a whole wafer declared as one tile, a
# microcontroller-class tile, a data hall's pooled memory all fall inside.
RANGES = {
    "clock": (1e6, 100e9, U.FREQUENCY),
    "sram size": (1.0, 1e12, U.BYTES),
    "bandwidth": (1e3, 1e18, U.BANDWIDTH),
    "latency": (1e-12, 1.0, U.TIME),
    "energy per byte": (1e-18, 1e-6, U.ENERGY_PER_BYTE),
    "energy per flop": (1e-18, 1e-9, U.ENERGY_PER_FLOP),
    "matrix rate": (1e6, 1e19, U.FLOP_RATE),
    "vector rate": (1e-3, 1e9, U.FLOPS_PER_CYCLE),
    "lanes": (1.0, 1e8, U.NONE),
    "area": (1e-12, 0.1, U.AREA),
    "traffic": (1e-6, 1e3, U.BYTES_PER_FLOP),
    "noise": (1e-9, 10.0, U.NONE),
    "adc bound": (1e-3, 1e6, U.NONE),
    "memory size": (1e3, 1e21, U.BYTES),
    "process": (1e-10, 1e-5, U.LENGTH),
    "power": (1e-3, 1e6, U.POWER),
    "bucket": (1.0, 1e12, U.BYTES),
    "mtbf": (60.0, 1e13, U.TIME),  # a minute to ~300,000 years: FIT 1e17 down to 0.1
    "repair": (0.0, 1e8, U.TIME),
    "restart": (0.0, 1e7, U.TIME),
    "checkpoint interval": (1.0, 1e8, U.TIME),
    "cost": (1e-2, 1e12, U.COST),
}
# Component kinds a failure rate may be declared for (docs/language.md, Failures)
CHIP_COMPONENTS = ("chip", "memory", "link", "tile")
SYSTEM_COMPONENTS = ("node", "link")
MAX_SPARES = 10**6
MAX_DIMS = 6  # dimensions of a system's grid (TPU pods: 3; Blue Gene/Q: 5; Fugaku's Tofu: 6)
MAX_WAVE = 1 << 16  # a GPU thread block's output tile is at most 256 x 256; a C int holds this
BAD_CLOCK = -1.0
POWER_SCALING = ("cubic", "linear")  # power under a limit: DVFS (V follows f) or fixed voltage
DATAFLOWS = ("weight_stationary", "output_stationary")  # systolic arrays (SCALE-Sim's WS and OS)
ANALOG_OPTIONS = ("analog", "dac", "adc", "noise", "program_noise", "bound", "array")  # a tile's clock is missing or invalid (already reported)
OP_CLASSES = OpClass.words()


def _crossed(e) -> list:
    """The factors of `A x B x C ...` (x is left-associative), in order; [e] if e is no product."""
    out = []
    while isinstance(e, ast.BinOp) and e.op == "x":
        out.insert(0, e.right)
        e = e.left
    return [e] + out


@lru_cache(maxsize=None)
def _stdlib(name: str) -> ast.File:
    fname = name.split(".", 1)[1] + ".arch"
    text = resources.files("archc.dsl").joinpath("stdlib", fname).read_text(encoding="utf-8")
    return parse(Source(f"<{name}>", text))


def _is_mx(kw: ast.Kwarg) -> bool:
    v = kw.value
    return isinstance(v, ast.Call) and isinstance(v.func, ast.Name) and v.func.id == "mx"


def _dependency_order(deps: dict[str, list[str]], cycle) -> list[str]:
    """Names in an order where each comes after those it depends on, in declaration order
    otherwise; `cycle(chain)` is called once per cycle (`a -> b -> a`), whose names and their
    dependents are left out."""
    order, state = [], {}

    def visit(n, stack):
        if state.get(n) == 2:
            return n in order
        if state.get(n) == 1:
            cycle(stack[stack.index(n):] + [n])
            return False
        state[n] = 1
        ok = all([visit(m, stack + [n]) for m in deps[n]])
        state[n] = 2
        if ok:
            order.append(n)
        return ok

    for n in deps:
        visit(n, [])
    return order


def cycle_exponent(dim, d) -> int:
    """How a figure of dimension `dim` converts to `d` with a clock: 1 if it is `d` per cycle
    (B/cycle for B/s: times the clock), -1 if it is `d` in cycles (cycles for s: over the
    clock), 0 if neither."""
    if dim * U.CYCLES / U.TIME == d:
        return 1
    if dim / U.CYCLES * U.TIME == d:
        return -1
    return 0


class Checker:
    def __init__(self, file: ast.File, source_name: str):
        self.file = file
        self.source_name = source_name
        self.diag = Collector()
        self.decls: dict[str, dict[str, ast.Prop | ast.Kwarg]] = {k: {} for k in DECL_KINDS}
        self.where: dict[str, tuple[str, Span]] = {}
        self.formats: dict[str, Format] = {}
        self.tiles: dict[str, Tile] = {}
        self.chips: dict[str, Chip] = {}
        self.systems: dict[str, System] = {}
        self.callables: dict[str, Callable_] = {}
        self.imported: set[str] = set()
        self.costed_nodes: dict[str, float] = {}
        self.bad_sustained: set[str] = set()  # tiles whose sustained clock was refused (reported)
        self.duplicated: set[str] = set()  # names declared twice (reported once, at the second)
        self.system_chips: dict[str, int] = {}  # chips in each resolved system
        self.grid_dims: dict[tuple[str, str], tuple[int, ...]] = {}  # (kind, name) -> sizes of an N-D grid
        self.machines: dict[str, Machine] = {}  # machine() by chip or system name (forks share it)
        self.graphs: dict = {}  # model instances by model and arguments (dsl/runs.py; forks share it)

    def fork(self) -> "Checker":
        """A copy for resolving runs: the checked declarations shared (run resolution only reads
        them), its own diagnostics (the declarations' warnings carried over), and the models
        instantiated so far shared (dsl/runs.py keeps them by arguments)."""
        c = copy.copy(self)
        c.diag = Collector()
        c.diag.warnings = list(self.diag.warnings)
        return c

    # ---- collection --------------------------------------------------------------------
    def collect(self, stmts) -> None:
        for st in stmts:
            if isinstance(st, ast.Import):
                if st.path is None:  # a file's imports were resolved by dsl/imports.py
                    self._import(st)
                continue
            if isinstance(st, ast.Assign):
                self.diag.error(st.target_span or st.span, f"'{st.target} = ...' at the top level; "
                                f"declare a format with `format {st.target} = float(...)`")
                continue
            if st.name not in DECL_KINDS:
                self.diag.error(st.name_span or st.span, f"unknown declaration '{st.name}'; expected one of "
                                f"{', '.join(DECL_KINDS)}{_hint(st.name, DECL_KINDS)}")
                continue
            if st.name == "format":
                if len(st.args) != 1 or not isinstance(st.args[0], ast.Kwarg) or st.body is not None:
                    self.diag.error(st.span, "a format is declared as `format NAME = float(...)`")
                    continue
                kw = st.args[0]
                name_span = Span(kw.span.source, kw.span.line, kw.span.col, kw.span.line, kw.span.col + len(kw.name))
                self._declare("format", kw.name, kw, name_span)
                continue
            if not st.args or st.body is None:
                self.diag.error(st.span, f"a {st.name} is declared as `{st.name} NAME {{ ... }}`"
                                + (" or `NAME(params) { ... }`" if st.name in ("model", "block", "run") else ""))
                continue
            head = st.args[0]
            name = head.id if isinstance(head, ast.Name) else \
                head.func.id if isinstance(head, ast.Call) and isinstance(head.func, ast.Name) else None
            if name is None or len(st.args) != 1 or (isinstance(head, ast.Call) and st.name not in ("model", "block", "run")):
                self.diag.error(head.span, f"expected the {st.name}'s name")
                continue
            self._declare(st.name, name, st, head.func.span if isinstance(head, ast.Call) else head.span)

    def _declare(self, kind: str, name: str, node, span: Span) -> None:
        # Runs are named by the user on the command line and live apart from the machine and
        # model names they refer to (a run `gemm` may run the model `gemm`).
        key = f"run:{name}" if kind == "run" else name
        if key in self.where:
            other_kind, other = self.where[key]
            self.diag.error(span, f"'{name}' is already declared as a {other_kind}",
                            (other, f"'{name}' was first declared here"))
            self.duplicated.add(name)  # its uses would only repeat this error
            return
        if name in ("true", "false", "amp"):
            self.diag.error(span, f"'{name}' is reserved")
            return
        self.where[key] = (kind, span)
        self.decls[kind][name] = node

    def _import(self, st: ast.Import) -> None:
        text = ast.expr_text(st.target)
        if text not in STDLIB:
            self.diag.error(st.span, f"unknown module '{text}'; archc ships {', '.join(STDLIB)}; a file is "
                                     f"imported by its path in quotes: `import \"machines/h100.arch\"`")
            return
        if st.alias is not None or st.names is not None:
            self.diag.error(st.span, f"a standard-library module is imported whole: `import {text}`")
            return
        if text in self.imported:
            return
        self.imported.add(text)
        self.collect(_stdlib(text).stmts)

    # ---- small evaluators --------------------------------------------------------------
    def value(self, e, env=None):
        try:
            return Evaluator(env or {}).eval(e)
        except EvalError as err:
            self.diag.error(err.span, err.message)
            return None

    def quantity(self, e, dims, what: str, clock: float | None = None, env=None,
                 positive=True, allow_zero=False, within: str | None = None) -> float | None:
        """Evaluate `e` as one of `dims` (cycle-based dims convert with `clock`); SI value,
        refused outside the plausible range RANGES[within]."""
        v = self.value(e, env)
        if v is None:
            return None
        if not isinstance(v, Q):
            self.diag.error(e.span, f"{what} must be {U.describe(dims[0])}, found {show(v)}")
            return None
        if dims == [U.BYTES] and v.dim == U.BYTES:
            self._bits_for_bytes(e, what)
        for d in dims:
            if v.dim == d:
                return self._sign(e, v.value, what, positive, allow_zero, within)
            if (x := cycle_exponent(v.dim, d)) and clock and clock > 0:
                return self._sign(e, v.value * clock if x > 0 else v.value / clock, what, positive, allow_zero,
                                  within)
        if clock == BAD_CLOCK and any(cycle_exponent(v.dim, d) for d in dims):
            return None  # a per-cycle figure, and the clock is missing or wrong: reported there
        want = " or ".join(U.describe(d) for d in dims)
        self.diag.error(e.span, f"{what} must be {want}, found {U.describe(v.dim)}")
        return None

    def _bits_for_bytes(self, e, what: str) -> None:
        """A capacity written in bits (`48 Kb`) is the classic slip for bytes: say what it
        means and how to write bytes, but accept it (an HBM die's 16 Gb is a capacity)."""
        for n in ast.walk(e):
            if isinstance(n, ast.Number) and n.unit in U.BIT_UNITS:
                nbytes = fmt_q(Q(float(n.value) * U.UNITS[n.unit][0], U.BYTES))
                byte_unit = n.unit[:-1] + "B" if n.unit not in ("b", "bit") else "B"
                self.diag.warning(n.span, f"{what} in bits: {n.text} {n.unit} is {nbytes}; "
                                          f"for bytes write {n.text} {byte_unit}")

    def _sign(self, e, x, what, positive, allow_zero, within=None):
        found = brief(ast.expr_text(e).strip("()"), 60)
        if positive and (x < 0 or (x == 0 and not allow_zero)):
            self.diag.error(e.span, f"{what} must be {'≥ 0' if allow_zero else 'positive'}, found {found}")
            return None
        if within is not None:
            lo, hi, dim = RANGES[within]
            if not (lo <= x <= hi or (x == 0 and allow_zero)):
                self.diag.error(e.span, f"{what} must be {'0 or ' if allow_zero else ''}between "
                                        f"{fmt_q(Q(lo, dim))} and {fmt_q(Q(hi, dim))}, found {found}")
                return None
        if x > 1e30:
            self.diag.error(e.span, f"{what} of {x:.3g} is absurdly large")
            return None
        return x

    def count(self, e, what: str, env=None, minimum=1, maximum=MAX_INT) -> int | None:
        v = self.value(e, env)
        if v is None:
            return None
        if not (isinstance(v, Q) and v.dim.dimensionless):
            self.diag.error(e.span, f"{what} must be a whole number, found {show(v)}")
            return None
        if not float(v.value).is_integer():
            self.diag.error(e.span, f"{what} must be a whole number, found {v.value:g}")
            return None
        if v.value < minimum:
            self.diag.error(e.span, f"{what} must be at least {minimum}, found {int(v.value)}")
            return None
        if v.value > MAX_INT:
            self.diag.error(e.span, f"{what} of {v.value:.3g} is absurdly large")
            return None
        if v.value > maximum:
            self.diag.error(e.span, f"{what} must be at most {maximum:,}, found {int(v.value):,}")
            return None
        return int(v.value)

    def fraction(self, e, what: str, env=None) -> float | None:
        v = self.value(e, env)
        if v is None:
            return None
        if not (isinstance(v, Q) and v.dim.dimensionless) or not (0 < v.value <= 1):
            self.diag.error(e.span, f"{what} must be a fraction in (0, 1], found {show(v)}")
            return None
        return float(v.value)

    def symbol(self, e, choices, what: str, env=None) -> str | None:
        v = self.value(e, env) if env is not None else (Sym(e.id) if isinstance(e, ast.Name) else self.value(e))
        if isinstance(v, Sym) and v.name in choices:
            return v.name
        if isinstance(v, bool) and ("true" in choices):
            return "true" if v else "false"
        if v is not None:
            found = f"'{v.name}'" if isinstance(v, Sym) else show(v)
            hint = _hint(v.name, choices) if isinstance(v, Sym) else ""
            self.diag.error(e.span, f"{what} must be one of {', '.join(choices)}; found {found}{hint}")
        return None

    def props(self, decl: ast.Prop, schema: dict[str, bool], kind: str) -> dict[str, list[ast.Prop]]:
        """Group a body's properties by name; unknown names and repeats of single ones are errors."""
        out: dict[str, list[ast.Prop]] = {}
        for st in decl.body:
            if isinstance(st, ast.Assign):
                self.diag.error(st.span, f"a {kind} holds properties (`name value`), not assignments")
                continue
            if st.name not in schema:
                self.diag.error(st.name_span or st.span, f"unknown property '{st.name}' in a {kind}; "
                                f"a {kind} has {', '.join(schema)}{_hint(st.name, schema)}")
                continue
            if st.body is not None:
                self.diag.error(st.span, f"'{st.name}' takes no block")
                continue
            if not st.args:
                self.diag.error(st.span, f"'{st.name}' needs a value")
                continue
            if st.name in out and not schema[st.name]:
                self.diag.error(st.name_span or st.span, f"'{st.name}' is given twice",
                                (out[st.name][0].span, "first given here"))
                continue
            out.setdefault(st.name, []).append(st)
        return out

    @staticmethod
    def split(p: ast.Prop) -> tuple[list, dict]:
        pos = [a for a in p.args if not isinstance(a, ast.Kwarg)]
        kw = {a.name: a for a in p.args if isinstance(a, ast.Kwarg)}
        return pos, kw

    def only(self, p: ast.Prop, npos: int, allowed=()) -> tuple[list, dict] | None:
        pos, kw = self.split(p)
        ok = True
        if len(pos) != npos:
            self.diag.error(p.span, f"'{p.name}' takes {npos} value{'s' if npos != 1 else ''}"
                            + (f" and the options {', '.join(allowed)}" if allowed else "")
                            + f", found {len(pos)}")
            ok = False
        for k, a in kw.items():
            if k not in allowed:
                self.diag.error(a.span, f"'{p.name}' has no option '{k}'"
                                + (f"; it takes {', '.join(allowed)}" if allowed else "") + _hint(k, allowed))
                ok = False
        return (pos, kw) if ok else None

    def need(self, props, key, decl, kind) -> ast.Prop | None:
        if key not in props:
            self.diag.error(decl.args[0].span, f"{kind} '{ast.expr_text(decl.args[0]).split('(')[0]}' "
                                               f"needs a '{key}'")
            return None
        return props[key][0]

    # ---- formats -----------------------------------------------------------------------
    def check_formats(self) -> None:
        from .formats import resolve_format  # format semantics live in one place
        decls = self.decls["format"]
        # MX formats name their element and scale formats, which resolve first; a format that
        # refers to itself, directly or through others, is refused with the chain
        deps = {name: sorted(n for n in ast.names_in(kw.value.args) if n in decls) if _is_mx(kw) else []
                for name, kw in decls.items()}
        for name in _dependency_order(deps, lambda chain: self.diag.error(
                decls[chain[0]].span, f"format '{chain[0]}' is defined in terms of itself: "
                                      f"{' -> '.join(chain)}")):
            fmt = resolve_format(self, name, decls[name])
            if fmt is not None:
                self.formats[name] = fmt

    def reported(self, name: str, *kinds: str) -> bool:
        """Whether a use of `name` as one of `kinds` fails only because of an error already
        reported: the name is declared twice, or declared as one of `kinds` and refused."""
        return name in self.duplicated or any(name in self.decls[k] for k in kinds)

    def format_name(self, e, what="a format") -> str | None:
        if isinstance(e, ast.Name) and e.id in self.formats:
            return e.id
        if isinstance(e, ast.Name):
            if self.reported(e.id, "format"):
                return None  # already reported
            self.diag.error(e.span, f"unknown format '{e.id}'{_hint(e.id, self.formats)}")
        else:
            self.diag.error(e.span, f"expected {what} name")
        return None

    # ---- tiles -------------------------------------------------------------------------
    def check_tiles(self) -> None:
        schema = {"clock": False, "sram": False, "matrix": True, "vector": True}
        for name, d in self.decls["tile"].items():
            ps = self.props(d, schema, "tile")
            clock = sustained = None
            if (p := self.need(ps, "clock", d, "tile")) and (a := self.only(p, 1, ("sustained",))):
                clock = self.quantity(a[0][0], [U.FREQUENCY], "a clock", within="clock")
                if "sustained" in a[1]:
                    e = a[1]["sustained"].value
                    sustained = self.quantity(e, [U.FREQUENCY], "a sustained clock", within="clock")
                    if sustained and clock and sustained > clock:
                        self.diag.error(e.span, f"the sustained clock ({sustained / 1e9:g} GHz) is above the "
                                                f"clock ({clock / 1e9:g} GHz): it is the clock held at the power "
                                                "limit, at most the boost clock")
                        sustained = None
                        self.bad_sustained.add(name)
            clock = clock or BAD_CLOCK
            sram = (0.0, 0.0, 0.0, None)
            if (p := self.need(ps, "sram", d, "tile")) and (a := self.only(p, 1, ("bandwidth", "latency", "energy"))):
                pos, kw = a
                size = self.quantity(pos[0], [U.BYTES], "an SRAM size", within="sram size")
                bw = self.quantity(kw["bandwidth"].value, [U.BANDWIDTH], "an SRAM bandwidth", clock,
                                   within="bandwidth") \
                    if "bandwidth" in kw else None
                if "bandwidth" not in kw:
                    self.diag.error(p.span, "'sram' needs `bandwidth = ...` (per tile, B/s or B/cycle)")
                lat = self.quantity(kw["latency"].value, [U.TIME], "an SRAM latency", clock, allow_zero=True,
                                    within="latency") \
                    if "latency" in kw else 0.0
                en = self.quantity(kw["energy"].value, [U.ENERGY_PER_BYTE], "an SRAM energy", allow_zero=True,
                                   within="energy per byte") \
                    if "energy" in kw else None
                sram = (size, bw, lat, en)
            matrix = []
            for p in ps.get("matrix", []):
                m = self._matrix(p, clock)
                if m:
                    if any((x.a, x.b) == (m.a, m.b) for x in matrix):
                        self.diag.error(p.span, f"a matrix unit for {m.a} x {m.b} is already declared")
                    matrix.append(m)
            vector = []
            for p in ps.get("vector", []):
                v = self._vector(p, clock)
                if v:
                    vector.append(v)
            if "matrix" not in ps and "vector" not in ps:
                self.diag.error(d.args[0].span, f"tile '{name}' declares no compute: add a 'matrix' or 'vector' unit")
            if clock > 0 and all(x is not None for x in sram[:3]):
                self.tiles[name] = Tile(name, clock, sram[0], sram[1], sram[2], sram[3], tuple(matrix),
                                        tuple(vector), sustained_hz=sustained, span=d.span)

    def _rate(self, e, clock, what):
        """MACs or FLOPs per cycle (or per second), as FLOP/s."""
        return self.quantity(e, [U.FLOP_RATE], what, clock, within="matrix rate")

    def _energy_per_flop(self, kw):
        if "energy" not in kw:
            return None
        e = kw["energy"].value
        v = self.value(e)
        if isinstance(v, Q) and v.dim == U.ENERGY:
            return self._sign(e, v.value / 2, "an energy per operation", True, True, "energy per flop")  # per MAC / FMA = 2 flop
        return self.quantity(e, [U.ENERGY_PER_FLOP], "an energy per operation", allow_zero=True,
                             within="energy per flop")

    def _matrix(self, p: ast.Prop, clock) -> MatrixUnit | None:
        a = self.only(p, 1, ("energy", "sram", "dataflow", "fragment", "double_buffered") + ANALOG_OPTIONS)
        if not a:
            return None
        (sig,), kw = a
        # A x B -> ACC : RATE (or : AREA, the rate then derived from the cost model)
        if not (isinstance(sig, ast.BinOp) and sig.op == ":" and isinstance(sig.left, ast.BinOp)
                and sig.left.op == "->" and isinstance(sig.left.left, ast.BinOp) and sig.left.left.op == "x"):
            self.diag.error(sig.span, "a matrix unit is written `matrix A x B -> ACC : RATE` "
                                      "(e.g. `matrix bf16 x bf16 -> fp32 : 1024 mac/cycle`, or `: 0.5 mm2`)")
            return None
        fa = self.format_name(sig.left.left.left)
        fb = self.format_name(sig.left.left.right)
        fc = self.format_name(sig.left.right, "an accumulator format")
        v = self.value(sig.right)
        area = None
        if isinstance(v, Q) and v.dim == U.AREA:
            area = self._sign(sig.right, v.value, "a matrix unit's area", True, False, "area")
            rate = 0.0 if area is not None else None
        else:
            rate = self._rate(sig.right, clock, "a matrix throughput")
        en = self._energy_per_flop(kw)
        # operand bytes a MAC moves to and from SRAM, for datapaths that work memory to memory
        traffic = self.quantity(kw["sram"].value, [U.BYTES / U.FLOPS], "SRAM traffic per operation", within="traffic",
                                allow_zero=True) if "sram" in kw else 0.0
        analog = self._analog(p, kw)
        per_cycle = None if rate is None else (rate / clock if clock > 0 else 0.0)
        engine = self._engine(kw, per_cycle, analog) if analog is not False else None
        if None in (fa, fb, fc, rate, traffic) or analog is False or engine is False:
            return None
        return MatrixUnit(fa, fb, fc, rate / clock if clock > 0 else 0, en, traffic, analog or None, area,
                          engine=engine or None, operand_bytes=(self.formats[fa].bytes, self.formats[fb].bytes),
                          span=p.span)

    def _engine(self, kw: dict, flops_per_cycle: float | None, analog) -> Engine | None | bool:
        """A digital unit's geometry (None: none declared; False: an error was reported):
        `array = ROWS x COLS` systolic arrays (as many as its rate holds) with a `dataflow`,
        and a GPU tensor core's instruction shape `fragment = M x N x K`."""
        rows = cols = arrays = 0
        flow = ""
        frag = (0, 0, 0)
        if "array" in kw and not analog:
            e = kw["array"].value
            if not (isinstance(e, ast.BinOp) and e.op == "x" and not (isinstance(e.left, ast.BinOp) and e.left.op == "x")):
                self.diag.error(e.span, "a systolic array is written `array = ROWS x COLS` (MACs per array)")
                return False
            rows = self.count(e.left, "array rows", maximum=MAX_WAVE)
            cols = self.count(e.right, "array columns", maximum=MAX_WAVE)
            if not rows or not cols:
                return False
            if flops_per_cycle is None:
                return None  # the rate's error is reported
            if flops_per_cycle == 0.0:  # a rate derived from an area (or no clock): arrays follow it later
                arrays = 0
            else:
                n = flops_per_cycle / 2 / (rows * cols)
                if n < 1 or abs(n - round(n)) > 1e-9 * n:
                    self.diag.error(e.span, f"the unit's {flops_per_cycle / 2:g} MAC/cycle is not a whole number of "
                                            f"{rows} x {cols} arrays ({n:.4g}); its rate is the arrays' MACs per cycle")
                    return False
                arrays = int(round(n))
            flow = "weight_stationary"
        if "dataflow" in kw:
            flow_e = kw["dataflow"].value
            if not rows:
                self.diag.error(flow_e.span, "'dataflow' describes a systolic array: add `array = ROWS x COLS`")
                return False
            flow = self.symbol(flow_e, DATAFLOWS, "a dataflow")
            if flow is None:
                return False
        buffered = False
        if "double_buffered" in kw:
            e = kw["double_buffered"].value
            if not rows:
                self.diag.error(e.span, "'double_buffered' describes a systolic array: add `array = ROWS x COLS`")
                return False
            v = self.symbol(e, ("true", "false"), "double_buffered")
            if v is None:
                return False
            buffered = v == "true"
        if "fragment" in kw:
            dims = _crossed(kw["fragment"].value)
            if len(dims) != 3:
                self.diag.error(kw["fragment"].value.span, "a tensor-core fragment is written `fragment = M x N x K` "
                                                           "(the MMA instruction's shape, e.g. 16 x 8 x 16)")
                return False
            frag = tuple(self.count(x, f"the fragment's {d}", maximum=MAX_WAVE) for x, d in zip(dims, "MNK"))
            if not all(frag):
                return False
        if not rows and not frag[0]:
            return None
        return Engine(rows, cols, arrays, flow, frag, buffered)

    def _analog(self, p: ast.Prop, kw: dict):
        """An analog array's parameters (None: digital; False: an error was reported)."""
        given = [k for k in ANALOG_OPTIONS if k in kw and (k != "array" or "analog" in kw)]
        if not given:
            return None
        if "analog" not in kw:
            self.diag.error(kw[given[0]].span, f"'{given[0]}' describes an analog array: add `analog = true`")
            return False
        flag = self.value(kw["analog"].value)
        if flag is not True:
            if flag is not False and flag is not None:
                self.diag.error(kw["analog"].value.span, "'analog' must be true or false")
                return False
            return None
        d = {k: kw[k].value for k in given}
        dac = self.count(d["dac"], "DAC bits") if "dac" in d else 7
        adc = self.count(d["adc"], "ADC bits") if "adc" in d else 9
        # IBM aihwkit's defaults (docs/sources.md): output noise 0.06 of the weight range, 2% programming
        # noise, an ADC bound of 12 weight ranges, 256 x 256 arrays
        noise = self.quantity(d["noise"], [U.NONE], "output noise", allow_zero=True, within="noise") if "noise" in d else 0.06
        prog = self.quantity(d["program_noise"], [U.NONE], "programming noise", allow_zero=True,
                                 within="noise") \
            if "program_noise" in d else 0.02
        bound = self.quantity(d["bound"], [U.NONE], "the ADC bound", within="adc bound") if "bound" in d else 12.0
        rows = cols = 256
        if "array" in d:
            e = d["array"]
            if isinstance(e, ast.BinOp) and e.op == "x":
                rows, cols = self.count(e.left, "array rows"), self.count(e.right, "array columns")
            else:
                self.diag.error(e.span, "an analog array's size is written `array = ROWS x COLS`")
                return False
        for bits, what in ((dac, "DAC"), (adc, "ADC")):
            if bits is not None and bits > 24:
                self.diag.error(d.get(what.lower(), p).span, f"{bits} {what} bits is beyond any analog array")
                return False
        if None in (dac, adc, noise, prog, bound, rows, cols):
            return False
        return Analog(dac, adc, noise, prog, bound, rows, cols)

    def _vector(self, p: ast.Prop, clock) -> VectorUnit | None:
        a = self.only(p, 1, ("energy",))
        if not a:
            return None
        (sig,), kw = a
        if not (isinstance(sig, ast.BinOp) and sig.op == ":"):
            self.diag.error(sig.span, "a vector unit is written `vector FORMAT : N lanes` "
                                      "(FMA lanes; or a rate such as `64 flop/cycle`)")
            return None
        f = self.format_name(sig.left)
        v = self.value(sig.right)
        rate = None
        if isinstance(v, Q) and v.dim.dimensionless:
            lanes = self._sign(sig.right, v.value, "a vector width", True, False, "lanes")
            rate = 2 * lanes if lanes is not None else None  # FMA lanes
        elif v is not None:
            rate = self.quantity(sig.right, [U.FLOPS_PER_CYCLE], "a vector throughput", within="vector rate")
        en = self._energy_per_flop(kw)
        if None in (f, rate):
            return None
        return VectorUnit(f, rate, en, span=p.span)

    # ---- networks, memories, chips, systems --------------------------------------------
    def network(self, p: ast.Prop, clock=None) -> Network | None:
        a = self.only(p, 1, ("link", "bandwidth", "hop", "latency", "energy", "allreduce"))
        if not a:
            return None
        (topo_e,), kw = a
        topo = self.symbol(topo_e, TOPOLOGIES, "a topology")
        bw_e = kw.get("link") or kw.get("bandwidth")
        if bw_e is None:
            self.diag.error(p.span, f"'{p.name}' needs `link = ...` or `bandwidth = ...`")
            return None
        bw = self.quantity(bw_e.value, [U.BANDWIDTH], "a link bandwidth", clock, within="bandwidth")
        lat_e = kw.get("hop") or kw.get("latency")
        lat = self.quantity(lat_e.value, [U.TIME], "a latency", clock, allow_zero=True, within="latency") if lat_e else 0.0
        en = self.quantity(kw["energy"].value, [U.ENERGY_PER_BYTE], "a link energy", allow_zero=True,
                                within="energy per byte") \
            if "energy" in kw else None
        alg = self.symbol(kw["allreduce"].value, ALLREDUCE, "an all-reduce algorithm") if "allreduce" in kw else "ring"
        if alg in ("mesh2d", "dims") and topo is not None and topo not in ("mesh", "torus"):
            self.diag.error(kw["allreduce"].value.span, f"`allreduce = {alg}` needs a mesh or torus, "
                                                        f"not a {topo}")
            return None
        if None in (topo, bw, lat, alg):
            return None
        return Network(topo, bw, lat, en, alg, span=p.span)

    def memories(self, props: list[ast.Prop], where: str) -> tuple[Memory, ...] | None:
        """The `memory` levels of a chip or system, innermost first: distinct names, and each
        level at least as large as the one inside it."""
        out = []
        for p in props:
            m = self.memory(p)
            if m is None:
                return None
            if any(x.name == m.name for x in out):
                self.diag.error(p.span, f"{where} already has a memory level '{m.name}'")
                return None
            if out and m.capacity < out[-1].capacity:
                self.diag.error(p.span, f"memory levels are listed innermost first: '{m.name}' "
                                        f"({fmt_q(Q(m.capacity, U.BYTES))}) cannot hold '{out[-1].name}' "
                                        f"({fmt_q(Q(out[-1].capacity, U.BYTES))})")
                return None
            out.append(m)
        return tuple(out)

    def memory(self, p: ast.Prop) -> Memory | None:
        a = self.only(p, 2, ("bandwidth", "efficiency", "latency", "energy", "shared"))
        if not a:
            return None
        (name_e, cap_e), kw = a
        name = name_e.id if isinstance(name_e, ast.Name) else None
        if name is None:
            self.diag.error(name_e.span, "a memory is written `memory NAME, CAPACITY, bandwidth = ...`")
        cap = self.quantity(cap_e, [U.BYTES], "a memory capacity", within="memory size")
        if "bandwidth" not in kw:
            self.diag.error(p.span, "'memory' needs `bandwidth = ...`")
            return None
        bw = self.quantity(kw["bandwidth"].value, [U.BANDWIDTH], "a memory bandwidth", within="bandwidth")
        eff = self.fraction(kw["efficiency"].value, "a memory efficiency") if "efficiency" in kw else 1.0
        lat = self.quantity(kw["latency"].value, [U.TIME], "a memory latency", allow_zero=True, within="latency") \
            if "latency" in kw else 0.0
        en = self.quantity(kw["energy"].value, [U.ENERGY_PER_BYTE], "a memory energy", allow_zero=True,
                                within="energy per byte") \
            if "energy" in kw else None
        shared = True
        if "shared" in kw:
            shared = self.symbol(kw["shared"].value, ("true", "false"), "shared (one memory for all inside it)")
            shared = None if shared is None else shared == "true"
        if None in (name, cap, bw, eff, lat, shared):
            return None
        return Memory(name, cap, bw, eff, lat, en, shared, span=p.span)

    def reliabilities(self, props: list[ast.Prop], kinds: tuple[str, ...], where: str,
                      tiles: int = 1) -> tuple[Reliability, ...] | None:
        """`reliability KIND, mtbf = TIME | fit = N [, count = N] [, spares = N] [, repair = TIME]
        [, source = "..."]`, once per kind: the failure rate of one component of that kind."""
        out, ok = [], True
        for p in props:
            a = self.only(p, 1, ("mtbf", "fit", "count", "spares", "repair", "source"))
            if not a:
                ok = False
                continue
            (kind_e,), kw = a
            kind = self.symbol(kind_e, kinds, f"a component of a {where.split()[0]}")
            if kind is None:
                ok = False
                continue
            if any(r.kind == kind for r in out):
                self.diag.error(kind_e.span, f"{where} already declares the reliability of its {kind}")
                ok = False
                continue
            if ("mtbf" in kw) == ("fit" in kw):
                self.diag.error(p.span, f"'reliability {kind}' needs one of `mtbf = TIME` (mean time between "
                                        f"failures) or `fit = N` (failures per 1e9 device-hours)")
                ok = False
                continue
            if "mtbf" in kw:
                mtbf = self.quantity(kw["mtbf"].value, [U.TIME], "a mean time between failures", within="mtbf")
                rate, given = (1.0 / mtbf if mtbf else None), "mtbf"
            else:
                fit = self.quantity(kw["fit"].value, [U.NONE], "a FIT rate (failures per 1e9 device-hours)")
                if fit is not None and not (1e-1 <= fit <= 1e17):
                    self.diag.error(kw["fit"].value.span, f"a FIT rate must be between 0.1 and 1e17 failures per "
                                                          f"1e9 device-hours, found {fit:g}")
                    fit = None
                rate, given = (fit / 1e9 / 3600.0 if fit else None), "fit"
            count = tiles if kind == "tile" else 1
            if "count" in kw:
                if kind == "tile":
                    self.diag.error(kw["count"].span, "a tile's failure rate is per tile, for each of the chip's "
                                                      f"{tiles:,} tiles: 'count' is for chip, memory and link")
                    ok = False
                    continue
                count = self.count(kw["count"].value, f"the number of {kind} components")
            spares = 0
            if "spares" in kw:
                if kind not in ("tile", "node"):
                    self.diag.error(kw["spares"].span, f"'spares' are spare tiles on a chip (they absorb a tile's "
                                                       f"failure) or spare nodes in a system; not spare {kind}s")
                    ok = False
                    continue
                spares = self.count(kw["spares"].value, f"spare {kind}s", minimum=0, maximum=MAX_SPARES)
            repair = 0.0
            if "repair" in kw:
                if kind != "node":
                    self.diag.error(kw["repair"].span, "'repair' is the time to bring a failed node back to the "
                                                       "spare pool: it belongs to `reliability node`")
                    ok = False
                    continue
                repair = self.quantity(kw["repair"].value, [U.TIME], "a repair time", allow_zero=True,
                                       within="repair")
            source = ""
            if "source" in kw:
                v = self.value(kw["source"].value)
                if isinstance(v, Str):
                    source = v.value
                else:
                    self.diag.error(kw["source"].value.span, 'a source is a string: `source = "Kokolis et al. 2024"`')
                    ok = False
                    continue
            if None in (rate, count, spares, repair):
                ok = False
                continue
            out.append(Reliability(kind, rate, count, spares, repair, source, given, span=p.span))
        return tuple(sorted(out, key=lambda r: r.kind)) if ok else None

    def storages(self, props: list[ast.Prop], where: str) -> tuple[Storage, ...] | None:
        """`storage NAME, bandwidth = ...`: where the system writes checkpoints, at that aggregate
        bandwidth."""
        out, ok = [], True
        for p in props:
            a = self.only(p, 1, ("bandwidth",))
            if not a:
                ok = False
                continue
            (name_e,), kw = a
            if not isinstance(name_e, ast.Name):
                self.diag.error(name_e.span, "a storage is written `storage NAME, bandwidth = ...`")
                ok = False
                continue
            if name_e.id == "peers":
                self.diag.error(name_e.span, "'peers' names checkpoints kept in the memory of peer chips; "
                                             "call the storage something else")
                ok = False
                continue
            if any(x.name == name_e.id for x in out):
                self.diag.error(name_e.span, f"{where} already has a storage '{name_e.id}'")
                ok = False
                continue
            if "bandwidth" not in kw:
                self.diag.error(p.span, "'storage' needs `bandwidth = ...` (the aggregate the system writes at)")
                ok = False
                continue
            bw = self.quantity(kw["bandwidth"].value, [U.BANDWIDTH], "a storage bandwidth", within="bandwidth")
            if bw is None:
                ok = False
                continue
            out.append(Storage(name_e.id, bw, span=p.span))
        return tuple(out) if ok else None

    def members(self, props, decl, kind, keys, known: dict, kinds: tuple[str, ...]) -> tuple[int, int, str] | None:
        """`N of NAME` or `R x C of NAME`: (rows, columns, NAME) where NAME is in `known`
        (resolved declarations of `kinds`)."""
        given = [k for k in keys if k in props]
        if len(given) != 1:
            self.diag.error(decl.args[0].span, f"{kind} '{decl.args[0].id}' needs exactly one of "
                                               f"{', '.join(repr(k) for k in keys)} (e.g. `{keys[0]} 8 of NAME`)")
            return None
        p = props[given[0]][0]
        a = self.only(p, 1)
        if not a:
            return None
        e = a[0][0]
        if not (isinstance(e, ast.BinOp) and e.op == "of" and isinstance(e.right, ast.Name)):
            self.diag.error(e.span, f"'{given[0]}' is written `{given[0]} N of NAME` or `{given[0]} R x C of NAME`")
            return None
        shape = e.left
        dims_e = _crossed(shape)
        if len(dims_e) > MAX_DIMS:
            self.diag.error(shape.span, f"a grid of {len(dims_e)} dimensions; archc accepts up to {MAX_DIMS}")
            return None
        if len(dims_e) >= 2:
            what = (["a row count", "a column count"] if len(dims_e) == 2
                    else [f"the size of dimension {i + 1}" for i in range(len(dims_e))])
            sizes = [self.count(x, w) for x, w in zip(dims_e, what)]
            if None in sizes:
                return None
            r, c = (sizes[0], sizes[1]) if len(sizes) == 2 else (math.prod(sizes[:-1]), sizes[-1])
            self.grid_dims[(kind, decl.args[0].id)] = tuple(sizes) if len(sizes) > 2 else ()
        else:
            r, c = 1, self.count(shape, "a count")
        member = e.right.id
        if member not in known and self.reported(member, *kinds):
            return None
        if member not in known:
            what = " or ".join(sorted({self.where[n][0] for n in known if n in self.where}) or kinds)
            if member in self.where:
                self.diag.error(e.right.span, f"'{member}' is a {self.where[member][0]}, not a {what}")
            else:
                declared = set(known).union(*(self.decls[k] for k in kinds))
                self.diag.error(e.right.span, f"unknown {what} '{member}'{_hint(member, sorted(declared))}")
            return None
        if r is None or c is None:
            return None
        if r * c > MAX_MEMBERS:
            self.diag.error(shape.span, f"{r * c:,} members is absurdly many; archc accepts up to "
                                        f"{MAX_MEMBERS:,} tiles per chip or members per system")
            return None
        return r, c, member

    def check_chips(self) -> None:
        schema = {"tiles": False, "grid": False, "noc": False, "memory": True, "process": False,
                  "power": False, "idle": False, "launch": False, "efficiency": False, "wave": False,
                  "bsp": False, "reliability": True, "cost": False}
        for name, d in self.decls["chip"].items():
            ps = self.props(d, schema, "chip")
            m = self.members(ps, d, "chip", ("grid", "tiles"), self.tiles, ("tile",))
            tile = self.tiles.get(m[2]) if m else None
            clock = tile.clock_hz if tile else BAD_CLOCK
            noc = self.network(p, clock) if (p := self.need(ps, "noc", d, "chip")) else None
            mem = self.memories(ps.get("memory", []), f"chip '{name}'")
            proc = power = idle = None
            if "process" in ps and (a := self.only(ps["process"][0], 1)):
                proc = self.quantity(a[0][0], [U.LENGTH], "a process node", within="process")
                proc = proc * 1e9 if proc else None
            scaling = "cubic"
            if "power" in ps and (a := self.only(ps["power"][0], 1, ("scaling",))):
                power = self.quantity(a[0][0], [U.POWER], "a power", within="power")
                if "scaling" in a[1]:
                    scaling = self.symbol(a[1]["scaling"].value, POWER_SCALING, "the power scaling") or "cubic"
            if "idle" in ps and (a := self.only(ps["idle"][0], 1)):
                idle = self.quantity(a[0][0], [U.POWER], "an idle power", allow_zero=True, within="power")
            if power is not None and idle is not None and idle >= power:
                self.diag.error(ps["idle"][0].span, f"the idle power ({idle:g} W) is not below the power limit "
                                                    f"({power:g} W): a chip at its limit must have power left to compute")
                idle = None
            launch = 0.0
            if "launch" in ps and (a := self.only(ps["launch"][0], 1)):
                launch = self.quantity(a[0][0], [U.TIME], "a launch overhead", clock, allow_zero=True,
                                       within="latency")
            eff = []
            if "efficiency" in ps:
                p = ps["efficiency"][0]
                for arg in p.args:
                    if not isinstance(arg, ast.Kwarg):
                        self.diag.error(arg.span, "efficiency is written `efficiency matmul = 0.85, conv = 0.7`")
                        continue
                    if arg.name not in OP_CLASSES:
                        self.diag.error(arg.span, f"unknown op class '{arg.name}'; classes are "
                                                  f"{', '.join(OP_CLASSES)}{_hint(arg.name, OP_CLASSES)}")
                        continue
                    f = self.fraction(arg.value, f"the efficiency of {arg.name}")
                    if f is not None:
                        eff.append((arg.name, f))
            wave = None
            if "wave" in ps and (a := self.only(ps["wave"][0], 1)):
                dims = _crossed(a[0][0])
                if len(dims) in (2, 3):
                    ws = [self.count(x, w, maximum=MAX_WAVE) for x, w in
                          zip(dims, ("a wave block height", "a wave block width", "a wave block depth"))]
                    # without a depth: CUTLASS's default Sm80 tensor-op configuration steps K by 64
                    # (include/cutlass/gemm/device/default_gemm_configuration.h, ThreadblockShape 128 x 256 x 64)
                    wave = (ws[0], ws[1], ws[2] if len(ws) == 3 else 64) if all(ws) else None
                else:
                    self.diag.error(a[0][0].span, "a wave block is written `wave M x N x K` (the output block one tile "
                                                  "computes, and the K it takes per main-loop step)")
            bsp = False
            if "bsp" in ps and (a := self.only(ps["bsp"][0], 1)):
                bsp = self.symbol(a[0][0], ("true", "false"), "bsp (bulk-synchronous supersteps)") == "true"
            rel = self.reliabilities(ps.get("reliability", []), CHIP_COMPONENTS, f"chip '{name}'",
                                     tiles=m[0] * m[1] if m else 1)
            if tile and noc and m and launch is not None and mem is not None and rel is not None:
                tile = self.costed(tile, proc)
                self.chips[name] = Chip(name, tile.name, m[0], m[1], noc, mem, proc, power, idle, launch,
                                        tuple(sorted(eff)), wave, bsp, self._in_cycles(ps), scaling,
                                        self.grid_dims.get(("chip", name), ()), rel, cost_usd=self.cost(ps),
                                        span=d.span)

    def cost(self, ps) -> float | None:
        """A chip's or system's declared `cost` (`cost 30000 USD`) in USD, or None."""
        if "cost" in ps and (a := self.only(ps["cost"][0], 1)):
            return self.quantity(a[0][0], [U.COST], "the cost", within="cost")
        return None

    def _in_cycles(self, ps) -> tuple[str, ...]:
        """Which of a chip's NoC bandwidth, NoC latency and launch are written in tile cycles
        (they follow the tile's clock when it runs at its sustained one)."""
        def cyc(e, si_dim) -> bool:
            v = self.value(e)
            return isinstance(v, Q) and cycle_exponent(v.dim, si_dim) != 0
        out = []
        if "noc" in ps:
            kw = {a.name: a.value for a in ps["noc"][0].args if isinstance(a, ast.Kwarg)}
            if (e := kw.get("link") or kw.get("bandwidth")) is not None and cyc(e, U.BANDWIDTH):
                out.append("noc_bandwidth")
            if (e := kw.get("hop") or kw.get("latency")) is not None and cyc(e, U.TIME):
                out.append("noc_latency")
        if "launch" in ps and ps["launch"][0].args and cyc(ps["launch"][0].args[0], U.TIME):
            out.append("launch")
        return tuple(out)

    def costed(self, tile: Tile, node_nm: float | None) -> Tile | None:
        """The tile with every figure it leaves open derived from the cost model at the chip's
        process node: MACs per cycle of units declared by area, energy per operation of units
        declared without one. Declared figures always win; derived ones are listed."""
        from . import costs
        node = node_nm or costs.REF_NODE_NM
        at = f"{node:g} nm" + ("" if node_nm else ", no process declared")
        matrix, vector, notes = [], [], list(tile.derived)
        for u in tile.matrix:
            rate, energy, derived = u.flops_per_cycle, u.energy_per_flop, False
            try:
                if u.area_m2 is not None:
                    macs = costs.derived_rate(u.area_m2, u.a, u.b, u.acc, node, formats=self.formats)
                    rate = 2 * macs
                    notes.append(f"{u.a} x {u.b} -> {u.acc}: {macs:.4g} MAC/cycle from {u.area_m2 * 1e6:g} mm2 "
                                 f"(cost model, {at})")
                if energy is None and u.analog is not None:
                    a = u.analog
                    energy = costs.analog_mac_energy(a.dac_bits, a.adc_bits, a.rows, a.cols) / 2
                    derived = True
                    notes.append(f"{u.a} x {u.b} -> {u.acc} (analog): {energy * 2e12:.3g} pJ/MAC from its "
                                 f"{a.adc_bits}-bit ADC and {a.dac_bits}-bit DAC over a {a.rows} x {a.cols} array")
                elif energy is None:
                    energy = costs.mac(u.a, u.b, u.acc, node, formats=self.formats).energy_j / 2
                    derived = True
                    notes.append(f"{u.a} x {u.b} -> {u.acc}: {energy * 2e12:.3g} pJ/MAC (cost model, {at})")
            except ValueError as e:
                self.diag.error(u.span, f"cannot derive this unit's figures: {e}")
                return None
            engine = u.engine
            if engine is not None and engine.rows and not engine.arrays:  # rate derived from an area
                engine = replace(engine, arrays=max(1, int(rate / 2 // (engine.rows * engine.cols))))
            matrix.append(MatrixUnit(u.a, u.b, u.acc, rate, energy, u.sram_per_flop, u.analog, u.area_m2,
                                     derived or u.energy_derived, engine, u.operand_bytes, span=u.span))
        for v in tile.vector:
            energy = v.energy_per_flop
            if energy is None:
                try:
                    fma = (costs.multiplier(v.fmt, node, formats=self.formats).energy_j
                           + costs.adder(v.fmt, node, formats=self.formats).energy_j)
                except ValueError as e:
                    self.diag.error(v.span, f"cannot derive this unit's energy: {e}")
                    return None
                energy = fma / 2
                notes.append(f"vector {v.fmt}: {fma * 1e12:.3g} pJ/FMA (cost model, {at})")
            vector.append(VectorUnit(v.fmt, v.flops_per_cycle, energy, span=v.span))
        resolved = replace(tile, matrix=tuple(matrix), vector=tuple(vector), derived=tuple(notes))
        if resolved == tile:
            return tile
        # a tile used by chips at different nodes resolves once per node
        key = tile.name if self.costed_nodes.setdefault(tile.name, node) == node else f"{tile.name}@{node:g}nm"
        resolved = replace(resolved, name=key)
        self.tiles[key] = resolved
        return resolved

    def check_systems(self) -> None:
        schema = {"chips": False, "nodes": False, "systems": False, "grid": False, "network": False,
                  "memory": True, "reliability": True, "storage": True, "cost": False}
        order = self._system_order()
        for name in order:
            d = self.decls["system"][name]
            ps = self.props(d, schema, "system")
            known = {**self.chips, **self.systems}
            m = self.members(ps, d, "system", ("chips", "nodes", "systems", "grid"), known, ("chip", "system"))
            net = self.network(ps["network"][0]) if "network" in ps else None
            if m and m[0] * m[1] > 1 and "network" not in ps:
                self.diag.error(d.args[0].span, f"system '{name}' joins {m[0] * m[1]} members but has no 'network'")
            mem = self.memories(ps.get("memory", []), f"system '{name}'")
            rel = self.reliabilities(ps.get("reliability", []), SYSTEM_COMPONENTS, f"system '{name}'")
            store = self.storages(ps.get("storage", []), f"system '{name}'")
            if m and (net or m[0] * m[1] == 1) and mem is not None and rel is not None and store is not None:
                net = net or Network("switch", 1.0, 0.0, None)
                kind = "chip" if m[2] in self.chips else "system"
                chips = m[0] * m[1] * (self.system_chips[m[2]] if kind == "system" else 1)
                if chips > MAX_MEMBERS:
                    self.diag.error(d.args[0].span, f"system '{name}' holds {chips:,} chips; archc accepts up to "
                                                    f"{MAX_MEMBERS:,} chips in a machine")
                    continue
                self.system_chips[name] = chips
                dims = self.grid_dims.get(("system", name), ())
                if net.allreduce == "mesh2d" and dims:
                    self.diag.error(ps["network"][0].span, f"`allreduce = mesh2d` reduces over a 2-D grid; system "
                                                           f"'{name}' is a {' x '.join(map(str, dims))} grid: "
                                                           f"`allreduce = dims` uses every dimension")
                    continue
                cost, basis = self.cost(ps), "declared"
                if cost is None:  # the members' costs added up, when every member has one
                    member = self.chips[m[2]] if kind == "chip" else self.systems[m[2]]
                    if member.cost_usd is not None:
                        cost = m[0] * m[1] * member.cost_usd
                        basis = (f"{m[0] * m[1]} x {m[2]} at {member.cost_usd:,.0f} USD"
                                 + (f" ({member.cost_basis})" if kind == "system" else ""))
                self.systems[name] = System(name, m[2], kind, m[0], m[1], net, mem, dims, rel, store,
                                            cost_usd=cost, cost_basis=basis if cost is not None else "",
                                            span=d.span)

    def _system_order(self) -> list[str]:
        """Systems in dependency order; a system that contains itself is an error."""
        decls = self.decls["system"]
        deps = {}
        for n, d in decls.items():
            deps[n] = set()
            for st in d.body:
                if isinstance(st, ast.Prop) and st.name in ("chips", "nodes", "systems", "grid"):
                    for a in st.args:
                        if isinstance(a, ast.BinOp) and a.op == "of" and isinstance(a.right, ast.Name) \
                                and a.right.id in decls:
                            deps[n].add(a.right.id)
        return _dependency_order({n: sorted(d) for n, d in deps.items()}, lambda chain: self.diag.error(
            decls[chain[0]].args[0].span, f"system '{chain[0]}' contains itself ({' -> '.join(chain)})"))

    def machine(self, name: str) -> Machine | None:
        if name not in self.machines:
            self.machines[name] = self._machine(name)
        return self.machines[name]

    def _machine(self, name: str) -> Machine | None:
        if name in self.chips:
            chip = self.chips[name]
            return Machine(name, chip, self.tiles[chip.tile], (), None, chip.cost_usd,
                           "declared" if chip.cost_usd is not None else "")
        levels, mem, cur = [], None, self.systems[name]
        while True:
            levels.append(Level(cur.name, cur.count, cur.rows, cur.cols, cur.network, cur.dims, cur.reliability,
                                cur.storage))
            mem = mem or cur.memory
            if cur.member_kind == "chip":
                chip = self.chips[cur.member]
                break
            cur = self.systems[cur.member]
        top = self.systems[name]
        return Machine(name, chip, self.tiles[chip.tile], tuple(reversed(levels)), mem, top.cost_usd, top.cost_basis)

    # ---- models and blocks -------------------------------------------------------------
    def check_callables(self) -> None:
        for kind in ("block", "model"):
            for name, d in self.decls[kind].items():
                params = self.params(d.args[0], kind, with_defaults=False)
                if params is not None:
                    self.callables[name] = Callable_(kind, name, params, d.body, span=d.span)

    def check_unused_callables(self) -> None:
        """The models and blocks of this file that no run instantiates are checked too: a model
        whose parameters all have defaults is built with them; any other, and every block no
        run reaches, is checked statically (statements, calls, names). The standard library's
        are tested with archc."""
        from .models import Builder, static_check
        used: set[str] = set()
        for d in self.decls["run"].values():
            for st in d.body:
                if isinstance(st, ast.Prop) and st.name == "model":
                    used |= ast.names_in(st.args)
        reached, todo = set(), [n for n in used if n in self.callables]
        while todo:  # blocks and models a run's model calls, transitively
            n = todo.pop()
            if n not in reached:
                reached.add(n)
                c = self.callables[n]
                todo += [m for m in ast.names_in((c.body, tuple(p.default for p in c.params if p.default)))
                         if m in self.callables]
        for name, c in self.callables.items():
            if name in reached or c.span.source.name.startswith("<std."):
                continue
            if c.kind == "model" and all(p.default is not None for p in c.params):
                Builder(self.callables, set(self.formats), self.diag).build(c, {}, c.span)
            else:
                static_check(c, self.callables, set(self.formats), self.diag)

    def params(self, head, kind, with_defaults: bool) -> tuple[Param, ...] | None:
        if isinstance(head, ast.Name):
            return ()
        out, seen, ok = [], set(), True
        for a in head.args:
            if isinstance(a, ast.Kwarg):
                p = Param(a.name, a.value, span=a.span)
            elif isinstance(a, ast.Name) and not with_defaults:
                p = Param(a.id, None, span=a.span)
            else:
                self.diag.error(a.span, f"a {kind} parameter is written `NAME` or `NAME = default`"
                                if not with_defaults else "a run parameter is written `NAME = default`")
                ok = False
                continue
            if p.name in seen:
                self.diag.error(a.span, f"parameter '{p.name}' is declared twice")
                ok = False
            seen.add(p.name)
            out.append(p)
        return tuple(out) if ok else None

    # ---- runs --------------------------------------------------------------------------
    def check_runs(self, overrides, only) -> list[tuple[str, Run]]:
        from .runs import resolve_run  # run semantics live in one module
        runs = []
        names = list(self.decls["run"])
        if only is not None and only not in self.decls["run"]:
            self.diag.error(None, f"no run named '{only}'; this design has "
                                  f"{', '.join(names) or 'no runs'}{_hint(only, names)}")
            return []
        for name in names:
            if only is not None and name != only:
                continue
            run = resolve_run(self, name, self.decls["run"][name], overrides if name == only or only is None else {})
            if run is not None:
                runs.append((name, run))
        return runs


def check(file: ast.File, source_name: str, overrides: dict | None = None, only: str | None = None,
          runs: bool = True, include=()) -> Design:
    """Check a parsed file, its imports linked first (dsl/imports.py; `include`: the `-I`
    directories, unless `file` is already linked). `overrides` maps parameter names to `--set`
    values (AST). A diagnostic inside an imported file notes where it was imported from."""
    file = link(file, include)
    overrides = {k: qualify(v) for k, v in (overrides or {}).items()}  # `--set dtype=m.fp8`
    try:
        design = _check(file, source_name, overrides, only, runs)
    except CheckError as e:
        raise annotate_error(e, file.via) from None
    if file.via:
        design = replace(design, warnings=tuple(annotate(w, file.via) for w in design.warnings))
    return design


# Checkers with every declaration but the runs checked, by linked file (its identity: the parse
# cache and a loaded design hand the same object back), so that a design checked again with other
# run parameters (a sweep, a search, Design.runs[NAME].estimate) resolves only its run. Only a
# declaration phase without errors is kept; at most _PREPARED_MAX files.
_PREPARED: OrderedDict[tuple[int, str], tuple[ast.Linked, "Checker"]] = OrderedDict()
_PREPARED_MAX = 32
_PREPARED_LOCK = threading.Lock()


def forget_models() -> None:
    """Drop the model instances the kept checkers hold (benchmarks/estimates.py times a model
    rebuilt with this; nothing else needs it)."""
    with _PREPARED_LOCK:
        for _, c in _PREPARED.values():
            c.graphs.clear()


def _declarations(file: ast.Linked, source_name: str) -> "Checker":
    """A checker with the file's formats, tiles, chips, systems and callables checked: the part of
    checking no run parameter changes. A kept one is copied with its own diagnostics."""
    key = (id(file), source_name)
    with _PREPARED_LOCK:  # a sweep on a Dask cluster of threads checks points concurrently
        kept = _PREPARED.get(key)
        if kept is not None and kept[0] is file:
            _PREPARED.move_to_end(key)
            return kept[1].fork()
    c = Checker(file, source_name)
    c.collect(file.stmts)
    if not file.stmts:
        c.diag.error(file.span, "the file is empty: declare at least a tile, a chip or a model")
    if not any(c.decls.values()):
        c.diag.raise_if_any(CheckError)
    c.check_formats()
    c.check_tiles()
    c.check_chips()
    c.check_systems()
    c.check_callables()
    if c.diag.items:
        return c
    with _PREPARED_LOCK:
        _PREPARED[key] = (file, c)
        while len(_PREPARED) > _PREPARED_MAX:
            _PREPARED.popitem(last=False)
    return c.fork()


def _check(file: ast.Linked, source_name: str, overrides, only, runs) -> Design:
    c = _declarations(file, source_name)
    resolved = c.check_runs(overrides or {}, only) if runs else []
    if only is None:
        c.check_unused_callables()
    if overrides and only is None and not c.decls["run"]:
        c.diag.error(None, "--set needs a run, and this design declares none")
    c.diag.raise_if_any(CheckError)
    return Design(source_name, tuple(sorted(c.formats.items())), tuple(sorted(c.tiles.items())),
                  tuple(sorted(c.chips.items())), tuple(sorted(c.systems.items())),
                  tuple(sorted((n, x) for n, x in c.callables.items() if x.kind == "model")),
                  tuple(sorted((n, x) for n, x in c.callables.items() if x.kind == "block")),
                  tuple(resolved), tuple(c.diag.warnings))


@lru_cache(maxsize=None)
def standard_formats() -> dict:
    """The IR formats std.formats declares."""
    c = Checker(_stdlib("std.formats"), "<std.formats>")
    c.collect(_stdlib("std.formats").stmts)
    c.check_formats()
    c.diag.raise_if_any(CheckError)
    return dict(c.formats)
