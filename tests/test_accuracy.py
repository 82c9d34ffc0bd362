"""Numerical accuracy (`archc accuracy`, `archc.api.accuracy`): a reduced instance of a run,
executed in float64 and in the declared precisions, with the error op by op and end to end.

The central check recomputes a small GPT block independently of archc's format kernels: the
inputs and weights come from the report's trace; rounding is gfloat's (`round_ndarray`, not
ml_dtypes, which would round float64 inputs twice); accumulation is a NumPy loop over the
reduction index that rounds the running sum after every add."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

gfloat = pytest.importorskip("gfloat")
from gfloat import RoundMode, round_ndarray  # noqa: E402
from gfloat import formats as G  # noqa: E402

from archc.api import accuracy  # noqa: E402
from archc.dsl.diagnostics import ArchcError  # noqa: E402
from archc.dsl.ir import Analog  # noqa: E402
from archc.runtime.accuracy import _shrink  # noqa: E402
from archc.runtime.analog import adc, analog_matmul, dac  # noqa: E402

from conftest import H100, run_cli  # noqa: E402

pytestmark = pytest.mark.build

DTYPES = ("fp64", "fp32", "bf16", "fp8_e4m3")
# gfloat's own definitions, and whether the format saturates on overflow (OCP fp8 does)
GF = {"fp64": (G.format_info_binary64, False), "fp32": (G.format_info_binary32, False),
      "bf16": (G.format_info_bfloat16, False), "fp8_e4m3": (G.format_info_ocp_e4m3, True)}

MACHINE = """\
import std.formats
import std.models
tile t {{
  clock 1 GHz
  sram 1 MiB, bandwidth = 64 GB/s
{units}
  vector fp32 : 16 lanes
  vector fp64 : 8 lanes
}}
chip c {{
  tiles 4 of t
  noc crossbar, bandwidth = 1 TB/s
  memory hbm, 16 GB, bandwidth = 1 TB/s
}}
"""
DIGITAL = """\
  matrix fp64 x fp64 -> fp64 : 16 mac/cycle
  matrix fp32 x fp32 -> fp32 : 64 mac/cycle
  matrix bf16 x bf16 -> fp32 : 256 mac/cycle
  matrix fp8_e4m3 x fp8_e4m3 -> fp32 : 512 mac/cycle"""
# One GPT decoder layer: hidden 32, 2 heads, ffn 128, seq 16, vocab 64, batch 1 (causal,
# unfused attention, tied output projection, cross-entropy loss).
RUNS = """
run block(layers = 1, dtype = bf16) {
  model gpt(layers, 32, 2, 128, 16, 64, 1)
  on c
  precision dtype
}
run gemm(dtype = fp32) {
  model gemm(16, 16, 64)
  on c
  precision dtype
}
"""


@pytest.fixture(scope="module")
def block(tmp_path_factory):
    p = tmp_path_factory.mktemp("accuracy") / "block.arch"
    p.write_text(MACHINE.format(units=DIGITAL) + RUNS)
    return p


@pytest.fixture(scope="module")
def reports(block):
    return {d: accuracy(block, "block", seed=3, overrides=[f"dtype={d}"]) for d in DTYPES}


# ---- an independent forward pass ------------------------------------------------------------

def rnd(fmt: str, x, mode=RoundMode.TiesToEven) -> np.ndarray:
    fi, sat = GF[fmt]
    return round_ndarray(fi, np.asarray(x, dtype=np.float64), mode, sat)


def accumulate(a: np.ndarray, b: np.ndarray, acc: str) -> np.ndarray:
    """a @ b, every dot product summed in `acc` with one rounding per add, in index order.

    The product of two operands of at most 26 significant bits (fp32 and narrower) is exact in a
    double; for fp64 operands it is rounded to a double, as archc's kernel does too. The running
    sum plus the product is then rounded to `acc`: gfloat rounds the double s = acc + p, which
    is the exact sum unless its TwoSum error `lo` is nonzero; then the double rounding can only go
    wrong when s is exactly halfway between two `acc` values, and the sign of lo decides."""
    s = np.zeros((a.shape[0], b.shape[1]))
    for j in range(a.shape[1]):
        p = a[:, j:j + 1] * b[j:j + 1, :]
        t = s + p
        bb = t - s
        lo = (s - (t - bb)) + (p - bb)
        r = rnd(acc, t)
        if acc != "fp64" and np.any(lo != 0):
            dn, up = rnd(acc, t, RoundMode.TowardNegative), rnd(acc, t, RoundMode.TowardPositive)
            tie = (lo != 0) & (dn != up) & (t - dn == up - t)
            r = np.where(tie, np.where(lo > 0, up, dn), r)
        s = r
    return s


def gelu(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def gpt_forward(trace, fmt: str | None, acc: str = "fp32", vec: str = "fp32", heads: int = 2) -> dict:
    """The GPT model of std.models, written out; fmt None: float64 throughout."""
    if fmt is None:
        S = V = (lambda x: np.asarray(x, dtype=np.float64))  # noqa: E731
        mm = (lambda a, b: a @ b)  # noqa: E731
    else:
        S = (lambda x: rnd(fmt, x))  # noqa: E731  storage / operand format
        V = (lambda x: rnd(fmt, rnd(vec, x)))  # noqa: E731  vector result, then stored
        mm = (lambda a, b: accumulate(S(a), S(b), acc))  # noqa: E731
    W = trace.weights
    out = {}

    def linear(x, w):
        y = mm(x.reshape(-1, x.shape[-1]), S(w["w"]))
        y = V(y + S(w["b"])) if "b" in w else S(y)
        return y.reshape(x.shape[:-1] + (y.shape[-1],))

    def layernorm(x, w):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return V((x - mu) / np.sqrt(var + 1e-5) * S(w["gamma"]) + S(w["beta"]))

    def attention(q, k, v):
        b, s, d = q.shape
        dh = d // heads
        o = np.zeros_like(q)
        causal = np.tril(np.ones((s, s), dtype=bool))
        for h in range(heads):
            sl = slice(h * dh, (h + 1) * dh)
            sc = S(mm(q[0, :, sl], k[0, :, sl].T)) / math.sqrt(dh)  # unfused: scores stored
            sc = np.where(causal, sc, -np.inf)
            e = np.exp(sc - sc.max(-1, keepdims=True))
            p = V(e / e.sum(-1, keepdims=True))
            o[0, :, sl] = S(mm(p, v[0, :, sl]))
        return o

    tokens = next(iter(trace.inputs.values()))
    table = W["x"][0]["table"]
    x = S(table)[tokens]
    for i in range(len(W["transformer.h"])):
        def w(name):
            return W[name][i]
        h = layernorm(x, w("transformer.h"))
        q, k, v = (linear(h, w(f"transformer.self_attention.{n}")) for n in "qkv")
        a = linear(attention(q, k, v), w("transformer.self_attention.o"))
        x = V(x + a)  # dropout: the identity
        h = layernorm(x, w("transformer.h#2"))
        m = linear(V(gelu(linear(h, w("transformer.mlp.h")))), w("transformer.mlp.o"))
        x = V(x + m)
    x = layernorm(x, W["x#2"][0])
    logits = S(mm(x.reshape(-1, x.shape[-1]), S(table.T))).reshape(x.shape[:-1] + (table.shape[0],))
    out["logits"] = logits
    labels = W["cross_entropy"][0]["labels"]
    mx = logits.max(-1, keepdims=True)
    lse = np.log(np.exp(logits - mx).sum(-1)) + mx[..., 0]
    out["loss"] = V(lse - np.take_along_axis(logits, labels[..., None], -1)[..., 0])
    return out


def rel(y, ref) -> float:
    return float(np.linalg.norm(y - ref) / np.linalg.norm(ref))


# ---- the block: ordering and independent recomputation -------------------------------------

def test_errors_are_ordered_by_precision(reports):
    errs = [reports[d].output_error.rel_l2 for d in DTYPES]
    assert errs[0] < 1e-13, errs  # fp64: tiny (summation order differs from BLAS), maybe zero
    assert errs == sorted(errs) and len(set(errs)) == 4, dict(zip(DTYPES, errs))
    for d in DTYPES:
        rep = reports[d]
        assert rep.output["format"] == d and rep.precision["matrix"] == d
        assert all(r.format == d for r in rep.ops)
    # fp64 runs its vector arithmetic on the tile's fp64 lanes (the run's vector format is fp32)
    assert reports["fp64"].op("transformer.h").vector == "fp64"
    assert reports["bf16"].op("transformer.h").vector == "fp32"


@pytest.mark.parametrize("dtype", DTYPES)
def test_independent_recomputation(reports, dtype):
    rep = reports[dtype]
    tr = rep.trace
    acc = "fp64" if dtype == "fp64" else "fp32"
    vec = "fp64" if dtype == "fp64" else "fp32"
    ours = gpt_forward(tr, dtype, acc, vec)
    ref = gpt_forward(tr, None)
    mine = rel(ours["loss"], ref["loss"])
    theirs = rep.output_error.rel_l2
    y_archc = tr.declared[tr.output_id]
    if dtype == "fp64":
        # Nothing rounds beyond float64 here, so both sides agree only as far as their float64
        # expressions do (same order of operations: identical; here they are). Allow a few ulps.
        np.testing.assert_allclose(y_archc, ours["loss"], rtol=1e-14, atol=0)
        assert mine < 1e-13 and mine == pytest.approx(theirs, rel=0.05), (mine, theirs)
        return
    # The declared outputs agree value for value, so the errors agree to float64 rounding.
    np.testing.assert_array_equal(y_archc, ours["loss"])
    assert mine == pytest.approx(theirs, rel=1e-9), (mine, theirs)
    logits_id = rep.trace.run.graph.ops[rep.op("logits").index].output.id
    np.testing.assert_array_equal(tr.declared[logits_id], ours["logits"])
    assert rel(ours["logits"], ref["logits"]) == pytest.approx(rep.op("logits").error.rel_l2, rel=1e-9)


def test_repeated_layers_feed_each_other(block):
    # two layers: the second iteration reads the first one's output, with its own weights
    rep = accuracy(block, "block", seed=5, overrides=["layers=2", "dtype=bf16"])
    assert rep.op("transformer.h").iterations == 2
    w = rep.trace.weights["transformer.mlp.h"]
    assert len(w) == 2 and not np.array_equal(w[0]["w"], w[1]["w"])
    ours, ref = gpt_forward(rep.trace, "bf16"), gpt_forward(rep.trace, None)
    np.testing.assert_array_equal(rep.trace.declared[rep.trace.output_id], ours["loss"])
    assert rel(ours["loss"], ref["loss"]) == pytest.approx(rep.output_error.rel_l2, rel=1e-9)


def test_seeded_and_reproducible(block, reports):
    again = accuracy(block, "block", seed=3, overrides=["dtype=bf16"])
    assert again.output_error == reports["bf16"].output_error
    other = accuracy(block, "block", seed=4, overrides=["dtype=bf16"])
    assert other.output_error.rel_l2 != reports["bf16"].output_error.rel_l2
    tr = reports["bf16"].trace
    tokens = next(iter(tr.inputs.values()))
    assert tokens.dtype.kind == "i" and tokens.min() >= 0 and tokens.max() < 64
    w = tr.weights["transformer.mlp.h"][0]["w"]
    assert w.shape == (32, 128) and abs(w.std() - 1 / math.sqrt(32)) < 0.02


def test_report_text_and_json(reports):
    rep = reports["bf16"]
    text = rep.to_text()
    assert "rel L2" in text and "transformer.mlp.h" in text and "output      cross_entropy" in text
    d = json.loads(rep.to_json())
    assert d["schema"] == "archc.accuracy/1" and d["seed"] == 3 and d["run"] == "block"
    assert d["params"]["dtype"] == "bf16" and d["precision"]["matrix"] == "bf16"
    assert [o["name"] for o in d["ops"]] == [op.name for op in rep.trace.run.graph.ops]
    assert d["output"]["rel_l2"] == rep.output_error.rel_l2
    fp64 = json.loads(reports["fp64"].to_json())
    assert fp64["ops"][0]["snr_db"] is None and fp64["ops"][0]["exact"]  # embedding: exact in fp64


# ---- the size rule and errors ---------------------------------------------------------------

def test_size_rule_keeps_divisibility():
    assert _shrink(2304, 24, 64) == 48  # a multiple of the 24 heads
    assert _shrink(2048, 1, 64) == 64
    assert _shrink(51200, 4, 64) == 52  # 50 rounded to a multiple of 4
    assert _shrink(50257, 1, 64) == 49  # not a power-of-two multiple: rounded
    assert _shrink(300, 100, 64) == 100  # cannot go below the multiple


def test_declared_accuracy_values_are_checked(tmp_path):
    p = tmp_path / "bad.arch"
    p.write_text(MACHINE.format(units=DIGITAL) + """
