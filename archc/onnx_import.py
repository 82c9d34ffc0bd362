"""`archc import MODEL.onnx`: an ONNX graph as a readable `.arch` model. Shapes come from ONNX
shape inference (dynamic dimensions from --dim), every supported ONNX op maps onto archc ops
(the table OPS, which docs/onnx.md lists), constants are folded, and a run of identical layers
becomes a block called in a `repeat`. The model is built with archc.model.Builder, so it is
checked and costed by the op registry as it is imported. `onnx` is imported only here, only
when a model is imported: it stays optional for everything else."""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field

from archc.dsl.diagnostics import ArchcError, printable
from archc.model import Builder, ModelError, number

__all__ = ["OPS", "ImportFailed", "import_onnx", "convert"]


class ImportFailed(ArchcError):
    """An ONNX model archc cannot import: `FILE: error: MESSAGE`, exit 1."""

    stage = "import"

    def __init__(self, path: str, message: str):
        self.path, self.message = path, message
        super().__init__(message)

    def render(self) -> str:
        return printable(f"{self.path}: error: {self.message}")


class _Unsupported(Exception):
    """A node archc cannot import, with why; turned into ImportFailed naming the node."""


@dataclass
class Const:
    """A constant tensor (an initializer, a Constant node, or folded from them): its shape and,
    when small enough to be worth reading, its values (a numpy array)."""

    shape: tuple[int, ...]
    value: object = None  # numpy array or None (only the shape is known)


@dataclass
class Step:
    """One archc op call: its kind, its tensor inputs and outputs (ONNX value names), its values
    by parameter name, and the ONNX node it came from (index, name, op type)."""

    kind: str
    ins: tuple[str, ...]
    values: tuple[tuple[str, object], ...]
    outs: tuple[str, ...]
    node: tuple[int, str, str]


_SMALL = 1 << 16  # constants with more elements keep only their shape


# ---- the op table ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Rule:
    fn: object
    becomes: str  # what the op becomes, for docs/onnx.md


OPS: dict[str, Rule] = {}


def _rule(names: str, becomes: str):
    def deco(fn):
        for n in names.split():
            OPS[n] = Rule(fn, becomes)
        return fn
    return deco


class _Ctx:
    """The conversion of one graph: shapes, constants, the steps made so far."""

    def __init__(self, onnx, model, path: str):
        from onnx import numpy_helper
        self.onnx, self.np_helper, self.path = onnx, numpy_helper, path
        g = model.graph
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.elem: dict[str, int] = {}
        for vi in list(g.value_info) + list(g.input) + list(g.output):
            shape = _static(vi)
            if shape is not None:
                self.shapes[vi.name] = shape
            self.elem[vi.name] = vi.type.tensor_type.elem_type
        self.consts: dict[str, Const] = {}
        for t in g.initializer:
            shape = tuple(int(d) for d in t.dims)
            self.consts[t.name] = Const(shape, numpy_helper.to_array(t) if _prod(shape) <= _SMALL else None)
        self.consumers: dict[str, list[int]] = {}
        for i, n in enumerate(g.node):
            for x in n.input:
                if x:
                    self.consumers.setdefault(x, []).append(i)
        for o in g.output:
            self.consumers.setdefault(o.name, []).append(len(g.node))
        self.nodes = list(g.node)
        self.steps: list[Step] = []
        self.alias: dict[str, str] = {}
        self.skip: set[int] = set()
        self.inputs: list[tuple[str, tuple[int, ...], str | None]] = []  # model inputs, in order
        self.const_inputs: dict[str, str] = {}  # constants used as operands, each a model input
        self.node: tuple[int, str, str] = (0, "", "")

    # what handlers use
    def name(self, x: str) -> str:
        while x in self.alias:
            x = self.alias[x]
        return x

    def const(self, x: str) -> Const | None:
        return self.consts.get(self.name(x)) if x else None

    def value(self, x: str, what: str):
        """A constant input's values (numpy), or _Unsupported naming it."""
        c = self.const(x)
        if c is None or c.value is None:
            raise _Unsupported(f"its {what} ('{x}') must be a constant (an initializer or a Constant node)")
        return c.value

    def shape(self, x: str) -> tuple[int, ...]:
        x = self.name(x)
        if x in self.consts:
            return self.consts[x].shape
        if x not in self.shapes:
            raise _Unsupported(f"ONNX shape inference gives no static shape for '{x}'")
        return self.shapes[x]

    def act(self, x: str) -> str:
        """An activation input: a constant becomes a model input of its shape (archc has no op for
        a learned tensor)."""
        x = self.name(x)
        if x in self.consts and x not in self.const_inputs:
            self.const_inputs[x] = x
            self.inputs.append((x, self.consts[x].shape or (1,), None))
        return x

    def emit(self, kind: str, ins, outs, **values) -> None:
        """Add a step; values equal to the op's defaults are left out (the text reads as a person
        would write it)."""
        from archc.dsl.ops import OPS as REGISTRY, REQUIRED, Same
        spec = REGISTRY[kind]
        vals = []
        for k, v in values.items():
            d = spec.param(k).default
            if isinstance(d, Same):
                d = values.get(d.param)
            if not _is_default(v, d, REQUIRED):
                vals.append((k, tuple(v) if isinstance(v, list) else v))
        vals = tuple(vals)
        self.steps.append(Step(kind, tuple(ins), vals, tuple(outs), self.node))

    def attr(self, node, key: str, default=None):
        for a in node.attribute:
            if a.name == key:
                return self.onnx.helper.get_attribute_value(a)
        return default

    def single_consumer(self, x: str):
        """The one node reading x, or None."""
        c = self.consumers.get(x, [])
        return c[0] if len(c) == 1 and c[0] < len(self.nodes) else None


