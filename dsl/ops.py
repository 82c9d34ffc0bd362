"""The op registry: every op a model may call, its signature (tensors, then parameters with
their defaults and meaning), its op class, and its rule for the output shape, forward FLOPs,
weights and the data it moves besides its inputs and output. The one source of op signatures:
the builder binds calls by it, the checker validates names by it, the docs list it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from .diagnostics import did_you_mean as _hint
from .ir import Gemm
from .source import Span
from .values import MAX_INT, EvalError, Lst, Q, show
from .vocab import Collective

# Forward vector FLOPs per output element of the elementwise and normalisation ops.
UNARY_FLOPS = {"relu": 1, "gelu": 8, "silu": 4, "sigmoid": 4, "tanh": 4, "exp": 1, "dropout": 2,
               "scale": 1, "square": 1, "sqrt": 1, "identity": 0}
BINARY_FLOPS = {"add": 1, "sub": 1, "mul": 1, "div": 1}
NORM_FLOPS = {"layernorm": 8, "rmsnorm": 4, "batchnorm": 2}
SOFTMAX_FLOPS = 5  # per element: max, subtract, exp, sum, divide
# Rotary embedding, per element: x_i cos(m t) - x_j sin(m t) (or + for the pair's other half),
# two multiplies and one add, the sines and cosines read from a table (Su et al., "RoFormer:
# Enhanced Transformer with Rotary Position Embedding", 2021, eq. 34; Meta's LLaMA
# `apply_rotary_emb` and Hugging Face's `apply_rotary_pos_emb`, q * cos + rotate_half(q) * sin).
ROPE_FLOPS = 3
# A flash kernel computes attention in tiles of BLOCK query rows by BLOCK keys: FlashAttention-2
# (Dao, "FlashAttention-2: Faster Attention with Better Parallelism and Work Partitioning",
# 2023, Sec. 3.1) skips a causal mask's blocks that are wholly masked and computes the blocks
# on the diagonal in full (masking inside them); its forward tiles are 128 x 64 or 128 x 128
# (128 x 128 taken here, so the block count is symmetric).
FLASH_BLOCK = 128


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED = _Required()


@dataclass(frozen=True)
class Same:
    """A default that is another parameter's value (maxpool's stride = kernel)."""

    param: str


@dataclass(frozen=True)
class Param:
    """One parameter after an op's tensors. `default`: REQUIRED; a number, true/false or a list
    of numbers; Same(name); or None (not given: the op's rule says what that means, `shown`
    says it in the signature). `many`: takes every remaining positional value as a list."""

    name: str
    default: object = REQUIRED
    doc: str = ""
    shown: str | None = None
    many: bool = False

    def default_text(self) -> str | None:
        """The default as written in a signature, None for a required parameter."""
        if self.default is REQUIRED or self.many:
            return None
        if self.shown is not None:
            return self.shown
        return _text(self.default)


def _text(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, Same):
        return v.param
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_text(x) for x in v) + "]"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


@dataclass(frozen=True)
class OpSpec:
    """An op's signature and rule. `tensors` name its tensor arguments, which come first
    (`variadic`: the last one repeats, one or more); `params` follow, positionally in this
    order or by name; `cls` is its op class (`efficiency CLASS = F`), unless the rule makes
    a call a view; `fn(ctx, tensors, values)` returns the output (a list: one op per output)."""

    tensors: tuple[str, ...]
    params: tuple[Param, ...]
    fn: Callable
    cls: str
    doc: str
    variadic: bool = False

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def param(self, name: str) -> Param:
        return next(p for p in self.params if p.name == name)

    def signature(self, kind: str) -> str:
        """`conv2d(x, out, kernel, stride = 1, padding = 0, groups = 1, bias = false)`."""
        parts = list(self.tensors)
        if self.variadic:
            parts[-1] += ", ..."
        for p in self.params:
            d = p.default_text()
            parts.append(f"{p.name}..." if p.many else p.name if d is None else f"{p.name} = {d}")
        return f"{kind}(" + ", ".join(parts) + ")"


@dataclass
class Out:
    """What an op's rule returns: the output's shape and the op's costs."""

    shape: tuple[int, ...]
    cls: str | None = None  # None: the spec's class; "view": no op, the output aliases the input
    matrix_flops: float = 0.0
    vector_flops: float = 0.0
    weight_elems: int = 0
    extra_elems: float = 0.0
    gemms: tuple[Gemm, ...] = ()
    attrs: dict = field(default_factory=dict)
    dtype: str | None = None
    reads_output: bool = False  # it reads only as many elements as it writes (a slice of its input)


def dim_value(v, span, what) -> int:
    """A positive whole number (a dimension, a count) from a value, or a located error."""
    if not (isinstance(v, Q) and v.dim.dimensionless):
        raise EvalError(span, f"{what} must be a whole number, found {show(v)}")
    if not float(v.value).is_integer():
        raise EvalError(span, f"{what} must be a whole number, found {v.value:g}")
    if v.value <= 0:
        raise EvalError(span, f"{what} must be positive, found {int(v.value)}")
    if v.value > MAX_INT:
        raise EvalError(span, f"{what} {v.value:.3g} is absurdly large")
    return int(v.value)


def _big(n) -> str:
    """A count of any size for a message (an int beyond float64 cannot be formatted as one)."""
    return f"{n:.3g}" if n < 1e300 else f"about 10^{len(str(int(n))) - 1}"


