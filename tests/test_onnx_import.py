"""`archc import MODEL.onnx` (issue 16 part 4): small graphs built here with onnx.helper (an MLP,
a conv net with groups and uneven pads, a 2-layer transformer encoder whose layer becomes a block
in a repeat), the errors (an op archc does not import, a dynamic dimension without --dim, an
existing -o file), the docs' op list against the importer's table, and a real network: the
ResNet-50 the onnx package ships (onnx/backend/test/data/light/light_resnet50.onnx, the ONNX
model zoo's ResNet-50 with its weights replaced by ConstantOfShape nodes), whose FLOPs are
checked against a count written out layer by layer below, and which checks and runs."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from archc.api import check
from conftest import ROOT, run_cli, small_machine

onnx = pytest.importorskip("onnx")
np = pytest.importorskip("numpy")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from archc.onnx_import import OPS, docs_table  # noqa: E402

MACHINE = small_machine("std.formats", memory="1 PB")


def const(name, shape, fill=0.01):
    return numpy_helper.from_array(np.full(shape, fill, dtype=np.float32), name)


def ints(name, values):
    return numpy_helper.from_array(np.array(values, dtype=np.int64), name)


def scalar(name, v):
    return numpy_helper.from_array(np.array(v, dtype=np.float32), name)


def save(path: Path, nodes, inputs, outputs, inits, opset=17) -> Path:
    g = helper.make_graph(nodes, "g", inputs, outputs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(m)
    onnx.save(m, str(path))
    return path


def value(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def imported(tmp_path: Path, model: Path, *args: str) -> str:
    out = tmp_path / (model.stem + ".arch")
    r = run_cli("import", str(model), "-o", str(out), "--force", *args)
    assert r.code == 0, r.stderr
    return out.read_text(encoding="utf-8")


def graph_of(tmp_path: Path, arch: str, model: str):
    """The graph of `arch` run on the small machine (a workload file importing the model's file)."""
    (tmp_path / "model.arch").write_text(arch, encoding="utf-8")
    w = tmp_path / "w.arch"
    w.write_text(MACHINE + 'import "model.arch"\n' +
                 f"run r {{\n  model {model}()\n  on c\n  mode infer\n  precision bf16\n}}\n", encoding="utf-8")
    return check(w).run("r").graph, w


def flops(g) -> float:
    return sum(o.flops * o.count for o in g.ops)


# ---- an MLP ---------------------------------------------------------------------------------------

def mlp(path: Path) -> Path:
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h1"], transB=1, name="fc1"),
             helper.make_node("Relu", ["h1"], ["a1"], name="relu1"),
             helper.make_node("MatMul", ["a1", "w2"], ["h2"], name="fc2"),
             helper.make_node("Add", ["h2", "b2"], ["h3"], name="fc2_bias"),
             helper.make_node("Relu", ["h3"], ["a2"], name="relu2"),
             helper.make_node("Dropout", ["a2"], ["d2"], name="drop"),
             helper.make_node("Gemm", ["d2", "w3", "b3"], ["z"], transB=1, name="fc3"),
             helper.make_node("Softmax", ["z"], ["y"], axis=-1, name="softmax")]
    return save(path, nodes, [value("x", [8, 784])], [value("y", [8, 10])],
                [const("w1", [256, 784]), const("b1", [256]), const("w2", [256, 128]), const("b2", [128]),
                 const("w3", [10, 128]), const("b3", [10])])


MLP_ARCH = """\
// imported from mlp.onnx by archc import (ONNX opset 17)
// 6 ops, 3762656 forward FLOPs, 235146 parameters

model mlp() {
  input x : [8, 784]
  linear = linear(x, out = 256)
  relu = relu(linear)
  linear_2 = linear(relu, out = 128)
  relu_2 = relu(linear_2)
  linear_3 = linear(relu_2, out = 10)
  softmax = softmax(linear_3)
  return softmax
}
"""


