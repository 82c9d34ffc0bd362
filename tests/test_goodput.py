"""Failures and goodput (runtime/goodput.py): components in series, Young/Daly's interval and the
goodput against their closed forms worked by hand, the checkpoint's size from the model state,
the Monte Carlo's mean against the analytic expectation, the language's errors, the report."""
from __future__ import annotations

import json
import math
import time

import pytest

from archc.api import check
from archc.dsl.diagnostics import ArchcError
from archc.runtime import goodput as G
from archc.runtime.report import summary

from conftest import EASY_MACHINE

H = 3600.0

# 4 nodes of 8 chips; each chip MTBF 50,000 h, its memory 2,000 FIT (MTBF 500,000 h); each node
# 10,000 h; each node's link into the cluster 100,000 h; a storage of 1 TB/s.
RELIABLE = """
import std.formats
import std.models
tile t {
  clock 1 GHz
  sram 1 MiB, bandwidth = 100 B/cycle
  matrix bf16 x bf16 -> fp32 : 1000 mac/cycle
  vector fp32 : 100 lanes
}
chip c {
  tiles 10 of t
  noc crossbar, bandwidth = 100 TB/s
  memory hbm, 100 GB, bandwidth = 1 TB/s
  reliability chip, mtbf = 50000 h
  reliability memory, fit = 2000, source = "a test figure"
}
system node {
  chips 8 of c; network switch, bandwidth = 100 GB/s, latency = 1 us
  reliability node, mtbf = 10000 h SPARES
}
system cluster {
  nodes 4 of node; network fat_tree, bandwidth = 50 GB/s, latency = 2 us
  reliability link, mtbf = 100000 h
  storage lustre, bandwidth = 1 TB/s
}
run train(dp = 32) {
  model gpt(2, 256, 4, 1024, 128, 1000, 2)
  on cluster
  mode train
  strategy data, chips = dp, micro_batch = 2, global_batch = 2 * dp
  precision amp
  CHECKPOINT
  train tokens = 2048 * 128 * 1000
}
"""


def design(tmp_path, checkpoint="checkpoint every = auto, to = lustre, restart = 5 min", spares="", text=RELIABLE):
    p = tmp_path / "d.arch"
    p.write_text(text.replace("CHECKPOINT", checkpoint).replace("SPARES", spares), encoding="utf-8")
    return check(p)


def test_mtti_of_components_in_series(tmp_path):
    run = design(tmp_path).run("train")
    comps = {(c.where, c.kind): c.count for c in G.components(run)}
    # 32 chips and 32 memories, 4 nodes, 4 links into the cluster's network
    assert comps == {("c", "chip"): 32, ("c", "memory"): 32, ("node", "node"): 4, ("cluster", "link"): 4}
    # per hour: 32/50,000 + 32 x 2,000e-9 + 4/10,000 + 4/100,000 = 6.4e-4 + 6.4e-5 + 4e-4 + 4e-5 = 1.144e-3
    m = G.mtti([c.count * c.rate_per_s for c in G.components(run)])
    assert m / H == pytest.approx(1 / 1.144e-3, rel=1e-12)  # 874.1 h
    g = G.analyse(run, 1.0, "analytic")
    assert g["mtti_s"] / H == pytest.approx(874.125874, rel=1e-6)
    # a run on half the machine: 16 chips, 2 nodes, 2 links: half the rate
    half = design(tmp_path, text=RELIABLE.replace("dp = 32", "dp = 16")).run("train")
    assert G.analyse(half, 1.0, "analytic")["mtti_s"] / H == pytest.approx(2 * 874.125874, rel=1e-6)


