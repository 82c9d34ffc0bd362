"""Model instantiation: runs a model's body with concrete parameters, every op call, block and
repeat handed to the graph builder (dsl/graphs.py) that binds and costs it by the op registry."""
from __future__ import annotations

from dataclasses import dataclass

from . import ast
from .diagnostics import Collector
from .diagnostics import did_you_mean as _hint
from .graphs import GraphBuilder, Place
from .ir import Callable_, Graph, Tensor
from .ops import OPS, dim_value
from .values import MAX_INT, EvalError, Evaluator, Lst, Q, show

MAX_DEPTH = 48  # block calls nested deeper than this are runaway recursion


@dataclass
class _Frame:
    scope: dict
    place: Place  # the name path, count, layer and repeats of the frame's ops


class _Return(Exception):
    def __init__(self, value):
        self.value = value


class Builder:
    """Instantiates one model call. Errors are collected; the graph is None if any occurred."""

    def __init__(self, callables: dict[str, Callable_], formats: set[str], diag: Collector,
                 call_span=None):
        self.callables = callables
        self.call_span = call_span  # where the user instantiates the model, cited in errors
        self.formats = formats
        self.diag = diag
        self.graph: GraphBuilder | None = None  # the model's graph, once build() starts
        self.depth = 0
        self.target: str | None = None
        self.targets: tuple[str, ...] = ()  # `a, b = split(...)`: the names a list of outputs binds
        self._frame = _Frame({}, Place())  # a model's parameter defaults are evaluated here

    # ---- entry -------------------------------------------------------------------------
    def build(self, model: Callable_, args: dict[str, object], span) -> Graph | None:
        self.graph = GraphBuilder(model.name)
        try:
            frame = _Frame(self._bind(model, (), {k: (v, span) for k, v in args.items()}, span), Place())
            out = self._exec(model.body, frame)
        except EvalError as e:
            notes = []
            if self.call_span is not None and e.span.source is not self.call_span.source or \
                    (self.call_span is not None and e.span.line != self.call_span.line):
                notes.append((self.call_span, f"in model '{model.name}' as instantiated here"))
            self.diag.error(e.span, e.message, *notes)
            return None
        except _Return as r:
            out = r.value
        if out is not None and not isinstance(out, Tensor):
            self.diag.error(model.span, f"model '{model.name}' returns {show(out)}, not a tensor")
            return None
        return self.graph.graph(out)

    # ---- binding -----------------------------------------------------------------------
    def _bind(self, c: Callable_, args: tuple, kwargs: dict, span) -> dict:
        names = [p.name for p in c.params]
        if len(args) > len(names):
            raise EvalError(span, f"{c.kind} '{c.name}' takes {len(names)} arguments, {len(args)} given")
        scope: dict = {}
        for p, v in zip(c.params, args):
            scope[p.name] = v
        for k, (v, kspan) in kwargs.items():
            if k not in names:
                raise EvalError(kspan, f"{c.kind} '{c.name}' has no parameter '{k}'{_hint(k, names)}")
            if k in scope:
                raise EvalError(kspan, f"parameter '{k}' of {c.kind} '{c.name}' is given twice")
            scope[k] = v
        for p in c.params:
            if p.name not in scope:
                if p.default is None:
                    raise EvalError(span, f"{c.kind} '{c.name}' needs a value for parameter '{p.name}'")
                scope[p.name] = Evaluator(scope, self._call).eval(p.default)
        return scope

    # ---- statements --------------------------------------------------------------------
    def _exec(self, body: tuple, frame: _Frame):
        branch = None  # after an `if`: "taken" or "not taken"; an `else` needs one
        for st in body:
            if isinstance(st, ast.Assign):
                self._assign(st, frame)
                branch = None
                continue
            name, last, branch = st.name, branch, None
            if name == "else":
                if last is None or st.body is None or st.args:
                    raise EvalError(st.span, "'else' takes a block and must follow an 'if' block")
                if last == "not taken":
                    self._exec(st.body, frame)
            elif name == "input":
                self._input(st, frame)
            elif name == "repeat":
                self._repeat(st, frame)
            elif name == "if":
                if len(st.args) != 1 or st.body is None:
                    raise EvalError(st.span, "'if' takes one condition and a block")
                cond = self._eval(st.args[0], frame)
                if not isinstance(cond, bool):
                    raise EvalError(st.args[0].span, f"'if' needs true or false, found {show(cond)}")
                if cond:
                    self._exec(st.body, frame)
                branch = "taken" if cond else "not taken"
            elif name in ("return", "output"):
                if len(st.args) != 1:
                    raise EvalError(st.span, f"'{name}' takes one value")
                raise _Return(self._eval(st.args[0], frame))
            else:
                raise EvalError(st.name_span or st.span,
                                f"unknown statement '{name}' in a model; expected `name = value`, "
                                "input, repeat, if, else or return")
        return None

    def _assign(self, st: ast.Assign, frame: _Frame):
        names = (st.target,) + st.more
        if len(names) == 1:
            self.target = st.target
        else:
            self.targets = names
        try:
            value = self._eval(st.value, frame)
        finally:
            self.target, self.targets = None, ()
        if len(names) == 1:
            frame.scope[st.target] = value
            return
        items = value.items if isinstance(value, Lst) else None
        if items is None or len(items) != len(names):
            found = f"{len(items)} values" if items is not None else \
                f"{'a tensor' if isinstance(value, Tensor) else show(value)}, not a list"
            raise EvalError(st.value.span, f"{len(names)} names ({', '.join(names)}) are bound to "
                                           f"{found}; `a, b = split(x, 2)` binds a list of as many values")
        for n, v in zip(names, items):
            frame.scope[n] = v

    def _input(self, st: ast.Prop, frame: _Frame):
        if len(st.args) != 1 or not isinstance(st.args[0], ast.BinOp) or st.args[0].op != ":" \
                or not isinstance(st.args[0].left, ast.Name):
            raise EvalError(st.span, "an input is declared as `input NAME : FORMAT[dims...]`")
        name, typ = st.args[0].left.id, st.args[0].right
        dtype = None
        if isinstance(typ, ast.Index) and isinstance(typ.base, ast.Name):
            dtype, dims = typ.base.id, typ.args
            if dtype not in self.formats and dtype not in ("int32", "int64", "uint8"):
                raise EvalError(typ.base.span, f"unknown format '{dtype}'{_hint(dtype, self.formats)}")
        elif isinstance(typ, ast.ListExpr):
            dims = typ.items
        else:
            raise EvalError(typ.span, "an input's type is `FORMAT[dims...]` or `[dims...]`")
        shape = tuple(self._dim(self._eval(d, frame), d.span, "a dimension") for d in dims)
        frame.scope[name] = self.graph.input(shape, st.span, dtype)

    def _repeat(self, st: ast.Prop, frame: _Frame):
        if len(st.args) != 1 or st.body is None:
            raise EvalError(st.span, "'repeat' takes a count and a block: `repeat N { ... }`")
        n = self._eval(st.args[0], frame)
        if not (isinstance(n, Q) and n.dim.dimensionless and float(n.value).is_integer() and n.value >= 1):
            raise EvalError(st.args[0].span, f"a repeat count must be a positive whole number, found {show(n)}")
        if n.value > MAX_INT:
            raise EvalError(st.args[0].span, f"repeat count {int(n.value)} is absurdly large")
        n = int(n.value)
        label = st.args[0].id if isinstance(st.args[0], ast.Name) else f"repeat@{st.span.line}"
        before = {k: v for k, v in frame.scope.items() if isinstance(v, Tensor)}
        place, loop_id = self.graph.repeat(frame.place, n, label)
        self._exec(st.body, _Frame(frame.scope, place))
        carried = [(k, t, frame.scope[k]) for k, t in before.items() if isinstance(frame.scope.get(k), Tensor)]
        self.graph.finish_repeat(loop_id, n, place.layer, carried, st.span)

    # ---- expressions -------------------------------------------------------------------
    def _eval(self, e, frame: _Frame):
        self._frame = frame
        return Evaluator(frame.scope, self._call).eval(e)

    def _call(self, e, func: ast.Name, args: tuple, kwargs: dict):
        frame = self._frame
        name = func.id
        if name in self.callables and self.callables[name].kind == "block":
            return self._inline(self.callables[name], e, args, kwargs, frame)
        if name == "dim":
            return self._dim_of(e, args, kwargs)
        if name in OPS:
            return self._op(name, e, args, kwargs, frame)
        if name in self.callables:
            raise EvalError(func.span, f"'{name}' is a model; only blocks and ops can be called in a model")
        known = list(OPS) + [n for n, c in self.callables.items() if c.kind == "block"]
        raise EvalError(func.span, f"unknown op or block '{name}'{_hint(name, known)}")

    @staticmethod
    def _dim_of(e, args, kwargs) -> Q:
        if len(args) != 2 or kwargs or not isinstance(args[0], Tensor):
            raise EvalError(e.span, "dim takes a tensor and an axis: dim(x, -1)")
        t, axis = args
        rank = len(t.shape)
        if not (isinstance(axis, Q) and float(axis.value).is_integer() and -rank <= axis.value < rank):
            raise EvalError(e.span, f"axis {show(axis)} is out of range for a tensor of rank {rank}")
        return Q(float(t.shape[int(axis.value)]))

    def _inline(self, block: Callable_, e, args, kwargs, frame: _Frame):
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise EvalError(e.span, f"blocks nest deeper than {MAX_DEPTH} calls (is '{block.name}' recursive?)")
        target = self.target
        scope = self._bind(block, args, kwargs, e.span)
        inner = _Frame(scope, self.graph.block(frame.place, block.name))
        self.target = None
        try:
            out = self._exec(block.body, inner)
        except _Return as r:
            out = r.value
        finally:
            self.depth -= 1
            self._frame = frame
            self.target = target
        if out is None:
            raise EvalError(e.span, f"block '{block.name}' returns nothing; end it with `return VALUE`")
        return out

    def _op(self, kind: str, e, args, kwargs, frame: _Frame):
        spec = OPS[kind]
        n_ins = 0
        while n_ins < len(args) and isinstance(args[n_ins], Tensor):
            n_ins += 1
        ins, rest = list(args[:n_ins]), list(args[n_ins:])
        if any(isinstance(a, Tensor) for a in rest):
            raise EvalError(e.span, f"op '{kind}' takes its tensors first: {spec.signature(kind)}")
        spans = [a.span for a in e.args if not isinstance(a, ast.Kwarg)][n_ins:] if isinstance(e, ast.Call) else []
        return self.graph.op(kind, frame.place, ins, rest, kwargs, e.span, spans, self.target, self.targets)

    @staticmethod
    def _dim(v, span, what) -> int:
        return dim_value(v, span, what)


