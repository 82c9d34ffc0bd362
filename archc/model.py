"""Building models in Python: `Builder` adds ops, blocks and repeats through the same graph
builder as the DSL (archc.dsl.graphs), so shapes, FLOPs and names are the DSL's, returns the
ir.Graph, and writes the model back as readable `.arch` text (`to_arch`)."""
from __future__ import annotations

import inspect
import linecache
import os
import re
from dataclasses import dataclass, field
from decimal import Decimal

from archc.dsl.diagnostics import ArchcError, Diagnostic
from archc.dsl.graphs import GraphBuilder, Place
from archc.dsl.ir import Graph, Tensor
from archc.dsl.ops import OPS
from archc.dsl.source import Source, Span
from archc.dsl.values import BUILTINS, EvalError, Lst, Q

__all__ = ["Builder", "ModelError", "Tensor"]

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# names a variable may not take: the language's words and statements, the built-in functions
_RESERVED = {"import", "as", "from", "of", "or", "and", "not", "true", "false", "input", "repeat", "if",
             "else", "return", "output", "dim", "model", "block", "run", "tile", "chip", "system", "format",
             "int32", "int64", "uint8"} | set(BUILTINS)
_HERE = os.path.abspath(__file__)


class ModelError(ArchcError):
    """A mistake in a model built in Python: the message names the op and points at the
    calling line of the user's script."""

    stage = "model"


# ---- what the builder records, for to_arch ------------------------------------------------------

@dataclass
class _Input:
    var: str
    tensor: Tensor
    dtype: str | None


@dataclass
class _Call:
    vars: tuple[str, ...]
    kind: str
    tensors: tuple[Tensor, ...]
    values: tuple[tuple[str, object], ...]  # parameter name -> value, as given
    outputs: tuple[Tensor, ...]


@dataclass
class _BlockCall:
    var: str
    block: "_BlockDef"
    args: tuple[Tensor, ...]
    result: Tensor


@dataclass
class _Repeat:
    label: str
    trips: int
    body: list
    carried: tuple[tuple[Tensor, Tensor], ...]  # (before, after)


@dataclass
class _BlockDef:
    name: str
    params: tuple[str, ...]  # the tensor parameters
    args: tuple[Tensor, ...]  # the call's arguments, which the parameters hold
    body: list
    labels: list = field(default_factory=list)  # (label, trips) of the repeats in the body: parameters
    result: Tensor | None = None
    text: str = ""  # its definition, once emitted


@dataclass
class _Scope:
    """One body being recorded: the model's or one block call's, with its names in use."""

    place: Place
    body: list
    used: set
    labels: list  # (label, trips): the model's (or block's) parameters
    block: _BlockDef | None = None


