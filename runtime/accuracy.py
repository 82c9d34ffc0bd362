"""Numerical accuracy: a reduced-size instance of a run's model, executed in float64 and in the
run's declared precisions (rounded exactly as the formats round), with the error op by op.

What `evaluate` computes, and the rules it follows (also in the report's notes):

Instance. A run is evaluated at a reduced size (`choose_instance`): the values of the run's
`accuracy NAME = VALUE, ...` statement when it has one; otherwise the size rule: every run
parameter that is a plain integer literal above LIMIT = 64 and feeds the model call is brought
to LIMIT or below by dividing by a power of two and rounding to a whole number, kept a multiple
of every smaller model parameter that divided it (so `hidden` stays a multiple of `heads`);
derived parameters (`ffn = 4 * hidden`) follow. If the instance still needs more than
BUDGET_MACS multiply-accumulates per forward pass, LIMIT is halved (32, 16, 8). `--set` values
win over both. The instance is re-checked like any run, so an invalid one is a located error.

Data. Weights and inputs are seeded: the weights of op number i (its index in the graph) in
repeat iteration (j, ...) come from `np.random.default_rng([seed, 0, i, j, ...])`, graph input
number i from `default_rng([seed, 1, i])`, the analog noise of op i from
`default_rng([seed, 2, i, j, ...])`; so results do not depend on execution order. linear
weights N(0, 1/fan_in); conv2d weights He N(0, 2/fan_in) (convolutions here feed batchnorm and
ReLU); biases N(0, 0.02^2); norm gains 1 + N(0, 0.02^2), shifts N(0, 0.02^2); embedding tables
N(0, 1) (a tied linear uses its embedding's table); float inputs N(0, 1); integer (token)
inputs uniform in [0, vocab) of the embedding that reads them ([0, 16) otherwise);
cross_entropy labels uniform over the classes; gather positions distinct, sorted, uniform;
KV-cache entries N(0, 1).

Execution. Ops run in graph order; a repeat body (the ops inside one `repeat`, as the IR
records around each op: Op.loops, nested repeats nested bodies) runs its trip count times,
each iteration with its own weights, the tensors the body replaces (Loop.carried: a variable
the body reassigns) fed back for the next iteration. Views (reshape, flatten) record no op; the
IR records whose view each is (Graph.views).
Forward pass only; dropout is the identity (evaluation), collectives are the identity (one
replica's arithmetic), `scale` multiplies by its factor (a power of two adds
no rounding), `sqrt` takes |x|, gelu is the tanh form, norms use eps 1e-5 and batchnorm uses the
batch's statistics.

Two paths per op: the reference (float64, NumPy, unrounded weights) and the declared path.
On the declared path every float input and weight is rounded to the op's format (the run's
matrix format, or a `--precision GLOB=FORMAT` override), which is also the format every
activation is stored in. Matrix products (linear, matmul, conv2d as im2col, attention's QK^T
and PV) use FormatSet.matmul: exact products (operands of up to 26 significant bits; fp64 x
fp64 products round to a double first, as the kernel computes them), rounding in the
accumulator format after every add; the result is then stored in the op's format. An op that
has an analog matrix unit for its format runs its products through runtime/analog.py instead,
attention's too (the right operand is programmed into the array like a weight). Attention
scales the scores by 1/sqrt(head width) and, when causal, lets query i see keys up to
i + (keys - queries), so a KV cache precedes the new keys. Data-movement ops (transpose,
permute, concat, split, slice, pad) move the stored values unchanged (a pad's fill value is
stored in the op's format). Element-wise (rope included: its sines and cosines are a float64
table), norm, softmax, pooling, reduction and loss ops (and a linear's bias add, attention's
softmax) compute in float64 on the rounded inputs and round the result to the vector format, then to the op's
format. The vector format is the run's, except that an op whose format is more precise and has
vector lanes on the tile computes in that format (fp64 runs on fp64 lanes). Unfused attention
stores the scores QK^T in the op's format before the softmax; flash attention keeps them in the
accumulator. MX operands are quantized along the reduction axis of the product they enter.

Errors. Per op: the relative L2 error ||y - y_ref|| / ||y_ref||, the largest absolute error and
the SNR 20 log10(||y_ref|| / ||y - y_ref||) of the op's output (the error accumulated up to and
including the op), and the local error: the op's output against the float64 op applied to the
same rounded inputs (what this op adds). A repeated op reports its last iteration (and, in JSON,
every iteration's relative error). End to end: the model's output.
"""
from __future__ import annotations

import difflib
import fnmatch
import json
import math
from dataclasses import dataclass, field, fields, is_dataclass

import numpy as np

from archc.dsl import ast
from archc.dsl.diagnostics import ArchcError, CheckError, Diagnostic, RunError, did_you_mean
from archc.dsl.ir import Graph, Op, Run
from archc.dsl.source import Source

from .analog import analog_matmul

SCHEMA = "archc.accuracy/1"
LIMITS = (64, 32, 16, 8)  # the size rule's bound on reducible parameters, tried in turn
BUDGET_MACS = 5e7  # the size rule shrinks an instance until a forward pass needs at most this
MAX_MACS = 1e9  # no instance beyond this is evaluated (~20 s of per-add rounding)
EPS = 1e-5  # norm epsilon
MATRIX_KINDS = ("linear", "matmul", "conv2d", "conv_transpose2d", "attention", "experts")


# ---- the reduced instance -------------------------------------------------------------------

@dataclass(frozen=True)
class Instance:
    """The run as evaluated: its reduced parameters and how they were chosen."""

    run: Run
    rule: str  # how the values were chosen, in words
    changed: tuple[tuple[str, object, object], ...]  # (parameter, declared value, value used)
    macs: float
    design: object = field(default=None, repr=False, compare=False)  # the checked design (its formats)


def forward_macs(graph: Graph) -> float:
    """Multiply-accumulates of one forward pass, every repeat iteration counted."""
    return sum(op.matrix_flops / 2 * op.count for op in graph.ops)


def choose_instance(tree: ast.File, source: Source, run_name: str, user: dict) -> Instance:
    """The reduced instance of `run_name` (see the module docstring). `user`: `--set` values as AST."""
    design = _check_design(tree, source, user, run_name)
    base = design.run(run_name)
    if not base.graph.ops:
        raise CheckError([Diagnostic(base.span, f"run '{run_name}': model '{base.model}' has no ops to evaluate")])
    decl = _run_decl(tree, run_name)
    declared = dict(base.params)
    if decl is None:  # not declared in this file's own statements: evaluated as declared
        inst = Instance(base, "as declared", (), forward_macs(base.graph), design)
        _cap(inst, decl)
        return inst
    acc = _accuracy_values(decl)
    if acc:
        overrides = {**acc, **user}
        run = _check_reduced(tree, source, overrides, run_name, decl, "the run's `accuracy` values")
        inst = Instance(run, "the run's `accuracy` statement", _changed(declared, run), forward_macs(run.graph),
                        design)
        _cap(inst, decl)
        return inst
    params = _param_defaults(decl)
    names = _model_names(decl, params)
    previous, inst = None, None
    for limit in LIMITS:
        values = _size_rule(declared, params, names, set(user), limit)
        if values == previous:
            break
        previous = values
        if not values:
            inst = Instance(base, "as declared: no model parameter above 64", (), forward_macs(base.graph),
                            design)
            break
        overrides = {k: _value_ast(k, v) for k, v in values.items()}
        overrides.update(user)
        shown = ", ".join(f"{k}={v}" for k, v in values.items())
        run = _check_reduced(tree, source, overrides, run_name, decl, f"the size rule's values ({shown})")
        inst = Instance(run, f"size rule: model parameters above {limit} reduced by powers of two",
                        _changed(declared, run), forward_macs(run.graph), design)
        if inst.macs <= BUDGET_MACS:
            break
    _cap(inst, decl)
    return inst


