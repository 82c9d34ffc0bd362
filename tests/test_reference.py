"""The op and block reference is generated from the registry and the standard library
(dsl/reference.py): docs/ops.md is `archc ops --markdown`, byte for byte; every op has an
`archc accuracy` implementation; and the sample models written with the ops count what their
published figures say."""
from __future__ import annotations

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
