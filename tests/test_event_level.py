"""The event level (runtime/event_level.py, `archc run --level event`) against the analytic
level and hand calculations. Machine: tests/test_analytic.py's (10 tiles, 20 TFLOP/s per chip,
HBM 1 TB/s, 1 us per op), 4 chips on a switch at 100 GB/s per chip and direction, 1 us per step."""
from __future__ import annotations

import json

import numpy as np
import pytest

from archc import __version__
from archc.api import check
from archc.dsl.diagnostics import ArchcError
from archc.runtime import event_level as el
from archc.runtime.pipeline import simulate_run
from archc.runtime.events import TaskGraph, simulate
from archc.runtime.pipeline import run_analytic, run_event

from conftest import EASY_MACHINE, SAMPLES, run_cli

pytestmark = pytest.mark.build

# the easy machine of the analytic tests, and systems whose links are free, or shared
MACHINE = EASY_MACHINE + """
system fastnode { chips 4 of c; network switch, bandwidth = 1000000 TB/s, latency = 1 ps }
system pair { chips 2 of c; network switch, bandwidth = 100 GB/s, latency = 1 us }
system pods { nodes 2 of pair; network switch, bandwidth = 10 GB/s, latency = 2 us }
"""


def _both(tmp_path, body: str, name: str = "r"):
    f = tmp_path / "m.arch"
    f.write_text(MACHINE + body)
    run = check(f).run(name)
    return run_analytic(run, __version__), run_event(run, __version__), run


def test_single_chip_gemm_agrees_with_analytic(tmp_path):
    a, e, _ = _both(tmp_path, "run r { model mm(1000, 1000, 1000); on c; precision fp16 }")
    assert e.level == "event"
    assert e.latency_s == pytest.approx(a.latency_s, rel=1e-12)  # 0.1 ms + 1 us
    assert e.ops[0].time_s == pytest.approx(a.ops[0].time_s, rel=1e-12)
    assert any(n.startswith("event level: critical path") and "matmul" in n for n in e.notes)


def test_data_parallel_training_step_agrees_with_analytic(tmp_path):
    # 2 micro-batches of forward + backward, then the ring all-reduce of the fp32 gradients
    # (2(p-1)/p * S / B + 2(p-1) * latency, S = 4 B x 1024^2 x 2 layers), then Adam
    a, e, _ = _both(tmp_path, """run r { model stack(8, 1024, 2); on node; mode train
      strategy data, chips = 4, micro_batch = 8, global_batch = 64; precision fp16 }""")
    assert e.latency_s == pytest.approx(a.latency_s, rel=1e-9)
    S = 4 * 1024 * 1024 * 2
    ring = 2 * 3 / 4 * S / 100e9 + 2 * 3 * 1e-6
    assert e.breakdown["gradient exchange"] == pytest.approx(ring + 1e-6, rel=1e-9)  # + the launch
    assert a.breakdown["gradient exchange"] == pytest.approx(ring + 1e-6, rel=1e-9)
    assert any("most loaded links" in n for n in e.notes)


def _last_backward(run) -> float:
    """The event level's busy time of the last micro-batch's backward (mb 1 of 2)."""
    plan, R, b, r = simulate_run(run, __version__)
    bwd = sum(r.end[t] - r.start[t] for t in range(r.start.size)
              if r.kind[t] == 0 and b.names[t].endswith("backward mb 1"))
    assert bwd > 0
    return bwd


