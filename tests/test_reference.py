"""The op and block reference is generated from the registry and the standard library
(dsl/reference.py): docs/ops.md is `archc ops --markdown`, byte for byte; every op has an
`archc accuracy` implementation; and the sample models written with the ops count what their
published figures say."""
from __future__ import annotations

import math
import subprocess
import sys

import pytest

from archc.api import check
from archc.dsl import reference
from archc.dsl.ops import OPS
from archc.runtime.accuracy import IMPL
from conftest import ROOT


def test_docs_ops_md_is_the_generated_reference():
    """Regenerate with `archc ops --markdown > docs/ops.md` after changing an op or a std block."""
    assert (ROOT / "docs" / "ops.md").read_text(encoding="utf-8") == reference.markdown()


def test_archc_ops_prints_every_op_and_library_entry():
    r = subprocess.run([sys.executable, "-m", "archc", "ops"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    for k, spec in OPS.items():
        assert spec.signature(k) in r.stdout
    assert "mixtral_layer(x, heads, kv_heads, experts, top_k, ff, cache = 0, flash = true, capacity = 0, " \
           "imbalance = 1)  [std.blocks]" in r.stdout
    assert "calls: rmsnorm, self_attention, moe" in r.stdout
    md = subprocess.run([sys.executable, "-m", "archc", "ops", "--markdown"], capture_output=True, text=True,
                        timeout=120)
    assert md.stdout == reference.markdown()


def test_every_op_has_an_accuracy_implementation():
    """Every op but the views (reshape, flatten: no op, the elements as they are)."""
    assert sorted(k for k in OPS if OPS[k].cls != "view" and k not in IMPL) == []


VIT_RUN = """import std.formats
import "{root}/samples/machines/h100.arch"
import "{root}/samples/models/vit.arch"
run one {{ model vit(); on h100; precision bf16 }}
run batch {{ model vit(batch = 8); on h100; precision bf16 }}
"""


def test_the_vit_sample_is_vit_b16(tmp_path):
    """samples/models/vit.arch at its defaults: torchvision's vit_b_16 has 86,567,656
    parameters (the class token 768 and the position embeddings 197 x 768 among them, now
    params); timm's vit_base_patch16_224 is 17.6 GMACs per image. By hand: the patch embedding
    2 x 196 x 768 x (3 x 16 x 16), per layer 24 s d^2 + 4 s^2 d at s = 197, d = 768, the head
    2 x 768 x 1000: 35,127,656,448 FLOPs = 17.56 GMACs, 0.2% under timm's rounded figure. A
    batch of 8 shares one class token and one set of position embeddings (broadcast)."""
    f = tmp_path / "v.arch"
    f.write_text(VIT_RUN.format(root=ROOT))
    d = check(f)
    g = d.run("one").graph
    s, dm = 197, 768
    hand = 2 * 196 * dm * 3 * 16 * 16 + 12 * (24 * s * dm * dm + 4 * s * s * dm) + 2 * dm * 1000
    mm = sum(o.matrix_flops * o.count for o in g.ops)
    assert mm == hand == 35_127_656_448
    assert mm / 2 == pytest.approx(17.6e9, rel=0.01)
    assert g.params_elems == 86_567_656
    g8 = d.run("batch").graph
    assert g8.params_elems == 86_567_656
    assert sum(o.matrix_flops * o.count for o in g8.ops) == 8 * hand
    assert g8.output.shape == (8, 1000)


def test_concat_broadcasts_a_class_token_over_the_batch(tmp_path):
    """concat(param(1, 1, 4), x[3, 5, 4], axis = 1) -> [3, 6, 4], as PyTorch's
    `torch.cat([cls.expand(3, -1, -1), x], 1)`: the token is 4 weights, read once (its input is
    4 elements, not 12)."""
    f = tmp_path / "c.arch"
    f.write_text("""import std.formats
tile t { clock 1 GHz; sram 1 MiB, bandwidth = 100 B/cycle; matrix bf16 x bf16 -> fp32 : 100 mac/cycle
         vector fp32 : 10 lanes }
chip c { tiles 1 of t; noc crossbar, bandwidth = 1 TB/s; memory hbm, 1 GB, bandwidth = 1 TB/s; launch 1 us }
model m() {
  input x : [3, 5, 4]
  return concat(param(1, 1, 4), x, axis = 1)
}
run r { model m(); on c; precision bf16 }
""")
    g = check(f).run("r").graph
    cat = next(o for o in g.ops if o.kind == "concat")
    assert cat.output.shape == (3, 6, 4)
    assert [t.elems for t in cat.inputs] == [4, 60]
    assert g.params_elems == 4


UNET_RUN = """import std.formats
import "{root}/samples/machines/h100.arch"
import "{root}/samples/models/unet.arch"
run r {{ model unet(); on h100; precision bf16 }}
"""


def test_the_unet_sample_counts_the_published_figures(tmp_path):
    """samples/models/unet.arch is milesial/Pytorch-UNet's UNet(n_channels = 3, n_classes = 2,
    bilinear = False). Published for it (milesial/Pytorch-UNet issue #477, 2024-01-26, thop on a
    1 x 3 x 420 x 240 input): 31.037698 M parameters and 83.922432 G thop "FLOPs" (thop counts
    multiply-accumulates, a (transposed) convolution as output elements x (Cin k^2 + bias), and
    batch norm as 2 per element; ReLU, max-pool and padding as 0).

    By hand, the multiply-accumulates of the convolutions at the levels 420 x 240, 210 x 120,
    105 x 60, 52 x 30, 26 x 15 (pixels p0..p4), two 3 x 3 convolutions a level down and up:
    down p0 (3 64 + 64 64) 9 + p1 (64 128 + 128^2) 9 + p2 (128 256 + 256^2) 9
       + p3 (256 512 + 512^2) 9 + p4 (512 1024 + 1024^2) 9;
    up   p3 (1024 512 + 512^2) 9 + p2 (512 256 + 256^2) 9 + p1 (256 128 + 128^2) 9
       + p0 (128 64 + 64^2) 9, the up-convolutions (input pixels x Cin x Cout x 4)
       p4 1024 512 4 + p3 512 256 4 + p2 256 128 4 + p1 128 64 4, and the 1 x 1 head p0 64 2."""
    f = tmp_path / "u.arch"
    f.write_text(UNET_RUN.format(root=ROOT))
    g = check(f).run("r").graph
    p0, p1, p2, p3, p4 = 420 * 240, 210 * 120, 105 * 60, 52 * 30, 26 * 15
    hand = (p0 * (3 * 64 + 64 * 64) * 9 + p1 * (64 * 128 + 128 ** 2) * 9 + p2 * (128 * 256 + 256 ** 2) * 9
            + p3 * (256 * 512 + 512 ** 2) * 9 + p4 * (512 * 1024 + 1024 ** 2) * 9
            + p3 * (1024 * 512 + 512 ** 2) * 9 + p2 * (512 * 256 + 256 ** 2) * 9 + p1 * (256 * 128 + 128 ** 2) * 9
            + p0 * (128 * 64 + 64 ** 2) * 9
            + p4 * 1024 * 512 * 4 + p3 * 512 * 256 * 4 + p2 * 256 * 128 * 4 + p1 * 128 * 64 * 4 + p0 * 64 * 2)
    macs = sum(o.matrix_flops * o.count for o in g.ops) / 2
    assert macs == hand == 73_863_966_720
    assert g.params_elems == 31_037_698
    # the same graph counted by thop's rules: each (transposed) convolution's output elements
    # times Cin k^2 (+1 with a bias), batch norm 2 per element
    thop = 0
    for o in g.ops:
        out = math.prod(o.output.shape)
        if o.kind in ("conv2d", "conv_transpose2d"):
            thop += out * (o.inputs[0].shape[1] * o.attr("kernel") ** 2 + (1 if o.attr("bias") else 0))
        elif o.kind == "batchnorm":
            thop += 2 * out
    assert thop == pytest.approx(83.922432e9, rel=0.01)


def test_conv_transpose2d_counts_and_computes_by_hand(tmp_path):
    """x [1, 2, 2, 2] up-convolved to 3 channels by a 2 x 2 kernel at stride 2: output [1, 3, 4, 4];
    2 x (1 x 2 x 2 pixels) x 2 x 3 x 4 = 192 FLOPs, 2 x 3 x 4 = 24 weights; no window overlaps.
    At stride 1 a 2 x 2 kernel's windows overlap: output 3 x 3, each of its 9 x 3 elements is the
    sum of (number of windows over it) products: 16 x 3 products land on 9 x 3 outputs, so
    (16 - 9) x 3 = 21 adds. The accuracy level's float64 path equals the scatter written here."""
    import numpy as np

    from archc.runtime.accuracy import _Reference, _conv_transpose2d

    f = tmp_path / "t.arch"
    f.write_text("""import std.formats
tile t { clock 1 GHz; sram 1 MiB, bandwidth = 100 B/cycle; matrix bf16 x bf16 -> fp32 : 100 mac/cycle
         vector fp32 : 10 lanes }
chip c { tiles 1 of t; noc crossbar, bandwidth = 1 TB/s; memory hbm, 1 GB, bandwidth = 1 TB/s; launch 1 us }
model m(s) {
  input x : [1, 2, 2, 2]
  return conv_transpose2d(x, 3, 2, stride = s)
}
run r2 { model m(2); on c; precision bf16 }
run r1 { model m(1); on c; precision bf16 }
""")
    d = check(f)
    op = d.run("r2").graph.ops[0]
    assert (op.output.shape, op.matrix_flops, op.vector_flops, op.weight_elems) == ((1, 3, 4, 4), 192, 0, 24)
    op1 = d.run("r1").graph.ops[0]
    assert (op1.output.shape, op1.matrix_flops, op1.vector_flops) == ((1, 3, 3, 3), 192, 21)
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((1, 2, 2, 2)), rng.standard_normal((2, 3, 2, 2))
    for o, s in ((op, 2), (op1, 1)):
        want = np.zeros(o.output.shape)
        for i in range(2):
            for j in range(2):
                for a in range(2):
                    for b in range(2):
                        want[0, :, i * s + a, j * s + b] += x[0, :, i, j] @ w[:, :, a, b]
        got = _conv_transpose2d(_Reference(), o, [x], {"w": w})
        np.testing.assert_allclose(got, want, rtol=1e-12)