class OpCtx:
    """One call being bound: its values, where each was written, and located errors."""

    def __init__(self, span: Span, kind: str, spans: dict):
        self.span, self.kind, self.spans = span, kind, spans

    def at(self, key: str | None) -> Span:
        return self.spans.get(key, self.span) if key else self.span

    def fail(self, msg, key: str | None = None):
        raise EvalError(self.at(key), msg)

    def int(self, kw, key, minimum=1) -> int:
        v = kw.get(key)
        if v is None:
            self.fail(f"op '{self.kind}' needs '{key}'")
        if minimum >= 1:
            return dim_value(v, self.at(key), f"'{key}' of {self.kind}")
        return self.nonneg(v, key)

    def nonneg(self, v, key) -> int:
        if not (isinstance(v, Q) and v.dim.dimensionless and float(v.value).is_integer() and v.value >= 0):
            self.fail(f"'{key}' of {self.kind} must be a whole number ≥ 0, found {show(v)}", key)
        if v.value > MAX_INT:
            self.fail(f"'{key}' of {self.kind} is absurdly large ({_big(v.value)})", key)
        return int(v.value)

    def whole(self, v, key) -> int:
        """A whole number of either sign (an axis, a slice bound)."""
        if not (isinstance(v, Q) and v.dim.dimensionless and float(v.value).is_integer()):
            self.fail(f"'{key}' of {self.kind} must be a whole number, found {show(v)}", key)
        if abs(v.value) > MAX_INT:
            self.fail(f"'{key}' of {self.kind} is absurdly large ({_big(abs(v.value))})", key)
        return int(v.value)

    def axis(self, v, rank: int, key: str = "axis") -> int:
        """An axis of a tensor of `rank` (negative: from the end), as 0 .. rank - 1."""
        a = self.whole(v, key)
        if not -rank <= a < rank:
            self.fail(f"{self.kind}: axis {a} is out of range for a tensor of rank {rank} "
                      f"(axes {-rank} to {rank - 1})", key)
        return a % rank

    def flag(self, kw, key) -> bool:
        v = kw.get(key)
        if not isinstance(v, bool):
            self.fail(f"'{key}' of {self.kind} must be true or false, found {show(v)}", key)
        return v

    def number(self, kw, key) -> float:
        v = kw.get(key)
        if not (isinstance(v, Q) and v.dim.dimensionless):
            self.fail(f"'{key}' of {self.kind} must be a plain number, found {show(v)}", key)
        return float(v.value)

    def ints(self, kw, key, allow=lambda n: n >= 0, what="whole numbers ≥ 0") -> list[int]:
        """A list of whole numbers (a list value, or the values of a `many` parameter)."""
        v = kw.get(key)
        if not isinstance(v, Lst) or not all(isinstance(x, Q) and x.dim.dimensionless and
                                             float(x.value).is_integer() and abs(x.value) <= MAX_INT and
                                             allow(int(x.value)) for x in v.items):
            self.fail(f"'{key}' of {self.kind} must be a list of {what}, found "
                      f"{show(v) if not isinstance(v, Lst) else '[' + ', '.join(show(x) for x in v.items) + ']'}",
                      key)
        return [int(x.value) for x in v.items]


def default_value(p: Param, bound: dict):
    """The value a parameter takes when the call does not give it."""
    d = p.default
    if isinstance(d, Same):
        return bound[d.param]
    if d is None:
        return None
    return _value(d)


def _value(d):
    if isinstance(d, bool):
        return d
    if isinstance(d, (int, float)):
        return Q(float(d))
    if isinstance(d, (list, tuple)):
        return Lst(tuple(_value(x) for x in d))
    raise AssertionError(f"an op default must be a number, true/false or a list, not {d!r}")


def bind(spec: OpSpec, kind: str, span: Span, values: list, value_spans: list, kwargs: dict) -> tuple[dict, dict]:
    """The call's values by parameter name, defaults filled in, and where each was written.
    `kwargs`: name -> (value, span)."""
    names = spec.names
    kw: dict = {}
    spans: dict = {}
    params = list(spec.params)
    i = 0
    for p in params:
        if i >= len(values):
            break
        if p.many:
            kw[p.name] = Lst(tuple(values[i:])) if not (len(values) - i == 1 and isinstance(values[i], Lst)) \
                else values[i]
            spans[p.name] = value_spans[i] if i < len(value_spans) else span
            i = len(values)
            break
        kw[p.name] = values[i]
        spans[p.name] = value_spans[i] if i < len(value_spans) else span
        i += 1
    if i < len(values):
        listed = ", ".join(names) if names else "nothing"
        raise EvalError(value_spans[i] if i < len(value_spans) else span,
                        f"op '{kind}' takes at most {len(params)} value{'s' if len(params) != 1 else ''} besides "
                        f"its tensors ({listed}), {len(values)} given")
    for k, (v, s) in kwargs.items():
        if k not in names:
            raise EvalError(s, f"op '{kind}' has no argument '{k}'{_hint(k, names)}; it takes "
                               f"{spec.signature(kind)}")
        if k in kw:
            raise EvalError(s, f"argument '{k}' of op '{kind}' is given twice (by position and by name)")
        p = spec.param(k)
        kw[k] = Lst(tuple(v.items)) if p.many and isinstance(v, Lst) else Lst((v,)) if p.many else v
        spans[k] = s
    for p in params:
        if p.name not in kw:
            if p.default is REQUIRED:
                raise EvalError(span, f"op '{kind}' needs a value for '{p.name}': {spec.signature(kind)}")
            kw[p.name] = default_value(p, kw)
    return kw, spans