def test_overlapped_gradient_buckets_wait_for_their_gradients(tmp_path):
    """overlap_dp, 4 equal layers, buckets of one layer's gradients (4 MiB of fp32 each > the
    4,000 kB bucket): the backward completes them layer by layer (b apart) and the buckets run
    one after another (c each). Each all-reduce is longer than a layer's backward here (c > b),
    so the last ends L c after the first starts: exposed = L c - (L - 1) b. Both levels."""
    body = """run r {{ model stack(8, 1024, 4); on node; mode train
      strategy data, chips = 4, micro_batch = 8, global_batch = 64, overlap_dp = {}; precision fp16 }}"""
    a0, e0, _ = _both(tmp_path, body.format("false"))
    a1, e1, run = _both(tmp_path, body.format("true, bucket = 4000 kB"))
    b = _last_backward(run) / 4  # one layer's backward (the layers are alike)
    S = 4 * 1024 * 1024  # one layer's gradients, 4 B each
    c = 2 * 3 / 4 * S / 100e9 + 2 * 3 * 1e-6 + 1e-6  # ring all-reduce + launch
    assert c > b
    # not overlapped: one all-reduce of all 4 layers' gradients after the backward
    assert e0.breakdown["gradient exchange"] == pytest.approx(2 * 3 / 4 * 4 * S / 100e9 + 2 * 3 * 1e-6 + 1e-6, rel=1e-9)
    assert a1.breakdown["gradient exchange"] == pytest.approx(4 * c - 3 * b, rel=1e-9)
    assert e1.breakdown["gradient exchange"] == pytest.approx(4 * c - 3 * b, rel=1e-9)
    assert e1.latency_s == pytest.approx(a1.latency_s, rel=1e-9)
    # the default bucket (25 MiB, DDP's) holds all 16.8 MB: it can start only after the whole
    # backward, exactly as without overlap (a model this small cannot hide its exchange)
    _, e_one, _ = _both(tmp_path, body.format("true"))
    assert e_one.latency_s == pytest.approx(e0.latency_s, rel=1e-12)


def test_overlapped_gradient_buckets_hide_under_a_slower_backward(tmp_path):
    """On a near-free network each bucket's all-reduce (its 1 us launch) is shorter than a
    layer's backward (c < b): every bucket but the last hides; exposed = the last one's c."""
    body = """run r { model stack(8, 1024, 4); on fastnode; mode train
      strategy data, chips = 4, micro_batch = 8, global_batch = 64, overlap_dp = true, bucket = 4000 kB
      precision fp16 }"""
    a, e, run = _both(tmp_path, body)
    b = _last_backward(run) / 4
    c = 2 * 3 / 4 * 4 * 1024 * 1024 / 1e18 + 2 * 3 * 1e-12 + 1e-6
    assert c < b
    assert a.breakdown["gradient exchange"] == pytest.approx(c, rel=1e-9)
    assert e.breakdown["gradient exchange"] == pytest.approx(c, rel=1e-9)


def test_bucket_needs_overlap(tmp_path):
    f = tmp_path / "m.arch"
    f.write_text(MACHINE + """run r { model stack(8, 1024, 4); on node; mode train
      strategy data, chips = 4, micro_batch = 8, bucket = 4 MiB; precision fp16 }""")
    with pytest.raises(ArchcError) as ei:
        check(f).run("r")
    assert "'bucket' sizes the gradient all-reduce buckets of overlap_dp = true" in str(ei.value)


@pytest.mark.parametrize("pp,m", [(2, 4), (4, 4), (4, 16)])
def test_pipeline_bubble_emerges(tmp_path, pp, m):
    # p equal stages, m micro-batches, transfers ~free: the step is (m + p - 1) stage times,
    # (p - 1) of them idle on every stage: the bubble is (p-1)/(m+p-1) of the step
    a, e, _ = _both(tmp_path, f"""run r {{ model stack(4, 512, 8); on fastnode
      strategy parallel, pp = {pp}, micro_batch = 4, global_batch = {4 * m}; precision fp16 }}""")
    want = (pp - 1) / (m + pp - 1)
    assert e.breakdown["pipeline bubble"] / e.latency_s == pytest.approx(want, rel=1e-3)
    assert e.latency_s == pytest.approx(a.latency_s, rel=1e-3)


def test_pipeline_1f1b_training_bubble(tmp_path):
    # training, 1F1B: (m + p - 1) x (t_forward + t_backward) with free transfers
    pp, m = 4, 8
    a, e, _ = _both(tmp_path, f"""run r {{ model stack(4, 512, 8); on fastnode; mode train
      strategy parallel, pp = {pp}, micro_batch = 4, global_batch = {4 * m}; precision fp16 }}""")
    opt = e.breakdown["optimizer"]
    assert (e.latency_s - opt) == pytest.approx(a.latency_s - a.breakdown["optimizer"], rel=1e-3)
    assert e.breakdown["pipeline bubble"] / (e.latency_s - opt) == pytest.approx((pp - 1) / (m + pp - 1), rel=1e-3)


