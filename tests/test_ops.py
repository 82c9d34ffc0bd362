"""The ops of issue 16 part 2 (dsl/ops.py): every new op's shape, FLOPs and bytes against a hand
calculation written out in the test; how calls bind (by position and by name); the located
error for each kind of bad argument; causal attention with and without a flash kernel; and the
registry against docs/language.md. Bytes are the lowering's (codegen/lower.py) on a chip with
one memory level, in bf16 (2 bytes an element), forward pass, inference."""
from __future__ import annotations

from pathlib import Path

import pytest

from archc.api import check
from archc.codegen.lower import lower
from archc.dsl.diagnostics import ArchcError
from archc.dsl.ops import OPS, causal_tiles
from archc.dsl.vocab import OpClass
from conftest import ROOT, run_cli, small_machine

MACHINE = small_machine("std.formats", "std.blocks", memory="10 PB")
PRE = MACHINE.count("\n")  # lines before the model


def design(tmp_path: Path, body: str, name="ops.arch"):
    """A model m() with `body` (one statement a line), run r on chip c in bf16, inference."""
    p = tmp_path / name
    p.write_text(MACHINE + "model m() {\n" + "".join(f"  {b}\n" for b in body.strip().splitlines()) +
                 "}\nrun r {\n  model m()\n  on c\n  mode infer\n  precision bf16\n}\n")
    return p


def run(tmp_path: Path, body: str):
    return check(design(tmp_path, body)).run("r")


def ops(tmp_path: Path, body: str) -> dict:
    return {o.name: o for o in run(tmp_path, body).graph.ops}


def tasks(tmp_path: Path, body: str) -> dict:
    """Forward tasks by op name: their FLOPs and the bytes at the chip's memory."""
    return {t.label: t for t in lower(run(tmp_path, body)).tasks}


def refused(tmp_path: Path, body: str) -> tuple[int, int, str]:
    """(line within the model body, column, message) of the one error checking the model gives."""
    with pytest.raises(ArchcError) as e:
        run(tmp_path, body)
    (d,) = [d for d in e.value.diagnostics if d.severity == "error"]
    return d.span.line - PRE - 1, d.span.col, d.message


# ---- transpose and permute ------------------------------------------------------------------

def test_transpose_is_a_copy_with_no_arithmetic(tmp_path):
    t = tasks(tmp_path, "input x : [2, 196, 768]\ny = transpose(x, 1, 2)\nreturn y")
    o = ops(tmp_path, "input x : [2, 196, 768]\ny = transpose(x, 1, 2)\nreturn y")["y"]
    assert o.output.shape == (2, 768, 196) and o.cls == "movement"
    assert o.flops == 0
    # reads 2 x 196 x 768 = 301,056 elements and writes as many, 2 bytes each
    assert t["y"].mflops == t["y"].vflops == 0
    assert t["y"].mem_bytes == 2 * 301_056 * 2 == 1_204_224
    assert t["y"].cls == OpClass.MOVEMENT


def test_movement_backward_is_the_inverse_move(tmp_path):
    p = tmp_path / "train.arch"
    p.write_text(MACHINE + "model m() {\n  input x : [4, 64, 32]\n  y = transpose(linear(x, 32), 1, 2)\n"
                 "  return reduce_sum(y)\n}\nrun r {\n  model m()\n  on c\n  mode train\n  precision bf16\n}\n")
    fwd, bwd = [t for t in lower(check(p).run("r")).tasks if t.kind == "transpose"]
    # forward: reads and writes 4 x 64 x 32 = 8,192 elements; backward: transposes the
    # gradient back, reading dY and writing dX, 8,192 elements each; no FLOPs either way
    assert fwd.mem_bytes == bwd.mem_bytes == 2 * 8_192 * 2 == 32_768
    assert fwd.mflops == fwd.vflops == bwd.mflops == bwd.vflops == 0


def test_transpose_takes_negative_axes(tmp_path):
    o = ops(tmp_path, "input x : [3, 4, 5]\ny = transpose(x, -1, -3)\nreturn y")["y"]
    assert o.output.shape == (5, 4, 3) and o.attr("perm") == (2, 1, 0)