class Builder:
    """Builds one model: `input`, `op`, `block` and `repeat` add to it; `build(output)` returns
    the ir.Graph, `to_arch(output)` the model as `.arch` text that builds the same graph.

    >>> b = Builder("mlp")
    >>> x = b.input("x", [8, 512])
    >>> y = b.op("linear", b.op("gelu", b.op("linear", x, out=2048)), out=512)
    >>> b.build(y).output.shape
    (8, 512)
    """

    def __init__(self, name: str):
        if not isinstance(name, str) or not _IDENT.match(name) or name in _RESERVED:
            raise ModelError(f"a model's name is a plain identifier (letters, digits, _), found {name!r}")
        self.name = name
        self._g = GraphBuilder(name)
        self._scope = _Scope(Place(), [], set(), [])
        self._blocks: dict[str, list[_BlockDef]] = {}
        self._order: list[_BlockDef] = []  # block definitions in the order they were completed
        self._calls = 0
        self._vars: dict[int, str] = {}  # tensor id -> the variable it was bound to
        self._sources: dict[str, Source] = {}

    # ---- adding ------------------------------------------------------------------------------
    def input(self, name: str, shape, dtype: str | None = None) -> Tensor:
        """A model input of `shape` (a list of positive whole numbers); `dtype` its storage
        format when it is not the run's precision (int32 tokens)."""
        span = self._span()
        var = self._name(name, span, "input")
        if name != var:
            raise ModelError([Diagnostic(span, f"input name '{name}' is already used in model '{self.name}'")])
        dims = list(shape) if isinstance(shape, (list, tuple)) else None
        if not dims or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in dims):
            raise ModelError([Diagnostic(span, f"input '{name}': a shape is a list of one or more positive whole "
                                               f"numbers, found {shape!r}")])
        if dtype is not None and dtype not in ("int32", "int64", "uint8") and not _IDENT.match(str(dtype)):
            raise ModelError([Diagnostic(span, f"input '{name}': dtype is a format's name, found {dtype!r}")])
        t = self._guard(span, f"input '{name}'", lambda: self._g.input(tuple(dims), span, dtype))
        self._scope.body.append(_Input(var, t, dtype))
        self._vars[t.id] = var
        return t

    def op(self, kind: str, *args, name: str | list | tuple | None = None, **params):
        """Op `kind` of the op registry (docs/language.md lists them): its tensors first, then its
        values by position or by name, as in the language. `name` names the op (default: its
        kind; a name already used gets `_2`, `_3`, ...); a list names each output of a split.
        Returns the output tensor, or a list of them (split)."""
        span = self._span()
        self._calls += 1
        if kind not in OPS:
            from archc.dsl.diagnostics import did_you_mean
            raise ModelError([Diagnostic(span, f"unknown op '{kind}'{did_you_mean(str(kind), OPS)}")])
        spec = OPS[kind]
        n = 0
        while n < len(args) and isinstance(args[n], Tensor):
            n += 1
        tensors, rest = list(args[:n]), args[n:]
        what = f"op #{self._calls} '{kind}'" + (f" ('{name}')" if isinstance(name, str) else "")
        if any(isinstance(a, Tensor) for a in rest):
            raise ModelError([Diagnostic(span, f"{what}: takes its tensors first: {spec.signature(kind)}")])
        values = [self._value(v, span, what) for v in rest]
        kwargs = {k: (self._value(v, span, what), span) for k, v in params.items()}
        for t in tensors:
            if t.id not in self._vars:
                raise ModelError([Diagnostic(span, f"{what}: tensor {t.line()} is not one of model "
                                                   f"'{self.name}''s")])
        given = self._given(spec, values, kwargs)
        place = self._scope.place
        multi = kind == "split"
        if multi:
            k = len(given.get("parts").items) if isinstance(given.get("parts"), Lst) else \
                int(given["parts"].value) if isinstance(given.get("parts"), Q) else 0
            names = list(name) if isinstance(name, (list, tuple)) else [name or kind] * max(k, 1)
            vars_ = tuple(self._name(str(nm), span, what) for nm in names)
            out = self._guard(span, what, lambda: self._g.op(kind, place, tensors, values, kwargs, span,
                                                             [span] * len(values), None, vars_))
            outs = tuple(out.items)
            if len(outs) != len(vars_):
                raise ModelError([Diagnostic(span, f"{what}: gives {len(outs)} outputs, {len(vars_)} names given")])
        else:
            if name is not None and not isinstance(name, str):
                raise ModelError([Diagnostic(span, f"{what}: name is a string, found {name!r}")])
            vars_ = (self._name(name or kind, span, what),)
            out = self._guard(span, what, lambda: self._g.op(kind, place, tensors, values, kwargs, span,
                                                             [span] * len(values), vars_[0]))
            outs = (out,)
        for v, t in zip(vars_, outs):
            self._vars[t.id] = v
        self._scope.body.append(_Call(vars_, kind, tuple(tensors), tuple(given.items()), outs))
        return list(outs) if multi else outs[0]

    def block(self, name: str, fn, *args, result: str | None = None):
        """Call `fn(*args)` as block `name`: its ops are named `name.OP` (`name#2.OP` for the
        second call), as a DSL block's. `args` are tensors; `fn` returns one tensor, built from
        them only (values it needs are Python values, baked in). In `.arch` text the block is
        defined once; calls of one name must build the same body. `result` names the variable
        the call's tensor is bound to (default: the block's name)."""
        span = self._span()
        if not isinstance(name, str) or not _IDENT.match(name) or name in _RESERVED or name in OPS:
            raise ModelError([Diagnostic(span, f"a block's name is an identifier that is not an op's or a "
                                               f"word of the language, found {name!r}")])
        if not all(isinstance(a, Tensor) and a.id in self._vars for a in args):
            raise ModelError([Diagnostic(span, f"block '{name}': its arguments are tensors of this model")])
        try:
            sig = list(inspect.signature(fn).parameters)
        except (TypeError, ValueError):
            sig = []
        params = [p if _IDENT.match(p) and p not in _RESERVED else f"a{i}" for i, p in enumerate(sig[:len(args)])]
        params += [f"a{i}" for i in range(len(params), len(args))]
        if len(set(params)) != len(params):
            params = [f"a{i}" for i in range(len(args))]
        outer = self._scope
        var = self._name(result or name, span, f"block '{name}'")
        place = self._guard(span, f"block '{name}'", lambda: self._g.block(outer.place, name))
        d = _BlockDef(name, tuple(params), tuple(args), [])
        self._scope = _Scope(place, d.body, set(params), d.labels, d)
        saved = {a.id: self._vars[a.id] for a in args}
        for p, a in zip(params, args):
            self._vars[a.id] = p
        try:
            out = fn(*args)
        finally:
            self._scope = outer
            self._vars.update(saved)
        if not isinstance(out, Tensor):
            raise ModelError([Diagnostic(span, f"block '{name}' returns {type(out).__name__}, not a tensor")])
        d.result = out
        self._blocks.setdefault(name, []).append(d)
        self._order.append(d)
        outer.body.append(_BlockCall(var, d, tuple(args), out))
        self._vars[out.id] = var
        return out

    def repeat(self, trips: int, fn, *carried, label: str | None = None):
        """A layer repeated `trips` times: `fn(*carried)` builds it once and returns as many
        tensors (of the same shapes) for the next trip; its ops count `trips` times, as the
        DSL's `repeat LABEL { ... }` (`label`, default `layers`, names the repeat: its
        parameter in `.arch` text). Returns what the last trip hands on (one tensor or a tuple)."""
        span = self._span()
        if isinstance(trips, bool) or not isinstance(trips, int) or trips < 1:
            raise ModelError([Diagnostic(span, f"a repeat count is a positive whole number, found {trips!r}")])
        if not carried or not all(isinstance(t, Tensor) and t.id in self._vars for t in carried):
            raise ModelError([Diagnostic(span, "repeat: give the tensors the layer carries from trip to trip "
                                               "(b.repeat(12, layer, x))")])
        outer = self._scope
        lbl = self._name(label or "layers", span, "repeat")
        place, loop_id = self._g.repeat(outer.place, trips, lbl)
        body: list = []
        self._scope = _Scope(place, body, outer.used, outer.labels, outer.block)
        try:
            out = fn(*carried)
        finally:
            self._scope = outer
        outs = (out,) if isinstance(out, Tensor) else tuple(out) if isinstance(out, (list, tuple)) else ()
        if len(outs) != len(carried) or not all(isinstance(t, Tensor) for t in outs):
            raise ModelError([Diagnostic(span, f"repeat '{lbl}': the layer takes {len(carried)} tensor(s) and must "
                                               f"return as many")])
        names = [self._vars.get(t.id, "?") for t in carried]
        self._guard(span, f"repeat '{lbl}'",
                    lambda: self._g.finish_repeat(loop_id, trips, place.layer, list(zip(names, carried, outs)), span))
        outer.labels.append((lbl, trips))
        outer.body.append(_Repeat(lbl, trips, body, tuple(zip(carried, outs))))
        return out if isinstance(out, Tensor) else tuple(outs)

    # ---- results -----------------------------------------------------------------------------
    def build(self, output: Tensor | None) -> Graph:
        """The model's ir.Graph, returning `output`."""
        if output is not None and (not isinstance(output, Tensor) or output.id not in self._vars):
            raise ModelError(f"model '{self.name}' returns {output!r}, not one of its tensors")
        return self._g.graph(output)

    def to_arch(self, output: Tensor, header: str = "") -> str:
        """The model as `.arch` text (its blocks, then `model NAME(...) { ... }`) that the DSL
        builds into the same graph as `build(output)`; `header`: comment lines put first."""
        if not isinstance(output, Tensor) or output.id not in self._vars:
            raise ModelError(f"model '{self.name}': to_arch needs the output tensor")
        for name, defs in self._blocks.items():
            texts = {_Emitter(d.body, tuple(zip(d.params, d.args)), d.result).text() for d in defs}
            if len(texts) > 1:
                raise ModelError(f"block '{name}' is called with {len(texts)} different bodies; as `.arch` text a "
                                 f"block has one: give each variant its own name")
        out, seen = [], set()
        if header:
            out.append("".join(f"// {line}\n" if line else "//\n" for line in header.splitlines()) + "\n")
        for d in self._order:
            if d.name not in seen:
                seen.add(d.name)
                e = _Emitter(d.body, tuple(zip(d.params, d.args)), d.result)
                out.append(f"block {d.name}({_params(d.params, d.labels)}) {{\n{e.text()}}}\n\n")
        e = _Emitter(self._scope.body, (), output)
        out.append(f"model {self.name}({_params((), self._scope.labels)}) {{\n{e.text()}}}\n")
        return "".join(out)

    # ---- helpers -----------------------------------------------------------------------------
    def _name(self, name: str, span: Span, what: str) -> str:
        """`name`, or `name_2`, `name_3` ... when the current body already uses it."""
        if not isinstance(name, str) or not _IDENT.match(name):
            raise ModelError([Diagnostic(span, f"{what}: a name is an identifier (letters, digits, _), "
                                               f"found {name!r}")])
        base = name if name not in _RESERVED else f"{name}_"
        used = self._scope.used
        var, n = base, 1
        while var in used:
            n += 1
            var = f"{base}_{n}"
        used.add(var)
        return var

    @staticmethod
    def _given(spec, values, kwargs) -> dict:
        """The values as given, by parameter name (a `many` parameter takes the rest as a list)."""
        given: dict = {}
        for p, v in zip(spec.params, values):
            if p.many:
                i = spec.params.index(p)
                rest = values[i:]
                given[p.name] = rest[0] if len(rest) == 1 and isinstance(rest[0], Lst) else Lst(tuple(rest))
                break
            given[p.name] = v
        for k, (v, _) in kwargs.items():
            given[k] = v
        return given

    def _value(self, v, span, what):
        if isinstance(v, bool):
            return v
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            if v != v or v in (float("inf"), float("-inf")):
                raise ModelError([Diagnostic(span, f"{what}: {v!r} is not a finite number")])
            return Q(float(v))
        if isinstance(v, (list, tuple)):
            return Lst(tuple(self._value(x, span, what) for x in v))
        raise ModelError([Diagnostic(span, f"{what}: a value is a number, true/false or a list, found {v!r}")])

    def _guard(self, span, what, f):
        try:
            return f()
        except EvalError as e:
            raise ModelError([Diagnostic(span, f"{what} of model '{self.name}': {e.message}")]) from None

    def _span(self) -> Span:
        """The line of the user's script that called the builder (errors point at it)."""
        fr = inspect.currentframe()
        while fr is not None and os.path.abspath(fr.f_code.co_filename) == _HERE:
            fr = fr.f_back
        if fr is None:
            return Source(f"<model {self.name}>", "").start
        path, line = fr.f_code.co_filename, fr.f_lineno
        src = self._sources.get(path)
        if src is None:
            src = self._sources[path] = Source(path, "".join(linecache.getlines(path)))
        text = src.line(line)
        col = len(text) - len(text.lstrip()) + 1
        return Span(src, line, col, line, max(col + 1, len(text.rstrip()) + 1))