def _stage0_order(tmp_path, schedule: str, pp: int, m: int):
    """A 4-stage training run with `schedule`: its reports and, from its Chrome trace, the
    kinds ("forward"/"backward") of stage 0's micro-batch tasks in start order."""
    f = tmp_path / "m.arch"
    f.write_text(MACHINE + f"""run r {{ model stack(4, 512, 8); on fastnode; mode train
      strategy parallel, pp = {pp}, micro_batch = 4, global_batch = {4 * m}, schedule = {schedule}
      precision fp16 }}""")
    run = check(f).run("r")
    trace = tmp_path / f"{schedule}.json"
    e = run_event(run, __version__, trace=trace)
    ev = json.loads(trace.read_text())["traceEvents"]
    names = {(x["pid"], x["tid"]): x["args"]["name"] for x in ev if x.get("ph") == "M" and x["name"] == "thread_name"}
    order = []  # (kind, micro-batch) in start order; a micro-batch's op tasks are named "OP forward mb I"
    for x in sorted((x for x in ev if x.get("ph") == "X"), key=lambda x: (x["ts"], x["args"]["task"])):
        words = x["name"].split()
        if names.get((x["pid"], x["tid"]), "").startswith("stage 0") and words[-3:-1] in (["forward", "mb"], ["backward", "mb"]):
            if (words[-3], words[-1]) not in order:
                order.append((words[-3], words[-1]))
    assert len(order) == 2 * m
    return run_analytic(run, __version__), e, [k for k, _ in order]


def test_pipeline_gpipe_training_bubble(tmp_path):
    """GPipe (Huang et al. 2019): every forward, then every backward, on each stage. With
    equal stages and free transfers the step is (m + p - 1)(t_f + t_b): the same
    (p-1)/(m+p-1) bubble as 1F1B; GPipe holds all m micro-batches' activations, 1F1B at most p."""
    pp, m = 4, 8
    a, e, order = _stage0_order(tmp_path, "gpipe", pp, m)
    a1, e1, order1 = _stage0_order(tmp_path, "one_f_one_b", pp, m)
    opt = e.breakdown["optimizer"]
    assert e.breakdown["pipeline bubble"] / (e.latency_s - opt) == pytest.approx((pp - 1) / (m + pp - 1), rel=1e-3)
    assert e.latency_s == pytest.approx(e1.latency_s, rel=1e-3)
    assert e.latency_s - opt == pytest.approx(a.latency_s - a.breakdown["optimizer"], rel=1e-3)
    # stage 0's order: GPipe m forwards then m backwards; 1F1B p - 1 warm-up forwards, then
    # alternating, then the cool-down backwards
    assert order == ["forward"] * m + ["backward"] * m
    assert order1 == ["forward"] * (pp - 1) + ["forward", "backward"] * (m - pp + 1) + ["backward"] * (pp - 1)
    assert a.memory["activations"] == pytest.approx(a1.memory["activations"] * m / pp, rel=1e-12)
    assert "schedule=gpipe" in a.to_text() and "schedule=gpipe" not in a1.to_text()


@pytest.mark.parametrize("strategy, message", [
    ("parallel, pp = 2, region_rows = 4", "'region_rows' lays out the regions of a spatial run; this run's strategy is parallel"),
    ("data, chips = 2, placement = raster", "'placement' lays out the regions of a spatial run; this run's strategy is data"),
    ("spatial, region_rows = 2", "region_rows = 2 but the chip 'c' has 1 row of tiles"),
    ("spatial, placement = diagonal", "the placement must be one of adjacent, raster, serpentine; found 'diagonal'"),
    ("spatial, region_rows = -1", "'region_rows'"),
])
def test_layout_options_are_checked(tmp_path, strategy, message):
    f = tmp_path / "m.arch"
    f.write_text(MACHINE + f"run r {{ model stack(4, 512, 8); on fastnode; strategy {strategy}; precision fp16 }}")
    r = run_cli("check", f)
    assert r.code != 0 and f"{f}:" in r.stderr and "error: " + message in r.stderr, r.stderr


def test_gpipe_has_no_interleaved_schedule(tmp_path):
    f = tmp_path / "m.arch"
    f.write_text(MACHINE + """run r { model stack(4, 512, 8); on fastnode; mode train
      strategy parallel, pp = 2, interleave = 2, micro_batch = 4, global_batch = 16, schedule = gpipe
      precision fp16 }""")
    r = run_cli("check", f)
    assert r.returncode != 0 and "error: the interleaved schedule is 1F1B's" in r.stderr
    f.write_text(MACHINE + """run r { model stack(4, 512, 8); on fastnode
      strategy parallel, pp = 2, schedule = zigzag; precision fp16 }""")
    r = run_cli("check", f)
    assert r.returncode != 0 and "zigzag" in r.stderr and "one_f_one_b, gpipe" in r.stderr