def _is_default(v, d, required) -> bool:
    if d is required or d is None:
        return False
    if isinstance(v, bool) or isinstance(d, bool):
        return isinstance(v, bool) and isinstance(d, bool) and v == d
    if isinstance(v, (int, float)) and isinstance(d, (int, float)):
        return float(v) == float(d)
    if isinstance(v, (list, tuple)) and isinstance(d, (list, tuple)):
        return list(v) == list(d)
    return False


def _static(vi) -> tuple[int, ...] | None:
    tt = vi.type.tensor_type
    if not tt.HasField("shape"):
        return None
    dims = []
    for d in tt.shape.dim:
        if not d.HasField("dim_value") or d.dim_value <= 0:
            return None
        dims.append(int(d.dim_value))
    return tuple(dims)


def _prod(xs) -> int:
    n = 1
    for x in xs:
        n *= int(x)
    return n


# ---- handlers -------------------------------------------------------------------------------------

@_rule("Relu", "relu")
@_rule("Sigmoid", "sigmoid")
@_rule("Tanh", "tanh")
@_rule("Gelu", "gelu (also approximate = tanh)")
@_rule("Sqrt", "sqrt")
@_rule("Exp", "exp")
def _unary(c: _Ctx, n):
    c.emit(n.op_type.lower(), [c.act(n.input[0])], [n.output[0]])


@_rule("Pow", "square (exponent 2 only)")
def _pow(c: _Ctx, n):
    e = c.value(n.input[1], "exponent")
    if e.size != 1 or float(e.reshape(-1)[0]) != 2.0:
        raise _Unsupported("only x ** 2 (square) is imported")
    c.emit("square", [c.act(n.input[0])], [n.output[0]])


@_rule("Identity Dropout Cast", "nothing: the output is the input (a run's precision sets formats; "
                               "dropout is the identity in inference)")
def _alias(c: _Ctx, n):
    c.alias[n.output[0]] = c.name(n.input[0])


@_rule("Add Sub Mul Div", "add, sub, mul, div; mul or div by a constant scalar: scale; another constant "
                          "operand becomes a model input")
def _binary(c: _Ctx, n):
    a, b = n.input[0], n.input[1]
    ca, cb = c.const(a), c.const(b)
    if n.op_type in ("Mul", "Div") and cb is not None and cb.value is not None and cb.value.size == 1 \
            and ca is None:
        v = float(cb.value.reshape(-1)[0])
        if n.op_type == "Div" and v == 0:
            raise _Unsupported("it divides by the constant 0")
        c.emit("scale", [c.name(a)], [n.output[0]], by=v if n.op_type == "Mul" else 1 / v)
        return
    if n.op_type == "Mul" and ca is not None and ca.value is not None and ca.value.size == 1 and cb is None:
        c.emit("scale", [c.name(b)], [n.output[0]], by=float(ca.value.reshape(-1)[0]))
        return
    c.emit(n.op_type.lower(), [c.act(a), c.act(b)], [n.output[0]])


@_rule("Sum", "add, one per extra operand")
def _sum(c: _Ctx, n):
    ins = [c.act(x) for x in n.input]
    if len(ins) == 1:
        c.alias[n.output[0]] = ins[0]
        return
    acc = ins[0]
    for i, x in enumerate(ins[1:], 1):
        out = n.output[0] if i == len(ins) - 1 else f"{n.output[0]}#sum{i}"
        c.emit("add", [acc, x], [out])
        acc = out


def _bias_after(c: _Ctx, out: str, width: int):
    """The Add right after a MatMul that adds a constant vector of `width` (a linear's bias):
    its node index, or None."""
    i = c.single_consumer(out)
    if i is None or c.nodes[i].op_type != "Add":
        return None
    other = [x for x in c.nodes[i].input if x != out]
    b = c.const(other[0]) if len(other) == 1 else None
    return i if b is not None and _prod(b.shape) == width and b.shape[-1:] == (width,) else None


@_rule("MatMul", "linear when B is a constant [K, N] (with the Add of a constant [N] after it: bias = true); "
                 "matmul of two activations")
def _matmul(c: _Ctx, n):
    a, b = n.input
    wb = c.const(b)
    if c.const(a) is not None and wb is None:
        raise _Unsupported("a constant left operand (constant @ activation) is not imported")
    if wb is not None:
        if len(wb.shape) != 2:
            raise _Unsupported(f"a constant right operand must be a matrix [K, N], found {list(wb.shape)}")
        width = wb.shape[1]
        j = _bias_after(c, n.output[0], width)
        out = n.output[0]
        if j is not None:
            c.skip.add(j)
            out = c.nodes[j].output[0]
        c.emit("linear", [c.act(a)], [out], out=width, bias=j is not None)
        return
    c.emit("matmul", [c.act(a), c.act(b)], [n.output[0]])