def test_moving_only_axes_of_size_one_is_a_view(tmp_path):
    # [1, 1, 8] -> [1, 1, 8] and [4, 1, 8] -> [4, 8, 1]: the elements keep their order
    g = run(tmp_path, "input x : [4, 1, 8]\ny = transpose(x, 1, 2)\nreturn relu(y)").graph
    assert [o.kind for o in g.ops] == ["relu"]
    assert g.ops[0].inputs[0].shape == (4, 8, 1) and len(g.views) == 1


def test_permute_by_values_and_by_list(tmp_path):
    body = "input x : [1, 197, 12, 64]\na = permute(x, 0, 2, 1, 3)\nb = permute(x, [0, 2, 1, 3])\n" \
           "c = permute(x, dims = [0, 2, 1, 3])\nreturn a"
    o = ops(tmp_path, body)
    assert o["a"].output.shape == o["b"].output.shape == o["c"].output.shape == (1, 12, 197, 64)
    t = tasks(tmp_path, body)["a"]
    # 1 x 197 x 12 x 64 = 151,296 elements read and written
    assert t.mem_bytes == 2 * 151_296 * 2 == 605_184 and t.mflops == t.vflops == 0


# ---- concat, split, slice, pad --------------------------------------------------------------

def test_concat_prepends_a_cls_token(tmp_path):
    body = "input cls : [1, 1, 768]\ninput x : [1, 196, 768]\ny = concat(cls, x, axis = 1)\nreturn y"
    o = ops(tmp_path, body)["y"]
    assert o.output.shape == (1, 197, 768) and o.flops == 0
    # reads 1 x 768 + 196 x 768 = 151,296 elements, writes 197 x 768 = 151,296
    assert tasks(tmp_path, body)["y"].mem_bytes == (768 + 196 * 768 + 197 * 768) * 2 == 605_184


def test_concat_of_three_by_position(tmp_path):
    o = ops(tmp_path, "input a : [2, 3]\ninput b : [2, 5]\ny = concat(a, b, a, -1)\nreturn y")["y"]
    assert o.output.shape == (2, 11) and len(o.inputs) == 3


def test_split_binds_one_op_per_part(tmp_path):
    body = "input qkv : [1, 197, 2304]\nq, k, v = split(qkv, 3)\nreturn attention(q, k, v, 12)"
    g = run(tmp_path, body).graph
    parts = [o for o in g.ops if o.kind == "split"]
    assert [o.name for o in parts] == ["q", "k", "v"]
    assert [(o.attr("start"), o.attr("end")) for o in parts] == [(0, 768), (768, 1536), (1536, 2304)]
    t = tasks(tmp_path, body)
    # each part reads its 197 x 768 = 151,296 elements (not the whole input) and writes them:
    # the three together read the input once and write it once, 2 x 453,888 elements
    assert [t[n].mem_bytes for n in "qkv"] == [2 * 151_296 * 2] * 3
    assert sum(t[n].mem_bytes for n in "qkv") == 2 * (197 * 2304) * 2
    assert all(t[n].mflops == t[n].vflops == 0 for n in "qkv")


def test_split_by_sizes_along_an_axis(tmp_path):
    o = ops(tmp_path, "input x : [6, 10]\na, b = split(x, [2, 4], axis = 0)\nreturn a")
    assert o["a"].output.shape == (2, 10) and o["b"].output.shape == (4, 10)
    assert (o["b"].attr("start"), o["b"].attr("end")) == (2, 6)


def test_slice_takes_the_cls_token(tmp_path):
    body = "input x : [1, 197, 768]\nc = slice(x, 1, 0, 1)\nl = slice(x, 1, -1)\nreturn c"
    o = ops(tmp_path, body)
    assert o["c"].output.shape == o["l"].output.shape == (1, 1, 768)
    assert (o["l"].attr("start"), o["l"].attr("end")) == (196, 197)
    # reads the 768 elements it keeps and writes them
    assert tasks(tmp_path, body)["c"].mem_bytes == 2 * 768 * 2 == 3_072


def test_pad_follows_pytorchs_order(tmp_path):
    # F.pad(x, (1, 1, 2, 2)): the last axis 5 -> 7, the one before 5 -> 9
    body = "input x : [1, 3, 5, 5]\ny = pad(x, [1, 1, 2, 2])\nreturn y"
    o = ops(tmp_path, body)["y"]
    assert o.output.shape == (1, 3, 9, 7) and o.flops == 0
    # reads 75 elements, writes 3 x 9 x 7 = 189
    assert tasks(tmp_path, body)["y"].mem_bytes == (75 + 189) * 2 == 528