@pytest.mark.parametrize("pp,m,v", [(4, 8, 2), (4, 8, 4), (2, 4, 2)])
def test_pipeline_interleaved_bubble(tmp_path, pp, m, v):
    """Interleaved 1F1B with v chunks per stage (stack(8 layers): 8 / (pp v) layers a chunk),
    free transfers: the bubble shrinks by v, (p - 1) (t_f + t_b) / v on an m (t_f + t_b)
    step (Narayanan et al. 2021, eq. 2): the schedule reproduces it."""
    a, e, _ = _both(tmp_path, f"""run r {{ model stack(4, 512, 8); on fastnode; mode train
      strategy parallel, pp = {pp}, interleave = {v}, micro_batch = 4, global_batch = {4 * m}; precision fp16 }}""")
    a1, e1, _ = _both(tmp_path, f"""run r {{ model stack(4, 512, 8); on fastnode; mode train
      strategy parallel, pp = {pp}, micro_batch = 4, global_batch = {4 * m}; precision fp16 }}""")
    opt = e.breakdown["optimizer"]
    work = e1.latency_s - opt - e1.breakdown["pipeline bubble"]  # m (t_f + t_b)
    t = work / m
    assert (e.latency_s - opt) == pytest.approx(work + (pp - 1) * t / v, rel=2e-3)
    assert (e.latency_s - opt) == pytest.approx(a.latency_s - a.breakdown["optimizer"], rel=2e-3)
    assert not any("simulated as plain 1F1B" in n for n in e.notes)


def _allreduce_time(tmp_path, system: str, S: float, p: int, stride: int, groups: list[int]) -> float:
    f = tmp_path / "m.arch"
    f.write_text(MACHINE + f"run r {{ model mm(8, 8, 8); on {system}; precision fp16 }}")
    machine = check(f).run("r").machine
    g = TaskGraph()
    net = el._Net(g, machine)
    prev = None
    for factor, lat, ptr, links, _ in net.steps(1, p, stride, groups):
        ids = g.add_flows(S * factor, ptr, links, latency=lat)
        if prev is not None:
            for t in ids:
                g.add_dep(prev, int(t))
        prev = g.add_delay(0.0, after=[int(t) for t in ids])
    return simulate(g).makespan


def test_ring_allreduce_by_hand(tmp_path):
    # 4 chips on a switch, 100 GB/s, 1 us: 2(p-1)/p * S/B + 2(p-1) * latency
    S = 1e9
    t = _allreduce_time(tmp_path, "node", S, 4, 1, [0])
    assert t == pytest.approx(2 * 3 / 4 * S / 100e9 + 6e-6, rel=1e-12)


def test_two_groups_through_one_link_take_twice_as_long(tmp_path):
    # 2 nodes of 2 chips; all-reduce between the nodes (p = 2, stride 2): group {0, 2} alone
    # has node 0's 10 GB/s uplink to itself: S / B + 2 x 2 us. Groups {0, 2} and {1, 3} share
    # both uplinks: the bytes take twice as long. The analytic model always assumes the
    # sharing (each chip gets B / 2 chips per node), so it equals the contended case.
    S, B, lat = 1e8, 10e9, 2e-6
    one = _allreduce_time(tmp_path, "pods", S, 2, 2, [0])
    two = _allreduce_time(tmp_path, "pods", S, 2, 2, [0, 1])
    assert one == pytest.approx(S / B + 2 * lat, rel=1e-12)
    assert two - 2 * lat == pytest.approx(2 * (one - 2 * lat), rel=1e-12)
    analytic = S / (B / 2) + 2 * lat
    assert two == pytest.approx(analytic, rel=1e-12)