# ---- to_arch ------------------------------------------------------------------------------------

def _params(tensors, labels) -> str:
    return ", ".join(list(tensors) + [f"{lbl} = {n}" for lbl, n in labels])


def number(v: float) -> str:
    """A number as `.arch` text: whole numbers without a point, others without an exponent."""
    if float(v).is_integer() and abs(v) < 2**53:
        return str(int(v))
    r = repr(float(v))
    return r if "e" not in r else format(Decimal(r), "f")


def _value_text(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, Q):
        return number(v.value)
    if isinstance(v, Lst):
        return "[" + ", ".join(_value_text(x) for x in v.items) + "]"
    raise AssertionError(f"an op value is a number, true/false or a list, not {v!r}")


def _names(stmts) -> set[str]:
    """Every variable and repeat label the statements bind (a repeat's body included)."""
    out: set[str] = set()
    for s in stmts:
        if isinstance(s, (_Input, _BlockCall)):
            out.add(s.var)
        elif isinstance(s, _Call):
            out |= set(s.vars)
        elif isinstance(s, _Repeat):
            out |= {s.label} | _names(s.body)
    return out


def _uses(stmts) -> set[int]:
    """The ids of the tensors that statements read (a repeat's body and carried tensors included)."""
    out: set[int] = set()
    for s in stmts:
        if isinstance(s, _Call):
            out |= {t.id for t in s.tensors}
        elif isinstance(s, _BlockCall):
            out |= {t.id for t in s.args}
        elif isinstance(s, _Repeat):
            out |= _uses(s.body) | {a.id for a, _ in s.carried}
    return out