run big(hidden = 256, heads = 4) {
  model gpt(1, hidden, heads, 4 * hidden, 16, 64, 1)
  on c
  precision bf16
  accuracy hidden = 30
}
""")
    with pytest.raises(ArchcError) as e:
        accuracy(p, "big")
    text = e.value.render()
    assert "reduced instance of run 'big'" in text and "do not divide" in text
    assert f"{p}:" in text  # located in the file
    rep = accuracy(p, "big", overrides=["hidden=32"])  # --set wins over the statement
    assert rep.params["hidden"] == 32


def test_bad_precision_and_seed(block):
    cases = [("nonsense", "needs the form GLOB=FORMAT"), ("transformer.*=fp9", "unknown format 'fp9'"),
             ("nothing.*=bf16", "matches no op"), ("transformer.*=e8m0", "unsigned")]
    for text, message in cases:
        with pytest.raises(ArchcError) as e:
            accuracy(block, "block", precision=[text])
        assert "<--precision>:1:" in e.value.render() and message in e.value.render(), text
    with pytest.raises(ArchcError, match="seed"):
        accuracy(block, "block", seed=-1)
    with pytest.raises(ArchcError, match="no run named"):
        accuracy(block, "nope")


def test_too_large_is_an_error():
    # --set wins over the run's reduced instance: 64 full 224 x 224 images are far too many
    with pytest.raises(ArchcError, match="multiply-accumulates per forward pass"):
        accuracy(H100, "resnet50_infer", overrides=["image=224", "batch=64"])


def test_other_op_kinds(tmp_path):
    # convolutions, pooling, batchnorm, an identity-shortcut repeat, views, GQA with a KV cache
    p = tmp_path / "cnn.arch"
    p.write_text(MACHINE.format(units=DIGITAL) + """
