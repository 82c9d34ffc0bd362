"""FLOP and parameter counts of model graphs against formulas written out by hand (and, for the
real networks, against their published parameter counts). Nothing here is copied from archc's
output: every expected number is derived in the test from the architecture."""
from __future__ import annotations

from pathlib import Path

import pytest

from archc.api import check
from conftest import small_machine

MACHINE = small_machine("std.formats", "std.models", memory="10 PB")


def graph(tmp_path: Path, model_call: str, extra: str = ""):
    """Check a design running `model_call` on chip c and return the run's graph."""
    p = tmp_path / "flops.arch"
    p.write_text(MACHINE + extra + f"run r {{\n  model {model_call}\n  on c\n  precision bf16\n}}\n")
    return check(p).run("r").graph


def total(ops, attr="matrix_flops") -> int:
    return int(sum(getattr(o, attr) * o.count for o in ops))


# ---- GPT --------------------------------------------------------------------------------------

GPT_CONFIGS = [
    # layers, hidden, heads, seq, vocab, batch
    (2, 256, 4, 128, 1000, 2),
    (3, 768, 12, 1024, 50257, 1),
    (1, 2304, 24, 2048, 51200, 4),
]


@pytest.mark.parametrize("l,h,heads,s,V,B", GPT_CONFIGS)
def test_gpt_layer_forward_matrix_flops(tmp_path, l, h, heads, s, V, B):
    g = graph(tmp_path, f"gpt({l}, {h}, {heads}, {4 * h}, {s}, {V}, {B})")
    layer = [o for o in g.ops if o.layer == "layers"]
    assert layer and all(o.count == l for o in layer)
    # Per layer (Megatron-LM, Narayanan et al. 2021): Q, K, V, O projections 4 x 2Bsh^2,
    # MLP h -> 4h -> h 2 x 2Bs(4h)h = 16Bsh^2; scores QK^T and AV 2 x 2Bs^2h.
    per_layer = 24 * B * s * h**2 + 4 * B * s**2 * h
    assert total(layer) == l * per_layer


@pytest.mark.parametrize("l,h,heads,s,V,B", GPT_CONFIGS)
def test_gpt_lm_head_flops(tmp_path, l, h, heads, s, V, B):
    g = graph(tmp_path, f"gpt({l}, {h}, {heads}, {4 * h}, {s}, {V}, {B})")
    heads_ = [o for o in g.ops if o.kind == "linear" and o.layer == "" and o.output.shape == (B, s, V)]
    assert len(heads_) == 1
    assert heads_[0].matrix_flops * heads_[0].count == 2 * B * s * h * V
    # everything outside the layers that multiplies matrices is the head alone
    assert total(o for o in g.ops if o.layer == "") == 2 * B * s * h * V


@pytest.mark.parametrize("l,h,heads,s,V,B", GPT_CONFIGS)
def test_gpt_parameters(tmp_path, l, h, heads, s, V, B):
    g = graph(tmp_path, f"gpt({l}, {h}, {heads}, {4 * h}, {s}, {V}, {B})")
    # Per layer: 2 layernorms (gain and bias: 2h each) = 4h; Q, K, V, O with biases 4(h^2 + h);
    # MLP h x 4h + 4h and 4h x h + h = 8h^2 + 5h. Total 12h^2 + 13h.
    # Outside: token embedding V x h, final layernorm 2h, LM head tied to the embedding (0) and
    # without bias. archc's gpt has no position-embedding table.
    expected = l * (12 * h**2 + 13 * h) + V * h + 2 * h
    assert g.params_elems == expected
    assert sum(o.weight_elems * o.count for o in g.ops) == expected


def test_gpt_1_7b_against_megatrons_parameter_formula(tmp_path):
    # Narayanan et al. 2021 (Megatron-LM), the "1.7B" model: l = 24, h = 2304, V = 51200,
    # s = 2048. Their count P = 12 l h^2 (1 + 13 / (12 h) + (V + s) / (12 l h)) includes a
    # position-embedding table (s h) and omits the final layernorm; within 1% either way.
    l, h, V, s = 24, 2304, 51200, 2048
    megatron = 12 * l * h**2 * (1 + 13 / (12 * h) + (V + s) / (12 * l * h))
    g = graph(tmp_path, f"gpt({l}, {h}, 24, 4 * {h}, {s}, {V}, 1)")
    assert g.params_elems == pytest.approx(megatron, rel=0.01)


# ---- BERT -------------------------------------------------------------------------------------

def test_bert_large_encoder_parameters(tmp_path):
    L, h = 24, 1024
    g = graph(tmp_path, f"bert({L}, {h}, 16, 128, 1)")
    # encoder layer: attention 4(h^2 + h), MLP 8h^2 + 5h, two layernorms 4h = 12h^2 + 13h
    per_layer = 12 * h**2 + 13 * h
    assert sum(o.weight_elems * o.count for o in g.ops if o.layer == "layers") == L * per_layer
    assert L * per_layer == 302_309_376


