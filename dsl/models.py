"""Model instantiation: runs a model's body with concrete parameters into a graph of ops,
inferring shapes and counting each op's forward FLOPs, weights and data movement."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from . import ast
from .diagnostics import Collector
from .diagnostics import did_you_mean as _hint
from .ir import Callable_, Gemm, Graph, Loop, Op, Tensor
from .values import MAX_INT, EvalError, Evaluator, Lst, Q, show
from .vocab import Collective

MAX_OPS = 100_000  # a model that expands past this is a runaway block, not a real network
MAX_DEPTH = 48  # block calls nested deeper than this are runaway recursion
MAX_ELEMS = 2**53  # a tensor larger than this cannot be counted exactly
MAX_WORK = 1e30  # FLOPs (or elements moved) of one op: a zettascale step is 1e21


def _big(n) -> str:
    """A count of any size for a message (an int beyond float64 cannot be formatted as one)."""
    return f"{n:.3g}" if n < 1e300 else f"about 10^{len(str(int(n))) - 1}"

# Forward vector FLOPs per output element of the elementwise and normalisation ops.
UNARY_FLOPS = {"relu": 1, "gelu": 8, "silu": 4, "sigmoid": 4, "tanh": 4, "exp": 1, "dropout": 2,
               "scale": 1, "square": 1, "sqrt": 1, "identity": 0}
BINARY_FLOPS = {"add": 1, "sub": 1, "mul": 1, "div": 1}
NORM_FLOPS = {"layernorm": 8, "rmsnorm": 4, "batchnorm": 2}


@dataclass
class _Frame:
    path: str
    scope: dict
    mult: int
    layer: str
    loops: tuple[int, ...] = ()  # the ids of the repeats around the frame's statements


@dataclass
class _Out:
    shape: tuple[int, ...]
    cls: str
    matrix_flops: float = 0.0
    vector_flops: float = 0.0
    weight_elems: int = 0
    extra_elems: float = 0.0
    gemms: tuple[Gemm, ...] = ()
    attrs: dict = field(default_factory=dict)
    dtype: str | None = None


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
        self.ops: list[Op] = []
        self.names: dict[str, int] = {}
        self.next_id = 0
        self.inputs: list[Tensor] = []
        self.layers: dict[str, int] = {}
        self.depth = 0
        self.target: str | None = None
        self.loops: list[Loop] = []
        self.views: list[tuple[int, int]] = []
        self._frame = _Frame("", {}, 1, "")  # a model's parameter defaults are evaluated here

    # ---- entry -------------------------------------------------------------------------
    def build(self, model: Callable_, args: dict[str, object], span) -> Graph | None:
        try:
            frame = _Frame("", self._bind(model, (), {k: (v, span) for k, v in args.items()}, span), 1, "")
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
        params = sum(op.weight_elems * op.count for op in self.ops)
        return Graph(model.name, tuple(self.ops), tuple(self.inputs), out, params,
                     tuple(sorted(self.layers.items())), tuple(sorted(self.loops, key=lambda lp: lp.id)),
                     tuple(self.views))

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
                self.target = st.target
                frame.scope[st.target] = self._eval(st.value, frame)
                self.target = None
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
        t = self._tensor(shape, st.span, dtype)
        self.inputs.append(t)
        frame.scope[name] = t

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
        layer = f"{frame.path}{label}"
        self.layers[layer] = self.layers.get(layer, 0) + n * frame.mult
        before = {k: v for k, v in frame.scope.items() if isinstance(v, Tensor)}
        loop_id = len(self.loops)
        self.loops.append(None)  # its place, filled once the body has run
        inner = _Frame(frame.path, frame.scope, frame.mult * n, layer, frame.loops + (loop_id,))
        self._exec(st.body, inner)
        carried = []
        for k, t in before.items():
            v = frame.scope.get(k)
            if isinstance(v, Tensor) and v.shape != t.shape:
                raise EvalError(st.span, f"the repeated block changes the shape of '{k}' from "
                                         f"{list(t.shape)} to {list(v.shape)}; a repeat must keep shapes")
            if isinstance(v, Tensor) and v.id != t.id:
                carried.append((t.id, v.id))
        self.loops[loop_id] = Loop(loop_id, layer, n, tuple(sorted(carried)))

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
        base = f"{frame.path}{block.name}"
        n = self.names[base] = self.names.get(base, 0) + 1
        inner = _Frame(f"{base}#{n}." if n > 1 else f"{base}.", scope, frame.mult, frame.layer, frame.loops)
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

    def _op(self, kind: str, e, args, kwargs, frame: _Frame) -> Tensor:
        spec = OPS[kind]
        ins = [a for a in args if isinstance(a, Tensor)]
        rest = [a for a in args if not isinstance(a, Tensor)]
        kw = {k: v for k, (v, _) in kwargs.items()}
        for k, (_, s) in kwargs.items():
            if k not in spec.kwargs:
                raise EvalError(s, f"op '{kind}' has no argument '{k}'{_hint(k, spec.kwargs)}")
        if len(ins) != spec.tensors:
            raise EvalError(e.span, f"op '{kind}' takes {spec.tensors} tensor argument"
                                    f"{'s' if spec.tensors != 1 else ''}, {len(ins)} given")
        if args[:len(ins)] != tuple(ins):
            raise EvalError(e.span, f"op '{kind}' takes its tensors first")
        for name, v in zip(spec.positional, rest):
            if name in kw:
                raise EvalError(e.span, f"argument '{name}' of op '{kind}' is given twice")
            kw[name] = v
        if len(rest) > len(spec.positional):
            raise EvalError(e.span, f"op '{kind}' takes at most {len(spec.positional)} values besides its tensors")
        ctx = _OpCtx(self, e.span, kind)
        out = spec.fn(ctx, ins, kw)
        if out.cls == "view":  # a reshape moves no data: no op, but the graph records whose view it is
            t = self._tensor(out.shape, e.span, ins[0].dtype)
            self.views.append((t.id, ins[0].id))
            return t
        if len(self.ops) >= MAX_OPS:
            raise EvalError(e.span, f"the model expands to more than {MAX_OPS:,} ops")
        for what, x in (("FLOPs", out.matrix_flops + out.vector_flops), ("elements moved", out.extra_elems)):
            if x > MAX_WORK:
                raise EvalError(e.span, f"op '{kind}' has {_big(x)} {what}; archc accepts at most {MAX_WORK:.0e} "
                                        "per op")
        t = self._tensor(out.shape, e.span, out.dtype)
        base = f"{frame.path}{self.target or kind}"
        n = self.names.get(base, 0) + 1
        self.names[base] = n
        name = base if n == 1 else f"{base}#{n}"
        self.ops.append(Op(name, kind, out.cls, frame.mult, tuple(ins), t, out.weight_elems,
                           float(out.matrix_flops), float(out.vector_flops), float(out.extra_elems),
                           out.gemms, tuple(sorted(out.attrs.items())), frame.layer, frame.loops, span=e.span))
        return t

    def _tensor(self, shape, span, dtype=None) -> Tensor:
        n = 1
        for d in shape:
            n *= d
        if n > MAX_ELEMS:
            raise EvalError(span, f"a tensor of shape {list(shape)} has {_big(n)} elements; "
                                  f"archc accepts at most 2^53")
        self.next_id += 1
        return Tensor(self.next_id, tuple(shape), dtype)

    @staticmethod
    def _dim(v, span, what) -> int:
        if not (isinstance(v, Q) and v.dim.dimensionless):
            raise EvalError(span, f"{what} must be a whole number, found {show(v)}")
        if not float(v.value).is_integer():
            raise EvalError(span, f"{what} must be a whole number, found {v.value:g}")
        if v.value <= 0:
            raise EvalError(span, f"{what} must be positive, found {int(v.value)}")
        if v.value > MAX_INT:
            raise EvalError(span, f"{what} {v.value:.3g} is absurdly large")
        return int(v.value)


class _OpCtx:
    def __init__(self, builder: Builder, span, kind: str):
        self.b, self.span, self.kind = builder, span, kind

    def int(self, kw, key, default=None, minimum=1) -> int:
        v = kw.get(key, default)
        if v is None:
            raise EvalError(self.span, f"op '{self.kind}' needs '{key}'")
        if isinstance(v, int) and not isinstance(v, bool):
            v = Q(float(v))
        n = Builder._dim(v, self.span, f"'{key}' of {self.kind}") if minimum >= 1 else self.nonneg(v, key)
        return n

    def nonneg(self, v, key) -> int:
        if not (isinstance(v, Q) and v.dim.dimensionless and float(v.value).is_integer() and v.value >= 0):
            raise EvalError(self.span, f"'{key}' of {self.kind} must be a whole number ≥ 0, found {show(v)}")
        if v.value > MAX_INT:
            raise EvalError(self.span, f"'{key}' of {self.kind} is absurdly large ({_big(v.value)})")
        return int(v.value)

    def flag(self, kw, key, default: bool) -> bool:
        v = kw.get(key, default)
        if not isinstance(v, bool):
            raise EvalError(self.span, f"'{key}' of {self.kind} must be true or false, found {show(v)}")
        return v

    def fail(self, msg):
        raise EvalError(self.span, msg)


@dataclass(frozen=True)
class OpSpec:
    tensors: int
    positional: tuple[str, ...]
    kwargs: tuple[str, ...]
    fn: Callable


def _prod(xs) -> int:
    n = 1
    for x in xs:
        n *= x
    return n


def _linear(c: _OpCtx, ins, kw) -> _Out:
    (x,) = ins
    if not x.shape:
        c.fail("linear needs an input with at least one dimension")
    k, n = x.shape[-1], c.int(kw, "out")
    m = _prod(x.shape[:-1])
    bias = c.flag(kw, "bias", True)
    tied = c.flag(kw, "tied", False)  # weights shared with an embedding: stored once
    return _Out(x.shape[:-1] + (n,), "matmul", matrix_flops=2 * m * k * n,
                vector_flops=m * n if bias else 0,
                weight_elems=(0 if tied else k * n) + (n if bias else 0),
                gemms=(Gemm(1, m, n, k),), attrs={"tied": tied, "weights": k * n, "bias": bias})


def _matmul(c: _OpCtx, ins, kw) -> _Out:
    a, b = ins
    if len(a.shape) < 2 or len(b.shape) < 2:
        c.fail(f"matmul needs two tensors of rank ≥ 2, found {list(a.shape)} and {list(b.shape)}")
    if a.shape[-1] != b.shape[-2]:
        c.fail(f"matmul shapes do not agree: {list(a.shape)} x {list(b.shape)} "
               f"(inner dimensions {a.shape[-1]} and {b.shape[-2]})")
    batch = _broadcast(c, a.shape[:-2], b.shape[:-2])
    m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
    nb = _prod(batch)
    return _Out(batch + (m, n), "matmul", matrix_flops=2 * nb * m * n * k, gemms=(Gemm(nb, m, n, k),))


def _conv_out(c, size, kernel, stride, pad, what):
    o = (size + 2 * pad - kernel) // stride + 1
    if o <= 0:
        c.fail(f"{what}: a kernel of {kernel} with padding {pad} does not fit an input of {size}")
    return o


def _conv2d(c: _OpCtx, ins, kw) -> _Out:
    (x,) = ins
    if len(x.shape) != 4:
        c.fail(f"conv2d needs an input [N, C, H, W], found {list(x.shape)}")
    nb, ch, h, w = x.shape
    out, k = c.int(kw, "out"), c.int(kw, "kernel")
    stride = c.int(kw, "stride", Q(1))
    pad = c.int(kw, "padding", Q(k // 2), minimum=0)
    groups = c.int(kw, "groups", Q(1))
    if ch % groups or out % groups:
        c.fail(f"conv2d groups={groups} must divide the input ({ch}) and output ({out}) channels")
    ho, wo = _conv_out(c, h, k, stride, pad, "conv2d"), _conv_out(c, w, k, stride, pad, "conv2d")
    kk = ch // groups * k * k
    bias = c.flag(kw, "bias", False)
    m = nb * ho * wo
    return _Out((nb, out, ho, wo), "conv", matrix_flops=2 * m * out * kk,
                vector_flops=m * out if bias else 0, weight_elems=out * kk + (out if bias else 0),
                gemms=(Gemm(groups, m, out // groups, kk),),
                attrs={"kernel": k, "stride": stride, "padding": pad, "groups": groups, "bias": bias})


def _pool(c: _OpCtx, ins, kw) -> _Out:
    (x,) = ins
    if len(x.shape) != 4:
        c.fail(f"{c.kind} needs an input [N, C, H, W], found {list(x.shape)}")
    nb, ch, h, w = x.shape
    k = c.int(kw, "kernel")
    stride = c.int(kw, "stride", Q(k))
    pad = c.int(kw, "padding", Q(0), minimum=0)
    ho, wo = _conv_out(c, h, k, stride, pad, c.kind), _conv_out(c, w, k, stride, pad, c.kind)
    return _Out((nb, ch, ho, wo), "pool", vector_flops=nb * ch * ho * wo * k * k,
                attrs={"kernel": k, "stride": stride, "padding": pad})


def _global_avgpool(c: _OpCtx, ins, kw) -> _Out:
    (x,) = ins
    if len(x.shape) != 4:
        c.fail(f"global_avgpool needs an input [N, C, H, W], found {list(x.shape)}")
    return _Out(x.shape[:2], "pool", vector_flops=x.elems)


def _broadcast(c: _OpCtx, a: tuple, b: tuple) -> tuple:
    out = []
    for i in range(1, max(len(a), len(b)) + 1):
        da = a[-i] if i <= len(a) else 1
        db = b[-i] if i <= len(b) else 1
        if da != db and 1 not in (da, db):
            c.fail(f"shapes {list(a)} and {list(b)} do not broadcast (dimension {-i}: {da} vs {db})")
        out.append(max(da, db))
    return tuple(reversed(out))


def _unary(c: _OpCtx, ins, kw) -> _Out:
    (x,) = ins
    attrs = {}
    if c.kind == "scale":
        by = kw.get("by")
        if not (isinstance(by, Q) and by.dim.dimensionless):
            c.fail(f"scale multiplies by a number: scale(x, by = 0.125), found {show(by) if by is not None else 'nothing'}")
        attrs["by"] = by.value
    if c.kind == "dropout":
        rate = kw.get("rate", Q(0.1))
        if not (isinstance(rate, Q) and rate.dim.dimensionless and 0 <= rate.value < 1):
            c.fail(f"dropout rate must be in [0, 1), found {show(rate)}")
        attrs["rate"] = rate.value
    return _Out(x.shape, "elementwise", vector_flops=UNARY_FLOPS[c.kind] * x.elems, attrs=attrs)


def _binary(c: _OpCtx, ins, kw) -> _Out:
    a, b = ins
    shape = _broadcast(c, a.shape, b.shape)
    return _Out(shape, "elementwise", vector_flops=BINARY_FLOPS[c.kind] * _prod(shape))


def _softmax(c: _OpCtx, ins, kw) -> _Out:
    (x,) = ins
    return _Out(x.shape, "softmax", vector_flops=5 * x.elems)


def _norm(c: _OpCtx, ins, kw) -> _Out:
    (x,) = ins
    if not x.shape:
        c.fail(f"{c.kind} needs a tensor with at least one dimension")
    if c.kind == "batchnorm":
        if len(x.shape) < 2:
            c.fail(f"batchnorm needs [N, C, ...], found {list(x.shape)}")
        wel = 2 * x.shape[1]
    else:
        wel = x.shape[-1] * (2 if c.kind == "layernorm" else 1)
    return _Out(x.shape, "norm", vector_flops=NORM_FLOPS[c.kind] * x.elems, weight_elems=wel)


def _attention(c: _OpCtx, ins, kw) -> _Out:
    q, k, v = ins
    if len(q.shape) != 3 or len(k.shape) != 3 or len(v.shape) != 3:
        c.fail("attention takes q, k, v of shape [batch, seq, features]")
    heads = c.int(kw, "heads")
    kv_heads = c.int(kw, "kv_heads", Q(heads))
    b, s, d = q.shape
    if d % heads:
        c.fail(f"attention: {heads} heads do not divide the model width {d}")
    if heads % kv_heads:
        c.fail(f"attention: {kv_heads} key/value heads do not divide {heads} heads")
    dh = d // heads
    if k.shape != v.shape or k.shape[0] != b or k.shape[2] != dh * kv_heads:
        c.fail(f"attention: k and v must be [{b}, seq, {dh * kv_heads}] for {kv_heads} key/value "
               f"heads of width {dh}; found {list(k.shape)} and {list(v.shape)}")
    cache = c.int(kw, "cache", Q(0), minimum=0)
    t = k.shape[1] + cache
    flash = c.flag(kw, "flash", False)
    causal = c.flag(kw, "causal", False)
    scores = b * heads * s * t
    # Unfused attention writes and reads the score matrix around the softmax (QK^T out, softmax
    # in and out, AV in); training adds dropout on the probabilities (two more passes, added
    # by the lowering). A fused (flash) kernel keeps it on chip. A KV cache is read once.
    extra = (0 if flash else 4 * scores) + 2 * b * cache * dh * kv_heads
    return _Out((b, s, d), "attention", matrix_flops=4 * scores * dh, vector_flops=5 * scores,
                extra_elems=extra, gemms=(Gemm(b * heads, s, t, dh), Gemm(b * heads, s, dh, t)),
                attrs={"heads": heads, "kv_heads": kv_heads, "cache": cache, "flash": flash,
                       "causal": causal, "scores": scores})


def _embedding(c: _OpCtx, ins, kw) -> _Out:
    (tok,) = ins
    vocab, d = c.int(kw, "vocab"), c.int(kw, "d")
    return _Out(tok.shape + (d,), "embedding", weight_elems=vocab * d, attrs={"vocab": vocab})


def _gather(c: _OpCtx, ins, kw) -> _Out:
    (x,) = ins
    if len(x.shape) < 2:
        c.fail(f"gather needs [batch, positions, ...], found {list(x.shape)}")
    n = c.int(kw, "positions")
    if n > x.shape[1]:
        c.fail(f"gather takes {n} positions of {x.shape[1]}")
    return _Out((x.shape[0], n) + x.shape[2:], "embedding")


def _cross_entropy(c: _OpCtx, ins, kw) -> _Out:
    (x,) = ins
    return _Out(x.shape[:-1], "loss", vector_flops=5 * x.elems)


def _reduce(c: _OpCtx, ins, kw) -> _Out:
    (x,) = ins
    if not x.shape:
        c.fail(f"{c.kind} needs a tensor with at least one dimension")
    axis = kw.get("axis", Q(-1))
    if not (isinstance(axis, Q) and float(axis.value).is_integer() and -len(x.shape) <= axis.value < len(x.shape)):
        c.fail(f"axis {show(axis)} is out of range for a tensor of rank {len(x.shape)}")
    ax = int(axis.value) % len(x.shape)
    return _Out(x.shape[:ax] + x.shape[ax + 1:], "reduction", vector_flops=x.elems, attrs={"axis": ax})


def _reshape(c: _OpCtx, ins, kw):
    (x,) = ins
    dims = kw.get("shape")
    if not isinstance(dims, Lst):
        c.fail("reshape takes the new shape as a list: reshape(x, [a, b])")
    shape = tuple(Builder._dim(d, c.span, "a dimension") for d in dims.items)
    if _prod(shape) != x.elems:
        c.fail(f"cannot reshape {list(x.shape)} ({x.elems} elements) to {list(shape)} "
               f"({_prod(shape)} elements)")
    return _Out(shape, "view")


def _flatten(c: _OpCtx, ins, kw):
    (x,) = ins
    return _Out((x.shape[0], _prod(x.shape[1:])) if len(x.shape) > 1 else x.shape, "view")


def _ratio(c: _OpCtx, kw, key: str, default: float, lo: float, zero: bool = False) -> float:
    v = kw.get(key, Q(default))
    if isinstance(v, int) and not isinstance(v, bool):
        v = Q(float(v))
    if not (isinstance(v, Q) and v.dim.dimensionless and (v.value >= lo or (zero and v.value == 0))):
        c.fail(f"'{key}' of {c.kind} must be a number ≥ {lo:g}{' (or 0)' if zero else ''}, found {show(v)}")
    return float(v.value)


def _experts(c: _OpCtx, ins, kw) -> _Out:
    """A mixture-of-experts layer's experts (Shazeer et al. 2017; GShard, Lepikhin et al. 2020;
    Switch Transformer, Fedus et al. 2021; Mixtral, Jiang et al. 2024): each of T tokens of x goes
    to the `top_k` of `experts` FFNs (width `ffn`) its router logits rank highest; their outputs,
    weighted by the softmax of the chosen logits, are summed. `gated` FFNs are SwiGLU's (three
    d x ffn matrices, as Mixtral's), else two with a GELU. FLOPs are the expected work: T top_k
    tokens through one expert each (2 d ffn per matrix), the activation and the gate's products
    on T top_k ffn elements, the weighted sum 2 d per token and expert, and the top-k softmax
    over the logits (5 per logit, as softmax). How tokens spread over the experts is the
    dynamic part: `imbalance` is the busiest expert's tokens over the mean (declared: it
    depends on the trained router and the data), `capacity` the capacity factor (each expert
    computes capacity x the mean tokens, padded, dropping what exceeds it, as GShard and Switch
    do), 0 for dropless experts (MegaBlocks, Gale et al. 2023: the busiest expert computes all
    of its tokens). The run's mapping turns them into time (codegen/lower.py)."""
    x, logits = ins
    if not x.shape:
        c.fail("experts needs an input with at least one dimension")
    e = c.int(kw, "experts")
    if logits.shape != x.shape[:-1] + (e,):
        c.fail(f"experts: the router logits must be {list(x.shape[:-1] + (e,))} (one per token and expert), "
               f"found {list(logits.shape)}")
    f, k = c.int(kw, "ffn"), c.int(kw, "top_k", 2)
    if k > e:
        c.fail(f"experts: top_k = {k} but there are only {e} experts")
    gated = c.flag(kw, "gated", True)
    capacity = _ratio(c, kw, "capacity", 0.0, 1.0, zero=True)
    imbalance = _ratio(c, kw, "imbalance", 1.0, 1.0)
    d, t = x.shape[-1], _prod(x.shape[:-1])
    mats, tk = (3 if gated else 2), t * k
    act = (UNARY_FLOPS["silu"] + 1) if gated else UNARY_FLOPS["gelu"]  # SiLU(g) * u, or GELU
    per = -(-tk // e)  # the mean tokens of one expert, for the shape of its GEMMs
    return _Out(x.shape, "matmul", matrix_flops=2 * tk * d * f * mats,
                vector_flops=tk * f * act + 2 * tk * d + 5 * t * e, weight_elems=e * mats * d * f,
                gemms=(Gemm(e * mats, per, f, d),),
                attrs={"experts": e, "top_k": k, "ffn": f, "gated": gated, "capacity": capacity,
                       "imbalance": imbalance, "weights": e * mats * d * f})


def _collective(c: _OpCtx, ins, kw) -> _Out:
    (x,) = ins
    return _Out(x.shape, "collective", attrs={"collective": c.kind})


OPS: dict[str, OpSpec] = {
    "linear": OpSpec(1, ("out",), ("out", "bias", "tied"), _linear),
    "gather": OpSpec(1, ("positions",), ("positions",), _gather),
    "matmul": OpSpec(2, (), (), _matmul),
    "conv2d": OpSpec(1, ("out",), ("out", "kernel", "stride", "padding", "groups", "bias"), _conv2d),
    "maxpool": OpSpec(1, ("kernel",), ("kernel", "stride", "padding"), _pool),
    "avgpool": OpSpec(1, ("kernel",), ("kernel", "stride", "padding"), _pool),
    "global_avgpool": OpSpec(1, (), (), _global_avgpool),
    "softmax": OpSpec(1, (), (), _softmax),
    "attention": OpSpec(3, (), ("heads", "kv_heads", "cache", "flash", "causal"), _attention),
    "experts": OpSpec(2, (), ("experts", "ffn", "top_k", "gated", "capacity", "imbalance"), _experts),
    "embedding": OpSpec(1, ("vocab", "d"), ("vocab", "d"), _embedding),
    "cross_entropy": OpSpec(1, (), (), _cross_entropy),
    "reshape": OpSpec(1, ("shape",), ("shape",), _reshape),
    "flatten": OpSpec(1, (), (), _flatten),
    **{k: OpSpec(1, ("by",) if k == "scale" else (), ("rate",) if k == "dropout" else ("by",) if k == "scale" else (),
                 _unary) for k in UNARY_FLOPS},
    **{k: OpSpec(2, (), (), _binary) for k in BINARY_FLOPS},
    **{k: OpSpec(1, (), (), _norm) for k in NORM_FLOPS},
    **{k: OpSpec(1, (), ("axis",), _reduce) for k in ("reduce_sum", "reduce_mean", "reduce_max")},
    # every collective of the vocabulary a model may call (a pipeline's point-to-point is the mapping's)
    **{k: OpSpec(1, (), (), _collective) for k in Collective.words() if k not in ("none", "p2p")},
}



_STATEMENTS = ("input", "repeat", "if", "else", "return", "output")


def static_check(c: Callable_, callables: dict[str, Callable_], formats: set[str], diag: Collector) -> None:
    """Check a model or block without instantiating it (it may have parameters without
    defaults): every statement is one the builder runs, every call names an op, a block or a
    built-in function with the arguments it takes, and every name is defined somewhere."""
    from .values import BUILTINS
    defined = {p.name for p in c.params} | set(formats) | set(callables) | {"true", "false", "int32", "int64", "uint8"}
    for n in ast.walk(c.body):
        if isinstance(n, ast.Assign):
            defined.add(n.target)
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
                    if isinstance(a, ast.Kwarg) and a.name not in spec.kwargs:
                        diag.error(a.span, f"op '{name}' has no argument '{a.name}'{_hint(a.name, spec.kwargs)}")
            elif name in callables and callables[name].kind == "model":
                diag.error(n.func.span, f"'{name}' is a model; only blocks and ops can be called in a {c.kind}")
            elif name not in callables and name not in BUILTINS and name != "dim":
                known = list(OPS) + [k for k, v in callables.items() if v.kind == "block"]
                diag.error(n.func.span, f"unknown op or block '{name}'{_hint(name, known)}")
    for n in ast.walk(nodes):
        if isinstance(n, ast.Name) and id(n) not in callees and n.id not in defined:
            diag.error(n.span, f"unknown name '{n.id}' in {c.kind} '{c.name}'{_hint(n.id, sorted(defined))}")
