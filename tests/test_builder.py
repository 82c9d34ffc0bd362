"""Models built in Python (archc.model.Builder, issue 16 part 5): the same ir.Graph as the DSL
builds from the same model written by hand, the `.arch` text it writes back (byte-identical
across runs; checked, it builds the same graph again), its errors (a ModelError naming the op
and the calling line), running a Python-built model on a machine file, and the example in
docs/python.md."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from archc.api import check, estimate
from archc.model import Builder, ModelError
from conftest import H100, ROOT, SAMPLES, small_machine

MACHINE = small_machine("std.formats", memory="10 PB")
RUN = "run r {\n  model %s()\n  on c\n  mode infer\n  precision bf16\n}\n"

# the model below, written by hand in the language, op names as the builder gives them
TINY = """
block layer(x) {
  ln = layernorm(x)
  qkv = linear(ln, 192)
  q, k, v = split(qkv, 3)
  att = attention(q, k, v, heads = 4)
  proj = linear(att, out = 64, bias = false)
  res = x + proj
  up = linear(res, 256)
  act = gelu(up)
  down = linear(act, 64)
  out = res + down
  return out
}
model tiny(layers = 3) {
  input x : [2, 16, 64]
  repeat layers { x = layer(x) }
  pooled = reduce_mean(x, axis = 1)
  flat = reshape(pooled, [2, 64])
  return flat
}
"""


def tiny() -> tuple[Builder, object]:
    b = Builder("tiny")
    x = b.input("x", [2, 16, 64])

    def layer(x):
        ln = b.op("layernorm", x, name="ln")
        q, k, v = b.op("split", b.op("linear", ln, 192, name="qkv"), 3, name=["q", "k", "v"])
        att = b.op("attention", q, k, v, heads=4, name="att")
        res = b.op("add", x, b.op("linear", att, out=64, bias=False, name="proj"), name="res")
        down = b.op("linear", b.op("gelu", b.op("linear", res, 256, name="up"), name="act"), 64, name="down")
        return b.op("add", res, down, name="out")
    x = b.repeat(3, lambda x: b.block("layer", layer, x), x)
    return b, b.op("reshape", b.op("reduce_mean", x, axis=1, name="pooled"), [2, 64], name="flat")


def dsl_graph(tmp_path, text: str, model: str, name="m.arch"):
    p = tmp_path / name
    p.write_text(MACHINE + text + RUN % model)
    return check(p).run("r").graph


def test_the_builder_makes_the_graph_the_dsl_makes(tmp_path):
    b, out = tiny()
    g = b.build(out)
    assert g == dsl_graph(tmp_path, TINY, "tiny")
    # and the figures the DSL's graph has: 3 layers of QKV, O and the MLP (2 s (3 d^2 + d^2 + 8 d^2)
    # per sequence), attention 4 s^2 d per sequence, counted 3 times
    s, d, batch = 16, 64, 2
    layer = batch * (2 * s * d * 3 * d + 2 * s * d * d + 2 * 2 * s * d * 4 * d) + batch * 4 * s * s * d
    assert sum(o.matrix_flops * o.count for o in g.ops) == 3 * layer
    assert [lp.trips for lp in g.loops] == [3] and g.layers == (("layers", 3),)
    assert [o.name for o in g.ops][:4] == ["layer.ln", "layer.qkv", "layer.q", "layer.k"]


def test_to_arch_builds_the_same_graph_and_is_byte_identical(tmp_path):
    b, out = tiny()
    text = b.to_arch(out)
    b2, out2 = tiny()
    assert b2.to_arch(out2) == text
    assert text.startswith("block layer(x) {\n  ln = layernorm(x)\n  qkv = linear(ln, out = 192)\n")
    assert "model tiny(layers = 3) {\n  input x : [2, 16, 64]\n  repeat layers {\n    x = layer(x)\n  }\n" in text
    assert dsl_graph(tmp_path, text, "tiny") == b.build(out)


def test_a_tensor_read_after_the_repeat_keeps_a_name(tmp_path):
    # the repeat's input is read again after it (a skip over the whole stack): the text keeps it
    b = Builder("skip")
    x = b.input("x", [4, 32])
    y = b.repeat(2, lambda h: b.op("relu", b.op("linear", h, 32, name="fc"), name="act"), x, label="n")
    z = b.op("add", x, y, name="sum")
    text = b.to_arch(z)
    assert "  x_in = x\n  repeat n {\n    fc = linear(x, out = 32)\n    act = relu(fc)\n    x = act\n  }\n" \
           "  sum = add(x_in, x)\n" in text
    g = dsl_graph(tmp_path, text, "skip")
    assert g == b.build(z)
    assert g.loops[0].carried == ((1, 3),)  # x (t1) -> act (t3)


def test_shapes_flow_through_the_registry_and_views_make_no_op():
    b = Builder("vit_patch")
    img = b.input("img", [1, 3, 224, 224])
    p = b.op("conv2d", img, out=768, kernel=16, stride=16, bias=True, name="patch")
    x = b.op("transpose", b.op("reshape", p, [1, 768, 196]), 1, 2)
    g = b.build(x)
    assert p.shape == (1, 768, 14, 14) and x.shape == (1, 196, 768)
    # 2 x 196 x 768 x (3 x 16 x 16) FLOPs for the patch embedding, 196 x 768 for its bias
    assert [(o.name, o.kind, o.matrix_flops, o.vector_flops) for o in g.ops] == [
        ("patch", "conv2d", 231_211_008.0, 150_528.0), ("transpose", "transpose", 0.0, 0.0)]
    assert len(g.views) == 1


def test_errors_name_the_op_and_point_at_the_calling_line():
    b = Builder("bad")
    x = b.input("x", [1, 3, 8, 8])
    with pytest.raises(ModelError) as e:
        b.op("conv2d", x, out=8, kernel=3, groups=2, name="c1")  # the line the error points at
    d = e.value.diagnostics[0]
    assert d.message == ("op #1 'conv2d' ('c1') of model 'bad': conv2d: groups = 2 must divide the input "
                         "channels (3) and the output channels (8)")
    assert d.span.source.name == __file__ and "groups=2" in d.span.source.line(d.span.line)
    assert "b.op(\"conv2d\", x, out=8" in e.value.render()
    with pytest.raises(ModelError, match=r"unknown op 'lineer'; did you mean 'linear'\?"):
        b.op("lineer", x, out=4)
    with pytest.raises(ModelError, match=r"op #3 'linear' of model 'bad': op 'linear' has no argument 'outs'"):
        b.op("linear", x, outs=4)
    with pytest.raises(ModelError, match=r"op #4 'matmul' of model 'bad': op 'matmul' takes 2 tensor arguments, "
                                         r"1 given: matmul\(a, b\)"):
        b.op("matmul", x)


def test_a_block_with_two_bodies_cannot_be_written_as_one():
    b = Builder("two")
    x = b.input("x", [4, 8])
    y = b.block("fc", lambda t: b.op("linear", t, 8), x)
    z = b.block("fc", lambda t: b.op("linear", t, 16), y)
    assert [o.name for o in b.build(z).ops] == ["fc.linear", "fc#2.linear"]  # as the DSL names them
    with pytest.raises(ModelError, match="block 'fc' is called with 2 different bodies"):
        b.to_arch(z)


def test_sqrt_of_a_tensor_is_the_op(tmp_path):
    # `sqrt` is also a built-in function of numbers: with a tensor it is the op (1 FLOP an element)
    g = dsl_graph(tmp_path, "model m() {\n  input x : [2, 4]\n  y = sqrt(x)\n  return y\n}\n", "m")
    assert [(o.name, o.kind, o.vector_flops) for o in g.ops] == [("y", "sqrt", 8.0)]


@pytest.mark.build
def test_estimate_runs_a_python_model_on_a_machine_file():
    b = Builder("mlp")
    x = b.input("x", [64, 1024])
    y = b.op("linear", b.op("gelu", b.op("linear", x, out=4096, name="up")), out=1024, name="down")
    rep = estimate(b, y, SAMPLES / "machines" / "h100.arch", on="h100")
    # 2 x 64 x 1024 x 4096 per GEMM, twice; the biases (64 x 4096 + 64 x 1024) and GELU (8 x 64 x 4096)
    assert rep.flops == 2 * (2 * 64 * 1024 * 4096) + 64 * 4096 + 64 * 1024 + 8 * 64 * 4096
    assert rep.latency_s > 0 and H100.exists()


@pytest.mark.build
def test_the_documented_example_runs(tmp_path):
    doc = (ROOT / "docs" / "python.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", doc, re.S)
    assert blocks, "docs/python.md has no python example"
    script = tmp_path / "example.py"
    script.write_text(blocks[0])
    r = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    expected = re.search(r"It prints:\n\n```\n(.*?)```", doc, re.S)
    assert expected and r.stdout.startswith(expected.group(1))


def test_a_repeat_inside_a_block_becomes_a_parameter_of_the_block(tmp_path):
    b = Builder("nest")
    x = b.input("x", [4, 32])

    def stage(x):
        return b.repeat(2, lambda h: b.op("relu", b.op("linear", h, 32, name="fc"), name="act"), x)
    y = b.block("stage", stage, x)
    z = b.block("stage", stage, y)
    out = b.op("add", z, x, name="skip")
    text = b.to_arch(out)
    assert text.startswith("block stage(x, layers = 2) {\n  repeat layers {\n    fc = linear(x, out = 32)\n"
                           "    act = relu(fc)\n    x = act\n  }\n  return x\n}\n")
    assert "  stage = stage(x)\n  stage_2 = stage(stage)\n  skip = add(stage_2, x)\n" in text
    g = b.build(out)
    assert g == dsl_graph(tmp_path, text, "nest")
    # each call's repeat is a layer of its own, named by the block call's path
    assert g.layers == (("stage#2.layers", 2), ("stage.layers", 2))
    assert [lp.carried for lp in g.loops] == [((1, 3),), ((3, 5),)]