def test_private_collective_is_one_task_of_its_flows_time(tmp_path, monkeypatch):
    """Tensor parallelism inside one node (pp = 2, one pair per stage): each op's all-reduce
    runs on its pair's links, which nothing else uses; it becomes one task whose time is what
    its flows take (simulated with the flows: the same step time, to rounding)."""
    f = tmp_path / "m.arch"
    f.write_text(MACHINE + """run r { model stack(8, 1024, 4); on pods; mode train
      strategy parallel, tp = 2, pp = 2, micro_batch = 8, global_batch = 32; precision fp16 }""")
    run = check(f).run("r")
    plan, R, b, r = simulate_run(run, __version__)
    assert b.collapsed > 0
    # private: both stages' tp all-reduces (and the stage-to-stage sends, the only traffic
    # between the nodes; but they are not chained to one stage's ops, so stay flows)
    assert {(1, 2, 1, 0), (1, 2, 1, 1)} <= b._private
    assert any("use links no other traffic shares" in n for n in el.summary_notes(b, r))
    monkeypatch.setattr(el._Builder, "find_private", lambda self, keys: None)
    plan2, R2, b2, r2 = simulate_run(run, __version__)
    assert b2.collapsed == 0 and b2.g.n_tasks > b.g.n_tasks
    assert r.makespan == pytest.approx(r2.makespan, rel=1e-9)


def test_data_parallel_across_nodes_shares_the_uplink_like_analytic(tmp_path):
    # tp = 2 inside each node, dp = 2 across: both tensor ranks' gradient all-reduces go
    # through the node's uplink at once (simulated, not assumed): event = analytic
    a, e, _ = _both(tmp_path, """run r { model stack(8, 1024, 2); on pods; mode train
      strategy parallel, tp = 2, dp = 2, micro_batch = 8, global_batch = 16; precision fp16 }""")
    assert e.breakdown["gradient exchange"] == pytest.approx(a.breakdown["gradient exchange"], rel=1e-9)
    assert e.latency_s == pytest.approx(a.latency_s, rel=1e-9)


def _samples():
    return sorted(p.stem for p in SAMPLES.glob("*.arch"))


def _check_trace(path):
    data = json.loads(path.read_text())
    assert isinstance(data["traceEvents"], list) and data["traceEvents"]


@pytest.mark.parametrize("sample", _samples())
def test_cli_event_level_gemm_with_trace(tmp_path, sample):
    trace = tmp_path / "T.json"
    r = run_cli("run", SAMPLES / f"{sample}.arch", "--run", "gemm", "--level", "event", "--trace", trace)
    assert r.code == 0, r
    assert "event level" in r.stdout and "critical path" in r.stdout
    _check_trace(trace)


@pytest.mark.parametrize("sample", ["h100", "a100"])
def test_cli_event_level_multi_chip_gpt(tmp_path, sample):
    trace = tmp_path / "T.json"
    r = run_cli("run", SAMPLES / f"{sample}.arch", "--run", "gpt_train", "--level", "event", "--json",
                "--trace", trace, "--set", "layers=4", "--set", "hidden=256", "--set", "heads=4",
                "--set", "seq=128", "--set", "vocab=1024", "--set", "tp=2", "--set", "pp=2", "--set", "dp=2",
                "--set", "micro_batch=2", "--set", "global_batch=16")
    assert r.code == 0, r
    rep = json.loads(r.stdout)
    assert rep["level"] == "event" and rep["latency_s"] > 0 and rep["chips"] == 8
    _check_trace(trace)


def test_trace_needs_event_level(tmp_path):
    trace = tmp_path / "T.json"
    r = run_cli("run", SAMPLES / "h100.arch", "--run", "gemm", "--trace", trace)
    assert r.code != 0
    assert "--trace needs --level event" in r.stderr
    assert not trace.exists()
    # a trace whose directory does not exist fails before the simulation, not after it
    r = run_cli("run", SAMPLES / "h100.arch", "--run", "gemm", "--level", "event", "--trace", tmp_path / "no" / "T.json")
    assert r.code != 0 and r.stderr.startswith("archc: error: cannot write the trace") and "no directory" in r.stderr
    assert "compiling" not in r.stderr and not (tmp_path / "no").exists()


# ---- all-reduce algorithms: tree and 2D mesh, by hand; the event level's flows agree ----------

ALGS = EASY_MACHINE + """
system tree8 { chips 8 of c; network fat_tree, bandwidth = 100 GB/s, latency = 1 us, allreduce = tree }
system ring8 { chips 8 of c; network fat_tree, bandwidth = 100 GB/s, latency = 1 us }
system mesh4x2 { grid 4 x 2 of c; network mesh, link = 50 GB/s, latency = 1 us, allreduce = mesh2d }
system meshring { grid 4 x 2 of c; network mesh, link = 50 GB/s, latency = 1 us }
"""