@_rule("Gemm", "linear (B a constant, transB either way; C a constant: bias = true); matmul of two activations")
def _gemm(c: _Ctx, n):
    a, b = n.input[0], n.input[1]
    if c.attr(n, "transA", 0):
        raise _Unsupported("transA = 1 is not imported")
    wb = c.const(b)
    has_c = len(n.input) > 2 and n.input[2] != ""
    if wb is None:
        if c.attr(n, "transB", 0) or has_c:
            raise _Unsupported("with B an activation, only transB = 0 and no C are imported (a matmul)")
        c.emit("matmul", [c.act(a), c.act(b)], [n.output[0]])
        return
    width = wb.shape[0] if c.attr(n, "transB", 0) else wb.shape[1]
    if has_c and c.const(n.input[2]) is None:
        raise _Unsupported("C must be a constant (a bias)")
    c.emit("linear", [c.act(a)], [n.output[0]], out=width, bias=has_c)


def _pads(c: _Ctx, n, x: str, kernel, strides, rank: int) -> list[int]:
    """[begin..., end...] pads of a conv or pool's spatial axes, auto_pad resolved."""
    auto = c.attr(n, "auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        spatial = c.shape(x)[2:]
        pads = [0] * (2 * rank)
        for i, (size, k, s) in enumerate(zip(spatial, kernel, strides)):
            total = max((-(-size // s) - 1) * s + k - size, 0)
            lo = total // 2 if auto == "SAME_UPPER" else total - total // 2
            pads[i], pads[i + rank] = lo, total - lo
        return pads
    if auto == "VALID":
        return [0] * (2 * rank)
    return list(c.attr(n, "pads", [0] * (2 * rank)))


def _square(what: str, vals, kind: str):
    if len(set(vals)) != 1:
        raise _Unsupported(f"archc's {kind} takes one {what} for both spatial axes, found {list(vals)}")
    return vals[0]


@_rule("Conv", "conv2d (2-D, square kernel, equal strides; group -> groups; bias; unequal pads: a pad op first)")
def _conv(c: _Ctx, n):
    x, w = n.input[0], n.input[1]
    wc = c.const(w)
    if wc is None:
        raise _Unsupported("its weights must be a constant")
    if len(wc.shape) != 4:
        raise _Unsupported(f"only 2-D convolutions are imported (weights [Cout, Cin/groups, kH, kW]), "
                           f"found weights {list(wc.shape)}")
    if any(d != 1 for d in c.attr(n, "dilations", [1, 1])):
        raise _Unsupported("dilated convolutions are not imported")
    kernel = list(c.attr(n, "kernel_shape", wc.shape[2:]))
    k = _square("kernel size", kernel, "conv2d")
    strides = list(c.attr(n, "strides", [1, 1]))
    s = _square("stride", strides, "conv2d")
    pads = _pads(c, n, x, kernel, strides, 2)
    src = c.act(x)
    pad = pads[0]
    if len(set(pads)) != 1:  # t, l, b, r unequal: pad first (archc pads from the last axis back)
        out = f"{n.output[0]}#pad"
        c.emit("pad", [src], [out], pads=[pads[1], pads[3], pads[0], pads[2]])
        src, pad = out, 0
    bias = len(n.input) > 2 and n.input[2] != ""
    c.emit("conv2d", [src], [n.output[0]], out=wc.shape[0], kernel=k, stride=s, padding=pad,
           groups=int(c.attr(n, "group", 1)), bias=bias)


@_rule("MaxPool AveragePool", "maxpool, avgpool (square window, equal strides, equal pads)")
def _pool(c: _Ctx, n):
    if len(n.output) > 1 and n.output[1]:
        raise _Unsupported("MaxPool's indices output is not imported")
    kernel = list(c.attr(n, "kernel_shape"))
    if len(kernel) != 2:
        raise _Unsupported("only 2-D pooling is imported")
    if any(d != 1 for d in c.attr(n, "dilations", [1, 1])):
        raise _Unsupported("dilated pooling is not imported")
    k = _square("window", kernel, n.op_type)
    strides = list(c.attr(n, "strides", [1, 1]))
    s = _square("stride", strides, n.op_type)
    pads = _pads(c, n, n.input[0], kernel, strides, 2)
    if len(set(pads)) != 1:
        raise _Unsupported(f"unequal pads {pads} are not imported for pooling")
    c.emit("maxpool" if n.op_type == "MaxPool" else "avgpool", [c.act(n.input[0])], [n.output[0]],
           kernel=k, stride=s, padding=pads[0])


@_rule("GlobalAveragePool", "global_avgpool, then a reshape (a view) to [N, C, 1, 1]")
def _gap(c: _Ctx, n):
    shape = c.shape(n.input[0])
    if len(shape) != 4:
        raise _Unsupported(f"only [N, C, H, W] inputs are imported, found {list(shape)}")
    mid = f"{n.output[0]}#pool"
    c.emit("global_avgpool", [c.act(n.input[0])], [mid])
    c.emit("reshape", [mid], [n.output[0]], shape=[shape[0], shape[1], 1, 1])


@_rule("Softmax", "softmax(axis)")
def _softmax(c: _Ctx, n):
    r = len(c.shape(n.input[0]))
    shape = c.shape(n.input[0])
    axis = int(c.attr(n, "axis", -1 if c.opset >= 13 else 1)) % r
    if c.opset < 13 and _prod(shape[axis + 1:]) != 1:  # then it is softmax along `axis`
        raise _Unsupported(f"before opset 13 Softmax normalises over the axes from {axis} on together; "
                           f"archc imports it when the axes after {axis} have size 1, found {list(shape)}")
    c.emit("softmax", [c.act(n.input[0])], [n.output[0]], axis=axis - r)


@_rule("LayerNormalization", "layernorm (over the last axis)")
def _layernorm(c: _Ctx, n):
    r = len(c.shape(n.input[0]))
    if int(c.attr(n, "axis", -1)) % r != r - 1:
        raise _Unsupported("only normalisation over the last axis is imported")
    if any(o for o in n.output[1:]):
        raise _Unsupported("its Mean and InvStdDev outputs are not imported")
    c.emit("layernorm", [c.act(n.input[0])], [n.output[0]])


@_rule("BatchNormalization", "batchnorm (inference)")
def _batchnorm(c: _Ctx, n):
    if any(o for o in n.output[1:]):
        raise _Unsupported("training-mode outputs (running mean and variance) are not imported")
    c.emit("batchnorm", [c.act(n.input[0])], [n.output[0]])


@_rule("Reshape Flatten Squeeze Unsqueeze", "reshape (a view) to the inferred shape")
def _reshape(c: _Ctx, n):
    if n.op_type == "Reshape" and n.output[0] not in c.shapes:  # inference lost it: the constant says
        want = [int(v) for v in c.value(n.input[1], "shape")]
        src = c.shape(n.input[0])
        want = [src[i] if v == 0 else v for i, v in enumerate(want)]
        if want.count(-1) == 1:
            rest = _prod(v for v in want if v != -1)
            want[want.index(-1)] = _prod(src) // rest if rest else 0
        c.shapes[n.output[0]] = tuple(want)
    out = c.shape(n.output[0])
    c.emit("reshape", [c.act(n.input[0])], [n.output[0]], shape=list(out))


@_rule("Transpose", "permute (a view when only axes of size 1 move)")
def _transpose(c: _Ctx, n):
    r = len(c.shape(n.input[0]))
    perm = list(c.attr(n, "perm", list(range(r))[::-1]))
    c.emit("permute", [c.act(n.input[0])], [n.output[0]], dims=perm)


@_rule("Concat", "concat(axis); a constant operand becomes a model input")
def _concat(c: _Ctx, n):
    c.emit("concat", [c.act(x) for x in n.input], [n.output[0]], axis=int(c.attr(n, "axis")))


@_rule("Split", "split(parts = [sizes], axis), one op per part")
def _split(c: _Ctx, n):
    shape = c.shape(n.input[0])
    axis = int(c.attr(n, "axis", 0)) % len(shape)
    if len(n.input) > 1 and n.input[1]:
        sizes = [int(v) for v in c.value(n.input[1], "split sizes")]
    elif c.attr(n, "split") is not None:
        sizes = [int(v) for v in c.attr(n, "split")]
    else:
        k = len(n.output)
        sizes = [-(-shape[axis] // k)] * (k - 1)
        sizes.append(shape[axis] - sum(sizes))
    c.emit("split", [c.act(n.input[0])], list(n.output), parts=sizes, axis=axis)


@_rule("Slice", "slice, one per sliced axis (steps of 1)")
def _slice(c: _Ctx, n):
    shape = c.shape(n.input[0])
    if c.opset >= 10:
        starts = [int(v) for v in c.value(n.input[1], "starts")]
        ends = [int(v) for v in c.value(n.input[2], "ends")]
        axes = [int(v) for v in c.value(n.input[3], "axes")] if len(n.input) > 3 and n.input[3] else \
            list(range(len(starts)))
        steps = [int(v) for v in c.value(n.input[4], "steps")] if len(n.input) > 4 and n.input[4] else \
            [1] * len(starts)
    else:
        starts, ends = list(c.attr(n, "starts")), list(c.attr(n, "ends"))
        axes, steps = list(c.attr(n, "axes", range(len(starts)))), [1] * len(starts)
    if any(s != 1 for s in steps):
        raise _Unsupported("only steps of 1 are imported")
    cur = c.act(n.input[0])
    cuts = []
    for a, s, e in zip(axes, starts, ends):
        a %= len(shape)
        size = shape[a]
        s = max(0, min(size, s + size if s < 0 else s))
        e = max(0, min(size, e + size if e < 0 else e))
        if e <= s:
            raise _Unsupported(f"the slice [{s}, {e}) of axis {a} is empty")
        if (s, e) != (0, size):
            cuts.append((a, s, e))
    if not cuts:
        c.alias[n.output[0]] = cur
        return
    for i, (a, s, e) in enumerate(cuts):
        out = n.output[0] if i == len(cuts) - 1 else f"{n.output[0]}#slice{i}"
        c.emit("slice", [cur], [out], axis=a, start=s, end=e)
        cur = out


@_rule("Pad", "pad (constant mode)")
def _pad(c: _Ctx, n):
    mode = c.attr(n, "mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode != "constant":
        raise _Unsupported(f"only constant padding is imported, found mode '{mode}'")
    r = len(c.shape(n.input[0]))
    if c.opset >= 11:
        pads = [int(v) for v in c.value(n.input[1], "pads")]
        value = float(c.value(n.input[2], "constant value").reshape(-1)[0]) if len(n.input) > 2 and n.input[2] \
            else 0.0
        if len(n.input) > 3 and n.input[3]:
            raise _Unsupported("the axes input is not imported")
    else:
        pads, value = list(c.attr(n, "pads")), float(c.attr(n, "value", 0.0))
    if any(p < 0 for p in pads):
        raise _Unsupported("negative pads (cropping) are not imported")
    pairs = []
    last = max((i for i in range(r) if pads[i] or pads[i + r]), default=None)
    if last is None:
        c.alias[n.output[0]] = c.name(n.input[0])
        return
    first = min(i for i in range(r) if pads[i] or pads[i + r])
    for i in range(r - 1, first - 1, -1):
        pairs += [pads[i], pads[i + r]]
    c.emit("pad", [c.act(n.input[0])], [n.output[0]], pads=pairs, value=value)


@_rule("ReduceMean ReduceSum ReduceMax", "reduce_mean, reduce_sum, reduce_max, one per reduced axis")
def _reduce(c: _Ctx, n):
    shape = c.shape(n.input[0])
    r = len(shape)
    axes = c.attr(n, "axes")
    if axes is None and len(n.input) > 1 and n.input[1]:
        axes = [int(v) for v in c.value(n.input[1], "axes")]
    if not axes:
        if c.attr(n, "noop_with_empty_axes", 0):
            c.alias[n.output[0]] = c.name(n.input[0])
            return
        axes = list(range(r))
    keep = bool(c.attr(n, "keepdims", 1))
    kind = {"ReduceMean": "reduce_mean", "ReduceSum": "reduce_sum", "ReduceMax": "reduce_max"}[n.op_type]
    cur = c.act(n.input[0])
    order = sorted({int(a) % r for a in axes}, reverse=True)
    for i, a in enumerate(order):
        out = n.output[0] if i == len(order) - 1 else f"{n.output[0]}#reduce{i}"
        c.emit(kind, [cur], [out], axis=a, keepdims=keep)
        cur = out


@_rule("Gather", "embedding when the data is a constant [V, D] (axis 0); slice when the indices are a constant "
                 "scalar or range")
def _gather(c: _Ctx, n):
    data, idx = n.input
    axis = int(c.attr(n, "axis", 0))
    d = c.const(data)
    if d is not None and c.const(idx) is None:
        if len(d.shape) != 2 or axis != 0:
            raise _Unsupported("a constant table must be [vocab, width], gathered along axis 0")
        c.emit("embedding", [c.act(idx)], [n.output[0]], vocab=d.shape[0], d=d.shape[1])
        return
    ix = c.value(idx, "indices")
    shape = c.shape(data)
    a = axis % len(shape)
    flat = [int(v) % shape[a] for v in ix.reshape(-1)]
    if not flat or flat != list(range(flat[0], flat[0] + len(flat))):
        raise _Unsupported("only constant indices that are one position or a contiguous range are imported")
    mid = f"{n.output[0]}#slice"
    c.emit("slice", [c.act(data)], [mid], axis=a, start=flat[0], end=flat[-1] + 1)
    c.emit("reshape", [mid], [n.output[0]], shape=list(c.shape(n.output[0])))


@_rule("Erf", "gelu, when it is the GELU pattern x * 0.5 * (1 + erf(x / sqrt 2)) (as PyTorch exports "
              "nn.GELU); any other Erf is refused")
def _erf(c: _Ctx, n):
    m = _gelu_pattern(c, n)
    if m is None:
        raise _Unsupported("only the GELU pattern x * 0.5 * (1 + erf(x / sqrt 2)) is imported; "
                           "this Erf is not part of one")
    x, out, nodes = m
    c.skip |= nodes
    c.emit("gelu", [c.act(x)], [out])


def _scalar(c: _Ctx, x: str):
    k = c.const(x)
    return float(k.value.reshape(-1)[0]) if k is not None and k.value is not None and k.value.size == 1 else None


def _other(node, x: str):
    rest = [i for i in node.input if i != x]
    return rest[0] if len(rest) == 1 else None


def _gelu_pattern(c: _Ctx, erf):
    """(x, output, the node indices after the Erf the pattern takes) of the Erf GELU
    x * 0.5 * (1 + erf(x / sqrt 2)), the 0.5 applied last or to x first; None if it is not one.
    The Div before the Erf has already been converted to a scale: it is taken back."""
    last = c.steps[-1] if c.steps else None
    if last is None or last.kind != "scale" or last.outs[0] != c.name(erf.input[0]):
        return None
    by = dict(last.values)["by"]
    if not math.isclose(by, 1 / math.sqrt(2), rel_tol=1e-3):
        return None
    x = last.ins[0]

    def only(t):
        i = c.single_consumer(t)
        return (i, c.nodes[i]) if i is not None else (None, None)
    i_add, add = only(erf.output[0])
    if add is None or add.op_type != "Add" or _scalar(c, _other(add, erf.output[0]) or "") != 1.0:
        return None
    i_mul, mul = only(add.output[0])
    if mul is None or mul.op_type != "Mul":
        return None
    y = _other(mul, add.output[0])
    if y is None:
        return None
    if c.name(y) == x:  # x * (1 + erf) then * 0.5
        i_half, half = only(mul.output[0])
        if half is None or half.op_type != "Mul" or _scalar(c, _other(half, mul.output[0]) or "") != 0.5:
            return None
        out, nodes = half.output[0], {i_add, i_mul, i_half}
    else:  # (0.5 x) * (1 + erf): the 0.5 x was a scale already
        prev = next((s for s in c.steps if s.outs[0] == c.name(y)), None)
        if prev is None or prev.kind != "scale" or prev.ins[0] != x or dict(prev.values)["by"] != 0.5 or \
                len(c.consumers.get(y, [])) != 1:
            return None
        c.steps.remove(prev)
        out, nodes = mul.output[0], {i_add, i_mul}
    if len(c.consumers.get(last.outs[0], [])) != 1:
        return None
    c.steps.remove(last)
    return x, out, nodes


@_rule("Constant ConstantOfShape Shape", "nothing: folded into constants (Shape from the static shapes), as "
                                        "are Identity, Cast, Reshape, (Un)Squeeze, Flatten, Transpose, Concat, "
                                        "Gather, Slice, Add, Sub, Mul, Div and Sqrt of constants")
def _constant(c: _Ctx, n):
    raise _Unsupported("its inputs must be constants (it is folded at import)")


def docs_table() -> str:
    """The ONNX ops archc imports as a Markdown table, ops that become the same grouped in a
    row: docs/onnx.md holds this text (a test compares them)."""
    rows: dict[str, list[str]] = {}
    for op in sorted(OPS):
        rows.setdefault(OPS[op].becomes, []).append(op)
    lines = ["| ONNX op | becomes |", "| --- | --- |"]
    for becomes, ops in sorted(rows.items(), key=lambda kv: kv[1][0]):
        lines.append(f"| {', '.join(ops)} | {becomes} |")
    return "\n".join(lines) + "\n"


# ---- constants --------------------------------------------------------------------------------

def _fold(c: _Ctx, n) -> bool:
    """Fold a node whose inputs are all constant (or Shape, which static shapes make one) into a
    constant; False when it is not one archc folds."""
    import numpy as np
    op = n.op_type
    if op == "Constant":
        for a in n.attribute:
            if a.name == "value":
                arr = c.np_helper.to_array(a.t)
                c.consts[n.output[0]] = Const(tuple(arr.shape), arr)
                return True
            if a.name in ("value_float", "value_int", "value_floats", "value_ints"):
                arr = np.array(c.onnx.helper.get_attribute_value(a))
                c.consts[n.output[0]] = Const(tuple(arr.shape), arr)
                return True
        raise _Unsupported("a Constant without a tensor or number value is not imported")
    if op == "Shape":
        shape = c.shape(n.input[0])
        start, end = int(c.attr(n, "start", 0)), c.attr(n, "end")
        arr = np.array(shape[start:None if end is None else int(end)], dtype=np.int64)
        c.consts[n.output[0]] = Const(tuple(arr.shape), arr)
        return True
    ins = [c.const(x) for x in n.input if x]
    if not ins or any(k is None for k in ins):
        return False
    if op == "ConstantOfShape":
        shape = tuple(int(v) for v in c.value(n.input[0], "shape"))
        fill = c.attr(n, "value")
        v = c.np_helper.to_array(fill).reshape(-1)[0] if fill is not None else np.float32(0)
        c.consts[n.output[0]] = Const(shape, np.full(shape, v) if _prod(shape) <= _SMALL else None)
        return True
    out_shape = c.shapes.get(n.output[0])
    if op in ("Identity", "Cast", "Reshape", "Unsqueeze", "Squeeze", "Flatten", "Transpose", "Dropout") \
            and any(k.value is None for k in ins[:1]):
        if out_shape is None and op in ("Identity", "Cast", "Dropout"):
            out_shape = ins[0].shape
        if out_shape is None:
            return False
        c.consts[n.output[0]] = Const(out_shape)  # a large constant: its shape is what matters
        return True
    if any(k.value is None for k in ins):
        return False
    try:
        arr = _evaluate(c, n, [k.value for k in ins])
    except _Unsupported:
        raise
    except Exception:
        return False
    if arr is None:
        return False
    arr = np.asarray(arr)
    c.consts[n.output[0]] = Const(tuple(arr.shape), arr)
    return True


def _evaluate(c: _Ctx, n, v):
    """A constant node's value with numpy (the shape arithmetic exporters emit), or None."""
    import numpy as np
    op = n.op_type
    if op in ("Identity", "Cast", "Dropout"):
        return v[0]
    if op == "Reshape":
        shape = [int(s) for s in v[1]]
        shape = [v[0].shape[i] if s == 0 else s for i, s in enumerate(shape)]
        return v[0].reshape(shape)
    if op in ("Unsqueeze", "Squeeze"):
        axes = c.attr(n, "axes")
        axes = [int(a) for a in (v[1] if axes is None and len(v) > 1 else axes or [])]
        if op == "Squeeze":
            return np.squeeze(v[0], axis=tuple(axes)) if axes else np.squeeze(v[0])
        out = v[0]
        r = out.ndim + len(axes)
        for a in sorted(a % r for a in axes):
            out = np.expand_dims(out, a)
        return out
    if op == "Concat":
        return np.concatenate(v, axis=int(c.attr(n, "axis")))
    if op == "Gather":
        return np.take(v[0], v[1], axis=int(c.attr(n, "axis", 0)))
    if op in ("Add", "Sub", "Mul", "Div"):
        f = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}[op]
        out = f(v[0], v[1])
        if op == "Div" and np.issubdtype(v[0].dtype, np.integer):
            out = np.floor_divide(v[0], v[1])
        return out
    if op == "Transpose":
        perm = c.attr(n, "perm")
        return np.transpose(v[0], perm)
    if op == "Slice" and len(v) >= 3:
        sl = [slice(None)] * v[0].ndim
        axes = v[3] if len(v) > 3 else range(len(v[1]))
        steps = v[4] if len(v) > 4 else [1] * len(v[1])
        for a, s, e, st in zip(axes, v[1], v[2], steps):
            sl[int(a)] = slice(int(s), int(e), int(st))
        return v[0][tuple(sl)]
    if op == "Sqrt":
        return np.sqrt(v[0])
    return None


# ---- blocks: runs of identical layers ----------------------------------------------------------------

@dataclass
class _Segment:
    steps: list[Step]
    carried_in: str
    out: str
    sig: tuple = field(default=())


def _segments(steps: list[Step], inputs: list[str], output: str) -> list[_Segment]:
    """The steps cut wherever exactly one tensor is alive (made before, read after): the points
    where a chain of layers hands one tensor on. Every step is in one segment; a segment that
    does not start and end at such a cut has no signature and repeats nothing."""
    last_use: dict[str, int] = {}
    for i, s in enumerate(steps):
        for x in s.ins:
            last_use[x] = i
    last_use[output] = len(steps)
    born = {x: -1 for x in inputs}
    for i, s in enumerate(steps):
        for o in s.outs:
            born[o] = i
    cuts: dict[int, str] = {}  # position -> the one live tensor
    for p in range(len(steps) + 1):
        live = [x for x, b in born.items() if b < p and last_use.get(x, -2) >= p]
        if len(live) == 1:
            cuts[p] = live[0]
    bounds = sorted({0, len(steps)} | set(cuts))
    segs = []
    for p, q in zip(bounds, bounds[1:]):
        seg = _Segment(steps[p:q], cuts.get(p), cuts.get(q))
        if seg.carried_in is None or seg.out is None:
            seg.sig = ("unrepeatable", p)
        else:
            local: dict[str, tuple] = {seg.carried_in: ("in",)}
            sig = []
            for j, s in enumerate(seg.steps):
                sig.append((s.kind, s.values, tuple(local.get(t, ("?", t)) for t in s.ins), len(s.outs)))
                for k, o in enumerate(s.outs):
                    local[o] = (j, k)
            seg.sig = (tuple(sig), local.get(seg.out))
        segs.append(seg)
    return segs


def _runs(segs: list[_Segment], shapes: dict) -> list[tuple[int, int, int]]:
    """(first segment, segments per layer, layers) of every run of identical layers of two or
    more, chosen greedily from the start: the longest cover, then the shortest layer."""
    out, i = [], 0
    while i < len(segs):
        best = None
        for span in range(1, (len(segs) - i) // 2 + 1):
            sig = [s.sig for s in segs[i:i + span]]
            k = 1
            while [s.sig for s in segs[i + k * span:i + (k + 1) * span]] == sig:
                k += 1
            shape = shapes.get(segs[i].carried_in)
            if k < 2 or shape is None or shape != shapes.get(segs[i + span - 1].out):
                continue
            cover = sum(len(s.steps) for s in segs[i:i + k * span])
            if best is None or cover > best[0]:
                best = (cover, span, k)
        if best:
            out.append((i, best[1], best[2]))
            i += best[1] * best[2]
        else:
            i += 1
    return out


# ---- the whole import ---------------------------------------------------------------------------------

_DTYPES = {6: "int32", 7: "int64", 2: "uint8"}


def _ident(text: str, fallback: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_]", "_", text).strip("_")
    s = re.sub(r"_+", "_", s)
    if not s or s[0].isdigit():
        s = f"{fallback}_{s}" if s else fallback
    return s


def convert(model, path: str, dims: dict[str, int] | None = None, name: str | None = None):
    """An onnx.ModelProto as (Builder, output tensor, header text). `dims`: the values of the
    inputs' dynamic dimensions by name."""
    import onnx
    dims = dict(dims or {})
    model, original = onnx.ModelProto(), model
    model.CopyFrom(original)
    g = model.graph
    inits = {t.name for t in g.initializer}
    real_inputs = [vi for vi in g.input if vi.name not in inits]
    named = sorted({d.dim_param for vi in real_inputs for d in vi.type.tensor_type.shape.dim
                    if d.HasField("dim_param") and d.dim_param})
    for key in sorted(dims):
        if key not in named:
            from archc.dsl.diagnostics import did_you_mean
            raise ImportFailed(path, f"--dim {key}: no input has a dimension named '{key}'"
                                     + (f"{did_you_mean(key, named)} (the dynamic dimensions: {', '.join(named)})"
                                        if named else " (the inputs have no dynamic dimensions)"))
    real = {vi.name for vi in real_inputs}
    for vi in list(real_inputs) + list(g.output) + list(g.value_info):
        for axis, d in enumerate(vi.type.tensor_type.shape.dim):
            if d.HasField("dim_value") and d.dim_value > 0:
                continue
            if d.HasField("dim_param") and d.dim_param in dims:
                value = dims[d.dim_param]
                d.Clear()
                d.dim_value = value
            elif vi.name in real:
                what = f"the dynamic dimension '{d.dim_param}'" if d.HasField("dim_param") and d.dim_param \
                    else "an unknown size"
                hint = f"give its value with --dim {d.dim_param}=N" if d.HasField("dim_param") and d.dim_param \
                    else "archc imports static shapes only; export the model with this size fixed"
                raise ImportFailed(path, f"input '{vi.name}' has {what} at axis {axis}; {hint}")
    try:
        model = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception as e:  # onnx raises its own errors (InferenceError, ValidationError)
        raise ImportFailed(path, f"ONNX shape inference failed: {str(e).strip().splitlines()[0]}") from None
    if len(model.graph.output) != 1:
        raise ImportFailed(path, f"the graph has {len(model.graph.output)} outputs; an archc model returns one "
                                 f"({', '.join(o.name for o in model.graph.output)})")
    c = _Ctx(onnx, model, path)
    for vi in model.graph.input:
        if vi.name in c.consts:
            continue
        shape = c.shapes.get(vi.name)
        if shape is None:
            raise ImportFailed(path, f"input '{vi.name}' has no static shape")
        c.inputs.append((vi.name, shape, _DTYPES.get(vi.type.tensor_type.elem_type)))
    for i, n in enumerate(c.nodes):
        if i in c.skip:
            continue
        c.node = (i, n.name, n.op_type)
        try:
            if n.domain not in ("", "ai.onnx"):
                raise _Unsupported(f"ops of the domain '{n.domain}' are not imported")
            if _fold(c, n):
                continue
            rule = OPS.get(n.op_type)
            if rule is None:
                raise _Unsupported(f"archc does not import the ONNX op '{n.op_type}' (docs/onnx.md lists the "
                                   f"ops it imports)")
            rule.fn(c, n)
        except _Unsupported as e:
            raise ImportFailed(path, f"node {_node(i, n)}: {e}") from None
    output = c.name(model.graph.output[0].name)
    if output in c.consts:
        raise ImportFailed(path, f"the output '{model.graph.output[0].name}' is a constant")
    return _replay(c, path, output, name or _ident(os.path.splitext(os.path.basename(path))[0], "model"))


def _node(i: int, n) -> str:
    return f"#{i} '{n.name}' ({n.op_type})" if n.name else f"#{i} ({n.op_type})"


def _replay(c: _Ctx, path: str, output: str, model_name: str):
    """The steps built with a Builder: each run of identical layers as a block in a repeat."""
    inputs = [x for x, _, _ in c.inputs]
    segs = _segments(c.steps, inputs, output)
    runs = _runs(segs, c.shapes) if segs else []
    try:
        b = Builder(model_name)
    except ModelError as e:
        raise ImportFailed(path, f"--name: {e.diagnostics[0].message}") from None
    env: dict[str, object] = {}
    used_in = set()
    for x, shape, dtype in c.inputs:
        var = _ident(x, "input")
        while var in used_in:
            var += "_"
        used_in.add(var)
        env[x] = b.input(var, list(shape), dtype)

    def play(steps, env):
        for s in steps:
            i, nm, op = s.node
            try:
                ins = [env[x] for x in s.ins]
                vals = {k: v for k, v in s.values}
                out = b.op(s.kind, *ins, name=s.kind if len(s.outs) == 1 else [s.kind] * len(s.outs), **vals)
            except ModelError as e:
                msg = e.diagnostics[0].message.split(": ", 1)[-1]
                raise ImportFailed(path, f"node {_node(i, c.nodes[i])}: {msg}") from None
            outs = out if isinstance(out, list) else [out]
            for o, t in zip(s.outs, outs):
                want = c.shapes.get(o)
                if want is not None and t.shape != want:
                    raise ImportFailed(path, f"node {_node(i, c.nodes[i])}: archc's {s.kind} gives "
                                             f"{list(t.shape)} where ONNX infers {list(want)}")
                env[o] = t

    starts = {r[0]: r for r in runs}
    bodies: dict[tuple, str] = {}
    i = 0
    while i < len(segs):
        if i in starts:
            _, span, k = starts[i]
            group = segs[i:i + span]
            steps = [s for seg in group for s in seg.steps]
            key = tuple(seg.sig for seg in group)
            bname = bodies.setdefault(key, "layer" if not bodies else f"layer{len(bodies) + 1}")

            def body(x, steps=steps, group=group):
                local = dict(env)
                local[group[0].carried_in] = x
                play(steps, local)
                return local[group[-1].out]
            env[segs[i + span * k - 1].out] = b.repeat(
                k, lambda x, body=body, bname=bname: b.block(bname, body, x), env[group[0].carried_in],
                label="layers")
            i += span * k
        else:
            play(segs[i].steps, env)
            i += 1
    if output not in env:
        raise ImportFailed(path, f"the output '{output}' is not computed by any imported op")
    return b, env[output]


def import_onnx(path: str, dims: dict[str, int] | None = None, name: str | None = None) -> str:
    """The ONNX model at `path` as `.arch` text (a model declaration, blocks for repeated layers)."""
    try:
        import onnx
    except ImportError:
        raise ArchcError("archc import needs the onnx package: pip install 'archc[onnx]'") from None
    if not os.path.isfile(path):
        raise ImportFailed(path, "no such file" if not os.path.exists(path) else "not a regular file")
    try:
        model = onnx.load(path)
    except Exception as e:
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ImportFailed(path, f"cannot read it as an ONNX model: {why}") from None
    b, out = convert(model, path, dims, name)
    g = b.build(out)
    flops = sum(o.flops * o.count for o in g.ops)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
    given = "".join(f", {k} = {v}" for k, v in sorted((dims or {}).items()))
    header = (f"imported from {os.path.basename(path)} by archc import (ONNX opset {opset}{given})\n"
              f"{sum(o.count for o in g.ops)} ops, {number(flops)} forward FLOPs, {number(g.params_elems)} parameters")
    return b.to_arch(out, header=header)