def test_young_and_daly_against_the_closed_form():
    delta, m = 60.0, 3600.0
    # Young: sqrt(2 x 60 x 3600) = sqrt(432,000) = 657.267 s
    assert G.young(delta, m) == pytest.approx(657.2671, rel=1e-6)
    # Daly: x = 60 / 7200 = 1/120; 657.267 x (1 + sqrt(1/120)/3 + 1/1080) - 60
    #     = 657.2671 x 1.0313549 - 60 = 677.8756 - 60 = 617.8756 s
    assert G.daly(delta, m) == pytest.approx(617.8756, rel=1e-6)
    # past delta = 2M Daly takes tau = M
    assert G.daly(8000.0, 3600.0) == 3600.0
    # goodput with R = 300 s: tau / (M e^(R/M) (e^((tau + delta)/M) - 1))
    #   e^(300/3600) = 1.0869040, e^(677.8756/3600) = 1.2071942: 3600 x 1.0869040 x 0.2071942 = 810.72 s
    #   617.8756 / 810.72 = 0.76213
    assert G.goodput(617.8756, delta, m, 300.0) == pytest.approx(0.76213, rel=1e-4)
    # no failures: the checkpoint's cost alone, tau / (tau + delta)
    assert G.goodput(600.0, 60.0, math.inf, 300.0) == pytest.approx(600 / 660)
    # Daly's tau maximises the goodput (to first order): neighbours do no better
    t = G.daly(delta, m)
    assert G.goodput(t, delta, m, 0) >= max(G.goodput(0.8 * t, delta, m, 0), G.goodput(1.25 * t, delta, m, 0))


def test_time_to_train_sums_its_intervals():
    # 10 h of work in intervals of 1 h (+ 0.1 h checkpoints), M = 5 h, R = 0.2 h:
    # each interval 5 e^0.04 (e^0.22 - 1) = 5 x 1.0408108 x 0.2460767 = 1.280597 h
    seg = 5 * math.exp(0.04) * math.expm1(0.22)
    assert G.wall_time(10 * H, H, 0.1 * H, 5 * H, 0.2 * H) / H == pytest.approx(10 * seg, rel=1e-12)
    # 10.5 h: a last half interval, 5 e^0.04 (e^0.12 - 1)
    last = 5 * math.exp(0.04) * math.expm1(0.12)
    assert G.wall_time(10.5 * H, H, 0.1 * H, 5 * H, 0.2 * H) / H == pytest.approx(10 * seg + last, rel=1e-12)


def test_checkpoint_size_from_the_model_state(tmp_path):
    run = design(tmp_path).run("train")
    params = run.graph.params_elems
    # amp: 2 B bf16 weights + 4 B fp32 master + 8 B Adam moments = 14 B (not the 4 B gradients)
    g = G.analyse(run, 0.5, "analytic")
    ck = g["checkpoint"]
    assert ck["bytes_per_param"] == 14
    assert ck["bytes"] == 14 * params
    assert ck["write_s"] == pytest.approx(14 * params / 1e12)
    assert (g["interval"], g["restart"]) == ("derived: Daly 2006", "declared")
    assert g["interval_s"] == pytest.approx(G.daly(ck["write_s"], g["mtti_s"]))
    assert g["restart_s"] == 300.0
    # 2048 x 128 x 1000 tokens at 2 sequences of 128 tokens per replica, dp 32: 64 x 128 a step -> 32,000 steps
    assert g["train"]["steps"] == pytest.approx(32000)
    assert g["train"]["useful_s"] == pytest.approx(16000)
    assert g["train"]["interruptions"] == pytest.approx(g["train"]["wall_s"] / g["mtti_s"])
    # to peers: each chip's share (all of it under data parallelism) over its 50/8 GB/s share of the node link
    peers = G.analyse(design(tmp_path, "checkpoint to = peers").run("train"), 0.5, "analytic")
    assert peers["checkpoint"]["bytes"] == pytest.approx(14 * params)
    assert peers["checkpoint"]["bandwidth"] == pytest.approx(50e9 / 8)
    assert peers["restart"].startswith("derived") and peers["restart_s"] == peers["checkpoint"]["write_s"]


def test_a_declared_interval_and_spare_nodes(tmp_path):
    run = design(tmp_path, "checkpoint every = 2 h, to = lustre, restart = 10 min",
                 ", spares = 2, repair = 24 h").run("train")
    g = G.analyse(run, 0.5, "analytic")
    assert (g["interval_s"], g["interval"]) == (7200.0, "declared")
    mu = 24 * H / g["mtti_s"]  # nodes in repair: Poisson of mean repair / MTTI
    p = 1 - math.exp(-mu) * (1 + mu)  # two or more away
    assert g["spare_nodes"]["p_wait"] == pytest.approx(p)
    assert g["restart_effective_s"] == pytest.approx(600 + p * 24 * H)