def test_bert_large_encoder_flops(tmp_path):
    L, h, s, B = 24, 1024, 512, 2
    g = graph(tmp_path, f"bert({L}, {h}, 16, {s}, {B})")
    assert total(o for o in g.ops if o.layer == "layers") == L * (24 * B * s * h**2 + 4 * B * s**2 * h)


# ---- ResNet-50 --------------------------------------------------------------------------------

def test_resnet50_macs_per_image(tmp_path):
    g = graph(tmp_path, "resnet50(1)")
    macs = total(o for o in g.ops if o.kind in ("conv2d", "linear")) / 2
    # torchvision resnet50: 4.09 GMACs per 224 x 224 image (conv + fc)
    assert macs == pytest.approx(4.09e9, rel=0.01)
    # and everything that multiplies matrices is a conv or the fc
    assert total(g.ops) / 2 == macs


def test_resnet50_macs_scale_with_batch(tmp_path):
    one = total(graph(tmp_path, "resnet50(1)").ops)
    assert total(graph(tmp_path, "resnet50(8)").ops) == 8 * one


def test_resnet50_parameters(tmp_path):
    # torchvision.models.resnet50(): sum(p.numel() for p in m.parameters()) == 25,557,032
    # (convolutions without bias, batchnorm gain and bias, fc 2048 x 1000 + 1000).
    g = graph(tmp_path, "resnet50(1)")
    assert g.params_elems == 25_557_032


def test_resnet50_output_is_logits(tmp_path):
    g = graph(tmp_path, "resnet50(3)")
    assert g.output.shape == (3, 1000)


# ---- Llama ------------------------------------------------------------------------------------

def test_llama_3_1_8b_parameters(tmp_path):
    # Meta Llama 3.1 8B: 8,030,261,248 parameters. No biases anywhere; RMSNorm gains only;
    # untied output. h=4096, 32 layers, 32 heads, 8 KV heads (K, V: 4096 x 1024), FFN 14336,
    # vocab 128256: 2 x 128256 x 4096 + 32 x (2 x 4096^2 + 2 x 4096 x 1024 + 3 x 4096 x 14336
    # + 2 x 4096) + 4096.
    h, L, ff, V, kv = 4096, 32, 14336, 128256, 1024
    expected = 2 * V * h + L * (2 * h * h + 2 * h * kv + 3 * h * ff + 2 * h) + h
    assert expected == 8_030_261_248
    g = graph(tmp_path, f"llama_decode({L}, {h}, 32, 8, {ff}, {V}, 2048)")
    assert g.params_elems == expected


# ---- convolutions -----------------------------------------------------------------------------

CONVS = [
    # N, C, H, W, out, kernel, stride, padding, groups, Ho, Wo (by hand: (H + 2p - k) // s + 1)
    (2, 3, 32, 32, 16, 3, 1, 1, 1, 32, 32),
    (2, 3, 32, 32, 16, 3, 2, 1, 1, 16, 16),
    (1, 3, 224, 224, 64, 7, 2, 3, 1, 112, 112),
    (4, 8, 33, 17, 8, 5, 3, 0, 1, 10, 5),
    (1, 32, 14, 14, 32, 3, 1, 1, 32, 14, 14),  # depthwise
    (1, 16, 9, 9, 32, 1, 2, 0, 4, 5, 5),  # grouped 1x1, strided
]