def test_an_mlp_becomes_linear_layers(tmp_path):
    text = imported(tmp_path, mlp(tmp_path / "mlp.onnx"))
    assert text == MLP_ARCH  # the MatMul and its bias Add are one linear; Dropout is the identity
    g, _ = graph_of(tmp_path, text, "mlp")
    # 8 rows: 2 x 8 x (784 x 256 + 256 x 128 + 128 x 10) for the GEMMs, 8 x (256 + 128 + 10) for the
    # biases, 8 x (256 + 128) for the ReLUs, 5 x 8 x 10 for the softmax
    assert flops(g) == 2 * 8 * (784 * 256 + 256 * 128 + 128 * 10) + 8 * (256 + 128 + 10) + 8 * (256 + 128) \
        + 5 * 8 * 10 == 3_762_656
    assert g.params_elems == 784 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10


def test_the_output_is_the_same_bytes_every_time_and_stdout_without_o(tmp_path):
    m = mlp(tmp_path / "mlp.onnx")
    a = run_cli("import", str(m))
    b = run_cli("import", str(m))
    assert a.code == b.code == 0 and a.stdout == b.stdout == MLP_ARCH


def test_o_never_replaces_a_file_without_force(tmp_path):
    m = mlp(tmp_path / "mlp.onnx")
    out = tmp_path / "mlp.arch"
    out.write_text("keep me\n")
    r = run_cli("import", str(m), "-o", str(out))
    assert r.code == 1 and out.read_text() == "keep me\n"
    assert r.stderr.strip() == f"archc: error: {out} exists; archc import does not replace a file unless --force"
    r = run_cli("import", str(m), "-o", str(out), "--force")
    assert r.code == 0 and out.read_text() == MLP_ARCH
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left


# ---- a conv net with groups ---------------------------------------------------------------------------

def convnet(path: Path) -> Path:
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], kernel_shape=[3, 3], strides=[2, 2],
                              pads=[1, 1, 1, 1], name="stem"),
             helper.make_node("BatchNormalization", ["c1", "s", "bb", "m", "v"], ["n1"], name="bn"),
             helper.make_node("Relu", ["n1"], ["r1"], name="relu"),
             # depthwise: 32 groups of one channel
             helper.make_node("Conv", ["r1", "w2"], ["c2"], kernel_shape=[3, 3], group=32, pads=[1, 1, 1, 1],
                              name="depthwise"),
             # grouped 1x1, 4 groups
             helper.make_node("Conv", ["c2", "w3"], ["c3"], kernel_shape=[1, 1], group=4, name="grouped"),
             # TensorFlow-style "same" padding at stride 2: one row and column more after than before
             helper.make_node("Conv", ["c3", "w4"], ["c4"], kernel_shape=[2, 2], strides=[2, 2],
                              pads=[0, 0, 1, 1], name="uneven"),
             helper.make_node("MaxPool", ["c4"], ["p1"], kernel_shape=[2, 2], strides=[2, 2], name="pool"),
             helper.make_node("GlobalAveragePool", ["p1"], ["g"], name="gap"),
             helper.make_node("Flatten", ["g"], ["f"], axis=1, name="flatten"),
             helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], transB=1, name="fc")]
    inits = [const("w1", [32, 3, 3, 3]), const("b1", [32]), const("s", [32]), const("bb", [32]),
             const("m", [32]), const("v", [32], 1.0), const("w2", [32, 1, 3, 3]), const("w3", [64, 8, 1, 1]),
             const("w4", [64, 64, 2, 2]), const("wf", [10, 64]), const("bf", [10])]
    return save(path, nodes, [value("x", [1, 3, 32, 32])], [value("y", [1, 10])], inits)