class _Emitter:
    """One body as text: every tensor referred to by the variable that holds it at that point."""

    def __init__(self, body, params, result: Tensor):
        self.body, self.params, self.result = body, params, result  # params: (name, tensor) pairs
        self.lines: list[str] = []
        self.taken = {p for p, _ in params} | _names(body)

    def text(self) -> str:
        env = {t.id: p for p, t in self.params}
        self._emit(self.body, env, 1, [])
        self.lines.append(f"  return {env[self.result.id]}")
        return "\n".join(self.lines) + "\n"

    def _fresh(self, base: str) -> str:
        name, n = base, 1
        while name in self.taken or name in _RESERVED:
            n += 1
            name = f"{base}{n}"
        self.taken.add(name)
        return name

    def _ref(self, env, t: Tensor) -> str:
        return env[t.id]

    def _emit(self, stmts, env: dict, depth: int, after: list) -> None:
        pad = "  " * depth
        for i, s in enumerate(stmts):
            if isinstance(s, _Input):
                dims = ", ".join(str(d) for d in s.tensor.shape)
                self.lines.append(f"{pad}input {s.var} : {s.dtype or ''}[{dims}]")
                env[s.tensor.id] = s.var
            elif isinstance(s, _Call):
                args = [self._ref(env, t) for t in s.tensors] + [f"{k} = {_value_text(v)}" for k, v in s.values]
                self.lines.append(f"{pad}{', '.join(s.vars)} = {s.kind}({', '.join(args)})")
                for v, t in zip(s.vars, s.outputs):
                    env[t.id] = v
            elif isinstance(s, _BlockCall):
                var = s.var
                self.lines.append(f"{pad}{var} = {s.block.name}({', '.join(self._ref(env, t) for t in s.args)})")
                env[s.result.id] = var
            elif isinstance(s, _Repeat):
                later = _uses(stmts[i + 1:]) | {u for rest in after for u in _uses(rest)} | {self.result.id}
                carried_vars = {before.id: env[before.id] for before, _ in s.carried}
                for before, _ in s.carried:  # a tensor read after the repeat keeps a name of its own
                    if before.id in later:
                        keep = self._fresh(f"{carried_vars[before.id]}_in")
                        self.lines.append(f"{pad}{keep} = {carried_vars[before.id]}")
                        env[before.id] = keep
                self.lines.append(f"{pad}repeat {s.label} {{")
                kept = {before.id: env[before.id] for before, _ in s.carried}
                inner = dict(env)  # the body reads what it carries from the carried variables
                inner.update(carried_vars)
                body = list(s.body)
                # a block call that makes a carried tensor binds it to the carried variable itself
                for j, st in enumerate(body):
                    for before, after_t in s.carried:
                        if isinstance(st, _BlockCall) and st.result.id == after_t.id:
                            body[j] = _BlockCall(carried_vars[before.id], st.block, st.args, st.result)
                self._emit(body, inner, depth + 1, [stmts[i + 1:]] + after)
                for before, after_t in s.carried:
                    if inner[after_t.id] != carried_vars[before.id]:
                        self.lines.append(f"{pad}  {carried_vars[before.id]} = {inner[after_t.id]}")
                self.lines.append(f"{pad}}}")
                env.update(inner)
                for before, after_t in s.carried:
                    env[before.id] = kept[before.id]
                    env[after_t.id] = carried_vars[before.id]

