"""Mixture of experts (issue 16): the `experts` op's counts by hand, Mixtral 8x7B's parameters
against Mistral AI's published figures, the dynamic part (imbalance, capacity, the experts a
decode reaches) and expert parallelism's all-to-alls against closed forms, and the checker's
refusals."""
from __future__ import annotations

import pytest

from archc import __version__
from archc.api import check
from archc.dsl.diagnostics import ArchcError
from archc.runtime.pipeline import run_analytic, run_event
from conftest import EASY_MACHINE

MACHINE = EASY_MACHINE.replace("matrix fp16 x fp16 -> fp32 : 1000 mac/cycle",
                               "matrix bf16 x bf16 -> fp32 : 1000 mac/cycle").replace(
    "import std.blocks", "import std.blocks\nimport std.models")


def _design(tmp_path, text: str):
    f = tmp_path / "moe.arch"
    f.write_text(MACHINE + text)
    return check(f)


def test_the_experts_op_counts_by_hand(tmp_path):
    """x [4, 16] (4 tokens, d = 16), 4 experts of ffn 32, top 2, SwiGLU:
    matrix: 2 x (4 x 2 tokens) x 16 x 32 x 3 matrices = 24,576 FLOP;
    vector: SiLU(g) x u on 8 x 32 elements at 4 + 1 = 1,280, the gated sum 2 x 8 x 16 = 256,
    the router's softmax 5 x 4 x 4 = 80: 1,616; weights 4 x 3 x 16 x 32 = 6,144."""
    d = _design(tmp_path, """
model m() {
  input x : [4, 16]
  input g : [4, 4]
  return experts(x, g, experts = 4, ffn = 32, top_k = 2)
}
run r { model m(); on c; precision bf16 }
""")
    op = next(o for o in d.run("r").graph.ops if o.kind == "experts")
    assert (op.matrix_flops, op.vector_flops, op.weight_elems) == (24576, 1616, 6144)
    assert (op.gemms[0].batch, op.gemms[0].m, op.gemms[0].n, op.gemms[0].k) == (12, 2, 32, 16)  # 8 tokens / 4 experts


def test_mixtral_8x7b_has_the_published_parameters(tmp_path):
    """Mistral AI ("Mixtral of experts", 2023-12-11; Jiang et al. 2024, arXiv:2401.04088):
    46.7B parameters in all, 12.9B used per token. By hand: embedding and head 2 x 32,000 x
    4,096; per layer q and o 4,096^2, k and v 4,096 x 1,024, the router 4,096 x 8, eight
    experts of 3 x 4,096 x 14,336, two RMSNorms 4,096; a final norm 4,096. Per token the
    experts count 2 of 8."""
    d = _design(tmp_path, "run r { model mixtral(32, 4096, 32, 8, 8, 2, 14336, 32000, 1, 1); on c; precision bf16 }\n")
    g = d.run("r").graph
    expert = 8 * 3 * 4096 * 14336
    layer = 2 * 4096 ** 2 + 2 * 4096 * 1024 + 4096 * 8 + expert + 2 * 4096
    total = 2 * 32000 * 4096 + 32 * layer + 4096
    assert g.params_elems == total
    assert total == pytest.approx(46.7e9, rel=0.002)
    active = total - 32 * expert * 6 / 8
    assert active == pytest.approx(12.9e9, rel=0.002)
    # one token's forward FLOPs: 2 per active weight it multiplies (the embedding is a lookup)
    mm = sum(o.matrix_flops * o.count for o in g.ops)
    assert mm == pytest.approx(2 * (active - 32000 * 4096), rel=0.001)


RUNS = """
model layer(t, imbalance, capacity) {
  input x : [t, 1024]
  return moe(x, 8, 2, 4096, imbalance = imbalance, capacity = capacity)
}
system node8 { chips 8 of c; network switch, bandwidth = 100 GB/s, latency = 1 us }
run one(t = 1, imbalance = 1, capacity = 0) { model layer(t, imbalance, capacity); on c; precision bf16 }
run ep(t = 4096, imbalance = 1.5, capacity = 0, ep = 8) { model layer(t, imbalance, capacity); on node8
  strategy data, chips = 8, ep = ep; precision bf16 }
"""


def _experts_row(rep):
    return next(o for o in rep.ops if o.kind == "experts")


def test_a_one_token_decode_reads_the_experts_it_reaches(tmp_path):
    """One token, top 2 of 8: 1 - (1 - 2/8)^1 = 1/4 of the experts' weights are read
    (8 x 3 x 1024 x 4096 x 2 B = 201.3 MB; a quarter 50.3 MB), plus x in, y out and the logits
    (1024 + 1024 + 8) x 2 B."""
    rep = run_analytic(_design(tmp_path, RUNS).run("one"), __version__)
    w = 8 * 3 * 1024 * 4096 * 2
    assert _experts_row(rep).bytes == pytest.approx(w / 4 + (1024 + 1024 + 8) * 2, rel=1e-9)
    assert "top 2 of 8 experts" in " ".join(rep.notes) and "25% of the experts' weights" in " ".join(rep.notes)