def test_a_conv_net_with_groups_and_uneven_pads(tmp_path):
    text = imported(tmp_path, convnet(tmp_path / "convnet.onnx"))
    assert "conv2d_2 = conv2d(relu, out = 32, kernel = 3, padding = 1, groups = 32)" in text
    assert "conv2d_3 = conv2d(conv2d_2, out = 64, kernel = 1, groups = 4)" in text
    # pads [top, left, bottom, right] = [0, 0, 1, 1]: a pad op (last axis first, as PyTorch) then no padding
    assert "pad = pad(conv2d_3, pads = [0, 1, 0, 1])\n  conv2d_4 = conv2d(pad, out = 64, kernel = 2, stride = 2)" \
        in text
    g, _ = graph_of(tmp_path, text, "convnet")
    stem = 2 * 16 * 16 * 32 * 3 * 9 + 16 * 16 * 32  # 16 x 16 outputs of 32 channels, 27 MACs each; the bias
    bn_relu = 2 * 16 * 16 * 32 + 16 * 16 * 32
    depthwise = 2 * 16 * 16 * 32 * 1 * 9  # one input channel per group
    grouped = 2 * 16 * 16 * 64 * 8  # 8 input channels per group
    uneven = 2 * 8 * 8 * 64 * 64 * 4  # 17 x 17 padded, 2 x 2 stride 2: 8 x 8
    pool = 4 * 4 * 4 * 64  # 2 x 2 windows: 4 x 4 outputs of 64 channels, 4 FLOPs each
    gap = 4 * 4 * 64
    fc = 2 * 64 * 10 + 10
    assert flops(g) == stem + bn_relu + depthwise + grouped + uneven + pool + gap + fc
    assert g.output.shape == (1, 10)


# ---- a transformer encoder: its layer becomes a block called in a repeat ---------------------------------

def encoder(path: Path, layers=2, s=16, d=64, heads=4, ff=256) -> Path:
    nodes, inits = [], []
    cur, dh = "x", d // heads
    for i in range(layers):
        p = f"l{i}_"

        def n(op, ins, outs, **kw):
            nodes.append(helper.make_node(op, ins, outs, name=p + outs[0], **kw))
        inits += [const(p + "ln1_g", [d], 1.0), const(p + "b1", [d], 0.0), const(p + "wqkv", [d, 3 * d]),
                  const(p + "bqkv", [3 * d]), const(p + "wo", [d, d]), const(p + "ln2_g", [d], 1.0),
                  const(p + "b2", [d], 0.0), const(p + "w1", [d, ff]), const(p + "bf1", [ff]),
                  const(p + "w2", [ff, d])]
        n("LayerNormalization", [cur, p + "ln1_g", p + "b1"], [p + "ln1"], axis=-1)
        n("MatMul", [p + "ln1", p + "wqkv"], [p + "qkv0"])
        n("Add", [p + "qkv0", p + "bqkv"], [p + "qkv"])
        n("Split", [p + "qkv", "sizes"], [p + "q", p + "k", p + "v"], axis=2)
        for t in "qkv":
            n("Reshape", [p + t, "heads"], [p + t + "r"])
            n("Transpose", [p + t + "r"], [p + t + "h"], perm=[0, 2, 3, 1] if t == "k" else [0, 2, 1, 3])
        n("MatMul", [p + "qh", p + "kh"], [p + "sc"])
        n("Div", [p + "sc", "sqrt_dh"], [p + "scs"])
        n("Softmax", [p + "scs"], [p + "pr"], axis=-1)
        n("MatMul", [p + "pr", p + "vh"], [p + "ctx"])
        n("Transpose", [p + "ctx"], [p + "ctxt"], perm=[0, 2, 1, 3])
        n("Reshape", [p + "ctxt", "width"], [p + "ctxr"])
        n("MatMul", [p + "ctxr", p + "wo"], [p + "o"])
        n("Add", [cur, p + "o"], [p + "res1"])
        n("LayerNormalization", [p + "res1", p + "ln2_g", p + "b2"], [p + "ln2"], axis=-1)
        n("MatMul", [p + "ln2", p + "w1"], [p + "f1"])
        n("Add", [p + "f1", p + "bf1"], [p + "f1b"])
        # nn.GELU() as PyTorch exports it: x * 0.5 * (1 + erf(x / sqrt(2)))
        n("Div", [p + "f1b", "sqrt2"], [p + "ge0"])
        n("Erf", [p + "ge0"], [p + "ge1"])
        n("Add", [p + "ge1", "one"], [p + "ge2"])
        n("Mul", [p + "f1b", p + "ge2"], [p + "ge3"])
        n("Mul", [p + "ge3", "half"], [p + "ge4"])
        n("MatMul", [p + "ge4", p + "w2"], [p + "f2"])
        n("Add", [p + "res1", p + "f2"], [p + "out"])
        cur = p + "out"
    nodes.append(helper.make_node("ReduceMean", [cur], ["pooled"], axes=[1], keepdims=0, name="pool"))
    inits += [ints("sizes", [d, d, d]), ints("heads", [0, s, heads, dh]), ints("width", [0, s, d]),
              scalar("sqrt_dh", dh ** 0.5), scalar("sqrt2", 2 ** 0.5), scalar("one", 1.0), scalar("half", 0.5)]
    return save(path, nodes, [value("x", ["batch", s, d])], [value("pooled", ["batch", d])], inits)