def _dp_step(tmp_path, system):
    """A data-parallel training step over the 8 chips of `system`; (analytic, event) gradient
    exchange times and the gradient bytes S (fp32: 4 B x 1024^2 x 2 layers)."""
    f = tmp_path / "algs.arch"
    f.write_text(ALGS + f"""run r {{ model stack(8, 1024, 2); on {system}; mode train
      strategy data, chips = 8, micro_batch = 8, global_batch = 64; precision fp16 }}""")
    run = check(f).run("r")
    a, e = run_analytic(run, __version__), run_event(run, __version__)
    assert e.latency_s == pytest.approx(a.latency_s, rel=1e-9)
    return a.breakdown["gradient exchange"], e.breakdown["gradient exchange"], 4 * 1024 * 1024 * 2


def test_tree_allreduce_by_hand(tmp_path):
    # double binary tree over 8: 2 S / B + 2 log2(8) latencies (+ the 1 us launch)
    a, e, S = _dp_step(tmp_path, "tree8")
    tree = 2 * S / 100e9 + 2 * 3 * 1e-6
    assert a == pytest.approx(tree + 1e-6, rel=1e-9) and e == pytest.approx(tree + 1e-6, rel=1e-9)
    a_ring, _, _ = _dp_step(tmp_path, "ring8")
    assert a_ring == pytest.approx(2 * 7 / 8 * S / 100e9 + 14e-6 + 1e-6, rel=1e-9)
    # 8 MiB is bandwidth-bound: the tree's 2 S/B loses to the ring's 2 (7/8) S/B despite its
    # 6 latencies against 14 (the tree wins below S = 8 x 8 us x B / 2 = 3.2 MB)
    assert a > a_ring


def test_mesh2d_allreduce_by_hand(tmp_path):
    # grid 4 rows x 2 columns, a mesh: a ring over a mesh uses both directions of its links,
    # B = 2 x 50 GB/s. Rows (px = 2): reduce-scatter, then columns (py = 4) all-reduce the
    # halves, then rows all-gather: 2(px-1)/px S/B + 2(py-1)/py (S/px)/B, 2(px-1) + 2(py-1)
    # latencies
    a, e, S = _dp_step(tmp_path, "mesh4x2")
    B, px, py = 100e9, 2, 4
    mesh = 2 * (px - 1) / px * S / B + 2 * (py - 1) / py * (S / px) / B + (2 * (px - 1) + 2 * (py - 1)) * 1e-6
    assert a == pytest.approx(mesh + 1e-6, rel=1e-9) and e == pytest.approx(mesh + 1e-6, rel=1e-9)
    a_ring, e_ring, _ = _dp_step(tmp_path, "meshring")
    assert a_ring == pytest.approx(2 * 7 / 8 * S / B + 14e-6 + 1e-6, rel=1e-9)
    assert e_ring == pytest.approx(a_ring, rel=1e-9)
    assert a < a_ring


def test_mesh2d_needs_a_mesh(tmp_path):
    f = tmp_path / "bad.arch"
    f.write_text(EASY_MACHINE + "system s { chips 4 of c; network switch, bandwidth = 1 GB/s, allreduce = mesh2d }\n")
    r = run_cli("check", f)
    assert r.code != 0
    assert "`allreduce = mesh2d` needs a mesh or torus, not a switch" in r.stderr
    f.write_text(EASY_MACHINE + "system s { chips 4 of c; network switch, bandwidth = 1 GB/s, allreduce = tre }\n")
    r = run_cli("check", f)
    assert r.code != 0 and "an all-reduce algorithm must be one of ring, tree, mesh2d, dims; found 'tre'" in r.stderr