def test_expert_parallelism_pays_the_busiest_expert_and_two_all_to_alls(tmp_path):
    """8 chips, ep = 8, 4,096 tokens a chip: each expert's chip computes 1.5 x the mean of its
    tokens (dropless, declared imbalance 1.5): 1.5 x 2 x 8,192 x 1,024 x 4,096 x 3 FLOP. The
    dispatch and the combine each move D = 4,096 x 2 x 1,024 x 2 B = 16 MiB a chip through the
    switch as 7 pairwise shifts of D/8 at 100 GB/s, 1 us each: 7 x (2 MiB / 100 GB/s + 1 us)."""
    d = _design(tmp_path, RUNS)
    rep = run_analytic(d.run("ep"), __version__)
    flops = 2 * 4096 * 2 * 1024 * 4096 * 3
    vector = 8192 * 4096 * 5 + 2 * 8192 * 1024 + 5 * 4096 * 8  # as in the hand count above
    row = _experts_row(rep)
    assert row.flops == pytest.approx(1.5 * (flops + vector), rel=1e-12)  # what the busiest chip does
    # the model's FLOPs (8 chips, the router's 2 x 4,096 x 1,024 x 8 each) take no imbalance
    assert rep.model_flops == pytest.approx(8 * (flops + vector + 2 * 4096 * 1024 * 8), rel=1e-12)
    peak = 10 * 1000 * 2 * 1e9
    assert row.time_s >= 1.5 * flops / peak
    D = 4096 * 2 * 1024 * 2
    for what in ("dispatch", "combine"):
        a2a = next(o for o in rep.ops if o.name.endswith(what))
        assert a2a.time_s == pytest.approx(7 * (D / 8 / 100e9 + 1e-6) + 1e-6, rel=1e-9)  # + its launch
    assert "declared imbalance" in " ".join(rep.notes)
    ev = run_event(d.run("ep"), __version__)
    assert ev.latency_s == pytest.approx(rep.latency_s, rel=0.02)
    # a capacity factor pads every expert to 1.25 x the mean: 1.25 / 1.5 of the dropless time
    capped = run_analytic(check(tmp_path / "moe.arch", ["capacity=1.25"], "ep").run("ep"), __version__)
    assert "17% of the busiest expert's tokens are dropped" in " ".join(capped.notes)
    assert _experts_row(capped).time_s == pytest.approx(row.time_s * 1.25 / 1.5, rel=0.05)


@pytest.mark.parametrize("text, message", [
    ("model m() { input x : [4, 16]\n input g : [4, 3]\n return experts(x, g, experts = 4, ffn = 8) }\n"
     "run r { model m(); on c; precision bf16 }",
     "the router logits must be [4, 4]"),
    ("model m() { input x : [4, 16]\n input g : [4, 4]\n return experts(x, g, experts = 4, ffn = 8, top_k = 5) }\n"
     "run r { model m(); on c; precision bf16 }",
     "top_k = 5 but there are only 4 experts"),
    ("model m() { input x : [4, 16]\n input g : [4, 4]\n return experts(x, g, experts = 4, ffn = 8, imbalance = 0.5) }\n"
     "run r { model m(); on c; precision bf16 }",
     "'imbalance' of experts must be a number ≥ 1"),
    ("run r { model mixtral(1, 64, 4, 2, 4, 2, 128, 256, 16, 1); on node; strategy data, chips = 4, ep = 3; "
     "precision bf16 }", "ep = 3 must divide dp = 4"),
])
def test_moe_mistakes_are_located(tmp_path, text, message):
    f = tmp_path / "bad.arch"
    f.write_text(MACHINE + text + "\n")
    with pytest.raises(ArchcError) as e:
        check(f).run("r")
    assert message in e.value.render()


def test_expert_gradients_reduce_over_the_replicas_holding_the_same_experts(tmp_path):
    """dp = 4, ep = 2 on 4 chips of a switch: the dense gradients (the router's 1,024 x 8)
    all-reduce over the 4 replicas, the experts' (8 x 3 x 1,024 x 4,096 / 2 a chip) over the
    2 replicas holding the same experts (chips 2 apart). fp32 gradients under amp. Ring
    all-reduce: 2 (p-1)/p x bytes at 100 GB/s plus 2 (p-1) latencies of 1 us; both levels."""
    d = _design(tmp_path, RUNS + """
run train { model layer(64, 1, 0); on node; mode train
  strategy data, chips = 4, ep = 2, micro_batch = 1, global_batch = 4; precision amp }
""")
    run = d.run("train")
    rep = run_analytic(run, __version__)
    dense, expert = 1024 * 8 * 4, 8 * 3 * 1024 * 4096 / 2 * 4
    rows = {o.name: o for o in rep.ops}
    assert rows["gradient all-reduce"].time_s == pytest.approx(2 * 3 / 4 * dense / 100e9 + 6e-6 + 1e-6, rel=1e-9)
    assert rows["expert gradient all-reduce"].time_s == pytest.approx(2 * 1 / 2 * expert / 100e9 + 2e-6 + 1e-6,
                                                                      rel=1e-9)
    ev = run_event(run, __version__)
    assert ev.latency_s == pytest.approx(rep.latency_s, rel=0.02)