def _prod(xs) -> int:
    n = 1
    for x in xs:
        n *= x
    return n


def _elems(shape) -> int:
    return _prod(shape)


# ---- matrix ops -----------------------------------------------------------------------------

def _linear(c: OpCtx, ins, kw) -> Out:
    (x,) = ins
    if not x.shape:
        c.fail("linear needs an input with at least one dimension")
    k, n = x.shape[-1], c.int(kw, "out")
    m = _prod(x.shape[:-1])
    bias = c.flag(kw, "bias")
    tied = c.flag(kw, "tied")  # weights shared with an embedding: stored once
    return Out(x.shape[:-1] + (n,), matrix_flops=2 * m * k * n, vector_flops=m * n if bias else 0,
               weight_elems=(0 if tied else k * n) + (n if bias else 0),
               gemms=(Gemm(1, m, n, k),), attrs={"tied": tied, "weights": k * n, "bias": bias})


def _matmul(c: OpCtx, ins, kw) -> Out:
    a, b = ins
    if len(a.shape) < 2 or len(b.shape) < 2:
        c.fail(f"matmul needs two tensors of rank ≥ 2, found {list(a.shape)} and {list(b.shape)}")
    if a.shape[-1] != b.shape[-2]:
        c.fail(f"matmul shapes do not agree: {list(a.shape)} x {list(b.shape)} "
               f"(inner dimensions {a.shape[-1]} and {b.shape[-2]})")
    batch = _broadcast(c, a.shape[:-2], b.shape[:-2])
    m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
    nb = _prod(batch)
    return Out(batch + (m, n), matrix_flops=2 * nb * m * n * k, gemms=(Gemm(nb, m, n, k),))


def _conv_out(c, size, kernel, stride, pad, what):
    o = (size + 2 * pad - kernel) // stride + 1
    if o <= 0:
        c.fail(f"{what}: a kernel of {kernel} with padding {pad} does not fit an input of {size}")
    return o