# ---- softmax and reductions over an axis ----------------------------------------------------

def test_softmax_over_an_axis(tmp_path):
    o = ops(tmp_path, "input x : [2, 3, 4]\na = softmax(x)\nb = softmax(x, 1)\nc = softmax(x, axis = -3)\nreturn a")
    assert [o[n].attr("axis") for n in "abc"] == [2, 1, 0]
    # max, subtract, exp, sum, divide: 5 x 24 elements
    assert all(o[n].vector_flops == 5 * 24 for n in "abc")


@pytest.mark.parametrize("kind, flops", [("reduce_sum", 8 * 2), ("reduce_max", 8 * 2), ("reduce_mean", 8 * 2 + 8)])
def test_reductions_over_an_axis(tmp_path, kind, flops):
    # [2, 3, 4] over axis 1: 8 outputs of 3 elements, 2 adds (comparisons) each; a mean divides once more
    o = ops(tmp_path, f"input x : [2, 3, 4]\na = {kind}(x, 1)\nb = {kind}(x, axis = -2, keepdims = true)\nreturn a")
    assert o["a"].output.shape == (2, 4) and o["b"].output.shape == (2, 1, 4)
    assert o["a"].vector_flops == o["b"].vector_flops == flops


def test_reduction_defaults_to_the_last_axis(tmp_path):
    o = ops(tmp_path, "input x : [2, 3, 4]\na = reduce_sum(x)\nreturn a")["a"]
    assert o.output.shape == (2, 3) and o.vector_flops == 6 * 3


# ---- convolutions: binding, groups, the GEMM per group ----------------------------------------

def test_conv2d_positional_and_keyword_arguments_agree(tmp_path):
    body = ("input img : [1, 3, 224, 224]\na = conv2d(img, 768, 16, 16)\n"
            "b = conv2d(img, out = 768, kernel = 16, stride = 16)\nc = conv2d(img, 768, 16, stride = 16)\nreturn a")
    o = ops(tmp_path, body)
    for n in "abc":
        assert o[n].output.shape == (1, 768, 14, 14)
        # ViT-B/16's patch embedding: 2 x (14 x 14) x 768 x (3 x 16 x 16) = 231,211,008
        assert o[n].matrix_flops == 2 * 196 * 768 * 768 == 231_211_008
        assert o[n].attr("padding") == 0


def test_depthwise_conv_flops_and_gemm_per_group(tmp_path):
    body = "input x : [2, 32, 14, 14]\ny = conv2d(x, 32, 3, padding = 1, groups = 32)\nreturn y"
    o = ops(tmp_path, body)["y"]
    # 2 N Ho Wo Cout (Cin / groups) k^2 = 2 x 2 x 14 x 14 x 32 x 1 x 9 = 225,792
    assert o.matrix_flops == 2 * 2 * 14 * 14 * 32 * 1 * 9 == 225_792
    assert o.weight_elems == 32 * 1 * 9
    g = tasks(tmp_path, body)["y"].gemm
    # one GEMM per group: [N Ho Wo = 392, Cin/g k^2 = 9] x [9, Cout/g = 1]
    assert (g.b, g.m, g.n, g.k) == (32, 392, 1, 9)