@pytest.mark.parametrize("N,C,H,W,out,k,s,p,groups,Ho,Wo", CONVS)
def test_conv2d_shapes_and_flops(tmp_path, N, C, H, W, out, k, s, p, groups, Ho, Wo):
    extra = (f"model m() {{\n  input x : [{N}, {C}, {H}, {W}]\n"
             f"  return conv2d(x, {out}, kernel = {k}, stride = {s}, padding = {p}, groups = {groups})\n}}\n")
    g = graph(tmp_path, "m()", extra)
    (op,) = g.ops
    assert op.output.shape == (N, out, Ho, Wo)
    assert op.matrix_flops == 2 * N * Ho * Wo * out * (C // groups) * k * k
    assert op.weight_elems == out * (C // groups) * k * k


def test_default_padding_is_pytorchs_zero(tmp_path):
    # torch.nn.Conv2d(4, 8, 5): padding=0, so 15 -> (15 - 5) // 1 + 1 = 11
    extra = "model m() {\n  input x : [1, 4, 15, 15]\n  return conv2d(x, 8, kernel = 5)\n}\n"
    (op,) = graph(tmp_path, "m()", extra).ops
    assert op.output.shape == (1, 8, 11, 11)
    assert op.attr("padding") == 0


def test_pooling_shapes(tmp_path):
    extra = ("model m() {\n  input x : [2, 64, 112, 112]\n"
             "  y = maxpool(x, kernel = 3, stride = 2, padding = 1)\n  return global_avgpool(y)\n}\n")
    g = graph(tmp_path, "m()", extra)
    assert [o.output.shape for o in g.ops] == [(2, 64, 56, 56), (2, 64)]
    assert total(g.ops) == 0  # pooling multiplies no matrices


# ---- attention --------------------------------------------------------------------------------

@pytest.mark.parametrize("B,s,d,heads,kv_heads,cache", [(2, 16, 512, 8, 2, 100), (1, 1, 4096, 32, 8, 2048),
                                                        (3, 64, 768, 12, 12, 0)])
def test_self_attention_with_gqa_and_kv_cache(tmp_path, B, s, d, heads, kv_heads, cache):
    extra = (f"model m() {{\n  input x : [{B}, {s}, {d}]\n"
             f"  return self_attention(x, {heads}, kv_heads = {kv_heads}, cache = {cache}, flash = true)\n}}\n")
    g = graph(tmp_path, "m()", extra)
    dh = d // heads
    kvd = dh * kv_heads  # width of K and V
    t = s + cache  # positions attended: the new ones and the cached ones
    ops = {o.kind: [] for o in g.ops}
    for o in g.ops:
        ops[o.kind].append(o)
    q, k, v, o_ = ops["linear"]
    assert [x.output.shape for x in (q, k, v, o_)] == [(B, s, d), (B, s, kvd), (B, s, kvd), (B, s, d)]
    assert q.matrix_flops == 2 * B * s * d * d
    assert k.matrix_flops == v.matrix_flops == 2 * B * s * d * kvd
    assert o_.matrix_flops == 2 * B * s * d * d
    (att,) = ops["attention"]
    # scores Q K^T: B x heads x s x t dot products of width dh; then P V: the same again
    assert att.matrix_flops == 2 * (2 * B * heads * s * t * dh)
    assert att.output.shape == (B, s, d)
    # fused (flash) attention moves no score matrix; it reads the whole K and V cache once
    assert att.extra_bytes_elems == 2 * B * cache * kvd
    # parameters: Q and O d x d, K and V d x kvd, each with a bias
    assert g.params_elems == 2 * (d * d + d) + 2 * (d * kvd + kvd)
    assert total(g.ops) == 4 * B * s * d * d + 4 * B * s * d * kvd + 4 * B * heads * s * t * dh


def test_llama_decode_attention_flops(tmp_path):
    L, h, heads, kv, ff, V, ctx = 4, 1024, 16, 4, 2816, 32000, 512
    g = graph(tmp_path, f"llama_decode({L}, {h}, {heads}, {kv}, {ff}, {V}, {ctx})")
    (att,) = [o for o in g.ops if o.kind == "attention"]
    assert att.count == L
    dh = h // heads
    # one new token attends to itself and the `ctx` cached positions, in every head
    assert att.matrix_flops == 4 * 1 * heads * 1 * (ctx + 1) * dh
    kvd = kv * dh
    # per layer: q and o h x h, k and v h x kvd, SwiGLU 3 x h x ff; plus the output head h x V
    expected = L * (2 * (2 * h * h) + 2 * (2 * h * kvd) + 3 * (2 * h * ff) + 4 * heads * (ctx + 1) * dh) + 2 * h * V
    assert total(g.ops) == expected


# ---- matmul -----------------------------------------------------------------------------------

@pytest.mark.parametrize("a,b,out", [
    ([64, 32], [32, 16], [64, 16]),
    ([4, 1, 64, 32], [3, 32, 16], [4, 3, 64, 16]),
    ([2, 8, 16], [16, 4], [2, 8, 4]),
    ([5, 1, 7, 9], [1, 6, 9, 2], [5, 6, 7, 2]),
])
def test_matmul_batched_broadcast(tmp_path, a, b, out):
    extra = f"model m() {{\n  input a : {a}\n  input b : {b}\n  return matmul(a, b)\n}}\n"
    (op,) = graph(tmp_path, "m()", extra).ops
    assert list(op.output.shape) == out
    m, k, n = a[-2], a[-1], b[-1]
    batch = 1
    for d in out[:-2]:
        batch *= d
    assert op.matrix_flops == 2 * batch * m * n * k
    assert op.weight_elems == 0


def test_gemm_model_flops(tmp_path):
    g = graph(tmp_path, "gemm(8192, 4096, 1024)")
    assert total(g.ops) == 2 * 8192 * 4096 * 1024
    assert g.params_elems == 0


def test_linear_on_a_batch_of_sequences(tmp_path):
    extra = "model m() {\n  input x : [3, 5, 7]\n  return linear(x, 11)\n}\n"
    (op,) = graph(tmp_path, "m()", extra).ops
    assert op.output.shape == (3, 5, 11)
    assert op.matrix_flops == 2 * 3 * 5 * 7 * 11
    assert op.weight_elems == 7 * 11 + 11


def test_repeat_multiplies_counts(tmp_path):
    extra = ("model m(n) {\n  input x : [8, 64]\n  repeat n {\n    x = relu(linear(x, 64))\n  }\n"
             "  return x\n}\n")
    g = graph(tmp_path, "m(5)", extra)
    assert total(g.ops) == 5 * 2 * 8 * 64 * 64
    assert g.params_elems == 5 * (64 * 64 + 64)