@pytest.mark.parametrize("spares, repair", [(0, 0.0), (0, 1800.0), (50, 1800.0)])
def test_monte_carlo_mean_within_its_confidence_interval(spares, repair):
    # M = 2 h, delta = 5 min, R = 10 min, 100 h of work; with no spare a failure also waits the
    # repair (R + repair exactly), with 50 spares practically never (R)
    m, delta, r, useful = 2 * H, 300.0, 600.0, 100 * H
    tau = G.daly(delta, m)
    pw = G.p_wait(m, spares, repair)
    assert pw == (1.0 if repair and not spares else pytest.approx(0.0, abs=1e-12))
    want = G.wall_time(useful, tau, delta, m, r + pw * repair)
    for seed in range(5):
        t = G.monte_carlo(useful, G.Inputs(m, delta, tau, r, spares, repair), trials=2000, seed=seed)
        s = t.summary(seed)
        # the 99.9% interval of the mean: 3.29 standard errors
        assert abs(s["mean_s"] - want) <= 3.29 / G.Z95 * s["ci95_s"], (seed, s["mean_s"], want)
        # failures come at 1/M over the whole wall time: E[N] = E[W] / M
        assert s["interruptions_mean"] == pytest.approx(want / m, rel=0.03)


def test_monte_carlo_without_failures_is_the_work_and_its_checkpoints():
    t = G.monte_carlo(10.5 * H, G.Inputs(math.inf, 60.0, H, 0.0), trials=3, seed=1)
    assert list(t.wall_s) == [10.5 * H + 11 * 60.0] * 3 and not t.interruptions.any()


def test_monte_carlo_of_a_54_day_run_is_fast():
    # ~500 failures in 54 days (M = 2.6 h), 1,000 runs
    m, delta = 2.6 * H, 120.0
    x = G.Inputs(m, delta, G.daly(delta, m), 600.0)
    useful = 0.9 * 54 * 86400
    t0 = time.perf_counter()
    t = G.monte_carlo(useful, x, trials=1000, seed=0)
    assert time.perf_counter() - t0 < 1.0
    assert 400 < t.interruptions.mean() < 600


def test_the_report_section(tmp_path):
    run = design(tmp_path).run("train")
    from archc.runtime.pipeline import run_analytic
    rep = run_analytic(run)
    g = rep.goodput
    assert g["train"]["useful_s"] == pytest.approx(32000 * rep.latency_s)
    text = rep.to_text()
    assert "failures and goodput" in text and "MTTI          36.4 days (0.0275 interruptions a day)" in text
    assert "(a test figure)" in text and "(declared)" in text
    assert "interval" in text and "Daly 2006" in text
    d = json.loads(rep.to_json())
    assert d["goodput"]["mtti_s"] == pytest.approx(874.125874 * H, rel=1e-6)
    assert "goodput MTTI" in summary(rep)
    # the event level's Monte Carlo, from the same step time (its seed in the report)
    ev = G.analyse(run, rep.latency_s, "event")
    mc = ev["monte_carlo"]
    assert mc["seed"] == G.MC_SEED and mc["trials"] == G.MC_TRIALS
    # 20 s of work against a 36-day MTTI: hardly a trial sees a failure, the expectation ~1e-4 above the work
    assert mc["mean_s"] == pytest.approx(ev["train"]["wall_s"], rel=1e-3)


def test_no_section_for_inference_or_machines_without_figures(tmp_path):
    p = tmp_path / "e.arch"
    p.write_text(EASY_MACHINE + "\nrun r { model mm(64, 64, 64); on c; precision fp16 }\n", encoding="utf-8")
    assert G.analyse(check(p).run("r"), 1.0, "analytic") is None
    infer = RELIABLE.replace("mode train", "mode infer").replace("CHECKPOINT", "").replace(
        "train tokens = 2048 * 128 * 1000", "")
    assert G.analyse(design(tmp_path, text=infer).run("train"), 1.0, "analytic") is None