def test_bsp_superstep_adds_the_exchange_to_the_compute(tmp_path):
    """A bulk-synchronous chip (`bsp`): every op computes, syncs, then exchanges over the NoC;
    its time is max(compute, memory, SRAM) + exchange + launch, where an overlapping chip
    takes the max of all four. The event level runs the two phases as two tasks, and agrees."""
    from archc.codegen.lower import lower
    from archc.runtime.execute import build_kernel
    base = EASY_MACHINE.replace("noc crossbar, bandwidth = 100 TB/s", "noc crossbar, bandwidth = 0.2 TB/s")
    times = {}
    for bsp in (False, True):
        f = tmp_path / f"bsp{bsp}.arch"
        f.write_text(base.replace("launch 1 us", "launch 1 us\n  bsp true" if bsp else "launch 1 us")
                     + "run r { model stack(16, 1024, 2); on c; precision fp16 }")
        run = check(f).run("r")
        assert run.machine.chip.bsp is bsp
        plan = lower(run)
        R = np.zeros((len(plan.tasks), len(el.RESULTS) + len(plan.memories)))
        build_kernel(run.machine, __version__).analyze(plan.table, R, 0)
        rc, T = el.RC, plan.tasks
        for i in range(len(T)):
            work = max(R[i, rc["compute"]], R[i, rc["memory"]], R[i, rc["sram"]])
            tn = R[i, rc["noc"]]
            expect = (work + tn) if bsp else max(work, tn)
            assert R[i, rc["time"]] == pytest.approx(expect + 1e-6 * T[i].launches, rel=1e-12)
        a, e = run_analytic(run, __version__), run_event(run, __version__)
        assert e.latency_s == pytest.approx(a.latency_s, rel=1e-9)
        times[bsp] = a.latency_s
        if bsp:
            plan, R, b, r = simulate_run(run, __version__)
            assert any(b.names[t].endswith("exchange") for t in range(len(b.names)))
    assert times[True] > times[False]


def test_backward_pieces_complete_gradients_last_layer_first(tmp_path):
    """The order the last backward runs (and its gradients complete) under overlap_dp: the op
    after the layers, the second repeat body instance by instance, the first, then the op
    before the layers, each op's backward followed by the addition of its fp16 weight
    gradient into the fp32 buffer, which completes it; buckets close once they hold `bucket`
    bytes, the last with the last piece that has gradients."""
    from archc.codegen.lower import lower
    from archc.codegen.plan import Phase
    from archc.codegen.buckets import backward_pieces, bucket_closings
    f = tmp_path / "m.arch"
    f.write_text(MACHINE + """model two(b, d) {
      input x : [b, d]
      x = linear(x, d, bias = false)
      repeat 2 { x = linear(x, d, bias = false) }
      repeat 3 { x = linear(x, d, bias = false) }
      return linear(x, d, bias = false)
    }
    run r { model two(8, 256); on node; mode train
      strategy data, chips = 4, micro_batch = 8, overlap_dp = true, bucket = 300 kB; precision fp16 }""")
    plan = lower(check(f).run("r"))
    T = plan.tasks
    bwd = [i for i in reversed(range(len(T))) if T[i].phase == Phase.BACKWARD]
    pieces = backward_pieces(plan, bwd)
    ops = [T[i].op for i, _ in pieces]
    frac = [x for _, x in pieces]
    first, a, b, last = sorted(set(ops))
    assert ops == [last] * 2 + [b] * 6 + [a] * 4 + [first] * 2
    assert [plan.labels[i] == "gradient accumulation" for i, _ in pieces] == [False, True] * 7
    assert frac == pytest.approx([1, 1] + [1 / 3] * 6 + [1 / 2] * 4 + [1, 1])
    # 256 x 256 fp32 gradients = 262,144 B per linear: one short of 300 kB each, so a bucket
    # closes with every second accumulation, and the last with the last piece
    ar = plan.first(Phase.GRADIENT_EXCHANGE)
    closings = bucket_closings(plan, pieces, T[ar].comm.nbytes, 300e3)
    assert T[ar].comm.nbytes == pytest.approx(7 * 256 * 256 * 4)
    assert sorted(closings) == [3, 7, 11, 13]
    assert [closings[k] for k in sorted(closings)] == pytest.approx([2 * 262144] * 3 + [262144])


def test_interleaved_chunks_start_their_buckets_after_their_own_last_backward(tmp_path):
    """Interleaved 1F1B (pp = 2, v = 2) with overlap_dp: a stage's chunk 1 finishes its last
    backward before chunk 0's; its gradient buckets start then, under chunk 0's backward, and
    every layer's gradients go out in exactly one bucket (1-byte buckets: one per layer)."""
    f = tmp_path / "m.arch"
    f.write_text(MACHINE + """run r { model stack(4, 512, 8); on node; mode train
      strategy parallel, pp = 2, dp = 2, interleave = 2, micro_batch = 4, global_batch = 16,
               overlap_dp = true, bucket = 1 B
      precision fp16 }""")
    run = check(f).run("r")
    plan, R, b, r = simulate_run(run, __version__)
    names = b.names
    launches = {t: names[t] for t in range(r.start.size)
                if names[t].startswith("gradient bucket") and names[t].endswith("stage 0 launch")}
    # 4 layers on stage 0, 2 per chunk: one bucket each
    assert sorted(launches.values()) == sorted(f"gradient bucket {n} of backward mb {i} chunk {c} stage 0 launch"
                                               for n in (1, 2) for i, c in ((1, 1), (1, 0)))
    chunk1 = [t for t, n in launches.items() if "chunk 1" in n]
    last_bwd = [t for t in range(r.start.size) if r.kind[t] == 0 and names[t].endswith("backward mb 1 chunk 0")]
    assert last_bwd
    # chunk 1's first bucket goes out before chunk 0's last backward has started; the next
    # bucket queues behind it on the data-parallel links
    assert min(r.start[t] for t in chunk1) < max(r.start[t] for t in last_bwd)
    a = run_analytic(run, __version__)
    e = run_event(run, __version__)
    assert e.latency_s > 0 and a.latency_s > 0