def _cap(inst: Instance, decl) -> None:
    if inst.macs > MAX_MACS:
        big = max(inst.run.graph.ops, key=lambda o: o.matrix_flops * o.count, default=None)
        where = f"; the largest op is '{big.name}' ({big.matrix_flops / 2 * big.count:.3g} MAC)" if big else ""
        raise CheckError([Diagnostic(_name_span(decl) if decl is not None else inst.run.span,
                                   f"the accuracy instance of run '{inst.run.name}' needs {inst.macs:.3g} "
                                   f"multiply-accumulates per forward pass, more than archc evaluates "
                                   f"with per-add rounding ({MAX_MACS:.0e}){where}; declare smaller sizes "
                                   "with `accuracy NAME = VALUE, ...` in the run or pass them with --set")])


def _check_design(tree, source, overrides, run_name):
    from archc.dsl.check import check
    from archc.dsl.parser import deep_enough
    with deep_enough():
        return check(tree, source.name, overrides, run_name)


def _check_run(tree, source, overrides, run_name) -> Run:
    return _check_design(tree, source, overrides, run_name).run(run_name)


def _check_reduced(tree, source, overrides, run_name, decl, what) -> Run:
    try:
        run = _check_run(tree, source, overrides, run_name)
    except ArchcError as e:
        head = Diagnostic(_name_span(decl), f"the reduced instance of run '{run_name}' for accuracy is not "
                                            f"valid with {what}; choose sizes with `accuracy NAME = VALUE, "
                                            "...` in the run or with --set")
        raise CheckError((head,) + e.diagnostics) from None
    if not run.graph.ops:
        raise CheckError([Diagnostic(_name_span(decl), f"the reduced instance of run '{run_name}' has no ops "
                                                       f"to evaluate (with {what})")])
    return run


def _run_decl(tree: ast.File, run_name: str) -> ast.Prop | None:
    for st in tree.stmts:
        if isinstance(st, ast.Prop) and st.name == "run" and st.args:
            head = st.args[0]
            name = head.func.id if isinstance(head, ast.Call) and isinstance(head.func, ast.Name) else \
                head.id if isinstance(head, ast.Name) else None
            if name == run_name:
                return st
    return None


def _name_span(decl: ast.Prop):
    head = decl.args[0]
    return head.func.span if isinstance(head, ast.Call) else head.span


def _accuracy_values(decl: ast.Prop) -> dict:
    out = {}
    for st in decl.body or ():
        if isinstance(st, ast.Prop) and st.name == "accuracy":
            for a in st.args:
                if isinstance(a, ast.Kwarg):
                    out[a.name] = a.value
    return out


def _param_defaults(decl: ast.Prop) -> dict:
    head = decl.args[0]
    if not isinstance(head, ast.Call):
        return {}
    return {a.name: a.value for a in head.args if isinstance(a, ast.Kwarg)}


def _names(node, out: set) -> set:
    if isinstance(node, ast.Name):
        out.add(node.id)
    elif isinstance(node, tuple):
        for x in node:
            _names(x, out)
    elif is_dataclass(node) and isinstance(node, ast.Node):
        for f in fields(node):
            if f.name != "span":
                _names(getattr(node, f.name), out)
    return out


def _model_names(decl: ast.Prop, defaults: dict) -> set:
    """Run parameters the model call depends on, directly or through other parameters' defaults."""
    names: set = set()
    for st in decl.body or ():
        if isinstance(st, ast.Prop) and st.name == "model":
            _names(st.args, names)
    todo = [n for n in names if n in defaults]
    while todo:
        n = todo.pop()
        for m in _names(defaults[n], set()):
            if m in defaults and m not in names:
                names.add(m)
                todo.append(m)
    return {n for n in names if n in defaults}


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _size_rule(declared: dict, defaults: dict, names: set, user: set, limit: int) -> dict:
    """{parameter: reduced value} under the size rule with bound `limit`."""
    order = [n for n in defaults if n in names and _is_int(declared.get(n))]
    order.sort(key=lambda n: (declared[n], list(defaults).index(n)))
    reduced = {n: declared[n] for n in order}
    out = {}
    for i, p in enumerate(order):
        v = declared[p]
        literal = isinstance(defaults[p], ast.Number) and defaults[p].unit is None
        if p in user or not literal or v <= limit:
            continue
        lcm = 1
        for j, q in enumerate(order):
            w = declared[q]
            if q != p and 1 < w <= v and v % w == 0 and (w < v or j < i):
                lcm = math.lcm(lcm, reduced[q])
        new = _shrink(v, lcm, limit)
        if new != v:
            reduced[p] = out[p] = new
    return out


def _shrink(v: int, multiple: int, limit: int) -> int:
    """v divided by the smallest power of two that brings it to `limit` or below, rounded to a
    multiple of `multiple` (at least `multiple`)."""
    k = 0
    while True:
        c = max(multiple, multiple * math.floor(v / 2 ** k / multiple + 0.5))
        if c <= limit or c == multiple:
            return c
        k += 1


def _value_ast(key: str, value) -> ast.Expr:
    from archc.dsl.parser import parse_value
    return parse_value(key, str(value), origin=f"<accuracy size rule: {key}>")


def _changed(declared: dict, run: Run) -> tuple:
    return tuple((k, declared[k], v) for k, v in run.params if k in declared and declared[k] != v)


# ---- per-op precision overrides -------------------------------------------------------------

@dataclass(frozen=True)
class PrecisionOverride:
    glob: str
    format: str
    ops: tuple[str, ...]  # the ops it matched