def test_a_transformer_encoder_becomes_a_block_in_a_repeat(tmp_path):
    text = imported(tmp_path, encoder(tmp_path / "encoder.onnx"), "--dim", "batch=2")
    assert text.startswith("// imported from encoder.onnx by archc import (ONNX opset 17, batch = 2)\n")
    assert "block layer(x) {\n  layernorm = layernorm(x)\n  linear = linear(layernorm, out = 192)\n" in text
    assert "  gelu = gelu(linear_3)\n" in text and "erf" not in text  # the Erf GELU is one gelu
    assert "model encoder(layers = 2) {\n  input x : [2, 16, 64]\n  repeat layers {\n    x = layer(x)\n  }\n" \
           "  reduce_mean = reduce_mean(x, axis = 1)\n  return reduce_mean\n}\n" in text
    g, w = graph_of(tmp_path, text, "encoder")
    b, s, d, ff, heads = 2, 16, 64, 256, 4
    per_layer = (2 * b * s * d * 3 * d + b * s * 3 * d  # QKV and its bias
                 + 2 * b * heads * s * s * (d // heads) * 2  # scores and context (two batched matmuls)
                 + b * heads * s * s + 5 * b * heads * s * s  # the scale and the softmax of the scores
                 + 2 * b * s * d * d + b * s * d  # output projection, the residual add
                 + 2 * 8 * b * s * d  # two layernorms
                 + 2 * b * s * d * ff + b * s * ff + 8 * b * s * ff  # up, its bias, GELU
                 + 2 * b * s * ff * d + b * s * d)  # down, the residual add
    head = b * s * d  # the mean over 16 positions: 16 FLOPs (15 adds and a division) per output
    assert flops(g) == 2 * per_layer + head
    assert [lp.trips for lp in g.loops] == [2] and all(o.count == 2 for o in g.ops if o.name.startswith("layer."))
    r = run_cli("run", str(w), "--json")
    assert r.code == 0, r.stderr
    import json
    assert json.loads(r.stdout)["flops"] == flops(g)


# ---- embeddings, constants as inputs, and the shape arithmetic exporters write ---------------------------------

def embed(path: Path) -> Path:
    tokens = helper.make_tensor_value_info("tokens", TensorProto.INT64, [2, 8])
    nodes = [helper.make_node("Gather", ["table", "tokens"], ["e"], name="wte"),
             helper.make_node("Add", ["e", "pos"], ["x"], name="add_pos"),
             helper.make_node("Concat", ["cls", "x"], ["xc"], axis=1, name="cat_cls"),
             # a dynamic reshape as exporters write it: [Shape(xc)[0], Shape(xc)[1] * 2, 16]
             helper.make_node("Shape", ["xc"], ["sh"], name="shape"),
             helper.make_node("Gather", ["sh", "i0"], ["b"], axis=0, name="g0"),
             helper.make_node("Gather", ["sh", "i1"], ["s"], axis=0, name="g1"),
             helper.make_node("Mul", ["s", "two"], ["s2"], name="s_times_2"),
             helper.make_node("Unsqueeze", ["b", "ax0"], ["bu"], name="ub"),
             helper.make_node("Unsqueeze", ["s2", "ax0"], ["su"], name="us"),
             helper.make_node("Concat", ["bu", "su", "w16"], ["newshape"], axis=0, name="cat_shape"),
             helper.make_node("Reshape", ["xc", "newshape"], ["r"], name="reshape"),
             helper.make_node("Slice", ["r", "st", "en", "axs"], ["sl"], name="slice"),
             helper.make_node("Pad", ["sl", "pads"], ["pd"], mode="constant", name="pad"),
             helper.make_node("ReduceMax", ["pd"], ["y"], axes=[2], keepdims=0, name="max")]
    inits = [const("table", [100, 32]), const("pos", [1, 8, 32]), const("cls", [2, 1, 32]),
             ints("i0", 0), ints("i1", 1), ints("two", 2), ints("ax0", [0]), ints("w16", [16]),
             ints("st", [2]), ints("en", [-2]), ints("axs", [1]), ints("pads", [0, 1, 0, 0, 1, 0])]
    return save(path, nodes, [tokens], [value("y", [2, 16])], inits)


def test_embeddings_constant_operands_and_folded_shape_arithmetic(tmp_path):
    text = imported(tmp_path, embed(tmp_path / "embed.onnx"))
    assert text.split("\n\n", 1)[1] == """\
model embed() {
  input tokens : int64[2, 8]
  input pos : [1, 8, 32]
  input cls : [2, 1, 32]
  embedding = embedding(tokens, vocab = 100, d = 32)
  add = add(embedding, pos)
  concat = concat(cls, add, axis = 1)
  reshape = reshape(concat, shape = [2, 18, 16])
  slice = slice(reshape, axis = 1, start = 2, end = 16)
  pad = pad(slice, pads = [0, 0, 1, 1])
  reduce_max = reduce_max(pad, axis = 2)
  return reduce_max
}
"""
    g, _ = graph_of(tmp_path, text, "embed")
    # the add: 2 x 8 x 32; the max over 16 of 2 x 16 outputs: 15 each; the rest moves data
    assert flops(g) == 2 * 8 * 32 + 2 * 16 * 15
    assert g.params_elems == 100 * 32  # the table; pos and cls are inputs, not parameters


# ---- errors -----------------------------------------------------------------------------------------

def test_an_op_archc_does_not_import_is_an_error_naming_the_node(tmp_path):
    m = save(tmp_path / "lrn.onnx", [helper.make_node("Relu", ["x"], ["r"], name="relu"),
                                     helper.make_node("LRN", ["r"], ["y"], size=5, name="norm1")],
             [value("x", [1, 8, 4, 4])], [value("y", [1, 8, 4, 4])], [])
    r = run_cli("import", str(m))
    assert r.code == 1 and r.stdout == ""
    assert r.stderr == (f"{m}: error: node #1 'norm1' (LRN): archc does not import the ONNX op 'LRN' "
                     "(docs/onnx.md lists the ops it imports)\n")


def test_an_erf_outside_the_gelu_pattern_is_refused(tmp_path):
    m = save(tmp_path / "erf.onnx", [helper.make_node("Erf", ["x"], ["y"], name="")],
             [value("x", [2, 4])], [value("y", [2, 4])], [])
    r = run_cli("import", str(m))
    assert r.code == 1
    assert r.stderr == (f"{m}: error: node #0 (Erf): only the GELU pattern x * 0.5 * (1 + erf(x / sqrt 2)) is "
                     "imported; this Erf is not part of one\n")


def test_a_dynamic_dimension_needs_dim(tmp_path):
    m = encoder(tmp_path / "encoder.onnx")
    r = run_cli("import", str(m))
    assert r.code == 1 and "Traceback" not in r.stderr
    assert r.stderr == f"{m}: error: input 'x' has the dynamic dimension 'batch' at axis 0; give its value with " \
                    "--dim batch=N\n"
    r = run_cli("import", str(m), "--dim", "seq=4")
    assert r.code == 1
    assert r.stderr == f"{m}: error: --dim seq: no input has a dimension named 'seq' (the dynamic dimensions: batch)\n"
    r = run_cli("import", str(m), "--dim", "batch=zero")
    assert r.code == 1
    assert r.stderr == "archc: error: --dim takes NAME=VALUE with a positive whole VALUE (batch=8), found 'batch=zero'\n"


def test_a_file_that_is_not_onnx(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00not a model")
    r = run_cli("import", str(bad))
    assert r.code == 1 and r.stderr.startswith(f"{bad}: error: cannot read it as an ONNX model") and \
        "Traceback" not in r.stderr
    r = run_cli("import", str(tmp_path / "missing.onnx"))
    assert r.code == 1 and r.stderr == f"{tmp_path / 'missing.onnx'}: error: no such file\n"


# ---- the docs -----------------------------------------------------------------------------------------

def test_the_docs_list_the_importers_table():
    doc = (ROOT / "docs" / "onnx.md").read_text(encoding="utf-8")
    start = "<!-- the table of archc.onnx_import.docs_table() -->\n"
    assert start in doc
    shown = doc.split(start, 1)[1].split("\n\n", 1)[0] + "\n"
    assert shown == docs_table()
    listed = {op.strip() for row in shown.splitlines()[2:] for op in row.split("|")[1].split(",")}
    assert listed == set(OPS)


def test_archc_run_does_not_need_onnx():
    code = ("import sys, archc.cli, archc.api, archc.model\n"
            "archc.api.check('samples/h100.arch')\n"
            "assert 'onnx' not in sys.modules and 'archc.onnx_import' not in sys.modules\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr


# ---- a real network: ResNet-50 as the onnx package ships it ------------------------------------------------

RESNET50 = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light" / "light_resnet50.onnx"


def resnet50_flops() -> int:
    """ResNet-50 (He et al. 2016) at 224 x 224, counted layer by layer as this ONNX file computes
    it: the stride of a stage's first bottleneck on its 3 x 3 convolution (ResNet v1.5), a
    projection shortcut in every stage's first bottleneck, convolutions without bias and a
    batch norm after each (2 FLOPs an element), ReLU 1 an element, the residual add 1 an element,
    a 3 x 3 max pool and a 7 x 7 average pool (k^2 an output), the FC layer with bias, softmax
    5 an element."""
    def conv(h, cin, cout, k, stride):  # (output size, conv FLOPs): "same" padding, k // 2
        ho = (h + 2 * (k // 2) - k) // stride + 1
        return ho, 2 * ho * ho * cout * cin * k * k
    total = 0
    h, f = conv(224, 3, 64, 7, 2)  # 112 x 112 x 64
    total += f + 2 * h * h * 64 + h * h * 64
    h = 56
    total += 9 * h * h * 64  # max pool 3 x 3, stride 2 -> 56 x 56
    cin = 64
    for mid, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for i in range(blocks):
            s = stride if i == 0 else 1
            _, f1 = conv(h, cin, mid, 1, 1)
            ho, f2 = conv(h, mid, mid, 3, s)
            _, f3 = conv(ho, mid, 4 * mid, 1, 1)
            total += f1 + 3 * h * h * mid  # 1 x 1 conv, its batch norm and ReLU
            total += f2 + 3 * ho * ho * mid  # 3 x 3 conv, batch norm, ReLU
            total += f3 + 2 * ho * ho * 4 * mid  # 1 x 1 conv, batch norm
            if i == 0:  # the projection shortcut: 1 x 1 conv (stride s) and batch norm
                total += conv(h, cin, 4 * mid, 1, s)[1] + 2 * ho * ho * 4 * mid
            total += 2 * ho * ho * 4 * mid  # the residual add and the ReLU after it
            h, cin = ho, 4 * mid
    total += 49 * 2048  # 7 x 7 average pool -> 2048
    total += 2 * 2048 * 1000 + 1000 + 5 * 1000  # FC with bias, softmax
    return total


def test_resnet50_shipped_by_onnx_imports_with_its_flops_and_runs(tmp_path):
    assert RESNET50.is_file(), "the onnx package no longer ships its light ResNet-50"
    text = imported(tmp_path, RESNET50)
    # the identical bottlenecks of each stage become a block in a repeat: 2, 3, 5 and 2 of them
    assert "model light_resnet50(layers = 2, layers_2 = 3, layers_3 = 5, layers_4 = 2) {" in text
    assert text.count("\nblock ") + text.startswith("block ") == 4
    g, w = graph_of(tmp_path, text, "light_resnet50")
    expected = resnet50_flops()
    assert expected == 8_217_637_232  # 4.1 GMACs: the figure ResNet-50 is known by
    assert abs(flops(g) - expected) <= 0.01 * expected
    # torchvision's resnet50 has 25,557,032 parameters: so does this one (batch norms' 2 per channel)
    assert g.params_elems == 25_557_032
    assert g.output.shape == (1, 1000)
    assert run_cli("check", str(w)).code == 0
    r = run_cli("run", str(w), "--json")
    assert r.code == 0, r.stderr
    import json
    rep = json.loads(r.stdout)
    assert rep["flops"] == flops(g) and rep["latency_s"] > 0