model tiny_cnn(batch, image) {
  input images : [batch, 3, image, image]
  x = relu(batchnorm(conv2d(images, 16, kernel = 3, stride = 2, padding = 1)))
  x = maxpool(x, kernel = 3, stride = 2, padding = 1)
  x = resnet_stage(x, 3, 8, 2)
  x = global_avgpool(avgpool(x, kernel = 2))
  return linear(flatten(x), 10)
}
run cnn(dtype = bf16) {
  model tiny_cnn(2, 32)
  on c
  precision dtype
}
run llama(dtype = bf16) {
  model llama_decode(2, 64, 4, 2, 128, 128, 16, batch = 2)
  on c
  precision dtype
}
""")
    for run in ("cnn", "llama"):
        errs = [accuracy(p, run, overrides=[f"dtype={d}"]).output_error for d in ("fp32", "bf16", "fp8_e4m3")]
        assert all(e.finite for e in errs)
        assert errs[0].rel_l2 < 1e-5 < errs[1].rel_l2 < errs[2].rel_l2 < 1, (run, errs)


MOVES = """
model moves() {
  input x : [2, 6, 8]
  input cls : [2, 1, 8]
  y = concat(cls, x, axis = 1)
  a, b = split(y, [3, 5], axis = -1)
  t = transpose(a, 1, 2)
  p = permute(b, 2, 0, 1)
  s = slice(y, 1, -2)
  z = pad(s, [1, 2, 0, 1], value = 0.5)
  r = rope(y, 2, offset = 3)
  m = softmax(y, 1)
  u = reduce_mean(m, 0, keepdims = true)
  return reduce_max(r, -2)
}
run moves(dtype = bf16) {
  model moves()
  on c
  precision dtype
}
"""


def rope_ref(x, heads, base, offset):
    """RoFormer's rotation (Su et al. 2021, eq. 34) as a complex product: the pair (x_2i, x_2i+1)
    of each head is the number x_2i + i x_2i+1, turned by exp(i m theta_i)."""
    b, s, d = x.shape
    dh = d // heads
    z = x.reshape(b, s, heads, dh // 2, 2)
    z = z[..., 0] + 1j * z[..., 1]
    theta = base ** (-np.arange(dh // 2) * 2.0 / dh)
    z = z * np.exp(1j * (offset + np.arange(s))[None, :, None, None] * theta)
    return np.stack([z.real, z.imag], axis=-1).reshape(b, s, d)


@pytest.mark.parametrize("dtype", ("fp32", "bf16"))
def test_layout_ops_rope_and_axes(tmp_path, dtype):
    p = tmp_path / "moves.arch"
    p.write_text(MACHINE.format(units=DIGITAL) + MOVES)
    rep = accuracy(p, "moves", seed=2, overrides=[f"dtype={dtype}"])
    tr = rep.trace
    g = tr.run.graph
    out = {op.name: op.output.id for op in g.ops}
    x, cls = (tr.inputs[t.id] for t in g.inputs)
    y = np.concatenate([cls, x], axis=1)
    ref = tr.reference
    np.testing.assert_array_equal(ref[out["y"]], y)
    np.testing.assert_array_equal(ref[out["a"]], y[..., :3])
    np.testing.assert_array_equal(ref[out["b"]], y[..., 3:])
    np.testing.assert_array_equal(ref[out["t"]], np.swapaxes(y[..., :3], 1, 2))
    np.testing.assert_array_equal(ref[out["p"]], np.transpose(y[..., 3:], (2, 0, 1)))
    np.testing.assert_array_equal(ref[out["s"]], y[:, 5:])
    np.testing.assert_array_equal(ref[out["z"]], np.pad(y[:, 5:], ((0, 0), (0, 1), (1, 2)), constant_values=0.5))
    np.testing.assert_allclose(ref[out["r"]], rope_ref(y, 2, 10000.0, 3), rtol=1e-13, atol=1e-15)
    e = np.exp(y - y.max(axis=1, keepdims=True))
    np.testing.assert_allclose(ref[out["m"]], e / e.sum(axis=1, keepdims=True), rtol=1e-14)
    np.testing.assert_allclose(ref[out["u"]], (e / e.sum(axis=1, keepdims=True)).mean(axis=0, keepdims=True),
                               rtol=1e-14)
    # moving values adds no error: the declared path moves the rounded inputs unchanged
    q = rnd(dtype, y)
    np.testing.assert_array_equal(tr.declared[out["y"]], q)
    np.testing.assert_array_equal(tr.declared[out["t"]], np.swapaxes(q[..., :3], 1, 2))
    for name in ("a", "b", "t", "p", "s", "z"):
        assert rep.op(name).local.rel_l2 == 0, name
    # rope, softmax and the reductions round their results (fp32 of fp32 inputs: a few ulps)
    assert 0 < rep.op("r").local.rel_l2 < (1e-6 if dtype == "fp32" else 1e-2)
    assert rep.output_error.finite


# ---- analog arrays --------------------------------------------------------------------------

def analog_design(tmp_path, noise=0.06, adc_bits=9, dac_bits=7, program_noise=0.02, name="a"):
    unit = (f"  matrix fp32 x fp32 -> fp32 : 64 mac/cycle, analog = true, dac = {dac_bits}, adc = {adc_bits}, "
            f"noise = {noise}, program_noise = {program_noise}, array = 32 x 32")
    p = tmp_path / f"{name}.arch"
    p.write_text(MACHINE.format(units=unit) + RUNS)
    return p


def test_analog_error_grows_with_output_noise(tmp_path, reports):
    errs = [accuracy(analog_design(tmp_path, noise=n, name=f"n{i}"), "block", overrides=["dtype=fp32"])
            .output_error.rel_l2 for i, n in enumerate((0.01, 0.06, 0.3))]
    assert errs == sorted(errs) and len(set(errs)) == 3, errs
    assert errs[0] > reports["fp32"].output_error.rel_l2  # an analog array is noisier than fp32


def test_analog_error_shrinks_with_adc_bits(tmp_path):
    errs = []
    for bits in (4, 6, 9):
        rep = accuracy(analog_design(tmp_path, noise=0, program_noise=0, dac_bits=8, adc_bits=bits, name=f"b{bits}"),
                       "gemm")
        assert rep.ops[0].analog and rep.ops[0].format == "fp32"
        errs.append(rep.output_error.rel_l2)
    assert errs == sorted(errs, reverse=True) and len(set(errs)) == 3, errs


def test_analog_is_seeded(tmp_path):
    p = analog_design(tmp_path)
    a, b = (accuracy(p, "block", seed=7, overrides=["dtype=fp32"]) for _ in range(2))
    c = accuracy(p, "block", seed=8, overrides=["dtype=fp32"])
    assert a.output_error == b.output_error
    np.testing.assert_array_equal(a.trace.declared[a.trace.output_id], b.trace.declared[b.trace.output_id])
    assert c.output_error.rel_l2 != a.output_error.rel_l2


def test_analog_without_noise_is_nearly_exact(tmp_path):
    # an exact case: integer inputs whose row maxima are 3 pass a 3-bit DAC (levels -3..3)
    # unchanged; weights |w| <= 3 normalise to k/3; every tile's sum is a multiple of 1/9, which
    # a 12-bit ADC over +-2047/9 (step 1/9) reads exactly: only float64 rounding remains
    rng = np.random.default_rng(0)
    x = rng.integers(-3, 4, (8, 100)).astype(float)
    x[:, 0] = 3
    w = rng.integers(-3, 4, (100, 12)).astype(float)
    w[0, 0] = -3
    exact = Analog(dac_bits=3, adc_bits=12, out_noise=0.0, program_noise=0.0, bound=2047 / 9, rows=32, cols=32)
    assert rel(analog_matmul(x, w, exact, np.random.default_rng(1)), x @ w) < 1e-14
    # random operands, no noise, 24-bit converters: close to float64
    x, w = rng.standard_normal((8, 100)), rng.standard_normal((100, 12))
    fine = Analog(dac_bits=24, adc_bits=24, out_noise=0.0, program_noise=0.0, bound=12.0, rows=32, cols=32)
    assert rel(analog_matmul(x, w, fine, np.random.default_rng(1)), x @ w) < 1e-5
    rep = accuracy(analog_design(tmp_path, noise=0, program_noise=0, dac_bits=24, adc_bits=24), "gemm")
    assert rep.output_error.rel_l2 < 1e-5


def test_analog_converters():
    assert len(np.unique(dac(np.linspace(-1, 1, 1001), 3))) == 7  # 3 levels each side and zero
    y = adc(np.array([-100.0, -0.3, 0.0, 0.31, 100.0]), 4, 2.0)  # step 2/7
    np.testing.assert_allclose(y, [-2.0, -2 / 7, 0.0, 2 / 7, 2.0])


# ---- the command ----------------------------------------------------------------------------

def test_cli_table():
    r = run_cli("accuracy", H100, "--run", "gpt_train", "--seed", "1")
    assert r.code == 0, r
    assert "rel L2" in r.stdout and "transformer.mlp.h" in r.stdout and "output      cross_entropy" in r.stdout
    assert r.stderr == ""


def test_cli_json_and_precision_override():
    r = run_cli("accuracy", H100, "--run", "gpt_train", "--seed", "1", "--json",
                "--precision", "transformer.mlp.*=fp8_e4m3")
    assert r.code == 0, r
    d = json.loads(r.stdout)
    assert d["schema"] == "archc.accuracy/1" and d["seed"] == 1
    p = d["params"]
    # the sample's `accuracy` statement names the reduced instance
    assert (p["layers"], p["hidden"], p["heads"], p["seq"], p["vocab"]) == (2, 128, 4, 64, 512)
    assert d["precision"]["overrides"][0]["format"] == "fp8_e4m3"
    for op in d["ops"]:
        want = "fp8_e4m3" if op["name"].startswith("transformer.mlp.") else "bf16"
        assert op["format"] == want, op
    assert d["output"]["rel_l2"] > 0 and math.isfinite(d["output"]["rel_l2"])


def test_cli_bad_precision():
    r = run_cli("accuracy", H100, "--run", "gpt_train", "--precision", "transformer.mlp.*=fp9")
    assert r.code == 1, r
    assert "<--precision>:1:19: error: unknown format 'fp9'" in r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""


def test_cli_bad_thread_count():
    r = run_cli("accuracy", H100, "--run", "gpt_train", env={"ARCHC_THREADS": "two"})
    assert r.code == 1, r
    assert "archc: error: ARCHC_THREADS='two': a thread count is a whole number >= 1" in r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
