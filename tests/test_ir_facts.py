"""What the model IR keeps for the stages after it (issue 14): which tensor a view is of, the
loops around each op and what each loop carries, a linear's bias, attention's scores; so that
nothing later (the accuracy runner, the footprint) reconstructs them by arithmetic or by name."""
from __future__ import annotations

from archc.api import check
from archc.dsl.footprint import saved_elems
from archc.runtime.accuracy import _Body, _plan

from conftest import small_machine

MACHINE = small_machine("std.formats")


def _graph(tmp_path, model: str, call: str):
    f = tmp_path / "m.arch"
    f.write_text(MACHINE + model + f"run r {{\n  model {call}\n  on c\n  precision bf16\n  mode train\n}}\n")
    return check(f).run("r").graph


def test_a_view_records_the_tensor_it_reshapes(tmp_path):
    # b has as many elements as a and is newer: guessing "the latest tensor of that size" picked b
    g = _graph(tmp_path, "model m {\n  input a : [4, 6]\n  b = relu(a)\n  c = reshape(a, [6, 4])\n"
                         "  d = gelu(c)\n  return add(d, reshape(b, [6, 4]))\n}\n", "m")
    a, b = g.inputs[0], g.ops[0].output
    gelu = next(op for op in g.ops if op.kind == "gelu")
    assert dict(g.views)[gelu.inputs[0].id] == a.id
    add = next(op for op in g.ops if op.kind == "add")
    assert dict(g.views)[add.inputs[1].id] == b.id


def test_nested_repeats_are_nested_bodies_with_their_carried_tensors(tmp_path):
    # a body that starts with a nested repeat: the IR used to record the innermost label only,
    # so it could not be told from two repeats in a row
    g = _graph(tmp_path, "model m {\n  input x : [4, 8]\n  repeat 2 {\n    repeat 3 {\n      x = relu(x)\n    }\n"
                         "    x = gelu(x)\n  }\n  return x\n}\n", "m")
    relu, gelu = g.ops
    assert relu.loops == (0, 1) and gelu.loops == (0,)
    outer, inner = g.loops
    assert (outer.trips, inner.trips) == (2, 3)
    assert outer.carried == ((g.inputs[0].id, gelu.output.id),)
    assert inner.carried == ((g.inputs[0].id, relu.output.id),)
    (body,) = _plan(g, range(len(g.ops)))
    assert isinstance(body, _Body) and body.trips == 2
    assert isinstance(body.nodes[0], _Body) and body.nodes[0].trips == 3 and body.nodes[0].nodes == [0]
    assert body.nodes[1] == 1


def test_two_repeats_in_a_row_over_the_same_count_stay_apart(tmp_path):
    g = _graph(tmp_path, "model m(L) {\n  input x : [4, 8]\n  repeat L {\n    x = relu(x)\n  }\n"
                         "  repeat L {\n    x = gelu(x)\n  }\n  return x\n}\n", "m(2)")
    relu, gelu = g.ops
    assert relu.layer == gelu.layer == "L"  # the same label ...
    assert relu.loops == (0,) and gelu.loops == (1,)  # ... but two loops
    assert [type(n) for n in _plan(g, range(2))] == [_Body, _Body]


def test_a_linear_records_its_bias(tmp_path):
    g = _graph(tmp_path, "model m {\n  input x : [4, 8]\n  y = linear(x, 8)\n  return linear(y, 8, bias = false)\n}\n",
               "m")
    assert [op.attr("bias") for op in g.ops] == [True, False]


def test_saved_scores_are_attentions_scores_not_its_bytes(tmp_path):
    """Unfused attention keeps its probabilities for the backward: b x heads x s x t of them. With
    a KV cache the op also reads the cache (extra elements), which is not saved: the footprint
    used to divide the extra elements by four and counted the cache."""
    g = _graph(tmp_path, "model m {\n  input q : [2, 16, 64]\n  input k : [2, 16, 64]\n"
                         "  return attention(q, k, k, heads = 4, cache = 48)\n}\n", "m")
    (att,) = g.ops
    scores = 2 * 4 * 16 * (16 + 48)
    assert att.attr("scores") == scores
    inputs = 3 * 2 * 16 * 64 - 2 * 16 * 64  # q and k; the third argument is k again
    assert saved_elems(g, "none") == inputs + scores