def parse_precision(items, formats, ops: tuple[Op, ...]) -> list[PrecisionOverride]:
    """`GLOB=FORMAT` strings (or a {glob: format} dict) -> overrides; errors point into the text."""
    if not items:
        return []
    pairs = list(items.items()) if isinstance(items, dict) else [None] * len(items)
    out = []
    names = [op.name for op in ops]
    for i, item in enumerate(items if not isinstance(items, dict) else pairs):
        text = f"{item[0]}={item[1]}" if isinstance(item, tuple) else str(item)
        src = Source("<--precision>", text)

        def fail(offset, length, message):
            raise ArchcError([Diagnostic(src.span_at(offset, max(1, length)), message)])
        if "=" not in text:
            fail(0, len(text), f"'--precision {text}' needs the form GLOB=FORMAT, e.g. 'transformer.mlp.*=fp8_e4m3'")
        glob, fmt = text.split("=", 1)
        lead = len(glob) - len(glob.lstrip())
        g, f = glob.strip(), fmt.strip()
        at_f = len(glob) + 1 + (len(fmt) - len(fmt.lstrip()))
        if not g:
            fail(0, 1, "--precision needs an op name or a pattern before '='")
        if not f:
            fail(len(glob), 1, "--precision needs a format after '='")
        if f not in formats:
            fail(at_f, len(f), f"unknown format '{f}'{did_you_mean(f, formats)}"
                 " (the formats of this design are the ones it declares or imports)")
        fobj = formats[f]
        if fobj.kind != "mx" and fobj.param("signed", True) is False:
            fail(at_f, len(f), f"format '{f}' is unsigned; it cannot hold a model's values")
        matched = tuple(n for n in names if fnmatch.fnmatchcase(n, g))
        if not matched:
            close = difflib.get_close_matches(g, names, n=3, cutoff=0.5)
            fail(lead, len(g), f"'{g}' matches no op of the model" +
                 (f"; ops are named like {', '.join(repr(c) for c in close)}" if close else
                  f"; its ops are named like {', '.join(repr(n) for n in names[:3])}"))
        out.append(PrecisionOverride(g, f, matched))
    return out


# ---- the report -----------------------------------------------------------------------------

@dataclass(frozen=True)
class ErrorStats:
    rel_l2: float  # ||y - y_ref|| / ||y_ref|| (inf when y_ref is zero and y is not, or y not finite)
    max_abs: float
    snr_db: float  # 20 log10(||y_ref|| / ||y - y_ref||); inf when exact
    finite: bool  # every declared-path value is finite

    @staticmethod
    def of(y: np.ndarray, ref: np.ndarray) -> "ErrorStats":
        y = np.asarray(y, dtype=np.float64)
        ref = np.asarray(ref, dtype=np.float64)
        if not np.all(np.isfinite(y)):
            return ErrorStats(math.inf, math.inf, -math.inf, False)
        d = y - ref
        ne, nr = float(np.linalg.norm(d)), float(np.linalg.norm(ref))
        mx = float(np.max(np.abs(d), initial=0.0))
        if ne == 0:
            return ErrorStats(0.0, 0.0, math.inf, True)
        if nr == 0:
            return ErrorStats(math.inf, mx, -math.inf, True)
        return ErrorStats(ne / nr, mx, 20 * math.log10(nr / ne), True)


@dataclass(frozen=True)
class OpAccuracy:
    index: int  # position in the graph
    name: str
    kind: str
    layer: str
    iterations: int  # times executed (repeat trip counts)
    shape: tuple[int, ...]
    format: str  # the op's operand and storage format
    acc: str | None  # accumulator (matrix ops)
    vector: str | None  # format of its vector arithmetic (None: none rounds)
    analog: bool
    error: ErrorStats  # accumulated error of the output (last iteration)
    local: ErrorStats  # error this op adds, given its rounded inputs (last iteration)
    iteration_rel_l2: tuple[float, ...]  # relative error of every iteration


@dataclass
class Trace:
    """Everything evaluated, so that a test (or a user) can recompute the same case.

    `inputs`: graph input id -> generated values (float64, or int64 tokens); `weights`: op name ->
    one dict per execution (`iteration`, and arrays such as `w`, `b`, `gamma`, `beta`, `table`,
    `labels`, `positions`, `cache_k`, `cache_v`), float64 before any rounding; `reference` and
    `declared`: tensor id -> the value of each path (the last iteration's for repeated ops);
    `run`: the reduced run, whose graph names every tensor; `formats`: the FormatSet used."""

    run: Run
    formats: object
    inputs: dict = field(default_factory=dict)
    weights: dict = field(default_factory=dict)
    reference: dict = field(default_factory=dict)
    declared: dict = field(default_factory=dict)
    op_formats: dict = field(default_factory=dict)  # op name -> (format, acc, vector, analog)
    output_id: int | None = None