def test_grouped_conv_gemm_shape(tmp_path):
    body = "input x : [1, 64, 8, 8]\ny = conv2d(x, 128, 3, padding = 1, groups = 4)\nreturn y"
    o = ops(tmp_path, body)["y"]
    assert o.matrix_flops == 2 * 1 * 8 * 8 * 128 * (64 // 4) * 9 == 2_359_296
    g = tasks(tmp_path, body)["y"].gemm
    assert (g.b, g.m, g.n, g.k) == (4, 64, 32, 16 * 9)


def test_avgpool_and_maxpool(tmp_path):
    o = ops(tmp_path, "input x : [1, 8, 8, 8]\na = avgpool(x, 2)\nb = maxpool(x, 3, 1, 1)\nreturn a")
    # stride defaults to the kernel: 8 -> 4; k^2 FLOPs per output
    assert o["a"].output.shape == (1, 8, 4, 4) and o["a"].vector_flops == 8 * 16 * 4
    assert o["b"].output.shape == (1, 8, 8, 8) and o["b"].vector_flops == 8 * 64 * 9


# ---- rotary embedding -------------------------------------------------------------------------

def test_rope_flops_and_bytes(tmp_path):
    body = "input q : [2, 16, 512]\ny = rope(q, 8)\nreturn y"
    o = ops(tmp_path, body)["y"]
    # 3 FLOPs (2 multiplies, 1 add) per element: 3 x 2 x 16 x 512 = 49,152
    assert o.vector_flops == 3 * 2 * 16 * 512 == 49_152 and o.cls == "elementwise"
    # reads 16,384 elements and the 16 x 64 table of sines and cosines (32 angles a row, two
    # values each), writes 16,384
    assert tasks(tmp_path, body)["y"].mem_bytes == (16_384 + 16 * 64 + 16_384) * 2 == 67_584


# ---- attention: causal with and without a flash kernel ----------------------------------------

ATT = ("input q : [1, {s}, 512]\ninput kv : [1, {t}, 512]\n"
       "a = attention(q, kv, kv, 8, causal = {c}, flash = {f})\nreturn a")


def test_causal_attention_without_flash_computes_every_score(tmp_path):
    full = ops(tmp_path, ATT.format(s=512, t=512, c="false", f="false"))["a"]
    causal = ops(tmp_path, ATT.format(s=512, t=512, c="true", f="false"))["a"]
    # 8 heads of 64: 4 x 8 x 512 x 512 x 64 = 536,870,912 either way (masked after computing)
    assert full.matrix_flops == causal.matrix_flops == 4 * 8 * 512 * 512 * 64 == 536_870_912
    assert causal.gemms[0].line() == "8x512x512x64"


@pytest.mark.parametrize("s, tiles", [(512, 1 + 2 + 3 + 4), (4096, 32 * 33 // 2)])
def test_causal_flash_attention_skips_masked_tiles(tmp_path, s, tiles):
    o = ops(tmp_path, ATT.format(s=s, t=s, c="true", f="true"))["a"]
    # query tile j of 128 rows computes key tiles 0 .. j: 1 + 2 + ... + s/128 tiles of 128 x 128
    pairs = tiles * 128 * 128
    assert o.matrix_flops == 4 * 8 * pairs * 64
    assert o.vector_flops == 5 * 8 * pairs
    # about half the whole: 10/16 at 512, 528/1024 at 4096
    assert o.matrix_flops / (4 * 8 * s * s * 64) == tiles / (s // 128) ** 2
    # the GEMM shape the machine model takes: s query rows against the keys a query computes on average
    t = tasks(tmp_path, ATT.format(s=s, t=s, c="true", f="true"))["a"]
    assert (t.gemm.b, t.gemm.m, t.gemm.n, t.gemm.k) == (8, s, pairs // s, 64)
    assert t.mflops == o.matrix_flops


def test_causal_tiles_with_ragged_edges_and_a_cache():
    # 197 queries (ViT's sequence) over their own keys: query tile 0 (rows 0-127) computes key
    # tile 0 (128 keys); tile 1 (rows 128-196, 69 rows) computes all 197 keys
    assert causal_tiles(197, 197) == (128 * 128 + 69 * 197, 1 + 2, 128, 128)
    # one new token over 2048 cached keys sees every key: nothing is skipped
    assert causal_tiles(1, 2049) == (2049, 17, 1, 128)
    # 256 queries after 100 cached keys (t = 356): tile 0 sees keys 0 .. 227, so it computes
    # key tiles 0 and 1 (256 keys); tile 1 computes all 356 (three tiles)
    assert causal_tiles(256, 356) == (128 * 256 + 128 * 356, 2 + 3, 128, 128)


def test_causal_flash_with_a_kv_cache_saves_nothing_for_one_token(tmp_path):
    body = "input q : [1, 1, 512]\ninput kv : [1, 1, 512]\na = attention(q, kv, kv, 8, causal = true, flash = true, " \
           "cache = 2048)\nreturn a"
    o = ops(tmp_path, body)["a"]
    assert o.matrix_flops == 4 * 8 * 1 * 2049 * 64
    assert o.gemms[0].line() == "8x1x2049x64"


# ---- binding and located errors ---------------------------------------------------------------

@pytest.mark.parametrize("body, line, col, message", [
    ("input x : [1, 3, 8, 8]\nreturn conv2d(x, 8, 3, 1, 0, 1, false, 7)", 2, 42,
     "op 'conv2d' takes at most 6 values besides its tensors (out, kernel, stride, padding, groups, bias), "
     "7 given"),
    ("input x : [1, 3, 8, 8]\nreturn conv2d(x, 8, 3, out = 8)", 2, 26,
     "argument 'out' of op 'conv2d' is given twice (by position and by name)"),
    ("input x : [1, 3, 8, 8]\nreturn conv2d(x, 8)", 2, 10,
     "op 'conv2d' needs a value for 'kernel': conv2d(x, out, kernel, stride = 1, padding = 0, groups = 1, "
     "bias = false)"),
    ("input x : [1, 32, 8, 8]\nreturn conv2d(x, 48, 3, groups = 5)", 2, 27,
     "conv2d: groups = 5 must divide the input channels (32) and the output channels (48)"),
    ("input x : [2, 3, 4]\nreturn softmax(x, 3)", 2, 21,
     "softmax: axis 3 is out of range for a tensor of rank 3 (axes -3 to 2)"),
    ("input x : [2, 3, 4]\nreturn reduce_mean(x, axis = -4)", 2, 25,
     "reduce_mean: axis -4 is out of range for a tensor of rank 3 (axes -3 to 2)"),
    ("input x : [2, 3, 4]\nreturn transpose(x, 0, 1.5)", 2, 26, "'b' of transpose must be a whole number, found 1.5"),
    ("input x : [2, 3, 4]\nreturn permute(x, 0, 0, 1)", 2, 21,
     "permute: [0, 0, 1] is not a permutation of the axes 0 to 2"),
    ("input x : [2, 3, 4]\nreturn permute(x, 1, 0)", 2, 21, "permute: a tensor of rank 3 needs 3 axes, found 2"),
    ("input a : [2, 3]\ninput b : [3, 3]\nreturn concat(a, b, axis = 1)", 3, 10,
     "concat along axis 1: shapes [2, 3], [3, 3] must agree on every other axis (or be 1 there, broadcast)"),
    ("input x : [6, 10]\na, b = split(x, 4)\nreturn a", 2, 19,
     "split: 4 parts do not divide axis 1 of size 10; give the sizes as a list"),
    ("input x : [6, 10]\na, b = split(x, [3, 4])\nreturn a", 2, 19,
     "split: the sizes [3, 4] add up to 7, not axis 1's size 10"),
    ("input x : [6, 10]\na, b = split(x, 5)\nreturn a", 2, 10,
     "2 names (a, b) are bound to 5 values; `a, b = split(x, 2)` binds a list of as many values"),
    ("input x : [6, 10]\na, b = relu(x)\nreturn a", 2, 10,
     "2 names (a, b) are bound to a tensor, not a list; `a, b = split(x, 2)` binds a list of as many values"),
    ("input x : [6, 10]\nreturn slice(x, 1, 8, 4)", 2, 10,
     "slice [8, 4) of axis 1 (size 10) is empty or out of range: 0 ≤ start < end ≤ 10 "
     "(negative bounds count from the end)"),
    ("input x : [6, 10]\nreturn pad(x, [1, 2, 3])", 2, 17,
     "pad takes pairs (before, after) from the last axis backwards, at most 2 pairs for a tensor of rank 2; "
     "found 3 values"),
    ("input x : [1, 4, 24]\nreturn rope(x, 8)", 2, 18, "rope rotates pairs of features: the head width 3 must be even"),
    ("input x : [6, 10]\nreturn reshape(x, [7, -1])", 2, 21,
     "cannot reshape [6, 10] (60 elements) to [7, -1]: 60 is not a multiple of 7"),
    ("input x : [6, 10]\nreturn reshape(x, [7, 9])", 2, 10,
     "cannot reshape [6, 10] (60 elements) to [7, 9] (63 elements)"),
    ("input q : [1, 4, 64]\ninput kv : [1, 2, 64]\nreturn attention(q, kv, kv, 2, causal = true)", 3, 10,
     "attention: causal attention of 4 queries needs at least as many keys, found 2"),
])
def test_argument_errors_are_located(tmp_path, body, line, col, message):
    assert refused(tmp_path, body) == (line, col, message)


def test_reshape_infers_one_dimension(tmp_path):
    g = run(tmp_path, "input x : [6, 10]\ny = reshape(x, [-1, 4, 5])\nreturn relu(y)").graph
    assert g.ops[0].inputs[0].shape == (3, 4, 5)


def test_an_unknown_argument_names_the_signature_in_a_static_check(tmp_path):
    p = tmp_path / "s.arch"
    p.write_text(MACHINE + "block b(x) {\n  return transpose(x, 0, 1, axis = 2)\n}\n")
    r = run_cli("check", p)
    assert r.code == 1
    assert f"s.arch:{PRE + 2}:29: error: op 'transpose' has no argument 'axis'; it takes transpose(x, a, b)" \
        in r.stderr


def test_the_cli_reports_a_bad_argument_with_its_place(tmp_path):
    p = design(tmp_path, "input x : [2, 3]\nreturn softmax(x, 2)")
    r = run_cli("check", p)
    assert r.code == 1 and "Traceback" not in r.stderr
    assert f"ops.arch:{PRE + 3}:21: error: softmax: axis 2 is out of range for a tensor of rank 2 (axes -2 to 1)" \
        in r.stderr


# ---- the registry is the docs' source ---------------------------------------------------------

def test_every_signature_is_in_the_language_docs():
    docs = (ROOT / "docs" / "language.md").read_text(encoding="utf-8")
    missing = [k for k, spec in OPS.items() if f"`{spec.signature(k)}`" not in docs]
    assert not missing, [OPS[k].signature(k) for k in missing]


def test_signatures_show_defaults():
    assert OPS["conv2d"].signature("conv2d") == \
        "conv2d(x, out, kernel, stride = 1, padding = 0, groups = 1, bias = false)"
    assert OPS["maxpool"].signature("maxpool") == "maxpool(x, kernel, stride = kernel, padding = 0)"
    assert OPS["concat"].signature("concat") == "concat(x, ..., axis)"
    assert OPS["permute"].signature("permute") == "permute(x, dims...)"
    assert OPS["slice"].signature("slice") == "slice(x, axis, start, end = size)"
    assert all(spec.doc for spec in OPS.values())


# ---- the ops together: ViT-B/16 -----------------------------------------------------------------

VIT = """
input img : [1, 3, 224, 224]
input cls : [1, 1, 768]
input pos : [1, 197, 768]
p = conv2d(img, 768, 16, 16, bias = true)
x = transpose(reshape(p, [1, 768, 196]), 1, 2)
x = concat(cls, x, axis = 1) + pos
repeat 12 {
  x = transformer(x, 12, causal = false, dropout_rate = 0)
}
x = layernorm(x)
c = slice(x, 1, 0, 1)
return linear(reshape(c, [1, 768]), 1000)
"""


def test_vit_b16_flops_and_parameters(tmp_path):
    # ViT-B/16 (Dosovitskiy et al. 2021) at 224 x 224: 196 patches + the class token, s = 197,
    # d = 768, 12 heads, MLP 3072, 12 pre-LN layers; the class token and the position embeddings
    # are inputs here (archc has no op for a learned tensor).
    g = run(tmp_path, VIT).graph
    s, d = 197, 768
    patch = 2 * 196 * d * (3 * 16 * 16)  # 231,211,008
    layer = 24 * s * d * d + 4 * s * s * d  # QKV, O and the MLP: 24 s d^2; scores and AV: 4 s^2 d
    head = 2 * d * 1000
    assert sum(o.matrix_flops * o.count for o in g.ops) == patch + 12 * layer + head == 35_127_656_448
    # 17.56 GMACs: timm and fvcore give 17.6 GMACs for vit_base_patch16_224
    # torchvision's vit_b_16 has 86,567,656 parameters, 768 of them the class token and
    # 197 x 768 = 151,296 the position embeddings
    assert g.params_elems == 86_567_656 - 768 - 151_296
    assert g.output.shape == (1, 1000)