_STATEMENTS = ("input", "repeat", "if", "else", "return", "output")


def static_check(c: Callable_, callables: dict[str, Callable_], formats: set[str], diag: Collector) -> None:
    """Check a model or block without instantiating it (it may have parameters without
    defaults): every statement is one the builder runs, every call names an op, a block or a
    built-in function with the arguments it takes, and every name is defined somewhere."""
    from .values import BUILTINS
    defined = {p.name for p in c.params} | set(formats) | set(callables) | {"true", "false", "int32", "int64", "uint8"}
    for n in ast.walk(c.body):
        if isinstance(n, ast.Assign):
            defined.update((n.target,) + n.more)
        elif isinstance(n, ast.Prop) and n.name == "input" and len(n.args) == 1 and \
                isinstance(n.args[0], ast.BinOp) and isinstance(n.args[0].left, ast.Name):
            defined.add(n.args[0].left.id)
    nodes = (c.body, tuple(p.default for p in c.params if p.default is not None))
    callees = set()
    for n in ast.walk(nodes):
        if isinstance(n, ast.Prop) and n.name not in _STATEMENTS:
            diag.error(n.name_span or n.span, f"unknown statement '{n.name}' in a {c.kind}; expected "
                                              "`name = value`, input, repeat, if, else or return")
        elif isinstance(n, ast.Call) and isinstance(n.func, ast.Name):
            callees.add(id(n.func))
            name = n.func.id
            if name in OPS:
                spec = OPS[name]
                for a in n.args:
                    if isinstance(a, ast.Kwarg) and a.name not in spec.names:
                        diag.error(a.span, f"op '{name}' has no argument '{a.name}'{_hint(a.name, spec.names)}; "
                                           f"it takes {spec.signature(name)}")
            elif name in callables and callables[name].kind == "model":
                diag.error(n.func.span, f"'{name}' is a model; only blocks and ops can be called in a {c.kind}")
            elif name not in callables and name not in BUILTINS and name != "dim":
                known = list(OPS) + [k for k, v in callables.items() if v.kind == "block"]
                diag.error(n.func.span, f"unknown op or block '{name}'{_hint(name, known)}")
    for n in ast.walk(nodes):
        if isinstance(n, ast.Name) and id(n) not in callees and n.id not in defined:
            diag.error(n.span, f"unknown name '{n.id}' in {c.kind} '{c.name}'{_hint(n.id, sorted(defined))}")