@dataclass(frozen=True)
class AccuracyReport:
    schema: str
    run: str
    model: str
    system: str
    seed: int
    params: dict  # the reduced instance's parameter values
    reduced: tuple  # (parameter, declared value, value used)
    rule: str
    macs: float
    precision: dict
    ops: tuple[OpAccuracy, ...]
    output: dict  # name, shape, format, and the error
    notes: tuple[str, ...]
    trace: Trace = field(repr=False, compare=False)

    @property
    def output_error(self) -> ErrorStats:
        return self.output["error"]

    def op(self, name: str) -> OpAccuracy:
        for r in self.ops:
            if r.name == name:
                return r
        raise KeyError(name)

    def to_dict(self) -> dict:
        def stats(s: ErrorStats) -> dict:
            return {"rel_l2": _num(s.rel_l2), "max_abs": _num(s.max_abs), "snr_db": _num(s.snr_db),
                    "exact": s.rel_l2 == 0.0, "finite": s.finite}
        ops = []
        for r in self.ops:
            d = {"index": r.index, "name": r.name, "kind": r.kind, "layer": r.layer, "iterations": r.iterations,
                 "shape": list(r.shape), "format": r.format, "acc": r.acc, "vector": r.vector,
                 "analog": r.analog, **stats(r.error), "local": stats(r.local)}
            if r.iterations > 1:
                d["iteration_rel_l2"] = [_num(x) for x in r.iteration_rel_l2]
            ops.append(d)
        out = {k: v for k, v in self.output.items() if k != "error"}
        out.update(stats(self.output["error"]))
        return {"schema": self.schema, "run": self.run, "model": self.model, "system": self.system,
                "seed": self.seed, "params": dict(self.params),
                "reduced": {k: {"declared": a, "used": b} for k, a, b in self.reduced},
                "rule": self.rule, "macs": self.macs, "precision": self.precision, "ops": ops,
                "output": out, "notes": list(self.notes)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"

    def to_text(self) -> str:
        p = self.precision
        head = [f"accuracy of run {self.run}: model {self.model} on {self.system}, seed {self.seed}, "
                "forward pass, declared precision against float64"]
        params = ", ".join(f"{k}={v}" for k, v in self.params.items())
        head.append(f"  instance    {params}")
        red = ", ".join(f"{k} {a} -> {b}" for k, a, b in self.reduced)
        head.append(f"  sizes       {self.rule}" + (f": {red}" if red else "") + f"; {self.macs:.3g} MAC per pass")
        prec = f"{p['matrix']} x {p['matrix']} -> {p['acc']}, vector {p['vector']}, weights {p['weights']}"
        if p.get("analog"):
            prec += f", analog array ({_analog_text(p['analog'])})"
        head.append(f"  precision   {prec}")
        for o in p.get("overrides", []):
            n = len(o["ops"])
            head.append(f"  override    {o['glob']}={o['format']}: {n} op{'s' if n != 1 else ''}")
        head.append("")
        width = min(max([len(r.name) for r in self.ops] + [2]) + 4, 52)
        head.append(f"  {'op':<{width}} {'kind':<14} {'format':<22} {'rel L2':>9} {'max abs':>9} {'SNR dB':>7} "
                    f"{'local':>9}")
        for r in self.ops:
            name = r.name + (f" x{r.iterations}" if r.iterations > 1 else "")
            if len(name) > width:
                name = "…" + name[-(width - 1):]
            head.append(f"  {name:<{width}} {r.kind:<14} {_format_text(r):<22} {_e(r.error.rel_l2):>9} "
                        f"{_e(r.error.max_abs):>9} {_db(r.error.snr_db):>7} {_e(r.local.rel_l2):>9}")
        e = self.output["error"]
        head.append("")
        head.append(f"  output      {self.output['name']} {list(self.output['shape'])} in {self.output['format']}: "
                    f"rel L2 {_e(e.rel_l2)}, max abs {_e(e.max_abs)}, SNR {_db(e.snr_db)} dB")
        for n in self.notes:
            head.append(f"  note        {n}")
        return "\n".join(head) + "\n"


def _num(x: float):
    return x if math.isfinite(x) else None


def _e(x: float) -> str:
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf"
    return "0" if x == 0 else f"{x:.2e}"


def _db(x: float) -> str:
    if math.isinf(x):
        return "exact" if x > 0 else "-inf"
    return f"{x:.1f}"


def _format_text(r: OpAccuracy) -> str:
    if r.analog:
        return f"{r.format} analog"
    if r.acc:
        return f"{r.format}->{r.acc}" + (f" v{r.vector}" if r.vector else "")
    return r.format + (f" v{r.vector}" if r.vector else "")


def _analog_text(a: dict) -> str:
    return (f"DAC {a['dac_bits']} b, ADC {a['adc_bits']} b, out noise {a['out_noise']:g}, "
            f"programming noise {a['program_noise']:g}, bound {a['bound']:g}, {a['rows']} x {a['cols']}")


# ---- arithmetic: the reference and the declared path ------------------------------------------

class _Reference:
    """float64 arithmetic: nothing rounds beyond float64 itself."""

    analog = False

    def input(self, x):
        return np.asarray(x, dtype=np.float64)

    def store(self, x):
        return x

    def vector(self, x):
        return x

    def weight(self, w, axis=-1):
        return w

    def mm(self, a, b):
        return a @ b


class _Declared:
    """The declared path: operands and storage in `fmt`, products accumulated in `acc` (or on an
    analog array), vector results rounded to `vector`."""

    def __init__(self, fs, fmt: str, acc: str, vector: str, analog, rng):
        self.fs, self.f, self.acc_name, self.v = fs, fs[fmt], acc, fs[vector]
        self.analog, self.rng = analog, rng

    def _q(self, f, x, axis=-1):
        x = np.asarray(x, dtype=np.float64)
        if x.ndim and axis not in (-1, x.ndim - 1):
            return np.moveaxis(self._q(f, np.moveaxis(x, axis, -1)), -1, axis)
        nan = np.isnan(x)
        if not f.has_nan and nan.any():  # a NaN already made upstream stays NaN
            y = f.quantize(np.where(nan, 0.0, x))
            y[nan] = np.nan
            return y
        return f.quantize(x)

    def input(self, x):
        return self._q(self.f, x)

    def store(self, x):
        return self._q(self.f, x)

    def vector(self, x):
        return self._q(self.f, self._q(self.v, x))

    def weight(self, w, axis=-1):
        return self._q(self.f, w, axis)

    def mm(self, a, b):
        # operands in the op's format, MX blocks along the reduction axis (a's last, b's first)
        a, b = self._q(self.f, a), self._q(self.f, b, axis=0)
        if self.analog is not None:
            return analog_matmul(a, b, self.analog, self.rng)
        return self.fs.matmul(np.ascontiguousarray(a), np.ascontiguousarray(b), acc=self.acc_name)


# ---- the ops --------------------------------------------------------------------------------

def _gelu(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


UNARY = {
    "relu": lambda x: np.maximum(x, 0.0),
    "gelu": _gelu,
    "silu": lambda x: x * _sigmoid(x),
    "sigmoid": _sigmoid,
    "tanh": np.tanh,
    "exp": np.exp,
    "dropout": lambda x: x,
    "square": lambda x: x * x,
    "sqrt": lambda x: np.sqrt(np.abs(x)),
    "identity": lambda x: x,
}
BINARY = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide}


def _softmax(x, axis=-1):
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    e = np.exp(x - m)
    return e / np.sum(e, axis=axis, keepdims=True)


def _linear(ar, op, ins, w):
    x = ar.input(ins[0])
    y = ar.mm(x.reshape(-1, x.shape[-1]), ar.weight(w["w"], axis=0))
    y = ar.vector(y + ar.weight(w["b"])) if "b" in w else ar.store(y)
    return y.reshape(op.output.shape)


def _matmul(ar, op, ins, w):
    a, b = ar.input(ins[0]), ar.input(ins[1])
    batch = op.output.shape[:-2]
    a = np.broadcast_to(a, batch + a.shape[-2:]).reshape((-1,) + a.shape[-2:])
    b = np.broadcast_to(b, batch + b.shape[-2:]).reshape((-1,) + b.shape[-2:])
    out = np.stack([ar.store(ar.mm(a[i], b[i])) for i in range(a.shape[0])])
    return out.reshape(op.output.shape)


def _conv_geometry(op: Op):
    """kernel, stride, padding and groups of a conv2d op, from its attrs and shapes."""
    x = op.inputs[0].shape
    out = op.output.shape
    k, s = op.attr("kernel"), op.attr("stride", 1)
    groups = op.attr("groups", op.gemms[0].batch if op.gemms else 1)
    pad = op.attr("padding", None)
    if pad is None:
        pad = _padding(x[2], out[2], k, s, k // 2)
    return k, s, pad, groups


def _padding(size, out, k, s, default):
    for p in [default] + list(range(0, k + 1)):
        if (size + 2 * p - k) // s + 1 == out:
            return p
    raise RunError(f"cannot recover the padding of a window of {k} (stride {s}) from sizes {size} -> {out}")


def _windows(x, k, s, pad, fill):
    """[N, C, H, W] -> [N, C, Ho, Wo, k, k] windows of a padded x."""
    if pad:
        x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=fill)
    v = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(2, 3))
    return v[:, :, ::s, ::s]