@pytest.mark.parametrize("old, new, message", [
    ("mtbf = 50000 h", "mtbf = 50000 GB", "a mean time between failures must be a time (ns), found a size (MiB)"),
    ("reliability chip, mtbf = 50000 h", "reliability chip, mtbf = 50000 h, fit = 3",
     "'reliability chip' needs one of `mtbf = TIME` (mean time between failures) or `fit = N` "
     "(failures per 1e9 device-hours)"),
    ("reliability chip,", "reliability chipp,", "a component of a chip must be one of chip, memory, link, tile; "
                                               "found 'chipp'; did you mean 'chip'?"),
    ("reliability chip, mtbf = 50000 h", "reliability chip, mtbf = 50000 h, spares = 2",
     "'spares' are spare tiles on a chip (they absorb a tile's failure) or spare nodes in a system; not spare chips"),
    ("fit = 2000", "fit = 0", "a FIT rate (failures per 1e9 device-hours) must be positive, found 0"),
    ("storage lustre, bandwidth = 1 TB/s", "storage lustre, bandwidth = 1 GHz",
     "a storage bandwidth must be a bandwidth (GB/s), found a frequency (GHz)"),
])
def test_machine_errors(tmp_path, old, new, message):
    with pytest.raises(ArchcError) as e:
        design(tmp_path, text=RELIABLE.replace(old, new, 1))
    assert message in str(e.value)
    assert ":" in str(e.value).splitlines()[0]  # FILE:LINE:COL


@pytest.mark.parametrize("checkpoint, message", [
    ("checkpoint to = nowhere", "'to' names a storage of 'cluster' or `peers` (the memory of peer chips); found "
                                "nowhere; it has lustre"),
    ("checkpoint every = 5 GB", "a checkpoint interval must be a time (ns), found a size (MiB)"),
    ("checkpoint restart = -1 s", "a restart time must be ≥ 0, found -1 s"),
    ("checkpoint often = 1 h", "'checkpoint' has no option 'often'; it takes every, to, restart"),
])
def test_run_errors(tmp_path, checkpoint, message):
    with pytest.raises(ArchcError) as e:
        design(tmp_path, checkpoint)
    assert message in str(e.value)


def test_train_needs_tokens_and_training(tmp_path):
    with pytest.raises(ArchcError) as e:
        design(tmp_path, text=RELIABLE.replace("mode train", "mode infer"))
    assert "'checkpoint' saves a training run's state; this run does not train (`mode train`)" in str(e.value)
    bad = RELIABLE.replace("train tokens = 2048 * 128 * 1000", "train tokens = 2048, steps = 3")
    with pytest.raises(ArchcError) as e:
        design(tmp_path, text=bad)
    assert "'train' takes one of `tokens = N`, `samples = N` or `steps = N`" in str(e.value)
    steps = design(tmp_path, text=RELIABLE.replace("train tokens = 2048 * 128 * 1000", "train steps = 500"))
    assert steps.run("train").train.steps == 500
    samples = design(tmp_path, text=RELIABLE.replace("train tokens = 2048 * 128 * 1000", "train samples = 6400"))
    assert samples.run("train").train.steps == 100  # 64 samples a step


def test_spare_tiles_absorb_tile_failures(tmp_path):
    # 10 tiles per chip at 1e6 FIT (MTBF 1,000 h each): with 4 spares per chip they stop nothing;
    # without spares each of the 32 x 10 tiles stops the job: 320 / 1,000 h more
    wafer = RELIABLE.replace("  reliability chip, mtbf = 50000 h\n",
                             "  reliability chip, mtbf = 50000 h\n  reliability tile, fit = 1e6, spares = 4\n")
    run = design(tmp_path, text=wafer).run("train")
    tile = next(c for c in G.components(run) if c.kind == "tile")
    assert (tile.count, tile.stops_job, tile.spares) == (320, False, 4)
    g = G.analyse(run, 0.5, "analytic")
    assert g["mtti_s"] / H == pytest.approx(874.125874, rel=1e-6)
    # over the run's wall time W a chip sees Poisson(10 W / 1,000 h) tile failures: P(> 4) for some chip
    lam = 10 * g["train"]["wall_s"] / (1000 * H)
    p_chip = 1 - sum(math.exp(-lam) * lam ** k / math.factorial(k) for k in range(5))
    note = next(n for n in g["notes"] if n.startswith("expected"))
    assert f"{1 - (1 - p_chip) ** 32:.3g} chance" in note
    bare = design(tmp_path, text=wafer.replace(", spares = 4", "")).run("train")
    assert G.analyse(bare, 0.5, "analytic")["mtti_s"] / H == pytest.approx(1 / (1.144e-3 + 0.32), rel=1e-9)