def test_spatial_rows_of_a_two_chip_pipeline_agree_with_the_timeline(tmp_path):
    """A spatial run over 2 chips with 8 samples: each sample crosses the chip boundary once,
    so the report's "pipeline send/recv" row is the 8 transfers of the timeline, not 8 x 8
    (the repetition rule lives in Task.reps; the event level used to count step-level rows
    once and the report multiplied them by the samples again: 1.24 ms of transfers in a 42 us
    step). The row's event time is what its flows took on the timeline."""
    from archc.codegen.plan import Phase
    f = tmp_path / "sp.arch"
    f.write_text(EASY_MACHINE.replace("tiles 10 of t", "grid 2 x 5 of t").replace("noc crossbar", "noc mesh")
                 + "run r { model stack(8, 256, 4); on node; strategy spatial, chips = 2, micro_batch = 1, "
                   "global_batch = 8; precision fp16 }")
    run = check(f).run("r")
    rep = run_event(run, __version__)
    plan, R, b, r = simulate_run(run, __version__)
    xfer = plan.first(Phase.PIPELINE_TRANSFER)
    assert plan.tasks[xfer].reps(plan.micro_batches) == 8  # one boundary, 8 samples
    flows = [t for t in range(len(b.names)) if b.names[t].startswith("chip-to-chip sample")]
    assert len(flows) == 8
    on_timeline = sum(r.end[t] - r.start[t] for t in flows)
    row = next(o for o in rep.ops if o.name == "pipeline send/recv")
    assert row.time_s == pytest.approx(on_timeline, rel=1e-12)
    assert row.time_s <= rep.latency_s  # one link, used by one sample at a time
    assert rep.bottleneck != "link"


def test_alltoall_flows_agree_with_the_analytic_steps(tmp_path, monkeypatch):
    """An all-to-all over two levels (codegen/collectives.py: pairwise shifts inside a node,
    one exchange between the nodes): simulated as flows over the members' links (nothing
    collapsed into a delay), it takes what the analytic level charges for the same steps:
    3 x (D/8 / 100 GB/s + 1 us) + (D/2 / (25 GB/s / 4 chips) + 5 us) = 183.6 us for D = 2 MiB."""
    f = tmp_path / "a2a.arch"
    f.write_text(EASY_MACHINE.replace("system node { chips 4 of c; network switch, bandwidth = 100 GB/s, latency = 1 us }",
                                      "system node { chips 4 of c; network switch, bandwidth = 100 GB/s, latency = 1 us }\n"
                                      "system pod { systems 2 of node; network switch, bandwidth = 25 GB/s, "
                                      "latency = 5 us }")
                 + "model x(n) {\n  input a : [n, n]\n  return alltoall(a)\n}\n"
                   "run r { model x(1024); on pod; strategy data, chips = 8; precision fp16 }\n")
    monkeypatch.setattr(el._Builder, "find_private", lambda self, keys: None)
    run = check(f).run("r")
    a, e = run_analytic(run, __version__), run_event(run, __version__)
    D = 1024 * 1024 * 2
    link = 3 * (D / 8 / 100e9 + 1e-6) + (D / 2 / (25e9 / 4) + 5e-6)
    assert a.ops[0].time_s == pytest.approx(link + 1e-6 + 2 * D / 1e12, rel=1e-9)  # + launch, + memory
    assert e.latency_s == pytest.approx(a.latency_s, rel=1e-9)
    plan, R, b, r = simulate_run(run, __version__)
    assert int((r.kind == 1).sum()) == 3 * 8 + 8  # a flow per chip per step
