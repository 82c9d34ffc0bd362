"""The graph builder every model goes through: it binds one op call at a time by the op registry
(dsl/ops.py), infers its shape and costs, names it, and records inputs, blocks' name paths,
repeats and views into an ir.Graph. The DSL's model interpreter (dsl/models.py), the Python
API (archc/model.py) and the ONNX importer all add their ops here; errors are EvalErrors at the
span of the call."""
from __future__ import annotations

from dataclasses import dataclass

from .ir import Graph, Loop, Op, Tensor
from .ops import OPS, OpCtx, Out, _big, bind
from .source import Span
from .values import EvalError, Lst

MAX_OPS = 100_000  # a model that expands past this is a runaway block, not a real network
MAX_ELEMS = 2**53  # a tensor larger than this cannot be counted exactly
MAX_WORK = 1e30  # FLOPs (or elements moved) of one op: a zettascale step is 1e21


@dataclass(frozen=True)
class Place:
    """Where ops are being added: the name path of the blocks around them (`mlp#2.`), how many
    times each runs (the product of the repeats around it), the layer (the innermost repeat's
    label) and the ids of the repeats around it, outermost first."""

    path: str = ""
    mult: int = 1
    layer: str = ""
    loops: tuple[int, ...] = ()


class GraphBuilder:
    """One model being built. `op` adds a call; `block` and `repeat` give the places of a block's
    and a repeat body's ops; `finish_repeat` records what a repeat carried; `graph` returns it all."""

    def __init__(self, model: str):
        self.model = model
        self.ops: list[Op] = []
        self.names: dict[str, int] = {}  # name base -> ops (and block calls) so named
        self.next_id = 0
        self.inputs: list[Tensor] = []
        self.layers: dict[str, int] = {}
        self.loops: list[Loop | None] = []
        self.views: list[tuple[int, int]] = []

    # ---- tensors ---------------------------------------------------------------------------
    def tensor(self, shape, span: Span, dtype: str | None = None) -> Tensor:
        n = 1
        for d in shape:
            n *= d
        if n > MAX_ELEMS:
            raise EvalError(span, f"a tensor of shape {list(shape)} has {_big(n)} elements; "
                                  f"archc accepts at most 2^53")
        self.next_id += 1
        return Tensor(self.next_id, tuple(shape), dtype)

    def input(self, shape, span: Span, dtype: str | None = None) -> Tensor:
        t = self.tensor(shape, span, dtype)
        self.inputs.append(t)
        return t

    # ---- places ----------------------------------------------------------------------------
    def block(self, place: Place, name: str) -> Place:
        """The place of the ops of one call of block `name` made at `place`: its name path is
        `name.`, `name#2.` for the second call at the same path, and so on."""
        base = f"{place.path}{name}"
        n = self.names[base] = self.names.get(base, 0) + 1
        return Place(f"{base}#{n}." if n > 1 else f"{base}.", place.mult, place.layer, place.loops)

    def repeat(self, place: Place, trips: int, label: str) -> tuple[Place, int]:
        """The place of a repeat body run `trips` times at `place`, and the repeat's id (its
        Loop is filled in by finish_repeat once the body has been built)."""
        layer = f"{place.path}{label}"
        self.layers[layer] = self.layers.get(layer, 0) + trips * place.mult
        loop_id = len(self.loops)
        self.loops.append(None)
        return Place(place.path, place.mult * trips, layer, place.loops + (loop_id,)), loop_id

    def finish_repeat(self, loop_id: int, trips: int, layer: str, carried, span: Span) -> None:
        """`carried`: (name, tensor before the body, tensor after it) of every value the body
        may replace; a body must keep shapes, and what it replaced is what one trip hands the next."""
        pairs = []
        for name, before, after in carried:
            if after.shape != before.shape:
                raise EvalError(span, f"the repeated block changes the shape of '{name}' from "
                                      f"{list(before.shape)} to {list(after.shape)}; a repeat must keep shapes")
            if after.id != before.id:
                pairs.append((before.id, after.id))
        self.loops[loop_id] = Loop(loop_id, layer, trips, tuple(sorted(pairs)))

    # ---- ops -------------------------------------------------------------------------------
    def op(self, kind: str, place: Place, tensors: list, values: list, kwargs: dict, span: Span,
           value_spans: list = (), target: str | None = None, targets: tuple[str, ...] = ()):
        """Add a call of op `kind`: its tensors, then its other values by position (`value_spans`:
        where each was written) and by name (`kwargs`: name -> (value, span)). Returns the output
        tensor, or a Lst of them for an op with several outputs (split), each named by `targets`
        when as many are given. The op is named `target` (else its kind) under the place's path."""
        spec = OPS[kind]
        want = len(spec.tensors)
        if (len(tensors) < want) if spec.variadic else (len(tensors) != want):
            raise EvalError(span, f"op '{kind}' takes {'at least ' if spec.variadic else ''}{want} tensor "
                                  f"argument{'s' if want != 1 else ''}, {len(tensors)} given: {spec.signature(kind)}")
        kw, where = bind(spec, kind, span, list(values), list(value_spans), kwargs)
        out = spec.fn(OpCtx(span, kind, where), tensors, kw)
        if isinstance(out, list):  # one op per output (split): the call's value is their list
            names = targets if len(targets) == len(out) else ()
            return Lst(tuple(self._add(kind, spec.cls, span, tensors, o, place, names[i] if names else None)
                             for i, o in enumerate(out)))
        return self._add(kind, spec.cls, span, tensors, out, place, target)

    def _add(self, kind: str, cls: str, span: Span, ins, out: Out, place: Place, target: str | None) -> Tensor:
        cls = out.cls or cls
        if cls == "view":  # a view moves no data: no op, but the graph records whose view it is
            t = self.tensor(out.shape, span, ins[0].dtype)
            self.views.append((t.id, ins[0].id))
            return t
        if len(self.ops) >= MAX_OPS:
            raise EvalError(span, f"the model expands to more than {MAX_OPS:,} ops")
        for what, x in (("FLOPs", out.matrix_flops + out.vector_flops), ("elements moved", out.extra_elems)):
            if x > MAX_WORK:
                raise EvalError(span, f"op '{kind}' has {_big(x)} {what}; archc accepts at most {MAX_WORK:.0e} "
                                      "per op")
        t = self.tensor(out.shape, span, out.dtype)
        base = f"{place.path}{target or kind}"
        n = self.names.get(base, 0) + 1
        self.names[base] = n
        name = base if n == 1 else f"{base}#{n}"
        attrs = dict(out.attrs)
        if out.reads_output:
            attrs["reads_output"] = True
        self.ops.append(Op(name, kind, cls, place.mult, tuple(ins), t, out.weight_elems,
                           float(out.matrix_flops), float(out.vector_flops), float(out.extra_elems),
                           out.gemms, tuple(sorted(attrs.items())), place.layer, place.loops, span=span))
        return t

    # ---- the result ------------------------------------------------------------------------
    def graph(self, output: Tensor | None) -> Graph:
        params = sum(op.weight_elems * op.count for op in self.ops)
        return Graph(self.model, tuple(self.ops), tuple(self.inputs), output, params,
                     tuple(sorted(self.layers.items())),
                     tuple(sorted((lp for lp in self.loops if lp is not None), key=lambda lp: lp.id)),
                     tuple(self.views))