def _conv2d(ar, op, ins, w):
    x = ar.input(ins[0])
    k, s, pad, groups = _conv_geometry(op)
    nb, ch = x.shape[:2]
    out, ho, wo = op.output.shape[1:]
    win = _windows(x, k, s, pad, 0.0)[:, :, :ho, :wo]  # [N, C, Ho, Wo, k, k]
    cg, og = ch // groups, out // groups
    wq = ar.weight(w["w"].reshape(out, -1), axis=-1)  # blocks along the reduction (C/g * k * k)
    parts = []
    for g in range(groups):
        cols = win[:, g * cg:(g + 1) * cg].transpose(0, 2, 3, 1, 4, 5).reshape(nb * ho * wo, cg * k * k)
        parts.append(ar.mm(cols, wq[g * og:(g + 1) * og].T))
    y = np.concatenate(parts, axis=1)  # [N*Ho*Wo, out]
    y = ar.vector(y + ar.weight(w["b"])) if "b" in w else ar.store(y)
    return y.reshape(nb, ho, wo, out).transpose(0, 3, 1, 2).copy()


def _conv_transpose2d(ar, op, ins, w):
    """Each kernel tap (a, b): the input's pixels times W[:, :, a, b] ([Cin, Cout], in the op's
    formats) added onto the output pixels (i stride + a, j stride + b); then the padding cropped."""
    x = ar.input(ins[0])
    k, s, pad = op.attr("kernel"), op.attr("stride"), op.attr("padding")
    nb, ch, h, wd = x.shape
    out = op.output.shape[1]
    full = np.zeros((nb, out, (h - 1) * s + k, (wd - 1) * s + k))
    rows = x.transpose(0, 2, 3, 1).reshape(nb * h * wd, ch)
    wq = ar.weight(w["w"], axis=0)  # [Cin, Cout, k, k], blocks along Cin (the reduction)
    for a in range(k):
        for b in range(k):
            y = ar.store(ar.mm(rows, np.ascontiguousarray(wq[:, :, a, b])))  # [N H W, Cout]
            full[:, :, a:a + (h - 1) * s + 1:s, b:b + (wd - 1) * s + 1:s] += y.reshape(nb, h, wd, out).transpose(0, 3, 1, 2)
    if s < k:  # windows overlap: the sums are vector adds in the op's format
        full = ar.vector(full)
    y = full[:, :, pad:pad + op.output.shape[2], pad:pad + op.output.shape[3]]
    if "b" in w:
        y = ar.vector(y + ar.weight(w["b"])[None, :, None, None])
    return np.ascontiguousarray(y)