def _conv2d(c: OpCtx, ins, kw) -> Out:
    (x,) = ins
    if len(x.shape) != 4:
        c.fail(f"conv2d needs an input [N, C, H, W], found {list(x.shape)}")
    nb, ch, h, w = x.shape
    out, k = c.int(kw, "out"), c.int(kw, "kernel")
    stride = c.int(kw, "stride")
    pad = c.int(kw, "padding", minimum=0)
    groups = c.int(kw, "groups")
    if ch % groups or out % groups:
        c.fail(f"conv2d: groups = {groups} must divide the input channels ({ch}) and the output "
               f"channels ({out})", "groups")
    ho, wo = _conv_out(c, h, k, stride, pad, "conv2d"), _conv_out(c, w, k, stride, pad, "conv2d")
    kk = ch // groups * k * k
    bias = c.flag(kw, "bias")
    m = nb * ho * wo
    # one GEMM per group: [N Ho Wo, Cin/g k k] x [Cin/g k k, Cout/g] (im2col; a depthwise
    # convolution is groups = Cin GEMMs of Cout/Cin columns)
    return Out((nb, out, ho, wo), matrix_flops=2 * m * out * kk,
               vector_flops=m * out if bias else 0, weight_elems=out * kk + (out if bias else 0),
               gemms=(Gemm(groups, m, out // groups, kk),),
               attrs={"kernel": k, "stride": stride, "padding": pad, "groups": groups, "bias": bias})


def _conv_transpose2d(c: OpCtx, ins, kw) -> Out:
    """The transposed convolution (PyTorch's ConvTranspose2d, U-Net's "up-convolution"): each
    input pixel's Cin vector times a [Cin, Cout k k] matrix scattered onto a k x k window of the
    output, windows `stride` apart and overlapping ones added (col2im); the output is
    (H - 1) stride - 2 padding + k. 2 N H W Cin Cout k^2 FLOPs (every input pixel meets every
    kernel tap once; at stride = kernel, U-Net's 2 x 2, no window overlaps), plus the overlap
    adds when stride < kernel. Its GEMM: [N H W, Cin] x [Cin, Cout k k]."""
    (x,) = ins
    if len(x.shape) != 4:
        c.fail(f"conv_transpose2d needs an input [N, C, H, W], found {list(x.shape)}")
    nb, ch, h, w = x.shape
    out, k = c.int(kw, "out"), c.int(kw, "kernel")
    stride, pad = c.int(kw, "stride"), c.int(kw, "padding", minimum=0)
    ho, wo = (h - 1) * stride - 2 * pad + k, (w - 1) * stride - 2 * pad + k
    if ho <= 0 or wo <= 0:
        c.fail(f"conv_transpose2d: padding {pad} leaves no output of an input of {h} x {w}", "padding")
    bias = c.flag(kw, "bias")
    m = nb * h * w
    overlap = max(0, nb * out * (h * w * k * k - (ho + 2 * pad) * (wo + 2 * pad)))  # adds where windows meet
    return Out((nb, out, ho, wo), matrix_flops=2 * m * ch * out * k * k,
               vector_flops=overlap + (nb * out * ho * wo if bias else 0),
               weight_elems=ch * out * k * k + (out if bias else 0), gemms=(Gemm(1, m, out * k * k, ch),),
               attrs={"kernel": k, "stride": stride, "padding": pad, "bias": bias})


def _attention(c: OpCtx, ins, kw) -> Out:
    q, k, v = ins
    if len(q.shape) != 3 or len(k.shape) != 3 or len(v.shape) != 3:
        c.fail("attention takes q, k, v of shape [batch, seq, features]")
    heads = c.int(kw, "heads")
    kv_heads = c.int(kw, "kv_heads")
    b, s, d = q.shape
    if d % heads:
        c.fail(f"attention: {heads} heads do not divide the model width {d}")
    if heads % kv_heads:
        c.fail(f"attention: {kv_heads} key/value heads do not divide {heads} heads")
    dh = d // heads
    if k.shape != v.shape or k.shape[0] != b or k.shape[2] != dh * kv_heads:
        c.fail(f"attention: k and v must be [{b}, seq, {dh * kv_heads}] for {kv_heads} key/value "
               f"heads of width {dh}; found {list(k.shape)} and {list(v.shape)}")
    cache = c.int(kw, "cache", minimum=0)
    t = k.shape[1] + cache
    flash = c.flag(kw, "flash")
    causal = c.flag(kw, "causal")
    if causal and s > t:
        c.fail(f"attention: causal attention of {s} queries needs at least as many keys, found {t}")
    bh = b * heads
    scores = bh * s * t
    computed = scores
    gemms = (Gemm(bh, s, t, dh), Gemm(bh, s, dh, t))
    if flash and causal:
        # FlashAttention-2 skips the tiles above the diagonal: `pairs` (query, key) scores per
        # head computed, in whole tiles but for the edges. As GEMMs for the machine model: the
        # s query rows against the keys a query computes on average (rounded up), so their
        # volume is the work done and their rows, width and batch the kernel's.
        pairs, _, _, _ = causal_tiles(s, t)
        computed = bh * pairs
        keys = -(-pairs // s)
        gemms = (Gemm(bh, s, keys, dh), Gemm(bh, s, dh, keys))
    # Unfused attention writes and reads the score matrix around the softmax (QK^T out, softmax
    # in and out, AV in), the whole of it even when causal (masked after it is computed);
    # training adds dropout on the probabilities (two more passes, added by the lowering). A
    # fused (flash) kernel keeps it on chip. A KV cache is read once.
    extra = (0 if flash else 4 * scores) + 2 * b * cache * dh * kv_heads
    return Out((b, s, d), matrix_flops=4 * computed * dh, vector_flops=SOFTMAX_FLOPS * computed,
               extra_elems=extra, gemms=gemms,
               attrs={"heads": heads, "kv_heads": kv_heads, "cache": cache, "flash": flash,
                      "causal": causal, "scores": scores, "queries": s, "keys": t, "head_dim": dh})


def causal_tiles(s: int, t: int, block: int = FLASH_BLOCK) -> tuple[int, int, int, int]:
    """A causal flash kernel's work for s queries over t keys (the last s keys are the queries'
    own; query i sees keys 0 .. t - s + i): (score pairs computed, tiles computed, tile rows,
    tile columns). Query tile j (rows j B .. min(s, (j+1) B) - 1) computes key tiles up to the
    one holding its last row's last visible key; every tile before the last query tile is
    whole, so with c = t - s and a = ceil(c / B), tile j < nq - 1 computes min(t, (a + j + 1) B)
    keys, and the last computes all t."""
    br, bc = min(block, s), min(block, t)
    nq = -(-s // br)
    c = t - s
    a = -(-c // bc)
    # tiles j < nq - 1 whose key range ends before t: (a + j + 1) bc <= t
    m = max(0, min(nq - 1, t // bc - a))
    last_rows = s - (nq - 1) * br
    pairs = br * (bc * (m * (a + 1) + m * (m - 1) // 2) + (nq - 1 - m) * t) + last_rows * t
    kt = -(-t // bc)  # key tiles of the whole range
    blocks = (m * (a + 1) + m * (m - 1) // 2) + (nq - 1 - m) * kt + kt
    return pairs, blocks, br, bc


# ---- pooling --------------------------------------------------------------------------------

def _pool(c: OpCtx, ins, kw) -> Out:
    (x,) = ins
    if len(x.shape) != 4:
        c.fail(f"{c.kind} needs an input [N, C, H, W], found {list(x.shape)}")
    nb, ch, h, w = x.shape
    k = c.int(kw, "kernel")
    stride = c.int(kw, "stride")
    pad = c.int(kw, "padding", minimum=0)
    ho, wo = _conv_out(c, h, k, stride, pad, c.kind), _conv_out(c, w, k, stride, pad, c.kind)
    return Out((nb, ch, ho, wo), vector_flops=nb * ch * ho * wo * k * k,
               attrs={"kernel": k, "stride": stride, "padding": pad})


def _global_avgpool(c: OpCtx, ins, kw) -> Out:
    (x,) = ins
    if len(x.shape) != 4:
        c.fail(f"global_avgpool needs an input [N, C, H, W], found {list(x.shape)}")
    return Out(x.shape[:2], vector_flops=x.elems)


# ---- elementwise ----------------------------------------------------------------------------

def _broadcast(c: OpCtx, a: tuple, b: tuple) -> tuple:
    out = []
    for i in range(1, max(len(a), len(b)) + 1):
        da = a[-i] if i <= len(a) else 1
        db = b[-i] if i <= len(b) else 1
        if da != db and 1 not in (da, db):
            c.fail(f"shapes {list(a)} and {list(b)} do not broadcast (dimension {-i}: {da} vs {db})")
        out.append(max(da, db))
    return tuple(reversed(out))


def _unary(c: OpCtx, ins, kw) -> Out:
    (x,) = ins
    attrs = {}
    if c.kind == "scale":
        by = kw.get("by")
        if not (isinstance(by, Q) and by.dim.dimensionless):
            c.fail(f"scale multiplies by a number: scale(x, by = 0.125), found {show(by)}", "by")
        attrs["by"] = by.value
    if c.kind == "dropout":
        rate = kw.get("rate")
        if not (isinstance(rate, Q) and rate.dim.dimensionless and 0 <= rate.value < 1):
            c.fail(f"dropout rate must be in [0, 1), found {show(rate)}", "rate")
        attrs["rate"] = rate.value
    return Out(x.shape, vector_flops=UNARY_FLOPS[c.kind] * x.elems, attrs=attrs)


def _binary(c: OpCtx, ins, kw) -> Out:
    a, b = ins
    shape = _broadcast(c, a.shape, b.shape)
    return Out(shape, vector_flops=BINARY_FLOPS[c.kind] * _prod(shape))


def _rope(c: OpCtx, ins, kw) -> Out:
    (x,) = ins
    if len(x.shape) != 3:
        c.fail(f"rope takes [batch, seq, heads x head width], found {list(x.shape)}")
    heads = c.int(kw, "heads")
    b, s, d = x.shape
    if d % heads:
        c.fail(f"rope: {heads} heads do not divide the width {d}", "heads")
    dh = d // heads
    if dh % 2:
        c.fail(f"rope rotates pairs of features: the head width {dh} must be even", "heads")
    base = c.number(kw, "base")
    if base <= 1:
        c.fail(f"rope: 'base' must be greater than 1, found {base:g}", "base")
    offset = c.int(kw, "offset", minimum=0)
    # the sine and cosine of each position's dh / 2 angles are read once: s x dh values
    return Out(x.shape, vector_flops=ROPE_FLOPS * x.elems, extra_elems=s * dh,
               attrs={"heads": heads, "base": base, "offset": offset})


def _softmax(c: OpCtx, ins, kw) -> Out:
    (x,) = ins
    if not x.shape:
        c.fail("softmax needs a tensor with at least one dimension")
    ax = c.axis(kw["axis"], len(x.shape))
    return Out(x.shape, vector_flops=SOFTMAX_FLOPS * x.elems, attrs={"axis": ax})


def _norm(c: OpCtx, ins, kw) -> Out:
    (x,) = ins
    if not x.shape:
        c.fail(f"{c.kind} needs a tensor with at least one dimension")
    if c.kind == "batchnorm":
        if len(x.shape) < 2:
            c.fail(f"batchnorm needs [N, C, ...], found {list(x.shape)}")
        wel = 2 * x.shape[1]
    else:
        wel = x.shape[-1] * (2 if c.kind == "layernorm" else 1)
    return Out(x.shape, vector_flops=NORM_FLOPS[c.kind] * x.elems, weight_elems=wel)


# ---- lookups, losses, reductions --------------------------------------------------------------

def _embedding(c: OpCtx, ins, kw) -> Out:
    (tok,) = ins
    vocab, d = c.int(kw, "vocab"), c.int(kw, "d")
    return Out(tok.shape + (d,), weight_elems=vocab * d, attrs={"vocab": vocab})


def _gather(c: OpCtx, ins, kw) -> Out:
    (x,) = ins
    if len(x.shape) < 2:
        c.fail(f"gather needs [batch, positions, ...], found {list(x.shape)}")
    n = c.int(kw, "positions")
    if n > x.shape[1]:
        c.fail(f"gather takes {n} positions of {x.shape[1]}", "positions")
    return Out((x.shape[0], n) + x.shape[2:])


def _cross_entropy(c: OpCtx, ins, kw) -> Out:
    (x,) = ins
    return Out(x.shape[:-1], vector_flops=5 * x.elems)


def _reduce(c: OpCtx, ins, kw) -> Out:
    (x,) = ins
    if not x.shape:
        c.fail(f"{c.kind} needs a tensor with at least one dimension")
    ax = c.axis(kw["axis"], len(x.shape))
    keep = c.flag(kw, "keepdims")
    n = x.shape[ax]
    outs = x.elems // n
    # n - 1 adds (comparisons) per output; a mean divides each sum once more
    flops = outs * (n - 1) + (outs if c.kind == "reduce_mean" else 0)
    shape = x.shape[:ax] + ((1,) if keep else ()) + x.shape[ax + 1:]
    return Out(shape, vector_flops=flops, attrs={"axis": ax, "keepdims": keep})


# ---- layout: views and data movement ----------------------------------------------------------

def _reshape(c: OpCtx, ins, kw) -> Out:
    (x,) = ins
    dims = kw.get("shape")
    if not isinstance(dims, Lst):
        c.fail("reshape takes the new shape as a list: reshape(x, [a, b])", "shape")
    known, infer = [], None
    for i, d in enumerate(dims.items):
        if isinstance(d, Q) and d.dim.dimensionless and d.value == -1:
            if infer is not None:
                c.fail("reshape: at most one dimension may be -1 (inferred)", "shape")
            infer = i
            known.append(1)
        else:
            known.append(dim_value(d, c.at("shape"), "a dimension"))
    if infer is not None:
        rest = _prod(known)
        if x.elems % rest:
            asked = ", ".join("-1" if i == infer else str(d) for i, d in enumerate(known))
            c.fail(f"cannot reshape {list(x.shape)} ({x.elems} elements) to [{asked}]: {x.elems} is not a "
                   f"multiple of {rest}", "shape")
        known[infer] = x.elems // rest
    shape = tuple(known)
    if _prod(shape) != x.elems:
        c.fail(f"cannot reshape {list(x.shape)} ({x.elems} elements) to {list(shape)} "
               f"({_prod(shape)} elements)")
    return Out(shape, "view")


def _flatten(c: OpCtx, ins, kw) -> Out:
    (x,) = ins
    return Out((x.shape[0], _prod(x.shape[1:])) if len(x.shape) > 1 else x.shape, "view")


def _moved(x, perm) -> Out:
    """The output of permuting x's axes: a view when only axes of size 1 move (the elements keep
    their order), else a copy: it reads and writes every element, no arithmetic."""
    shape = tuple(x.shape[p] for p in perm)
    big = [p for p in perm if x.shape[p] != 1]
    return Out(shape, "view" if big == sorted(big) else None, attrs={"perm": tuple(perm)})


def _transpose(c: OpCtx, ins, kw) -> Out:
    (x,) = ins
    r = len(x.shape)
    if r < 2:
        c.fail(f"transpose needs a tensor of rank ≥ 2, found {list(x.shape)}")
    a, b = c.axis(kw["a"], r, "a"), c.axis(kw["b"], r, "b")
    perm = list(range(r))
    perm[a], perm[b] = perm[b], perm[a]
    return _moved(x, perm)


def _permute(c: OpCtx, ins, kw) -> Out:
    (x,) = ins
    r = len(x.shape)
    dims = c.ints(kw, "dims", allow=lambda n: True, what="axes")
    if len(dims) != r:
        c.fail(f"permute: a tensor of rank {r} needs {r} axes, found {len(dims)}", "dims")
    perm = [c.axis(Q(float(d)), r, "dims") for d in dims]
    if sorted(perm) != list(range(r)):
        c.fail(f"permute: {dims} is not a permutation of the axes 0 to {r - 1}", "dims")
    return _moved(x, perm)


def _param(c: OpCtx, ins, kw) -> Out:
    """A learned tensor of its own (PyTorch's nn.Parameter: a ViT's class token and position
    embeddings): its elements are weights, trained and stored as any; no FLOPs."""
    shape = tuple(c.ints(kw, "shape", allow=lambda n: n >= 1, what="dimensions ≥ 1"))
    if not shape:
        c.fail("param needs a shape", "shape")
    return Out(shape, weight_elems=_prod(shape), attrs={"weights": _prod(shape)})


def _concat(c: OpCtx, ins, kw) -> Out:
    """Joins along an axis; on every other axis the sizes agree, or a size of 1 is broadcast
    (PyTorch's `cls_token.expand(B, -1, -1)` before `torch.cat`: a ViT's one class token for
    the whole batch). An input is read once, however far it is broadcast."""
    r = len(ins[0].shape)
    if r == 0:
        c.fail("concat needs tensors of rank ≥ 1")
    ax = c.axis(kw["axis"], r)
    if any(len(t.shape) != r for t in ins):
        c.fail(f"concat: shapes {', '.join(str(list(u.shape)) for u in ins)} must have the same rank")
    size = [max(t.shape[i] for t in ins) for i in range(r)]
    for t in ins:
        if any(t.shape[i] not in (1, size[i]) for i in range(r) if i != ax):
            c.fail(f"concat along axis {ax}: shapes {', '.join(str(list(u.shape)) for u in ins)} must agree "
                   f"on every other axis (or be 1 there, broadcast)")
    size[ax] = sum(t.shape[ax] for t in ins)
    return Out(tuple(size), attrs={"axis": ax})


def _slice(c: OpCtx, ins, kw) -> Out:
    (x,) = ins
    if not x.shape:
        c.fail("slice needs a tensor of rank ≥ 1")
    ax = c.axis(kw["axis"], len(x.shape))
    n = x.shape[ax]
    start = c.whole(kw["start"], "start")
    end = n if kw["end"] is None else c.whole(kw["end"], "end")
    s0, e0 = start + n if start < 0 else start, end + n if end < 0 else end
    if not 0 <= s0 < e0 <= n:
        c.fail(f"slice [{start}, {end}) of axis {ax} (size {n}) is empty or out of range: "
               f"0 ≤ start < end ≤ {n} (negative bounds count from the end)")
    return Out(x.shape[:ax] + (e0 - s0,) + x.shape[ax + 1:], reads_output=True,
               attrs={"axis": ax, "start": s0, "end": e0})


def _split(c: OpCtx, ins, kw) -> list[Out]:
    (x,) = ins
    if not x.shape:
        c.fail("split needs a tensor of rank ≥ 1")
    ax = c.axis(kw["axis"], len(x.shape))
    n = x.shape[ax]
    parts = kw["parts"]
    if isinstance(parts, Lst):
        sizes = c.ints(kw, "parts", allow=lambda v: v >= 1, what="positive sizes")
        if not sizes or sum(sizes) != n:
            c.fail(f"split: the sizes {sizes} add up to {sum(sizes)}, not axis {ax}'s size {n}", "parts")
    else:
        k = c.int(kw, "parts")
        if n % k:
            c.fail(f"split: {k} parts do not divide axis {ax} of size {n}; give the sizes as a list", "parts")
        sizes = [n // k] * k
    if len(sizes) > 4096:
        c.fail(f"split into {len(sizes)} parts: archc makes one op per part, at most 4096", "parts")
    out, start = [], 0
    for i, size in enumerate(sizes):
        out.append(Out(x.shape[:ax] + (size,) + x.shape[ax + 1:], reads_output=True,
                       attrs={"axis": ax, "start": start, "end": start + size, "part": i}))
        start += size
    return out


def _pad(c: OpCtx, ins, kw) -> Out:
    (x,) = ins
    r = len(x.shape)
    pads = c.ints(kw, "pads")
    if not pads or len(pads) % 2 or len(pads) > 2 * r:
        c.fail(f"pad takes pairs (before, after) from the last axis backwards, at most {r} pairs for a tensor "
               f"of rank {r}; found {len(pads)} values", "pads")
    shape = list(x.shape)
    for i in range(len(pads) // 2):
        shape[r - 1 - i] += pads[2 * i] + pads[2 * i + 1]
    value = c.number(kw, "value")
    return Out(tuple(shape), attrs={"pads": tuple(pads), "value": value})


def _ratio(c: OpCtx, kw, key: str, lo: float, zero: bool = False) -> float:
    v = c.number(kw, key)
    if not (v >= lo or (zero and v == 0)):
        c.fail(f"'{key}' of {c.kind} must be a number ≥ {lo:g}{' (or 0)' if zero else ''}, found {v:g}", key)
    return v


def _experts(c: OpCtx, ins, kw) -> Out:
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
    f, k = c.int(kw, "ffn"), c.int(kw, "top_k")
    if k > e:
        c.fail(f"experts: top_k = {k} but there are only {e} experts", "top_k")
    gated = c.flag(kw, "gated")
    capacity = _ratio(c, kw, "capacity", 1.0, zero=True)
    imbalance = _ratio(c, kw, "imbalance", 1.0)
    d, t = x.shape[-1], _prod(x.shape[:-1])
    mats, tk = (3 if gated else 2), t * k
    act = (UNARY_FLOPS["silu"] + 1) if gated else UNARY_FLOPS["gelu"]  # SiLU(g) * u, or GELU
    per = -(-tk // e)  # the mean tokens of one expert, for the shape of its GEMMs
    return Out(x.shape, matrix_flops=2 * tk * d * f * mats,
               vector_flops=tk * f * act + 2 * tk * d + SOFTMAX_FLOPS * t * e, weight_elems=e * mats * d * f,
               gemms=(Gemm(e * mats, per, f, d),),
               attrs={"experts": e, "top_k": k, "ffn": f, "gated": gated, "capacity": capacity,
                      "imbalance": imbalance, "weights": e * mats * d * f})


def _collective(c: OpCtx, ins, kw) -> Out:
    (x,) = ins
    return Out(x.shape, attrs={"collective": c.kind})


# ---- the registry -------------------------------------------------------------------------------

X = ("x",)
AXIS_LAST = Param("axis", -1, "the axis (negative: from the end)")
_SHAPE_DOC = "the new shape, a list; one dimension may be -1 (inferred)"


def _spec(tensors, params, fn, cls, doc, variadic=False) -> OpSpec:
    return OpSpec(tuple(tensors), tuple(params), fn, cls, doc, variadic)


OPS: dict[str, OpSpec] = {
    "linear": _spec(X, (Param("out", doc="output features"), Param("bias", True, "add a bias"),
                        Param("tied", False, "weights shared with an embedding (counted once)")), _linear, "matmul",
                    "x W (+ b) over the last axis; 2 m k n FLOPs for m rows of k features"),
    "matmul": _spec(("a", "b"), (), _matmul, "matmul",
                    "batched a @ b, batch dimensions broadcast; 2 b m n k FLOPs"),
    "conv2d": _spec(X, (Param("out", doc="output channels"), Param("kernel", doc="kernel height and width"),
                        Param("stride", 1), Param("padding", 0, "zeros on each side (PyTorch's default 0)"),
                        Param("groups", 1, "channel groups (groups = channels: depthwise)"),
                        Param("bias", False, "add a bias")), _conv2d, "conv",
                    "2-D convolution of [N, C, H, W]; 2 N Ho Wo Cout (Cin / groups) k^2 FLOPs, one GEMM per group"),
    "conv_transpose2d": _spec(X, (Param("out", doc="output channels"), Param("kernel", doc="kernel height and width"),
                                  Param("stride", 1), Param("padding", 0, "rows and columns cropped from each side"),
                                  Param("bias", False, "add a bias")), _conv_transpose2d, "conv",
                              "transposed convolution (up-convolution) of [N, C, H, W] to (H - 1) stride - 2 padding + "
                              "kernel; 2 N H W Cin Cout k^2 FLOPs, the GEMM [N H W, Cin] x [Cin, Cout k^2]"),
    "maxpool": _spec(X, (Param("kernel"), Param("stride", Same("kernel")), Param("padding", 0)), _pool, "pool",
                     "max over k x k windows of [N, C, H, W]; k^2 FLOPs per output"),
    "avgpool": _spec(X, (Param("kernel"), Param("stride", Same("kernel")), Param("padding", 0)), _pool, "pool",
                     "mean over k x k windows (padding counted as zeros); k^2 FLOPs per output"),
    "global_avgpool": _spec(X, (), _global_avgpool, "pool", "[N, C, H, W] -> [N, C]; one FLOP per element"),
    "attention": _spec(("q", "k", "v"), (
        Param("heads", doc="query heads"), Param("kv_heads", Same("heads"), "key/value heads (grouped-query)"),
        Param("causal", False, "query i sees keys up to i (after the cache)"),
        Param("cache", 0, "earlier positions held in a KV cache"),
        Param("flash", False, "fused kernel: scores stay on chip; causal skips masked tiles")),
        _attention, "attention",
        "softmax(q k^T / sqrt(dh)) v per head; 4 dh FLOPs per score computed (a causal flash kernel "
        "skips wholly masked 128 x 128 tiles), 5 vector FLOPs per score"),
    "experts": _spec(("x", "logits"), (
        Param("experts", doc="how many experts"), Param("ffn", doc="each expert's FFN width"),
        Param("top_k", 2, "experts per token"), Param("gated", True, "SwiGLU experts (three matrices), else GELU (two)"),
        Param("capacity", 0, "capacity factor: each expert computes capacity x the mean tokens, padded (0: dropless)"),
        Param("imbalance", 1, "the busiest expert's tokens over the mean (declared)")), _experts, "matmul",
        "mixture of experts: each token to the top_k experts its router logits rank highest, their outputs "
        "summed weighted by the softmax of the chosen logits; 2 d ffn FLOPs per matrix per token and expert"),
    "param": _spec((), (Param("shape", many=True, doc="its dimensions, as values or a list"),), _param,
                   "elementwise", "a learned tensor (a class token, position embeddings): weights, 0 FLOPs; "
                                  "reads its elements"),
    "embedding": _spec(("tokens",), (Param("vocab"), Param("d", doc="width")), _embedding, "embedding",
                       "table lookup; reads the rows gathered"),
    "gather": _spec(X, (Param("positions", doc="positions taken along axis 1"),), _gather, "embedding",
                    "`positions` of the seq positions of [batch, seq, ...] (a masked-LM head's)"),
    "cross_entropy": _spec(X, (), _cross_entropy, "loss", "loss over the last axis; 5 FLOPs per element"),
    "softmax": _spec(X, (AXIS_LAST,), _softmax, "softmax", "softmax along an axis; 5 FLOPs per element"),
    "rope": _spec(X, (Param("heads", doc="heads the width is split into"),
                      Param("base", 10000, "the angle base (theta_i = base^(-2i/dh))"),
                      Param("offset", 0, "position of the first row (after a KV cache)")), _rope, "elementwise",
                  "rotary position embedding of [batch, seq, heads x dh], adjacent pairs rotated (RoFormer, "
                  "LLaMA); 3 FLOPs per element, reads an s x dh sine/cosine table"),
    "reshape": _spec(X, (Param("shape", doc=_SHAPE_DOC),), _reshape, "view",
                     "a view: the same elements in row-major order; only the element count is checked (moving "
                     "axes is transpose/permute)"),
    "flatten": _spec(X, (), _flatten, "view", "a view [N, ...] -> [N, rest]"),
    "transpose": _spec(X, (Param("a", doc="one axis"), Param("b", doc="the other axis")), _transpose, "movement",
                       "swaps two axes: a copy (0 FLOPs, reads and writes every element), a view if only "
                       "axes of size 1 move"),
    "permute": _spec(X, (Param("dims", many=True, doc="the new order of the axes, as values or a list"),),
                     _permute, "movement", "reorders the axes: a copy as transpose, a view if only axes of "
                                           "size 1 move"),
    "concat": _spec(X, (Param("axis", doc="the axis joined along"),), _concat, "movement",
                    "joins tensors along an axis (a size of 1 on another axis is broadcast): 0 FLOPs, reads every "
                    "input once, writes the output", variadic=True),
    "split": _spec(X, (Param("parts", doc="a number of equal parts, or a list of sizes"), AXIS_LAST),
                   _split, "movement", "cuts a tensor along an axis into parts bound as `a, b = split(...)`: "
                                       "one op per part, each reading and writing its part"),
    "slice": _spec(X, (Param("axis"), Param("start", doc="first index (negative: from the end)"),
                       Param("end", None, "one past the last index", shown="size")), _slice, "movement",
                   "x[start:end] along an axis: reads and writes the part"),
    "pad": _spec(X, (Param("pads", doc="(before, after) pairs from the last axis backwards, as PyTorch's F.pad"),
                     Param("value", 0, "the fill value")), _pad, "movement",
                 "pads with a constant: reads the input, writes the output"),
    **{k: _spec(X, (Param("by", doc="the factor"),) if k == "scale" else
                (Param("rate", 0.1, "probability of dropping"),) if k == "dropout" else (),
                _unary, "elementwise", f"element-wise {k}; {UNARY_FLOPS[k]} FLOP{'s' if UNARY_FLOPS[k] != 1 else ''} "
                                       "per element") for k in UNARY_FLOPS},
    **{k: _spec(("a", "b"), (), _binary, "elementwise",
                f"element-wise {k} with broadcasting; 1 FLOP per output element") for k in BINARY_FLOPS},
    **{k: _spec(X, (), _norm, "norm", f"{k} ({'over channels' if k == 'batchnorm' else 'over the last axis'}); "
                                      f"{NORM_FLOPS[k]} FLOPs per element") for k in NORM_FLOPS},
    **{k: _spec(X, (AXIS_LAST, Param("keepdims", False, "keep the axis with size 1")), _reduce, "reduction",
                f"{k[7:]} along an axis; n - 1 FLOPs per output of n elements"
                + (" and one division" if k == "reduce_mean" else "")) for k in ("reduce_sum", "reduce_mean",
                                                                                    "reduce_max")},
    # every collective of the vocabulary a model may call (a pipeline's point-to-point is the mapping's)
    **{k: _spec(X, (), _collective, "collective", f"{k} over the run's chips")
       for k in Collective.words() if k not in ("none", "p2p")},
}