def _pool_geometry(op: Op):
    x, o = op.inputs[0].shape, op.output.shape
    if op.attr("kernel") is not None:
        k = op.attr("kernel")
        s = op.attr("stride", k)
        return k, s, op.attr("padding", _padding(x[2], o[2], k, s, 0))
    k = int(round(math.sqrt(op.vector_flops / max(1, math.prod(o)))))
    for s, p in [(k, 0)] + [(s, p) for s in range(k, 0, -1) for p in range(0, k // 2 + 1)]:
        if (x[2] + 2 * p - k) // s + 1 == o[2] and (x[3] + 2 * p - k) // s + 1 == o[3]:
            return k, s, p
    raise RunError(f"cannot recover the window of pooling op '{op.name}' from its shapes", op.span)


def _pool(ar, op, ins, w):
    x = ar.input(ins[0])
    k, s, p = _pool_geometry(op)
    ho, wo = op.output.shape[2:]
    win = _windows(x, k, s, p, -np.inf if op.kind == "maxpool" else 0.0)[:, :, :ho, :wo]
    y = win.max(axis=(4, 5)) if op.kind == "maxpool" else win.mean(axis=(4, 5))
    return ar.vector(y)


def _global_avgpool(ar, op, ins, w):
    return ar.vector(ar.input(ins[0]).mean(axis=(2, 3)))


def _attention(ar, op, ins, w):
    q, k, v = (ar.input(t) for t in ins)
    heads, kvh = op.attr("heads"), op.attr("kv_heads", op.attr("heads"))
    flash, causal = op.attr("flash", False), op.attr("causal", False)
    b, s, d = q.shape
    dh = d // heads
    if "cache_k" in w:
        k = np.concatenate([ar.weight(w["cache_k"]), k], axis=1)
        v = np.concatenate([ar.weight(w["cache_v"]), v], axis=1)
    t = k.shape[1]
    scale = 1.0 / math.sqrt(dh)
    mask = np.arange(t)[None, :] <= np.arange(s)[:, None] + (t - s) if causal else None
    out = np.empty((b, s, d))
    for bi in range(b):
        for h in range(heads):
            g = h // (heads // kvh)
            qh = q[bi, :, h * dh:(h + 1) * dh]
            kh = k[bi, :, g * dh:(g + 1) * dh]
            vh = v[bi, :, g * dh:(g + 1) * dh]
            sc = ar.mm(qh, kh.T)
            if not flash:  # unfused: the scores are written out in the storage format
                sc = ar.store(sc)
            sc = sc * scale
            if mask is not None:
                sc = np.where(mask, sc, -np.inf)
            p = ar.vector(_softmax(sc))
            out[bi, :, h * dh:(h + 1) * dh] = ar.store(ar.mm(p, vh))
    return out


def _embedding(ar, op, ins, w):
    tok = np.asarray(ins[0])
    vocab = w["table"].shape[0]
    if tok.dtype.kind == "f":
        tok = np.nan_to_num(tok)
    tok = np.clip(np.rint(tok).astype(np.int64), 0, vocab - 1)
    return ar.weight(w["table"])[tok]


def _gather(ar, op, ins, w):
    return ar.input(ins[0])[:, w["positions"]]


def _norm(ar, op, ins, w):
    x = ar.input(ins[0])
    if op.kind == "batchnorm":
        axes = (0,) + tuple(range(2, x.ndim))
        shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
        mu = x.mean(axis=axes, keepdims=True)
        var = ((x - mu) ** 2).mean(axis=axes, keepdims=True)
        y = (x - mu) / np.sqrt(var + EPS) * ar.weight(w["gamma"]).reshape(shape) + \
            ar.weight(w["beta"]).reshape(shape)
    elif op.kind == "rmsnorm":
        y = x / np.sqrt((x * x).mean(axis=-1, keepdims=True) + EPS) * ar.weight(w["gamma"])
    else:
        mu = x.mean(axis=-1, keepdims=True)
        var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
        y = (x - mu) / np.sqrt(var + EPS) * ar.weight(w["gamma"]) + ar.weight(w["beta"])
    return ar.vector(y)


def _softmax_op(ar, op, ins, w):
    return ar.vector(_softmax(ar.input(ins[0]), axis=op.attr("axis", -1)))


def _rope(ar, op, ins, w):
    """Rotary embedding as RoFormer (Su et al. 2021, eq. 34) and Meta's LLaMA rotate adjacent
    pairs: (x_2i, x_2i+1) of each head by the angle m theta_i, theta_i = base^(-2i / dh), at
    position m = offset + row. The sines and cosines are computed in float64 (a table)."""
    x = ar.input(ins[0])
    b, s, d = x.shape
    heads = op.attr("heads")
    dh = d // heads
    theta = op.attr("base") ** (-np.arange(0, dh, 2) / dh)  # [dh / 2]
    ang = (op.attr("offset") + np.arange(s))[:, None] * theta[None, :]  # [s, dh / 2]
    cos, sin = np.cos(ang)[None, :, None, :], np.sin(ang)[None, :, None, :]
    xh = x.reshape(b, s, heads, dh // 2, 2)
    x0, x1 = xh[..., 0], xh[..., 1]
    y = np.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], axis=-1)
    return ar.vector(y.reshape(b, s, d))


def _transpose(ar, op, ins, w):
    return np.transpose(ar.input(ins[0]), op.attr("perm")).copy()


def _concat(ar, op, ins, w):
    ax, out = op.attr("axis"), op.output.shape
    return np.concatenate([np.broadcast_to(ar.input(x), out[:ax] + (np.shape(x)[ax],) + out[ax + 1:])
                           for x in ins], axis=ax)


def _slice(ar, op, ins, w):
    x = ar.input(ins[0])
    return np.take(x, np.arange(op.attr("start"), op.attr("end")), axis=op.attr("axis"))


def _pad(ar, op, ins, w):
    x = ar.input(ins[0])
    pads = op.attr("pads")
    width = [(0, 0)] * x.ndim
    for i in range(len(pads) // 2):
        width[x.ndim - 1 - i] = (pads[2 * i], pads[2 * i + 1])
    return ar.store(np.pad(x, width, constant_values=op.attr("value")))  # the fill value in the op's format


def _unary(ar, op, ins, w):
    if op.kind == "scale":
        return ar.vector(op.attr("by") * ar.input(ins[0]))
    return ar.vector(UNARY[op.kind](ar.input(ins[0])))


def _binary(ar, op, ins, w):
    return ar.vector(BINARY[op.kind](ar.input(ins[0]), ar.input(ins[1])))


def _reduce_axes(op: Op) -> list[int]:
    """The axes a reduction may have removed (the IR records its shapes, not its axis)."""
    x, o = op.inputs[0].shape, op.output.shape
    if op.attr("axis") is not None:
        return [int(op.attr("axis")) % len(x)]
    return [a for a in range(len(x)) if x[:a] + x[a + 1:] == o]


def _reduce_axis(op: Op) -> int:
    axes = _reduce_axes(op)
    return len(op.inputs[0].shape) - 1 if len(op.inputs[0].shape) - 1 in axes else axes[0]


def _reduce(ar, op, ins, w):
    x = ar.input(ins[0])
    fn = {"reduce_sum": np.sum, "reduce_mean": np.mean, "reduce_max": np.max}[op.kind]
    return ar.vector(fn(x, axis=_reduce_axis(op), keepdims=op.attr("keepdims", False)))


def _cross_entropy(ar, op, ins, w):
    x = ar.input(ins[0])
    m = np.max(x, axis=-1, keepdims=True)
    lse = np.log(np.sum(np.exp(x - m), axis=-1)) + m[..., 0]
    picked = np.take_along_axis(x, w["labels"][..., None], axis=-1)[..., 0]
    return ar.vector(lse - picked)


def _experts(ar, op, ins, w):
    """Mixture of experts: each token's top_k experts chosen on the router logits as this path
    computed them (a quantised router may choose differently from the reference: that is part
    of the error), the chosen logits' softmax as gates; each expert's FFN on its tokens in the
    op's formats, and the gated outputs summed."""
    x = ar.input(ins[0])
    e, k = op.attr("experts"), op.attr("top_k")
    d = x.shape[-1]
    xs, ls = x.reshape(-1, d), np.asarray(ins[1], dtype=np.float64).reshape(-1, e)
    top = np.argsort(-ls, axis=1, kind="stable")[:, :k]
    gate = _softmax(np.take_along_axis(ls, top, axis=1))
    y = np.zeros_like(xs)
    for j in range(e):
        rows, slot = np.nonzero(top == j)
        if not rows.size:
            continue
        h = xs[rows]
        if op.attr("gated"):
            a = ar.store(ar.mm(h, ar.weight(w["gate"][j], axis=0)))
            u = ar.store(ar.mm(h, ar.weight(w["up"][j], axis=0)))
            h = ar.vector(UNARY["silu"](a) * u)
        else:
            h = ar.vector(_gelu(ar.store(ar.mm(h, ar.weight(w["up"][j], axis=0)))))
        out = ar.store(ar.mm(h, ar.weight(w["down"][j], axis=0)))
        y[rows] = ar.vector(y[rows] + gate[rows, slot][:, None] * out)
    return y.reshape(op.output.shape)


def _param(ar, op, ins, w):
    return ar.weight(w["p"])


def _identity(ar, op, ins, w):
    return ar.input(ins[0])


IMPL = {
    "linear": _linear, "matmul": _matmul, "conv2d": _conv2d, "conv_transpose2d": _conv_transpose2d,
    "maxpool": _pool, "avgpool": _pool,
    "global_avgpool": _global_avgpool, "attention": _attention, "embedding": _embedding,
    "gather": _gather, "softmax": _softmax_op, "cross_entropy": _cross_entropy,
    "layernorm": _norm, "rmsnorm": _norm, "batchnorm": _norm,
    "reduce_sum": _reduce, "reduce_mean": _reduce, "reduce_max": _reduce,
    "allreduce": _identity, "allgather": _identity, "reduce_scatter": _identity, "alltoall": _identity,
    "experts": _experts, "param": _param,
    **{k: _unary for k in UNARY}, "scale": _unary, **{k: _binary for k in BINARY},
    "rope": _rope, "transpose": _transpose, "permute": _transpose, "concat": _concat, "split": _slice,
    "slice": _slice, "pad": _pad,
}
# nothing rounds: values are looked up or moved (a pad's fill value is stored in the op's format)
EXACT_KINDS = ("embedding", "gather", "allreduce", "allgather", "reduce_scatter", "alltoall", "transpose",
               "permute", "concat", "split", "slice", "pad")


# ---- weights and inputs ---------------------------------------------------------------------

def _make_weights(op: Op, rng: np.random.Generator, tables: dict) -> dict:
    w: dict = {}
    kind = op.kind
    if kind == "linear":
        k, n = op.inputs[0].shape[-1], op.output.shape[-1]
        tied = op.attr("tied", False)
        if tied:
            table = tables.get((n, k))
            if table is None:
                raise RunError(f"accuracy: the tied linear '{op.name}' shares the weights of an embedding "
                               f"of {n} x {k}, and the model has none before it", op.span)
            w["w"] = table.T
        else:
            w["w"] = rng.normal(0.0, math.sqrt(1.0 / k), (k, n))
        if op.attr("bias", False):
            w["b"] = rng.normal(0.0, 0.02, n)
    elif kind == "conv2d":
        kk, _, _, groups = _conv_geometry(op)
        ch, out = op.inputs[0].shape[1], op.output.shape[1]
        fan_in = ch // groups * kk * kk
        w["w"] = rng.normal(0.0, math.sqrt(2.0 / fan_in), (out, ch // groups, kk, kk))
        if op.attr("bias", False):
            w["b"] = rng.normal(0.0, 0.02, out)
    elif kind == "conv_transpose2d":
        kk, ch, out = op.attr("kernel"), op.inputs[0].shape[1], op.output.shape[1]
        w["w"] = rng.normal(0.0, math.sqrt(1.0 / (ch * kk * kk)), (ch, out, kk, kk))
        if op.attr("bias", False):
            w["b"] = rng.normal(0.0, 0.02, out)
    elif kind in ("layernorm", "rmsnorm", "batchnorm"):
        n = op.inputs[0].shape[1] if kind == "batchnorm" else op.inputs[0].shape[-1]
        w["gamma"] = 1.0 + rng.normal(0.0, 0.02, n)
        if kind != "rmsnorm":
            w["beta"] = rng.normal(0.0, 0.02, n)
    elif kind == "param":
        w["p"] = rng.normal(0.0, 0.02, op.output.shape)  # timm's trunc_normal_(std=.02) for cls_token, pos_embed
    elif kind == "experts":
        e, f, d = op.attr("experts"), op.attr("ffn"), op.inputs[0].shape[-1]
        if op.attr("gated"):
            w["gate"] = rng.normal(0.0, math.sqrt(1.0 / d), (e, d, f))
        w["up"] = rng.normal(0.0, math.sqrt(1.0 / d), (e, d, f))
        w["down"] = rng.normal(0.0, math.sqrt(1.0 / f), (e, f, d))
    elif kind == "embedding":
        vocab, d = op.attr("vocab"), op.output.shape[-1]
        w["table"] = rng.standard_normal((vocab, d))
    elif kind == "attention" and op.attr("cache", 0):
        b, _, kv = op.inputs[1].shape
        c = op.attr("cache")
        w["cache_k"] = rng.standard_normal((b, c, kv))
        w["cache_v"] = rng.standard_normal((b, c, kv))
    elif kind == "cross_entropy":
        x = op.inputs[0].shape
        w["labels"] = rng.integers(0, x[-1], x[:-1])
    elif kind == "gather":
        seq, n = op.inputs[0].shape[1], op.output.shape[1]
        w["positions"] = np.sort(rng.choice(seq, n, replace=False))
    return w


# ---- execution ------------------------------------------------------------------------------

@dataclass
class _Body:
    label: str
    trips: int
    nodes: list
    carry: tuple[tuple[int, int], ...] = ()  # (tensor read from before the body, body tensor replacing it)


def _plan(graph, ops: range, depth: int = 0) -> list:
    """Op indices and repeat bodies in execution order, from the loops the IR records around
    each op (Op.loops, Graph.loops: a nested repeat is a body inside its body)."""
    loops = {lp.id: lp for lp in graph.loops}
    nodes, ops = [], list(ops)
    k = 0
    while k < len(ops):
        op = graph.ops[ops[k]]
        if len(op.loops) <= depth:
            nodes.append(ops[k])
            k += 1
            continue
        lid, end = op.loops[depth], k
        while end < len(ops) and len(graph.ops[ops[end]].loops) > depth and graph.ops[ops[end]].loops[depth] == lid:
            end += 1
        lp = loops[lid]
        nodes.append(_Body(lp.label, lp.trips, _plan(graph, ops[k:end], depth + 1), lp.carried))
        k = end
    return nodes


class _Executor:
    def __init__(self, run: Run, fs, seed: int, op_format: dict, notes: list):
        self.run, self.graph, self.fs, self.seed = run, run.graph, fs, seed
        self.ops = run.graph.ops
        self.op_format = op_format  # op index -> (format, acc, vector, analog)
        self.notes = notes
        self.ref: dict = {}
        self.dec: dict = {}
        self.alias: dict = {}
        self.tables: dict = {}
        self.rows: dict = {}  # op index -> list of (error, local)
        self.trace = Trace(run, fs)
        self._resolve_views()

    # views (reshape, flatten): the IR records whose view each is (Graph.views), maybe a view's view
    def _resolve_views(self):
        views = dict(self.graph.views)
        self.source: dict = {}
        for v in views:
            s = v
            while s in views:
                s = views[s]
            self.source[v] = s

    def _src(self, tid: int) -> int:
        s = self.source.get(tid, tid)
        return self.alias.get(s, s)

    def _get(self, store: dict, t):
        return store[self._src(t.id)].reshape(t.shape)

    def _inputs(self):
        consumers = {}
        for op in self.ops:
            if op.kind == "embedding":
                consumers.setdefault(self.source.get(op.inputs[0].id, op.inputs[0].id), op.attr("vocab"))
        for i, t in enumerate(self.graph.inputs):
            rng = np.random.default_rng([self.seed, 1, i])
            if t.dtype in ("int32", "int64", "uint8"):
                x = rng.integers(0, consumers.get(t.id, 16), t.shape).astype(np.int64)
                self.ref[t.id] = self.dec[t.id] = x
            else:
                x = rng.standard_normal(t.shape)
                if t.dtype is not None and t.dtype in self.fs:  # given in its declared format
                    x = self.fs[t.dtype].quantize(x)
                self.ref[t.id] = self.dec[t.id] = x
            self.trace.inputs[t.id] = x

    def execute(self):
        self._inputs()
        plan = _plan(self.graph, range(len(self.ops)))
        self._carry(plan)
        with np.errstate(all="ignore"):
            self._run(plan, ())
        self.trace.reference = {k: v for k, v in self.ref.items()}
        self.trace.declared = {k: v for k, v in self.dec.items()}

    def _carry(self, nodes):
        """The carried tensors as stored (views resolved); a note where a body carries none."""
        for n in nodes:
            if isinstance(n, _Body):
                self._carry(n.nodes)
                n.carry = tuple((self.source.get(a, a), self.source.get(b, b)) for a, b in n.carry)
                if not n.carry and n.trips > 1:
                    self.notes.append(f"repeat body '{n.label}' has no loop-carried tensor: each of its "
                                      f"{n.trips} iterations reads the same input")

    def _run(self, nodes, it: tuple):
        for n in nodes:
            if isinstance(n, int):
                self._op(n, it)
                continue
            for j in range(n.trips):
                if j > 0:
                    for a, b in n.carry:
                        self.alias[a] = self.alias.get(b, b)
                self._run(n.nodes, it + (j,))
            for a, _ in n.carry:
                self.alias.pop(a, None)

    def _op(self, i: int, it: tuple):
        op = self.ops[i]
        impl = IMPL.get(op.kind)
        if impl is None:
            raise RunError(f"accuracy: archc cannot evaluate ops of kind '{op.kind}' yet", op.span)
        w = _make_weights(op, np.random.default_rng([self.seed, 0, i, *it]), self.tables)
        if op.kind == "embedding":
            self.tables[(w["table"].shape[0], w["table"].shape[1])] = w["table"]
        self.trace.weights.setdefault(op.name, []).append({"iteration": it, **w})
        fmt, acc, vector, analog = self.op_format[i]
        xr = [self._get(self.ref, t) for t in op.inputs]
        xd = [self._get(self.dec, t) for t in op.inputs]
        ref = _Reference()
        dec = _Declared(self.fs, fmt, acc, vector, analog, np.random.default_rng([self.seed, 2, i, *it]))
        try:
            yr = impl(ref, op, xr, w)
            yd = impl(dec, op, xd, w)
            yl = impl(ref, op, xd, w)
        except ValueError as e:  # a format that cannot hold what the op produces (NaN, negatives)
            raise RunError(f"accuracy: op '{op.name}' cannot be evaluated in {fmt}: {e}", op.span) from None
        self.ref[op.output.id] = np.asarray(yr, dtype=np.float64).reshape(op.output.shape)
        self.dec[op.output.id] = np.asarray(yd, dtype=np.float64).reshape(op.output.shape)
        self.rows.setdefault(i, []).append((ErrorStats.of(yd, yr), ErrorStats.of(yd, yl)))


# ---- the entry point ------------------------------------------------------------------------

def formats_for(design, progress=None) -> object:
    """The FormatSet of a design's formats: the standard one when the design only has those."""
    from archc.dsl.version import __version__

    from .numerics import FormatSet, standard_set
    fm = dict(design.formats)
    std = standard_set(progress)
    if all(n in std and std[n].ir == f for n, f in fm.items()):
        return std
    return FormatSet(fm, __version__, "accuracy formats", progress=progress)


def _wider(fs, a: str, b: str) -> bool:
    """Whether format a is more precise than b (a smaller machine epsilon)."""
    return fs[a].kind != "mx" and fs[a].eps < fs[b].eps


def evaluate(inst: Instance, seed: int = 0, precision=None, fs=None, progress=None) -> AccuracyReport:
    """Execute the instance twice (float64 and declared) and report the errors."""
    run = inst.run
    graph = run.graph
    design = inst.design
    fs = fs if fs is not None else formats_for(design, progress)
    formats = dict(design.formats)
    overrides = parse_precision(precision, formats, graph.ops)
    tile = run.machine.tile
    units = {(m.a, m.b): m for m in tile.matrix}
    vec_units = {u.fmt for u in tile.vector}
    p = run.precision
    notes: list[str] = []
    op_format = {}
    chosen = {}
    for i, op in enumerate(graph.ops):
        fmt = p.matrix
        for o in overrides:
            if op.name in o.ops:
                fmt = o.format
        chosen[i] = fmt
    missing_units = set()
    vector_upgrades = set()
    for i, op in enumerate(graph.ops):
        fmt = chosen[i]
        unit = units.get((fmt, fmt))
        acc = p.acc if fmt == p.matrix else (unit.acc if unit else p.acc)
        if unit is None and fmt != p.matrix and op.kind in MATRIX_KINDS:
            missing_units.add(fmt)
        vector = p.vector
        if fmt in vec_units and fmt in fs and vector in fs and _wider(fs, fmt, vector):
            vector = fmt
            vector_upgrades.add(fmt)
        analog = unit.analog if unit is not None else None
        op_format[i] = (fmt, acc, vector, analog)
    for f in sorted(missing_units):
        notes.append(f"tile '{tile.name}' has no {f} x {f} matrix unit: ops overridden to {f} accumulate "
                     f"in the run's {p.acc}")
    for f in sorted(vector_upgrades):
        notes.append(f"vector arithmetic of {f} ops runs in {f}: the tile has {f} vector lanes and {f} is "
                     f"more precise than the run's vector format {p.vector}")
    ex = _Executor(run, fs, seed, op_format, notes)
    ex.execute()
    rows = []
    for i, op in enumerate(graph.ops):
        runs = ex.rows.get(i, [])
        if not runs:
            continue
        fmt, acc, vector, analog = op_format[i]
        err, loc = runs[-1]
        rounds_vector = op.kind not in EXACT_KINDS and not (
            op.kind in ("linear", "conv2d", "conv_transpose2d") and "b" not in ex.trace.weights[op.name][-1])
        rows.append(OpAccuracy(i, op.name, op.kind, op.layer, len(runs), op.output.shape, fmt,
                               acc if op.kind in MATRIX_KINDS and analog is None else None,
                               vector if rounds_vector else None, analog is not None and op.kind in MATRIX_KINDS,
                               err, loc, tuple(e.rel_l2 for e, _ in runs)))
        ex.trace.op_formats[op.name] = op_format[i]
    out_t = graph.output if graph.output is not None else graph.ops[-1].output
    src = ex.source.get(out_t.id, out_t.id)
    y, yr = ex.dec[src].reshape(out_t.shape), ex.ref[src].reshape(out_t.shape)
    producer = next((k for k, op in enumerate(graph.ops) if op.output.id == src), None)
    ex.trace.output_id = src
    output = {"name": graph.ops[producer].name if producer is not None else "input",
              "kind": graph.ops[producer].kind if producer is not None else "input",
              "shape": list(out_t.shape),
              "format": op_format[producer][0] if producer is not None else p.matrix,
              "error": ErrorStats.of(y, yr)}
    if graph.output is None:
        notes.append("the model returns nothing: its last op's output is the end-to-end result")
    notes.append("forward pass only; dropout is the identity and collectives act on one replica")
    if any(op.kind in ("maxpool", "avgpool") and op.attr("kernel") is None for op in graph.ops):
        notes.append("pooling windows are recovered from shapes and FLOPs (the IR records no pool attributes)")
    for op in graph.ops:
        if op.kind.startswith("reduce_") and len(_reduce_axes(op)) > 1:
            notes.append(f"'{op.name}' could have reduced any of axes {_reduce_axes(op)} (the IR records no "
                         f"axis): archc reduced axis {_reduce_axis(op)}")
    if any(fs[f].kind in ("int", "fixed") for f, *_ in op_format.values()):
        notes.append("integer and fixed-point formats carry no scale here: values are rounded to their grid")
    unit = units.get((p.matrix, p.matrix))
    analog = unit.analog if unit else None
    prec = {"name": p.name, "matrix": p.matrix, "acc": p.acc, "vector": p.vector, "weights": p.weights,
            "analog": _analog_dict(analog) if analog else None,
            "overrides": [{"glob": o.glob, "format": o.format, "ops": list(o.ops)} for o in overrides]}
    return AccuracyReport(SCHEMA, run.name, run.model, run.machine.name, seed, dict(run.params), inst.changed,
                          inst.rule, inst.macs, prec, tuple(rows), output, tuple(notes), ex.trace)


def _analog_dict(a) -> dict:
    return {"dac_bits": a.dac_bits, "adc_bits": a.adc_bits, "out_noise": a.out_noise,
            "program_noise": a.program_noise, "bound": a.bound, "rows": a.rows, "cols": a.cols}
